"""Discovery: what a source answers -> the reals a balancer is given (pure).

Theory of operation. A source (static hosts, a file_sd file, DNS, etcd) is
asked, and answers either a complete list of :class:`Endpoint` or a failure.
:func:`observe_answer` and :func:`observe_failure` fold that into a
:class:`SourceState`, whose ``endpoints`` are what the balancer gets:

* a failure (a missing or invalid file, a DNS timeout, etcd down) keeps the
  last good list and marks the source down;
* an answer that would remove more than ``max_remove_ratio`` of the current
  reals, or every one of them, is held: its additions and changes apply, its
  removals wait until the next answer agrees with it (two consecutive answers
  proposing the same reals). A source that suddenly empties (a truncated file,
  a wiped prefix) therefore never depools a balancer at once. A new
  configuration starts from an empty state, so it applies at once.

An endpoint's ``address`` is None when ``host`` is a name still to resolve;
the discovery actor resolves it (``actors/resolver.py``) before the balancer
sees it. ``weight`` scales the balancer's ``weightUp``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from ._model import canonical_ip
from .config._types import DnsSource, FileSource, Source, StaticSource

__all__ = ["DEFAULT_MAX_REMOVE_RATIO", "DiscoveryError", "Endpoint", "Endpoints", "SourceState",
           "SrvRecord", "describe", "endpoint_of", "observe_answer", "observe_failure", "parse_etcd_value",
           "parse_file_sd", "parse_hostport", "srv_endpoints"]

DEFAULT_MAX_REMOVE_RATIO = 0.5


class DiscoveryError(ValueError):
    """A source's answer cannot be used (the message says why); the last good list stays."""


def _frozen(cls):
    return dataclass(frozen=True, slots=True, kw_only=True)(cls)


def _literal(host: str) -> str | None:
    try:
        return canonical_ip(host)
    except ValueError:
        return None


@_frozen
class Endpoint:
    """One real as a source gives it: ``host`` (a name or an IP literal), its
    ``address`` (None until a name is resolved), ``port`` (IPVS destination and
    check port) and ``weight`` (a factor of ``weightUp``, >= 0)."""

    host: str
    port: int
    weight: float = 1.0
    address: str | None = None
    # What identifies the real: built once (a 10k-real list is keyed many times per update).
    key: tuple[str, str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.host or not isinstance(self.host, str):
            raise ValueError("an endpoint needs a host")
        if not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ValueError(f"port {self.port!r} is not in 0..65535")
        if not (isinstance(self.weight, (int, float)) and math.isfinite(self.weight)
                and self.weight >= 0):
            raise ValueError(f"weight {self.weight!r} must be a finite number >= 0")
        object.__setattr__(self, "weight", float(self.weight))
        address = self.address
        if address is None:
            address = _literal(self.host)
        else:
            address = canonical_ip(address)
        object.__setattr__(self, "address", address)
        object.__setattr__(self, "key", (self.host, address or "", self.port))


@_frozen
class Endpoints:
    """A complete list of one balancer's reals (latest wins), in the source's order, without
    duplicates (the first of two equal keys wins, as kglb's first listed host)."""

    endpoints: tuple[Endpoint, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "endpoints", _normal(self.endpoints))

    def __len__(self) -> int:
        return len(self.endpoints)

    def __iter__(self):
        return iter(self.endpoints)


def _normal(endpoints: Iterable[Endpoint]) -> tuple[Endpoint, ...]:
    by_key: dict[tuple[str, str, int], Endpoint] = {}
    for endpoint in endpoints:
        if not isinstance(endpoint, Endpoint):
            raise TypeError(f"not an Endpoint: {endpoint!r}")
        by_key.setdefault(endpoint.key, endpoint)
    return tuple(by_key.values())


# ------------------------------------------------------------------ the source's state


@_frozen
class SourceState:
    """A source as discovery knows it now: the list it gives and how it is doing.

    ``held`` is the key set of an answer whose removals wait for a second,
    agreeing answer (None: nothing held).
    """

    endpoints: Endpoints = Endpoints()
    up: bool = False
    answered: bool = False  # had one good answer (or failed) since it started: may publish
    last_success: float | None = None
    error: str = ""
    failures: int = 0
    held: frozenset[tuple[str, str, int]] | None = None


def observe_answer(state: SourceState, answer: Iterable[Endpoint], *, now: float,
                   max_remove_ratio: float = DEFAULT_MAX_REMOVE_RATIO) -> SourceState:
    """Fold one good answer in, holding back a removal that is too large (see above)."""
    proposed = Endpoints(endpoints=tuple(answer))
    current = state.endpoints
    wanted = {e.key for e in proposed}
    removed = [e for e in current if e.key not in wanted]
    limit = math.floor(max_remove_ratio * len(current) + 1e-9)
    too_many = removed and (len(removed) > limit or len(removed) == len(current))
    held = None
    if too_many and state.held != frozenset(wanted):
        held = frozenset(wanted)
        proposed = Endpoints(endpoints=proposed.endpoints + tuple(removed))
    return replace(state, endpoints=proposed, up=True, answered=True, last_success=now,
                   error="", held=held)


def observe_failure(state: SourceState, reason: str) -> SourceState:
    """A failed attempt: the list stays as it was, the source is down."""
    return replace(state, up=False, answered=True, error=reason, failures=state.failures + 1)


# ------------------------------------------------------------------ parsing answers


def parse_hostport(text: str, default_port: int) -> tuple[str, int]:
    """``"10.0.0.1:80"``, ``"[2001:db8::1]:80"``, ``"web-2"``, ``"2001:db8::1"`` -> (host, port)."""
    if not isinstance(text, str) or not text.strip():
        raise DiscoveryError(f"{text!r} is not host[:port]")
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise DiscoveryError(f"{text!r} is not [address]:port")
        port_text = rest[1:] if rest else None
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:  # a name, an IPv4 literal or a bare IPv6 literal
        if ":" in text and _literal(text) is None:
            raise DiscoveryError(f"{text!r} is not host[:port] (an IPv6 address needs [ ]:port)")
        host, port_text = text, None
    if not host:
        raise DiscoveryError(f"{text!r} has no host")
    if port_text is None:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) <= 65535:
        raise DiscoveryError(f"{text!r}: port {port_text!r} is not in 1..65535")
    return host, int(port_text)


def endpoint_of(text: str, default_port: int, weight: float = 1.0) -> Endpoint:
    """An Endpoint from ``host[:port]`` text; raises DiscoveryError."""
    host, port = parse_hostport(text, default_port)
    try:
        return Endpoint(host=host, port=port, weight=weight)
    except ValueError as exc:
        raise DiscoveryError(f"{text!r}: {exc}") from None


def parse_file_sd(text: str | bytes, default_port: int) -> tuple[Endpoint, ...]:
    """Prometheus file_sd JSON -> endpoints; raises DiscoveryError for any invalid part.

    ``[{"targets": ["10.0.0.1:80", "web-2"], "labels": {...}}, ...]``; a target
    without a port takes ``default_port``; labels are accepted and not used.
    """
    try:
        groups = json.loads(text)
    except (ValueError, RecursionError) as exc:  # also a half-written file
        raise DiscoveryError(f"not valid JSON: {exc}") from None
    if not isinstance(groups, list):
        raise DiscoveryError("must be a JSON list of target groups")
    out = []
    for i, group in enumerate(groups):
        if not isinstance(group, dict) or not isinstance(group.get("targets"), list):
            raise DiscoveryError(f"[{i}]: must be an object with a 'targets' list")
        labels = group.get("labels", {})
        if not isinstance(labels, dict):
            raise DiscoveryError(f"[{i}].labels: must be an object")
        for j, target in enumerate(group["targets"]):
            try:
                out.append(endpoint_of(target, default_port))
            except DiscoveryError as exc:
                raise DiscoveryError(f"[{i}].targets[{j}]: {exc}") from None
    return tuple(out)


def parse_etcd_value(value: str | bytes, default_port: int) -> Endpoint:
    """One etcd value -> an endpoint: ``"host:port"`` or ``{"host", "port", "weight"}``."""
    if isinstance(value, bytes):
        try:
            value = value.decode()
        except UnicodeDecodeError:
            raise DiscoveryError("value is not UTF-8") from None
    text = value.strip()
    if not text.startswith("{"):
        return endpoint_of(text, default_port)
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise DiscoveryError(f"not valid JSON: {exc}") from None
    host, port, weight = data.get("host"), data.get("port", default_port), data.get("weight", 1)
    unknown = set(data) - {"host", "port", "weight"}
    if unknown:
        raise DiscoveryError(f"unknown fields {sorted(unknown)}")
    if not isinstance(host, str) or isinstance(port, bool) or not isinstance(port, int) \
            or isinstance(weight, bool) or not isinstance(weight, (int, float)):
        raise DiscoveryError("needs host (string), port (integer), weight (number)")
    try:
        return Endpoint(host=host, port=port, weight=weight)
    except ValueError as exc:
        raise DiscoveryError(str(exc)) from None


@_frozen
class SrvRecord:
    """One SRV answer record (RFC 2782)."""

    priority: int
    weight: int
    port: int
    target: str  # a host name, without the final dot


def srv_endpoints(records: Sequence[SrvRecord]) -> tuple[Endpoint, ...]:
    """The records of the lowest priority present, their weights relative to the largest.

    The heaviest target gets ``weightUp``; a weight of 0 (RFC 2782: "very
    small chance") becomes the smallest nonzero IPVS weight in the balancer.
    """
    if not records:
        return ()
    best = min(r.priority for r in records)
    chosen = [r for r in records if r.priority == best]
    heaviest = max(r.weight for r in chosen) or 1
    return tuple(Endpoint(host=r.target, port=r.port, weight=r.weight / heaviest)
                 for r in chosen if r.target and r.target != ".")


def describe(source: Source) -> tuple[str, str]:
    """(kind, detail) of a source, as check, plan, status and metrics show it."""
    if isinstance(source, StaticSource):
        return "static", f"{len(source.hosts)} hosts"
    if isinstance(source, FileSource):
        return "file", source.path
    if isinstance(source, DnsSource):
        return "dns", f"{source.type} {source.name}"
    return "etcd", source.prefix
