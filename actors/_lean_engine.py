"""The probe driver: every in-process probe of a Prober, scheduled here (kglb.schedule).

How a check runs. tcp, plain-http and dummy checks (``_lean_checks.plan`` is
not None) are state machines on one private epoll, no task per check (a
target named by a host name is resolved first, in a task of its own, at each
check; a tunnel without a VIP address fails at once); every
other check (https, proxies, redirects, dns, syslog, or any injected check
function) runs as a task calling ``check(target) -> CheckResult``,
started here when due and reporting back here. Either way the schedule, the
limiter, missed intervals and delivery are this module's, once.

Why. A trio checkpoint costs ~15 µs on the reference machine and a cancel
scope ~28 µs, and the trio checkers spend several of each per check
(sleep, limiter, connect, send, receive, timeout), more than the check's
own syscalls. Here every check is a :class:`actors._lean_checks.Conn` on a
private edge-triggered epoll, its schedule and its timeout entries of two
heaps, and one trio task (:meth:`LeanEngine.run`) drives them all: it wakes
at the next timer, or every ``tick`` while checks are in flight, and does
what is due in one synchronous :meth:`LeanEngine.step` (a bounded amount: a
step behind its schedule yields to the other tasks and goes on at once). The
trio cost is per wake-up, not per check.

Precision. Timeouts and the end of a check in flight are seen to within a
tick (2 ms; a quarter of it while a limiter is full, when a token returned
sooner is a check started sooner); a latency is read on the clock itself, from
before the connect to when the engine saw the check end. Due times are kept
to within a coarser ``grain``: due checks start in batches at least a grain
apart (20 ms, or 2% of the shortest interval if that is less; an add starts
a batch at once). A check may start up to a grain late, never early; its
next due time is still its due time plus an interval, so the grain does not
stretch the period. Why: due times of thousands of probes are
all distinct, and at 1k checks/s a wake-up per 2 ms tick started two checks
and cost more than both (tcp on loopback: 82 µs of CPU per check with a 2 ms
wake-up, 49 µs with 20 ms; python -m benchmarks.probes, see its README).

Contract. A probe is an :class:`Entry` (the engine keeps its state on it, not
in an object of its own). ``add(probe)`` checks ``probe.target`` at once and then every
``probe.interval`` seconds (read at every check), on a
:class:`kglb.schedule.Schedule`: each gap scaled by a random factor within
±``jitter``, the first within ±½. A check holds
a token of ``probe.limiter`` (a trio.CapacityLimiter, shared with trio code:
taken with ``acquire_on_behalf_of_nowait``); a probe whose limiter is full
waits its turn here (FIFO); a task check that ends hands its token straight
to the next task check waiting for it, in its own task. A start a whole interval or more after its due
time counts the intervals as missed and restarts the schedule from now. Each
result goes to ``on_result(probe, result, now)``; when that returns False the
probe pauses until ``resume(probe)`` (backpressure). ``remove(probe)`` stops
a probe at once: a check in flight is closed (a task check cancelled) and
delivers nothing. A closed engine has given back every token; its probes may
be added to a new one.

``step(now)`` works on any clock (tests drive it by hand); :meth:`run` uses
trio's, so it also runs in virtual time, and holds the task checks' nursery.
"""

from __future__ import annotations

import heapq
import random
import select
from collections import deque
from collections.abc import Callable

import trio

from kglb import CheckResult
from kglb.schedule import Schedule

from ._lean_checks import Conn, Plan, needs_resolving, open_check, plan, resolved
from .checks import run_check
from .checks._net import reason_for

TICK = 0.002  # seconds between wake-ups (a quarter of it while a limiter is full)
#: How late a due time may start when nothing is in flight (see Precision): at
#: most this, and at most GRAIN_SHARE of the shortest interval of the engine.
GRAIN = 0.02
GRAIN_SHARE = 0.02
#: At most this many connects and this many completions per step: a step holds
#: the loop, and the worker's results reach the pipe only between steps. A
#: worker behind its schedule (100% busy) made 100-200 ms steps without a bound;
#: at 10k checks/s, check -> control plane p99 was ~45 ms with 64/256 and
#: ~15 ms with 16/64, for the same CPU per check (python -m benchmarks e2e).
STARTS_PER_STEP = 16
EVENTS_PER_POLL = 64


class Entry(Schedule):
    """A probe as the engine keeps it: its schedule and its check in flight.

    The engine's probes are Entries (the Prober's Probe is one), so a target
    costs no second object here (~150 bytes at 10k reals with its dict slot).
    A subclass has ``target``, ``interval`` (read at every check) and
    ``limiter``; what is here is the engine's, set by :meth:`LeanEngine.add`.
    """

    __slots__ = ("conn", "deadline", "held", "order", "period", "plan", "removed", "timer",
                 "waiting")

    def __init__(self) -> None:
        self.removed = True  # in no engine yet

    def _enter(self, plan, now: float, jitter: float, order: int) -> None:
        Schedule.__init__(self, now, jitter)
        self.order = order  # equal times go in the order the probes were added
        self.plan = plan  # None: a task check
        # In flight: a Conn (lean), a CancelScope (a task check), or the final reason
        # of a connect that failed at once.
        self.conn: Conn | trio.CancelScope | str | None = None
        self.held = None  # the limiter whose token the check in flight holds
        self.period = 0.0  # the probe's interval when its check in flight started
        # Its live items of the two heaps (None: none). An item whose entry holds
        # another is stale, and dropped when it reaches the top: no sequence numbers.
        self.timer: tuple[float, Entry] | None = None
        self.deadline: tuple[float, Entry] | None = None
        self.waiting = False  # queued for a limiter token
        self.removed = False

    def __lt__(self, other: Entry) -> bool:
        return self.order < other.order  # heap items with equal times


class LeanEngine:
    """Runs a Prober's probes; see the module docstring. Not thread-safe; one per Prober.

    ``check`` runs the checks that are not lean; ``lean=False`` runs every check
    that way (an injected check function always does: the lean plans are the
    stock checkers').
    """

    def __init__(
        self,
        on_result: Callable[[object, CheckResult, float], bool],
        *,
        check: Callable = run_check,
        lean: bool = True,
        jitter: float = 0.1,
        clock: Callable[[], float] = trio.current_time,
        tick: float = TICK,
        grain: float = GRAIN,
        rng: random.Random | None = None,
    ) -> None:
        self._on_result = on_result
        self._check = check
        self._lean = lean and check is run_check
        self._nursery: trio.Nursery | None = None  # of the task checks, while running
        self._jitter = jitter
        self._clock = clock
        self._tick = tick
        self._grain = max(grain, tick)
        self._batch = -float("inf")  # when the last batch of due checks started
        self._uniform = (rng or random.Random()).uniform
        self._epoll = select.epoll()
        self._flying: set[Entry] = set()  # the entries with a check in flight
        self._conns: dict[int, Entry] = {}  # fd -> entry with that (lean) check in flight
        self._dues: list[tuple[float, Entry]] = []
        # A check that ends leaves its item here (stale: see Entry).
        self._deadlines: list[tuple[float, Entry]] = []
        self._waiting: dict[object, deque[Entry]] = {}  # limiter -> entries queued for it
        self._added = 0  # probes added so far
        self._started = 0  # connects issued since the last poll
        self._budget = 0  # connects this step may still issue
        self._more = False  # this step left ready work for the next one
        self._wake = trio.Event()
        self.in_flight = 0
        self.missed = 0
        self.task_checks = 0  # checks started as a task calling ``check`` (not lean)

    def add(self, probe: Entry) -> None:
        """Start probing ``probe`` (its first check is due now)."""
        self._added += 1
        probe._enter(plan(probe.target) if self._lean else None, self._clock(), self._jitter,
                     self._added)
        self._fit_grain(probe.interval)
        self._schedule(probe)
        self._batch = -float("inf")  # its first check is due now, not a grain later
        self._wake.set()

    def remove(self, probe: Entry) -> None:
        """Stop probing ``probe`` (removed already: ignored); a check in flight delivers
        nothing."""
        if not probe.removed:
            probe.removed = True
            probe.timer = None
            if probe.conn is not None:
                self._end(probe)

    def resume(self, probe: Entry) -> None:
        """Schedule the next check of a probe paused by ``on_result`` returning False."""
        if not probe.removed and probe.timer is None and probe.conn is None:
            self._schedule(probe)
            self._wake.set()

    def _fit_grain(self, interval: float) -> None:
        # Only ever finer: the shortest interval seen since the engine started.
        self._grain = max(self._tick, min(self._grain, interval * GRAIN_SHARE))

    def fileno(self) -> int:
        """The engine's epoll fd: readable when a check in flight has news."""
        return self._epoll.fileno()

    def close(self) -> None:
        """Close every check in flight and give its token back. The probes are the
        caller's: it may add them to another engine."""
        for entry in list(self._flying):
            self.remove(entry)
        self._epoll.close()

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Drive the engine on trio's clock until cancelled (then close every socket)."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await self._drive()
        finally:
            self._nursery = None
            self.close()

    async def _drive(self) -> None:
        while True:
            now = trio.current_time()
            wake_at = self.step(now)
            if wake_at <= now:  # more is ready: let the other tasks run first
                await trio.lowlevel.checkpoint()
                continue
            # One cancel scope per wake-up (per tick at most), not per check.
            with trio.move_on_at(wake_at):
                await self._wake.wait()
            self._wake = trio.Event()

    def step(self, now: float) -> float:
        """Do what is due at ``now``; return when to step next (inf: only on add/resume).

        That is the next due time or deadline, at most a tick away while checks
        are in flight, and at least a tick away unless a limiter is full (due
        checks start in batches, a ``grain`` apart); or ``now`` itself when the
        step stopped at ``STARTS_PER_STEP`` connects or ``EVENTS_PER_POLL``
        completions with more ready.
        """
        self._budget = STARTS_PER_STEP
        self._more = False
        self._poll(now)
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            item = heapq.heappop(deadlines)
            entry = item[1]
            if entry.deadline is item:  # else that check ended already
                self._finish(entry, "timeout", now, entry.conn.started)
        dues = self._dues
        if dues and dues[0][0] <= now and now >= self._batch + self._grain:  # in batches
            while dues and dues[0][0] <= now:
                if self._budget <= 0:
                    self._more = True  # the batch goes on at the next step
                    break
                item = heapq.heappop(dues)
                entry = item[1]
                if entry.timer is item:
                    entry.timer = None
                    self._start(entry, now)
            else:
                self._batch = now
        for limiter, queue in list(self._waiting.items()):
            self._start_waiting(limiter, queue, now)
        if self._started:
            # The connects just issued often complete at once (a near real, or
            # loopback): sending their requests now saves a whole round of steps,
            # and a round is what a check holds its limiter token for.
            self._poll(now)
            for limiter, queue in list(self._waiting.items()):
                self._start_waiting(limiter, queue, now)
        # Stale deadlines (of checks that ended) must not wake the engine, nor
        # hold memory for a whole timeout: one check slow to end keeps those
        # behind it in the heap (27k entries, 3.8 MB at 10k checks/s), so the
        # heap is rebuilt when it is mostly stale (amortized O(1) per check).
        while deadlines and deadlines[0][1].deadline is not deadlines[0]:
            heapq.heappop(deadlines)
        if len(deadlines) > 2 * len(self._conns) + 64:
            deadlines[:] = [d for d in deadlines if d[1].deadline is d]
            heapq.heapify(deadlines)
        if self._more:
            return now  # at once, once the other tasks had their turn
        wake_at = min(max(dues[0][0], self._batch + self._grain) if dues else float("inf"),
                      deadlines[0][0] if deadlines else float("inf"))
        if self._conns:
            wake_at = min(wake_at, now + self._tick)
        if self._waiting:
            # The limiter is the bottleneck: its tokens come back faster when the
            # checks holding them are seen to end sooner.
            return min(wake_at, now + self._tick / 4)
        # Never sooner than a tick: the due times of thousands of probes are all
        # distinct, and a wake-up per due time would cost more than the checks.
        return max(wake_at, now + self._tick)

    def _poll(self, now: float) -> None:
        self._started = 0
        if self._conns:
            events = self._epoll.poll(0, EVENTS_PER_POLL)
            # Edge-triggered: the ones not returned stay ready for the next poll.
            self._more = self._more or len(events) == EVENTS_PER_POLL
            for fd, mask in events:
                entry = self._conns.get(fd)
                if entry is not None:
                    conn = entry.conn
                    reason = conn.advance(mask)
                    if reason is not None:
                        self._finish(entry, reason, now, conn.started)

    def _schedule(self, entry: Entry) -> None:
        item = entry.timer = (entry.due, entry)
        heapq.heappush(self._dues, item)

    def _start(self, entry: Entry, now: float) -> None:
        limiter = entry.limiter
        queue = self._waiting.get(limiter)
        if queue:  # others wait for this limiter already: FIFO
            entry.waiting = True
            queue.append(entry)
            return
        try:
            limiter.acquire_on_behalf_of_nowait(entry)
        except trio.WouldBlock:
            entry.waiting = True
            self._waiting.setdefault(limiter, deque()).append(entry)
            return
        self._run(entry, limiter, now)

    def _start_waiting(self, limiter, queue: deque, now: float) -> None:
        while queue:
            if self._budget <= 0:
                self._more = True
                return
            entry = queue[0]
            if entry.removed:
                queue.popleft()
                continue
            try:
                limiter.acquire_on_behalf_of_nowait(entry)
            except trio.WouldBlock:
                return
            queue.popleft()
            entry.waiting = False
            self._run(entry, limiter, now)
        del self._waiting[limiter]

    def _claim(self, entry: Entry, limiter, now: float) -> None:
        """``entry``'s check starts now, holding a token of ``limiter``."""
        interval = entry.period = entry.interval
        if interval * GRAIN_SHARE < self._grain:
            self._fit_grain(interval)
        self.missed += entry.start(now, interval)
        entry.held = limiter
        self._flying.add(entry)
        self.in_flight += 1
        self._budget -= 1

    def _run(self, entry: Entry, limiter, now: float) -> None:
        self._claim(entry, limiter, now)
        if entry.plan is None:
            self.task_checks += 1
            entry.conn = scope = trio.CancelScope()
            self._nursery.start_soon(self._task_check, entry, scope)
            return
        # The clock itself, not the step's ``now``: a check that ends within the
        # step it started in (tcp on loopback) has a latency, not 0.0.
        started = self._clock()
        if needs_resolving(entry.plan):
            entry.conn = scope = trio.CancelScope()
            self._nursery.start_soon(self._resolve, entry, scope, now + entry.plan.timeout,
                                     started)
            return
        self._open(entry, entry.plan, now, now + entry.plan.timeout, started)

    def _open(self, entry: Entry, plan: Plan, now: float, deadline: float,
              started: float) -> None:
        conn = open_check(entry.target, plan)
        entry.conn = conn
        if isinstance(conn, str):
            self._finish(entry, conn, now, started)
            return
        conn.started = started  # on the Conn: a float per target less while idle
        self._conns[conn.fd] = entry
        self._epoll.register(conn.fd, conn.events)
        self._started += 1
        item = entry.deadline = (deadline, entry)
        heapq.heappush(self._deadlines, item)

    async def _resolve(self, entry: Entry, scope: trio.CancelScope, deadline: float,
                       started: float) -> None:
        """Resolve ``entry``'s host name (the check's timeout bounds it), then check the
        address on the epoll like any other; a name that does not resolve is "resolve"."""
        found, reason = None, "timeout"
        with scope, trio.move_on_at(deadline):  # scope: cancelled by remove()
            try:
                found = await resolved(entry.plan)
            except OSError as exc:
                reason = reason_for(exc)
        if entry.conn is not scope:  # removed meanwhile: its token is back
            return
        now = trio.current_time()
        if found is None:
            self._finish(entry, reason, now, started)
        else:
            self._open(entry, found, now, deadline, started)
        self._wake.set()  # a Conn to poll, or new due times

    async def _task_check(self, entry: Entry, scope: trio.CancelScope) -> None:
        """Run ``entry``'s check; then, while task checks wait for its token, theirs.

        Why the handover. A token given back here would wait for the engine's
        next step to be taken again (one scheduling round to wake the engine,
        one more for the task it starts): under a full limiter every check held
        its token two rounds longer than it ran, and on a loaded host a round
        is milliseconds. Here the next waiter starts in this task, at once.
        """
        while entry is not None:
            with scope:  # cancelled by remove(): nothing is delivered
                result = await self._check(entry.target)
            if entry.conn is not scope:  # removed meanwhile: its token is back
                break
            now = trio.current_time()
            limiter = entry.held
            self._complete(entry, result, now)
            entry = self._hand_over(limiter, now)
            if entry is not None:
                scope = entry.conn = trio.CancelScope()
        # The next due times are new, and lean checks may wait for a token.
        self._wake.set()

    def _hand_over(self, limiter, now: float) -> Entry | None:
        """The first task check waiting for ``limiter``, claimed with a token; or None
        (nothing waits, the first waiter is a lean check, or the token went elsewhere)."""
        queue = self._waiting.get(limiter)
        while queue and queue[0].removed:
            queue.popleft()
        if not queue:
            self._waiting.pop(limiter, None)
            return None
        entry = queue[0]
        if entry.plan is not None:
            return None  # the engine starts it at its next step
        try:
            limiter.acquire_on_behalf_of_nowait(entry)
        except trio.WouldBlock:  # a trio task waiting on the limiter took it
            return None
        queue.popleft()
        if not queue:
            del self._waiting[limiter]
        entry.waiting = False
        self._claim(entry, limiter, now)
        return entry

    def _end(self, entry: Entry) -> None:
        """Close the check in flight and give its token back."""
        conn = entry.conn
        entry.conn = None
        if isinstance(conn, trio.CancelScope):
            conn.cancel()
        elif not isinstance(conn, str):
            del self._conns[conn.fd]
            conn.close()
            entry.deadline = None
        self.in_flight -= 1
        self._flying.discard(entry)
        entry.held.release_on_behalf_of(entry)
        entry.held = None

    def _finish(self, entry: Entry, reason: str, now: float, started: float) -> None:
        result = CheckResult(passed=reason == "ok", reason=reason,
                             latency=self._clock() - started)
        self._complete(entry, result, now)

    def _complete(self, entry: Entry, result: CheckResult, now: float) -> None:
        self._end(entry)
        entry.advance(entry.period, self._uniform(-1.0, 1.0))
        if self._on_result(entry, result, now) and not entry.removed:
            self._schedule(entry)
