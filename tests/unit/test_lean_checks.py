"""The lean engine's tcp and http checks against real loopback servers, hostile ones too.

Every case runs ``run_check`` on the same server as well: it drives the same
state machine with trio (issue 15: one implementation), and must report the
same reason as the engine.
"""

from __future__ import annotations

import errno
import select
import socket
import struct

import pytest
import trio

from actors import _lean_checks
from actors._lean_engine import Entry, LeanEngine
from actors.checks import CHECKERS, TUNNEL_SOURCES, run_check
from actors.checks._net import reason_for
from kglb import ProbeTarget, ServiceKey
from kglb.config import DnsCheck, HttpCheck, TcpCheck

from test_checks_http import ok, read_request, responder
from test_checks_tcp import closed_port, needs_mark, unanswered_port


class Probe(Entry):
    """What the engine needs of a Prober's probe."""

    def __init__(self, target: ProbeTarget, interval: float = 60.0, tokens: int = 10) -> None:
        super().__init__()
        self.target = target
        self.interval = interval
        self.limiter = trio.CapacityLimiter(tokens)


async def lean_check(nursery, target: ProbeTarget):
    """The first result of ``target`` on a LeanEngine driven by trio."""
    send, receive = trio.open_memory_channel(10)
    engine = LeanEngine(lambda probe, result, now: send.send_nowait(result) or True)
    await nursery.start(engine.run)
    engine.add(Probe(target))
    with trio.fail_after(5):
        return await receive.receive()


async def both(nursery, target: ProbeTarget):
    """(lean result, trio checker result) for ``target``; their reasons must agree."""
    lean = await lean_check(nursery, target)
    reference = await run_check(target)
    assert lean.reason == reference.reason
    return lean


def http(port: int, host: str = "127.0.0.1", fwmark: int = 0, via=None, **settings):
    settings.setdefault("codes", (200,))
    settings.setdefault("timeout_ms", 2000)
    return ProbeTarget(address=host, port=port, check=HttpCheck(**settings), fwmark=fwmark,
                       via=via)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
async def test_tcp_ok_and_refused(nursery, check_serve, host):
    port = await check_serve(lambda stream: stream.aclose(), host)
    result = await both(nursery, ProbeTarget(address=host, port=port, check=TcpCheck()))
    assert (result.passed, result.reason) == (True, "ok")
    refused = ProbeTarget(address=host, port=closed_port(host), check=TcpCheck())
    assert (await both(nursery, refused)).reason == "refused"


async def test_tcp_no_answer_is_a_timeout(nursery):
    with unanswered_port() as port:
        target = ProbeTarget(address="127.0.0.1", port=port, check=TcpCheck(timeout_ms=200))
        result = await both(nursery, target)
    assert result.reason == "timeout" and 0.19 <= result.latency < 0.5


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
async def test_http_status_in_codes_and_the_request_is_the_checkers(nursery, check_serve, host):
    seen: list[bytes] = []
    port = await check_serve(responder(ok(200), seen=seen), host)
    target = http(port, host, headers=(("X-A", "1"),))
    assert (await both(nursery, target)).passed
    assert seen[0] == seen[1]  # lean and trio send byte-identical requests


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (ok(503), "status 503"),
        (b"\x16\x03\x01garbage\r\n", "bad response"),
        (b"", "short read"),
        (b"HTTP/1.1 200 " + b"x" * 1_000_000, "header too large"),  # endless status line
        (b"HTTP/1.1 200 X\r\nX-Long: " + b"x" * 1_000_000, "header too large"),
        (b"HTTP/1.1 200 X\r\nContent-Length: 10485760\r\n\r\n" + b"x" * 10_485_760, "ok"),
    ],
    ids=["status", "garbage", "close", "endless-status", "endless-header", "10MB-body"],
)
async def test_http_reasons(nursery, check_serve, answer, reason):
    port = await check_serve(responder(answer))
    assert (await both(nursery, http(port))).reason == reason


async def test_http_rst_is_a_reset(nursery, check_serve):
    async def rst(stream):
        await read_request(stream)
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        stream.socket.close()

    port = await check_serve(rst)
    assert (await both(nursery, http(port))).reason == "reset"


async def test_http_slow_loris_costs_one_timeout(nursery, check_serve):
    async def slow(stream):
        await read_request(stream)
        try:
            for byte in b"HTTP/1.1 200 OK\r\n":
                await stream.send_all(bytes([byte]))
                await trio.sleep(0.1)
        except trio.BrokenResourceError:
            pass  # the check gave up: that is the point

    port = await check_serve(slow)
    result = await both(nursery, http(port, timeout_ms=300))
    assert result.reason == "timeout" and result.latency < 0.5


def test_reads_are_bounded():
    """However much a real sends, one check reads at most the head's bound."""
    server, client = socket.socketpair()
    plan = _lean_checks.plan(http(1))
    conn = _lean_checks.Conn(client, plan)
    conn.connected, conn.pending = True, b""  # connected, the request sent
    server.sendall(b"HTTP/1.1 200 " + b"x" * 100_000)
    assert conn.advance(_lean_checks.HTTP_EVENTS) == "header too large"
    assert conn.reader.room == 0
    server.close()
    client.close()


def test_plan_covers_only_the_common_checks():
    assert _lean_checks.plan(ProbeTarget(address="127.0.0.1", port=1, check=TcpCheck()))
    assert _lean_checks.plan(http(1)).request.startswith(b"GET / HTTP/1.1\r\n")
    for check in (HttpCheck(scheme="https"), HttpCheck(follow_redirects=True),
                  HttpCheck(proxy_check_url="http://a/"), DnsCheck(query="a.")):
        assert _lean_checks.plan(ProbeTarget(address="127.0.0.1", port=1, check=check)) is None


async def test_tcp_targets_share_one_plan_and_each_connects_to_its_own_address(nursery):
    """A Plan per tcp target was ~100 bytes; one per family and timeout is shared."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(10)
        up = ProbeTarget(address="127.0.0.1", port=listener.getsockname()[1], check=TcpCheck())
        down = ProbeTarget(address="127.0.0.1", port=closed_port("127.0.0.1"), check=TcpCheck())
        assert _lean_checks.plan(up) is _lean_checks.plan(down)
        assert (await both(nursery, up)).reason == "ok"
        assert (await both(nursery, down)).reason == "refused"
    v6 = ProbeTarget(address="::1", port=1, check=TcpCheck())
    assert _lean_checks.plan(v6).family == socket.AF_INET6



async def test_http_targets_share_one_plan_and_each_sends_its_own_host(nursery, check_serve):
    seen = []
    ports = [await check_serve(responder(ok(), seen=seen)) for _ in range(2)]
    targets = [http(port) for port in ports]
    assert _lean_checks.plan(targets[0]) is _lean_checks.plan(targets[1])
    for target in targets:
        assert (await both(nursery, target)).reason == "ok"  # the engine, then run_check
    assert [request.split(b"\r\n")[1] for request in seen] == [
        f"Host: 127.0.0.1:{port}".encode() for port in ports for _ in range(2)]
    # A configured Host is the same for every target: the whole request is shared.
    fixed = _lean_checks.plan(http(1, headers=(("Host", "example.test"),)))
    assert fixed.host_at == 0 and b"\r\nHost: example.test\r\n" in fixed.request


def test_plan_covers_host_names_and_a_missing_tunnel():
    """Issue 15: no tcp or plain http target is left to a second implementation."""
    for check in (TcpCheck(), HttpCheck(codes=(200,))):
        named = _lean_checks.plan(ProbeTarget(address="localhost", port=1, check=check))
        assert (named.family, named.address) == (0, "localhost")
        assert _lean_checks.needs_resolving(named)
        no_vip = ProbeTarget(address="127.0.0.1", port=1, check=check, fwmark=7,
                             via=ServiceKey.for_fwmark(7))
        assert _lean_checks.plan(no_vip) is _lean_checks.NO_TUNNEL
        assert _lean_checks.open_check(no_vip, _lean_checks.NO_TUNNEL) == "no tunnel"
    assert not _lean_checks.needs_resolving(_lean_checks.plan(http(1)))
    # The Host header names the host as configured, not the address it resolves to.
    named = _lean_checks.plan(http(8080, host="localhost"))
    assert named.request.startswith(b"GET / HTTP/1.1\r\nHost: localhost:8080\r\n")


@needs_mark
async def test_tunnelled_check_is_marked_bound_and_goes_to_the_vip(nursery, check_serve):
    send, peers = trio.open_memory_channel(10)

    async def record(stream):
        await send.send(stream.socket.getpeername()[0])
        await stream.aclose()

    vip_port = await check_serve(record)
    target = ProbeTarget(address="127.0.0.9", port=closed_port("127.0.0.1"), check=TcpCheck(),
                         fwmark=10001, via=ServiceKey.tcp("127.0.0.1", vip_port))
    TUNNEL_SOURCES.set({socket.AF_INET: "127.0.0.3"})
    assert (await lean_check(nursery, target)).passed
    with trio.fail_after(2):
        assert await peers.receive() == "127.0.0.3"


@needs_mark
async def test_a_tunnelled_real_named_by_a_host_name_is_checked(nursery):
    """Its tunnel source cannot be routed to a name: the kernel picks one, and the
    check reports what the VIP says (it raised ValueError out of both paths before)."""
    target = ProbeTarget(address="localhost", port=1, check=TcpCheck(), fwmark=7,
                         via=ServiceKey.tcp("127.0.0.1", closed_port("127.0.0.1")))
    TUNNEL_SOURCES.set({})
    assert (await both(nursery, target)).reason == "refused"


class _FailedConnect:
    """A socket whose connect failed with ``code`` (as SO_ERROR reports it)."""

    def __init__(self, code: int) -> None:
        self.code = code

    def fileno(self) -> int:
        return -1

    def getsockopt(self, level: int, option: int) -> int:
        return self.code


@pytest.mark.parametrize(
    ("code", "reason"),
    [(errno.EHOSTUNREACH, "unreachable"), (errno.ENETUNREACH, "unreachable"),
     (errno.ETIMEDOUT, "timeout"), (errno.ECONNRESET, "reset"), (errno.EACCES, "denied"),
     (errno.EPROTO, "error EPROTO")],
)
def test_a_failed_connect_has_the_trio_checkers_reason(code, reason):
    conn = _lean_checks.Conn(_FailedConnect(code), _lean_checks.plan(http(1)))
    assert conn.advance(select.EPOLLERR | select.EPOLLOUT) == reason
    assert reason_for(OSError(code, "x")) == reason


def localhost() -> str:
    """The address "localhost" resolves to first here (what every checker connects to)."""
    return socket.getaddrinfo("localhost", None, type=socket.SOCK_STREAM)[0][4][0]


async def test_host_names_and_a_missing_tunnel_run_on_the_engine(nursery, check_serve,
                                                                   monkeypatch):
    """Issue 15: a host-name tcp or http target and a tunnel-less fwmark target are the
    engine's own checks (on its epoll), not tasks calling the trio checkers."""
    called = []  # the targets that went through run_check's table (a task check)
    for kind in (TcpCheck, HttpCheck):
        def spy(target, settings, checker=CHECKERS[kind]):
            called.append(target)
            return checker(target, settings)

        monkeypatch.setitem(CHECKERS, kind, spy)
    seen: list[bytes] = []
    address = localhost()
    tcp_port = await check_serve(lambda stream: stream.aclose(), address)
    http_port = await check_serve(responder(ok(200), seen=seen), address)
    targets = {
        "tcp localhost": ProbeTarget(address="localhost", port=tcp_port, check=TcpCheck()),
        "http localhost": http(http_port, "localhost"),
        "a name that does not resolve": ProbeTarget(address="kglb-test.invalid", port=1,
                                                    check=TcpCheck()),
        "no tunnel": http(1, fwmark=7, via=ServiceKey.for_fwmark(7)),
        # The control: https is a task check, so the count below can tell.
        "https": http(closed_port("127.0.0.1"), scheme="https"),
    }
    send, receive = trio.open_memory_channel(len(targets))
    engine = LeanEngine(lambda probe, result, now: send.send_nowait((probe, result)) or True)
    await nursery.start(engine.run)
    probes = {Probe(target): name for name, target in targets.items()}
    for probe in probes:
        engine.add(probe)
    results = {}
    with trio.fail_after(10):
        while len(results) < len(targets):
            probe, result = await receive.receive()
            results[probes[probe]] = result.reason
    assert results == {"tcp localhost": "ok", "http localhost": "ok",
                       "a name that does not resolve": "resolve", "no tunnel": "no tunnel",
                       "https": "refused"}
    assert called == [targets["https"]] and engine.task_checks == 1
    assert seen[0].startswith(f"GET / HTTP/1.1\r\nHost: localhost:{http_port}\r\n".encode())


async def test_resolving_is_bounded_by_the_timeout_and_ends_on_remove(nursery, autojump_clock,
                                                                      monkeypatch):
    async def never(host, port):
        await trio.sleep_forever()

    monkeypatch.setattr(_lean_checks, "resolve", never)
    results = []
    engine = LeanEngine(lambda probe, result, now: results.append(result) or True)
    await nursery.start(engine.run)
    slow = Probe(ProbeTarget(address="slow.test", port=1, check=TcpCheck(timeout_ms=1500)))
    engine.add(slow)
    await trio.sleep(1.0)
    assert engine.in_flight == 1 and results == []
    await trio.sleep(0.6)
    assert [(r.reason, round(r.latency, 1)) for r in results] == [("timeout", 1.5)]
    engine.remove(slow)
    removed = Probe(ProbeTarget(address="slow.test", port=2, check=TcpCheck()))
    engine.add(removed)
    await trio.sleep(0.5)
    assert engine.in_flight == 1 and removed.limiter.borrowed_tokens == 1
    engine.remove(removed)
    await trio.sleep(10)
    assert engine.in_flight == 0 and removed.limiter.borrowed_tokens == 0
    assert len(results) == 1  # nothing from the removed probe
