"""kglb/generator.py: merging balancer states, routes, hash, validation (kglb.md §2.4, §8)."""

import pytest
from _control_fakes import balancer_config

from kglb import ForwardMethod, Health, LinkAddress, Route, ServiceKey
from kglb.balancer import Upstream, balancer_state
from kglb.generator import fnv1_64, generate, select_routes, state_hashes

UP = Health(up=True, count=1)
DOWN = Health(up=False, count=-1)


def state(config, *healths, initial=False, fwmarks=None):
    upstreams = [Upstream(host=h, address=h, health=x) for h, x in zip(config.hosts, healths)]
    return balancer_state(config, upstreams, initial=initial, fwmarks=fwmarks)


def route(prefix, hold=0):
    return Route(prefix=prefix, local_asn=65000, peer_asn=65001, communities=("65000:1",),
                 hold_time_ms=hold)


# ---------------------------------------------------------------- services and addresses

def test_process_services_service_real_and_vip():
    config = balancer_config(hosts=("10.1.0.1",), bgp_prefix="10.0.0.1")
    out = generate([state(config, UP)])
    (service,) = out.state.services
    assert service.key == ServiceKey.tcp("10.0.0.1", 80)
    assert [r.weight for r in service.reals] == [1000]
    assert out.state.addresses == (LinkAddress(address="10.0.0.1"),)
    assert out.state.routes == (route("10.0.0.1/32"),)
    assert dict(out.announce) == {"web-10.0.0.1:80-tcp": True}


def test_balancer_without_upstreams_has_its_vip_but_no_route():
    config = balancer_config(hosts=(), bgp_prefix="10.0.0.1")
    out = generate([state(config)])
    assert out.state.services[0].reals == ()
    assert out.state.addresses == (LinkAddress(address="10.0.0.1"),)
    assert out.state.routes == ()
    assert dict(out.announce) == {"web-10.0.0.1:80-tcp": False}


def test_dup_names_with_different_vip_ports_two_services_one_vip():
    a = balancer_config("web", port=80, hosts=("10.1.0.1",))
    b = balancer_config("web", port=443, hosts=("10.1.0.1",))
    out = generate([state(a, UP), state(b, UP)])
    assert [s.key.port for s in out.state.services] == [80, 443]
    assert out.state.addresses == (LinkAddress(address="10.0.0.1"),)


def test_rules_and_link_addresses_fwmarks_shared_real():
    a = balancer_config("a", vip="10.0.0.1", hosts=("10.1.0.1",), enable_fwmarks=True)
    b = balancer_config("b", vip="10.0.0.2", hosts=("10.1.0.1",), enable_fwmarks=True)
    marks = {"10.1.0.1": 10000}
    out = generate([state(a, UP, fwmarks=marks), state(b, UP, fwmarks=marks)])
    assert sorted(s.name for s in out.state.services) == ["a", "b", "fwmark10000"]
    assert len(out.state.addresses) == 2  # fwmark services have no VIP
    two_reals = balancer_config("b", vip="10.0.0.2", hosts=("10.1.0.1", "10.1.0.2"),
                                enable_fwmarks=True)
    marks = {"10.1.0.1": 10000, "10.1.0.2": 10001}
    out = generate([state(a, UP, fwmarks=marks), state(two_reals, UP, UP, fwmarks=marks)])
    assert len(out.state.services) == 4  # 2 services + 2 fwmark services


def test_same_vip_on_two_links_is_invalid():
    a = balancer_config("a", port=80, hosts=())
    b = balancer_config("b", port=81, hosts=(), link="dummy0")
    out = generate([state(a), state(b)])
    assert out.state is None
    assert "10.0.0.1" in out.problems[0]


def test_masq_real_without_port_is_invalid():
    config = balancer_config(real_port=0, hosts=("10.1.0.1",), forward=ForwardMethod.MASQ)
    out = generate([state(config, UP)])
    assert out.state is None and "needs a port" in out.problems[0]
    tunnel = balancer_config(real_port=0, hosts=("10.1.0.1",))
    assert generate([state(tunnel, UP)]).state is not None


# ---------------------------------------------------------------- routes

def test_route_gating_initial_ratio_and_limit():
    config = balancer_config(hosts=("10.1.0.1", "10.1.0.2"), bgp_prefix="10.0.0.1",
                             announce_limit_ratio=0.6)
    assert generate([state(config, DOWN, DOWN, initial=True)]).state.routes == ()
    half = generate([state(config, UP, DOWN)])
    assert half.state.routes == () and half.announce["web-10.0.0.1:80-tcp"] is False
    full = generate([state(config, UP, UP)])
    assert full.state.routes == (route("10.0.0.1/32"),)


def test_fallback_mode_keeps_the_route_and_empty_list_has_none():
    config = balancer_config(hosts=("10.1.0.1",), bgp_prefix="10.0.0.1")
    failsafe = generate([state(config, DOWN, initial=False)])
    assert [r.weight for r in failsafe.state.services[0].reals] == [1000]
    assert failsafe.state.routes == (route("10.0.0.1/32"),)
    empty = balancer_config(hosts=(), bgp_prefix="10.0.0.1")
    assert generate([state(empty, initial=False)]).state.routes == ()


def test_route_announcing_shared_prefix_needs_both_balancers():
    a = balancer_config("a", port=80, hosts=("10.1.0.1",), bgp_prefix="10.0.0.1")
    b = balancer_config("b", port=443, hosts=("10.1.0.2",), bgp_prefix="10.0.0.1")
    assert generate([state(a, UP), state(b, UP)]).state.routes == (route("10.0.0.1/32"),)
    dead_b = generate([state(a, UP), state(b, DOWN, initial=True)])
    assert dead_b.state.routes == ()
    assert dict(dead_b.announce) == {"a-10.0.0.1:80-tcp": True, "b-10.0.0.1:443-tcp": False}


def test_route_generator_containment_and_dedup():
    allowed = [route("10.0.0.1/32", hold=1), route("10.0.1.1/32"), route("10.0.0.1/32", hold=2),
               route("fd00::1/128")]
    prohibited = [route("10.0.0.0/24")]
    assert select_routes(allowed, prohibited) == (route("10.0.1.1/32"), route("fd00::1/128"))
    routes = select_routes(allowed, [])
    assert [r.prefix for r in routes] == ["10.0.0.1/32", "10.0.1.1/32", "fd00::1/128"]
    assert routes[0].hold_time_ms == 1  # the first one wins, hold time included
    # a prohibited /32 does not block the /24 that contains it (only network addresses count)
    assert select_routes([route("10.0.0.0/24")], [route("10.0.0.1/32")]) == (route("10.0.0.0/24"),)


def test_balancers_without_bgp_do_not_block_routes():
    plain = balancer_config("plain", port=81, hosts=("10.1.0.3",))
    bgp = balancer_config("bgp", port=80, hosts=("10.1.0.1",), bgp_prefix="10.0.0.1")
    out = generate([state(plain, DOWN, initial=True), state(bgp, UP)])
    assert out.state.routes == (route("10.0.0.1/32"),)
    assert dict(out.announce) == {"bgp-10.0.0.1:80-tcp": True}


def test_withdraw_timeout_hold_time_is_carried():
    config = balancer_config(hosts=("10.1.0.1",), bgp_prefix="10.0.0.1", hold_time_ms=3000)
    (r,) = generate([state(config, UP)]).state.routes
    assert r.hold_time_ms == 3000


# ---------------------------------------------------------------- state hash

@pytest.mark.parametrize("text, expected", [
    (b"", 0xCBF29CE484222325),
    (b"a", 0xAF63BD4C8601B7BE),
    (b"foobar", 0x340D8765A4DDA9C2),
])
def test_fnv1_64_matches_published_vectors(text, expected):
    assert fnv1_64(text) == expected


def test_state_hash_by_hand_for_a_small_setup():
    config = balancer_config("web", hosts=("10.1.0.1", "10.1.0.2"), enable_fwmarks=True)
    s = state(config, UP, DOWN, fwmarks={"10.1.0.1": 10000})
    # By hand: FNV-1 64 of "10.1.0.1web_1000" and "10.1.0.2web_0", summed mod 2**64;
    # the fwmark service is left out.
    def fnv(text):
        h = 14695981039346656037
        for byte in text.encode():
            h = (h * 1099511628211) % 2**64
            h ^= byte
        return h
    expected = (fnv("10.1.0.1web_1000") + fnv("10.1.0.2web_0")) % 2**64
    assert state_hashes([s]) == {"setup1": expected}
    other = balancer_config("dns", port=53, hosts=("10.1.0.9",), setup="setup2")
    hashes = generate([s, state(other, UP)]).hashes
    assert hashes["setup1"] == expected and hashes["setup2"] == fnv("10.1.0.9dns_1000")


def test_state_hash_wraps_at_64_bits():
    hosts = tuple(f"10.1.0.{i}" for i in range(1, 60))
    config = balancer_config(hosts=hosts)
    total = state_hashes([state(config, *[UP] * len(hosts))])["setup1"]
    assert 0 <= total < 2**64
    assert total == sum(fnv1_64(f"{h}web_1000".encode()) for h in hosts) % 2**64


def test_previous_generation_only_saves_work():
    """generate(states, previous) == generate(states), whatever previous saw."""
    a = balancer_config("a", vip="10.0.0.1", hosts=("10.1.0.1", "10.1.0.2"))
    b = balancer_config("b", vip="10.0.0.2", hosts=("10.1.0.3",))
    bad = balancer_config("c", vip="10.0.0.1", hosts=("10.1.0.4",))  # a's service again
    first = [state(a, UP, DOWN), state(b, UP)]
    previous = generate(first)
    for states in ([first[0], state(b, DOWN)], [state(a, UP, UP), first[1]], first,
                   [first[0], first[1], state(bad, UP)], [first[1]]):
        assert generate(states, previous) == generate(states)
        previous = generate(states, previous)
    # the parts of unchanged balancers are reused as they are
    before = generate(first)
    changed = [first[0], state(b, DOWN)]
    after = generate(changed, before)
    a_id, b_id = (s.identity for s in first)
    assert after.parts[a_id] is before.parts[a_id] and after.parts[b_id] is not before.parts[b_id]
