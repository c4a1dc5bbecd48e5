"""kglb/balancer.py: from health to weights (kglb.md §3.4, §3.7)."""

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from _control_fakes import balancer_config

from kglb import Family, ForwardMethod, Health, LinkAddress, RealKey, ServiceKey
from kglb.balancer import Upstream, balancer_state, state_changed

UP = Health(up=True, count=1)
DOWN = Health(up=False, count=-1)  # decided with fall=1
UNKNOWN = Health()


def ups(*pairs):
    return [Upstream(host=h, address=h, health=health) for h, health in pairs]


def weights(state):
    return {r.key.address: r.weight for r in state.services[0].reals}


def test_healthy_reals_get_weight_up_and_unhealthy_stay_at_zero():
    config = balancer_config()
    state = balancer_state(config, ups(("10.1.0.1", UP), ("10.1.0.2", DOWN)), initial=True)
    assert weights(state) == {"10.1.0.1": 1000, "10.1.0.2": 0}
    assert state.alive_ratio == 0.5
    assert state.initial is False and state.failsafe is False
    assert all(not r.provisional for r in state.services[0].reals)
    assert state.services[0].name == "web"
    assert state.identity == "web-10.0.0.1:80-tcp"


def test_initial_state_all_down_stays_at_zero_and_initial():
    config = balancer_config()
    state = balancer_state(config, ups(("10.1.0.1", DOWN), ("10.1.0.2", DOWN)), initial=True)
    assert weights(state) == {"10.1.0.1": 0, "10.1.0.2": 0}
    assert state.initial is True and state.failsafe is False and state.alive_ratio == 0.0


def test_fail_open_after_the_first_healthy_real():
    config = balancer_config()
    state = balancer_state(config, ups(("10.1.0.1", DOWN), ("10.1.0.2", DOWN)), initial=False)
    assert weights(state) == {"10.1.0.1": 1000, "10.1.0.2": 1000}
    assert state.failsafe is True and state.alive_ratio == 1.0
    assert all(not r.provisional for r in state.services[0].reals)


def test_no_reals_is_not_failsafe():
    config = balancer_config(hosts=())
    state = balancer_state(config, [], initial=False)
    assert state.services[0].reals == () and state.alive_ratio == 0.0 and not state.failsafe


def test_custom_weight_up():
    config = balancer_config(weight_up=222)
    state = balancer_state(config, ups(("10.1.0.1", UP)), initial=True)
    assert weights(state) == {"10.1.0.1": 222}


def test_undecided_reals_are_provisional_at_zero():
    config = balancer_config(rise=3, fall=2)
    one_fail = Health(up=False, count=-1)  # fall=2: not decided yet
    state = balancer_state(config, ups(("10.1.0.1", UNKNOWN), ("10.1.0.2", one_fail)),
                           initial=True)
    assert [(r.weight, r.provisional) for r in state.services[0].reals] == [(0, True), (0, True)]
    two_fails = Health(up=False, count=-2)
    state = balancer_state(config, ups(("10.1.0.1", two_fails)), initial=True)
    assert state.services[0].reals[0].provisional is False


def test_never_resolved_hosts_are_left_out_but_reported():
    config = balancer_config(hosts=("10.1.0.1", "web2.example"))
    upstreams = [Upstream(host="10.1.0.1", address="10.1.0.1", health=UP),
                 Upstream(host="web2.example", address=None)]
    state = balancer_state(config, upstreams, initial=True)
    assert weights(state) == {"10.1.0.1": 1000}
    assert state.alive_ratio == 1.0
    assert [(r.host, r.address, r.weight) for r in state.reals] == [
        ("10.1.0.1", "10.1.0.1", 1000), ("web2.example", None, 0)]


def test_duplicates_collapse_first_listed_wins():
    config = balancer_config(hosts=("a.example", "b.example"))
    upstreams = [Upstream(host="a.example", address="10.1.0.1", health=UP),
                 Upstream(host="b.example", address="10.1.0.1", health=DOWN)]
    state = balancer_state(config, upstreams, initial=True)
    (real,) = state.services[0].reals
    assert real.hostname == "a.example" and real.weight == 1000
    assert state.alive_ratio == 1.0


def test_link_address_is_the_vip_on_the_configured_link():
    state = balancer_state(balancer_config(link="dummy0"), [], initial=True)
    assert state.link_address == LinkAddress(link="dummy0", address="10.0.0.1")


def test_route_and_limit_are_carried():
    config = balancer_config(bgp_prefix="10.0.0.1", hold_time_ms=500, announce_limit_ratio=0.5)
    state = balancer_state(config, [], initial=True)
    assert state.route.prefix == "10.0.0.1/32" and state.route.hold_time_ms == 500
    assert state.announce_limit_ratio == 0.5
    assert balancer_state(balancer_config(), [], initial=True).route is None


def test_fwmark_services_tunnel_use_port_0_and_weight_up_always():
    config = balancer_config(enable_fwmarks=True, hosts=("10.1.0.1", "fd00::2"))
    upstreams = [Upstream(host="10.1.0.1", address="10.1.0.1", health=DOWN),
                 Upstream(host="fd00::2", address="fd00::2", health=UP)]
    state = balancer_state(config, upstreams, initial=True,
                           fwmarks={"10.1.0.1": 10000, "fd00::2": 10001})
    main, fw1, fw2 = state.services
    assert main.key == ServiceKey.tcp("10.0.0.1", 80)
    assert (fw1.name, fw1.key) == ("fwmark10000", ServiceKey.for_fwmark(10000, Family.INET))
    assert (fw2.name, fw2.key) == ("fwmark10001", ServiceKey.for_fwmark(10001, Family.INET6))
    assert fw1.service.scheduler == "rr"
    assert fw1.reals[0].key == RealKey(address="10.1.0.1", port=0)
    assert fw1.reals[0].weight == 1000  # even though the real is down
    assert fw1.reals[0].forward is ForwardMethod.TUNNEL and fw1.reals[0].hostname == "10.1.0.1"
    assert [r.fwmark for r in state.reals] == [10000, 10001]


def test_fwmark_services_masq_keep_the_real_port():
    config = balancer_config(enable_fwmarks=True, hosts=("10.1.0.1",), forward=ForwardMethod.MASQ)
    state = balancer_state(config, ups(("10.1.0.1", UP)), initial=True, fwmarks={"10.1.0.1": 7})
    assert state.services[1].reals[0].key == RealKey(address="10.1.0.1", port=80)
    assert state.services[1].reals[0].forward is ForwardMethod.MASQ


def test_no_fwmark_services_without_enable_fwmarks():
    state = balancer_state(balancer_config(), ups(("10.1.0.1", UP)), initial=True,
                           fwmarks={"10.1.0.1": 7})
    assert len(state.services) == 1


def test_state_changed_ignores_check_details():
    config = balancer_config(hosts=("10.1.0.1",))
    a = balancer_state(config, ups(("10.1.0.1", UP)), initial=True)
    b = balancer_state(config, [Upstream(host="10.1.0.1", address="10.1.0.1",
                                         health=Health(up=True, count=5), since=3.0)], initial=True)
    assert not state_changed(a, b)
    c = balancer_state(config, ups(("10.1.0.1", DOWN)), initial=False)
    assert state_changed(a, c)
    assert state_changed(None, a)


def test_statuses_can_be_left_out_and_change_nothing_else():
    config = balancer_config(hosts=("10.1.0.1", "10.1.0.2"))
    upstreams = [Upstream(host=h, address=h, health=Health(up=True, count=3)) for h in config.hosts]
    full = balancer_state(config, upstreams, initial=False)
    lean = balancer_state(config, upstreams, initial=False, statuses=False)
    assert len(full.reals) == 2 and lean.reals == ()
    assert replace(full, reals=()) == lean


HEALTHS = st.sampled_from([UP, DOWN, UNKNOWN, Health(up=True, count=-1)])
HOSTS = ("10.1.0.1", "10.1.0.2", "10.1.0.3", "fd00::4")


@st.composite
def configs_and_upstreams(draw):
    config = balancer_config(
        hosts=HOSTS, port=draw(st.sampled_from([80, 443])),
        forward=draw(st.sampled_from([ForwardMethod.TUNNEL, ForwardMethod.MASQ])),
        enable_fwmarks=draw(st.booleans()), vip=draw(st.sampled_from(["10.0.0.1", "10.0.0.2"])),
        weight_up=draw(st.sampled_from([1000, 5])), fall=draw(st.sampled_from([1, 3])))
    upstreams = [Upstream(host=h, address=draw(st.sampled_from([h, None, "10.1.0.1"])),
                          health=draw(HEALTHS)) for h in HOSTS]
    marks = {a: 100 + i for i, a in enumerate(HOSTS) if draw(st.booleans())}
    return config, upstreams, marks


@settings(max_examples=600)
@given(configs_and_upstreams(), configs_and_upstreams(), st.booleans())
def test_a_previous_state_changes_nothing_in_the_result(before, now, initial):
    previous = balancer_state(before[0], before[1], initial=initial, fwmarks=before[2])
    config, upstreams, marks = now
    fresh = balancer_state(config, upstreams, initial=initial, fwmarks=marks)
    assert balancer_state(config, upstreams, initial=initial, fwmarks=marks,
                          previous=previous) == fresh


def test_a_previous_state_lends_its_unchanged_reals():
    config = balancer_config(hosts=("10.1.0.1", "10.1.0.2", "10.1.0.3"), enable_fwmarks=True)
    marks = {"10.1.0.1": 7, "10.1.0.2": 8, "10.1.0.3": 9}
    upstreams = ups(("10.1.0.1", UP), ("10.1.0.2", UP), ("10.1.0.3", UP))
    previous = balancer_state(config, upstreams, initial=False, fwmarks=marks)
    upstreams[1] = replace(upstreams[1], health=DOWN)
    state = balancer_state(config, upstreams, initial=False, fwmarks=marks, previous=previous)
    old, new = previous.services[0].reals, state.services[0].reals
    assert [a is b for a, b in zip(old, new)] == [True, False, True]
    assert new[1].weight == 0
    # fwmark services do not depend on health: all three are the same objects
    assert all(a is b for a, b in zip(previous.services[1:], state.services[1:]))
    # a new weight_up changes every fwmark service: none is lent
    config = replace(config, weight_up=5)
    again = balancer_state(config, upstreams, initial=False, fwmarks=marks, previous=state)
    assert again == balancer_state(config, upstreams, initial=False, fwmarks=marks)
    assert not any(a is b for a, b in zip(state.services[1:], again.services[1:]))


def test_discovered_port_and_source_weight():
    """Each real may have its own port (IPVS and fwmark service); a source weight scales
    weightUp, never to 0 for a healthy real, and fail-open scales the same way."""
    up, down = Health(up=True, count=3), Health(up=False, count=3)
    config = balancer_config(weight_up=1000, forward=ForwardMethod.MASQ, enable_fwmarks=True)
    upstreams = [Upstream(host="a", address="10.1.0.1", port=8081, weight=0.5, health=up),
                 Upstream(host="b", address="10.1.0.2", port=8082, weight=0.0, health=up),
                 Upstream(host="c", address="10.1.0.3", weight=2.0, health=down)]
    state = balancer_state(config, upstreams, initial=False,
                           fwmarks={"10.1.0.1": 10000, "10.1.0.2": 10001})
    main = state.services[0]
    assert {(r.key.address, r.key.port): r.weight for r in main.reals} == {
        ("10.1.0.1", 8081): 500, ("10.1.0.2", 8082): 1, ("10.1.0.3", 80): 0}
    assert {s.reals[0].key.port for s in state.services[1:]} == {8081, 8082}
    assert [r.port for r in state.reals] == [8081, 8082, 80]
    failsafe = balancer_state(config, [replace(u, health=down) for u in upstreams],
                              initial=False)
    assert [r.weight for r in failsafe.services[0].reals] == [500, 1, 2000]
