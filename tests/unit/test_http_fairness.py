"""Issue 13, problems 1 and 2: no client can raise out of the status server or
take /healthz away from a well-behaved client."""

from __future__ import annotations

import errno
import socket
import struct

import trio

from _ops_fakes import snapshot
from actors.http import run_http_server

HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


class Handle:
    def statistics(self):
        return snapshot()


async def start(nursery, **kw) -> int:
    _, port = await nursery.start(
        lambda task_status: run_http_server("127.0.0.1:0", Handle(), **kw,
                                            task_status=task_status))
    return port


async def healthz(port: int) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(HEALTHZ)
        out = b""
        while chunk := await stream.receive_some(65536):
            out += chunk
    return out


def reset_on_close(stream: trio.SocketStream) -> None:
    """SO_LINGER(1, 0): close() sends a RST instead of a FIN."""
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


async def test_reset_connection_past_the_limit_does_not_stop_the_server(nursery):
    """Problem 1: 64 idle connections, then one more closed with a reset."""
    port = await start(nursery, max_connections=4)
    idle = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(4)]
    for _ in range(5):
        extra = await trio.open_tcp_stream("127.0.0.1", port)
        reset_on_close(extra)
        await extra.aclose()
    await trio.sleep(0.2)  # let the server try to answer the reset ones
    for stream in idle:
        await stream.aclose()
    await trio.sleep(0.05)
    assert (await healthz(port)).startswith(b"HTTP/1.1 200 ")


class _Broken(trio.abc.HalfCloseableStream):
    """A client stream whose every operation fails as a reset or unconnected socket would."""

    def __init__(self, error: BaseException, *, on_eof: BaseException | None = None) -> None:
        self.error, self.on_eof = error, on_eof
        self.closed = False

    async def send_all(self, data) -> None:
        raise self.error

    async def wait_send_all_might_not_block(self) -> None:
        raise self.error

    async def send_eof(self) -> None:
        raise self.on_eof or self.error

    async def receive_some(self, max_bytes=None) -> bytes:
        raise self.error

    async def aclose(self) -> None:
        self.closed = True


async def test_refusal_never_raises_on_reset_or_enotconn():
    """Problem 1: the refusal path itself, fed the errors a reset client produces."""
    from actors.http import refuse

    for stream in (
        _Broken(trio.BrokenResourceError("[Errno 104] Connection reset by peer")),
        _Broken(OSError(errno.ECONNRESET, "reset")),
        _Broken(trio.BrokenResourceError("reset"), on_eof=OSError(errno.ENOTCONN, "enotconn")),
        _Broken(trio.ClosedResourceError()),
    ):
        await refuse(stream, 1.0)  # must not raise
        assert stream.closed


async def test_healthz_answers_whatever_slow_clients_do(nursery, autojump_clock):
    """Problem 2: slowloris connections (a byte every 3 s) past the connection limit."""
    port = await start(nursery, max_connections=8)

    async def slowloris() -> None:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        with trio.move_on_after(60):
            async with stream:
                for byte in b"GET /healthz HTTP/1.1\r\nX-a: " + b"a" * 100:
                    try:
                        await stream.send_all(bytes([byte]))
                    except trio.BrokenResourceError:
                        return
                    await trio.sleep(3)

    async with trio.open_nursery() as attack:
        for _ in range(40):
            attack.start_soon(slowloris)
        await trio.sleep(1)
        answers = []
        for _ in range(10):
            began = trio.current_time()
            with trio.move_on_after(1):
                answers.append(await healthz(port))
            assert trio.current_time() - began < 1
            await trio.sleep(2)
        attack.cancel_scope.cancel()
    assert all(a.startswith(b"HTTP/1.1 200 ") for a in answers), answers
