"""Which group an operation belongs to, and which deletions a held route delays.

A group is one VIP: its services (every protocol and port on that address),
its link address and its host route. Balancers that share a VIP share a group,
since they share the address and the route; an fwmark service is a group of
its own. One group's failure is retried and counted while the others go on.
A route that is not a host route (a covering prefix) forms a group by itself.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from .._model import (
    AddAddress,
    AddReal,
    AddService,
    AnnounceRoute,
    DeleteAddress,
    DeleteReal,
    DeleteService,
    Operation,
    Route,
    ServiceKey,
    UpdateReal,
    UpdateService,
    WithdrawRoute,
)

__all__ = ["covers", "group_of", "held_address", "service_group"]


def service_group(key: ServiceKey) -> str:
    if key.fwmark:
        return f"fwmark:{key.fwmark}:{key.family.tag}"
    return key.address


@lru_cache(maxsize=4096)
def _route_group(prefix: str) -> str:
    network = ipaddress.ip_network(prefix)
    if network.num_addresses == 1:
        return str(network.network_address)
    return prefix


def group_of(op: Operation) -> str:
    """The group of ``op``: the VIP address it concerns, or the fwmark service."""
    match op:
        case AddService(service=s) | UpdateService(service=s):
            return service_group(s.key)
        case DeleteService(service=key) | AddReal(service=key) | UpdateReal(service=key) | \
                DeleteReal(service=key):
            return service_group(key)
        case AddAddress(address=a) | DeleteAddress(address=a):
            return a.address
        case AnnounceRoute(route=r) | WithdrawRoute(route=r):
            return _route_group(r.prefix)
    raise TypeError(f"not an operation: {op!r}")


def held_address(op: Operation) -> str | None:
    """The VIP whose traffic a deletion would cut (None: not a deletion a hold delays).

    Deleting a service, one of its reals, or the VIP itself cuts connections
    still arriving over a route that was just withdrawn; adding and changing
    weights never does, so they never wait.
    """
    match op:
        case DeleteService(service=key) | DeleteReal(service=key):
            return key.address or None  # an fwmark service carries no routed VIP
        case DeleteAddress(address=a):
            return a.address
    return None


@lru_cache(maxsize=4096)
def _network(prefix: str):
    return ipaddress.ip_network(prefix)


def covers(route: Route, address: str) -> bool:
    """True if traffic for ``address`` arrives over ``route``."""
    network = _network(route.prefix)
    ip = ipaddress.ip_address(address)
    return ip.version == network.version and ip in network
