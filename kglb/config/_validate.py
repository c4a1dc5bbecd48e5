"""Convert and validate the balancers of a parsed ControlPlaneConfig.

Every rule of kglb's ``ValidateControlPlaneConfig`` (kglb.md §1.6) applies, in
kglb's order, plus the fixes of decisions.md rows 10, 11, 12 and 21: invalid VIP
text, missing sections, an unknown scheduler, unsupported flags, mdb discovery,
MASQ with port 0 and literals of the wrong family are refused here, where kglb
accepted them and failed later (or panicked). Every problem is reported, not
only the first.
"""

from __future__ import annotations

import ipaddress
import math
import re
import struct

from .._model import Family, ForwardMethod, Protocol, Service, ServiceFlag, ServiceKey
from ..bird import parse_community
from ..pb import common_pb2, config_pb2
from ._checks import convert_checker
from ._errors import Problems, Where
from ._sources import convert_source, max_remove_ratio
from ._rules import FAMILY_NAMES as _FAMILY_NAMES
from ._rules import Sections, check_balancer
from ._types import (
    DEFAULT_LINK,
    DEFAULT_WEIGHT_UP,
    BalancerConfig,
    BgpAttributes,
    CheckerConfig,
    FlapDamping,
    Lifecycle,
    Source,
)

_FAMILIES = {common_pb2.AF_INET: Family.INET, common_pb2.AF_INET6: Family.INET6}
_FORWARDS = {common_pb2.TUNNEL: ForwardMethod.TUNNEL, common_pb2.MASQ: ForwardMethod.MASQ,
             common_pb2.DROUTE: ForwardMethod.DROUTE}
_Ipvs = common_pb2.IpvsService
_FLAGS = {_Ipvs.PERSISTENT: ServiceFlag.PERSISTENT, _Ipvs.ONEPACKET: ServiceFlag.ONEPACKET,
          _Ipvs.SH_FALLBACK: ServiceFlag.SCHED1, _Ipvs.SH_PORT: ServiceFlag.SCHED2}
_REFUSED_FLAGS = {
    _Ipvs.EMPTY: "EMPTY is not a flag (list no flags instead)",
    _Ipvs.SCHED1: "SCHED1 is not supported (kglb refused it); SH_FALLBACK sets that kernel flag",
    _Ipvs.SCHED2: "SCHED2 is not supported (kglb refused it); SH_PORT sets the same kernel flag",
    _Ipvs.SCHED3: "SCHED3 is not supported (kglb refused it; no kernel scheduler uses it)",
    _Ipvs.SH_NOPORT: "SH_NOPORT is not supported (kglb refused it; the kernel has no such flag)",
}
DEFAULT_PERSISTENCE_TIMEOUT_S = 300  # ipvsadm's default
_MAX_WEIGHT = 2**31 - 1  # the kernel's weight is a signed int
# What the kernel's dev_valid_name() accepts.
_LINK_NAME = re.compile(r"[^/:\s]{1,15}")
_HOST_NAME = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_.])?")


def convert_balancers(msg: config_pb2.ControlPlaneConfig, root: Where,
                      problems: Problems) -> tuple[BalancerConfig, ...]:
    """Every valid balancer of ``msg``; every problem (and warning) goes to ``problems``."""
    where = root.field("balancers")
    converted = [_balancer(b, where.item(i), problems) for i, b in enumerate(msg.balancers)]
    _check_shared(msg, where, converted, problems)
    if not msg.balancers:
        problems.warn(where, "no balancers: nothing will be configured")
    return tuple(balancer for _, balancer in converted if balancer is not None)


def _balancer(b: config_pb2.BalancerConfig, where: Where,
              problems: Problems) -> tuple[Service | None, BalancerConfig | None]:
    before = len(problems.errors)
    if not b.name:
        problems.error(where.field("name"), "is required")
    if not b.setup_name:
        problems.error(where.field("setup_name"), "is required")
    service = _lb_service(b, where.field("lb_service"), problems)
    checker: CheckerConfig | None = None
    if b.HasField("upstream_checker"):
        checker = convert_checker(b.upstream_checker, where.field("upstream_checker"), problems,
                                  enable_fwmarks=b.enable_fwmarks)
    else:
        problems.error(where.field("upstream_checker"), "is required")
    if not b.HasField("upstream_routing"):
        problems.error(where.field("upstream_routing"), "is required (it may be {})")
    forward = _FORWARDS[b.upstream_routing.forward_method]
    discovery = _discovery(b, where.field("upstream_discovery"), problems)
    routing = _dynamic_routing(b, where.field("dynamic_routing"), problems)
    weight_up = b.weight_up or DEFAULT_WEIGHT_UP
    if weight_up > _MAX_WEIGHT:
        problems.error(where.field("weight_up"), f"must be at most {_MAX_WEIGHT}")
    link = _link(b, service, where.field("vip_link"), problems)
    lifecycle = _lifecycle(b, where, problems)
    if b.configure_reals:
        problems.warn(where.field("configure_reals"),
                      "is not implemented (as in kglb): the VIP is not configured on the reals")
    d = b.upstream_discovery if b.HasField("upstream_discovery") else None
    check_balancer(Sections(
        service=service, forward=forward, port=None if d is None else d.port,
        resolve_family=None if d is None else _FAMILIES[d.resolve_family], checker=checker,
        bgp=None if routing is None else routing[1]), where, problems)
    if len(problems.errors) > before or None in (service, checker, discovery, routing, lifecycle):
        return service, None
    port, family, hosts, source, remove_ratio = discovery
    ratio, bgp = routing
    return service, BalancerConfig(
        name=b.name, setup_name=b.setup_name, service=service, forward=forward, port=port,
        resolve_family=family, hosts=hosts, checker=checker, announce_limit_ratio=ratio, bgp=bgp,
        enable_fwmarks=b.enable_fwmarks, configure_reals=b.configure_reals, weight_up=weight_up,
        link=link, lifecycle=lifecycle, source=source, max_remove_ratio=remove_ratio,
    )


def _lb_service(b: config_pb2.BalancerConfig, where: Where, problems: Problems) -> Service | None:
    if not b.HasField("lb_service"):
        problems.error(where, "is required")
        return None
    if not b.lb_service.HasField("ipvs_service"):
        problems.error(where.field("ipvs_service"), "is required")
        return None
    s, where = b.lb_service.ipvs_service, where.field("ipvs_service")
    key = _service_key(s, where, problems)
    scheduler = _Ipvs.Scheduler.Name(s.scheduler)
    if s.scheduler == _Ipvs.IP_VS_SCH:
        problems.error(where.field("scheduler"),
                       "IP_VS_SCH is not a kernel scheduler (the kernel refused it under kglb); "
                       "use RR, WRR, LC, WLC, LBLC, LBLCR, DH, SH, SED, NQ, FO, OVF, MH or TWOS")
    flags = _flags(s, scheduler, where.field("flags"), problems)
    timeout = 0
    if s.HasField("persistence_timeout_s"):
        timeout = s.persistence_timeout_s
        if not flags & ServiceFlag.PERSISTENT:
            problems.error(where.field("persistence_timeout_s"), "needs the PERSISTENT flag")
    elif flags & ServiceFlag.PERSISTENT:
        timeout = DEFAULT_PERSISTENCE_TIMEOUT_S
    if key is None or s.scheduler == _Ipvs.IP_VS_SCH:
        return None
    return Service(key=key, scheduler=scheduler.lower(), flags=flags, timeout=timeout)


def _service_key(s: common_pb2.IpvsService, where: Where, problems: Problems) -> ServiceKey | None:
    kind = s.WhichOneof("attributes")
    if kind is None:
        problems.error(where, "needs one of tcpAttributes, udpAttributes, fwmarkAttributes")
        return None
    attributes, where = getattr(s, kind), where.field(kind)
    if kind == "fwmark_attributes":
        if not attributes.fwmark:
            problems.error(where.field("fwmark"), "must not be 0")
            return None
        return ServiceKey.for_fwmark(attributes.fwmark, _FAMILIES[attributes.address_family])
    address = ip_text(attributes, "address", where, problems)
    port_ok = 0 < attributes.port <= 65535
    if not port_ok:
        problems.error(where.field("port"), "must not be 0" if not attributes.port
                       else f"must be at most 65535, not {attributes.port}")
    if address is None or not port_ok:
        return None
    protocol = Protocol.TCP if kind == "tcp_attributes" else Protocol.UDP
    return ServiceKey(family=Family.of(address), protocol=protocol, address=address,
                      port=attributes.port)


def _flags(s: common_pb2.IpvsService, scheduler: str, where: Where,
           problems: Problems) -> ServiceFlag:
    flags = ServiceFlag(0)
    for index, flag in enumerate(s.flags):
        here = where.item(index)
        if flag in _REFUSED_FLAGS:
            problems.error(here, _REFUSED_FLAGS[flag])
        elif flag == _Ipvs.HASHED:
            problems.warn(here, "HASHED is set by the kernel itself: ignored")
        else:
            flags |= _FLAGS[flag]
            if flag in (_Ipvs.SH_FALLBACK, _Ipvs.SH_PORT) and scheduler not in ("SH", "MH"):
                problems.warn(here, f"{_Ipvs.Flag.Name(flag)} has an effect only with the "
                                    f"SH or MH scheduler, not {scheduler}")
    return flags


def ip_text(parent, name: str, where: Where, problems: Problems) -> str | None:
    """Canonical text of the ``IP`` field ``name`` of ``parent``; None after reporting why not."""
    where = where.field(name)
    if not parent.HasField(name):
        problems.error(where, "is required")
        return None
    ip = getattr(parent, name)
    kind = ip.WhichOneof("address")
    if kind is None:
        problems.error(where, "needs ipv4 or ipv6")
        return None
    text, where = getattr(ip, kind), where.field(kind)
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        problems.error(where, f"{text!r} is not an IP address")
        return None
    if kind == "ipv4" and address.version != 4:
        problems.error(where, f"{text!r} is not an IPv4 address")
        return None
    if getattr(address, "scope_id", None):
        problems.error(where, f"{text!r}: a scoped address cannot be a VIP or prefix")
        return None
    return str(address)


def _discovery(b: config_pb2.BalancerConfig, where: Where, problems: Problems
               ) -> tuple[int, Family, tuple[str, ...], Source | None, float] | None:
    if not b.HasField("upstream_discovery"):
        problems.error(where, "is required")
        return None
    d, before = b.upstream_discovery, len(problems.errors)
    if d.port > 65535:
        problems.error(where.field("port"), f"must be at most 65535, not {d.port}")
    family = _FAMILIES[d.resolve_family]
    kind = d.WhichOneof("attributes")
    hosts: tuple[str, ...] = ()
    source = None
    remove_ratio = max_remove_ratio(d, where, problems)
    if kind is None:
        problems.error(where, "needs staticAttributes, fileAttributes, dnsAttributes or "
                              "etcdAttributes")
    elif kind == "mdb_attributes":
        problems.error(where.field(kind), "mdb discovery is not implemented (kglb could not use it "
                                          "either); list the reals in staticAttributes")
    elif kind != "static_attributes":
        source = convert_source(d, kind, family, where, problems)
    else:
        hosts = tuple(d.static_attributes.hosts)
        _check_hosts(hosts, family, where.field(kind).field("hosts"), problems)
    if len(problems.errors) > before:
        return None
    return d.port, family, hosts, source, remove_ratio


def _check_hosts(hosts: tuple[str, ...], family: Family, where: Where, problems: Problems) -> None:
    if not hosts:
        problems.error(where, "must not be empty")
    seen: dict[str, int] = {}
    for index, host in enumerate(hosts):
        here = where.item(index)
        try:
            identity = str(ipaddress.ip_address(host))
        except ValueError:
            identity = host.lower().rstrip(".")
            if not _HOST_NAME.fullmatch(host) or ".." in host:
                problems.error(here, f"{host!r} is neither an IP address nor a host name")
                continue
        else:
            if Family.of(identity) is not family or "%" in identity:
                problems.error(here, f"{host} is not an address of resolveFamily "
                                     f"{_FAMILY_NAMES[family]}")
                continue
        if identity in seen:
            problems.error(here, f"{host!r} is listed twice (also at [{seen[identity]}])")
        seen.setdefault(identity, index)


def _dynamic_routing(b: config_pb2.BalancerConfig, where: Where,
                     problems: Problems) -> tuple[float, BgpAttributes | None] | None:
    if not b.HasField("dynamic_routing"):
        problems.error(where, "is required (it may be {})")
        return None
    d, before = b.dynamic_routing, len(problems.errors)
    ratio = _float32(d.announce_limit_ratio)
    if not 0.0 <= ratio <= 1.0:  # also refuses NaN
        problems.error(where.field("announce_limit_ratio"), f"must be between 0 and 1, not {ratio}")
    bgp = None
    if d.HasField("bgp_attributes"):
        bgp = _bgp(d.bgp_attributes, where.field("bgp_attributes"), problems)
    if len(problems.errors) > before:
        return None
    return ratio, bgp


def _bgp(a: common_pb2.BgpRouteAttributes, where: Where,
         problems: Problems) -> BgpAttributes | None:
    before = len(problems.errors)
    for name in ("local_asn", "peer_asn"):
        if not getattr(a, name):
            problems.error(where.field(name), "must not be 0")
    communities = a.community.replace(",", " ").split()
    if not communities:
        problems.error(where.field("community"), "is required")
    for community in communities:
        try:
            parse_community(community)
        except ValueError as e:
            problems.error(where.field("community"), f"{e} (BIRD refuses it)")
    prefix = ip_text(a, "prefix", where, problems)
    if not a.prefixlen:
        problems.error(where.field("prefixlen"), "must not be 0")
    elif prefix is not None and a.prefixlen > (32 if Family.of(prefix) is Family.INET else 128):
        problems.error(where.field("prefixlen"), f"{a.prefixlen} is too long for {prefix}")
    if len(problems.errors) > before:
        return None
    return BgpAttributes(local_asn=a.local_asn, peer_asn=a.peer_asn, community=a.community,
                         prefix=prefix, prefixlen=a.prefixlen, hold_time_ms=a.hold_time_ms)


def _float32(value: float) -> float:
    """The shortest decimal that is the same float32 (0.9, not 0.8999999761581421)."""
    if not math.isfinite(value):
        return value
    for digits in range(1, 10):
        candidate = float(f"{value:.{digits}g}")
        if struct.unpack("f", struct.pack("f", candidate))[0] == value:
            return candidate
    return value


def _link(b: config_pb2.BalancerConfig, service: Service | None, where: Where,
          problems: Problems) -> str:
    if not b.HasField("vip_link"):
        return DEFAULT_LINK
    if not _LINK_NAME.fullmatch(b.vip_link) or b.vip_link in (".", ".."):
        problems.error(where, f"{b.vip_link!r} is not a valid link name")
    elif service is not None and service.key.fwmark:
        problems.warn(where, "is ignored: an fwmark service has no VIP")
    return b.vip_link


def _lifecycle(b: config_pb2.BalancerConfig, where: Where, problems: Problems) -> Lifecycle | None:
    before = len(problems.errors)
    damping = None
    if b.HasField("flap_damping"):
        f, here = b.flap_damping, where.field("flap_damping")
        if f.half_life_ms == 0:
            problems.error(here.field("half_life_ms"), "must be > 0")
        if not 0 < f.reuse_flaps < f.suppress_flaps:
            problems.error(here, "needs 0 < reuse_flaps < suppress_flaps")
        if len(problems.errors) == before:
            damping = FlapDamping(half_life_ms=f.half_life_ms, suppress_flaps=_float32(
                f.suppress_flaps), reuse_flaps=_float32(f.reuse_flaps))
    ratio = _float32(b.min_pooled_ratio) if b.HasField("min_pooled_ratio") else 0.0
    if not 0.0 <= ratio <= 1.0:
        problems.error(where.field("min_pooled_ratio"), "must be within 0-1")
    if len(problems.errors) > before:
        return None
    return Lifecycle(drain_timeout_ms=b.drain_timeout_ms, slow_start_ms=b.slow_start_ms,
                     flap_damping=damping, min_pooled_ratio=ratio)


def _check_shared(msg: config_pb2.ControlPlaneConfig, where: Where,
                  converted: list[tuple[Service | None, BalancerConfig | None]],
                  problems: Problems) -> None:
    """kglb's rules across balancers (unique services, one enable_fwmarks per VIP) and ours
    (one link per VIP)."""
    services: dict[ServiceKey, int] = {}
    fwmarks: dict[str, tuple[bool, int]] = {}
    links: dict[str, tuple[str, int]] = {}
    for index, (b, (service, _)) in enumerate(zip(msg.balancers, converted)):
        if service is None:
            continue
        here = where.item(index)
        first = services.setdefault(service.key, index)
        if first != index:
            problems.error(here.field("lb_service"), f"duplicate lb_service "
                           f"{service.key.kglb_key} (also {where.item(first).text})")
        vip = service.key.address or "fwmark"
        value, first = fwmarks.setdefault(vip, (b.enable_fwmarks, index))
        if value != b.enable_fwmarks:
            problems.error(here.field("enable_fwmarks"),
                           f"inconsistent value of enable_fwmarks for VIP {vip}: "
                           f"{b.enable_fwmarks} here, {value} in {where.item(first).text}")
        if service.key.fwmark:
            continue
        link = b.vip_link if b.HasField("vip_link") else DEFAULT_LINK
        other, first = links.setdefault(vip, (link, index))
        if other != link:
            problems.error(here.field("vip_link"), f"VIP {vip} is on link {other!r} in "
                           f"{where.item(first).text}; one VIP needs one link")
