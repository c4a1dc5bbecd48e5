"""The loaded configuration: frozen dataclasses with every kglb default applied.

These are what the rest of kglb-trio reads; protobuf messages never leave the
loader. Field names follow kglb's proto fields (snake_case) where they exist.
"""

from __future__ import annotations

from dataclasses import dataclass

from .._model import Family, ForwardMethod, Protocol, Route, Service, ServiceKey

DEFAULT_INTERVAL_MS = 5000
DEFAULT_RISE = 3
DEFAULT_FALL = 2
DEFAULT_CONCURRENCY = 100
DEFAULT_WEIGHT_UP = 1000
DEFAULT_CHECK_TIMEOUT_MS = 5000
DEFAULT_LINK = "lo"


def _frozen(cls):
    return dataclass(frozen=True, slots=True, kw_only=True)(cls)


@_frozen
class DummyCheck:
    """Always passes."""


@_frozen
class TcpCheck:
    timeout_ms: int = DEFAULT_CHECK_TIMEOUT_MS


@_frozen
class HttpCheck:
    scheme: str = "http"  # "" in the file means http (decisions.md row 14)
    uri: str = "/"  # always starts with "/"
    headers: tuple[tuple[str, str], ...] = ()  # in file order
    codes: tuple[int, ...] = ()  # empty: never healthy (as kglb)
    proxy_check_url: str = ""
    follow_redirects: bool = False
    timeout_ms: int = DEFAULT_CHECK_TIMEOUT_MS


@_frozen
class DnsCheck:
    query: str  # always absolute (ends with ".")
    query_type: str = "A"  # A AAAA NS MX TXT SOA
    protocol: Protocol = Protocol.TCP
    rcode: int = 0
    timeout_ms: int = DEFAULT_CHECK_TIMEOUT_MS


@_frozen
class SyslogCheck:
    log_level: int = 0
    port: int = 0  # 0: the discovery port
    protocol: Protocol = Protocol.TCP
    timeout_ms: int = DEFAULT_CHECK_TIMEOUT_MS


Check = DummyCheck | TcpCheck | HttpCheck | DnsCheck | SyslogCheck


@_frozen
class CheckerConfig:
    check: Check
    interval_ms: int = DEFAULT_INTERVAL_MS
    rise: int = DEFAULT_RISE
    fall: int = DEFAULT_FALL
    concurrency: int = DEFAULT_CONCURRENCY


DEFAULT_FILE_REFRESH_MS = 5000
DEFAULT_DNS_REFRESH_MS = 1000
DEFAULT_MAX_REMOVE_RATIO = 0.5


@_frozen
class StaticSource:
    hosts: tuple[str, ...]  # IP literals or host names


@_frozen
class FileSource:
    path: str  # Prometheus file_sd JSON
    refresh_ms: int = DEFAULT_FILE_REFRESH_MS


@_frozen
class DnsSource:
    name: str  # always absolute (ends with ".")
    type: str = "A"  # A AAAA SRV
    refresh_ms: int = DEFAULT_DNS_REFRESH_MS  # the shortest time between two queries
    nameservers: tuple[tuple[str, int], ...] = ()  # (IP, port); empty: the system's


@_frozen
class EtcdSource:
    endpoints: tuple[str, ...]  # base URLs of etcd's JSON gateway: "http://host:port"
    prefix: str


Source = StaticSource | FileSource | DnsSource | EtcdSource


@_frozen
class BgpAttributes:
    local_asn: int
    peer_asn: int
    community: str  # as written; ',' and ' ' both separate communities
    prefix: str  # canonical IP text
    prefixlen: int
    hold_time_ms: int = 0

    @property
    def communities(self) -> tuple[str, ...]:
        return tuple(self.community.replace(",", " ").split())

    def route(self) -> Route:
        return Route(
            prefix=f"{self.prefix}/{self.prefixlen}",
            local_asn=self.local_asn,
            peer_asn=self.peer_asn,
            communities=self.communities,
            hold_time_ms=self.hold_time_ms,
        )


@_frozen
class FlapDamping:
    """RFC 2439-style damping: every up->down adds 1 to a penalty halving every ``half_life_ms``."""

    half_life_ms: int
    suppress_flaps: float  # at or above: the real stays at weight 0
    reuse_flaps: float  # released once the penalty decays below this (and it is healthy)

    def __post_init__(self) -> None:
        if self.half_life_ms <= 0:
            raise ValueError("half_life_ms must be > 0")
        if not 0 < self.reuse_flaps < self.suppress_flaps:
            raise ValueError("need 0 < reuse_flaps < suppress_flaps")


@_frozen
class Lifecycle:
    """kglb-trio's real lifecycle rules (kglb.lifecycle); the defaults are kglb's behaviour."""

    drain_timeout_ms: int = 0  # 0: a real leaving the balancer is deleted at once
    slow_start_ms: int = 0  # 0: a recovering real gets weight_up at once
    flap_damping: FlapDamping | None = None
    min_pooled_ratio: float = 0.0

    def __post_init__(self) -> None:
        if self.drain_timeout_ms < 0 or self.slow_start_ms < 0:
            raise ValueError("drain_timeout_ms and slow_start_ms must be >= 0")
        if not 0.0 <= self.min_pooled_ratio <= 1.0:
            raise ValueError("min_pooled_ratio must be within 0-1")


@_frozen
class BalancerConfig:
    name: str
    setup_name: str
    service: Service  # key (VIP:port/proto or fwmark), scheduler, flags, persistence timeout
    forward: ForwardMethod = ForwardMethod.TUNNEL
    port: int = 0  # discovery port: the real's port and the check port
    resolve_family: Family = Family.INET
    hosts: tuple[str, ...] = ()  # static discovery: IP literals or host names
    checker: CheckerConfig
    announce_limit_ratio: float = 0.0
    bgp: BgpAttributes | None = None
    enable_fwmarks: bool = False
    configure_reals: bool = False  # accepted and ignored (warned about at load)
    weight_up: int = DEFAULT_WEIGHT_UP
    link: str = DEFAULT_LINK  # where the VIP goes (our field)
    source: Source | None = None  # None: StaticSource(hosts) (see ``discovery``)
    max_remove_ratio: float = DEFAULT_MAX_REMOVE_RATIO
    lifecycle: Lifecycle = Lifecycle()  # drain, slow start, flap damping, min pooled (ours)

    @property
    def key(self) -> ServiceKey:
        return self.service.key

    @property
    def discovery(self) -> Source:
        """Where this balancer's reals come from."""
        return self.source if self.source is not None else StaticSource(hosts=self.hosts)

    @property
    def identity(self) -> str:
        """kglb's balancer identity: ``name-10.0.0.1:80-tcp`` or ``name-fwmark:7:v4``."""
        return f"{self.name}-{self.key.kglb_key}"


@_frozen
class Config:
    balancers: tuple[BalancerConfig, ...] = ()
    warnings: tuple[str, ...] = ()  # accepted but ignored things, with their paths
