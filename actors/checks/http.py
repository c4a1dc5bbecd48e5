"""The http and https checks (libraries.md §1: raw sockets ~90 µs/check, httpx ~550).

A plain http check (no TLS, proxy or redirects) is :mod:`actors._lean_checks`'
state machine, the lean engine's own, driven by trio: one implementation of
it. The rest run here on raw trio sockets.

One GET per check with ``Connection: close``; healthy iff the status code is
in ``codes`` (empty: never healthy, as kglb). The response head is read
and judged by :mod:`actors.checks._http_head`, the same verdict as the plain
check's; the body is never read, so a 10 MB body costs one bounded read and
an endless header "header too large". https uses one shared SSLContext that verifies
nothing (a health check tests the real, not the PKI) and sends SNI only when
the Host header names a host.

Proxy mode (``proxy_check_url``): the real is the proxy. An https target is
reached through ``CONNECT`` and TLS inside the tunnel; an http target with an
absolute-form GET. ``scheme`` "https" means TLS to the proxy itself.

Redirects (``follow_redirects``): up to 10, any host, as Go's client. Every
hop of a tunnelled or proxied check goes through the same real (kglb's
fwmark dialer does the same); other hops connect to the Location's host.
"""

from __future__ import annotations

import ssl
from functools import lru_cache

import trio

from kglb import CheckResult, ProbeTarget
from kglb.config import HttpCheck

from .. import _lean_checks  # the module: it imports this package too
from . import _http_wire as wire
from ._http_head import Head, HeadReader
from ._net import CheckFailure, SocketConn, connect, connect_target, measured, resolve

MAX_REDIRECTS = 10


async def check_http(target: ProbeTarget, settings: HttpCheck) -> CheckResult:
    """GET the configured URL of the real (or through it, as a proxy) and judge the status."""
    plain = _lean_checks.plan(target)
    if plain is not None:
        return await _lean_checks.check(target, plain)
    return await measured(settings.timeout_ms, _check(target, settings))


@lru_cache(maxsize=1)
def tls_context() -> ssl.SSLContext:
    """The one client context of every https check (creating one costs ~20 ms)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def _check(target: ProbeTarget, settings: HttpCheck) -> str:
    if settings.proxy_check_url:
        url = wire.parse_url(settings.proxy_check_url)
    else:
        url = wire.direct_url(settings.scheme, target.address, target.port, settings.uri)
    host = wire.configured_header(settings.headers, "host") or url.authority
    for hop in range(MAX_REDIRECTS + 1):
        status, location = await _fetch(target, settings, url, host, first=hop == 0)
        if location is None or status not in wire.REDIRECTS:
            return "ok" if status in settings.codes else f"status {status}"
        url = wire.redirect_url(url, location)
        host = url.authority  # as Go: a configured Host does not follow a redirect
    return "too many redirects"


async def _fetch(
    target: ProbeTarget, settings: HttpCheck, url: wire.Url, host: str, *, first: bool
) -> tuple[int, str | None]:
    """One request; returns the status and, when redirects are followed, the Location."""
    proxied = bool(settings.proxy_check_url)
    if first or proxied or target.fwmark:
        sock = await connect_target(target)
    else:
        sock = await connect(await resolve(url.host, url.port), url.port)
    with sock:
        if url.scheme == "https" or (proxied and settings.scheme == "https"):
            conn = trio.SocketStream(sock)
        else:
            conn = SocketConn(sock)
        if proxied and settings.scheme == "https":
            conn = await _tls(conn, None)  # the proxy's name is the real's IP: no SNI
        if proxied and url.scheme == "http":
            request = wire.request(str(url), host, settings.headers)
        else:
            if proxied:
                await _open_tunnel(conn, wire.host_port(url.host, url.port))
            if url.scheme == "https":
                conn = await _tls(conn, wire.sni_for(host))
            request = wire.request(url.path, host, settings.headers)
        await conn.send_all(request)
        head = await read_head(conn)
        return head.status, head.location if settings.follow_redirects else None


async def read_head(conn) -> Head:
    """The response head from ``conn``, judged by :class:`HeadReader` (as the lean engine)."""
    reader = HeadReader()
    while True:
        chunk = await conn.receive_some(reader.room)
        head = reader.feed(chunk) if chunk else reader.eof()
        if head is not None:
            return head


async def _tls(stream: trio.abc.Stream, server_name: str | None) -> trio.SSLStream:
    tls = trio.SSLStream(stream, tls_context(), server_hostname=server_name)
    await tls.do_handshake()
    return tls


async def _open_tunnel(conn, authority: str) -> None:
    await conn.send_all(wire.connect_request(authority))
    status = (await read_head(conn)).status
    if not 200 <= status < 300:
        raise CheckFailure(f"proxy status {status}")
