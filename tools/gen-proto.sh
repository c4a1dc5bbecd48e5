#!/usr/bin/env bash
# Regenerate kglb/pb/*_pb2.py(i) from proto/kglb/pb/*.proto with the pinned
# grpcio-tools of .venv. The generated files are committed, so installs need no
# protoc.
#
#   tools/gen-proto.sh           regenerate in place
#   tools/gen-proto.sh --check   regenerate into a temp dir; exit 1 if the
#                                committed files differ (stale, edited or missing)
set -euo pipefail

cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=kglb/pb

generate() {  # $1: output root (the package path kglb/pb is below it)
    "$PY" -m grpc_tools.protoc -I proto --python_out="$1" --pyi_out="$1" proto/kglb/pb/*.proto
}

case "${1:-}" in
"")
    generate .
    echo "gen-proto: regenerated $OUT"
    ;;
--check)
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    generate "$tmp"
    # Compare the generated files only (kglb/pb also holds __init__.py).
    if ! diff -r -q -x __init__.py -x __pycache__ "$tmp/$OUT" "$OUT" >"$tmp/diff"; then
        cat "$tmp/diff" >&2
        echo "gen-proto: $OUT is out of date with proto/; run 'make proto' (tools/gen-proto.sh)" >&2
        exit 1
    fi
    echo "gen-proto: $OUT is up to date"
    ;;
*)
    echo "usage: $0 [--check]" >&2
    exit 2
    ;;
esac
