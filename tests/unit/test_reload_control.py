"""Reload: invalid keeps the old, changed balancers restart with their health (kglb.md §2.3)."""

import json
from functools import partial

import trio
from _control_fakes import FakeCheck, balancer_config

from actors.app import run_kglb
from actors.dataplane import MemoryDataPlane
from actors.probes import Prober
from kglb.config import Config


def weights(dataplane, port=80):
    for service in dataplane.state.services:
        if service.key.port == port and not service.key.fwmark:
            return {r.key.address: r.weight for r in service.reals}
    return None


async def start(nursery, config, fake):
    dataplane = MemoryDataPlane()
    handle = await nursery.start(partial(run_kglb, config, dataplane=dataplane,
                                         prober=Prober(check=fake, jitter=0)))
    return handle, dataplane


async def test_weight_up_222_and_back_to_1000_without_flapping(autojump_clock):
    fake = FakeCheck()
    base = balancer_config(rise=3, fall=3)
    async with trio.open_nursery() as nursery:
        handle, dataplane = await start(nursery, Config(balancers=(base,)), fake)
        await trio.sleep(2.5)
        assert weights(dataplane) == {"10.1.0.1": 1000, "10.1.0.2": 1000}
        checks = fake.calls
        assert await handle.reload(Config(balancers=(balancer_config(rise=3, fall=3,
                                                                     weight_up=222),))) == []
        await trio.sleep(0.2)  # not rise × interval: health was kept
        assert weights(dataplane) == {"10.1.0.1": 222, "10.1.0.2": 222}
        assert await handle.reload(Config(balancers=(base,))) == []
        await trio.sleep(0.2)
        assert weights(dataplane) == {"10.1.0.1": 1000, "10.1.0.2": 1000}
        assert handle.statistics().reloads_ok == 2
        assert fake.calls - checks <= 4  # the restarts did not re-check from scratch
        handle.shutdown()


async def test_hosts_added_by_update_start_at_zero(autojump_clock):
    fake = FakeCheck()
    async with trio.open_nursery() as nursery:
        handle, dataplane = await start(nursery, Config(balancers=(balancer_config(rise=3),)), fake)
        await trio.sleep(2.5)
        more = balancer_config(rise=3, hosts=("10.1.0.1", "10.1.0.2", "10.1.0.3"))
        assert await handle.reload(Config(balancers=(more,))) == []
        await trio.sleep(0.5)
        assert weights(dataplane) == {"10.1.0.1": 1000, "10.1.0.2": 1000, "10.1.0.3": 0}
        await trio.sleep(2.0)
        assert weights(dataplane)["10.1.0.3"] == 1000
        handle.shutdown()


async def test_removed_balancer_leaves_the_state_at_once_and_unchanged_is_untouched(
        autojump_clock):
    fake = FakeCheck()
    a = balancer_config("a", port=80)
    b = balancer_config("b", port=81, hosts=("10.1.0.9",))
    async with trio.open_nursery() as nursery:
        handle, dataplane = await start(nursery, Config(balancers=(a, b)), fake)
        await trio.sleep(0.5)
        assert weights(dataplane, 81) == {"10.1.0.9": 1000}
        applies = handle.statistics().writer.applies
        assert await handle.reload(Config(balancers=(a,))) == []
        await trio.sleep(0.2)
        assert weights(dataplane, 81) is None
        assert weights(dataplane, 80) == {"10.1.0.1": 1000, "10.1.0.2": 1000}
        assert handle.statistics().writer.applies == applies + 1
        assert [s.name for s in handle.statistics().balancers] == ["a"]
        handle.shutdown()


async def test_invalid_reload_keeps_the_old_config_and_is_counted(autojump_clock):
    fake = FakeCheck()
    async with trio.open_nursery() as nursery:
        handle, dataplane = await start(nursery, Config(balancers=(balancer_config(),)), fake)
        await trio.sleep(0.5)
        before = dataplane.state
        problems = await handle.reload(b"{not json")
        assert problems
        dup = balancer_config("other")  # same VIP:port as "web"
        assert await handle.reload(Config(balancers=(balancer_config(), dup)))
        await trio.sleep(1.0)
        assert dataplane.state == before
        stats = handle.statistics()
        assert (stats.reloads_ok, stats.reloads_failed) == (0, 2)
        handle.shutdown()


async def test_reload_from_kglb_json_text(autojump_clock):
    fake = FakeCheck()
    text = json.dumps({"balancers": [{
        "name": "web", "setupName": "s",
        "lbService": {"ipvsService": {"tcpAttributes": {
            "address": {"ipv4": "10.0.0.7"}, "port": 80}}},
        "upstreamRouting": {"forwardMethod": "TUNNEL"},
        "upstreamDiscovery": {"port": 80, "staticAttributes": {"hosts": ["10.1.0.5"]}},
        "upstreamChecker": {"riseCount": 1, "fallCount": 1, "intervalMs": 1000,
                            "checker": {"dummy": {}}},
        "dynamicRouting": {},
    }]})
    async with trio.open_nursery() as nursery:
        handle, dataplane = await start(nursery, Config(balancers=(balancer_config(),)), fake)
        await trio.sleep(0.5)
        assert await handle.reload(text) == []
        await trio.sleep(0.5)
        assert [(s.key.address, [r.key.address for r in s.reals])
                for s in dataplane.state.services] == [("10.0.0.7", ["10.1.0.5"])]
        handle.shutdown()
