"""Probes sharded over worker processes (``Prober(workers=N)``).

The Prober keeps the watchers, delivery and statistics; each distinct target
is assigned to the least loaded worker, whose process (``python -m
actors.probe_worker``, its own trio.run) runs the probe and sends the
results back in batches (:mod:`actors._probe_pipe`). A worker that dies is
counted as a crash in the shared restart budget (logged, in ``restarts`` and
``actor_restarts_total``, and past the intensity the process stops), then
restarted with backoff and re-sent every target it had, so watchers only see
a gap. A balancer's concurrency limit is split evenly over the workers.

Times are re-stamped on arrival: each process's trio clock has its own offset.
"""

from __future__ import annotations

import itertools
import math
import socket
import subprocess
import sys
import time
import weakref
from collections import Counter
from dataclasses import dataclass

import trio

from kglb import CheckResult, ProbeResult

from . import _probe_pipe
from ._probe_pipe import UnwatchCommand, WatchCommand, WorkerReport, WorkerResult

_BACKOFF_FIRST = 0.5
_BACKOFF_MAX = 10.0
_YIELD_EVERY = 256  # results delivered between two checkpoints
#: A sharded probe's number across the pipe: never reused in this process (a result
#: of a probe unwatched since must not reach a new one), kept when it moves.
_probe_ids = itertools.count()


class ProbeWorkerExited(Exception):
    """A probe worker process ended (it runs until its Prober is gone)."""

    def __init__(self, code: int | None) -> None:
        super().__init__(f"probe worker exited with status {code}")
        self.code = code


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerStatistics:
    index: int
    pid: int | None  # None while (re)starting
    targets: int
    in_flight: int
    missed: int
    checks: int  # completed (as of the last report)
    restarts: int


class _Worker:
    def __init__(self, index: int) -> None:
        self.index = index
        self.probes: dict = {}  # probe id -> Probe
        # Unbounded: watch() never blocks, and the queue is emptied at every restart.
        self.send, self.receive = trio.open_memory_channel(math.inf)
        self.pid: int | None = None
        self.in_flight = 0
        self.missed = 0  # reported by the current process
        self.missed_before = 0  # by the processes before it
        self.by_reason: dict[str, int] = {}
        self.by_reason_before: Counter[str] = Counter()  # per reason
        self.restarts = 0

    def checks_done(self) -> tuple[int, Counter[str]]:
        by_reason = self.by_reason_before + Counter(self.by_reason)
        return sum(by_reason.values()), by_reason

    def statistics(self) -> WorkerStatistics:
        return WorkerStatistics(
            index=self.index,
            pid=self.pid,
            targets=len(self.probes),
            in_flight=self.in_flight,
            missed=self.missed_before + self.missed,
            checks=self.checks_done()[0],
            restarts=self.restarts,
        )


def _check_spec(check) -> str:
    spec = f"{check.__module__}:{check.__qualname__}"
    if "<" in spec:
        raise ValueError(f"a sharded check must be a module-level function, not {spec}")
    return spec


class _LimiterNames:
    """A number per limiter, for the workers (a limiter cannot cross the pipe).

    Numbers are never reused (``id()`` is, once a limiter is gone), and a
    limiter no longer used by any probe is forgotten with it.
    """

    def __init__(self) -> None:
        self._names: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._next = itertools.count()

    def name(self, limiter: trio.CapacityLimiter) -> int:
        name = self._names.get(limiter)
        if name is None:
            name = self._names[limiter] = next(self._next)
        return name


class Shards:
    """The worker processes of one Prober (none when ``count`` is 0)."""

    def __init__(self, prober, count: int, check, jitter: float, sources: dict,
                 fold_period: float) -> None:
        self._prober = prober
        self._workers = [_Worker(index) for index in range(count)]
        self._limiters = _LimiterNames()
        self._budget = None  # set by start()
        self._command = []
        if count:
            self._command = [sys.executable, "-m", "actors.probe_worker", _check_spec(check),
                             "--jitter", str(jitter), "--workers", str(count),
                             "--fold-period", str(fold_period)]
            for flag, family in (("--source-v4", socket.AF_INET), ("--source-v6", socket.AF_INET6)):
                if sources.get(family):
                    self._command += [flag, sources[family]]

    def __len__(self) -> int:
        return len(self._workers)

    async def start(self, nursery: trio.Nursery, budget) -> None:
        """Start every worker process; their exits count against ``budget`` (a
        :class:`actors.supervisor.RestartBudget`, shared with every actor; None:
        one of these workers' own, made at their first exit)."""
        self._budget = budget
        for worker in self._workers:
            nursery.start_soon(self._supervise, worker)

    def _crashed(self, worker: _Worker, now: float, code: int | None) -> None:
        if self._budget is None:
            # Imported at the first exit only: the supervisor's imports (metrics,
            # balancers, structlog) are ~10 MB of RSS that a Prober run on its own
            # (a probe worker's, or benchmarks/probes.py's) does without.
            from .supervisor import RestartBudget

            self._budget = RestartBudget()
        self._budget.crashed(f"probe worker {worker.index}", now, ProbeWorkerExited(code))

    def _watch_command(self, probe) -> WatchCommand:
        limiter = probe.limiter
        return WatchCommand(probe_id=probe.id, target=probe.target, interval=probe.interval,
                            limiter=self._limiters.name(limiter), tokens=limiter.total_tokens,
                            quiet_after=probe.quiet_after)

    def assign(self, probe) -> None:
        if probe.id is None:
            probe.id = next(_probe_ids)
        worker = min(self._workers, key=lambda w: len(w.probes))
        probe.shard = worker
        worker.probes[probe.id] = probe
        worker.send.send_nowait(self._watch_command(probe))

    def update(self, probe) -> None:
        if probe.shard is not None:
            probe.shard.send.send_nowait(self._watch_command(probe))

    def release(self, probe) -> None:
        if probe.shard is not None:
            del probe.shard.probes[probe.id]
            probe.shard.send.send_nowait(UnwatchCommand(probe_id=probe.id))

    def statistics(self) -> tuple[WorkerStatistics, ...]:
        return tuple(worker.statistics() for worker in self._workers)

    def checks_done(self) -> list[tuple[int, Counter[str]]]:
        return [worker.checks_done() for worker in self._workers]

    async def _supervise(self, worker: _Worker) -> None:
        backoff = _BACKOFF_FIRST
        while True:
            started = trio.current_time()
            code = await self._run_process(worker)
            worker.restarts += 1
            now = trio.current_time()
            if now - started > 60:
                backoff = _BACKOFF_FIRST  # it ran fine for a while: not a crash loop
            # Logged ("actor crashed") and counted like any actor's crash (restarts,
            # actor_restarts_total); past the shared intensity this raises, and the
            # process stops as for any crash loop.
            self._crashed(worker, now, code)
            await trio.sleep(backoff)
            backoff = min(backoff * 2, _BACKOFF_MAX)

    async def _run_process(self, worker: _Worker) -> int | None:
        process = await trio.lowlevel.open_process(
            self._command, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        worker.pid = process.pid
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._feed, worker, process.stdin)
                await self._collect(worker, process.stdout)
                nursery.cancel_scope.cancel()
        finally:
            worker.pid = None
            worker.in_flight = 0
            worker.missed_before += worker.missed
            worker.missed = 0
            worker.by_reason_before.update(worker.by_reason)
            worker.by_reason = {}
            with trio.CancelScope(shield=True):
                process.kill()
                await process.wait()
                await process.stdin.aclose()
                await process.stdout.aclose()
        return process.returncode

    async def _feed(self, worker: _Worker, stdin: trio.abc.SendStream) -> None:
        # What was queued for a previous process is superseded by this resync
        # (no checkpoint between the drain and the snapshot).
        while True:
            try:
                worker.receive.receive_nowait()
            except trio.WouldBlock:
                break
        batch = [self._watch_command(probe) for probe in worker.probes.values()]
        try:
            while True:
                if batch:
                    data = _probe_pipe.encode(tuple(batch))
                    batch = []  # not kept while waiting (a resync is 5k commands)
                    await stdin.send_all(data)
                batch = [await worker.receive.receive()]
                while True:
                    try:
                        batch.append(worker.receive.receive_nowait())
                    except trio.WouldBlock:
                        break
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return  # the process died: _collect sees EOF and the supervisor restarts it

    async def _collect(self, worker: _Worker, stdout: trio.abc.ReceiveStream) -> None:
        reader = _probe_pipe.FrameReader(stdout)
        while (report := await reader.receive()) is not None:
            if not isinstance(report, WorkerReport):
                raise TypeError(f"a probe worker sent {type(report).__name__}, not a WorkerReport")
            worker.in_flight, worker.missed = report.in_flight, report.missed
            worker.by_reason = report.by_reason
            now = trio.current_time()
            # Both trio clocks are perf_counter (CLOCK_MONOTONIC, one for all
            # processes) plus an offset of their own.
            shift = (now - time.perf_counter()) - report.clock
            for n, r in enumerate(urgent_first(report.results), 1):
                if n % _YIELD_EVERY == 0:  # a large frame must not hold the loop
                    await trio.lowlevel.checkpoint()
                probe = worker.probes.get(r.probe_id)
                if probe is not None:  # else unwatched since
                    # Unpickled reasons are fresh strings; 10k kept copies of "ok" add up.
                    result = CheckResult(passed=r.passed, reason=sys.intern(r.reason),
                                         latency=r.latency)
                    message = ProbeResult(target=probe.target, result=result,
                                          at=min(r.at + shift, now), folded=r.folded)
                    await self._prober.forward(probe, message)


def urgent_first(results: tuple[WorkerResult, ...]) -> tuple[WorkerResult, ...]:
    """A report's results with those that may change a real's health first.

    A result that is not folded may decide a weight; the folded ones (each
    target's steady results, released every ~10 s) only add to counters, and a
    report can hold hundreds. A result moves ahead of other targets' results
    only: one with a result of its own target held back before it stays after
    that one, so each target's results keep their order.
    """
    first: list[WorkerResult] = []
    rest: list[WorkerResult] = []
    behind: set[int] = set()  # probe ids with a result in ``rest``
    for result in results:
        if not result.folded and result.probe_id not in behind:
            first.append(result)
        else:
            rest.append(result)
            behind.add(result.probe_id)
    return (*first, *rest) if first and rest else results
