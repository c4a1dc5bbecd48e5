"""The writer actor, in virtual time, against MemoryDataPlane and MemorySpeaker."""

from __future__ import annotations

import errno
from dataclasses import replace

import pytest
import trio
import trio.testing

from actors.dataplane import MemoryDataPlane, ServiceCounters
from actors.ownership import load_owned
from actors.routes import MemorySpeaker
from actors.writer import Writer
from kglb import (
    AddReal,
    DataPlaneState,
    DeleteReal,
    LinkAddress,
    Owned,
    Real,
    RealKey,
    Route,
    Service,
    ServiceKey,
    ServiceState,
    UpdateReal,
)
from kglb.plan import apply_to

VIP = ServiceKey.tcp("10.0.0.1", 80)
FOREIGN = ServiceKey.tcp("192.0.2.1", 80)
ADDR = LinkAddress(address="10.0.0.1")
ROUTE = Route(prefix="10.0.0.1/32", local_asn=65000, peer_asn=65001, hold_time_ms=5000)


def desired(*weights: int, key: ServiceKey = VIP, routes=(), provisional=False) -> DataPlaneState:
    reals = tuple(Real(key=RealKey(address=f"10.1.0.{i + 1}", port=80), weight=w,
                       hostname=f"web{i + 1}", provisional=provisional)
                  for i, w in enumerate(weights))
    return DataPlaneState(services=(ServiceState(service=Service(key=key), reals=reals),),
                          addresses=(LinkAddress(address=key.address),), routes=routes)


def kernel_view(state: DataPlaneState) -> DataPlaneState:
    """What MemoryDataPlane holds once ``state`` is applied (no hostnames, no routes)."""
    return replace(apply_to(state, ()), routes=())


class Harness:
    def __init__(self, nursery, tmp_path, dp=None, speaker=None, **kw):
        self.nursery = nursery
        self.dp = dp if dp is not None else MemoryDataPlane()
        self.speaker = speaker if speaker is not None else MemorySpeaker()
        self.path = tmp_path / "owned.json"
        self.log: list[tuple[float, str]] = []
        self.writer = Writer(self.dp, self.speaker, ownership_path=self.path,
                             on_apply=self._record, **kw)
        self.send, self.receive = trio.open_memory_channel(100)
        self.scope = trio.CancelScope()
        self.done = trio.Event()

    def _record(self, ops):
        self.log.extend((trio.current_time(), type(op).__name__) for op in ops)

    async def start(self):
        async def run(task_status):
            with self.scope:
                await self.writer.run(self.receive, task_status=task_status)
            self.done.set()

        await self.nursery.start(run)
        return self

    async def put(self, state):
        """Send ``state`` and wait (in virtual time) until the writer is done with it."""
        before = self.stats
        await self.send.send(state)
        while self.stats.applies == before.applies and (
            self.stats.manager_state == before.manager_state
        ):
            await trio.sleep(0.001)

    async def close(self):
        await self.send.aclose()
        await self.done.wait()

    @property
    def stats(self):
        return self.writer.statistics()


@pytest.fixture
async def harness(nursery, tmp_path):
    async def make(**kw):
        return await Harness(nursery, tmp_path, **kw).start()

    return make


async def test_applies_a_state_and_records_ownership(harness, autojump_clock):
    h = await harness()
    assert h.stats.manager_state == "initial"
    state = desired(1000, 0, routes=(ROUTE,))
    await h.put(state)
    assert h.dp.state == kernel_view(state)
    assert await h.speaker.routes() == {ROUTE}
    s = h.stats
    assert (s.manager_state, s.applies, s.applied, s.errors) == ("available", 1, state, 0)
    assert s.operations == 5
    assert dict(s.operations_by_kind) == {"AddService": 1, "AddAddress": 1, "AddReal": 2,
                                          "AnnounceRoute": 1}
    assert load_owned(h.path) == Owned(services=frozenset({VIP}), addresses=frozenset({ADDR}))


async def test_coalesces_to_the_newest_state(harness, autojump_clock):
    h = await harness()
    states = [desired(w) for w in range(10)]
    for s in states:  # no checkpoint in between: all queued before the writer wakes
        h.send.send_nowait(s)
    await trio.testing.wait_all_tasks_blocked()
    assert h.stats.applies == 1
    assert h.stats.applied == states[-1]
    assert h.dp.state == kernel_view(states[-1])
    assert [type(op).__name__ for op in h.dp.applied] == ["AddService", "AddAddress", "AddReal"]


async def test_one_weight_flip_costs_one_operation_and_no_read(harness, autojump_clock):
    h = await harness()
    await h.put(desired(1000, 1000))
    applied, reads = len(h.dp.applied), h.dp.reads
    await h.put(desired(1000, 0))
    flipped = desired(1000, 0).services[0].reals[1]
    assert h.dp.applied[applied:] == [UpdateReal(service=VIP, real=flipped)]
    assert h.dp.reads == reads
    assert h.stats.applies == 2


async def test_drift_is_repaired_on_the_resync_timer_and_counted(harness, autojump_clock):
    h = await harness()
    state = desired(1000, 1000)
    await h.put(state)
    h.dp.tamper([DeleteReal(service=VIP, real=RealKey(address="10.1.0.2", port=80))])
    await trio.sleep(29)
    assert h.stats.drift_repairs == 0
    await trio.sleep(2)
    assert h.dp.state == kernel_view(state)
    assert h.stats.drift_repairs == 1
    await trio.sleep(30)  # nothing drifted since
    assert h.stats.drift_repairs == 1


async def test_failure_rereads_replans_and_succeeds(harness, autojump_clock):
    h = await harness()
    failures = iter([errno.ENOMEM])
    h.dp.fail(lambda op: next(failures, 0) if isinstance(op, AddReal) else 0)
    reads = h.dp.reads
    state = desired(1000, 1000)
    await h.put(state)
    s = h.stats
    assert (s.manager_state, s.applies, s.errors) == ("available", 1, 1)
    assert dict(s.errors_by_errno) == {errno.ENOMEM: 1}
    assert h.dp.reads == reads + 1
    assert h.dp.state == kernel_view(state)
    assert h.dp.attempts["AddService"] == 1  # the re-plan did not re-create the service
    assert s.owned.services == {VIP}


async def test_persistent_failure_gives_up_then_the_timer_retries(harness, autojump_clock):
    h = await harness(retries=2, backoff=1.0)
    h.dp.fail(lambda op: errno.EINVAL if isinstance(op, AddReal) else 0)
    state = desired(1000)
    await h.put(state)
    assert h.stats.manager_state == "set_state_failed"
    assert h.stats.errors == 3
    assert h.stats.last_apply_duration == pytest.approx(1.0 + 2.0)  # backoff doubles
    h.dp.fail(None)
    await trio.sleep(30)
    assert h.stats.manager_state == "available"
    assert h.dp.state == kernel_view(state)
    assert h.stats.drift_repairs == 0  # a retry, not drift


async def test_a_withdrawal_holds_only_the_deletions_under_its_route(harness, autojump_clock):
    # issue 14, problem 3: the hold used to stop the whole writer for holdTimeMs.
    h = await harness()
    await h.put(desired(1000, routes=(ROUTE,)))
    h.log.clear()
    t0 = trio.current_time()
    await h.send.send(desired(1000, key=ServiceKey.tcp("10.0.0.2", 80)))
    await trio.sleep(0.01)
    assert h.log == [(t0, "WithdrawRoute"), (t0, "AddService"), (t0, "AddAddress"),
                     (t0, "AddReal")]
    assert h.stats.held == {ROUTE}
    await trio.sleep(4.89)
    assert len(h.log) == 4  # the old VIP still takes the traffic that is draining
    await trio.sleep(0.2)
    assert h.log[4:] == [(t0 + 5.0, "DeleteService"), (t0 + 5.0, "DeleteAddress")]
    assert h.stats.held == frozenset()


async def test_graceful_shutdown_withdraws_waits_and_deletes_only_owned(harness, autojump_clock):
    foreign = ServiceState(service=Service(key=FOREIGN))
    foreign_addr = LinkAddress(address="192.0.2.1")
    h = await harness(dp=MemoryDataPlane(DataPlaneState(services=(foreign,),
                                                        addresses=(foreign_addr,))))
    await h.put(desired(1000, routes=(ROUTE,)))
    assert h.stats.foreign_services == {FOREIGN}
    assert h.stats.foreign_addresses == {foreign_addr}
    h.log.clear()
    t0 = trio.current_time()
    await h.close()
    assert h.log == [(t0, "WithdrawRoute"), (t0 + 5.0, "DeleteService"),
                     (t0 + 5.0, "DeleteAddress")]
    assert h.dp.state == DataPlaneState(services=(foreign,), addresses=(foreign_addr,))
    assert await h.speaker.routes() == frozenset()
    assert load_owned(h.path) == Owned()


async def test_keep_on_exit_leaves_everything(harness, autojump_clock):
    h = await harness(keep_on_exit=True)
    state = desired(1000, routes=(ROUTE,))
    await h.put(state)
    await h.close()
    assert h.dp.state == kernel_view(state)
    assert await h.speaker.routes() == {ROUTE}
    assert load_owned(h.path).services == {VIP}


async def test_cancellation_leaves_everything(harness, autojump_clock):
    h = await harness()
    state = desired(1000, routes=(ROUTE,))
    await h.put(state)
    h.scope.cancel()
    await h.done.wait()
    assert h.dp.state == kernel_view(state)
    assert await h.speaker.routes() == {ROUTE}


@pytest.mark.parametrize("lose_record", [False, True])
async def test_restart_adopts_with_zero_operations(harness, lose_record, autojump_clock):
    first = await harness(keep_on_exit=True)
    await first.put(desired(700, 300, routes=(ROUTE,)))
    await first.close()
    if lose_record:
        first.path.unlink()
    applied = len(first.dp.applied)
    # the new run has no health yet: provisional reals with weight 0
    second = await harness(dp=first.dp, speaker=first.speaker)
    await second.put(desired(0, 0, routes=(ROUTE,), provisional=True))
    assert len(first.dp.applied) == applied
    assert second.stats.operations == 0
    assert second.stats.manager_state == "available"
    assert [r.weight for r in first.dp.state.services[0].reals] == [700, 300]
    owned = load_owned(second.path)
    assert owned.services == {VIP}
    # the VIP we added carries the kernel's mark: ours even when the record is lost
    assert owned.addresses == {ADDR}


async def test_a_vip_someone_else_added_is_never_ours(harness, autojump_clock):
    h = await harness(dp=MemoryDataPlane(DataPlaneState(addresses=(ADDR,))))
    await h.put(desired(1000))
    assert h.stats.owned.addresses == frozenset()
    await h.close()
    assert h.dp.state.addresses == (ADDR,)


async def test_restart_after_a_crash_removes_what_is_no_longer_desired(harness, autojump_clock):
    first = await harness()
    await first.put(desired(1000))
    first.scope.cancel()  # crash: nothing cleaned
    await first.done.wait()
    second = await harness(dp=first.dp, speaker=first.speaker)
    other = ServiceKey.tcp("10.0.0.2", 80)
    await second.put(desired(1000, key=other))
    assert first.dp.state == kernel_view(desired(1000, key=other))
    assert second.stats.owned == Owned(services=frozenset({other}),
                                       addresses=frozenset({LinkAddress(address="10.0.0.2")}))


async def test_counters_are_read_every_ten_seconds(harness, autojump_clock):
    h = await harness()
    await h.put(desired(1000))
    h.dp.counter_values[VIP] = ServiceCounters(key=VIP, conns=42)
    await trio.sleep(10.5)
    assert h.stats.counters[VIP].conns == 42
    assert h.stats.counters_at == pytest.approx(10.0)
    assert h.stats.session_established


class DownSpeaker(MemorySpeaker):
    """A speaker that cannot be reached for its first ``n`` reads."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.down = n

    async def routes(self):
        if self.down:
            self.down -= 1
            raise OSError(errno.ECONNREFUSED, "bird is down")
        return await super().routes()


async def test_a_speaker_down_at_start_does_not_stop_the_data_plane(harness, autojump_clock):
    h = await harness(speaker=DownSpeaker(1))
    assert dict(h.stats.errors_by_errno) == {errno.ECONNREFUSED: 1}
    state = desired(1000, routes=(ROUTE,))
    await h.put(state)
    assert h.stats.manager_state == "available"
    assert await h.speaker.routes() == {ROUTE}


class UnreachableDataPlane(MemoryDataPlane):
    """The netlink connection breaks during the first apply."""

    broken = True

    async def apply(self, ops):
        if self.broken:
            self.broken = False
            raise OSError(errno.ENOBUFS, "netlink socket lost")
        return await super().apply(ops)


async def test_an_unreachable_kernel_is_retried(harness, autojump_clock):
    h = await harness(dp=UnreachableDataPlane())
    state = desired(1000)
    await h.put(state)
    assert h.stats.manager_state == "available"
    assert dict(h.stats.errors_by_errno) == {errno.ENOBUFS: 1}
    assert h.dp.state == kernel_view(state)


class SlowReads(MemoryDataPlane):
    """A kernel whose full read takes ``seconds`` (IPVS at 10k reals: ~0.15 s)."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.started = 0  # reads begun (``reads``: reads done)

    async def read(self) -> DataPlaneState:
        self.started += 1
        await trio.sleep(self.seconds)
        return await super().read()


async def test_a_resync_read_never_delays_an_apply(harness, autojump_clock):
    h = await harness(dp=SlowReads(2.0))
    start = trio.current_time()  # after the read at start
    await h.put(desired(1000, 1000))
    h.dp.tamper([DeleteReal(service=VIP, real=RealKey(address="10.1.0.2", port=80))])
    await trio.sleep_until(start + 30.5)  # the resync read runs from +30 s to +32 s
    assert (h.dp.started, h.dp.reads) == (2, 1)
    started = trio.current_time()
    await h.put(desired(1000, 1000, 0))
    assert trio.current_time() - started < 0.01  # applied at once, not after the read
    assert h.stats.drift_repairs == 0
    # That read saw the kernel before the apply: it is thrown away, and a new one
    # finds the drift.
    await trio.sleep_until(start + 36)
    assert (h.dp.started, h.dp.reads) == (3, 3)
    assert h.dp.state == kernel_view(desired(1000, 1000, 0))
    assert h.stats.drift_repairs == 1


async def test_reads_spoiled_by_applies_three_times_read_in_the_apply_path(
        harness, autojump_clock):
    h = await harness(dp=SlowReads(2.0))
    start = trio.current_time()
    await h.put(desired(1000, 1000))
    h.dp.tamper([DeleteReal(service=VIP, real=RealKey(address="10.1.0.2", port=80))])
    weights = iter(range(1, 100))
    while h.stats.drift_repairs == 0 and trio.current_time() < start + 60:
        await h.put(desired(1000, 1000, next(weights)))  # a change every second
        await trio.sleep(1)
    assert h.stats.drift_repairs == 1 and trio.current_time() < start + 45
    # 1 at start; 3 beside the applies, each spoiled; 1 in the apply path
    assert h.dp.started == 5
    assert h.dp.state.services[0].reals[1].weight == 1000
