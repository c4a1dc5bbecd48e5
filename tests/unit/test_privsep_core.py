"""Privilege separation, the pure part (issue 18): frames, codec, admission.

Problem 2 of the issue: the writer must survive garbage, truncation, oversized
frames, and refuse desired states naming foreign services or VIPs outside
what its config allows. Each refusal here has a reason the writer counts.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kglb import (
    DataPlaneState,
    Family,
    ForwardMethod,
    LinkAddress,
    Real,
    RealKey,
    Route,
    Service,
    ServiceFlag,
    ServiceKey,
    ServiceState,
)
from kglb.config import load
from kglb.pb import privsep_pb2
from kglb.privsep import (
    ADMISSION_REASONS,
    FRAME_REASONS,
    REFUSAL_REASONS,
    FrameError,
    FrameReader,
    Problem,
    StateFrame,
    StopFrame,
    admit,
    allowed_by,
    decode_to_writer,
    encode_frame,
    encode_to_writer,
)

EXAMPLE = Path(__file__).parents[2] / "examples" / "http_bgp.json"
CONFIG = load(EXAMPLE.read_bytes())
WEB = CONFIG.balancers[0]  # 192.0.2.10:80 wrr, TUNNEL, fwmarks, a BGP route


def _real(address: str, weight: int = 500, **kw) -> Real:
    return Real(key=RealKey(address=address, port=0), weight=weight, **kw)


def _state(**changes) -> DataPlaneState:
    """What the generator would send for WEB with two reals and one tunnelled check."""
    parts = dict(
        services=(
            ServiceState(service=WEB.service, name="web",
                         reals=(_real("198.51.100.11"), _real("198.51.100.12", provisional=True))),
            ServiceState(service=Service(key=ServiceKey.for_fwmark(10000), scheduler="rr"),
                         name="fwmark10000", reals=(_real("198.51.100.11"),)),
        ),
        addresses=(LinkAddress(link="lo", address="192.0.2.10"),),
        routes=(WEB.bgp.route(),),
    )
    parts.update(changes)
    return DataPlaneState(**parts)


# --------------------------------------------------------------------- frames


def test_frames_split_anywhere_come_out_whole():
    payloads = [b"a", b"bc" * 100, b"\x00" * 7]
    stream = b"".join(encode_frame(p) for p in payloads)
    reader = FrameReader()
    out = []
    for i in range(len(stream)):
        out += reader.feed(stream[i:i + 1])
    assert out == payloads
    assert reader.buffered == 0
    reader.end()  # nothing left over: a clean close


def test_an_oversized_length_is_refused_before_its_bytes_are_buffered():
    reader = FrameReader(max_size=1000)
    with pytest.raises(FrameError) as e:
        reader.feed(struct.pack(">I", 1001))
    assert e.value.reason == "oversized"
    assert reader.buffered == 4  # the header only: nothing of the payload was held
    with pytest.raises(ValueError):
        encode_frame(b"x" * 1001, max_size=1000)


def test_a_zero_length_frame_is_refused():
    with pytest.raises(FrameError) as e:
        FrameReader().feed(b"\x00\x00\x00\x00")
    assert e.value.reason == "empty"


@pytest.mark.parametrize("cut", [1, 3, 4, 5, 9])
def test_a_peer_closing_mid_frame_is_truncation(cut):
    reader = FrameReader()
    assert reader.feed(encode_frame(b"0123456789")[:cut]) == []
    with pytest.raises(FrameError) as e:
        reader.end()
    assert e.value.reason == "truncated"


# --------------------------------------------------------------------- codec


def test_a_state_comes_back_equal_through_the_codec():
    state = _state()
    frame = decode_to_writer(encode_to_writer(StateFrame(sequence=7, state=state)))
    assert frame == StateFrame(sequence=7, state=state)
    assert [r.provisional for r in frame.state.service_map()[WEB.key].reals] == [False, True]
    assert decode_to_writer(encode_to_writer(StopFrame())) == StopFrame()


def test_service_settings_ipv6_and_masq_survive_the_codec():
    key = ServiceKey.udp("2001:db8::1", 53)
    service = Service(key=key, scheduler="mh", timeout=60,
                      flags=ServiceFlag.PERSISTENT | ServiceFlag.SCHED1 | ServiceFlag.SCHED2)
    state = DataPlaneState(
        services=(ServiceState(service=service, reals=(
            Real(key=RealKey(address="2001:db8::5", port=53), weight=3,
                 forward=ForwardMethod.MASQ, hostname="dns-1"),)),
                  ServiceState(service=Service(key=ServiceKey.for_fwmark(5, Family.INET6)))),
        addresses=(LinkAddress(link="dummy0", address="2001:db8::1"),),
        routes=(Route(prefix="2001:db8::/64", local_asn=1, peer_asn=2,
                      communities=("1:2", "3:4"), hold_time_ms=10),))
    assert decode_to_writer(encode_to_writer(StateFrame(sequence=1, state=state))).state == state


@pytest.mark.parametrize("payload", [b"\xff\xff\xff", b"\x0a\x05abc", b"\x12"])
def test_garbage_is_refused_with_a_reason(payload):
    with pytest.raises(FrameError) as e:
        decode_to_writer(payload)
    assert e.value.reason == "garbage"


def test_a_frame_with_none_of_our_messages_is_refused():
    with pytest.raises(FrameError) as e:
        decode_to_writer(privsep_pb2.ToWriter().SerializeToString() or b"\x08\x01")
    assert e.value.reason in ("unknown message", "garbage")


def _tampered(change) -> bytes:
    message = privsep_pb2.ToWriter()
    message.ParseFromString(encode_to_writer(StateFrame(sequence=1, state=_state())))
    change(message.desired)
    return message.SerializeToString()


@pytest.mark.parametrize("change", [
    lambda d: setattr(d.state.balancers[0].upstreams[0].address, "ipv4", "1.2.3"),
    lambda d: setattr(d.state.balancers[0].upstreams[0].address, "ipv4", "2001:db8::1"),
    lambda d: d.state.balancers[0].lb_service.ClearField("ipvs_service"),
    lambda d: d.state.balancers.append(d.state.balancers[0]),  # a duplicate service
    lambda d: setattr(d.state.balancers[0].upstreams[0], "weight", 2**31),
    lambda d: setattr(d.state.balancers[0].upstreams[0], "forward_method", 9),
    lambda d: setattr(d.state.balancers[0].lb_service.ipvs_service.tcp_attributes, "port", 0),
    lambda d: setattr(d.state.link_addresses[0], "link_name", " "),
    lambda d: setattr(d.state.dynamic_routes[0].bgp_attributes, "prefixlen", 33),
    lambda d: d.provisional.add(balancer=5, upstream=0),
    lambda d: setattr(d, "sequence", 0),
], ids=["bad-ip", "wrong-family", "no-service", "duplicate", "weight", "forward", "port-0",
        "blank-link", "prefixlen", "provisional-nowhere", "sequence-0"])
def test_an_invalid_state_is_refused_with_a_reason(change):
    with pytest.raises(FrameError) as e:
        decode_to_writer(_tampered(change))
    assert e.value.reason == "invalid state"


@given(st.binary(max_size=200))
def test_random_bytes_never_raise_anything_but_frame_error(data):
    try:
        decode_to_writer(data)
    except FrameError:
        pass
    reader = FrameReader(max_size=64)
    try:
        for payload in reader.feed(data):
            assert len(payload) <= 64
    except FrameError:
        pass


# --------------------------------------------------------------------- admission


ALLOWED = allowed_by(CONFIG)


def _admit(state, allowed):
    """The problems as text; each reason is checked by the tests that name it."""
    return [str(p) for p in admit(state, allowed)]


def test_what_the_generator_sends_is_admitted():
    assert _admit(_state(), ALLOWED) == []


def test_a_foreign_service_is_refused():
    # kube-proxy's service: in the kernel, never in our config.
    foreign = ServiceState(service=Service(key=ServiceKey.tcp("10.96.0.1", 443)))
    problems = _admit(_state(services=_state().services + (foreign,)), ALLOWED)
    assert problems == ["TCP 10.96.0.1:443: not a service of the config"]


def test_a_vip_outside_the_config_is_refused():
    state = _state(addresses=(LinkAddress(link="lo", address="192.0.2.10"),
                              LinkAddress(link="lo", address="203.0.113.9"),
                              LinkAddress(link="eth0", address="192.0.2.10")))
    assert _admit(state, ALLOWED) == ["VIP 192.0.2.10 on eth0: not in the config",
                                     "VIP 203.0.113.9 on lo: not in the config"]


def test_a_service_of_the_config_with_other_settings_is_refused():
    other = ServiceState(service=Service(key=WEB.key, scheduler="rr"), name="web")
    problems = _admit(_state(services=(other,)), ALLOWED)
    assert len(problems) == 1 and "settings differ" in problems[0]
    masq = ServiceState(service=WEB.service, reals=(
        Real(key=RealKey(address="198.51.100.11", port=8080), weight=1,
             forward=ForwardMethod.MASQ),))
    assert _admit(_state(services=(masq,)), ALLOWED) == [
        "TCP 192.0.2.10:80: a real not forwarded by TUNNEL"]


def test_fwmark_services_only_in_the_pool_and_for_balancers_with_fwmarks():
    def with_mark(mark, family=Family.INET, reals=1):
        svc = ServiceState(service=Service(key=ServiceKey.for_fwmark(mark, family)),
                           reals=tuple(_real(f"198.51.100.{i + 1}") for i in range(reals)))
        return _state(services=(svc,))

    assert _admit(with_mark(14999), ALLOWED) == []
    assert _admit(with_mark(9999), ALLOWED) == ["FWM 9999 v4: not a service of the config"]
    assert _admit(with_mark(10001, Family.INET6), ALLOWED) == [
        "FWM 10001 v6: not a service of the config"]
    assert _admit(with_mark(10001, reals=2), ALLOWED) == [
        "FWM 10001 v4: not a tunnelled check's service"]
    no_fwmarks = json.loads(EXAMPLE.read_text())
    for b in no_fwmarks["balancers"]:
        b.pop("enableFwmarks", None)
    assert _admit(with_mark(10001), allowed_by(load(json.dumps(no_fwmarks)))) == [
        "FWM 10001 v4: not a service of the config"]


def test_a_route_must_be_the_configured_one():
    route = WEB.bgp.route()
    other = Route(prefix="192.0.2.0/24", local_asn=route.local_asn, peer_asn=route.peer_asn,
                  communities=route.communities, hold_time_ms=route.hold_time_ms)
    shorter_hold = Route(prefix=route.prefix, local_asn=route.local_asn, peer_asn=route.peer_asn,
                         communities=route.communities, hold_time_ms=0)
    assert _admit(_state(routes=(other, shorter_hold)), ALLOWED) == [
        "route 192.0.2.0/24: not in the config", "route 192.0.2.10/32: not in the config"]


def test_each_kind_of_refused_state_has_its_own_countable_reason():
    foreign = ServiceState(service=Service(key=ServiceKey.tcp("10.96.0.1", 443)))
    other = ServiceState(service=Service(key=WEB.key, scheduler="rr"), name="web")
    route = Route(prefix="192.0.2.0/24", local_asn=65001, peer_asn=65000)
    cases = {
        "service not allowed": _state(services=_state().services + (foreign,)),
        "settings not allowed": _state(services=(other,)),
        "address not allowed": _state(addresses=(LinkAddress(link="lo", address="203.0.113.9"),)),
        "route not allowed": _state(routes=(route,)),
    }
    assert {reason: [p.reason for p in admit(state, ALLOWED)]
            for reason, state in cases.items()} == {reason: [reason] for reason in cases}
    assert set(cases) == set(ADMISSION_REASONS)
    assert set(REFUSAL_REASONS) == set(ADMISSION_REASONS) | set(FRAME_REASONS)


def test_a_reason_outside_the_bounded_set_cannot_exist():
    # Each reason is a metric label: an unbounded one would be a cardinality leak.
    with pytest.raises(ValueError):
        FrameError("something new")
    with pytest.raises(ValueError):
        Problem(reason="not allowed", detail="x")


def test_only_changed_services_travel_and_the_rest_comes_from_the_previous_state():
    before = _state()
    web = before.service_map()[WEB.key]
    after = _state(services=(
        ServiceState(service=WEB.service, name="web",
                     reals=(_real("198.51.100.11", weight=0), web.reals[1])),
        before.services[0] if before.services[0].key.fwmark else before.services[1]))
    full = encode_to_writer(StateFrame(sequence=2, state=after))
    delta = encode_to_writer(StateFrame(sequence=2, state=after), before.service_map())
    assert len(delta) < len(full)
    message = privsep_pb2.ToWriter()
    message.ParseFromString(delta)
    assert [b.name for b in message.desired.state.balancers] == ["web"]  # the fwmark one: a key
    assert len(message.desired.unchanged) == 1
    assert decode_to_writer(delta, before.service_map()) == StateFrame(sequence=2, state=after)
    # The provisional mark is on the real of the changed balancer, by its place in the frame.
    assert decode_to_writer(delta, before.service_map()).state.service_map()[WEB.key].reals[
        1].provisional
    with pytest.raises(FrameError) as e:
        decode_to_writer(delta)  # a writer without that previous state
    assert e.value.reason == "invalid state"
