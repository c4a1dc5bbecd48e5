"""Our frozen messages <-> protobuf payloads (proto/kglb/pb/privsep.proto).

The desired state travels as kglb's own ``DataPlaneState`` message: one
``BalancerState`` per IPVS service, ``link_addresses`` for VIPs and
``dynamic_routes`` for BGP. Decoding is where the writer meets untrusted
bytes, so it turns every failure (not protobuf, a missing part, an invalid
address, a duplicate service, ...) into ``FrameError`` with a countable
reason; what it returns went through our validating constructors.
"""

from __future__ import annotations

from collections.abc import Mapping

from google.protobuf.message import DecodeError

from .._model import (
    DataPlaneState,
    Family,
    ForwardMethod,
    LinkAddress,
    Protocol,
    Real,
    RealKey,
    Route,
    Service,
    ServiceFlag,
    ServiceKey,
    ServiceState,
)
from ..pb import common_pb2, privsep_pb2, state_pb2
from ._frame import FrameError
from ._messages import StateFrame, StopFrame

__all__ = [
    "decode_to_writer",
    "encode_to_writer",
    "ip_of",
    "key_of",
    "link_of",
    "put_ip",
    "put_key",
    "put_link",
    "put_route",
    "route_of",
]

_Ipvs = common_pb2.IpvsService
_FORWARD_TO_PB = {ForwardMethod.TUNNEL: common_pb2.TUNNEL, ForwardMethod.MASQ: common_pb2.MASQ,
                  ForwardMethod.DROUTE: common_pb2.DROUTE}
_FORWARD_OF_PB = {v: k for k, v in _FORWARD_TO_PB.items()}
_FLAG_TO_PB = {ServiceFlag.PERSISTENT: _Ipvs.PERSISTENT, ServiceFlag.ONEPACKET: _Ipvs.ONEPACKET,
               ServiceFlag.SCHED1: _Ipvs.SH_FALLBACK, ServiceFlag.SCHED2: _Ipvs.SH_PORT,
               ServiceFlag.SCHED3: _Ipvs.SCHED3}
_FLAG_OF_PB = {v: k for k, v in _FLAG_TO_PB.items()}
_FAMILY_TO_PB = {Family.INET: common_pb2.AF_INET, Family.INET6: common_pb2.AF_INET6}
_FAMILY_OF_PB = {v: k for k, v in _FAMILY_TO_PB.items()}


# --------------------------------------------------------------------- encoding


def encode_to_writer(message: StateFrame | StopFrame,
                     previous: Mapping[ServiceKey, ServiceState] | None = None) -> bytes:
    """The payload of one frame to the writer.

    Services equal to ``previous``'s (the last state sent on this connection)
    are sent by key only.
    """
    out = privsep_pb2.ToWriter()
    if isinstance(message, StopFrame):
        out.stop.SetInParent()
        return out.SerializeToString()
    desired = out.desired
    desired.sequence = message.sequence
    state = message.state
    before = previous or {}
    b = -1
    for service in state.services:
        old = before.get(service.key)
        if old is not None and (old is service or old == service):
            put_key(desired.unchanged.add(), service.key)
            continue
        b += 1
        pb = desired.state.balancers.add(name=service.name)
        _put_service(pb.lb_service.ipvs_service, service.service)
        for u, real in enumerate(service.reals):
            up = pb.upstreams.add(port=real.key.port, hostname=real.hostname, weight=real.weight,
                                  forward_method=_FORWARD_TO_PB[real.forward])
            put_ip(up.address, real.key.address)
            if real.provisional:
                desired.provisional.add(balancer=b, upstream=u)
    for address in state.addresses:
        put_link(desired.state.link_addresses.add(), address)
    for route in state.routes:
        put_route(desired.state.dynamic_routes.add(), route)
    return out.SerializeToString()


def put_ip(pb: common_pb2.IP, address: str) -> None:
    if Family.of(address) is Family.INET:
        pb.ipv4 = address
    else:
        pb.ipv6 = address


def put_key(pb: common_pb2.IpvsService, key: ServiceKey) -> None:
    if key.fwmark:
        pb.fwmark_attributes.address_family = _FAMILY_TO_PB[key.family]
        pb.fwmark_attributes.fwmark = key.fwmark
        return
    attributes = pb.tcp_attributes if key.protocol is Protocol.TCP else pb.udp_attributes
    put_ip(attributes.address, key.address)
    attributes.port = key.port


def _put_service(pb: common_pb2.IpvsService, service: Service) -> None:
    put_key(pb, service.key)
    pb.scheduler = _Ipvs.Scheduler.Value(service.scheduler.upper())
    pb.flags.extend(v for flag, v in _FLAG_TO_PB.items() if flag in service.flags)
    pb.persistence_timeout_s = service.timeout


def put_link(pb: common_pb2.LinkAddress, address: LinkAddress) -> None:
    pb.link_name = address.link
    put_ip(pb.address, address.address)


def put_route(pb: state_pb2.DynamicRoute, route: Route) -> None:
    network, prefixlen = route.prefix.split("/")
    a = pb.bgp_attributes
    a.local_asn, a.peer_asn, a.hold_time_ms = route.local_asn, route.peer_asn, route.hold_time_ms
    a.community = " ".join(route.communities)
    put_ip(a.prefix, network)
    a.prefixlen = int(prefixlen)


# --------------------------------------------------------------------- decoding


def decode_to_writer(payload: bytes, previous: Mapping[ServiceKey, ServiceState] | None = None,
                     ) -> StateFrame | StopFrame:
    """One frame's payload as a validated message; FrameError with a reason otherwise.

    ``previous``: the services of the last state decoded on this connection,
    which the frame's ``unchanged`` keys refer to.

    Reasons: "garbage" (not a ToWriter message), "unknown message" (none of
    ours set), "invalid state" (a part missing or refused by validation).
    """
    message = privsep_pb2.ToWriter()
    try:
        message.ParseFromString(payload)
    except DecodeError as e:
        raise FrameError("garbage", str(e)) from None
    kind = message.WhichOneof("message")
    if kind == "stop":
        return StopFrame()
    if kind != "desired":
        raise FrameError("unknown message", "no message of ours is set")
    try:
        return _desired(message.desired, previous or {})
    except (ValueError, KeyError, IndexError) as e:
        raise FrameError("invalid state", str(e) or type(e).__name__) from None


def _desired(pb: privsep_pb2.DesiredState, previous: Mapping[ServiceKey, ServiceState],
             ) -> StateFrame:
    provisional = {(p.balancer, p.upstream) for p in pb.provisional}
    services = []
    for unchanged in pb.unchanged:
        key = key_of(unchanged)
        if key not in previous:
            raise ValueError(f"{key} is sent as unchanged but was not in the previous state")
        services.append(previous[key])
    for b, balancer in enumerate(pb.state.balancers):
        service = _service(balancer.lb_service)
        reals = tuple(_real(up, (b, u) in provisional) for u, up in enumerate(balancer.upstreams))
        services.append(ServiceState(service=service, reals=reals, name=balancer.name))
        provisional -= {(b, u) for u in range(len(reals))}
    if provisional:
        raise ValueError(f"provisional marks name no real: {sorted(provisional)[:3]}")
    state = DataPlaneState(
        services=tuple(services),
        addresses=tuple(link_of(a) for a in pb.state.link_addresses),
        routes=tuple(route_of(r) for r in pb.state.dynamic_routes))
    return StateFrame(sequence=pb.sequence, state=state)


def ip_of(pb: common_pb2.IP, family: Family | None = None) -> str:
    kind = pb.WhichOneof("address")
    if kind is None:
        raise ValueError("an address is missing")
    text = pb.ipv4 if kind == "ipv4" else pb.ipv6
    expected = Family.INET if kind == "ipv4" else Family.INET6
    if Family.of(text) is not expected or family not in (None, expected):
        raise ValueError(f"{text!r} is not {(family or expected).name}")
    return text


def key_of(pb: common_pb2.IpvsService) -> ServiceKey:
    kind = pb.WhichOneof("attributes")
    if kind == "fwmark_attributes":
        a = pb.fwmark_attributes
        return ServiceKey.for_fwmark(a.fwmark, _FAMILY_OF_PB[a.address_family])
    if kind is None:
        raise ValueError("a service has no attributes")
    a = getattr(pb, kind)
    protocol = Protocol.TCP if kind == "tcp_attributes" else Protocol.UDP
    address = ip_of(a.address)
    return ServiceKey(family=Family.of(address), protocol=protocol, address=address, port=a.port)


def _service(pb: common_pb2.LoadBalancerService) -> Service:
    if not pb.HasField("ipvs_service"):
        raise ValueError("a balancer has no IPVS service")
    s = pb.ipvs_service
    flags = ServiceFlag(0)
    for f in s.flags:
        flags |= _FLAG_OF_PB[f]  # KeyError for a flag we never send
    return Service(key=key_of(s), scheduler=_Ipvs.Scheduler.Name(s.scheduler).lower(),
                   flags=flags, timeout=s.persistence_timeout_s)


def _real(pb: common_pb2.UpstreamState, provisional: bool) -> Real:
    return Real(key=RealKey(address=ip_of(pb.address), port=pb.port), weight=pb.weight,
                forward=_FORWARD_OF_PB[pb.forward_method], hostname=pb.hostname,
                provisional=provisional)


def link_of(pb: common_pb2.LinkAddress) -> LinkAddress:
    return LinkAddress(link=pb.link_name, address=ip_of(pb.address))


def route_of(pb: state_pb2.DynamicRoute) -> Route:
    if not pb.HasField("bgp_attributes"):
        raise ValueError("a route has no BGP attributes")
    a = pb.bgp_attributes
    network = ip_of(a.prefix)
    limit = 32 if Family.of(network) is Family.INET else 128
    if not 0 <= a.prefixlen <= limit:
        raise ValueError(f"prefix length {a.prefixlen} out of range")
    return Route(prefix=f"{network}/{a.prefixlen}", local_asn=a.local_asn, peer_asn=a.peer_asn,
                 communities=tuple(a.community.split()), hold_time_ms=a.hold_time_ms)
