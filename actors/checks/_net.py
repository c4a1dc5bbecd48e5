"""Sockets for checks: marked and bound connects, bounded reads, errno → reason.

Every checker opens its connections here (tcp and plain http in
:func:`actors._lean_checks.open_check`, with the same options in the same
order), so a tunnelled (fwmark) check is the same code path as a direct
one: the mark and the source address are set BEFORE connect (a mark set
afterwards would leave the SYN unmarked, see libraries.md §1), and the
connection goes to the VIP of ``target.via``, where IPVS's per-real fwmark
service steers it to exactly that real.

Failures travel as exceptions inside a check and become a short countable
reason exactly once, in :func:`measured`, the boundary of every check.
"""

from __future__ import annotations

import contextvars
import errno
import ipaddress
import socket
import ssl
from collections.abc import Awaitable

import trio

from kglb import CheckResult, ProbeTarget

#: Source address of tunnelled checks per address family (AF_INET / AF_INET6).
#: Set by the Prober for its probe driver; missing or None = chosen automatically.
TUNNEL_SOURCES: contextvars.ContextVar[dict[int, str | None]] = contextvars.ContextVar(
    "kglb_tunnel_sources", default={}
)

# The encapsulation (IPIP) eats into the path MTU; kglb clamps the MSS the same way.
TUNNEL_MSS = 1400
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)

_ERRNO_REASONS = {
    errno.ECONNREFUSED: "refused",
    errno.ECONNRESET: "reset",
    errno.ECONNABORTED: "reset",
    errno.EPIPE: "reset",
    errno.ETIMEDOUT: "timeout",
    errno.ENETUNREACH: "unreachable",
    errno.EHOSTUNREACH: "unreachable",
    errno.ENETDOWN: "unreachable",
    errno.EHOSTDOWN: "unreachable",
    errno.EACCES: "denied",  # e.g. a prohibit route, or SO_MARK without CAP_NET_ADMIN
    errno.EPERM: "denied",
    errno.EADDRNOTAVAIL: "no source address",
    errno.EADDRINUSE: "address in use",
}


class CheckFailure(Exception):
    """The real answered wrongly; ``reason`` is what the check reports."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def reason_for(exc: BaseException) -> str:
    """The countable reason for an exception raised by socket, TLS or stream code."""
    if isinstance(exc, CheckFailure):
        return exc.reason
    if isinstance(exc, ssl.SSLError):  # before OSError: SSLError is one
        return "tls"
    if isinstance(exc, socket.gaierror):
        return "resolve"
    if isinstance(exc, trio.BrokenResourceError):
        cause = exc.__cause__
        return reason_for(cause) if cause is not None else "reset"
    if isinstance(exc, OSError) and exc.errno is not None:
        return errno_reason(exc.errno)
    raise exc  # anything else is our bug, not the real's


def errno_reason(code: int) -> str:
    """The countable reason for a socket errno ("refused", "reset", ..., "error EXXX")."""
    reason = _ERRNO_REASONS.get(code)
    if reason is None:
        reason = f"error {errno.errorcode.get(code, str(code))}"
    return reason


async def measured(timeout_ms: int, work: Awaitable[str]) -> CheckResult:
    """Run one check's ``work`` within its timeout and turn the outcome into data.

    ``work`` returns "ok" or a failure reason; socket, TLS and protocol errors
    become their reason; running out of time is "timeout". Only bugs escape.
    """
    start = trio.current_time()
    reason = "timeout"
    with trio.move_on_after(timeout_ms / 1000):
        try:
            reason = await work
        except (OSError, CheckFailure, trio.BrokenResourceError) as exc:
            reason = reason_for(exc)
    return CheckResult(passed=reason == "ok", reason=reason, latency=trio.current_time() - start)


def family_of(address: str) -> int:
    """AF_INET or AF_INET6 for an IP literal; ValueError for anything else."""
    # The common case first, and with no cache (a 4096-entry one was 0.4 MB at 10k
    # reals): inet_pton takes what ip_address takes for IPv4 (no leading zeros).
    try:
        socket.inet_pton(socket.AF_INET, address)
        return socket.AF_INET
    except (OSError, ValueError, TypeError):
        pass
    if ipaddress.ip_address(address).version == 6:
        return socket.AF_INET6
    raise ValueError(f"{address!r} is not an IP address")


def is_ip(host: str) -> bool:
    try:
        family_of(host)
    except ValueError:
        return False
    return True


_route_sources: dict[str, str] = {}


def _route_source(address: str) -> str | None:
    """The local address the kernel would use to reach ``address`` (no packet is sent).

    A tunnelled check must come from an address the real routes back to us:
    without a bind the kernel would pick the VIP itself (it is local), and the
    real, which holds the VIP too, would answer itself. Only answers are
    cached: a real with no route yet is asked again at its next check.
    """
    source = _route_sources.get(address)
    if source is None and is_ip(address):  # a name (embedding only): the kernel picks
        probe = socket.socket(family_of(address), socket.SOCK_DGRAM)
        try:
            probe.connect((address, 9))
            source = _route_sources[address] = probe.getsockname()[0]
        except OSError:
            pass
        finally:
            probe.close()
    return source


def tunnel_source(target: ProbeTarget) -> str | None:
    """The source address of a tunnelled check: configured per family, else automatic."""
    family = family_of(target.via.address)
    configured = TUNNEL_SOURCES.get().get(family)
    return configured if configured else _route_source(target.address)


async def connect(
    address: str,
    port: int,
    *,
    kind: int = socket.SOCK_STREAM,
    fwmark: int = 0,
    source: str | None = None,
) -> trio.socket.SocketType:
    """A connected trio socket; mark and bind happen before connect. Raises OSError.

    ``address`` is normally an IP literal; a name is resolved first.
    """
    if not is_ip(address):
        address = await resolve(address, port)
    sock = trio.socket.socket(family_of(address), kind)
    try:
        if fwmark:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, fwmark)
            if kind == socket.SOCK_STREAM:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, TUNNEL_MSS)
        if source:
            # kglb binds port 50000+mark, which lets only one check per mark run at a
            # time; an ephemeral port chosen at connect time has no such limit.
            if kind == socket.SOCK_STREAM:
                sock.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            await sock.bind((source, 0))
        await sock.connect((address, port))
    except BaseException:
        sock.close()
        raise
    return sock


async def connect_target(
    target: ProbeTarget, *, port: int = 0, kind: int = socket.SOCK_STREAM
) -> trio.socket.SocketType:
    """Connect to the real of ``target`` (``port`` overrides its port), or tunnel to it.

    With ``target.fwmark`` the socket is marked, bound to the tunnel source and
    connected to the VIP of ``target.via``.
    """
    if target.fwmark:
        if target.via is None or not target.via.address:
            raise CheckFailure("no tunnel")
        return await connect(
            target.via.address,
            target.via.port,
            kind=kind,
            fwmark=target.fwmark,
            source=tunnel_source(target),
        )
    return await connect(target.address, port or target.port, kind=kind)


async def resolve(host: str, port: int) -> str:
    """An IP address for ``host`` (returned as is when it is one). Raises gaierror."""
    if is_ip(host):
        return host
    try:
        infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except UnicodeError:  # not a valid name (an empty or 64+ character label)
        raise socket.gaierror(socket.EAI_NONAME, f"{host!r} is not a host name") from None
    return infos[0][4][0]


class SocketConn:
    """A connected socket with the two stream methods the protocol code uses.

    Cheaper than trio.SocketStream on the hot path (no per-call conflict
    detection, no extra setsockopt), which matters at thousands of checks/s.
    """

    __slots__ = ("sock",)

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self.sock = sock

    async def send_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            sent = await self.sock.send(view)
            view = view[sent:]

    async def receive_some(self, max_bytes: int) -> bytes:
        return await self.sock.recv(max_bytes)


async def read_exactly(conn, size: int) -> bytes:
    """Exactly ``size`` bytes from ``conn``; EOF before is ``CheckFailure("short read")``."""
    data = b""
    while len(data) < size:
        chunk = await conn.receive_some(size - len(data))
        if not chunk:
            raise CheckFailure("short read")
        data += chunk
    return data
