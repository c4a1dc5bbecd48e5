"""What the writer may put in the kernel: derived from the config, never from the peer.

The writer process reads the config file itself (root-owned; again on every
reload) and admits a desired state only if each part of it is one the config
could have produced:

* a service is a balancer's own (same key, scheduler, flags and persistence
  timeout), or a per-real fwmark service of a tunnelled check: a mark of the
  fwmark pool, scheduler rr, one real — and only if some balancer of that
  family enables fwmarks;
* the reals of a balancer's service use its forwarding method (the addresses
  of reals come from discovery and are not bounded: a DNS answer has that
  power today too);
* a VIP address is a balancer's VIP on its configured link;
* a route is a balancer's configured route (prefix, ASNs, communities, hold).

A state that breaks any rule is refused whole (the kernel keeps the last
admitted one), and every problem is named, with one of four countable reasons
(``ADMISSION_REASONS``): what kind of object the config does not allow.
Foreign kernel objects stay out of reach twice: they are not in the config,
and the writer's ownership rules never touch what it did not create.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from types import MappingProxyType

from .._model import DataPlaneState, Family, ForwardMethod, LinkAddress, Route, Service, ServiceKey
from ..config._types import Config
from ..fwmark import DEFAULT_BASE, DEFAULT_SIZE
from ._frame import FRAME_REASONS

__all__ = ["ADMISSION_REASONS", "REFUSAL_REASONS", "Allowed", "Problem", "admit", "allowed_by"]

#: Why a desired state is not admitted: a bounded set, so each is a metric label.
ADMISSION_REASONS = ("service not allowed", "settings not allowed", "address not allowed",
                     "route not allowed")
#: Every reason the writer counts a refusal under (kglb_trio_privsep_refusals_total).
REFUSAL_REASONS = FRAME_REASONS + ADMISSION_REASONS


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """One rule a desired state breaks: a countable ``reason`` and what broke it."""

    reason: str
    detail: str

    def __post_init__(self) -> None:
        if self.reason not in ADMISSION_REASONS:
            raise ValueError(f"not an admission reason: {self.reason!r}")

    def __str__(self) -> str:
        return self.detail


@dataclass(frozen=True, slots=True, kw_only=True)
class Allowed:
    services: Mapping[ServiceKey, Service] = field(default_factory=lambda: MappingProxyType({}))
    forwards: Mapping[ServiceKey, ForwardMethod] = field(
        default_factory=lambda: MappingProxyType({}))
    addresses: frozenset[LinkAddress] = frozenset()
    routes: Mapping[Route, int] = field(default_factory=lambda: MappingProxyType({}))  # -> hold
    fwmark_families: frozenset[Family] = frozenset()  # families of balancers with fwmarks
    fwmarks: range = range(DEFAULT_BASE, DEFAULT_BASE + DEFAULT_SIZE)


def allowed_by(config: Config, fwmarks: range = range(DEFAULT_BASE, DEFAULT_BASE + DEFAULT_SIZE),
               ) -> Allowed:
    """Everything ``config`` lets the writer create."""
    services, forwards, routes = {}, {}, {}
    addresses, families = set(), set()
    for b in config.balancers:
        services[b.key] = b.service
        forwards[b.key] = b.forward
        if not b.key.fwmark:
            addresses.add(LinkAddress(link=b.link, address=b.key.address))
        if b.bgp is not None:
            route = b.bgp.route()
            routes[route] = route.hold_time_ms
        if b.enable_fwmarks:
            # Tunnelled checks go to reals of the resolve family (kglb.md §3.7).
            families.add(b.resolve_family)
    return Allowed(services=MappingProxyType(services), forwards=MappingProxyType(forwards),
                   addresses=frozenset(addresses), routes=MappingProxyType(routes),
                   fwmark_families=frozenset(families), fwmarks=fwmarks)


def admit(state: DataPlaneState, allowed: Allowed) -> list[Problem]:
    """Every rule ``state`` breaks (see the module docstring); [] = admitted."""
    problems = []
    settings = partial(Problem, reason="settings not allowed")
    for s in state.services:
        key = s.key
        own = allowed.services.get(key)
        if own is not None:
            if s.service != own:
                problems.append(settings(detail=f"{key}: settings differ from the config "
                                                f"({s.service})"))
            forward = allowed.forwards[key]
            if any(r.forward is not forward for r in s.reals):
                problems.append(settings(detail=f"{key}: a real not forwarded by {forward.name}"))
        elif key.fwmark and key.fwmark in allowed.fwmarks and key.family in allowed.fwmark_families:
            if s.service.scheduler != "rr" or s.service.flags or len(s.reals) > 1:
                problems.append(settings(detail=f"{key}: not a tunnelled check's service"))
        else:
            problems.append(Problem(reason="service not allowed",
                                    detail=f"{key}: not a service of the config"))
    problems += [Problem(reason="address not allowed",
                         detail=f"VIP {a.address} on {a.link}: not in the config")
                 for a in state.addresses if a not in allowed.addresses]
    for route in state.routes:
        hold = allowed.routes.get(route)
        if hold is None or hold != route.hold_time_ms:
            problems.append(Problem(reason="route not allowed",
                                    detail=f"route {route.prefix}: not in the config"))
    return problems
