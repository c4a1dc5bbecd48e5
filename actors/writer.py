"""The writer: the only actor that changes the kernel.

Theory of operation
-------------------
The writer keeps the *last known kernel state*. At start it reads the kernel
fully (IPVS services, addresses, announced routes) and the ownership record.
For each desired ``DataPlaneState`` it receives (draining the channel first:
latest wins), it plans against the last known state, applies, and, on success,
advances the last known state with the same pure model the planner is tested
against (``kglb.plan.apply_to``). So one real changing weight costs exactly one
netlink operation and no read.

The last known state is thrown away and the kernel re-read in full:

* every ``resync_interval`` seconds (kglb's 30 s ticker). Operations needed
  then are drift (someone changed the kernel): they are applied and counted in
  ``drift_repairs``. While the last apply succeeded, that read runs beside the
  applying (IPVS reads it on its second netlink thread: ~0.15 s for 10k reals),
  so a new state never waits for it; a read during which anything was applied
  is thrown away and done again, and after three such the resync reads in the
  apply path;
* after any failed operation, before planning again, with bounded retries and
  exponential backoff. After the last retry the manager state is
  ``set_state_failed`` and the next timer tick tries again.

Operations are applied in stages (kglb.md §5.3): withdraw routes, then sleep
the largest hold time of the withdrawn routes, then the IPVS/address additions
and real changes, then announcements, then deletions. A stage with a failure
ends the attempt, so traffic is never attracted to a half-built service.

When the input channel closes, the writer shuts down gracefully: it withdraws
every route, waits the hold time, deletes the services and VIPs it owns, and
records ownership. With ``keep_on_exit`` it leaves everything, routes included,
so a restart (which adopts what it finds) causes no traffic gap. Cancellation
is a fast exit that changes nothing.

An unexpected exception (a bug) leaves ``run``; the supervisor calls ``run``
again on the same Writer with the same channel, which the writer never
closes. The new run starts like any start (reads the kernel and the ownership
record, adopts what matches with zero operations) and then converges to the
newest state the writer had received, since the generator only sends on change.
"""

from __future__ import annotations

import itertools
import math
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType

import structlog
import trio

from kglb import (
    AnnounceRoute,
    DataPlaneState,
    LinkAddress,
    Operation,
    Owned,
    Route,
    ServiceKey,
    WithdrawRoute,
)
from kglb.plan import PHASES, apply_to, owned_after, plan

from .dataplane import DataPlane, OperationError, ServiceCounters
from .ownership import load_owned, save_owned
from .routes import MemorySpeaker, RouteSpeaker

__all__ = ["Writer", "WriterStatistics"]

log = structlog.get_logger("kglb_trio.writer")

#: Stages of an apply, from the planner's phases: who applies them, in order.
_STAGE = {0: "withdraw", 1: "build", 2: "build", 3: "build", 4: "announce",
          5: "delete", 6: "delete"}
_MAX_BACKOFF = 8.0
_EMPTY: Mapping = MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class WriterStatistics:
    """An immutable snapshot of the writer (for the status API and metrics).

    ``manager_state`` is kglb's data_plane manager_state: "initial" before the
    first apply, "available" after a successful one, "set_state_failed" when the
    retries of an apply ran out, "shutdown_failed" when the graceful shutdown
    could not finish. ``applied_at`` is trio time, ``applied_wall`` Unix time.
    ``operations_by_kind`` counts applied operations by class name;
    ``errors_by_errno`` counts refused operations and failed reads (errno 0:
    no errno). ``counters`` are the IPVS counters of the last read (every
    ``counters_interval`` seconds), at trio time ``counters_at``.
    """

    manager_state: str = "initial"
    applied: DataPlaneState | None = None
    applied_at: float | None = None
    applied_wall: float | None = None
    last_apply_duration: float = 0.0
    applies: int = 0
    operations: int = 0
    operations_by_kind: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    errors: int = 0
    errors_by_errno: Mapping[int, int] = field(default_factory=lambda: _EMPTY)
    drift_repairs: int = 0
    owned: Owned = field(default_factory=Owned)
    foreign_services: frozenset[ServiceKey] = frozenset()
    foreign_addresses: frozenset[LinkAddress] = frozenset()
    routes: frozenset[Route] = frozenset()
    session_established: bool = False
    counters: Mapping[ServiceKey, ServiceCounters] = field(default_factory=lambda: _EMPTY)
    counters_at: float | None = None


class Writer:
    """Applies the newest desired state to a ``DataPlane`` and a ``RouteSpeaker``.

    ``on_apply(ops)`` is called after each stage with the operations that took
    effect (``--dry-run`` prints them). ``retries`` bounds the re-read and
    re-plan rounds after a failure; ``backoff`` is the first wait between them
    (doubling, at most 8 s).
    """

    def __init__(
        self,
        dataplane: DataPlane,
        speaker: RouteSpeaker | None = None,
        *,
        ownership_path: str | os.PathLike[str],
        keep_on_exit: bool = False,
        resync_interval: float = 30.0,
        counters_interval: float = 10.0,
        retries: int = 3,
        backoff: float = 0.5,
        on_apply: Callable[[Sequence[Operation]], None] | None = None,
    ) -> None:
        self._dataplane = dataplane
        self._speaker = speaker if speaker is not None else MemorySpeaker()
        self._ownership_path = ownership_path
        self._keep_on_exit = keep_on_exit
        self._resync_interval = resync_interval
        self._counters_interval = counters_interval
        self._retries = retries
        self._backoff = backoff
        self._on_apply = on_apply
        self._kernel: DataPlaneState | None = None  # None: unknown, re-read before planning
        self._desired: DataPlaneState | None = None
        # (model, desired): the model is apply_to of the plan towards that desired state.
        self._synced: tuple[DataPlaneState, DataPlaneState] | None = None
        self._owned = Owned()
        self._saved: Owned | None = None
        self._operations: Counter[str] = Counter()
        self._errors: Counter[int] = Counter()
        # Resync reads beside the applying: the apply count when a read started,
        # and (that count, the state read) once it is done.
        self._applying = 0  # bumped before and after every apply
        self._fresh: tuple[int, DataPlaneState] | None = None
        self._waiting: trio.CancelScope | None = None  # the apply loop's wait for a state
        self._stats = WriterStatistics()

    def __repr__(self) -> str:
        s = self._stats
        return (f"<Writer {s.manager_state} applies={s.applies} operations={s.operations} "
                f"errors={s.errors} owned={len(self._owned.services)}>")

    def statistics(self) -> WriterStatistics:
        return self._stats

    async def run(
        self,
        receive_states: trio.MemoryReceiveChannel[DataPlaneState],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Apply states until ``receive_states`` closes, then shut down gracefully.

        ``receive_states`` is not closed here: its owner ends it gracefully by
        closing the send side, and after a crash the next run goes on reading it.
        Raises ``OSError`` if the kernel cannot be read at start (nothing is touched).
        """
        self._owned = load_owned(self._ownership_path)
        state = await self._dataplane.read()
        try:
            routes: frozenset[Route] | None = await self._speaker.routes()
        except OSError as e:
            log.error("cannot read the announced routes", error=str(e), errno=e.errno)
            self._count_error(e.errno or 0)
            routes = None
        self._kernel = replace(state, routes=tuple(routes or ()))
        self._update(owned=self._owned)
        if routes is None:
            # A speaker that is down must not keep the data plane from starting:
            # the routes are unknown, so the first apply reads everything again.
            self._kernel = None
        log.info("writer started", services=len(state.services),
                 owned=len(self._owned.services), foreign=len(self._stats.foreign_services))
        task_status.started()
        async with trio.open_nursery() as nursery:
            # Counters are statistics: read beside the applying, never in its way.
            nursery.start_soon(self._counters_loop)
            await self._apply_loop(receive_states, nursery)
            nursery.cancel_scope.cancel()
        await self._shutdown()

    async def _apply_loop(self, receive_states: trio.MemoryReceiveChannel[DataPlaneState],
                          nursery: trio.Nursery) -> None:
        next_resync = trio.current_time() + self._resync_interval
        # A run after a crash owes the kernel the newest state received so far
        # (or a newer one already queued): the generator will not send it again.
        owed = self._desired
        reading, stale = False, 0
        self._fresh = self._waiting = None
        while True:
            desired, closed = owed, False
            owed = None
            if desired is None and self._fresh is None:
                with trio.move_on_at(math.inf if reading else next_resync) as self._waiting:
                    try:
                        desired = await receive_states.receive()
                    except trio.EndOfChannel:
                        closed = True
                self._waiting = None
            if desired is not None:
                desired, closed = _drain(receive_states, desired)
                self._desired = desired  # before any checkpoint: a crash loses nothing
                await self._converge(desired)
            if closed:
                return
            if self._fresh is not None:
                (started, state), self._fresh = self._fresh, None
                reading = False
                if started == self._applying and self._stats.manager_state == "available":
                    await self._resync(state)
                    next_resync = trio.current_time() + self._resync_interval
                    stale = 0
                elif (stale := stale + 1) < 3:
                    reading = True  # something was applied meanwhile: read again
                    nursery.start_soon(self._read_aside)
                else:
                    await self._resync()
                    next_resync = trio.current_time() + self._resync_interval
                    stale = 0
            elif not reading and trio.current_time() >= next_resync:
                if self._kernel is not None and self._stats.manager_state == "available":
                    reading = True
                    nursery.start_soon(self._read_aside)
                else:  # nothing applied yet, or the last apply failed: read in the path
                    await self._resync()
                    next_resync = trio.current_time() + self._resync_interval

    # ----------------------------------------------------------------- applying

    async def _converge(self, desired: DataPlaneState, *, resync: bool = False) -> None:
        self._desired = desired
        started = trio.current_time()
        was_available = self._stats.manager_state == "available"
        for attempt in range(self._retries + 1):
            if attempt:
                await trio.sleep(min(self._backoff * 2 ** (attempt - 1), _MAX_BACKOFF))
            if self._kernel is None and not await self._reread(desired, None):
                continue
            before = self._kernel
            # The model is our own apply_to of that state, not a read: what did
            # not change since needs no second look.
            synced = self._synced[1] if self._synced and self._synced[0] is before else None
            ops = plan(before, desired, self._owned, synced=synced)
            if resync and attempt == 0 and ops and was_available:
                self._update(drift_repairs=self._stats.drift_repairs + 1)
                log.warning("kernel drifted, repairing", operations=len(ops))
            if await self._apply_or_fail(ops):
                self._kernel = None
                await self._reread(desired, before)
                continue
            self._kernel = apply_to(before, ops)
            self._synced = (self._kernel, desired)
            self._set_owned(owned_after(self._owned, before, desired, self._kernel))
            self._update(manager_state="available", applied=desired,
                         applied_at=trio.current_time(), applied_wall=time.time(),
                         last_apply_duration=trio.current_time() - started,
                         applies=self._stats.applies + 1)
            if ops:
                log.info("new state applied", operations=len(ops),
                         seconds=round(trio.current_time() - started, 3))
            return
        self._update(manager_state="set_state_failed",
                     last_apply_duration=trio.current_time() - started)
        log.error("state not applied, retrying at the next resync", attempts=self._retries + 1)

    async def _apply_or_fail(self, ops: Sequence[Operation]) -> bool:
        """Apply ``ops``; True if anything failed (the kernel is then unknown)."""
        if not ops:
            return False
        self._applying += 1  # a read beside this apply may see half of it
        try:
            return bool(await self._apply(ops))
        except OSError as e:  # the kernel or the speaker could not be reached at all
            log.error("cannot apply", error=str(e), errno=e.errno)
            self._count_error(e.errno or 0)
            return True
        finally:
            self._applying += 1

    async def _apply(self, ops: Sequence[Operation]) -> list[OperationError]:
        """Apply ``ops`` stage by stage; the failures of the first failing stage."""
        for stage, group in itertools.groupby(ops, key=lambda op: _STAGE[PHASES[type(op)]]):
            batch = list(group)
            if stage == "withdraw":
                errors = await self._speak(batch, self._speaker.withdraw)
            elif stage == "announce":
                errors = await self._speak(batch, self._speaker.announce)
            else:
                errors = await self._dataplane.apply(batch)
            failed = {e.op for e in errors}
            done = [op for op in batch if op not in failed]
            self._operations.update(type(op).__name__ for op in done)
            self._update(operations=self._stats.operations + len(done),
                         operations_by_kind=MappingProxyType(dict(self._operations)))
            if done and self._on_apply is not None:
                self._on_apply(done)
            for e in errors:
                log.error("operation failed", operation=repr(e.op), errno=e.errno, error=str(e))
                self._count_error(e.errno)
            if errors:
                return errors
            if stage == "withdraw":
                # Let traffic drain away from this host before anything is removed.
                hold = max(op.route.hold_time_ms for op in batch) / 1000
                if hold > 0:
                    await trio.sleep(hold)
        return []

    async def _speak(
        self, batch: list[AnnounceRoute | WithdrawRoute], say: Callable[[Route], Awaitable[None]]
    ) -> list[OperationError]:
        errors = []
        for op in batch:
            try:
                await say(op.route)
            except OperationError as e:
                errors.append(e)
        return errors

    # ----------------------------------------------------------------- reading

    async def _read(self) -> DataPlaneState:
        state = await self._dataplane.read()
        return replace(state, routes=tuple(await self._speaker.routes()))

    async def _reread(self, desired: DataPlaneState, before: DataPlaneState | None) -> bool:
        """Re-read the kernel; after a failed apply from ``before``, fix ownership."""
        try:
            self._kernel = await self._read()
        except OSError as e:
            log.error("cannot read the kernel", error=str(e), errno=e.errno)
            self._count_error(e.errno or 0)
            return False
        if before is not None:
            self._set_owned(owned_after(self._owned, before, desired, self._kernel))
        self._update(owned=self._owned)
        return True

    async def _resync(self, state: DataPlaneState | None = None) -> None:
        """Converge to the desired state from a fresh read (``state``, read beside
        the applying with nothing applied meanwhile; None: read now)."""
        self._kernel = state
        self._synced = None
        if self._desired is None:
            await self._reread(DataPlaneState(), None)
        else:
            await self._converge(self._desired, resync=True)

    async def _read_aside(self) -> None:
        started = self._applying
        try:
            state = await self._read()
        except OSError as e:
            log.error("cannot read the kernel", error=str(e), errno=e.errno)
            self._count_error(e.errno or 0)
            state = None
        if state is None:
            started = -1  # never equal: the apply loop reads again
            state = DataPlaneState()
        self._fresh = (started, state)
        if self._waiting is not None:
            self._waiting.cancel()

    async def _counters_loop(self) -> None:
        while True:
            try:
                counters = await self._dataplane.counters()
            except OSError as e:
                log.warning("cannot read IPVS counters", error=str(e))
            else:
                self._update(counters=MappingProxyType(counters),
                             counters_at=trio.current_time(),
                             session_established=self._speaker.session_established())
            await trio.sleep(self._counters_interval)

    # ----------------------------------------------------------------- shutdown

    async def _shutdown(self) -> None:
        if self._keep_on_exit:
            log.info("leaving services, addresses and routes in place",
                     owned=len(self._owned.services))
            self._save()
            return
        try:
            before = await self._read()
        except OSError as e:
            log.error("shutdown: cannot read the kernel, nothing removed", error=str(e))
            self._count_error(e.errno or 0)
            self._update(manager_state="shutdown_failed")
            return
        empty = DataPlaneState()
        ops = plan(before, empty, self._owned)
        log.info("shutting down", operations=len(ops))
        if await self._apply_or_fail(ops):
            self._update(manager_state="shutdown_failed")
            self._kernel = None
            await self._reread(empty, before)
        else:
            self._kernel = apply_to(before, ops)
            self._set_owned(owned_after(self._owned, before, empty, self._kernel))
        self._save()

    # ----------------------------------------------------------------- bookkeeping

    def _set_owned(self, owned: Owned) -> None:
        self._owned = owned
        if owned != self._saved:
            self._save()
        self._update(owned=owned)

    def _save(self) -> None:
        try:
            save_owned(self._ownership_path, self._owned)
        except OSError as e:
            log.error("cannot write the ownership record", path=str(self._ownership_path),
                      error=str(e))
            self._count_error(e.errno or 0)
            return
        self._saved = self._owned

    def _count_error(self, code: int) -> None:
        self._errors[code] += 1
        self._update(errors=self._stats.errors + 1,
                     errors_by_errno=MappingProxyType(dict(self._errors)))

    def _update(self, **changes) -> None:
        if "owned" in changes and self._kernel is not None:
            owned = changes["owned"]
            changes["foreign_services"] = frozenset(
                s.key for s in self._kernel.services if s.key not in owned.services)
            changes["foreign_addresses"] = frozenset(
                a for a in self._kernel.addresses if a not in owned.addresses)
            changes["routes"] = frozenset(self._kernel.routes)
        self._stats = replace(self._stats, **changes)


def _drain(
    receive: trio.MemoryReceiveChannel[DataPlaneState], newest: DataPlaneState
) -> tuple[DataPlaneState, bool]:
    """The newest state already queued after ``newest``, and whether the channel closed."""
    while True:
        try:
            newest = receive.receive_nowait()
        except trio.WouldBlock:
            return newest, False
        except trio.EndOfChannel:
            return newest, True
