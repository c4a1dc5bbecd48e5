"""The writer's decisions, as a state machine with no I/O.

Theory of operation
-------------------
``WriterMachine`` is fed events (``Desired``, ``Applied``, ``KernelRead``,
``TimerDue``, ``Stop``) and answers each with the actions to carry out
(``Record``, ``Apply``, ``ReadKernel``, ``ArmTimer``), in order. It keeps a
model of the kernel: after a clean apply the model advances with
``kglb.plan.apply_to`` (one weight flip costs one operation and no read);
after any refusal it is thrown away and the kernel is read again.

A *round* plans from the model towards the target (the desired state, or the
empty state when stopping), then applies the plan one stage at a time, in
kglb's order: withdraw, build (services, VIPs, reals), announce, delete.

* Containment: every operation belongs to a group (one VIP; ``_groups``). A
  refused operation fails its group for this round: the group's later stages
  are dropped (nothing is announced for a half-built service), the group backs
  off (``backoff`` doubling to ``max_backoff``), its failures are counted, and
  every other group goes on. A group that failed more than ``retries`` times in
  a row makes the manager state ``SET_STATE_FAILED`` until it recovers.
* Holds: a withdrawn route with a hold time arms a timer for that route. Until
  it is due, only the deletions that would cut the route's traffic (services,
  reals and the VIP under its prefix) wait; everything else goes on. A
  deletion also waits while a route that is no longer wanted (its withdrawal
  failed) still covers its VIP.
* Write-ahead ownership: before an apply that creates services or VIPs, the
  machine asks for a ``Record`` that already names them; after the round it
  records what exists (``owned_after``). A crash at any instant thus leaves a
  record naming everything we may have created.
* Resync: every ``resync_interval`` the kernel is read again. While all is
  well that read runs beside the applying (``ReadKernel(aside=True)``); a read
  with an apply in between is thrown away and asked again, and after three
  such it is read with nothing beside it. What a resync must change is drift,
  counted in ``drift_repairs``.

The machine is mutable, like h11's connection state, but only ``handle``
changes it; every state is a named value (``Phase``, ``Goal``,
``ManagerState``).
"""

from __future__ import annotations

import enum
import math
from collections import Counter, deque

from .._model import (
    AnnounceRoute,
    DataPlaneState,
    Operation,
    Owned,
    Route,
    WithdrawRoute,
)
from ..plan import PHASES, apply_to, owned_after, plan
from ._groups import covers, group_of, held_address
from ._round import STAGE, STAGES, Trouble, Round, with_creations
from ._messages import (
    Action,
    Applied,
    Apply,
    ArmTimer,
    Desired,
    Event,
    KernelRead,
    ManagerState,
    Phase,
    ReadKernel,
    Record,
    Stop,
    TimerDue,
)

__all__ = ["Goal", "Trouble", "WriterMachine"]

_EMPTY = DataPlaneState()


class Goal(enum.StrEnum):
    DESIRED = "desired"  # converge to the newest desired state
    EMPTY = "empty"  # shutting down: remove what we own
    KEEP = "keep"  # shutting down, leaving everything in place


class _Read(enum.StrEnum):
    """Why the kernel is being read."""

    RESYNC = "resync"  # the timer: what must change now is drift
    RECOVER = "recover"  # the model is unknown (a refusal, or a failed read)


class WriterMachine:
    """The writer's state. ``handle(event)`` returns the actions to carry out.

    ``kernel`` is the state read at start (None: unknown, read first), ``owned``
    the ownership record (and kernel-side marks) found at start, ``desired`` a
    state still owed from an earlier run (after a crash).
    """

    def __init__(
        self,
        *,
        now: float,
        kernel: DataPlaneState | None,
        owned: Owned,
        desired: DataPlaneState | None = None,
        resync_interval: float = 30.0,
        retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
    ) -> None:
        self.phase = Phase.IDLE
        self.goal = Goal.DESIRED
        self.manager_state = ManagerState.INITIAL
        self.kernel = kernel
        self.owned = owned
        self.recorded: Owned | None = None
        self.desired = desired
        self.applied: DataPlaneState | None = None
        self.applied_at: float | None = None
        self.holds: dict[Route, float] = {}
        self.troubles: dict[str, Trouble] = {}
        self.applies = 0
        self.operations: Counter[str] = Counter()
        self.errors: Counter[int] = Counter()
        self.drift_repairs = 0
        self.last_apply_duration = 0.0
        self._resync_interval = resync_interval
        self._retries = retries
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._resync_at = now + resync_interval
        self._round: Round | None = None
        self._synced: tuple[DataPlaneState, DataPlaneState] | None = None
        self._pending_since: float | None = None
        self._tokens = 0
        self._reading: tuple[int, _Read] | None = None  # the read the machine waits for
        self._aside: tuple[int, int] | None = None  # (token, applies generation) beside it
        self._stale = 0
        self._generation = 0  # bumped by every Apply: a read beside it is spoiled
        self._read_failures = 0
        self._read_retry_at = -math.inf
        self._armed = math.inf
        self._confirm: tuple[DataPlaneState, DataPlaneState] | None = None  # (before, target)

    def __repr__(self) -> str:
        return (f"<WriterMachine {self.phase} goal={self.goal} {self.manager_state} "
                f"troubles={sorted(self.troubles)} holds={len(self.holds)}>")

    def count_error(self, code: int) -> None:
        """Count a failure the actor met outside an event (a read at start)."""
        self.errors[code] += 1

    def record_failed(self, code: int) -> None:
        """The last ``Record`` could not be written: count it, and write it again before
        anything more is created. (The actor reports the apply that needed it as
        ``Applied(unreachable=code)`` without doing it.)"""
        self.errors[code] += 1
        self.recorded = None

    # ----------------------------------------------------------------- events

    def start(self, now: float) -> list[Action]:
        """The first actions (converge to a state owed from an earlier run, or arm the timer)."""
        if self.desired is not None:
            self._pending_since = now
        return self._converge(now) + self._arm(now)

    def handle(self, event: Event) -> list[Action]:
        """Take one event; the actions to carry out, in order."""
        if self.phase is Phase.STOPPED:
            return []
        now = event.now
        match event:
            case Desired(state=state):
                actions = self._on_desired(state, now)
            case Applied():
                actions = self._on_applied(event, now)
            case KernelRead():
                actions = self._on_read(event, now)
            case TimerDue():
                actions = self._on_timer(now)
            case Stop(keep=keep):
                actions = self._on_stop(keep, now)
            case _:
                raise TypeError(f"not a writer event: {event!r}")
        return actions + self._arm(now)

    def _on_desired(self, state: DataPlaneState, now: float) -> list[Action]:
        if self.goal is not Goal.DESIRED:
            return []  # shutting down: the last state no longer matters
        if self._pending_since is None:
            self._pending_since = now
        self.desired = state
        return self._converge(now) if self.phase is Phase.IDLE else []

    def _on_stop(self, keep: bool, now: float) -> list[Action]:
        self.goal = Goal.KEEP if keep else Goal.EMPTY
        self.troubles.clear()  # one last try for every group
        self._aside = None
        if keep:
            self.phase = Phase.STOPPED
            return [Record(owned=self.owned)]
        if self.phase is not Phase.IDLE:
            return []  # the round in flight finishes, then the empty state is planned
        self.kernel = None  # plan the shutdown from a fresh read
        return self._converge(now)

    def _on_timer(self, now: float) -> list[Action]:
        self._armed = math.inf  # that timer is spent
        if self.phase is not Phase.IDLE:
            return []
        if now >= self._resync_at and self._aside is None and self.goal is Goal.DESIRED:
            if self.kernel is not None and self.manager_state is ManagerState.AVAILABLE:
                return self._read_aside()
            self.kernel = None
            return self._read(_Read.RESYNC)
        return self._converge(now)

    def _on_read(self, event: KernelRead, now: float) -> list[Action]:
        if self._aside is not None and event.token == self._aside[0]:
            return self._on_read_aside(event, now)
        if self._reading is None or event.token != self._reading[0]:
            return []  # an answer nobody waits for any more
        _, why = self._reading
        self._reading = None
        self.phase = Phase.IDLE
        if event.state is None:
            self.errors[event.errno] += 1
            if self.goal is Goal.EMPTY:  # cannot see what to remove: remove nothing
                return self._stop_failed()
            self._read_failures += 1
            self._read_retry_at = now + self._delay(self._read_failures)
            return []
        self._read_failures = 0
        return self._adopt(event.state, why, now)

    def _on_read_aside(self, event: KernelRead, now: float) -> list[Action]:
        _, generation = self._aside
        self._aside = None
        if event.state is None:
            self.errors[event.errno] += 1
        elif generation == self._generation and self.phase is Phase.IDLE:
            self._stale = 0
            return self._adopt(event.state, _Read.RESYNC, now)
        # Something was applied while it read: it may show half of that.
        self._stale += 1
        if self._stale < 3:
            return self._read_aside()
        self._stale = 0
        if self.phase is not Phase.IDLE:
            return []  # the round in flight re-plans; the timer reads again
        self.kernel = None
        return self._read(_Read.RESYNC)

    def _adopt(self, state: DataPlaneState, why: _Read, now: float) -> list[Action]:
        """Take a fresh read as the model, then converge (counting drift on a resync)."""
        self.kernel = state
        self._synced = None
        actions: list[Action] = []
        if self._confirm is not None:  # after a refusal: own what the round left behind
            before, target = self._confirm
            self._confirm = None
            actions += self._record(owned_after(self.owned, before, target, state))
        if self.manager_state is ManagerState.SHUTDOWN_FAILED:
            return actions + self._stop_failed()
        if why is _Read.RESYNC:
            self._resync_at = now + self._resync_interval
            if self.manager_state is ManagerState.AVAILABLE and self.goal is Goal.DESIRED \
                    and self.desired is not None and self._runnable(self._plan(), now):
                self.drift_repairs += 1
        return actions + self._converge(now)

    def _stop_failed(self) -> list[Action]:
        self.manager_state = ManagerState.SHUTDOWN_FAILED
        self.phase = Phase.STOPPED
        return self._record(self.owned, force=True)

    def _on_applied(self, event: Applied, now: float) -> list[Action]:
        r = self._round
        if self.phase is not Phase.APPLYING or r is None:
            return []
        self.phase = Phase.IDLE
        r.done.extend(event.done)
        self.operations.update(type(op).__name__ for op in event.done)
        for op in event.done:
            if isinstance(op, WithdrawRoute):
                r.withdrawn.add(op.route)
                if op.route.hold_time_ms > 0:
                    self.holds[op.route] = now + op.route.hold_time_ms / 1000
            elif isinstance(op, AnnounceRoute):
                self.holds.pop(op.route, None)  # announced again: nothing to drain
        for failure in event.failed:
            self.errors[failure.errno] += 1
            r.failed.add(group_of(failure.op))
        if event.unreachable:
            self.errors[event.unreachable] += 1
            r.failed |= r.groups
            r.stages.clear()
        return self._next_stage(now)

    # ----------------------------------------------------------------- rounds

    def _converge(self, now: float) -> list[Action]:
        """Plan a round towards the target and start it (phase IDLE only)."""
        if self.goal is Goal.KEEP:
            return []
        if self.kernel is None:
            if now < self._read_retry_at:
                return []
            return self._read(_Read.RECOVER)
        target = self._target()
        if target is None:
            return []
        ops = self._plan()
        runnable = self._runnable(ops, now)
        r = Round(before=self.kernel, target=target, stages=deque(),
                   complete=len(runnable) == len(ops))
        for stage in STAGES:
            ops = [op for op in runnable if STAGE[PHASES[type(op)]] == stage]
            if ops:
                r.stages.append((stage, ops))
        r.groups = {group_of(op) for op in runnable}
        self._round = r
        actions: list[Action] = []
        intended = with_creations(self.owned, runnable)
        if intended is not None and intended != self.recorded:
            self.owned = self.recorded = intended  # write-ahead: named before created
            actions.append(Record(owned=intended))
        return actions + self._next_stage(now)

    def _next_stage(self, now: float) -> list[Action]:
        r = self._round
        while r.stages:
            stage, ops = r.stages.popleft()
            ops = [op for op in ops if group_of(op) not in r.failed]
            if stage in ("build", "delete"):  # reals are deleted in the build stage
                waiting = [op for op in ops if self._waits(op, now, r)]
                if waiting:
                    r.complete = False
                    ops = [op for op in ops if op not in waiting]
            if ops:
                self.phase = Phase.APPLYING
                self._generation += 1
                return [Apply(stage=stage, ops=tuple(ops))]
        return self._finish_round(now)

    def _finish_round(self, now: float) -> list[Action]:
        r, self._round = self._round, None
        for group in r.groups - r.failed:
            self.troubles.pop(group, None)
        for group in r.failed:
            failures = self.troubles[group].failures + 1 if group in self.troubles else 1
            self.troubles[group] = Trouble(failures=failures, retry_at=now + self._delay(failures))
        if r.failed:
            self._synced = None
            self.kernel = None  # refused: the model is wrong somewhere; read it again
            self._confirm = (r.before, r.target)
            if self.goal is Goal.EMPTY:
                self.manager_state = ManagerState.SHUTDOWN_FAILED  # stops after the read
            elif any(t.failures > self._retries for t in self.troubles.values()):
                self.manager_state = ManagerState.SET_STATE_FAILED
                self._note_duration(now)
            return self._read(_Read.RECOVER)
        self.kernel = apply_to(r.before, r.done)
        self._synced = (self.kernel, r.target) if r.complete else None
        actions = self._record(owned_after(self.owned, r.before, r.target, self.kernel))
        return actions + self._settle(r.target, now)

    def _settle(self, target: DataPlaneState, now: float) -> list[Action]:
        """After a clean round: done, waiting for timers, or another round."""
        self.holds = {route: until for route, until in self.holds.items() if until > now}
        if self.goal is Goal.DESIRED and target is not self.desired:
            return self._converge(now)  # a newer state arrived meanwhile
        pending = self._plan()
        waiting = {group_of(op) for op in pending}
        self.troubles = {g: t for g, t in self.troubles.items() if g in waiting}
        if self._runnable(pending, now):
            return self._converge(now)  # a timer came due during the round
        if pending:
            return []  # the rest waits for holds or backoff: the timer brings it
        if self.goal is Goal.EMPTY:
            self.phase = Phase.STOPPED
            return self._record(self.owned)
        self.manager_state = ManagerState.AVAILABLE
        self.applies += 1
        self.applied, self.applied_at = target, now
        self._note_duration(now)
        return []

    def _read(self, why: _Read) -> list[Action]:
        self._tokens += 1
        self._reading = (self._tokens, why)
        self.phase = Phase.READING
        return [ReadKernel(token=self._tokens)]

    def _read_aside(self) -> list[Action]:
        self._tokens += 1
        self._aside = (self._tokens, self._generation)
        self._resync_at = math.inf  # until this read is done
        return [ReadKernel(token=self._tokens, aside=True)]

    # ----------------------------------------------------------------- helpers

    def _target(self) -> DataPlaneState | None:
        return _EMPTY if self.goal is Goal.EMPTY else self.desired

    def _plan(self) -> tuple[Operation, ...]:
        target = self._target()
        if target is None or self.kernel is None:
            return ()
        synced = self._synced[1] if self._synced and self._synced[0] is self.kernel else None
        return plan(self.kernel, target, self.owned, synced=synced)

    def _runnable(self, ops: tuple[Operation, ...], now: float) -> list[Operation]:
        """``ops`` without those of groups backing off and the deletions that must wait
        (for a hold, or for a covering route this plan does not withdraw)."""
        ops = [op for op in ops if not self._backing_off(group_of(op), now)]
        withdrawing = {op.route for op in ops if isinstance(op, WithdrawRoute)}
        return [op for op in ops if not self._waits(op, now, None, withdrawing)]

    def _backing_off(self, group: str, now: float) -> bool:
        trouble = self.troubles.get(group)
        return trouble is not None and trouble.retry_at > now

    def _waits(self, op: Operation, now: float, r: Round | None,
               withdrawing: set[Route] = frozenset()) -> bool:
        """True if deleting ``op`` now could cut traffic still routed to us."""
        address = held_address(op)
        if address is None:
            return False
        if any(until > now and covers(route, address) for route, until in self.holds.items()):
            return True
        # A route still announced but no longer wanted (its withdrawal failed or
        # backs off) still brings traffic. One that stays wanted is another
        # balancer's on the same VIP: removing this one's service is a change of
        # config, not something to drain.
        target = self._target()
        wanted = target.routes if target is not None else ()
        announced = self.kernel.routes if r is None else r.before.routes
        gone = withdrawing if r is None else r.withdrawn
        return any(covers(route, address) for route in announced
                   if route not in gone and route not in wanted)

    def _delay(self, failures: int) -> float:
        return min(self._backoff * 2 ** (failures - 1), self._max_backoff)

    def _note_duration(self, now: float) -> None:
        if self._pending_since is not None:
            self.last_apply_duration = now - self._pending_since
            self._pending_since = None

    def _record(self, owned: Owned, *, force: bool = False) -> list[Action]:
        self.owned = owned
        if owned == self.recorded and not force:
            return []
        self.recorded = owned
        return [Record(owned=owned)]

    def _arm(self, now: float) -> list[Action]:
        at = math.inf
        if self.phase is Phase.IDLE:
            if self.goal is Goal.DESIRED:
                at = self._resync_at
            if self.kernel is None and self._read_retry_at > now:
                at = min(at, self._read_retry_at)
            at = min([at, *(u for u in self.holds.values() if u > now),
                      *(t.retry_at for t in self.troubles.values() if t.retry_at > now)])
        if at == self._armed:
            return []
        self._armed = at
        return [ArmTimer(at=at)]
