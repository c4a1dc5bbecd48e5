"""Convert and validate ``upstreamChecker``: the health-check policy of a balancer.

kglb's defaults apply (interval 5000 ms, rise/fall 3/2 when both are 0,
concurrency 100, check timeouts 5000 ms), with the fixes of decisions.md rows
12-14: only one of rise/fall set is refused here instead of when the balancer
starts, an empty http scheme means http, a DNS name is made absolute, and every
listed DNS query type is accepted.
"""

from __future__ import annotations

import re

from .._model import Protocol
from ..pb import healthchecker_pb2 as pb
from ._errors import Problems, Where
from ._types import (
    DEFAULT_CHECK_TIMEOUT_MS,
    DEFAULT_CONCURRENCY,
    DEFAULT_FALL,
    DEFAULT_INTERVAL_MS,
    DEFAULT_RISE,
    Check,
    CheckerConfig,
    DnsCheck,
    DummyCheck,
    HttpCheck,
    SyslogCheck,
    TcpCheck,
)

_PROTOCOLS = {pb.TCP: Protocol.TCP, pb.UDP: Protocol.UDP}
_CHECKS = "dummy, dns, http, syslog, tcp"
# RFC 9110 token; values must not break the request line (CR, LF, NUL).
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE_BAD = re.compile(r"[\r\n\x00]")


def convert_checker(msg: pb.UpstreamChecker, where: Where, problems: Problems, *,
                    enable_fwmarks: bool) -> CheckerConfig | None:
    """The CheckerConfig of ``msg``, or None after reporting its problems."""
    before = len(problems.errors)
    rise, fall = msg.rise_count, msg.fall_count
    if not rise and not fall:
        rise, fall = DEFAULT_RISE, DEFAULT_FALL
    elif not rise:
        problems.error(where.field("rise_count"),
                       f"must be set when fallCount is set ({fall}); set both, or neither for 3/2")
    elif not fall:
        problems.error(where.field("fall_count"),
                       f"must be set when riseCount is set ({rise}); set both, or neither for 3/2")
    check = _check(msg, where.field("checker"), problems, enable_fwmarks=enable_fwmarks)
    if check is None or len(problems.errors) > before:
        return None
    return CheckerConfig(
        check=check,
        interval_ms=msg.interval_ms or DEFAULT_INTERVAL_MS,
        rise=rise,
        fall=fall,
        concurrency=msg.concurrency_limit or DEFAULT_CONCURRENCY,
    )


def _check(msg: pb.UpstreamChecker, where: Where, problems: Problems, *,
           enable_fwmarks: bool) -> Check | None:
    if not msg.HasField("checker"):
        problems.error(where, f"is required (one of {_CHECKS})")
        return None
    kind = msg.checker.WhichOneof("attributes")
    if kind is None:
        problems.error(where, f"needs one of {_CHECKS}")
        return None
    attributes, here = getattr(msg.checker, kind), where.field(kind)
    if kind == "dummy":
        return DummyCheck()
    if kind == "tcp":
        return TcpCheck(timeout_ms=_timeout(attributes))
    if kind == "http":
        return _http(attributes, here, problems)
    if kind == "dns":
        return _dns(attributes, here, problems, enable_fwmarks=enable_fwmarks)
    return _syslog(attributes, here, problems, enable_fwmarks=enable_fwmarks)


def _timeout(attributes) -> int:
    return attributes.check_timeout_ms or DEFAULT_CHECK_TIMEOUT_MS


def _http(a: pb.HttpCheckerAttributes, where: Where, problems: Problems) -> HttpCheck | None:
    before = len(problems.errors)
    # kglb appends "://" unless it is there; Go lower-cases the scheme.
    scheme = a.scheme.removesuffix("://").lower() or "http"
    if scheme not in ("http", "https"):
        problems.error(where.field("scheme"), f"must be http or https, not {a.scheme!r}")
    raw_headers = where.field("headers").raw
    # Keep the file's order (a proto map has none).
    names = ([n for n in raw_headers if n in a.headers] if isinstance(raw_headers, dict)
             else sorted(a.headers))
    for name in names:
        here = where.field("headers").key(name)
        if not _HEADER_NAME.fullmatch(name):
            problems.error(here, "is not a valid header name")
        elif _HEADER_VALUE_BAD.search(a.headers[name]):
            problems.error(here, "header value contains CR, LF or NUL")
    if not a.codes:
        problems.warn(where.field("codes"), "is empty: every check fails (as in kglb)")
    if a.proxy_check_url and not a.proxy_check_url.lower().startswith(("http://", "https://")):
        problems.error(where.field("proxy_check_url"), "must be an http:// or https:// URL")
    if len(problems.errors) > before:
        return None
    return HttpCheck(
        scheme=scheme,
        uri=a.uri if a.uri.startswith("/") else "/" + a.uri,
        headers=tuple((name, a.headers[name]) for name in names),
        codes=tuple(a.codes),
        proxy_check_url=a.proxy_check_url,
        follow_redirects=a.follow_redirects,
        timeout_ms=_timeout(a),
    )


def _dns(a: pb.DnsCheckerAttributes, where: Where, problems: Problems, *,
         enable_fwmarks: bool) -> DnsCheck | None:
    before = len(problems.errors)
    query = a.query_string.strip()
    if not query:
        problems.error(where.field("query_string"), "is required (the name to query)")
    elif not _is_domain_name(query):
        problems.error(where.field("query_string"), f"{a.query_string!r} is not a domain name")
    if a.protocol == pb.UDP and enable_fwmarks:
        problems.error(where.field("protocol"),
                       "udp dns checker doesn't support fwmarks (enableFwmarks is true)")
    if len(problems.errors) > before:
        return None
    return DnsCheck(
        query=query if query.endswith(".") else query + ".",
        query_type=pb.DnsCheckerAttributes.DNSQueryType.Name(a.query_type),
        protocol=_PROTOCOLS[a.protocol],
        rcode=a.rcode,
        timeout_ms=_timeout(a),
    )


def _syslog(a: pb.SyslogCheckerAttributes, where: Where, problems: Problems, *,
            enable_fwmarks: bool) -> SyslogCheck | None:
    before = len(problems.errors)
    if a.port > 65535:
        problems.error(where.field("port"), f"must be at most 65535, not {a.port}")
    if a.protocol == pb.UDP and enable_fwmarks:
        # Tunnelled checks use marked TCP connections (kglb refused syslog with
        # fwmarks altogether).
        problems.error(where.field("protocol"),
                       "udp syslog checker doesn't support fwmarks (enableFwmarks is true)")
    if len(problems.errors) > before:
        return None
    return SyslogCheck(log_level=a.log_level, port=a.port, protocol=_PROTOCOLS[a.protocol],
                       timeout_ms=_timeout(a))


def _is_domain_name(name: str) -> bool:
    """Fits in a DNS query: labels of 1-63 non-space characters, at most 253 in all."""
    if name == ".":
        return True
    labels = name.removesuffix(".").split(".")
    return len(name.removesuffix(".")) <= 253 and all(
        0 < len(label) <= 63 and not any(c.isspace() for c in label) for label in labels)
