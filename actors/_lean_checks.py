"""The tcp and plain http checks, and the dummy check: the one implementation of each.

Contract. :func:`plan` says how a target is checked here, or None when it
needs the other checkers of :mod:`actors.checks` (https, proxies, redirects,
dns, syslog). A plan covers the tcp check, the plain http GET judged on its
response head, and the dummy check (which passes at once); a target named by
a host name is resolved at each check (``Plan.family`` 0: see
:func:`resolved`), and a tunnelled target without a VIP address fails at once
with "no tunnel" (:data:`NO_TUNNEL`), as every other checker does.

:func:`open_check` opens the socket non-blocking, sets SO_MARK, the tunnel MSS
and the source bind BEFORE connect (the same order and options as
``actors.checks._net.connect``) and issues the connect; it returns a
:class:`Conn` to register for ``EVENTS`` (edge-triggered), or a final reason
when the connect failed at once. ``Conn.advance(mask)`` moves the check on
when its fd is ready and returns its final reason, or None while it runs.
The caller closes the socket (``Conn.close()``) and owns the timeout.

Two drivers run a Conn: the lean engine (:mod:`actors._lean_engine`, many
Conns on one epoll, no task per check) and :func:`check`, the
``check(target) -> CheckResult`` entry point of ``run_check``, which waits on
one Conn's fd with trio. So connect, send, read and verdict exist once.

Reasons are the other checkers' for the same events: "ok", "status N",
"refused", "reset", "unreachable", "denied", "short read", "bad response",
"header too large", "resolve", "no tunnel", "error EXXX": the response head
is judged by the same :class:`actors.checks._http_head.HeadReader` as the
https checker's. Reads are
bounded (``_http_head.MAX_HEAD``), so a 10 MB body costs one bounded read
and a slow-loris real only its own timeout.
"""

from __future__ import annotations

import _socket
import errno
import functools
import select
import socket
from typing import NamedTuple

import trio

from kglb import CheckResult, ProbeTarget
from kglb.config import DummyCheck, HttpCheck, TcpCheck

from .checks import _http_wire as wire
from .checks._http_head import HeadReader
from .checks._net import (
    IP_BIND_ADDRESS_NO_PORT,
    TUNNEL_MSS,
    CheckFailure,
    errno_reason,
    family_of,
    is_ip,
    measured,
    reason_for,
    resolve,
    tunnel_source,
)

# Edge-triggered: one event when the connect completes (OUT, or ERR/HUP), one per
# arrival of data (IN), so a check costs one epoll_ctl and no re-arming.
_ET = select.EPOLLET | select.EPOLLERR | select.EPOLLHUP
TCP_EVENTS = select.EPOLLOUT | _ET
HTTP_EVENTS = select.EPOLLOUT | select.EPOLLIN | select.EPOLLRDHUP | _ET
_READABLE = select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR
_FAILED = select.EPOLLERR | select.EPOLLHUP
_NONBLOCK_STREAM = socket.SOCK_STREAM | socket.SOCK_NONBLOCK


class Plan(NamedTuple):
    """How one target is checked: where to connect, what to send, what passes."""

    family: int
    address: str  # the real, or the VIP of a tunnelled check
    port: int  # 0: connect to the target's own address and port (see _own_address)
    fwmark: int
    request: bytes | None  # None: the tcp check (connect only)
    codes: frozenset[int]
    timeout: float  # seconds
    host_at: int = 0  # > 0: the target's host:port goes into ``request`` here (see _own_http)


@functools.lru_cache(maxsize=256)
def _codes(codes: tuple[int, ...]) -> frozenset[int]:
    # One set for all the targets of a check: a frozenset is ~200 bytes.
    return frozenset(codes)


@functools.lru_cache(maxsize=256)
def _seconds(milliseconds: int) -> float:
    return milliseconds / 1000  # one float for all the targets of a timeout (24 bytes each)


#: The dummy check's plan: it passes at once, with no socket (as actors.checks.dummy).
DUMMY = Plan(0, "", 0, 0, None, frozenset(), 0.0)
#: The plan of a tunnelled target whose VIP has no address: it fails at once,
#: with no socket, as every checker's ``connect_target`` (told apart by identity).
NO_TUNNEL = Plan(0, "", 0, 0, None, frozenset(), 0.0)


def plan(target: ProbeTarget) -> Plan | None:
    """The plan of ``target``'s check, or None: another checker of actors.checks runs it."""
    check = target.check
    kind = type(check)
    if kind is DummyCheck:
        return DUMMY
    if kind is TcpCheck:
        request, codes = None, DUMMY.codes  # one empty set for all (~200 bytes each)
    elif (kind is HttpCheck and check.scheme == "http" and not check.proxy_check_url
          and not check.follow_redirects):
        if not target.fwmark and is_ip(target.address):
            return _own_http(family_of(target.address), check)
        url = wire.direct_url("http", target.address, target.port, check.uri)
        host = wire.configured_header(check.headers, "host") or url.authority
        request, codes = wire.request(url.path, host, check.headers), _codes(check.codes)
    else:
        return None
    if target.fwmark:
        if target.via is None or not target.via.address:
            return NO_TUNNEL
        address, port = target.via.address, target.via.port
    else:
        address, port = target.address, target.port
    # Family 0: a host name, resolved at each check (a name's address may change).
    family = family_of(address) if is_ip(address) else 0
    if request is None and family and not target.fwmark:
        return _own_address(family, _seconds(check.timeout_ms))
    return Plan(family, address, port, target.fwmark, request, codes, _seconds(check.timeout_ms))


@functools.lru_cache(maxsize=64)
def _own_address(family: int, timeout: float) -> Plan:
    # The tcp check of an IP literal: one Plan for all those targets (~100 bytes each).
    return Plan(family, "", 0, 0, None, DUMMY.codes, timeout)


@functools.lru_cache(maxsize=256)
def _own_http(family: int, check: HttpCheck) -> Plan:
    # The http check of an IP literal: one Plan for all those targets (a Plan and its
    # request were ~240 bytes a target); each request gets its Host at the connect.
    host = wire.configured_header(check.headers, "host")
    request = wire.request(check.uri, host or "", check.headers)
    host_at = 0 if host else request.index(b"\r\nHost: ") + len(b"\r\nHost: ")
    return Plan(family, "", 0, 0, request, _codes(check.codes), _seconds(check.timeout_ms),
                host_at)


def needs_resolving(plan: Plan) -> bool:
    """True when ``plan`` names its real by a host name: :func:`resolved` comes first."""
    return not plan.family and bool(plan.address)


async def resolved(plan: Plan) -> Plan:
    """``plan`` to the first address of its host name (the checkers' getaddrinfo).

    Raises gaierror (reason "resolve"), as every checker's connect does.
    """
    address = await resolve(plan.address, plan.port)
    return plan._replace(family=family_of(address), address=address)


class Conn:
    """One check in flight: its socket and where it is (connecting, sending, reading)."""

    __slots__ = ("connected", "fd", "pending", "plan", "reader", "sock", "started")

    def __init__(self, sock: _socket.socket, plan: Plan, request: bytes | None = None) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.plan = plan
        self.connected = False
        # Bytes still to send (None: tcp, or all sent): the plan's, or ``request``.
        self.pending = request or plan.request
        self.reader = HeadReader() if plan.request is not None else None
        self.started = 0.0  # when the check started (its driver's clock), for the latency

    @property
    def events(self) -> int:
        return TCP_EVENTS if self.plan.request is None else HTTP_EVENTS

    def close(self) -> None:
        self.sock.close()  # closing the fd also drops it from the epoll set

    def advance(self, mask: int) -> str | None:
        """React to readiness ``mask``; the final reason, or None while the check runs."""
        if not self.connected:
            # A clean OUT edge is a completed connect: no SO_ERROR read (a syscall
            # per check); a failed one comes with ERR or HUP.
            if mask & _FAILED:
                code = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code:
                    return errno_reason(code)
            if not mask & select.EPOLLOUT:
                return None  # spurious: the connect is still in progress
            self.connected = True
            if self.plan.request is None:
                return "ok"
        if self.pending:
            reason = self._send()
            if reason is not None or self.pending:
                return reason
        if mask & _READABLE:
            return self._receive()
        return None

    def _send(self) -> str | None:
        try:
            sent = self.sock.send(self.pending)
        except BlockingIOError:
            return None  # the next OUT edge comes when there is room
        except OSError as exc:
            return reason_for(exc)
        self.pending = self.pending[sent:]
        return None

    def _receive(self) -> str | None:
        # Edge-triggered: read until the socket is drained or the head is judged. A
        # FIN that came with the last bytes raises no edge of its own, so EOF must
        # be seen here (else a closed connection would wait out its timeout).
        reader = self.reader
        while True:
            try:
                chunk = self.sock.recv(reader.room)
            except BlockingIOError:
                return None
            except OSError as exc:
                return reason_for(exc)
            try:
                head = reader.feed(chunk) if chunk else reader.eof()
            except CheckFailure as exc:
                return exc.reason
            if head is not None:
                return "ok" if head.status in self.plan.codes else f"status {head.status}"


def open_check(target: ProbeTarget, plan: Plan) -> Conn | str:
    """Start ``plan``'s connect: a Conn to wait on, or the final reason of a failure at once."""
    if plan is DUMMY:
        return "ok"
    if plan is NO_TUNNEL:
        return "no tunnel"
    try:
        # The C socket type: the Python wrapper's __init__ and close() are ~1 µs per
        # check here, and nothing here needs what they add (makefile, dup, repr).
        sock = _socket.socket(plan.family, _NONBLOCK_STREAM)
    except OSError as exc:
        return reason_for(exc)
    try:
        if plan.fwmark:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, plan.fwmark)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, TUNNEL_MSS)
            source = tunnel_source(target)
            if source:
                # An ephemeral port chosen at connect time, as actors.checks._net.
                sock.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                sock.bind((source, 0))
        code = sock.connect_ex((plan.address, plan.port) if plan.port
                               else (target.address, target.port))
    except OSError as exc:
        sock.close()
        return reason_for(exc)
    if code not in (0, errno.EINPROGRESS):
        sock.close()
        return errno_reason(code)
    if plan.host_at:
        at, host = plan.host_at, wire.host_port(target.address, target.port)
        return Conn(sock, plan, b"".join((plan.request[:at], host.encode("latin-1"),
                                          plan.request[at:])))
    return Conn(sock, plan)


async def check(target: ProbeTarget, plan: Plan) -> CheckResult:
    """Run ``plan`` (of ``target``) as one trio check: ``run_check``'s tcp and plain http.

    The same :class:`Conn` as the lean engine, one fd awaited with trio instead
    of many on an epoll; the timeout and the latency are :func:`measured`'s.
    """
    return await measured(target.check.timeout_ms, _drive(target, plan))


async def _drive(target: ProbeTarget, plan: Plan) -> str:
    if needs_resolving(plan):
        plan = await resolved(plan)
    conn = open_check(target, plan)
    if isinstance(conn, str):
        return conn
    try:
        while True:
            # Level-triggered here: wait for what the Conn needs next (the connect
            # and the request: writable; the response: readable) and say so.
            if conn.connected and not conn.pending:
                await trio.lowlevel.wait_readable(conn.sock)
                mask = select.EPOLLIN
            else:
                await trio.lowlevel.wait_writable(conn.sock)
                # Writable, but trio does not say whether with an error: a connect
                # is then judged on SO_ERROR (the engine's epoll reports ERR).
                mask = select.EPOLLOUT if conn.connected else select.EPOLLOUT | select.EPOLLERR
            reason = conn.advance(mask)
            if reason is not None:
                return reason
    finally:
        conn.close()
