"""``python -m benchmarks`` (``make bench``): the menu of harnesses.

``python -m benchmarks`` lists them; ``python -m benchmarks NAME [ARGS...]``
runs one in its own process (``python -m benchmarks.<module> ARGS...``), so a
harness's flags are its own: ``python -m benchmarks NAME --help``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent

#: name -> (module, what it measures)
HARNESSES = {
    "e2e": ("benchmarks.e2e",
            "kglb-trio end to end against N loopback reals, beside a bare trio checker"),
    "probes": ("benchmarks.probes", "the Prober and the checks alone, beside raw trio-socket checks"),
    "probe-memory": ("benchmarks.probe_memory",
                     "the Prober's bytes per target at N reals, by allocating line (tracemalloc)"),
    "ipvs": ("benchmarks.ipvs_sync", "pushing N reals into IPVS, beside `ipvsadm -R` (in the VM)"),
    "discovery": ("benchmarks.discovery_etcd",
                  "N reals under one etcd prefix, R changes/s: etcd write -> data plane"),
    "scrape": ("benchmarks.scrape",
               "serving /stats and /status of a 10k-real snapshot: event-loop stall"),
    "writer-crash": ("benchmarks.writer_crash",
                     "kill -9 at random instants of a first apply: leaks; a flip beside a hold"),
    "privsep": ("benchmarks.privsep",
                "what the writer's process boundary costs per desired state, beside plan()"),
    "privsep-e2e": ("benchmarks.privsep_e2e",
                    "check result -> data plane at 10k reals: kglb-trio vs kglb-trio --privsep"),
    "status-load": ("benchmarks.status_load",
                    "/healthz, probing and RSS under 500 slowloris + 20 non-reading scrapers"),
    "status-page": ("benchmarks.status_page",
                    "the status page at 10k reals: size, render time, probes with 5 pages open"),
}


def menu() -> str:
    width = max(map(len, HARNESSES))
    lines = ["usage: python -m benchmarks NAME [ARGS...]   (NAME --help for its flags)", ""]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in HARNESSES.items()]
    lines += ["", "Figures and how to read them: benchmarks/README.md"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(menu())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in HARNESSES:
        print(f"unknown harness {name!r}\n\n{menu()}", file=sys.stderr)
        return 2
    module = HARNESSES[name][0]
    return subprocess.run([sys.executable, "-m", module, *rest], cwd=_ROOT).returncode


if __name__ == "__main__":
    sys.exit(main())
