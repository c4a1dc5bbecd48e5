"""Issue 14 in virtual time: containment per VIP, holds per route, write-ahead ownership."""

from __future__ import annotations

import errno

import pytest
import trio
from test_writer import Harness, desired, kernel_view

from actors.dataplane import MemoryDataPlane, OperationError
from actors.ownership import load_owned
from actors.routes import MemorySpeaker
from actors.writer import Writer
from kglb import (
    AnnounceRoute,
    DataPlaneState,
    LinkAddress,
    Real,
    RealKey,
    Route,
    Service,
    ServiceKey,
    ServiceState,
)

A, B = ServiceKey.tcp("10.0.0.1", 80), ServiceKey.tcp("10.0.0.2", 80)
FOREIGN = ServiceState(service=Service(key=ServiceKey.tcp("192.0.2.1", 80)),
                       reals=(Real(key=RealKey(address="192.0.2.9", port=80), weight=5),))
FOREIGN_ADDR = LinkAddress(address="192.0.2.1")


def route(key: ServiceKey, hold_ms: int = 0, communities=()) -> Route:
    return Route(prefix=f"{key.address}/32", local_asn=65000, peer_asn=65001,
                 hold_time_ms=hold_ms, communities=communities)


def both(*parts: DataPlaneState) -> DataPlaneState:
    return DataPlaneState(services=tuple(s for p in parts for s in p.services),
                          addresses=tuple(a for p in parts for a in p.addresses),
                          routes=tuple(r for p in parts for r in p.routes))


class RefusingSpeaker(MemorySpeaker):
    """Refuses to announce the routes in ``refuse`` (a community BIRD rejects: EINVAL)."""

    def __init__(self, refuse: set[Route]) -> None:
        super().__init__()
        self.refuse = refuse

    async def announce(self, r: Route) -> None:
        if r in self.refuse:
            raise OperationError(AnnounceRoute(route=r), errno.EINVAL, "bad community")
        await super().announce(r)


@pytest.fixture
async def harness(nursery, tmp_path):
    async def make(**kw):
        return await Harness(nursery, tmp_path, **kw).start()

    return make


async def test_a_failing_balancer_does_not_block_removing_a_healthy_one(harness, autojump_clock):
    # issue 14, problem 2: one balancer's refused announce used to end every apply.
    bad = route(B, communities=("65000:99999",))
    h = await harness(speaker=RefusingSpeaker({bad}))
    healthy = desired(1000, key=A, routes=(route(A, hold_ms=3000),))
    failing = desired(1000, key=B, routes=(bad,))
    await h.send.send(both(healthy, failing))
    await trio.sleep(1)
    assert h.stats.failing == {"10.0.0.2"}
    assert await h.speaker.routes() == {route(A)}
    # reload: A is removed, B still fails
    await h.send.send(failing)
    await trio.sleep(2.9)
    assert await h.speaker.routes() == frozenset()  # withdrawn at once
    assert A in h.dp.state.service_map()  # still draining: the hold of A's route
    await trio.sleep(0.2)
    assert h.dp.state == kernel_view(failing)  # A's service and VIP are gone
    assert h.stats.owned.services == {B}
    assert h.stats.failing == {"10.0.0.2"}
    assert h.stats.errors_by_errno[errno.EINVAL] >= 3  # B is retried and counted
    h.speaker.refuse.clear()
    await trio.sleep(10)  # backoff is at most 8 s
    assert h.stats.failing == frozenset()
    assert h.stats.manager_state == "available"
    assert await h.speaker.routes() == {bad}


async def test_a_weight_flip_applies_at_once_while_another_vip_is_in_its_hold(
        harness, autojump_clock):
    # issue 14, problem 3 / done-when: X's weight flip within 100 ms while Y holds for 3 s.
    h = await harness()
    x = desired(1000, 1000, key=A, routes=(route(A, hold_ms=3000),))
    y = desired(1000, key=B, routes=(route(B, hold_ms=3000),))
    await h.put(both(x, y))
    await h.send.send(x)  # Y removed: its route is withdrawn, its deletion holds 3 s
    await trio.sleep(0.5)
    assert route(B) in h.stats.held
    sent = trio.current_time()
    h.log.clear()
    await h.send.send(both(desired(1000, 0, key=A, routes=(route(A, hold_ms=3000),))))
    while not h.log:
        await trio.sleep(0.001)
    assert h.log[0][1] == "UpdateReal"
    assert h.log[0][0] - sent < 0.1
    assert B in h.dp.state.service_map()  # Y is still held
    await trio.sleep(3)
    assert B not in h.dp.state.service_map()


async def test_a_recovering_route_is_announced_again_without_waiting_for_the_hold(
        harness, autojump_clock):
    # issue 14, problem 3: the route of a balancer back from all-down came holdTimeMs late.
    h = await harness()
    up = desired(1000, key=A, routes=(route(A, hold_ms=3000),))
    await h.put(up)
    await h.send.send(desired(0, key=A))  # all down: withdrawn
    await trio.sleep(0.1)
    assert await h.speaker.routes() == frozenset()
    back = trio.current_time()
    await h.send.send(up)
    await trio.sleep(0.01)
    assert await h.speaker.routes() == {route(A)}
    assert trio.current_time() - back < 0.1


class KillNine(BaseException):
    """The process dies here: nothing after it runs, no cleanup."""


class DyingDataPlane(MemoryDataPlane):
    """Applies ``survive`` operations in all, then dies in the middle of a batch."""

    def __init__(self, seed: DataPlaneState, survive: int) -> None:
        super().__init__(seed)
        self.survive = survive

    async def apply(self, ops):
        if self.survive is not None and len(ops) > self.survive:
            errors = await super().apply(ops[:self.survive])
            self.survive = None  # the next process runs on an ordinary kernel
            raise KillNine(errors)
        if self.survive is not None:
            self.survive -= len(ops)
        return await super().apply(ops)


def big(n: int, reals: int = 3) -> DataPlaneState:
    services = []
    for i in range(n):
        key = ServiceKey.tcp(f"10.0.1.{i + 1}", 80)
        services.append(ServiceState(service=Service(key=key), reals=tuple(
            Real(key=RealKey(address=f"10.2.{i}.{j + 1}", port=80), weight=1)
            for j in range(reals))))
    return DataPlaneState(services=tuple(services),
                          addresses=tuple(LinkAddress(address=s.key.address) for s in services))


async def run_until_death(dp, path, state) -> None:
    writer = Writer(dp, MemorySpeaker(), ownership_path=path)
    send, receive = trio.open_memory_channel(1)
    with pytest.raises(BaseExceptionGroup) as info:
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run, receive)
            await send.send(state)
            await trio.sleep(1)
    assert info.group_contains(KillNine)


async def run_and_stop(dp, path, state) -> None:
    writer = Writer(dp, MemorySpeaker(), ownership_path=path)
    send, receive = trio.open_memory_channel(1)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run, receive)
        await send.send(state)
        await trio.sleep(1)
        assert writer.statistics().manager_state == "available"
        await send.aclose()


SEED = DataPlaneState(services=(FOREIGN,), addresses=(FOREIGN_ADDR,))
FIRST = big(6)  # 6 services, 6 VIPs, 18 reals: 30 operations


@pytest.mark.parametrize("survive", [0, 1, 5, 6, 7, 12, 29])
@pytest.mark.parametrize("restart_with", ["same", "half"])
async def test_kill_nine_during_the_first_apply_leaks_nothing(
        tmp_path, autojump_clock, survive, restart_with):
    # issue 14, problem 1: ownership used to be recorded after the apply.
    path = tmp_path / "owned.json"
    dp = DyingDataPlane(SEED, survive)
    await run_until_death(dp, path, FIRST)
    assert load_owned(path).services == {s.key for s in FIRST.services}  # written ahead
    again = FIRST if restart_with == "same" else big(3)
    await run_and_stop(dp, path, again)
    assert dp.state == SEED
    assert load_owned(path).services == frozenset()


@pytest.mark.parametrize("survive", [0, 6, 7, 29])
async def test_a_lost_record_cannot_leak_our_vips(tmp_path, autojump_clock, survive):
    # issue 14, problem 1: "corrupt ownership record, owning nothing" leaked every VIP.
    path = tmp_path / "owned.json"
    dp = DyingDataPlane(SEED, survive)
    await run_until_death(dp, path, FIRST)
    path.write_text("{corrupt")
    await run_and_stop(dp, path, big(3))
    # VIPs carry the kernel's mark: all ours are gone. Services have no mark:
    # the 3 still desired were adopted and removed; the others stay (documented).
    assert dp.state.addresses == (FOREIGN_ADDR,)
    left = {s.key for s in dp.state.services} - {FOREIGN.key}
    assert left <= {s.key for s in FIRST.services[3:]}
    assert FOREIGN in dp.state.services


async def test_a_kill_inside_the_record_write_keeps_the_old_record(
        tmp_path, autojump_clock, monkeypatch):
    path = tmp_path / "owned.json"
    dp = MemoryDataPlane(SEED)
    writer = Writer(dp, MemorySpeaker(), ownership_path=path, keep_on_exit=True)
    send, receive = trio.open_memory_channel(1)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run, receive)
        await send.send(big(2))
        await trio.sleep(1)
        await send.aclose()
    before = path.read_bytes()

    def die(*args):
        raise KillNine()

    monkeypatch.setattr("actors.ownership.os.replace", die)
    with pytest.raises(BaseExceptionGroup):
        await run_until_death_plain(dp, path, big(4))
    monkeypatch.undo()
    assert path.read_bytes() == before  # the old record, whole
    assert len(dp.state.services) == 3  # nothing was created unrecorded
    await run_and_stop(dp, path, big(1))
    assert dp.state == SEED
    assert not list(tmp_path.glob(".owned.json.*"))  # the half-written file is cleaned


async def run_until_death_plain(dp, path, state) -> None:
    writer = Writer(dp, MemorySpeaker(), ownership_path=path)
    send, receive = trio.open_memory_channel(1)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run, receive)
        await send.send(state)
        await trio.sleep(1)


async def test_nothing_is_created_while_the_record_cannot_be_written(
        harness, autojump_clock, monkeypatch):
    import actors.writer

    save = actors.writer.save_owned
    failures = iter(range(3))

    def full_disk(path, owned):
        if next(failures, None) is not None:
            raise OSError(errno.ENOSPC, "No space left on device")
        save(path, owned)

    monkeypatch.setattr(actors.writer, "save_owned", full_disk)
    h = await harness(backoff=1.0)
    state = desired(1000)
    await h.send.send(state)
    await trio.sleep(0.5)
    assert h.dp.applied == [] and h.dp.attempts == {}  # not even tried
    assert h.stats.errors_by_errno[errno.ENOSPC] == 3  # ahead, then each confirmation
    assert h.stats.failing == {"10.0.0.1"}
    await trio.sleep(10)  # the group's retry writes the record, then creates
    assert h.dp.state == kernel_view(state)
    assert load_owned(h.path).services == {A}
