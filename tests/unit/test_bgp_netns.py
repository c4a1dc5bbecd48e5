"""BirdSpeaker against real BIRD daemons, in network namespaces made here.

The namespaces, the daemons and the helpers are in ``_bgp_netns`` (shared with
test_bgp_control_plane.py): two balancers, lb1 (IPv4 and IPv6 sessions) and
lb2, peer with one router that installs what it learns with ECMP. Needs root,
``ip netns`` and bird2: skipped with the reason outside CI, failed in CI.
"""

from __future__ import annotations

import trio
from _bgp_netns import (  # noqa: F401  (network, lab: fixtures)
    LB_ASN,
    ROUTER_ASN,
    birdc,
    empty,
    eventually,
    ip_route,
    lab,
    negate,
    network,
    vip,
)

from actors.bgp import BirdSpeaker
from actors.dataplane import MemoryDataPlane
from actors.writer import Writer
from kglb import DataPlaneState, LinkAddress, Route, Service, ServiceKey, ServiceState


async def test_router_learns_and_forgets_the_vip_with_its_communities(lab):
    speaker = BirdSpeaker(lab.settings("lb1"))
    route = vip("10.99.0.1", hold_time_ms=1500)

    await speaker.announce(route)

    async def learned() -> bool:
        return "10.99.0.1/32" in await birdc(lab, "rtr", "show", "route", "10.99.0.1/32")

    await eventually(learned, 15, "the router learns 10.99.0.1/32")
    seen = await birdc(lab, "rtr", "show", "route", "10.99.0.1/32", "all")
    assert "BGP.community: (65101,30000) (65102,10090)" in seen
    assert "BGP.large_community: (4200000000, 7, 9)" in seen
    assert "BGP.as_path: 65000" in seen
    assert "BGP.next_hop: 169.254.77.1" in seen
    assert "kglb_hold_time_ms" not in seen  # our private attribute stays home
    assert await speaker.routes() == {route}
    assert [r.hold_time_ms for r in await speaker.routes()] == [1500]

    await speaker.poll()
    assert speaker.session_established()
    (session,) = speaker.statistics().sessions
    assert (session.neighbor, session.state, session.established) == ("169.254.77.2", "Established", True)
    assert speaker.statistics().routes == (route,)

    await speaker.withdraw(route)

    async def forgotten() -> bool:
        return "10.99.0.1/32" not in await birdc(lab, "rtr", "show", "route", "10.99.0.1/32")

    await eventually(forgotten, 5, "the router forgets 10.99.0.1/32")
    assert await speaker.routes() == frozenset()
    await speaker.poll()
    assert speaker.session_established()  # a withdrawal is an UPDATE, not a teardown


async def test_an_ipv6_vip_goes_over_the_ipv6_session_only(lab):
    speaker = BirdSpeaker(lab.settings("lb1"))
    route = Route(prefix="fd00:99::1/128", local_asn=LB_ASN, peer_asn=ROUTER_ASN,
                  communities=("65101:30000",))
    await speaker.announce(route)

    async def learned() -> bool:
        return "fd00:99::1/128" in await birdc(lab, "rtr", "show", "route", "fd00:99::1/128")

    await eventually(learned, 15, "the router learns fd00:99::1/128")
    seen = await birdc(lab, "rtr", "show", "route", "fd00:99::1/128", "all")
    assert "[lb1v6 " in seen and "BGP.community: (65101,30000)" in seen
    await speaker.poll()
    assert [s.neighbor for s in speaker.statistics().sessions] == ["fd00:77::2"]
    assert speaker.session_established()
    await speaker.withdraw(route)


async def test_a_restarted_speaker_sees_what_bird_announces(lab):
    route = vip("10.99.0.2", hold_time_ms=700)
    await BirdSpeaker(lab.settings("lb1")).announce(route)

    again = BirdSpeaker(lab.settings("lb1"))
    assert await again.routes() == {route}
    assert [r.hold_time_ms for r in await again.routes()] == [700]
    await again.withdraw(route)
    assert await again.routes() == frozenset()


async def test_two_balancers_give_the_router_two_equal_paths(lab):
    route = vip("10.99.0.3")
    one, two = BirdSpeaker(lab.settings("lb1")), BirdSpeaker(lab.settings("lb2"))
    await one.announce(route)
    await two.announce(route)

    async def both() -> bool:
        table = await ip_route(lab, "10.99.0.3")
        return "169.254.77.1" in table and "169.254.77.5" in table

    await eventually(both, 15, "the router's kernel has two next hops for 10.99.0.3")
    assert "nexthop via 169.254.77.1" in await ip_route(lab, "10.99.0.3")

    await one.withdraw(route)

    async def only_two() -> bool:
        table = await ip_route(lab, "10.99.0.3")
        return "169.254.77.1" not in table and "via 169.254.77.5" in table

    await eventually(only_two, 5, "only lb2's path is left")
    await two.withdraw(route)
    await eventually(lambda: empty(lab, "10.99.0.3"), 5, "no path is left")


async def test_the_writer_announces_after_the_service_and_withdraws_on_shutdown(lab, tmp_path):
    route = vip("10.99.0.4", hold_time_ms=300)
    key = ServiceKey.tcp("10.99.0.4", 80)
    dataplane = MemoryDataPlane()
    writer = Writer(dataplane, BirdSpeaker(lab.settings("lb1")),
                    ownership_path=tmp_path / "owned.json")
    send, receive = trio.open_memory_channel(1)

    async def learned() -> bool:
        return "10.99.0.4/32" in await birdc(lab, "rtr", "show", "route", "10.99.0.4/32")

    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run, receive)
        await send.send(DataPlaneState(services=(ServiceState(service=Service(key=key)),),
                                       addresses=(LinkAddress(address="10.99.0.4"),),
                                       routes=(route,)))
        await eventually(learned, 15, "the router learns 10.99.0.4/32 through the writer")
        assert dataplane.state.services

        await send.aclose()  # graceful shutdown: withdraw, wait the hold time, delete
        await eventually(lambda: negate(learned), 5, "the router forgets 10.99.0.4/32")
    assert dataplane.state == DataPlaneState()
    assert writer.statistics().manager_state != "shutdown_failed"

