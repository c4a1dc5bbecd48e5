"""The whole control plane announcing through a real BIRD to a real router.

``run_kglb`` runs with the in-memory data plane, a fake check the test
controls and a BirdSpeaker driving lb1's BIRD; the router (see ``_bgp_netns``)
shows what BGP really carried. One balancer with four reals and
``announceLimitRatio`` 0.5: the route follows the alive ratio, and a graceful
shutdown withdraws it, waits ``holdTimeMs``, and only then removes the service.

Real daemons mean real time: every wait is bounded, the test takes a few
seconds. Needs root, ``ip netns`` and bird2 (skipped with the reason outside CI).
"""

from __future__ import annotations

from functools import partial

import trio
from _bgp_netns import birdc, eventually, lab, learned, negate, network  # noqa: F401  (fixtures)
from _control_fakes import FakeCheck, balancer_config

from actors.app import run_kglb
from actors.bgp import BirdSpeaker
from actors.dataplane import MemoryDataPlane
from kglb import Route, ServiceKey
from kglb.config import Config

VIP = "10.99.0.5"
PREFIX = f"{VIP}/32"
REALS = ("10.1.0.1", "10.1.0.2", "10.1.0.3", "10.1.0.4")
HOLD_MS = 1500


class TimedSpeaker:
    """A BirdSpeaker that notes (trio time) when each withdrawal was done."""

    def __init__(self, speaker: BirdSpeaker) -> None:
        self._speaker = speaker
        self.withdrawn_at: list[float] = []

    async def announce(self, route: Route) -> None:
        await self._speaker.announce(route)

    async def withdraw(self, route: Route) -> None:
        await self._speaker.withdraw(route)
        self.withdrawn_at.append(trio.current_time())

    async def routes(self) -> frozenset[Route]:
        return await self._speaker.routes()

    def session_established(self) -> bool:
        return self._speaker.session_established()


async def test_the_route_follows_the_alive_ratio_and_leaves_before_the_service(lab):
    config = Config(balancers=(balancer_config(
        vip=VIP, hosts=REALS, interval_ms=100, rise=1, fall=1, bgp_prefix=VIP,
        hold_time_ms=HOLD_MS, announce_limit_ratio=0.5),))
    key = ServiceKey.tcp(VIP, 80)
    dataplane = MemoryDataPlane()
    speaker = TimedSpeaker(BirdSpeaker(lab.settings("lb1")))
    check = FakeCheck()
    at_router = partial(learned, lab, PREFIX)

    async with trio.open_nursery() as nursery:
        handle = await nursery.start(partial(run_kglb, config, dataplane=dataplane,
                                             speaker=speaker, check=check))
        # BGP session set-up included (the router retries every second)
        await eventually(at_router, 10, "the router learns the VIP of a healthy balancer")
        seen = await birdc(lab, "rtr", "show", "route", PREFIX, "all")
        assert "BGP.community: (65000,1)" in seen and "BGP.next_hop: 169.254.77.1" in seen

        for real in REALS[1:]:
            check.up[real] = False  # alive ratio 0.25 < 0.5
        await eventually(partial(negate, at_router), 5, "the router forgets the VIP at 1/4 alive")
        assert not any(handle.statistics().route_decisions.values())
        # a withdrawal is not a removal: the service and its alive real stay
        (service,) = dataplane.state.services
        assert service.service.key == key
        assert speaker.withdrawn_at

        check.up.clear()
        await eventually(at_router, 5, "the router learns the VIP again once the reals recover")
        assert dataplane.state.services

        # Graceful shutdown: watch the router and the data plane side by side.
        times: dict[str, float] = {}

        async def watch_router() -> None:
            while await at_router():
                await trio.sleep(0.02)
            times["forgotten"] = trio.current_time()

        async def watch_dataplane() -> None:
            while dataplane.state.services:
                await trio.sleep(0.01)
            times["deleted"] = trio.current_time()

        withdrawals = len(speaker.withdrawn_at)
        with trio.fail_after(HOLD_MS / 1000 + 5):
            async with trio.open_nursery() as watchers:
                watchers.start_soon(watch_router)
                watchers.start_soon(watch_dataplane)
                shutdown_at = trio.current_time()
                handle.shutdown()
    # run_kglb returned: everything it owned is gone
    assert dataplane.state.services == () and dataplane.state.addresses == ()
    assert len(speaker.withdrawn_at) == withdrawals + 1
    withdrawn = speaker.withdrawn_at[-1]
    # (BIRD may send the withdrawal before birdc returns: "forgotten" and
    # "withdrawn" are not ordered)
    assert shutdown_at <= withdrawn and shutdown_at <= times["forgotten"] < times["deleted"]
    # the router forgot the route well within the hold time, the service
    # stayed for the whole hold time after the withdrawal
    assert times["forgotten"] - withdrawn < HOLD_MS / 1000
    assert times["deleted"] - withdrawn >= HOLD_MS / 1000
    assert times["deleted"] - shutdown_at < HOLD_MS / 1000 + 2
