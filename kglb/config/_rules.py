"""Rules across the sections of one balancer, one function each.

Each rule gets the balancer's converted sections (``Sections``; a section that
failed its own checks is None) and reports to ``problems``. A rule runs with
whatever sections it needs, so a bad VIP does not hide "MASQ with port 0".
A new rule is a function here and an entry in ``BALANCER_RULES``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from .._model import Family, ForwardMethod, Service
from ._errors import Problems, Where
from ._types import BgpAttributes, CheckerConfig, DummyCheck, SyslogCheck

FAMILY_NAMES = {Family.INET: "AF_INET", Family.INET6: "AF_INET6"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Sections:
    """One balancer's converted sections; None where a section is missing or invalid."""

    service: Service | None
    forward: ForwardMethod
    port: int | None  # upstreamDiscovery.port
    resolve_family: Family | None
    checker: CheckerConfig | None
    bgp: BgpAttributes | None


def only_tunnel_goes_without_a_port(s: Sections, where: Where, problems: Problems) -> None:
    if s.port == 0 and s.forward is not ForwardMethod.TUNNEL:
        # kglb accepted this with MASQ and then refused every state it generated.
        problems.error(where.field("upstream_discovery").field("port"),
                       f"must not be 0 with forwardMethod {s.forward.name}")


def mixed_families_need_tunnel(s: Sections, where: Where, problems: Problems) -> None:
    if s.service is None or s.resolve_family is None:
        return
    if s.resolve_family is not s.service.key.family and s.forward is not ForwardMethod.TUNNEL:
        problems.error(where.field("upstream_discovery").field("resolve_family"),
                       f"{FAMILY_NAMES[s.resolve_family]} reals in an {s.service.key.family.tag} "
                       "service need forwardMethod TUNNEL (the kernel refuses mixed families "
                       "otherwise)")


def checks_need_a_port(s: Sections, where: Where, problems: Problems) -> None:
    check = None if s.checker is None else s.checker.check
    if s.port != 0 or check is None or isinstance(check, DummyCheck):
        return
    if isinstance(check, SyslogCheck) and check.port:
        return
    problems.warn(where.field("upstream_discovery").field("port"),
                  "is 0: every health check connects to port 0 and fails")


def prefix_covers_the_vip(s: Sections, where: Where, problems: Problems) -> None:
    """The announced prefix attracts the VIP's traffic: same family (else refused), and the
    VIP inside it (else a warning)."""
    if s.service is None or s.bgp is None:
        return
    here = where.field("dynamic_routing").field("bgp_attributes").field("prefix")
    network = ipaddress.ip_network(f"{s.bgp.prefix}/{s.bgp.prefixlen}", strict=False)
    version = 4 if s.service.key.family is Family.INET else 6
    if network.version != version:
        problems.error(here, f"{network} is not an IPv{version} prefix, like the service "
                             f"{s.service.key}")
    elif s.service.key.address and ipaddress.ip_address(s.service.key.address) not in network:
        # A warning, not an error: kglb loaded it, and every kglb config must still load.
        problems.warn(here, f"{network} does not contain the VIP {s.service.key.address}: "
                            "the route does not bring its traffic here")


BALANCER_RULES: tuple[Callable[[Sections, Where, Problems], None], ...] = (
    only_tunnel_goes_without_a_port,
    mixed_families_need_tunnel,
    checks_need_a_port,
    prefix_covers_the_vip,
)


def check_balancer(sections: Sections, where: Where, problems: Problems) -> None:
    for rule in BALANCER_RULES:
        rule(sections, where, problems)
