"""The probing layer alone: the Prober and the checks, beside a bare trio-socket checker.

``python -m benchmarks.probes [--reals 1000 5000] [--interval 1] [--seconds 10]
[--workers 0 2] [--checks tcp http]``

N reals on distinct loopback addresses (127.1.x.y, one port) are served by a
separate process (nginx-light with 1 worker when installed, else
``benchmarks._reals``). For each (check type, N) it runs, each in a fresh
process so RSS and CPU are its own:

- ``prober`` with every ``--workers`` value: ``actors.probes.Prober`` with
  ``actors.checks.run_check``, one watch per real at ``--interval``, one
  CapacityLimiter of ``--concurrency`` (kglb's default 100), results drained
  from the watch channel by a consumer task;
- ``lean`` (when ``--workers`` has 0): the in-process Prober as it is by
  default, tcp and plain-http checks on ``actors._lean_engine``; ``prober
  w=0`` is the same with ``lean=False`` (every check a trio task) and
  ``prober w=N`` runs the lean engine in N worker processes;
- ``bare``: the least a trio checker can do: one task per real, a raw
  ``trio.socket`` connect (tcp) or hand-written GET plus status line (http),
  the same limiter and interval, results counted.

After ``--warmup`` seconds it measures ``--seconds``: checks/s achieved vs
scheduled (N / interval), client CPU µs per check (the process and its probe
workers, from /proc), RSS (the same, summed), the footprint (``foot``: the
parent's RSS plus each worker's private pages, so the libraries a worker
shares with its parent count once), failed checks, missed intervals. The
``ratio`` column is prober CPU µs/check ÷ bare CPU µs/check of the same run.
``--quiet-after N`` watches as a balancer does (3: kglb's rise/fall defaults),
so steady results are folded before delivery; checks are then counted where
they ran. The default, 0, delivers every result.

Then it judges issue 15's targets (``TARGETS``): each CPU target is a ceiling
on that ratio, with kglb Go's figure written next to it as the reference.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

from ._baseline import bare_http, bare_tcp
from ._servers import SERVER_CHOICES, run_reals

_ROOT = Path(__file__).resolve().parent.parent

#: kglb's Go health manager and checkers, measured side by side in issue 15 (built
#: from its source; nginx reals on 10k loopback addresses; 1 s interval; 2 shared
#: vCPUs): CPU µs per check (low, high of two runs), and RSS in MB at 10k reals.
GO_US = {("tcp", 1000): (44, 52), ("tcp", 5000): (40, 44), ("tcp", 10000): (44, 46),
         ("http", 1000): (117, 117), ("http", 5000): (115, 127), ("http", 10000): (109, 114)}
GO_RSS_MB = {"tcp": 37, "http": 47}
#: The bare checker's CPU µs per check on the same kind of machine (2 shared vCPUs),
#: the mean of two runs of ``python -m benchmarks.probes --reals 1000 10000 --workers
#: 0 1`` on 2026-12-06 (5k: the mean of 1k and 10k, not measured). Go's cost as a
#: share of a bare check, GO_US / BARE_US, is the ceiling on the ``ratio`` column.
BARE_US = {("tcp", 1000): 129, ("tcp", 10000): 118, ("http", 1000): 175,
           ("http", 10000): 156}
BARE_US[("tcp", 5000)] = (BARE_US[("tcp", 1000)] + BARE_US[("tcp", 10000)]) / 2
BARE_US[("http", 5000)] = (BARE_US[("http", 1000)] + BARE_US[("http", 10000)]) / 2


def cpu_target(check: str, reals: int) -> float | None:
    """Issue 15's ceiling on prober µs ÷ bare µs: Go's cost per check (0.75× of it for
    http at 5k and more), as a share of a bare check; None when no Go figure exists."""
    if (check, reals) not in GO_US:
        return None
    go = sum(GO_US[check, reals]) / 2
    if check == "http" and reals >= 5000:
        go *= 0.75
    return round(go / BARE_US[check, reals], 2)


def targets(rows: list[dict]) -> list[str]:
    """One line per issue-15 target that these rows can judge: met or not, and why."""
    lines = []
    for row in rows:
        if "error" in row or row["phase"] == "bare":
            continue
        system = f"{row['phase']} w={row['workers']}"
        where = f"{row['check']} {row['reals']} {system}"
        ceiling = cpu_target(row["check"], row["reals"])
        if ceiling is not None and row.get("ratio") is not None:
            go = "–".join(map(str, GO_US[row["check"], row["reals"]]))
            lines.append(f"{where}: cpu ratio {row['ratio']} <= {ceiling} (Go {go} µs/check): "
                         f"{'met' if row['ratio'] <= ceiling else 'NOT met'}")
        if row["reals"] >= 10000 and row["check"] == "http":
            lines.append(f"{where}: missed intervals {row['missed']} == 0: "
                         f"{'met' if row['missed'] == 0 else 'NOT met'}")
        if row["reals"] >= 10000:
            limit = GO_RSS_MB[row["check"]] if not row["workers"] else 80
            shared = (f" (shared pages once: {row['footprint_mb']} MB)"
                      if row["workers"] and "footprint_mb" in row else "")
            lines.append(f"{where}: rss {row['rss_mb']} MB <= {limit} MB: "
                         f"{'met' if row['rss_mb'] <= limit else 'NOT met'}{shared}")
    return lines
_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def addresses(n: int) -> list[str]:
    """``n`` distinct loopback addresses, 127.1.0.1 upwards (no .0 or .255)."""
    return [f"127.{1 + i // 63500}.{i // 250 % 254}.{i % 250 + 1}" for i in range(n)]


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def process_rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except FileNotFoundError:
        return 0


def process_private(pid: int) -> int:
    """The bytes only ``pid`` maps (Private_Clean + Private_Dirty): its RSS less the
    pages it shares, such as the libraries a probe worker shares with its parent."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return sum(int(line.split()[1]) * 1024 for line in f
                       if line.startswith(("Private_Clean:", "Private_Dirty:")))
    except FileNotFoundError:
        return 0


# ------------------------------------------------------------------ bare checker


class _Counts:
    def __init__(self) -> None:
        self.checks = 0
        self.failed = 0


class _ProberCounts:
    """Checks completed and failed as the Prober counts them, where they ran."""

    def __init__(self, prober) -> None:
        self._prober = prober

    @property
    def checks(self) -> int:
        return self._prober.checks_done()[0]

    @property
    def failed(self) -> int:
        checks, by_reason = self._prober.checks_done()
        return checks - by_reason.get("ok", 0)


async def _bare(kind: str, reals: list[str], port: int, interval: float, limiter, counts) -> None:
    check = bare_http if kind == "http" else bare_tcp

    async def probe(address: str) -> None:
        due = trio.current_time() + random.uniform(0, interval)
        while True:
            await trio.sleep_until(due)
            due += interval
            async with limiter:
                with trio.move_on_after(5):
                    passed = await check(address, port)
            counts.checks += 1
            counts.failed += not passed

    async with trio.open_nursery() as nursery:
        for address in reals:
            nursery.start_soon(probe, address)


# ----------------------------------------------------------------------- prober


async def _prober(kind, reals, port, interval, limiter, counts, workers, lean, quiet_after,
                  task_status):
    from actors.probes import Prober
    from kglb import ProbeTarget
    from kglb.config import HttpCheck, TcpCheck

    check = HttpCheck(codes=(200,), timeout_ms=5000) if kind == "http" else TcpCheck()
    prober = Prober(workers=workers, lean=lean)
    send, receive = trio.open_memory_channel(10000)
    async with trio.open_nursery() as nursery:
        await nursery.start(prober.run)
        for address in reals:
            prober.watch(ProbeTarget(address=address, port=port, check=check),
                         interval=interval, limiter=limiter, send=send, quiet_after=quiet_after)
        task_status.started(prober)
        async for message in receive:
            # Drain what is queued: each receive() costs a whole scheduling round.
            batch = [message]
            while True:
                try:
                    batch.append(receive.receive_nowait())
                except trio.WouldBlock:
                    break
            if not quiet_after:  # else counted where they ran (see _phase)
                counts.checks += len(batch)
                counts.failed += sum(not m.result.passed for m in batch)


def _worker_pids(prober) -> list[int]:
    if prober is None:
        return []
    return [w.pid for w in prober.statistics().workers if w.pid]


async def _phase(args) -> dict:
    reals = addresses(args.reals)
    counts = _Counts()
    limiter = trio.CapacityLimiter(args.concurrency)
    prober = None
    async with trio.open_nursery() as nursery:
        if args.phase == "bare":
            nursery.start_soon(_bare, args.check, reals, args.port, args.interval, limiter, counts)
        else:
            prober = await nursery.start(_prober, args.check, reals, args.port, args.interval,
                                         limiter, counts, args.workers, args.phase == "lean",
                                         args.quiet_after)
            if args.quiet_after:
                # Folded results arrive up to ~15 s after their checks: count the
                # checks where they ran (worker reports included), as e2e does.
                counts = _ProberCounts(prober)
        await trio.sleep(args.warmup)
        pids = [os.getpid(), *_worker_pids(prober)]
        cpu0, checks0, failed0 = sum(map(process_cpu, pids)), counts.checks, counts.failed
        missed0 = prober.statistics().missed if prober else 0
        t0 = time.monotonic()
        await trio.sleep(args.seconds)
        elapsed = time.monotonic() - t0
        cpu = sum(map(process_cpu, pids)) - cpu0
        checks = counts.checks - checks0
        stats = prober.statistics() if prober else None
        result = {
            "phase": args.phase, "check": args.check, "reals": args.reals,
            "workers": args.workers if prober else None,
            "scheduled_per_s": args.reals / args.interval,
            "achieved_per_s": round(checks / elapsed, 1),
            "cpu_us_per_check": round(cpu / checks * 1e6, 1) if checks else None,
            "cpu_percent": round(cpu / elapsed * 100, 1),
            "rss_mb": round(sum(map(process_rss, pids)) / 2**20, 1),
            # The same memory with the pages a worker shares (its libraries, with
            # the parent) counted once: the parent's RSS plus what is private to
            # each worker.
            "footprint_mb": round((process_rss(pids[0]) + sum(map(process_private, pids[1:])))
                                  / 2**20, 1),
            "quiet_after": args.quiet_after,
            "failed": counts.failed - failed0,
            "missed": (stats.missed - missed0) if stats else None,
            "restarts": sum(w.restarts for w in stats.workers) if stats else None,
        }
        nursery.cancel_scope.cancel()
    return result


# ------------------------------------------------------------------------ driver


def _run_phase(args, phase: str, check: str, n: int, workers: int) -> dict:
    command = [sys.executable, "-m", "benchmarks.probes", "--phase", phase, "--check", check,
               "--reals", str(n), "--workers", str(workers), "--interval", str(args.interval),
               "--seconds", str(args.seconds), "--warmup", str(args.warmup),
               "--port", str(args.port), "--concurrency", str(args.concurrency),
               "--quiet-after", str(args.quiet_after)]
    done = subprocess.run(command, cwd=_ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        return {"phase": phase, "check": check, "reals": n, "error": done.stderr[-2000:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _table(rows: list[dict]) -> str:
    head = (f"{'check':5} {'reals':>6} {'system':10} {'sched/s':>8} {'done/s':>8} "
            f"{'cpu µs/chk':>10} {'ratio':>6} {'cpu %':>6} {'rss MB':>7} {'foot MB':>7} {'failed':>6} "
            f"{'missed':>6}")
    lines = [head]
    for row in rows:
        if "error" in row:
            lines.append(f"{row['check']:5} {row['reals']:>6} {row['phase']}: ERROR {row['error']}")
            continue
        system = "bare" if row["phase"] == "bare" else f"{row['phase']} w={row['workers']}"
        lines.append(
            f"{row['check']:5} {row['reals']:>6} {system:10} {row['scheduled_per_s']:>8.0f} "
            f"{row['achieved_per_s']:>8.0f} {row['cpu_us_per_check'] or 0:>10.1f} "
            f"{row.get('ratio') or '':>6} {row['cpu_percent']:>6.1f} {row['rss_mb']:>7.1f} "
            f"{row.get('footprint_mb', 0):>7.1f} "
            f"{row['failed']:>6} {'' if row['missed'] is None else row['missed']:>6}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.probes", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reals", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--checks", nargs="+", choices=("tcp", "http"), default=["tcp", "http"])
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--quiet-after", type=int, default=0,
                        help="the watches' quiet_after (a balancer's: max(rise, fall), 3 by "
                             "kglb's defaults): steady results folded; 0: every result delivered")
    parser.add_argument("--port", type=int, default=20080)
    parser.add_argument("--server", choices=SERVER_CHOICES, default="auto")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON too")
    parser.add_argument("--phase", choices=("bare", "prober", "lean"), help=argparse.SUPPRESS)
    parser.add_argument("--check", choices=("tcp", "http"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from benchmarks._reals import raise_nofile_limit

    raise_nofile_limit()
    if args.phase:  # one measurement, in this process
        args.reals, args.workers = args.reals[0], args.workers[0]
        print(json.dumps(trio.run(_phase, args)))
        return 0
    rows = []
    with tempfile.TemporaryDirectory(prefix="kglb-probes-") as tmp:
        with run_reals(tuple(addresses(max(args.reals))), (), port=args.port, protocol="http",
                       workdir=Path(tmp) / "reals", server=args.server) as info:
            print(f"reals: {info.description}; interval {args.interval}s, "
                  f"{args.seconds}s measured after {args.warmup}s, concurrency {args.concurrency}",
                  flush=True)
            for check in args.checks:
                for n in args.reals:
                    bare = _run_phase(args, "bare", check, n, 0)
                    rows.append(bare)
                    systems = [("prober", w) for w in args.workers]
                    if 0 in args.workers:
                        systems.insert(args.workers.index(0) + 1, ("lean", 0))
                    for phase, workers in systems:
                        row = _run_phase(args, phase, check, n, workers)
                        if bare.get("cpu_us_per_check") and row.get("cpu_us_per_check"):
                            row["ratio"] = round(row["cpu_us_per_check"] / bare["cpu_us_per_check"], 2)
                        rows.append(row)
                    print(_table(rows[-1 - len(systems):]).split("\n", 1)[1], flush=True)
    print()
    print(_table(rows))
    print()
    print("issue 15 targets (ratios to the bare checker of this run; see GO_US, BARE_US):")
    print("\n".join(targets(rows)))
    if args.json:
        print(json.dumps(rows, indent=1))
    return 0 if all("error" not in row for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
