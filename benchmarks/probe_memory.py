"""Where the probing layer's memory goes: bytes per target, by the line that allocated them.

``python -m benchmarks probe-memory [--reals 10000] [--check tcp] [--quiet-after 0]
[--seconds 6] [--top 15]``

The default Prober (the lean engine, in process) watches N reals on distinct
loopback addresses, as the ``probes`` harness's lean phase does, against reals
served by nginx-light (or ``benchmarks._reals``). ``tracemalloc`` starts after
the imports; after ``--seconds`` it prints the RSS after the imports (the
baseline: what N does not change) and at the end, the bytes traced per target,
and the allocation sites holding the most. tracemalloc's own bookkeeping
inflates the RSS at the end: read the traced bytes, and take RSS figures from
``python -m benchmarks probes``. ``--quiet-after 3`` folds steady results as a
balancer's watch does.
"""

from __future__ import annotations

import argparse
import gc
import linecache
import os
import sys
import tempfile
import tracemalloc
from pathlib import Path

import trio

from ._reals import raise_nofile_limit
from ._servers import SERVER_CHOICES, run_reals
from .probes import _Counts, _prober, addresses, process_rss

_ROOT = str(Path(__file__).resolve().parent.parent) + "/"


async def _measure(args, top: int) -> list[str]:
    counts = _Counts()
    limiter = trio.CapacityLimiter(args.concurrency)
    async with trio.open_nursery() as nursery:
        await nursery.start(_prober, args.check, addresses(args.reals), args.port, args.interval,
                            limiter, counts, 0, True, args.quiet_after)
        await trio.sleep(args.seconds)
        gc.collect()
        snapshot = tracemalloc.take_snapshot()
        nursery.cancel_scope.cancel()
    stats = snapshot.statistics("lineno")
    total = sum(stat.size for stat in stats)
    lines = [f"traced: {total / 2**20:.2f} MiB, {total // args.reals} bytes per target"]
    for stat in stats[:top]:
        frame = stat.traceback[0]
        code = linecache.getline(frame.filename, frame.lineno).strip()[:60]
        lines.append(f"{stat.size / args.reals:8.1f} B/target {stat.count:8d} blocks  "
                     f"{frame.filename.replace(_ROOT, '')}:{frame.lineno}  {code}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks probe-memory", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reals", type=int, default=10000)
    parser.add_argument("--check", choices=("tcp", "http"), default="tcp")
    parser.add_argument("--quiet-after", type=int, default=0)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--port", type=int, default=20080)
    parser.add_argument("--server", choices=SERVER_CHOICES, default="auto")
    args = parser.parse_args(argv)
    raise_nofile_limit()
    import actors.probes  # noqa: F401  (imported before tracing: not per target)

    with tempfile.TemporaryDirectory(prefix="kglb-probe-memory-") as tmp:
        with run_reals(tuple(addresses(args.reals)), (), port=args.port, protocol="http",
                       workdir=Path(tmp) / "reals", server=args.server) as info:
            rss = process_rss(os.getpid())
            print(f"reals: {info.description}; {args.check} every {args.interval}s, "
                  f"quiet_after {args.quiet_after}; RSS after imports {rss / 2**20:.1f} MiB",
                  flush=True)
            tracemalloc.start()
            lines = trio.run(_measure, args, args.top)
            end = process_rss(os.getpid())
            tracemalloc.stop()
    print("\n".join(lines))
    print(f"RSS at the end {end / 2**20:.1f} MiB (tracemalloc's bookkeeping included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
