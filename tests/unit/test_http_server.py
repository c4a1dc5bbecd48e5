"""The stats/status HTTP server on loopback: routes, bad input, slow clients, limits."""

from __future__ import annotations

import json

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from _ops_fakes import snapshot
from actors import http
from actors.http import parse_address, run_http_server
from actors.metrics import LoopLagMonitor


class Handle:
    def __init__(self, stats=None):
        self.stats = stats or snapshot()
        self.calls = 0

    def statistics(self):
        self.calls += 1
        return self.stats


async def start(nursery, handle=None, **kw):
    host, port = await nursery.start(
        lambda task_status: run_http_server("127.0.0.1:0", handle or Handle(), **kw,
                                            task_status=task_status))
    return host, port


async def raw(port: int, data: bytes, *, shutdown: bool = False) -> bytes:
    """Send bytes, read until the server closes."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(data)
        if shutdown:
            await stream.send_eof()
        out = b""
        while chunk := await stream.receive_some(65536):
            out += chunk
    return out


def test_parse_address():
    assert parse_address("127.0.0.1:5678") == ("127.0.0.1", 5678)
    assert parse_address("[::1]:80") == ("::1", 80)
    assert parse_address(":5678") == ("", 5678)
    for bad in ("127.0.0.1", "host:http", "1.2.3.4:70000"):
        with pytest.raises(ValueError):
            parse_address(bad)


async def test_routes(nursery):
    handle = Handle()
    _, port = await start(nursery, handle, loop_lag=LoopLagMonitor())
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        for path in ("/stats", "/metrics", "/stats?x=1"):
            r = await client.get(path)
            assert r.status_code == 200
            assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
            names = {f.name for f in text_string_to_metric_families(r.text)}
            assert {"kglb:control_plane:balancer_state", "kglb_trio_event_loop_lag_seconds"} <= names
        r = await client.get("/status")
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        doc = r.json()
        assert [b["name"] for b in doc["balancers"]] == ["web", "dns"]
        r = await client.get("/healthz")
        assert (r.status_code, r.text) == (200, "ok\n")
        r = await client.head("/healthz")
        assert (r.status_code, r.content, r.headers["content-length"]) == (200, b"", "3")
        r = await client.get("/nope")
        assert r.status_code == 404
        r = await client.post("/stats", content=b"x" * 100)
        assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"
    # One snapshot per rendered page: the three scrapes share one render.
    assert handle.calls == 2


async def test_keep_alive_serves_several_requests_on_one_connection(nursery):
    _, port = await start(nursery)
    out = await raw(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                          b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert out.count(b"HTTP/1.1 200 OK\r\n") == 2


@pytest.mark.parametrize("request_bytes, status", [
    (b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\n\r\n", b"431"),
    (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"b" * 20_000 + b"\r\n\r\n", b"431"),
    (b"\x00\x01\x02 garbage \xff\xfe\r\n\r\n", b"400"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", b"400"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"y" * 20_000, b"413"),
])
async def test_bad_requests_are_answered_and_closed_without_harm(nursery, request_bytes, status):
    _, port = await start(nursery)
    out = await raw(port, request_bytes)
    assert out.startswith(b"HTTP/1.1 " + status + b" ")
    assert b"connection: close" in out.lower()
    # the server is still fine
    out = await raw(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 ")


async def test_half_request_then_eof_is_just_closed(nursery):
    _, port = await start(nursery)
    out = await raw(port, b"GET /healthz HTTP/1.1\r\nHos", shutdown=True)
    assert out.startswith(b"HTTP/1.1 400 ") or out == b""


async def test_slow_client_times_out(nursery, autojump_clock):
    _, port = await start(nursery, request_timeout=10.0)
    began = trio.current_time()
    out = await raw(port, b"GET /healthz HTTP/1.1\r\n")  # and then nothing more
    assert out == b""
    assert trio.current_time() - began == pytest.approx(10.0, abs=0.01)


async def test_idle_keep_alive_connection_times_out(nursery, autojump_clock):
    _, port = await start(nursery, request_timeout=10.0)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        first = b""
        while not first.endswith(b"ok\n"):
            first += await stream.receive_some(65536)
        assert first.startswith(b"HTTP/1.1 200 ")
        began = trio.current_time()
        assert await stream.receive_some(65536) == b""
        assert trio.current_time() - began == pytest.approx(10.0, abs=0.01)


async def test_connection_limit_evicts_the_client_waiting_longest(nursery):
    _, port = await start(nursery, max_connections=2)
    hog = await trio.open_tcp_stream("127.0.0.1", port)  # never sends a request
    async with hog:
        await trio.sleep(0.05)
        idle = await trio.open_tcp_stream("127.0.0.1", port)  # keep-alive, then idle
        async with idle:
            await idle.send_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while not answer.endswith(b"ok\n"):
                answer += await idle.receive_some(65536)
            # A third client: the hog, waiting longest, goes; the idle one stays.
            out = await raw(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert out.startswith(b"HTTP/1.1 200 ")
            assert await hog.receive_some(65536) == b""
            await idle.send_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := await idle.receive_some(65536):
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 200 "), answer


async def test_connection_limit_refuses_when_every_client_is_being_answered(nursery, monkeypatch):
    release = trio.Event()
    page = http._Server.page

    async def slow_page(self, path, accept):
        if path == "/slow":
            await release.wait()
        return await page(self, path, accept)

    monkeypatch.setattr(http._Server, "page", slow_page)
    _, port = await start(nursery, max_connections=1)
    busy = await trio.open_tcp_stream("127.0.0.1", port)
    async with busy:
        await busy.send_all(b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        await trio.sleep(0.05)
        out = await raw(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 503 ")
        release.set()
        answer = b""
        while chunk := await busy.receive_some(65536):
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 404 ")
    await trio.sleep(0.05)  # let the server see the busy client leave
    out = await raw(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 ")


async def test_no_snapshot_yet_is_a_503_and_the_server_carries_on(nursery):
    class Starting:
        def statistics(self):
            raise RuntimeError("the control plane is starting")

    _, port = await start(nursery, Starting())
    out = await raw(port, b"GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 503 ") and out.endswith(b"the control plane is starting\n")
    out = await raw(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 ")


async def test_port_in_use_fails_at_start():
    with trio.socket.socket() as taken:
        await taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError):
            await run_http_server(f"127.0.0.1:{port}", Handle())


async def test_status_json_is_served_whole(nursery):
    _, port = await start(nursery)
    out = await raw(port, b"GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    length = int([h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")][0]
                 .split(b":")[1])
    assert len(body) == length
    assert json.loads(body)["writer"]["manager_state"] == "available"
