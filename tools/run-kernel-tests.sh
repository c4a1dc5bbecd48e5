#!/usr/bin/env bash
# `make kernel`: run tests/kernel with .venv/bin/python inside a QEMU VM whose
# kernel has ip_vs (tools/ipvs-vm). All kernel tests share ONE VM boot.
#
#   bash tools/run-kernel-tests.sh [PYTEST ARGS...]
#
# With CI=true the kernel tests must run: a host that cannot start the VM is a
# failure. Outside CI such a host (not root, not x86_64, neither qemu nor apt,
# VM set-up failed) prints "KERNEL TESTS SKIPPED: <reason>" and exits 0.
# Pytest's exit code 5 (no tests collected) is always a failure. The first
# run on a fresh machine apt-installs qemu and unpacks a kernel (~15 s).
set -uo pipefail
cd "$(dirname "$0")/.."

case "${CI:-}" in true | 1 | yes) ci=1 ;; *) ci=0 ;; esac

cannot_run() {
    if [ $ci = 1 ]; then
        echo "KERNEL TESTS FAILED: $1 (CI=true, so they must run)" >&2
        exit 1
    fi
    echo "################################################################"
    echo "KERNEL TESTS SKIPPED: $1"
    echo "################################################################"
    exit 0
}

[ "$(uname -m)" = x86_64 ] || cannot_run "the VM needs an x86_64 host, this is $(uname -m)"
[ "$(id -u)" = 0 ] || cannot_run "the VM needs root (apt, QEMU set-up); run as root"
command -v qemu-system-x86_64 >/dev/null || command -v apt-get >/dev/null ||
    cannot_run "no qemu-system-x86_64, and no apt-get to install it"
[ -x .venv/bin/python ] || cannot_run "no .venv/bin/python (run 'make venv')"

runner=tools/ipvs-vm/run-in-ipvs-vm.sh
# Debian packages the kernel tests use besides QEMU's: ipvsadm (foreign
# services, drift), curl (end-to-end traffic).
export IPVSVM_APT_EXTRA=${IPVSVM_APT_EXTRA-ipvsadm curl}
prep_log=$(mktemp)
trap 'rm -f "$prep_log"' EXIT
if ! bash "$runner" --prepare >"$prep_log" 2>&1; then
    cat "$prep_log" >&2
    cannot_run "the ip_vs VM could not be prepared (see above)"
fi

# A hung guest must not hang CI: the whole kernel run is bounded.
export IPVSVM_TIMEOUT=${IPVSVM_TIMEOUT:-900}
start=$(date +%s)
# Arguments naming existing files (tests/kernel/x.py[::test]) select tests;
# without any, all of tests/kernel runs.
paths=(tests/kernel)
for arg in "$@"; do if [ -e "${arg%%::*}" ]; then paths=(); fi; done
bash "$runner" .venv/bin/python -m pytest -q -p no:cacheprovider "${paths[@]}" "$@"
rc=$?
echo "kernel tests: exit $rc after $(( $(date +%s) - start )) s (one VM boot)"
case $rc in
    0) ;;
    5) echo "KERNEL TESTS FAILED: pytest collected no kernel tests" >&2; exit 1 ;;
    124) echo "KERNEL TESTS FAILED: the VM timed out after ${IPVSVM_TIMEOUT}s" >&2 ;;
    125) echo "KERNEL TESTS FAILED: the VM died (console tail above)" >&2 ;;
    *) echo "KERNEL TESTS FAILED (pytest exit $rc)" >&2 ;;
esac
exit $rc
