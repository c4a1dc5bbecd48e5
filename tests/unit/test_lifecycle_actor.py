"""The lifecycle rules through the whole control plane, in virtual time (issue 17).

Problems of issue 17, numbered as in its list: (1) a real leaving the config
is deleted at once, connections and all; shutdown deletes everything at once;
(2) a recovered real gets its full weight at once; (3) a flapping real flaps;
(4) failed checks may depool every real but one. Its follow-ups: (1a) the
counters cadence was fixed by the starting config, so a drain added by reload
ended up to 10 s late; (1b) a balancer removed as a whole was not drained.
"""

import math
from functools import partial

import pytest
import trio
from _control_fakes import FakeCheck, balancer_config

from actors._cmd_status import render_table
from actors.app import run_kglb
from actors.metrics import render_metrics
from actors.status import status_document
from actors.dataplane import MemoryDataPlane, RealCounters, ServiceCounters
from actors.probes import Prober
from actors.routes import MemorySpeaker
from kglb import RealKey, ServiceKey
from kglb.config import Config, FlapDamping, Lifecycle

HOSTS = ("10.1.0.1", "10.1.0.2", "10.1.0.3")
KEY = ServiceKey.tcp("10.0.0.1", 80)


def weights(dataplane):
    for service in dataplane.state.services:
        if service.key == KEY:
            return {r.key.address: r.weight for r in service.reals}
    return None


def config(hosts=HOSTS, **life):
    return Config(balancers=(balancer_config(hosts=hosts, lifecycle=Lifecycle(**life)),))


def active(dataplane, **conns):
    """Make the memory data plane report ActiveConn per real (address with _ for .)."""
    dataplane.counter_values[KEY] = ServiceCounters(key=KEY, reals=tuple(
        RealCounters(key=RealKey(address=a.replace("_", "."), port=80), active_conns=n)
        for a, n in conns.items()))


async def start(nursery, cfg, fake, dataplane=None, **kwargs):
    dataplane = MemoryDataPlane() if dataplane is None else dataplane
    handle = await nursery.start(partial(run_kglb, cfg, dataplane=dataplane,
                                         prober=Prober(check=fake, jitter=0), **kwargs))
    return handle, dataplane


def status_of(handle, host):
    return next(r for b in handle.statistics().balancers for r in b.reals if r.host == host)


# ------------------------------------------------------------------ (1) drain

async def test_removed_real_drains_until_its_connections_end(autojump_clock):
    async with trio.open_nursery() as nursery:
        handle, dataplane = await start(nursery, config(drain_timeout_ms=60_000), FakeCheck())
        await trio.sleep(1.5)
        active(dataplane, **{"10_1_0_3": 2})
        assert await handle.reload(config(HOSTS[:2], drain_timeout_ms=60_000)) == []
        await trio.sleep(5)
        assert weights(dataplane) == {"10.1.0.1": 1000, "10.1.0.2": 1000, "10.1.0.3": 0}
        status = status_of(handle, "10.1.0.3")
        assert status.state == "draining" and status.connections == 2
        assert 54 < status.drain_left < 56
        # shown in status and metrics
        doc = status_document(handle.statistics(), now=trio.current_time(), wall=0.0)
        line = next(x for x in render_table(doc).splitlines() if "10.1.0.3" in x)
        assert "draining" in line and "2 connections left, 55s left" in line
        text = render_metrics(handle.statistics()).decode()
        assert ('kglb_trio_real_lifecycle{address="10.1.0.3",host="10.1.0.3",service="web",'
                'setup="setup1",state="draining"} 1.0') in text
        assert ('kglb_trio_real_drain_connections{address="10.1.0.3",host="10.1.0.3",'
                'service="web",setup="setup1"} 2.0') in text
        closed = trio.current_time()
        active(dataplane, **{"10_1_0_3": 0})
        while "10.1.0.3" in weights(dataplane):
            await trio.sleep(0.1)
        assert trio.current_time() - closed <= 2.0  # a counters read (1 s) and a poll (0.5 s)
        handle.shutdown()


async def test_drain_ends_at_the_timeout_when_connections_never_close(autojump_clock):
    async with trio.open_nursery() as nursery:
        handle, dataplane = await start(nursery, config(drain_timeout_ms=7000), FakeCheck())
        await trio.sleep(1.5)
        active(dataplane, **{"10_1_0_3": 1})
        left = trio.current_time()
        assert await handle.reload(config(HOSTS[:2], drain_timeout_ms=7000)) == []
        await trio.sleep(6.5)
        assert weights(dataplane)["10.1.0.3"] == 0
        while "10.1.0.3" in weights(dataplane):
            await trio.sleep(0.1)
        assert 7.0 <= trio.current_time() - left <= 7.7
        handle.shutdown()


async def test_a_real_back_while_draining_is_restored_with_its_health(autojump_clock):
    async with trio.open_nursery() as nursery:
        handle, dataplane = await start(nursery, config(drain_timeout_ms=60_000), FakeCheck())
        await trio.sleep(1.5)
        active(dataplane, **{"10_1_0_3": 1})
        await handle.reload(config(HOSTS[:2], drain_timeout_ms=60_000))
        await trio.sleep(2)
        assert weights(dataplane)["10.1.0.3"] == 0
        await handle.reload(config(drain_timeout_ms=60_000))
        await trio.sleep(0.1)  # no rise x interval: its health was kept
        assert weights(dataplane)["10.1.0.3"] == 1000
        assert status_of(handle, "10.1.0.3").state == "up"
        handle.shutdown()


async def test_without_drain_a_removed_real_goes_at_once(autojump_clock):
    async with trio.open_nursery() as nursery:
        handle, dataplane = await start(nursery, config(), FakeCheck())
        await trio.sleep(1.5)
        active(dataplane, **{"10_1_0_3": 2})
        await handle.reload(config(HOSTS[:2]))
        await trio.sleep(0.1)
        assert weights(dataplane) == {"10.1.0.1": 1000, "10.1.0.2": 1000}
        handle.shutdown()


async def test_drain_added_by_reload_reads_counters_every_second(autojump_clock):
    # Follow-up 1: the counters cadence was decided from the starting config
    # only; a reload adding drainTimeoutMs got the writer's 10 s reads.
    async with trio.open_nursery() as nursery:
        handle, dataplane = await start(nursery, config(), FakeCheck())
        await trio.sleep(1.5)
        assert await handle.reload(config(drain_timeout_ms=60_000)) == []
        await trio.sleep(0.5)
        active(dataplane, **{"10_1_0_3": 2})
        assert await handle.reload(config(HOSTS[:2], drain_timeout_ms=60_000)) == []
        await trio.sleep(2.5)
        assert weights(dataplane)["10.1.0.3"] == 0
        closed = trio.current_time()
        active(dataplane, **{"10_1_0_3": 0})
        while "10.1.0.3" in weights(dataplane):
            await trio.sleep(0.1)
        assert trio.current_time() - closed <= 2.0
        handle.shutdown()


class CountingDataPlane(MemoryDataPlane):
    dumps = 0

    async def counters(self):
        self.dumps += 1
        return await super().counters()


async def test_counters_are_read_every_second_only_while_a_real_drains(autojump_clock):
    async with trio.open_nursery() as nursery:
        handle, dataplane = await start(nursery, config(drain_timeout_ms=60_000), FakeCheck(),
                                        CountingDataPlane())
        await trio.sleep(60)
        assert dataplane.dumps <= 7  # the writer's, every 10 s: nothing drains
        active(dataplane, **{"10_1_0_3": 1})
        await handle.reload(config(HOSTS[:2], drain_timeout_ms=60_000))
        before = dataplane.dumps
        await trio.sleep(20)
        assert 20 <= dataplane.dumps - before <= 24
        handle.shutdown()


def two(first_hosts=HOSTS, **life):
    """web (routed, 10.0.0.1) and other (10.0.0.2)."""
    return Config(balancers=(
        balancer_config(hosts=first_hosts, bgp_prefix="10.0.0.1", lifecycle=Lifecycle(**life)),
        balancer_config("other", vip="10.0.0.2", hosts=HOSTS[:1])))


def other_only():
    return Config(balancers=two().balancers[1:])


@pytest.mark.parametrize("close_at, timeout_ms, gone_within", [
    (3.0, 60_000, (3.0, 5.0)),  # its last connection closes at 3 s
    (None, 6000, (6.0, 6.7)),  # never closes: gone at the timeout
])
async def test_removed_balancer_withdraws_its_route_and_drains(
        autojump_clock, close_at, timeout_ms, gone_within):
    # Follow-up 2: a balancer removed as a whole left the desired state at once.
    speaker = MemorySpeaker()
    async with trio.open_nursery() as nursery:
        handle, dataplane = await start(nursery, two(drain_timeout_ms=timeout_ms), FakeCheck(),
                                        speaker=speaker)
        await trio.sleep(1.5)
        assert [r.prefix for r in await speaker.routes()] == ["10.0.0.1/32"]
        active(dataplane, **{"10_1_0_1": 1, "10_1_0_2": 0, "10_1_0_3": 0})
        removed = trio.current_time()
        assert await handle.reload(other_only()) == []
        await trio.sleep(0.1)
        assert await speaker.routes() == frozenset()  # withdrawn first
        assert weights(dataplane) == {"10.1.0.1": 0, "10.1.0.2": 0, "10.1.0.3": 0}
        await trio.sleep(2)  # the idle reals are gone, the busy one drains, shown in status
        assert weights(dataplane) == {"10.1.0.1": 0}
        web = handle.statistics().balancers[-1]  # the leaving one comes last
        assert web.name == "web" and [(r.host, r.state) for r in web.reals] == [
            ("10.1.0.1", "draining")]
        if close_at is not None:
            await trio.sleep_until(removed + close_at)
            active(dataplane, **{"10_1_0_1": 0})
        while weights(dataplane) is not None:
            await trio.sleep(0.1)
        assert gone_within[0] <= trio.current_time() - removed <= gone_within[1]
        assert [b.identity for b in handle.statistics().balancers] == [
            b.identity for b in other_only().balancers]
        handle.shutdown()


async def test_removed_balancer_keeps_a_prefix_another_balancer_announces(autojump_clock):
    # Routes of one prefix must all be announceable: the leaving balancer must not
    # take its neighbour's route down while it drains.
    speaker = MemorySpeaker()
    https = balancer_config("https", port=443, hosts=HOSTS[:1], bgp_prefix="10.0.0.1")
    both = Config(balancers=(*two(drain_timeout_ms=60_000).balancers[:1], https))
    async with trio.open_nursery() as nursery:
        handle, dataplane = await start(nursery, both, FakeCheck(), speaker=speaker)
        await trio.sleep(1.5)
        active(dataplane, **{"10_1_0_1": 1})
        await handle.reload(Config(balancers=(https,)))
        await trio.sleep(2)
        assert weights(dataplane) == {"10.1.0.1": 0}
        assert [r.prefix for r in await speaker.routes()] == ["10.0.0.1/32"]
        handle.shutdown()


async def test_removed_balancer_back_while_draining_is_restored(autojump_clock):
    async with trio.open_nursery() as nursery:
        handle, dataplane = await start(nursery, two(drain_timeout_ms=60_000), FakeCheck())
        await trio.sleep(1.5)
        active(dataplane, **{"10_1_0_1": 1, "10_1_0_2": 1, "10_1_0_3": 1})
        await handle.reload(other_only())
        await trio.sleep(2)
        assert weights(dataplane) == {"10.1.0.1": 0, "10.1.0.2": 0, "10.1.0.3": 0}
        assert await handle.reload(two(drain_timeout_ms=60_000)) == []
        await trio.sleep(0.5)  # no rise x interval: their health was kept
        assert weights(dataplane) == {"10.1.0.1": 1000, "10.1.0.2": 1000, "10.1.0.3": 1000}
        handle.shutdown()


async def test_shutdown_while_a_removed_balancer_drains_ends_its_drain_too(autojump_clock):
    async with trio.open_nursery() as nursery:
        handle, dataplane = await start(nursery, two(drain_timeout_ms=4000), FakeCheck())
        await trio.sleep(1.5)
        active(dataplane, **{"10_1_0_1": 1})
        began = trio.current_time()
        await handle.reload(other_only())
        await trio.sleep(1)
        handle.shutdown()
    assert dataplane.state.services == ()
    assert 4.0 <= trio.current_time() - began <= 5.0


@pytest.mark.parametrize("conns, timeout_ms, at_3s, within", [
    # one real keeps a connection until 3 s: the idle ones go first, then it
    ({"10_1_0_1": 1, "10_1_0_2": 0, "10_1_0_3": 0}, 10_000, {"10.1.0.1": 0}, (3.0, 6.0)),
    # connections that never close: everything goes at the timeout
    ({"10_1_0_1": 5, "10_1_0_2": 5, "10_1_0_3": 5}, 4000,
     {"10.1.0.1": 0, "10.1.0.2": 0, "10.1.0.3": 0}, (4.0, 5.0)),
])
async def test_shutdown_drains_within_the_timeout(autojump_clock, conns, timeout_ms, at_3s,
                                                  within):
    dataplane = MemoryDataPlane()
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(partial(run_kglb, config(drain_timeout_ms=timeout_ms),
                                             dataplane=dataplane,
                                             prober=Prober(check=FakeCheck(), jitter=0)))
        await trio.sleep(1.5)
        active(dataplane, **conns)
        began = trio.current_time()
        handle.shutdown()
        await trio.sleep(3)
        assert weights(dataplane) == at_3s
        active(dataplane, **{"10_1_0_1": 0} if timeout_ms > 5000 else conns)
    assert weights(dataplane) is None  # then everything was removed
    assert within[0] <= trio.current_time() - began <= within[1]


async def test_keep_on_exit_does_not_drain(autojump_clock, tmp_path):
    dataplane = MemoryDataPlane()
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(partial(
            run_kglb, config(drain_timeout_ms=10_000), dataplane=dataplane, keep_on_exit=True,
            prober=Prober(check=FakeCheck(), jitter=0)))
        await trio.sleep(1.5)
        active(dataplane, **{"10_1_0_1": 5})
        began = trio.current_time()
        handle.shutdown()
    assert trio.current_time() - began < 1
    assert weights(dataplane) == {"10.1.0.1": 1000, "10.1.0.2": 1000, "10.1.0.3": 1000}


# ------------------------------------------------------------------ (2) slow start

async def test_a_recovering_real_ramps_in_ten_steps_over_the_window(autojump_clock):
    fake = FakeCheck()
    async with trio.open_nursery() as nursery:
        handle, dataplane = await start(nursery, config(slow_start_ms=10_000), fake)
        await trio.sleep(0.5)
        # Not at the balancer's start: every real got weight_up at once.
        assert weights(dataplane) == {a: 1000 for a in HOSTS}
        await trio.sleep(10)  # ramps begin once the balancer served a whole window
        fake.up["10.1.0.3"] = False
        await trio.sleep(1.0)
        assert weights(dataplane)["10.1.0.3"] == 0
        fake.up["10.1.0.3"] = True
        while weights(dataplane)["10.1.0.3"] == 0:
            await trio.sleep(0.01)
        began = trio.current_time()
        seen = []
        while trio.current_time() - began < 11:
            weight = weights(dataplane)["10.1.0.3"]
            if not seen or seen[-1][1] != weight:
                seen.append((round(trio.current_time() - began, 1), weight))
            await trio.sleep(0.1)
        assert [w for _, w in seen] == [100 * k for k in range(1, 11)]
        assert [t for t, _ in seen] == [0.0] + [float(k) for k in range(2, 11)]
        assert status_of(handle, "10.1.0.3").state == "up"
        handle.shutdown()


async def test_no_slow_start_when_coming_back_from_all_down(autojump_clock):
    fake = FakeCheck()
    async with trio.open_nursery() as nursery:
        handle, dataplane = await start(nursery, config(slow_start_ms=10_000), fake)
        await trio.sleep(0.5)
        for host in HOSTS:
            fake.up[host] = False
        await trio.sleep(1.5)
        fake.up["10.1.0.1"] = True
        await trio.sleep(1.0)
        assert weights(dataplane) == {"10.1.0.1": 1000, "10.1.0.2": 0, "10.1.0.3": 0}
        fake.up["10.1.0.2"] = True  # the others follow soon after: no ramp either
        await trio.sleep(2.0)
        assert weights(dataplane) == {"10.1.0.1": 1000, "10.1.0.2": 1000, "10.1.0.3": 0}
        handle.shutdown()


# ------------------------------------------------------------------ (3) flap damping

async def test_a_flapping_real_is_suppressed_then_released(autojump_clock):
    fake = FakeCheck()
    damping = FlapDamping(half_life_ms=10_000, suppress_flaps=2.5, reuse_flaps=1.0)
    async with trio.open_nursery() as nursery:
        handle, dataplane = await start(nursery, config(flap_damping=damping), fake)
        await trio.sleep(0.5)
        suppressed_at = None
        for i in range(10):  # down 1 s, up 1 s: a flap every 2 s
            fake.up["10.1.0.3"] = False
            await trio.sleep(1.0)
            fake.up["10.1.0.3"] = True
            await trio.sleep(1.0)
            if status_of(handle, "10.1.0.3").state == "suppressed" and suppressed_at is None:
                suppressed_at = i
                assert weights(dataplane)["10.1.0.3"] == 0  # healthy, yet at weight 0
        # penalties 1, 1.87, 2.63 (x 0.5 ** 0.2 every 2 s, + 1): the third flap suppresses
        assert suppressed_at == 2
        penalty = status_of(handle, "10.1.0.3").penalty
        # steady now: released once penalty * 0.5 ** (t / 10) < 1, i.e. t > 10 * log2(penalty)
        await trio.sleep(10 * math.log2(penalty) - 0.5)
        assert weights(dataplane)["10.1.0.3"] == 0
        await trio.sleep(1.0)
        assert weights(dataplane)["10.1.0.3"] == 1000
        assert status_of(handle, "10.1.0.3").state == "up"
        handle.shutdown()


# ------------------------------------------------------------------ (4) floor

async def test_min_pooled_ratio_keeps_the_most_recent_failures(autojump_clock):
    fake = FakeCheck()
    hosts = ("10.1.0.1", "10.1.0.2", "10.1.0.3", "10.1.0.4")
    async with trio.open_nursery() as nursery:
        handle, dataplane = await start(nursery, config(hosts, min_pooled_ratio=0.5), fake)
        await trio.sleep(0.5)
        fake.up["10.1.0.2"] = False
        await trio.sleep(2.0)
        fake.up["10.1.0.4"] = False
        await trio.sleep(2.0)
        fake.up["10.1.0.3"] = False
        await trio.sleep(2.0)
        # 1 of 4 healthy; the floor keeps one more: 10.1.0.3 failed last.
        assert weights(dataplane) == {"10.1.0.1": 1000, "10.1.0.2": 0, "10.1.0.3": 1000,
                                      "10.1.0.4": 0}
        assert status_of(handle, "10.1.0.3").state == "kept"
        handle.shutdown()
