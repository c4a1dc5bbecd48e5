"""The dummy and tcp checks, and the connect layer (_net): real sockets on loopback."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import pytest
import trio

from actors.checks import TUNNEL_SOURCES, run_check
from actors.checks._net import reason_for, tunnel_source
from kglb import ProbeTarget, ServiceKey
from kglb.config import DummyCheck, TcpCheck

HOSTS = ["127.0.0.1", "::1"]


def _can_mark() -> bool:
    with socket.socket() as s:
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, 1)
        except PermissionError:
            return False
    return True


needs_mark = pytest.mark.skipif(not _can_mark(), reason="SO_MARK needs CAP_NET_ADMIN (run as root)")


@contextlib.contextmanager
def unanswered_port() -> Iterator[int]:
    """A loopback port whose accept queue is full: the kernel drops further SYNs,
    so a connect to it hangs until the check's timeout."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        try:
            for _ in range(4):
                filler = socket.socket()
                fillers.append(filler)
                filler.setblocking(False)
                filler.connect_ex(("127.0.0.1", port))
            yield port
        finally:
            for filler in fillers:
                filler.close()


def closed_port(host: str) -> int:
    """A port nobody listens on (bound, then closed)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


async def test_dummy_passes_without_io():
    result = await run_check(ProbeTarget(address="192.0.2.1", port=1, check=DummyCheck()))
    assert result.passed and result.reason == "ok"


@pytest.mark.parametrize("host", HOSTS)
async def test_tcp_connect_passes(check_serve, host):
    port = await check_serve(lambda stream: stream.aclose(), host)
    result = await run_check(ProbeTarget(address=host, port=port, check=TcpCheck(timeout_ms=2000)))
    assert (result.passed, result.reason) == (True, "ok")
    assert 0 <= result.latency < 2


@pytest.mark.parametrize("host", HOSTS)
async def test_tcp_refused(host):
    target = ProbeTarget(address=host, port=closed_port(host), check=TcpCheck(timeout_ms=2000))
    result = await run_check(target)
    assert (result.passed, result.reason) == (False, "refused")


async def test_tcp_no_answer_is_a_timeout():
    with unanswered_port() as port:
        target = ProbeTarget(address="127.0.0.1", port=port, check=TcpCheck(timeout_ms=200))
        result = await run_check(target)
    assert (result.passed, result.reason) == (False, "timeout")
    assert 0.19 <= result.latency < 1


async def test_a_name_is_resolved(check_serve):
    port = await check_serve(lambda stream: stream.aclose())
    result = await run_check(ProbeTarget(address="localhost", port=port, check=TcpCheck()))
    assert result.passed


@needs_mark
@pytest.mark.parametrize("vip, source", [("127.0.0.1", "127.0.0.3"), ("::1", "::1")])
async def test_tunnelled_check_is_marked_bound_and_goes_to_the_vip(check_serve, vip, source):
    """With an fwmark the check connects to via's VIP:port from the tunnel source."""
    send, peers = trio.open_memory_channel(10)

    async def record(stream):
        await send.send(stream.socket.getpeername()[0])
        await stream.aclose()

    vip_port = await check_serve(record, vip)
    real = "127.0.0.9" if vip == "127.0.0.1" else "::1"
    target = ProbeTarget(
        address=real, port=closed_port(vip), check=TcpCheck(timeout_ms=2000),
        fwmark=10001, via=ServiceKey.tcp(vip, vip_port),
    )
    TUNNEL_SOURCES.set({socket.AF_INET: "127.0.0.3", socket.AF_INET6: "::1"})
    result = await run_check(target)
    assert (result.passed, result.reason) == (True, "ok")
    with trio.fail_after(2):
        assert await peers.receive() == source


@needs_mark
async def test_tunnelled_check_source_is_automatic(check_serve):
    send, peers = trio.open_memory_channel(10)

    async def record(stream):
        await send.send(stream.socket.getpeername()[0])
        await stream.aclose()

    vip_port = await check_serve(record, "127.0.0.1")
    target = ProbeTarget(address="127.0.0.5", port=1, check=TcpCheck(timeout_ms=2000),
                         fwmark=7, via=ServiceKey.tcp("127.0.0.1", vip_port))
    # The source the kernel uses to reach the real (on lo: lo's primary address).
    assert tunnel_source(target) == "127.0.0.1"
    result = await run_check(target)
    assert result.passed
    with trio.fail_after(2):
        assert await peers.receive() == "127.0.0.1"


async def test_tunnelled_check_without_vip_address_fails():
    target = ProbeTarget(address="127.0.0.1", port=1, check=TcpCheck(), fwmark=7,
                         via=ServiceKey.for_fwmark(7))
    assert (await run_check(target)).reason == "no tunnel"


@pytest.mark.parametrize(
    "exc, reason",
    [
        (ConnectionRefusedError(111, "x"), "refused"),
        (ConnectionResetError(104, "x"), "reset"),
        (OSError(113, "x"), "unreachable"),
        (OSError(101, "x"), "unreachable"),
        (PermissionError(13, "x"), "denied"),
        (OSError(22, "x"), "error EINVAL"),
        (socket.gaierror(-2, "x"), "resolve"),
    ],
)
def test_errno_reasons(exc, reason):
    assert reason_for(exc) == reason


def test_broken_stream_maps_its_cause():
    try:
        try:
            raise ConnectionResetError(104, "x")
        except OSError as exc:
            raise trio.BrokenResourceError from exc
    except trio.BrokenResourceError as exc:
        assert reason_for(exc) == "reset"


def test_a_bug_is_not_a_reason():
    with pytest.raises(KeyError):
        reason_for(KeyError("x"))
