"""The writer: the only actor that changes the kernel.

Theory of operation
-------------------
Every decision is made by ``kglb.writer.WriterMachine`` (read its docstring):
what to apply, in which stage, which group backs off, which deletion waits
for a route's hold, when to read the kernel, what to record as ours. This
actor only turns the machine's actions into I/O and the results back into
events:

* ``Record`` → the ownership record is written (write, fsync, rename) before
  the next action; if it cannot be, the apply that needed it is not done
  (reported as unreachable: the machine backs off and retries);
* ``Apply`` → the route speaker (withdraw, announce) or the data plane;
* ``ReadKernel`` → the data plane and the speaker's routes, in the loop, or in
  a task beside it when ``aside`` (the periodic resync: applies go on);
* ``ArmTimer`` → the next ``TimerDue``.

Events come from one channel: the desired states (forwarded from the
generator's channel, newest wins when several are queued), the reads done
beside the loop, and the timer. When the generator's channel closes the
machine shuts down gracefully (withdraw, hold, delete what we own, record);
with ``keep_on_exit`` it leaves everything, so a restart causes no traffic
gap. Cancellation is a fast exit that changes nothing.

An unexpected exception (a bug) leaves ``run``; the supervisor calls ``run``
again on the same Writer with the same channel, which the writer never
closes. The new run starts like any start (kernel read, ownership record and
kernel-side marks, adopting what matches with zero operations) and converges
to the newest state the writer had received.
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
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
)
from kglb.writer import (
    Action,
    Applied,
    Apply,
    ArmTimer,
    Desired,
    Event,
    Failure,
    KernelRead,
    ManagerState,
    Phase,
    ReadKernel,
    Record,
    Stop,
    TimerDue,
    WriterMachine,
)

from .dataplane import DataPlane, OperationError, ServiceCounters
from .ownership import load_owned, remove_partial_records, save_owned
from .routes import MemorySpeaker, RouteSpeaker

__all__ = ["Writer", "WriterStatistics"]

log = structlog.get_logger("kglb_trio.writer")

_EMPTY: Mapping = MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class WriterStatistics:
    """An immutable snapshot of the writer (for the status API and metrics).

    ``manager_state`` is kglb's data_plane manager_state (a ``ManagerState``,
    which is a str). ``applied_at`` is trio time, ``applied_wall`` Unix time.
    ``operations_by_kind`` counts applied operations by class name;
    ``errors_by_errno`` counts refused operations and failed reads (errno 0:
    no errno). ``addresses`` are the VIPs on the managed links as last known;
    ``failing`` the groups (VIPs, ``fwmark:N:v4``) backing off after a failure,
    ``held`` the withdrawn routes whose hold has not passed. ``counters`` are
    the IPVS counters of the last read (every ``counters_interval`` seconds),
    at trio time ``counters_at``. ``refused``: frames and states the writer
    process refused, by reason (``--privsep``); None with the writer in process.
    """

    manager_state: str = ManagerState.INITIAL
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
    addresses: frozenset[LinkAddress] = frozenset()
    routes: frozenset[Route] = frozenset()
    failing: frozenset[str] = frozenset()
    held: frozenset[Route] = frozenset()
    session_established: bool = False
    counters: Mapping[ServiceKey, ServiceCounters] = field(default_factory=lambda: _EMPTY)
    counters_at: float | None = None
    refused: Mapping[str, int] | None = None


class Writer:
    """Applies the newest desired state to a ``DataPlane`` and a ``RouteSpeaker``.

    ``on_apply(ops)`` is called after each stage with the operations that took
    effect (``--dry-run`` prints them). A failing group is retried after
    ``backoff`` seconds, doubling to 8 s; after ``retries`` failed retries the
    manager state is ``set_state_failed`` until it recovers.
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
        self._settings = dict(resync_interval=resync_interval, retries=retries, backoff=backoff)
        self._counters_interval = counters_interval
        self._on_apply = on_apply
        self._desired: DataPlaneState | None = None  # survives a crash of ``run``
        self._machine: WriterMachine | None = None
        self._stats = WriterStatistics()

    def __repr__(self) -> str:
        s = self._stats
        return (f"<Writer {s.manager_state} applies={s.applies} operations={s.operations} "
                f"errors={s.errors} owned={len(s.owned.services)}>")

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
        remove_partial_records(self._ownership_path)
        owned = load_owned(self._ownership_path)
        state = await self._dataplane.read()
        owned = await self._with_marks(owned, state)
        errors = []
        try:
            kernel: DataPlaneState | None = replace(
                state, routes=tuple(await self._speaker.routes()))
        except OSError as e:
            # A speaker that is down must not keep the data plane from starting:
            # the routes are unknown, so the machine reads everything again.
            log.error("cannot read the announced routes", error=str(e), errno=e.errno)
            errors.append(e.errno or 0)
            kernel = None
        # A run after a crash owes the kernel the newest state received so far,
        # or a newer one already queued: the generator will not send it again.
        self._desired, _ = _drain(receive_states, self._desired)
        machine = WriterMachine(now=trio.current_time(), kernel=kernel, owned=owned,
                                desired=self._desired, **self._settings)
        for code in errors:
            machine.count_error(code)
        self._machine = machine
        self._publish(kernel_hint=state)
        log.info("writer started", services=len(state.services), owned=len(owned.services),
                 foreign=len(self._stats.foreign_services))
        send_events, receive_events = trio.open_memory_channel[Event](math.inf)
        task_status.started()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._forward, receive_states, send_events)
            # Counters are statistics: read beside the applying, never in its way.
            nursery.start_soon(self._counters_loop)
            await self._loop(machine, receive_events, send_events, nursery)
            nursery.cancel_scope.cancel()

    # ----------------------------------------------------------------- the loop

    async def _loop(self, machine: WriterMachine, events: trio.MemoryReceiveChannel[Event],
                    send: trio.MemorySendChannel[Event], nursery: trio.Nursery) -> None:
        deadline = math.inf
        inbox: deque[Event] = deque()
        actions: deque[Action] = deque(machine.start(trio.current_time()))
        while True:
            while actions:
                action = actions.popleft()
                if isinstance(action, ArmTimer):
                    deadline = action.at
                    continue
                event = await self._carry_out(action, actions, send, nursery)
                if event is not None:
                    actions.extend(machine.handle(event))
                self._publish()
            if machine.phase is Phase.STOPPED:
                return
            if not inbox:
                with trio.move_on_at(deadline):
                    inbox.append(await events.receive())
                if not inbox:
                    deadline = math.inf
                    inbox.append(TimerDue(now=trio.current_time()))
            _take_queued(inbox, events)
            actions.extend(machine.handle(inbox.popleft()))
            self._publish()

    async def _carry_out(self, action: Action, actions: deque[Action],
                         send: trio.MemorySendChannel[Event], nursery: trio.Nursery) -> Event | None:
        match action:
            case Record(owned=owned):
                code = self._save(owned)
                if code and actions and isinstance(actions[0], Apply):
                    # Never create what the record does not name: skip the apply.
                    actions.popleft()
                    return Applied(unreachable=code, now=trio.current_time())
                return None
            case Apply(stage=stage, ops=ops):
                return await self._apply(stage, ops)
            case ReadKernel(token=token, aside=True):
                nursery.start_soon(self._read_aside, token, send)
                return None
            case ReadKernel(token=token):
                return await self._read_event(token)
        raise TypeError(f"not a writer action: {action!r}")

    async def _forward(self, receive_states: trio.MemoryReceiveChannel[DataPlaneState],
                       send: trio.MemorySendChannel[Event]) -> None:
        closed = False
        while not closed:
            try:
                state = await receive_states.receive()
            except trio.EndOfChannel:
                break
            state, closed = _drain(receive_states, state)
            self._desired = state  # before any checkpoint: a crash loses nothing
            send.send_nowait(Desired(state=state, now=trio.current_time()))
        send.send_nowait(Stop(keep=self._keep_on_exit, now=trio.current_time()))

    # ----------------------------------------------------------------- actions

    async def _apply(self, stage: str, ops: tuple[Operation, ...]) -> Applied:
        try:
            if stage in ("withdraw", "announce"):
                errors = await self._speak(ops)
            else:
                errors = await self._dataplane.apply(ops)
        except OSError as e:  # the kernel or the speaker could not be reached at all
            log.error("cannot apply", stage=stage, error=str(e), errno=e.errno)
            return Applied(unreachable=e.errno or 1, now=trio.current_time())
        refused = {e.op for e in errors}
        done = tuple(op for op in ops if op not in refused)
        if done and self._on_apply is not None:
            self._on_apply(done)
        for e in errors:
            log.error("operation failed", operation=repr(e.op), errno=e.errno, error=str(e))
        return Applied(done=done, failed=tuple(Failure(op=e.op, errno=e.errno) for e in errors),
                       now=trio.current_time())

    async def _speak(self, ops: tuple[Operation, ...]) -> list[OperationError]:
        errors = []
        for op in ops:
            say = self._speaker.announce if isinstance(op, AnnounceRoute) else self._speaker.withdraw
            try:
                await say(op.route)
            except OperationError as e:
                errors.append(e)
        return errors

    async def _read(self) -> DataPlaneState:
        state = await self._dataplane.read()
        return replace(state, routes=tuple(await self._speaker.routes()))

    async def _read_event(self, token: int) -> KernelRead:
        try:
            state = await self._read()
        except OSError as e:
            log.error("cannot read the kernel", error=str(e), errno=e.errno)
            return KernelRead(token=token, state=None, errno=e.errno or 1,
                              now=trio.current_time())
        return KernelRead(token=token, state=state, now=trio.current_time())

    async def _read_aside(self, token: int, send: trio.MemorySendChannel[Event]) -> None:
        send.send_nowait(await self._read_event(token))

    async def _with_marks(self, owned: Owned, state: DataPlaneState) -> Owned:
        """Add the VIPs the kernel marks as ours (a lost record cannot leak them)."""
        marked = getattr(self._dataplane, "marked", None)
        if marked is None:
            return owned
        try:
            ours = await marked()
        except OSError as e:
            log.error("cannot read the kernel's address marks", error=str(e))
            return owned
        extra = ours - owned.addresses
        if extra:
            log.info("VIPs marked as ours in the kernel", addresses=sorted(a.address for a in extra))
        return replace(owned, addresses=owned.addresses | ours)

    def _save(self, owned: Owned) -> int:
        """Write the record; 0, or the errno when it could not be written (logged, counted)."""
        try:
            save_owned(self._ownership_path, owned)
        except OSError as e:
            log.error("cannot write the ownership record", path=str(self._ownership_path),
                      error=str(e))
            self._machine.record_failed(e.errno or 0)
            return e.errno or 1
        return 0

    async def _counters_loop(self) -> None:
        while True:
            try:
                counters = await self._dataplane.counters()
            except OSError as e:
                log.warning("cannot read IPVS counters", error=str(e))
            else:
                self._stats = replace(self._stats, counters=MappingProxyType(counters),
                                      counters_at=trio.current_time(),
                                      session_established=self._speaker.session_established())
            await trio.sleep(self._counters_interval)

    # ----------------------------------------------------------------- statistics

    def _publish(self, kernel_hint: DataPlaneState | None = None) -> None:
        m, s = self._machine, self._stats
        changes: dict = {}
        if m.applied_at != s.applied_at:
            changes.update(applied=m.applied, applied_at=m.applied_at, applied_wall=time.time())
            if m.operations.total() != s.operations:
                log.info("new state applied", operations=m.operations.total() - s.operations,
                         seconds=round(m.last_apply_duration, 3))
        if m.manager_state != s.manager_state and m.manager_state in (
                ManagerState.SET_STATE_FAILED, ManagerState.SHUTDOWN_FAILED):
            log.error("state not applied", manager_state=str(m.manager_state),
                      failing=sorted(m.troubles))
        kernel = m.kernel if m.kernel is not None else kernel_hint
        if kernel is not None and (m.owned != s.owned or kernel is not self._seen):
            self._seen = kernel
            changes.update(
                foreign_services=frozenset(
                    x.key for x in kernel.services if x.key not in m.owned.services),
                foreign_addresses=frozenset(a for a in kernel.addresses
                                            if a not in m.owned.addresses),
                addresses=frozenset(kernel.addresses), routes=frozenset(kernel.routes))
        self._stats = replace(
            s, manager_state=m.manager_state, last_apply_duration=m.last_apply_duration,
            applies=m.applies, operations=m.operations.total(),
            operations_by_kind=MappingProxyType(dict(m.operations)),
            errors=m.errors.total(), errors_by_errno=MappingProxyType(dict(m.errors)),
            drift_repairs=m.drift_repairs, owned=m.owned, failing=frozenset(m.troubles),
            held=frozenset(m.holds), **changes)

    _seen: DataPlaneState | None = None


def _take_queued(inbox: deque[Event], events: trio.MemoryReceiveChannel[Event]) -> None:
    """Move every queued event to ``inbox``; of several desired states only the newest stays."""
    while True:
        try:
            event = events.receive_nowait()
        except trio.WouldBlock:
            return
        if isinstance(event, Desired):
            for old in [e for e in inbox if isinstance(e, Desired)]:
                inbox.remove(old)
        inbox.append(event)


def _drain(
    receive: trio.MemoryReceiveChannel[DataPlaneState], newest: DataPlaneState | None
) -> tuple[DataPlaneState | None, bool]:
    """The newest state already queued after ``newest``, and whether the channel closed."""
    while True:
        try:
            newest = receive.receive_nowait()
        except trio.WouldBlock:
            return newest, False
        except trio.EndOfChannel:
            return newest, True
