"""run_kglb end to end in virtual time: fake checks, the in-memory data plane (kglb.md §8)."""

from functools import partial

import trio
from _control_fakes import FakeCheck, balancer_config

from actors.app import run_kglb
from actors.dataplane import MemoryDataPlane
from actors.probes import Prober
from actors.routes import MemorySpeaker
from kglb.config import Config


def weights(dataplane, port=80):
    for service in dataplane.state.services:
        if service.key.port == port and not service.key.fwmark:
            return {r.key.address: r.weight for r in service.reals}
    return None


async def start(nursery, config, fake, **kwargs):
    prober = Prober(check=fake, jitter=0)
    dataplane = kwargs.pop("dataplane", None) or MemoryDataPlane()
    handle = await nursery.start(partial(run_kglb, config, dataplane=dataplane, prober=prober,
                                         **kwargs))
    return handle, dataplane


async def test_first_state_all_unhealthy_then_healthy_after_rise_checks(autojump_clock):
    fake = FakeCheck()
    config = Config(balancers=(balancer_config(rise=3, fall=2, bgp_prefix="10.0.0.1"),))
    async with trio.open_nursery() as nursery:
        t0 = trio.current_time()
        handle, dataplane = await start(nursery, config, fake)
        await trio.sleep(0.5)
        assert weights(dataplane) == {"10.1.0.1": 0, "10.1.0.2": 0}
        stats = handle.statistics()
        assert stats.desired.routes == ()
        assert stats.balancers[0].initial is True
        assert dict(stats.route_decisions) == {"web-10.0.0.1:80-tcp": False}
        # checks at t0, t0+1, t0+2: up after rise=3 passes, then the coalescing delay
        await trio.sleep_until(t0 + 1.9)
        assert weights(dataplane) == {"10.1.0.1": 0, "10.1.0.2": 0}
        await trio.sleep_until(t0 + 2.5)
        assert weights(dataplane) == {"10.1.0.1": 1000, "10.1.0.2": 1000}
        stats = handle.statistics()
        assert [r.prefix for r in stats.desired.routes] == ["10.0.0.1/32"]
        assert stats.writer.applied == stats.desired
        assert set(stats.state_hashes) == {"setup1"}
        assert stats.checks[("web-10.0.0.1:80-tcp", "10.1.0.1")].passed == 3
        handle.shutdown()


async def test_balancer_state_one_failing_real_goes_to_zero(autojump_clock):
    fake = FakeCheck()
    config = Config(balancers=(balancer_config(rise=1, fall=2),))
    async with trio.open_nursery() as nursery:
        handle, dataplane = await start(nursery, config, fake)
        await trio.sleep(0.5)
        assert weights(dataplane) == {"10.1.0.1": 1000, "10.1.0.2": 1000}
        fake.up["10.1.0.2"] = False
        await trio.sleep(1.0)  # one failure: fall=2 not reached
        assert weights(dataplane) == {"10.1.0.1": 1000, "10.1.0.2": 1000}
        await trio.sleep(1.0)
        assert weights(dataplane) == {"10.1.0.1": 1000, "10.1.0.2": 0}
        handle.shutdown()


async def test_fail_open_keeps_weights_and_route(autojump_clock):
    fake = FakeCheck()
    speaker = MemorySpeaker()
    config = Config(balancers=(balancer_config(bgp_prefix="10.0.0.1"),))
    async with trio.open_nursery() as nursery:
        handle, dataplane = await start(nursery, config, fake, speaker=speaker)
        await trio.sleep(0.5)
        assert [r.prefix for r in await speaker.routes()] == ["10.0.0.1/32"]
        fake.default = False
        await trio.sleep(2.0)
        assert weights(dataplane) == {"10.1.0.1": 1000, "10.1.0.2": 1000}
        assert handle.statistics().balancers[0].failsafe is True
        assert [r.prefix for r in await speaker.routes()] == ["10.0.0.1/32"]
        fake.up["10.1.0.1"] = True
        await trio.sleep(1.0)
        assert weights(dataplane) == {"10.1.0.1": 1000, "10.1.0.2": 0}
        handle.shutdown()


async def test_initial_all_down_announces_nothing(autojump_clock):
    fake = FakeCheck(default=False)
    speaker = MemorySpeaker()
    config = Config(balancers=(balancer_config(bgp_prefix="10.0.0.1"),))
    async with trio.open_nursery() as nursery:
        handle, dataplane = await start(nursery, config, fake, speaker=speaker)
        await trio.sleep(5.0)
        assert weights(dataplane) == {"10.1.0.1": 0, "10.1.0.2": 0}
        assert await speaker.routes() == frozenset()
        handle.shutdown()


async def test_route_gated_by_announce_limit_ratio(autojump_clock):
    fake = FakeCheck()
    speaker = MemorySpeaker()
    config = Config(balancers=(balancer_config(bgp_prefix="10.0.0.1", announce_limit_ratio=0.75),))
    async with trio.open_nursery() as nursery:
        handle, _ = await start(nursery, config, fake, speaker=speaker)
        await trio.sleep(0.5)
        assert len(await speaker.routes()) == 1
        fake.up["10.1.0.1"] = False  # ratio 0.5 < 0.75: withdrawn
        await trio.sleep(1.0)
        assert await speaker.routes() == frozenset()
        assert dict(handle.statistics().route_decisions) == {"web-10.0.0.1:80-tcp": False}
        handle.shutdown()


async def test_500_reals_flipping_at_once_give_the_writer_one_state(autojump_clock):
    hosts = tuple(f"10.1.{i // 250}.{i % 250 + 1}" for i in range(500))
    fake = FakeCheck(default=False)
    config = Config(balancers=(balancer_config(hosts=hosts, interval_ms=5000),))
    async with trio.open_nursery() as nursery:
        handle, dataplane = await start(nursery, config, fake)
        await trio.sleep(1.0)
        before = handle.statistics().writer.applies
        assert set(weights(dataplane).values()) == {0}
        fake.default = True
        await trio.sleep(5.0)  # exactly one round, all reals flip
        assert set(weights(dataplane).values()) == {1000}
        assert handle.statistics().writer.applies == before + 1
        handle.shutdown()


async def test_names_resolve_per_family_and_keep_last_address_on_failure(autojump_clock):
    answers = {"a.example": "10.1.0.1", "b.example": "10.1.0.2"}
    calls = []

    async def resolve(host, family):
        calls.append((host, family))
        from actors.resolver import ResolveError
        if host not in answers:
            raise ResolveError(f"{host}: no such name")
        return answers[host]

    fake = FakeCheck()
    config = Config(balancers=(balancer_config(hosts=("a.example", "b.example", "c.example")),))
    async with trio.open_nursery() as nursery:
        handle, dataplane = await start(nursery, config, fake, resolve=resolve)
        await trio.sleep(0.5)
        assert weights(dataplane) == {"10.1.0.1": 1000, "10.1.0.2": 1000}  # c left out
        del answers["a.example"]  # fails from now on: keeps its last address
        answers["c.example"] = "10.1.0.3"  # retried after 5 s
        await trio.sleep(6.0)
        assert weights(dataplane) == {"10.1.0.1": 1000, "10.1.0.2": 1000, "10.1.0.3": 1000}
        assert handle.statistics().balancers[0].reals[0].address == "10.1.0.1"
        handle.shutdown()
