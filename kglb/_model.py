"""The data every part of kglb-trio exchanges: IPVS objects, state messages, operations.

Everything here is a frozen, slotted, keyword-only dataclass. Constructors
normalise (canonical address text, sorted tuples) and validate, so an invalid
object cannot exist and two equal states compare equal.

Addresses are kept as canonical text (``str(ipaddress.ip_address(x))``), which
is what the kernel read-back and the status API print.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
from dataclasses import dataclass, field


class Family(enum.IntEnum):
    """Address family, with the kernel's AF_* numbers (the core imports no socket)."""

    INET = 2
    INET6 = 10

    @classmethod
    def of(cls, address: str) -> Family:
        return cls.INET if ":" not in canonical_ip(address) else cls.INET6

    @property
    def tag(self) -> str:
        return "v4" if self is Family.INET else "v6"


class Protocol(enum.IntEnum):
    """IPVS service protocol, with the kernel's IPPROTO_* numbers."""

    TCP = 6
    UDP = 17


class ForwardMethod(enum.IntEnum):
    """IPVS forwarding method, with the kernel's IP_VS_CONN_F_* numbers."""

    MASQ = 0
    # Read-back only: the kernel turns any method into LOCALNODE for a real
    # whose address is local to the balancer (ip_vs_ctl.c __ip_vs_update_dest).
    LOCALNODE = 1
    TUNNEL = 2
    DROUTE = 3


class ServiceFlag(enum.IntFlag):
    """IPVS service flags (IP_VS_SVC_F_*). HASHED is the kernel's own and never desired."""

    PERSISTENT = 0x1
    HASHED = 0x2
    ONEPACKET = 0x4
    SCHED1 = 0x8  # sh-fallback for sh, mh-fallback for mh
    SCHED2 = 0x10  # sh-port / mh-port
    SCHED3 = 0x20


#: Every scheduler the kernel may offer. `twos` exists only on newer kernels.
SCHEDULERS = frozenset(
    "rr wrr lc wlc lblc lblcr dh sh sed nq fo ovf mh twos".split()
)


@functools.lru_cache(maxsize=1 << 16)
def canonical_ip(text: str) -> str:
    """Canonical text of an IP address; raises ValueError for anything else.

    Cached: every state of a 10k-real balancer re-validates the same addresses.
    """
    return str(ipaddress.ip_address(text))


def _frozen(cls):
    return dataclass(frozen=True, slots=True, kw_only=True)(cls)


# --------------------------------------------------------------------- IPVS objects


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceKey:
    """Identity of an IPVS virtual service: protocol+VIP+port, or family+fwmark."""

    family: Family
    protocol: Protocol | None = None
    address: str = ""
    port: int = 0
    fwmark: int = 0

    def __post_init__(self) -> None:
        if self.fwmark:
            if self.protocol is not None or self.address or self.port:
                raise ValueError("an fwmark service has no protocol, address or port")
            if not 0 < self.fwmark < 2**32:
                raise ValueError(f"fwmark out of range: {self.fwmark}")
            return
        if self.protocol is None:
            raise ValueError("a service needs a protocol or an fwmark")
        address = canonical_ip(self.address)
        object.__setattr__(self, "address", address)
        if Family.of(address) is not self.family:
            raise ValueError(f"{address} is not {self.family.name}")
        if not 0 < self.port < 65536:
            raise ValueError(f"port out of range: {self.port}")

    def __lt__(self, other: ServiceKey) -> bool:
        return self._order() < other._order()

    def _order(self) -> tuple:
        return (self.family, self.protocol or 0, self.address, self.port, self.fwmark)

    @classmethod
    def tcp(cls, address: str, port: int) -> ServiceKey:
        return cls(family=Family.of(address), protocol=Protocol.TCP, address=address, port=port)

    @classmethod
    def udp(cls, address: str, port: int) -> ServiceKey:
        return cls(family=Family.of(address), protocol=Protocol.UDP, address=address, port=port)

    @classmethod
    def for_fwmark(cls, fwmark: int, family: Family = Family.INET) -> ServiceKey:
        return cls(family=family, fwmark=fwmark)

    @property
    def kglb_key(self) -> str:
        """kglb's key text: ``10.0.0.1:80-tcp``, ``::1:443-tcp``, ``fwmark:1010:v4``."""
        if self.fwmark:
            return f"fwmark:{self.fwmark}:{self.family.tag}"
        return f"{self.address}:{self.port}-{self.protocol.name.lower()}"

    def __str__(self) -> str:
        if self.fwmark:
            return f"FWM {self.fwmark} {self.family.tag}"
        host = f"[{self.address}]" if self.family is Family.INET6 else self.address
        return f"{self.protocol.name} {host}:{self.port}"


@_frozen
class Service:
    """The settable attributes of a virtual service (what an in-place update changes)."""

    key: ServiceKey
    scheduler: str = "rr"
    flags: ServiceFlag = ServiceFlag(0)
    timeout: int = 0  # persistence timeout in seconds; meaningful with PERSISTENT

    def __post_init__(self) -> None:
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"unknown scheduler {self.scheduler!r}")
        object.__setattr__(self, "flags", ServiceFlag(self.flags) & ~ServiceFlag.HASHED)
        if self.timeout < 0:
            raise ValueError("timeout must be >= 0")


@dataclass(frozen=True, slots=True, kw_only=True, order=True)
class RealKey:
    """Identity of a destination within a service."""

    address: str
    port: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "address", canonical_ip(self.address))
        if not 0 <= self.port < 65536:
            raise ValueError(f"port out of range: {self.port}")

    def __str__(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"


@_frozen
class Real:
    """One IPVS destination.

    ``provisional`` marks a weight the control plane has not decided yet (the
    balancer has no complete health picture). The planner keeps the kernel's
    weight for a provisional real that already exists, so a restart never
    lowers the weights of a service that is serving traffic.
    """

    key: RealKey
    weight: int
    forward: ForwardMethod = ForwardMethod.TUNNEL
    hostname: str = ""
    provisional: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.weight < 2**31:
            raise ValueError(f"weight out of range: {self.weight}")


@_frozen
class ServiceState:
    """A service with all its reals, as desired or as read from the kernel."""

    service: Service
    reals: tuple[Real, ...] = ()
    name: str = ""
    #: No real has a hostname or is provisional: the kernel would report it so.
    as_reported: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # RealKey's order is (address, port); compared as plain tuples the sort
        # of 500 reals (every balancer publication) is ~5x cheaper.
        reals = tuple(sorted(self.reals, key=lambda r: (r.key.address, r.key.port)))
        keys = [r.key for r in reals]
        if len(set(keys)) != len(keys):
            raise ValueError(f"duplicate real in {self.service.key}")
        object.__setattr__(self, "reals", reals)
        object.__setattr__(self, "as_reported",
                           all(not r.hostname and not r.provisional for r in reals))

    @property
    def key(self) -> ServiceKey:
        return self.service.key

    def real_map(self) -> dict[RealKey, Real]:
        return {r.key: r for r in self.reals}


@dataclass(frozen=True, slots=True, kw_only=True, order=True)
class LinkAddress:
    """A VIP on an interface: /32 for IPv4, /128 for IPv6."""

    link: str = "lo"
    address: str

    def __post_init__(self) -> None:
        if not self.link.strip():
            raise ValueError("link name is blank")
        object.__setattr__(self, "address", canonical_ip(self.address))

    @property
    def prefixlen(self) -> int:
        return 32 if Family.of(self.address) is Family.INET else 128


@dataclass(frozen=True, slots=True, kw_only=True, order=True)
class Route:
    """A BGP route to announce. Identity ignores hold_time_ms (kglb §5.2)."""

    prefix: str  # network in CIDR form, e.g. "10.0.0.1/32"
    local_asn: int
    peer_asn: int
    communities: tuple[str, ...] = ()
    hold_time_ms: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "prefix", str(ipaddress.ip_network(self.prefix, strict=False)))
        # A set in BGP: order and repeats carry no meaning, and BIRD reports
        # standard and large communities apart, so compare them sorted.
        object.__setattr__(self, "communities", tuple(sorted(set(self.communities))))


# --------------------------------------------------------------------- state messages


@_frozen
class DataPlaneState:
    """The complete desired (or actual) state of the data plane. Latest wins."""

    services: tuple[ServiceState, ...] = ()
    addresses: tuple[LinkAddress, ...] = ()
    routes: tuple[Route, ...] = ()

    def __post_init__(self) -> None:
        services = tuple(sorted(self.services, key=lambda s: s.key))
        keys = [s.key for s in services]
        if len(set(keys)) != len(keys):
            raise ValueError("duplicate service in state")
        object.__setattr__(self, "services", services)
        object.__setattr__(self, "addresses", tuple(sorted(set(self.addresses))))
        object.__setattr__(self, "routes", tuple(sorted(set(self.routes))))

    def service_map(self) -> dict[ServiceKey, ServiceState]:
        return {s.key: s for s in self.services}


@_frozen
class Owned:
    """What this control plane created and may therefore change or remove."""

    services: frozenset[ServiceKey] = frozenset()
    addresses: frozenset[LinkAddress] = frozenset()


# --------------------------------------------------------------------- operations


@_frozen
class WithdrawRoute:
    route: Route


@_frozen
class AddService:
    service: Service


@_frozen
class UpdateService:
    service: Service


@_frozen
class AddAddress:
    address: LinkAddress


@_frozen
class AddReal:
    service: ServiceKey
    real: Real


@_frozen
class UpdateReal:
    service: ServiceKey
    real: Real


@_frozen
class DeleteReal:
    service: ServiceKey
    real: RealKey


@_frozen
class AnnounceRoute:
    route: Route


@_frozen
class DeleteService:
    service: ServiceKey


@_frozen
class DeleteAddress:
    address: LinkAddress


Operation = (
    WithdrawRoute
    | AddService
    | UpdateService
    | AddAddress
    | AddReal
    | UpdateReal
    | DeleteReal
    | AnnounceRoute
    | DeleteService
    | DeleteAddress
)
