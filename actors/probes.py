"""The probing layer: one probe per distinct ProbeTarget, results to every watcher.

Theory of operation. The Prober is an actor: a balancer sends
``Watch(target=, interval=, limiter=, send=)`` to its ``inbox`` for each real
it checks, and ``Unwatch(target=, send=)`` when it stops; code in the
Prober's own task may call ``watch()`` instead. The first watch of a target
starts its probe on the probe driver (:mod:`actors._lean_engine`), which
checks at once and then every ``interval`` seconds on the one schedule of
:mod:`kglb.schedule`: each gap stretched or shrunk by a random factor within
±``jitter``, the first spread over a whole interval (½ to 1½ intervals), so
that the thousands of probes a config load starts together do not check in
bursts ever after. ``jitter=0`` makes it all exact.
Each check holds a token of the balancer's CapacityLimiter (kglb's
concurrency_limit) and its ProbeResult is sent to every watcher of the target.
There is no round barrier: a slow or hanging real delays only its own probe.

Several watchers of one target (two balancers with the same real and check)
share its probe: it runs at the shortest of their intervals, under the
limiter of the oldest watcher. An Unwatch stops delivery at once; the
probe ends when its last watcher is gone. A watcher whose channel is closed
is cancelled. A result goes into the channel's buffer without a scheduling
round; when the buffer is full, that target's probe pauses until it is
delivered: a consumer that does not keep up slows its targets' probes
(backpressure) rather than losing results. Consumers should drain their
channel with ``receive_nowait()`` after each ``receive()``: every
``receive()`` costs a whole trio scheduling round, and with thousands of
results waiting a one-at-a-time consumer falls behind (measured: 30 results/s
consumed of 3000/s produced).

A watcher may pass ``quiet_after`` (a balancer: ``max(rise, fall)``): once
that many results in a row agree, its target's further equal results are
folded (:mod:`kglb.fold`), delivered together at most every
``kglb.fold.FOLD_PERIOD`` seconds as one ProbeResult whose ``folded`` holds
their latencies. A change of outcome goes out at once. At 10k reals this
turns 10k deliveries per second into about 1k (``python -m benchmarks e2e``).
A target is folded only if every watcher asked for it, after the largest
``quiet_after`` of them; a new watcher gets its next ``quiet_after`` results.

With ``workers=N`` the probes run in N worker processes instead
(:mod:`actors._probe_shards`), each on its own driver: the watchers, delivery
and statistics stay here, the checks run there. Use it above about
``SHARD_THRESHOLD`` checks per second (see :func:`suggested_workers`).

With ``lean`` on (the default) and the stock ``run_check``, tcp and
plain-http checks (a real named by a host name too: it is resolved first)
run as state machines on the driver's epoll, no task per check, at a
fraction of the CPU (benchmarks/probes.py), with due times to within its 20 ms
grain (every check's: see "Precision" in actors/_lean_engine.py); the other checks, and any injected check function, run as one task per
check started by the driver. ``run_check`` drives the same state machines for
tcp and plain http, so each has one implementation; every path reports the
same reasons for the same bytes (tests/unit/test_probe_conformance.py).
"""

from __future__ import annotations

import math
import random
import socket
import types
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import trio

from kglb import CheckResult, ProbeResult, ProbeTarget
from kglb.fold import FOLD_PERIOD, Fold

from . import _probe_shards
from ._probe_watch import Probe, Subscription, Unwatch, Watch
from ._lean_engine import LeanEngine
from .checks import TUNNEL_SOURCES, run_check

CheckFunction = Callable[[ProbeTarget], Awaitable[CheckResult]]

#: Scheduled checks per second above which probes should leave the main process.
#: benchmarks/probes.py (2 shared cores): in-process, a trio-checker check costs
#: ~280-340 µs of CPU with its scheduling and delivery, so 2000/s is ~60% of a core,
#: and the main process also runs the balancers, the generator and the writer. The
#: lean engine's tcp/http checks cost 60-90 µs at 10k/s (150-180 at 1k/s, where its
#: wake-ups dominate): in-process it keeps up with 10k/s on an idle core, but
#: workers keep the main process responsive.
SHARD_THRESHOLD = 2000.0
_FOLD_SPREAD = 0.5  # a target's fold period is within ±50% of the Prober's
_FOLD_PERIODS = 64  # evenly spread over that range


#: Checks per second one worker process is given. With steady results folded,
#: one worker kept up with 10k http checks a second on this 2-vCPU machine and
#: topped out at ~12k (python -m benchmarks e2e --reals 10000,14000
#: --probe-workers 1), its reals served by nginx on the same two vCPUs.
PER_WORKER = 10000.0


def suggested_workers(checks_per_second: float, cpus: int) -> int:
    """How many worker processes to probe ``checks_per_second`` with (0: in-process)."""
    if checks_per_second < SHARD_THRESHOLD or cpus < 2:
        return 0
    return min(cpus, math.ceil(checks_per_second / PER_WORKER))


@dataclass(frozen=True, slots=True, kw_only=True)
class ProberStatistics:
    checks: int  # checks completed
    by_reason: Mapping[str, int]  # completed checks per reason ("ok" for passes)
    in_flight: int  # checks running now
    targets: int  # distinct targets being probed
    watches: int
    missed: int  # intervals in which a due check could not start (limiter, slow real)
    workers: tuple[_probe_shards.WorkerStatistics, ...] = ()


class Prober:
    """Runs the probes of every watched target; see the module docstring.

    ``check`` is the check function (injectable: the control plane is tested
    with fake checks in virtual time; with workers it must be a module-level
    function the workers can import). ``source_v4``/``source_v6`` are the
    source addresses of tunnelled checks (None: the address the kernel uses
    to reach the real). ``lean`` runs tcp and plain-http checks as the driver's
    state machines (only with the stock ``run_check``; see the module docstring).
    ``fold_period`` is the longest a folded result waits (:mod:`kglb.fold`).
    """

    def __init__(
        self,
        check: CheckFunction = run_check,
        jitter: float = 0.1,
        workers: int = 0,
        source_v4: str | None = None,
        source_v6: str | None = None,
        lean: bool = True,
        fold_period: float = FOLD_PERIOD,
    ) -> None:
        if not 0 <= jitter < 1:
            raise ValueError("jitter must be in [0, 1)")
        if fold_period < 0:
            raise ValueError("fold_period must be >= 0")
        if workers < 0:
            raise ValueError("workers must be >= 0")
        self._jitter = jitter
        self._sources = {socket.AF_INET: source_v4, socket.AF_INET6: source_v6}
        self._probes: dict[ProbeTarget, Probe] = {}
        self._nursery: trio.Nursery | None = None
        self._checks = 0
        self._by_reason: Counter[str] = Counter()
        self._fold_period = fold_period
        self._fold_periods = [fold_period * (1 - _FOLD_SPREAD + 2 * _FOLD_SPREAD * step
                                             / (_FOLD_PERIODS - 1)) for step in range(_FOLD_PERIODS)]
        self._check = check
        self._shards = self._new_shards(workers)
        self._wanted_workers = workers
        self._reshard: trio.CancelScope | None = None
        self._lean_checks = lean
        self._driver: LeanEngine | None = None  # in-process only, while running
        # Unbounded: a balancer must never block on the Prober, and it sends at most
        # one message per real added or removed.
        self.inbox, self._inbox = trio.open_memory_channel[Watch | Unwatch](math.inf)
        self._missed_before = 0  # by the drivers of earlier runs

    def _new_shards(self, workers: int) -> _probe_shards.Shards:
        return _probe_shards.Shards(self, workers, self._check, self._jitter, self._sources,
                                    self._fold_period)

    def _new_fold(self, quiet_after: int) -> Fold | None:
        if not quiet_after:
            return None  # nothing to fold (a Fold per target is ~200 B)
        # Each its own period: targets watched together (a config load) settle
        # together, and equal periods would release their results in bursts. One of
        # _FOLD_PERIODS periods, not a float per target (24 bytes each).
        if not self._jitter:
            return Fold(quiet_after, period=self._fold_period)  # jitter=0: all exact
        step = random.randrange(_FOLD_PERIODS)
        return Fold(quiet_after, period=self._fold_periods[step])

    def _refold(self, probe: Probe) -> None:
        """``probe``'s watchers changed: fold by their rule, and let the next results
        through (sharded: its worker does, told by ``Shards.update``)."""
        if self._shards:
            self._shards.update(probe)
        elif probe.fold is not None:
            probe.fold.restart(probe.quiet_after)  # what it holds goes with the next result
        else:
            probe.fold = self._new_fold(probe.quiet_after)

    def _new_driver(self) -> LeanEngine | None:
        if self._shards:
            return None  # each worker has its own
        return LeanEngine(self._deliver, check=self._check, lean=self._lean_checks,
                          jitter=self._jitter)

    async def run(self, *, budget=None,
                  task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Run the probes (and the worker processes) until cancelled.

        ``budget`` (an ``actors.supervisor.RestartBudget``) counts the worker
        processes' exits with every actor's crashes (None: a budget of its own).
        A Supervisor may run this again after a crash: every probe watched so
        far starts again, at once. :meth:`set_workers` restarts it the same way.
        """
        while True:
            if self._wanted_workers != len(self._shards):
                self._move_to(self._wanted_workers)
            with trio.CancelScope() as self._reshard:
                await self._run(budget, task_status)
            # Here only when set_workers cancelled the scope (a shutdown cancels an
            # outer one too, and its Cancelled leaves this loop): move, run again.
            task_status = trio.TASK_STATUS_IGNORED  # started already

    async def _run(self, budget, task_status) -> None:
        driver = self._driver = self._new_driver()
        try:
            async with trio.open_nursery() as nursery:
                await self._shards.start(nursery, budget)
                if driver is not None:
                    await nursery.start(self._run_driver)
                    for probe in self._probes.values():  # none, unless restarted
                        driver.add(probe)
                self._nursery = nursery
                task_status.started()
                async for message in self._inbox:  # never ends: self.inbox stays open
                    self._apply(message)
        finally:
            self._nursery = None
            self._driver = None
            if driver is not None:
                self._missed_before += driver.missed  # a restart keeps the count

    def set_workers(self, workers: int) -> None:
        """Probe in ``workers`` processes from now on (0: in-process), as at start with
        that count: a reload calls this with the count its config asks for. Every
        probe moves at once (its next check comes at once); nothing is lost but
        the checks in flight."""
        if workers < 0:
            raise ValueError("workers must be >= 0")
        self._wanted_workers = workers
        if workers != len(self._shards) and self._reshard is not None:
            self._reshard.cancel()

    def _move_to(self, workers: int) -> None:
        # Keep what the old workers counted (their statistics go with them).
        for checks, by_reason in self._shards.checks_done():
            self._checks += checks
            self._by_reason.update(by_reason)
        self._missed_before += sum(shard.missed for shard in self._shards.statistics())
        self._shards = self._new_shards(workers)
        for probe in self._probes.values():
            probe.shard = None
            if self._shards:
                probe.fold = None  # its worker folds
                self._shards.assign(probe)
            elif probe.fold is None:
                probe.fold = self._new_fold(probe.quiet_after)

    def watch(
        self,
        target: ProbeTarget,
        *,
        interval: float,
        limiter: trio.CapacityLimiter,
        send: trio.MemorySendChannel[ProbeResult],
        quiet_after: int = 0,
    ) -> Subscription:
        """Deliver ``target``'s results to ``send`` until the returned Subscription is
        cancelled. For code in the Prober's own task (a probe worker, tests); actors
        send :class:`Watch` and :class:`Unwatch` to :attr:`inbox` instead.

        ``send`` is a MemorySendChannel (anything with ``send_nowait`` and
        ``send``); ``limiter`` bounds the checks in flight of this watcher's
        balancer; ``quiet_after`` > 0 allows folding (see the module docstring).
        Never blocks. Raises RuntimeError when the prober is not running.
        """
        if self._nursery is None:
            raise RuntimeError("the prober is not running")
        if interval <= 0:
            raise ValueError("interval must be > 0")
        if quiet_after < 0:
            raise ValueError("quiet_after must be >= 0")
        watch = Subscription(self, target, interval, limiter, send, quiet_after)
        probe = self._probes.get(target)
        if probe is None:
            probe = self._probes[target] = Probe(target)
            probe.watchers = (watch,)
            if self._shards:
                self._shards.assign(probe)
                return watch
            probe.fold = self._new_fold(quiet_after)
            self._driver.add(probe)
        else:
            probe.watchers += (watch,)
            self._refold(probe)
        return watch

    def _apply(self, message: Watch | Unwatch) -> None:
        # The watch of this target and channel, found among the target's few watchers
        # (a dict of them was ~100 bytes per target).
        probe = self._probes.get(message.target)
        old = None if probe is None else next(
            (watch for watch in probe.watchers if watch.send is message.send), None)
        if isinstance(message, Watch):
            # The new subscription first: the probe keeps running, with the new settings.
            self.watch(message.target, interval=message.interval, limiter=message.limiter,
                       send=message.send, quiet_after=message.quiet_after)
        if old is not None:
            old.cancel()

    def _unwatch(self, watch: Subscription) -> None:
        probe = self._probes.get(watch.target)
        if probe is None or watch not in probe.watchers:
            return
        probe.watchers = tuple(w for w in probe.watchers if w is not watch)
        if probe.watchers:
            self._refold(probe)
            return
        # Forget the probe now, so a new watch of this target starts a fresh one.
        del self._probes[watch.target]
        if self._driver is not None:
            self._driver.remove(probe)
        self._shards.release(probe)

    def statistics(self) -> ProberStatistics:
        shards = self._shards.statistics()
        checks, by_reason = self.checks_done()
        return ProberStatistics(
            checks=checks,
            by_reason=types.MappingProxyType(by_reason),
            in_flight=self.counters()[0] + sum(shard.in_flight for shard in shards),
            targets=len(self._probes),
            watches=sum(len(probe.watchers) for probe in self._probes.values()),
            missed=self.counters()[1] + sum(shard.missed for shard in shards),
            workers=shards,
        )

    def checks_done(self) -> tuple[int, dict[str, int]]:
        """Checks completed, in all and per reason, counted where they ran (workers
        included, as of their last report): folded results are counted before
        they are delivered."""
        checks, by_reason = self._checks, Counter(self._by_reason)
        for worker_checks, worker_by_reason in self._shards.checks_done():
            checks += worker_checks
            by_reason.update(worker_by_reason)
        return checks, dict(by_reason)

    def counters(self) -> tuple[int, int]:
        """(in flight, missed) of the in-process probes, cheaply (for worker reports)."""
        if self._driver is None:
            return 0, self._missed_before
        return self._driver.in_flight, self._missed_before + self._driver.missed

    async def _run_driver(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        TUNNEL_SOURCES.set(self._sources)  # read by every check's tunnel_source()
        await self._driver.run(task_status=task_status)

    def _outgoing(self, probe: Probe, result: CheckResult, at: float) -> tuple[ProbeResult, ...]:
        """Record one check of an in-process probe; the messages its watchers get now."""
        message = ProbeResult(target=probe.target, result=result, at=at)
        self._checks += 1
        self._by_reason[result.reason] += 1
        fold = probe.fold
        return (message,) if fold is None else fold.add(message)

    def _deliver(self, probe: Probe, result: CheckResult, at: float) -> bool:
        """The driver's results: record and send without blocking; False: the probe
        waits until the watchers whose buffers were full have taken them."""
        late = self._send_nowait(probe, self._outgoing(probe, result, at))
        if late and self._nursery is not None:  # None: shutting down, nothing to wait for
            self._nursery.start_soon(self._send_late, late, probe)
        return not late

    async def forward(self, probe: Probe, message: ProbeResult) -> None:
        """Send a sharded ``probe``'s result (folded and counted by its worker)."""
        late = self._send_nowait(probe, (message,))
        if late:
            await self._send_late(late)

    @staticmethod
    def _send_nowait(probe: Probe, messages) -> dict[Subscription, list[ProbeResult]]:
        """Send ``messages`` to every watcher with room, with no scheduling round (the
        common case); return what did not fit, per watcher, in order."""
        late: dict[Subscription, list[ProbeResult]] = {}
        for message in messages:
            for watch in probe.watchers:  # a tuple: cancel() below replaces it
                if not watch.active:
                    continue
                if watch in late:  # keep each watcher's results in order
                    late[watch].append(message)
                    continue
                try:
                    watch.send.send_nowait(message)
                except trio.WouldBlock:
                    late[watch] = [message]
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    watch.cancel()
        return late

    async def _send_late(self, late: dict[Subscription, list[ProbeResult]], paused=None) -> None:
        """Wait until each watcher took its messages; then resume the ``paused`` probe."""
        for watch, messages in late.items():
            for message in messages:
                if watch.active:
                    try:
                        await watch.send.send(message)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        watch.cancel()
        if paused is not None and self._driver is not None:
            self._driver.resume(paused)
