"""A probe worker process: ``python -m actors.probe_worker MODULE:FUNCTION [options]``.

Started and supervised by a Prober with ``workers > 0`` (see
:mod:`actors._probe_shards`). It reads command batches on stdin, runs an
in-process Prober with the given check function, and writes result batches
to stdout (:mod:`actors._probe_pipe`). It exits when stdin closes, i.e. when
the Prober that started it is gone. Logs go to stderr: stdout is the pipe.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import sys
import time

import trio

from kglb.fold import FOLD_PERIOD

from . import _probe_pipe
from ._probe_pipe import UnwatchCommand, WatchCommand, WorkerReport, WorkerResult
from .probes import Prober

# Results are gathered this long before a report is written (fewer, larger frames),
# and a report goes out at least this often (in-flight counts). A result that is not
# folded may change a real's health: it goes at once, or _GATHER_URGENT after the
# last report.
_GATHER = 0.01
_GATHER_URGENT = 0.002
_REPORT_EVERY = 1.0


def _load(spec: str):
    module, _, name = spec.partition(":")
    target = importlib.import_module(module)
    for part in name.split("."):
        target = getattr(target, part)
    return target


class _Outbox:
    """Results waiting for the pipe, tagged with their probe id."""

    def __init__(self) -> None:
        self.results: list[WorkerResult] = []
        self.ready = trio.Event()
        self.urgent = trio.Event()

    def take(self) -> list[WorkerResult]:
        results, self.results = self.results, []
        self.ready = trio.Event()
        self.urgent = trio.Event()
        return results


class _Tag:
    """What the worker's Prober sends one target's results to (a send channel's two
    methods): the result goes straight into the outbox with its probe id, with no
    channel and no lookup of the target on the way."""

    __slots__ = ("outbox", "probe_id")

    def __init__(self, outbox: _Outbox, probe_id: int) -> None:
        self.outbox = outbox
        self.probe_id = probe_id

    def send_nowait(self, message) -> None:
        r = message.result
        self.outbox.results.append(WorkerResult(
            probe_id=self.probe_id, passed=r.passed, reason=r.reason, latency=r.latency,
            at=message.at, folded=message.folded))
        self.outbox.ready.set()
        if not message.folded:
            self.outbox.urgent.set()

    async def send(self, message) -> None:
        self.send_nowait(message)


class _Worker:
    def __init__(self, prober: Prober, shares: int, outbox: _Outbox) -> None:
        self.prober = prober
        self.shares = shares
        self.outbox = outbox
        self.watches = {}  # probe id -> Watch
        self.limiters: dict[int, trio.CapacityLimiter] = {}

    def apply(self, command: WatchCommand | UnwatchCommand) -> None:
        if isinstance(command, UnwatchCommand):
            watch = self.watches.pop(command.probe_id, None)
            if watch is not None:
                watch.cancel()
            return
        if not isinstance(command, WatchCommand):
            raise TypeError(f"not a probe worker command: {type(command).__name__}")
        share = max(1, math.ceil(command.tokens / self.shares))
        limiter = self.limiters.get(command.limiter)
        if limiter is None:
            limiter = self.limiters[command.limiter] = trio.CapacityLimiter(share)
        elif limiter.total_tokens != share:
            limiter.total_tokens = share
        probe_id = command.probe_id
        old = self.watches.get(probe_id)
        # The new watch first: the probe keeps running, with the new interval.
        self.watches[probe_id] = self.prober.watch(
            command.target, interval=command.interval, limiter=limiter,
            send=_Tag(self.outbox, probe_id), quiet_after=command.quiet_after,
        )
        if old is not None:
            old.cancel()


async def _read_commands(worker: _Worker, stdin: trio.abc.ReceiveStream) -> None:
    reader = _probe_pipe.FrameReader(stdin)
    while (batch := await reader.receive()) is not None:
        for command in batch:
            worker.apply(command)


async def _write_reports(worker: _Worker, stdout: trio.abc.SendStream) -> None:
    written = -math.inf
    while True:
        with trio.move_on_after(_REPORT_EVERY):
            await worker.outbox.ready.wait()
            with trio.move_on_after(_GATHER):
                await worker.outbox.urgent.wait()
                # At once, unless a report just went: a burst of changes (every
                # real coming up at start) still makes few, larger frames.
                await trio.sleep_until(written + _GATHER_URGENT)
        in_flight, missed = worker.prober.counters()
        # Counted here, as checked: the folded results reach the Prober later.
        # The clock's offset lets the Prober place each result's time on its own clock.
        report = WorkerReport(results=tuple(worker.outbox.take()), in_flight=in_flight,
                              missed=missed, by_reason=worker.prober.checks_done()[1],
                              clock=trio.current_time() - time.perf_counter())
        await stdout.send_all(_probe_pipe.encode(report))
        written = trio.current_time()


async def serve(check, *, jitter: float, shares: int, sources: dict, fold_period: float) -> None:
    stdin = trio.lowlevel.FdStream(os.dup(0))
    stdout = trio.lowlevel.FdStream(os.dup(1))
    os.dup2(2, 1)  # a stray print must not corrupt the pipe
    # lean: tcp/http off trio tasks; results are folded here, before the pipe
    prober = Prober(check=check, jitter=jitter, fold_period=fold_period, **sources)
    worker = _Worker(prober, shares, _Outbox())
    async with trio.open_nursery() as nursery:
        await nursery.start(prober.run)
        nursery.start_soon(_write_reports, worker, stdout)
        await _read_commands(worker, stdin)
        nursery.cancel_scope.cancel()  # stdin closed: our Prober is gone


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m actors.probe_worker")
    parser.add_argument("check", help="MODULE:FUNCTION, the check function")
    parser.add_argument("--jitter", type=float, default=0.1)
    parser.add_argument("--workers", type=int, default=1, help="how many workers share limits")
    parser.add_argument("--fold-period", type=float, default=FOLD_PERIOD)
    parser.add_argument("--source-v4")
    parser.add_argument("--source-v6")
    args = parser.parse_args(argv)
    sources = {"source_v4": args.source_v4, "source_v6": args.source_v6}
    try:
        trio.run(lambda: serve(_load(args.check), jitter=args.jitter, shares=args.workers,
                               sources=sources, fold_period=args.fold_period))
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
