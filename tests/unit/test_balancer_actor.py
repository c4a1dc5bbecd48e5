"""actors/balancer.py with a fake prober: targets, fwmarks, publication only on change."""

from functools import partial

import trio
from _control_fakes import balancer_config

from actors.balancer import BalancerMemory, run_balancer
from actors.discovery import DiscoveryMemory, run_discovery
from actors.probes import Unwatch, Watch
from actors.supervisor import ControlPlane
from kglb import CheckResult, ProbeResult, ServiceKey
from kglb.config import Config
from kglb.discovery import Endpoint, Endpoints
from kglb.fwmark import FwmarkPool


class FakeWatch:
    def __init__(self, prober, target, send, quiet_after):
        self.prober, self.target, self.send = prober, target, send
        self.quiet_after = quiet_after
        self.active = True

    def cancel(self):
        self.active = False


class FakeProber:
    """The Prober's inbox (Watch and Unwatch messages); the test delivers results by hand."""

    def __init__(self):
        self.watches = []
        self.inbox = self  # what ControlPlane hands to its balancers

    def send_nowait(self, message):
        for w in self.active():
            if (w.target, w.send) == (message.target, message.send):
                w.cancel()
        if isinstance(message, Watch):
            self.watches.append(FakeWatch(self, message.target, message.send,
                                          message.quiet_after))
        else:
            assert isinstance(message, Unwatch)

    def active(self):
        return [w for w in self.watches if w.active]

    async def deliver(self, address, passed, folded=()):
        for w in self.active():
            if w.target.address == address:
                await w.send.send(ProbeResult(target=w.target, result=CheckResult(passed=passed),
                                              at=trio.current_time(), folded=folded))

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED, budget=None):
        task_status.started()
        await trio.sleep_forever()

    def statistics(self):
        return None


async def start_balancer(nursery, config):
    """One balancer actor with a fake prober: (prober, its memory, its states)."""
    prober, memory = FakeProber(), BalancerMemory()
    send, receive = trio.open_memory_channel(100)
    found_send, found = trio.open_memory_channel(1)
    found_send.send_nowait(Endpoints(endpoints=tuple(Endpoint(host=h, port=config.port)
                                                     for h in config.hosts)))
    await nursery.start(partial(run_balancer, config, prober=prober, fwmarks=FwmarkPool(),
                                memory=memory, send=send, endpoints=found))
    return prober, memory, receive


async def test_publishes_only_when_weights_change():
    config = balancer_config(rise=2, fall=2)
    async with trio.open_nursery() as nursery:
        prober, memory, receive = await start_balancer(nursery, config)
        first = receive.receive_nowait()
        assert [r.provisional for r in first.services[0].reals] == [True, True]
        assert {w.target.address for w in prober.active()} == {"10.1.0.1", "10.1.0.2"}
        await prober.deliver("10.1.0.1", True)  # 1 of rise=2: nothing to publish
        await trio.testing.wait_all_tasks_blocked()
        assert receive.statistics().current_buffer_used == 0
        await prober.deliver("10.1.0.1", True)
        await trio.testing.wait_all_tasks_blocked()
        state = receive.receive_nowait()
        assert [r.weight for r in state.services[0].reals] == [1000, 0]
        for _ in range(3):  # more passes: health counters move, the state does not
            await prober.deliver("10.1.0.1", True)
        await trio.testing.wait_all_tasks_blocked()
        assert receive.statistics().current_buffer_used == 0
        assert memory.snapshot(config).reals[0].health.count == 5
        nursery.cancel_scope.cancel()
    assert prober.active() == []  # watches end with the actor


async def test_folded_results_count_as_every_check_they_stand_for():
    async with trio.open_nursery() as nursery:
        prober, memory, receive = await start_balancer(nursery, balancer_config(rise=3, fall=2))
        receive.receive_nowait()
        assert {w.quiet_after for w in prober.watches} == {3}  # max(rise, fall)
        await prober.deliver("10.1.0.1", True, folded=(0.001, 0.002))  # 3 passes: rise=3
        await trio.testing.wait_all_tasks_blocked()
        assert [r.weight for r in receive.receive_nowait().services[0].reals] == [1000, 0]
        await prober.deliver("10.1.0.1", False, folded=(0.5,))  # 2 failures: fall=2
        await trio.testing.wait_all_tasks_blocked()
        assert receive.receive_nowait().failsafe  # every real is down now
        tally = memory.checks["10.1.0.1"]
        assert (tally.passed, tally.failed, tally.transitions) == (3, 2, 2)
        nursery.cancel_scope.cancel()


async def test_fwmarks_shared_by_balancers_and_released_when_both_are_gone(autojump_clock):
    prober = FakeProber()
    a = balancer_config("a", vip="10.0.0.1", hosts=("10.1.0.1",), enable_fwmarks=True)
    b = balancer_config("b", vip="10.0.0.2", hosts=("10.1.0.1", "10.1.0.2"), enable_fwmarks=True)
    send_desired, receive_desired = trio.open_memory_channel(10)
    pool = FwmarkPool(10, 100)
    plane = ControlPlane(Config(balancers=(a, b)), prober=prober, send_desired=send_desired,
                         fwmarks=pool)
    async with trio.open_nursery() as nursery:
        await nursery.start(plane.run)
        targets = {(w.target.address, w.target.fwmark, w.target.via) for w in prober.active()}
        assert targets == {("10.1.0.1", 100, ServiceKey.tcp("10.0.0.1", 80)),
                           ("10.1.0.1", 100, ServiceKey.tcp("10.0.0.2", 80)),
                           ("10.1.0.2", 101, ServiceKey.tcp("10.0.0.2", 80))}
        await trio.sleep(1)
        desired = receive_desired.receive_nowait()
        assert sorted(s.name for s in desired.services) == ["a", "b", "fwmark100", "fwmark101"]
        assert await plane.reload(Config(balancers=(b,))) == []
        assert pool.get("10.1.0.1") == 100  # still used by b
        assert await plane.reload(Config(balancers=())) == []
        assert pool.statistics() == (0, 10)
        plane.stop()


async def test_a_host_that_never_resolved_is_logged_as_left_out():
    """Issue 13, problem 5: no "keeping its last address ... last=None"."""
    from structlog.testing import capture_logs

    from actors.resolver import ResolveError

    async def resolve(host, family):
        if host[0].isdigit():
            return host
        raise ResolveError(f"{host}: no such name")

    # Names are resolved by the balancer's discovery actor.
    memory = DiscoveryMemory()
    memory.addresses["known.example"] = "10.1.0.7"  # resolved in an earlier run
    send, _receive = trio.open_memory_channel(100)
    config = balancer_config(hosts=("10.1.0.1", "never.invalid", "known.example"))
    with capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            await nursery.start(partial(run_discovery, config, memory=memory, send=send,
                                        resolve=resolve))
            nursery.cancel_scope.cancel()
    said = sorted((e["event"], e["host"], e.get("last")) for e in logs if "host" in e)
    assert said == [
        ("host does not resolve; keeping its last address", "known.example", "10.1.0.7"),
        ("host does not resolve; left out until it does", "never.invalid", None),
    ]
