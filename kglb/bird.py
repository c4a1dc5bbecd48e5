"""BIRD 2 as our BGP speaker: the configuration we render and birdc's answers we read.

Theory of operation. The operator's ``bird.conf`` includes one file that we own
(``include "/run/bird/kglb-trio*.conf";``). For every (family, local ASN, peer
ASN) we declare a private routing table ``kglb_v4_<local>_<peer>``, fill it with
a static protocol holding one blackhole route per announced prefix (its
communities and hold time set as route attributes), and export that table, and
nothing else, to one BGP protocol per neighbor. Our routes therefore never
reach the operator's master tables or the kernel, and the operator's routes
never reach our neighbors. Announcing or withdrawing is: render the whole file,
``birdc configure``. BIRD diffs the static routes and sends only the change.

Reading back is the other half: ``birdc show protocols`` gives the session
states, ``birdc show route table kglb_... all`` the routes (the table name gives
the ASNs, the attributes give communities and hold time), so a restarted
kglb-trio sees what BIRD still announces.

Pure: text in, text out.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

from ._model import Route

__all__ = [
    "DEFAULT_INCLUDE",
    "DEFAULT_SOCKET",
    "BirdSettings",
    "Neighbor",
    "ProtocolStatus",
    "Session",
    "parse_community",
    "parse_neighbor",
    "parse_protocols",
    "parse_routes",
    "render",
    "sessions_for",
    "static_name",
    "table_name",
]

#: Under /run so that after a reboot BIRD starts without our routes: nothing is
#: announced until kglb-trio has configured IPVS again. /run/bird exists whenever
#: Debian's bird.service runs, so a glob include of it never fails.
DEFAULT_INCLUDE = "/run/bird/kglb-trio.conf"
DEFAULT_SOCKET = "/run/bird/bird.ctl"

#: A private route attribute (never sent over BGP) that keeps each route's hold
#: time inside BIRD, so a restarted kglb-trio still waits it out on withdrawal.
HOLD_ATTRIBUTE = "kglb_hold_time_ms"

_SYMBOL_MAX = 64  # BIRD's SYM_MAX_LEN
_TABLE = re.compile(r"^kglb_v([46])_(\d+)_(\d+)$")


def _asn(value: int) -> int:
    if not 0 < value < 2**32:
        raise ValueError(f"ASN out of range: {value}")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class Neighbor:
    """A BGP peer: its address and, if pinned, its ASN (else the route's peer_asn)."""

    address: str
    asn: int | None = None

    def __post_init__(self) -> None:
        address = ipaddress.ip_address(self.address)
        if address.version == 6 and address.is_link_local:
            # BIRD needs an interface for IPv6 ones; we have no flag for it.
            raise ValueError("IPv6 link-local neighbors are not supported")
        object.__setattr__(self, "address", str(address))
        if self.asn is not None:
            _asn(self.asn)

    @property
    def version(self) -> int:
        return ipaddress.ip_address(self.address).version


def parse_neighbor(text: str) -> Neighbor:
    """``ADDR``, ``ADDR:ASN``, ``IPV6`` or ``[IPV6]:ASN`` (the ``--bgp-neighbor`` flag).

    Raises ValueError with a message fit for the operator.
    """
    text = text.strip()
    try:
        if text.startswith("["):
            address, _, rest = text[1:].partition("]")
            if rest and not rest.startswith(":"):
                raise ValueError("expected [IPV6]:ASN")
            return Neighbor(address=address, asn=int(rest[1:]) if rest else None)
        if text.count(":") == 1:
            address, asn = text.split(":")
            return Neighbor(address=address, asn=int(asn))
        return Neighbor(address=text)
    except ValueError as e:
        raise ValueError(f"bad BGP neighbor {text!r} (ADDR, ADDR:ASN or [IPV6]:ASN): {e}") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class BirdSettings:
    """How to reach BIRD and whom to peer with (CLI flags, not the kglb config).

    ``include_path`` is the file we own and rewrite; ``socket`` is BIRD's control
    socket; ``source_addresses`` (at most one per family) are our end of the
    sessions of that family (else BIRD picks it by routing); ``poll_interval``
    is how often session states are read (kglb polled every 10 s).
    """

    neighbors: tuple[Neighbor, ...]
    include_path: str = DEFAULT_INCLUDE
    socket: str = DEFAULT_SOCKET
    birdc: str = "birdc"
    source_addresses: tuple[str, ...] = ()
    poll_interval: float = 10.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "neighbors", tuple(self.neighbors))
        if not self.neighbors:
            raise ValueError("a BGP speaker needs at least one neighbor")
        sources = tuple(str(ipaddress.ip_address(a)) for a in self.source_addresses)
        if len({ipaddress.ip_address(a).version for a in sources}) != len(sources):
            raise ValueError("at most one BGP source address per address family")
        object.__setattr__(self, "source_addresses", sources)
        if self.poll_interval <= 0:
            raise ValueError("poll_interval must be positive")


@dataclass(frozen=True, slots=True, kw_only=True, order=True)
class Session:
    """One BGP session: our ASN, the neighbor and its ASN."""

    local_asn: int
    peer_asn: int
    neighbor: str

    def __post_init__(self) -> None:
        _asn(self.local_asn)
        _asn(self.peer_asn)
        object.__setattr__(self, "neighbor", str(ipaddress.ip_address(self.neighbor)))

    @property
    def version(self) -> int:
        return ipaddress.ip_address(self.neighbor).version

    @property
    def name(self) -> str:
        """The BIRD protocol name, stable across reloads (a rename restarts the session)."""
        readable = f"kglb_{self.local_asn}_{self.peer_asn}_{re.sub(r'[.:]', '_', self.neighbor)}"
        if len(readable) <= _SYMBOL_MAX:
            return readable
        # Only long IPv6 addresses with 10-digit ASNs get here.
        digest = hashlib.blake2s(readable.encode(), digest_size=8).hexdigest()
        return f"kglb_{self.local_asn}_{self.peer_asn}_{digest}"


def _version(route: Route) -> int:
    return ipaddress.ip_network(route.prefix).version


def sessions_for(route: Route, neighbors: Iterable[Neighbor]) -> frozenset[Session]:
    """The sessions that carry ``route``: neighbors of its address family whose
    ASN is the route's peer ASN, or not pinned."""
    return frozenset(
        Session(local_asn=route.local_asn, peer_asn=route.peer_asn, neighbor=n.address)
        for n in neighbors
        if n.version == _version(route) and n.asn in (None, route.peer_asn)
    )


def table_name(version: int, local_asn: int, peer_asn: int) -> str:
    return f"kglb_v{version}_{local_asn}_{peer_asn}"


def static_name(version: int, local_asn: int, peer_asn: int) -> str:
    return f"kglb_static_v{version}_{local_asn}_{peer_asn}"


def parse_community(text: str) -> tuple[int, ...]:
    """``"65101:30000"`` (standard, 16-bit parts) or ``"1:2:3"`` (large, 32-bit parts)."""
    parts = text.split(":")
    bits = {2: 16, 3: 32}.get(len(parts))
    if bits is None or not all(p.isdigit() for p in parts):
        raise ValueError(f"bad community {text!r}: expected A:B or A:B:C with decimal parts")
    values = tuple(int(p) for p in parts)
    if any(v >= 2**bits for v in values):
        raise ValueError(f"bad community {text!r}: a part exceeds {bits} bits")
    return values


def _route_line(route: Route) -> str:
    actions = [f"{HOLD_ATTRIBUTE} = {route.hold_time_ms};"]
    # standard communities first, as BIRD lists them
    for values in sorted(map(parse_community, route.communities), key=lambda v: (len(v), v)):
        attribute = "bgp_community" if len(values) == 2 else "bgp_large_community"
        actions.append(f"{attribute}.add(({','.join(map(str, values))}));")
    return f"  route {route.prefix} blackhole {{ {' '.join(actions)} }};"


def render(
    routes: Iterable[Route], sessions: Iterable[Session], *, source_addresses: Iterable[str] = ()
) -> str:
    """The whole include file for these routes and sessions (deterministic order).

    Raises ValueError for a community BIRD cannot take (see ``parse_community``).
    """
    by_table: dict[tuple[int, int, int], list[Route]] = {}
    for route in sorted(routes, key=lambda r: (r.local_asn, r.peer_asn, r.prefix, r.communities)):
        by_table.setdefault((_version(route), route.local_asn, route.peer_asn), []).append(route)
    sessions = sorted(sessions)
    sources = {ipaddress.ip_address(a).version: a for a in source_addresses}
    for s in sessions:
        by_table.setdefault((s.version, s.local_asn, s.peer_asn), [])

    out = [
        "# Generated by kglb-trio; rewritten on every change, do not edit.",
        f"attribute int {HOLD_ATTRIBUTE};",
    ]
    for key in sorted(by_table):
        version, local, peer = key
        table = table_name(*key)
        out += [
            "",
            f"ipv{version} table {table};",
            f"protocol static {static_name(*key)} {{",
            f"  ipv{version} {{ table {table}; }};",
            *(_route_line(r) for r in by_table[key]),
            "}",
        ]
    for s in sessions:
        table = table_name(s.version, s.local_asn, s.peer_asn)
        local = f"local {sources[s.version]} as" if s.version in sources else "local as"
        out += [
            "",
            f"protocol bgp {s.name} {{",
            f'  description "kglb-trio AS{s.local_asn} to {s.neighbor} AS{s.peer_asn}";',
            f"  {local} {s.local_asn};",
            f"  neighbor {s.neighbor} as {s.peer_asn};",
            f"  ipv{s.version} {{ table {table}; import none; export all; }};",
            "}",
        ]
    return "\n".join(out) + "\n"


@dataclass(frozen=True, slots=True, kw_only=True)
class ProtocolStatus:
    """One row of ``birdc show protocols``. ``info`` is e.g. "Established",
    "Active", "Connect", or "Active  Socket: Connection refused"."""

    name: str
    proto: str
    table: str
    state: str
    info: str

    @property
    def established(self) -> bool:
        return self.proto == "BGP" and self.info.split()[:1] == ["Established"]


# The "Since" column is one token ("09:14:01.123", "2026-11-28") or, with
# `timeformat protocol iso long`, a date and a time.
_PROTOCOL_ROW = re.compile(
    r"^(?P<name>\S+)\s+(?P<proto>\S+)\s+(?P<table>\S+)\s+(?P<state>\S+)"
    r"\s+\S+(?:\s\d\d:\d\d:\d\d\S*)?(?:\s+(?P<info>.*?))?\s*$"
)


def parse_protocols(text: str) -> tuple[ProtocolStatus, ...]:
    """Parse ``birdc show protocols`` (the banner and header lines are skipped)."""
    rows = []
    for line in text.splitlines():
        if not line.strip() or line.startswith(("BIRD ", "Name ")):
            continue
        m = _PROTOCOL_ROW.match(line)
        if m is None:
            raise ValueError(f"unexpected line in birdc show protocols: {line!r}")
        rows.append(ProtocolStatus(**{k: v or "" for k, v in m.groupdict().items()}))
    return tuple(rows)


def _table_asns(table: str) -> tuple[int, int] | None:
    m = _TABLE.match(table)
    return (int(m[2]), int(m[3])) if m else None


def parse_routes(text: str) -> tuple[Route, ...]:
    """Our routes in ``birdc show route table kglb_... all`` output, in order.

    Tables not named ``kglb_v<4|6>_<local>_<peer>`` are skipped. Communities
    come back standard ones first, then large ones, in BIRD's order.
    """
    routes: list[Route] = []
    asns: tuple[int, int] | None = None
    current: dict | None = None

    def finish() -> None:
        if current is not None and asns is not None:
            routes.append(Route(**current))

    for line in text.splitlines():
        if line.startswith("Table ") and line.endswith(":"):
            finish()
            current = None
            asns = _table_asns(line[len("Table ") : -1])
        elif line.startswith("\t"):
            name, _, value = line.strip().partition(": ")
            if current is None:
                continue
            if name == "BGP.community":
                pairs = re.findall(r"\((\d+),\s*(\d+)\)", value)
                current["communities"] += tuple(f"{a}:{b}" for a, b in pairs)
            elif name == "BGP.large_community":
                triples = re.findall(r"\((\d+),\s*(\d+),\s*(\d+)\)", value)
                current["communities"] += tuple(f"{a}:{b}:{c}" for a, b, c in triples)
            elif name == HOLD_ATTRIBUTE:
                current["hold_time_ms"] = int(value)
        elif line.strip() and asns is not None and not line.startswith("BIRD "):
            # A route: "10.0.0.1/32  blackhole [...]", or an indented second
            # route for the same prefix (kept: BIRD holds both).
            finish()
            prefix = line.split()[0] if not line[0].isspace() else current["prefix"]
            current = {
                "prefix": prefix,
                "local_asn": asns[0],
                "peer_asn": asns[1],
                "communities": (),
                "hold_time_ms": 0,
            }
    finish()
    return tuple(routes)
