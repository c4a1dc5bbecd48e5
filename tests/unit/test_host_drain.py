"""The host drain (actors/host_drain.py) through run_kglb, in virtual time.

Routes go first, the hold time is waited, the services stay while connections
still send packets, and only then the graceful shutdown removes them.
"""

from functools import partial
from types import SimpleNamespace

import pytest
import trio
from _control_fakes import FakeCheck, balancer_config

from actors import host_drain as drain
from actors.app import run_kglb
from actors.dataplane import MemoryDataPlane, RealCounters, ServiceCounters
from actors.host_drain import RouteGate
from actors.probes import Prober
from actors.routes import MemorySpeaker
from kglb import DataPlaneState, LinkAddress, RealKey, Route, Service, ServiceKey
from kglb.config import Config

KEY = ServiceKey.tcp("10.0.0.1", 80)
HOLD = 2.0


def config() -> Config:
    return Config(balancers=(balancer_config(bgp_prefix="10.0.0.1", hold_time_ms=int(HOLD * 1000)),))


def traffic(dataplane: MemoryDataPlane, *, active: int, packets: int) -> None:
    dataplane.counter_values[KEY] = ServiceCounters(
        key=KEY, packets_in=packets,
        reals=tuple(RealCounters(key=r.key, active_conns=active)
                    for r in dataplane.state.services[0].reals))


async def run(nursery, fake, dataplane, speaker):
    done = trio.Event()

    async def kglb(task_status=trio.TASK_STATUS_IGNORED):
        await run_kglb(config(), dataplane=dataplane, speaker=speaker,
                       prober=Prober(check=fake, jitter=0), task_status=task_status)
        done.set()

    return await nursery.start(kglb), done


async def test_drain_withdraws_waits_hold_serves_until_idle_then_stops(autojump_clock):
    fake, dataplane, speaker = FakeCheck(), MemoryDataPlane(), MemorySpeaker()
    async with trio.open_nursery() as nursery:
        handle, done = await run(nursery, fake, dataplane, speaker)
        await trio.sleep(1)
        assert [r.prefix for r in await speaker.routes()] == ["10.0.0.1/32"]
        packets = 0

        async def flowing(until: float) -> None:
            nonlocal packets
            while trio.current_time() < until:
                packets += 10
                traffic(dataplane, active=3, packets=packets)
                await trio.sleep(0.5)

        t0 = trio.current_time()
        nursery.start_soon(flowing, t0 + 8)
        handle.drain_host(timeout=120)
        await trio.sleep(0.2)
        assert await speaker.routes() == frozenset()  # withdrawn at once
        assert handle.statistics().host_drain in ("withdrawing", "waiting hold")
        # a health change during the drain never announces the route again
        fake.up["10.1.0.2"] = False
        await trio.sleep(HOLD + 3)
        assert await speaker.routes() == frozenset()
        assert handle.statistics().host_drain == "draining"
        assert dataplane.state.services, "services removed while connections still send"
        # packets stop at t0+8: the drain ends IDLE seconds later (within one poll)
        await done.wait()
        ended = trio.current_time() - t0
        assert 8 + drain.IDLE - drain.POLL <= ended <= 8 + drain.IDLE + 2 * drain.POLL
        assert dataplane.state.services == ()
        assert dataplane.state.addresses == ()
        assert speaker.announced == 1


async def test_drain_ends_after_the_hold_when_no_connection_is_active(autojump_clock):
    fake, dataplane, speaker = FakeCheck(), MemoryDataPlane(), MemorySpeaker()
    async with trio.open_nursery() as nursery:
        handle, done = await run(nursery, fake, dataplane, speaker)
        await trio.sleep(1)
        t0 = trio.current_time()
        handle.drain_host(timeout=120)
        handle.drain_host(timeout=1)  # a second request changes nothing
        await done.wait()
        assert HOLD <= trio.current_time() - t0 <= HOLD + 1
        assert dataplane.state.services == ()


async def test_drain_timeout_stops_even_while_connections_send(autojump_clock):
    fake, dataplane, speaker = FakeCheck(), MemoryDataPlane(), MemorySpeaker()
    async with trio.open_nursery() as nursery:
        handle, done = await run(nursery, fake, dataplane, speaker)
        await trio.sleep(1)

        async def flowing() -> None:
            packets = 0
            while True:
                packets += 1
                traffic(dataplane, active=1, packets=packets)
                await trio.sleep(0.5)

        nursery.start_soon(flowing)
        t0 = trio.current_time()
        handle.drain_host(timeout=30)
        await done.wait()
        assert 30 <= trio.current_time() - t0 <= 31
        assert dataplane.state.services == ()
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("withdraw_while", ["waiting", "sending"])
async def test_gate_resends_the_latest_state_without_routes(autojump_clock, withdraw_while):
    route = Route(prefix="10.0.0.1/32", local_asn=65000, peer_asn=65001)
    with_route = DataPlaneState(routes=(route,))
    gate = RouteGate()
    send_in, receive_in = trio.open_memory_channel(0)
    send_out, receive_out = trio.open_memory_channel(0)
    async with trio.open_nursery() as nursery:
        await nursery.start(gate.run, receive_in, send_out)
        await send_in.send(with_route)
        if withdraw_while == "sending":
            await trio.sleep(1)  # the gate is blocked sending with_route
            gate.withdraw_all()
            assert await receive_out.receive() == with_route
        else:
            assert await receive_out.receive() == with_route
            gate.withdraw_all()
        assert await receive_out.receive() == DataPlaneState()
        vip = LinkAddress(link="lo", address="10.0.0.1")
        await send_in.send(DataPlaneState(addresses=(vip,), routes=(route,)))
        assert await receive_out.receive() == DataPlaneState(addresses=(vip,))  # later ones too
        await send_in.aclose()
        with pytest.raises(trio.EndOfChannel):  # closing the input ends the writer's
            await receive_out.receive()


class _Handle:
    """What HostDrain reads of a KglbHandle: the desired and applied states, shutdown."""

    def __init__(self) -> None:
        self.desired = DataPlaneState(services=(Service(key=KEY),))
        self.stopped_at: float | None = None

    def statistics(self):
        writer = SimpleNamespace(applied=DataPlaneState())  # routes already withdrawn
        return SimpleNamespace(writer=writer, desired=self.desired)

    def shutdown(self) -> None:
        self.stopped_at = trio.current_time()


async def test_drain_judges_idleness_between_readings_not_by_their_age(autojump_clock):
    # Under --privsep the counters are the writer's, read every few seconds (12 s
    # here, longer than IDLE): a flow that
    # keeps sending must not look idle because the newest reading is old, and
    # a reading taken before the drain began must not end it.
    readings = [(0.0, {})]  # before the drain: no connection at all

    def connections():
        return readings[-1]

    async def writer_reads(until: float) -> None:
        packets = 0
        while True:
            now = trio.current_time()
            packets += 100 if now < until else 0
            readings.append((now, {KEY: ServiceCounters(
                key=KEY, packets_in=packets,
                reals=(RealCounters(key=RealKey(address="10.1.0.2", port=80), active_conns=2),))}))
            await trio.sleep(12)

    handle, host_drain = _Handle(), drain.HostDrain(RouteGate(), connections)
    async with trio.open_nursery() as nursery:
        await nursery.start(host_drain.run, handle)
        await trio.sleep(1)
        t0 = trio.current_time()
        host_drain.request(timeout=300)
        nursery.start_soon(writer_reads, t0 + 40)
        while handle.stopped_at is None:
            await trio.sleep(0.5)
        nursery.cancel_scope.cancel()  # the writer's readings go on forever
    # readings at t0+0, 12, 24, 36 show packets; the one at t0+48 shows none new,
    # 12 s >= IDLE after the last change: the drain ends there, not earlier
    assert 48 <= handle.stopped_at - t0 <= 48 + drain.POLL
