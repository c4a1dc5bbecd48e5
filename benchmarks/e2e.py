"""End-to-end benchmark: kglb-trio against N loopback reals, beside a bare trio checker.

``python -m benchmarks e2e --reals 1000,5000,10000`` (or ``python -m benchmarks.e2e``).
For each N it starts the reals (a separate process: nginx for the steady
ones when installed, ``benchmarks._reals`` for the ones that flip), then runs
two phases, each in a fresh process so CPU time and RSS are its own: the
baseline (``_baseline``: one raw trio-socket check task per real, UpdateReal
straight to the data plane) and kglb-trio (``actors.app.run_kglb`` with the
real checks and a recording data plane). Each phase brings every real up,
measures a window of ``--duration`` seconds while reals are taken down and
brought back on the server side, and kglb-trio then reloads an equal config.
It prints a table per N, writes benchmarks/results/<timestamp>.json and, if
matplotlib is importable, a PNG beside it. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ._config import CHECK_KINDS, REAL_PORT, real_addresses
from ._measure import tree_cpu_seconds
from ._report import machine, plot, rss_slopes, table, targets, write_json
from ._servers import SERVER_CHOICES, run_reals

_ROOT = Path(__file__).resolve().parent.parent
SYSTEMS = ("baseline", "kglb")


def flip_pool(reals: tuple[str, ...], *, flip_rate: float, interval: float, rise: int, fall: int) -> tuple[str, ...]:
    """Reals to flip, spread over every VIP: enough that one is always idle at ``flip_rate``."""
    if flip_rate <= 0:
        return ()
    cycle = (rise + fall + 3) * interval  # one down-and-up cycle, with margin
    size = min(max(1, len(reals) // 10), math.ceil(flip_rate * cycle * 2) + 2)
    step = len(reals) / size
    return tuple(reals[int(i * step)] for i in range(size))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks e2e", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reals", default="1000", help="comma-separated N values (default 1000)")
    p.add_argument("--check", choices=CHECK_KINDS, default="tcp")
    p.add_argument("--interval", type=float, default=1.0, help="check interval, s (default 1)")
    p.add_argument("--duration", type=float, default=20.0, help="measured window, s (default 20)")
    p.add_argument("--flip-rate", type=float, default=2.0,
                   help="reals taken down (and brought back) per second (default 2; 0: none)")
    p.add_argument("--rise", type=int, default=3)
    p.add_argument("--fall", type=int, default=2)
    p.add_argument("--reals-per-vip", type=int, default=500)
    p.add_argument("--concurrency", type=int, default=100, help="kglb checker concurrency per VIP")
    p.add_argument("--timeout-ms", type=int, default=1000, help="check timeout (default 1000)")
    p.add_argument("--dataplane", choices=("memory", "ipvs"), default="memory",
                   help="ipvs: actors.dataplane.ipvs.IpvsDataPlane (root, kernel with ip_vs: the VM)")
    p.add_argument("--server", choices=SERVER_CHOICES, default="auto",
                   help="who serves the steady reals: nginx, python, auto (nginx if installed)")
    p.add_argument("--systems", default=",".join(SYSTEMS), help="phases to run (default baseline,kglb)")
    p.add_argument("--coalesce", type=float,
                   help="run_kglb's coalesce window, s (default: run_kglb's own)")
    p.add_argument("--probe-workers", default="auto", metavar="N|auto",
                   help="kglb-trio's Prober(workers=N); 0: in-process; auto (default): what "
                        "kglb-trio picks for N reals at --interval on this machine")
    p.add_argument("--port", type=int, default=REAL_PORT)
    p.add_argument("--results", type=Path, default=_ROOT / "benchmarks" / "results",
                   help="where the JSON (and PNG) go")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    # Internal: run one phase in this process (the orchestrator starts these).
    p.add_argument("--phase", choices=SYSTEMS, help=argparse.SUPPRESS)
    p.add_argument("--control", help=argparse.SUPPRESS)
    p.add_argument("--phase-output", help=argparse.SUPPRESS)
    return p


def _spec(args, system: str, n: int, control: str):
    from ._phase import PhaseSpec

    reals = real_addresses(n)
    return PhaseSpec(
        system=system, reals=reals,
        flip_pool=flip_pool(reals, flip_rate=args.flip_rate, interval=args.interval,
                            rise=args.rise, fall=args.fall),
        control=control, check=args.check, interval=args.interval, rise=args.rise,
        fall=args.fall, reals_per_vip=args.reals_per_vip, concurrency=args.concurrency,
        timeout_ms=args.timeout_ms, duration=args.duration,
        flip_rate=0.0 if args.check == "dummy" else args.flip_rate,  # a dummy check cannot fail
        dataplane=args.dataplane, port=args.port, coalesce=args.coalesce,
        probe_workers=_probe_workers(args.probe_workers, n / args.interval),
        progress=not args.quiet,
        log_file=str(Path(args.phase_output).with_suffix(".log")) if args.phase_output else None,
    )


def _probe_workers(flag: str, checks_per_second: float) -> int:
    """``--probe-workers``: N as given, or (auto) kglb-trio's own choice."""
    if flag == "auto":
        from actors.probes import suggested_workers

        return suggested_workers(checks_per_second, os.cpu_count() or 1)
    try:
        workers = int(flag)
    except ValueError:
        raise SystemExit(f"--probe-workers: expected a number or auto, got {flag!r}") from None
    if workers < 0:
        raise SystemExit("--probe-workers must be >= 0")
    return workers


def _run_phase_here(args) -> int:
    import trio

    from ._phase import run_phase
    from ._reals import raise_nofile_limit

    raise_nofile_limit()
    result = trio.run(run_phase, _spec(args, args.phase, int(args.reals), args.control))
    Path(args.phase_output).write_text(json.dumps(result))
    return 0


def _phase_process(argv: list[str], system: str, n: int, control: str, workdir: Path) -> dict | None:
    output = workdir / f"{system}-{n}.json"
    cmd = [sys.executable, "-m", "benchmarks.e2e", *argv, "--reals", str(n), "--phase", system,
           "--control", control, "--phase-output", str(output)]
    if subprocess.run(cmd, cwd=_ROOT).returncode != 0:
        print(f"{system} phase at N={n} failed (see above)", file=sys.stderr)
        return None
    return json.loads(output.read_text())


def _passthrough(argv: list[str]) -> list[str]:
    """The user's flags minus --reals, for the phase processes."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--reals":
            skip = True
        elif not arg.startswith("--reals="):
            out.append(arg)
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    if args.phase:
        return _run_phase_here(args)
    systems = [s for s in args.systems.split(",") if s]
    if unknown := set(systems) - set(SYSTEMS):
        parser().error(f"unknown systems {sorted(unknown)}")
    ns = [int(n) for n in args.reals.split(",")]
    results = {"machine": machine(), "args": {k: str(v) if isinstance(v, Path) else v
                                              for k, v in vars(args).items()}, "runs": []}
    for n in ns:
        reals = real_addresses(n)
        pool = flip_pool(reals, flip_rate=args.flip_rate, interval=args.interval,
                         rise=args.rise, fall=args.fall)
        with tempfile.TemporaryDirectory(prefix="kglb-bench-") as tmp:
            workdir = Path(tmp)
            protocol = "http" if args.check == "http" else "tcp"
            with run_reals(reals, pool, port=args.port, protocol=protocol,
                           workdir=workdir / "reals", server=args.server) as info:
                run = {"reals": n, "server": info.description, "flip_pool": len(pool),
                       "scheduled_per_second": n / args.interval}
                run["server_cpu_share"] = {}
                for system in systems:
                    cpu, started = tree_cpu_seconds(info.pids), time.monotonic()
                    run[system] = _phase_process(_passthrough(argv), system, n, info.control, workdir)
                    run["server_cpu_share"][system] = round(
                        (tree_cpu_seconds(info.pids) - cpu) / (time.monotonic() - started), 3)
        run["targets"] = targets(run)
        results["runs"].append(run)
        print(f"\nreals served by {run['server']}; check {args.check} every {args.interval} s, "
              f"flips {args.flip_rate}/s over a pool of {len(pool)}, data plane {args.dataplane}")
        print(table(run), flush=True)
    if slopes := rss_slopes(results["runs"]):
        results["rss_per_real_slope"] = slopes
        print(f"\nRSS per real, slope N={slopes['from_reals']}..{slopes['to_reals']}: "
              f"kglb-trio {slopes.get('kglb', '-')} B, baseline {slopes.get('baseline', '-')} B "
              f"(target <= {10 * 1024} B)")
    path = write_json(results, args.results)
    print(f"\nresults: {path}")
    if not args.no_plot:
        png = plot(results, path.with_suffix(".png"))
        print(f"plot: {png}" if png else "plot: skipped (matplotlib is not installed)")
    return 0 if all(r.get(s) for r in results["runs"] for s in systems) else 1


if __name__ == "__main__":
    sys.exit(main())
