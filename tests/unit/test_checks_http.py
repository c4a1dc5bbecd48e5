"""The http check against real trio servers on loopback, including hostile ones."""

from __future__ import annotations

import socket
import struct

import pytest
import trio

from actors.checks import _http_wire as wire
from actors.checks import run_check
from actors.checks._http_head import HeadReader
from actors.checks._net import CheckFailure
from kglb import ProbeTarget
from kglb.config import HttpCheck

HOSTS = ["127.0.0.1", "::1"]


async def read_request(stream) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(4096)
        if not chunk:
            break
        data += chunk
    return data


def responder(*responses: bytes, seen: list | None = None):
    """A handler answering the n-th connection with responses[n] (the last one repeats)."""
    count = 0

    async def handle(stream):
        nonlocal count
        request = await read_request(stream)
        if seen is not None:
            seen.append(request)
        answer = responses[min(count, len(responses) - 1)]
        count += 1
        try:
            await stream.send_all(answer)
        except trio.BrokenResourceError:
            pass
        await stream.aclose()

    return handle


def ok(code: int = 200, extra: str = "") -> bytes:
    return f"HTTP/1.1 {code} X\r\nContent-Length: 0\r\n{extra}\r\n".encode()


async def check(host, port, **settings):
    settings.setdefault("codes", (200,))
    settings.setdefault("timeout_ms", 2000)
    return await run_check(ProbeTarget(address=host, port=port, check=HttpCheck(**settings)))


@pytest.mark.parametrize("host", HOSTS)
async def test_status_in_codes_passes_and_request_is_kglbs(check_serve, host):
    seen = []
    port = await check_serve(responder(ok(), seen=seen), host)
    result = await check(host, port, uri="/health?x=1")
    assert (result.passed, result.reason) == (True, "ok")
    bracketed = f"[{host}]" if ":" in host else host
    assert seen == [
        f"GET /health?x=1 HTTP/1.1\r\nHost: {bracketed}:{port}\r\n"
        "User-Agent: KgLB healthchecker/1.0\r\nConnection: close\r\n\r\n".encode()
    ]


async def test_status_not_in_codes(check_serve):
    port = await check_serve(responder(ok(503)))
    result = await check("127.0.0.1", port)
    assert (result.passed, result.reason) == (False, "status 503")


async def test_empty_codes_never_pass(check_serve):
    port = await check_serve(responder(ok()))
    assert (await check("127.0.0.1", port, codes=())).reason == "status 200"


async def test_headers_host_override_and_user_agent(check_serve):
    seen = []
    port = await check_serve(responder(ok(), seen=seen))
    headers = (("host", "example.test"), ("X-Check", "1"), ("user-agent", "mine/2"))
    assert (await check("127.0.0.1", port, headers=headers)).passed
    assert seen[0].split(b"\r\n")[1:5] == [
        b"Host: example.test", b"User-Agent: mine/2", b"Connection: close", b"X-Check: 1"
    ]


async def test_redirect_not_followed_is_judged_itself(check_serve):
    port = await check_serve(responder(ok(301, "Location: /elsewhere\r\n")))
    assert (await check("127.0.0.1", port, codes=(301,))).passed
    assert (await check("127.0.0.1", port)).reason == "status 301"


async def test_redirect_followed(check_serve):
    seen = []
    port = await check_serve(responder(ok(302, "Location: /next\r\n"), ok(), seen=seen))
    result = await check("127.0.0.1", port, follow_redirects=True)
    assert result.passed
    assert [r.split(b"\r\n")[0] for r in seen] == [b"GET / HTTP/1.1", b"GET /next HTTP/1.1"]


async def test_redirect_to_another_host(check_serve):
    final = await check_serve(responder(ok(204)), "::1")
    port = await check_serve(responder(ok(307, f"Location: http://[::1]:{final}/x\r\n")))
    assert (await check("127.0.0.1", port, follow_redirects=True, codes=(204,))).passed


async def test_redirect_loop_stops_after_ten(check_serve):
    seen = []
    port = await check_serve(responder(ok(302, "Location: /again\r\n"), seen=seen))
    result = await check("127.0.0.1", port, follow_redirects=True, codes=(200, 302))
    assert result.reason == "too many redirects"
    assert len(seen) == 11


# ----------------------------------------------------------------- hostile reals


async def test_slow_loris_costs_one_timeout(check_serve):
    async def slow(stream):
        await read_request(stream)
        for byte in b"HTTP/1.1 200 OK\r\n":
            await stream.send_all(bytes([byte]))
            await trio.sleep(0.1)

    port = await check_serve(slow)
    result = await check("127.0.0.1", port, timeout_ms=300)
    assert (result.passed, result.reason) == (False, "timeout")
    assert result.latency < 0.5


async def test_endless_status_line_is_bounded(check_serve):
    async def endless(stream):
        await read_request(stream)
        try:
            await stream.send_all(b"HTTP/1.1 200 " + b"x" * 1_000_000)
        except trio.BrokenResourceError:
            pass

    port = await check_serve(endless)
    assert (await check("127.0.0.1", port)).reason == "header too large"


async def test_endless_header_is_bounded_when_following(check_serve):
    async def endless(stream):
        await read_request(stream)
        try:
            await stream.send_all(b"HTTP/1.1 302 X\r\nX-Long: " + b"x" * 1_000_000)
        except trio.BrokenResourceError:
            pass

    port = await check_serve(endless)
    result = await check("127.0.0.1", port, follow_redirects=True)
    assert result.reason == "header too large"


async def test_huge_body_is_not_read(check_serve):
    port = await check_serve(responder(b"HTTP/1.1 200 X\r\nContent-Length: 10485760\r\n\r\n" + b"x" * 10_485_760))
    with trio.fail_after(1):
        result = await check("127.0.0.1", port)
    assert result.passed


async def test_garbage_is_a_bad_response(check_serve):
    port = await check_serve(responder(b"\x16\x03\x01garbage\r\n"))
    assert (await check("127.0.0.1", port)).reason == "bad response"


async def test_close_without_answer_is_a_short_read(check_serve):
    port = await check_serve(responder(b""))
    assert (await check("127.0.0.1", port)).reason == "short read"


async def test_rst_is_a_reset(check_serve):
    async def rst(stream):
        await read_request(stream)
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        stream.socket.close()

    port = await check_serve(rst)
    assert (await check("127.0.0.1", port)).reason == "reset"


async def test_no_answer_is_a_timeout(check_serve):
    async def silent(stream):
        await trio.sleep_forever()

    port = await check_serve(silent)
    result = await check("127.0.0.1", port, timeout_ms=200)
    assert (result.passed, result.reason) == (False, "timeout")


# ------------------------------------------------------------------ wire helpers


@pytest.mark.parametrize(
    "host, sni",
    [("example.test", "example.test"), ("example.test:8443", "example.test"),
     ("10.0.0.1", None), ("10.0.0.1:80", None), ("[::1]:443", None), ("[::1]", None),
     ("::1", None), ("", None)],
)
def test_sni_only_for_names(host, sni):
    assert wire.sni_for(host) == sni


@pytest.mark.parametrize(
    "current, location, expected",
    [("http://10.0.0.1:80/a/b", "c", "http://10.0.0.1:80/a/c"),
     ("http://10.0.0.1:80/a", "/x?y=1", "http://10.0.0.1:80/x?y=1"),
     ("http://10.0.0.1:80/a", "https://name.test/", "https://name.test/"),
     ("http://[::1]:80/", "//other.test:81/p", "http://other.test:81/p")],
)
def test_redirect_targets(current, location, expected):
    url = wire.redirect_url(wire.parse_url(current), location)
    assert str(url) == expected


def test_url_parts():
    assert wire.parse_url("https://[::1]/p") == wire.Url("https", "[::1]", "::1", 443, "/p")
    assert wire.parse_url("http://h.test:81") == wire.Url("http", "h.test:81", "h.test", 81, "/")
    for bad in ("ftp://h/", "http://", "http://h:99999/"):
        with pytest.raises(CheckFailure):
            wire.parse_url(bad)


@pytest.mark.parametrize("line", [b"HTTP/2 200 OK\r\n", b"HTTP/1.1 2000\r\n", b"HTTP/1.1\r\n",
                                  b"HTTP/1.1 abc X\r\n", b"SSH-2.0-OpenSSH\r\n"])
def test_bad_status_lines(line):
    with pytest.raises(CheckFailure):
        HeadReader().feed(line)


@pytest.mark.parametrize("response", [b"HTTP/1.1 302 Found\r\nLocation: /x\r\nA: b\r\n\r\nbody",
                                      b"HTTP/1.1 302 Found\nLocation: /x\nA: b\n\nbody"])
def test_head_reader_byte_by_byte(response):
    """The head's end is found however the bytes are split (a drip, one byte per read)."""
    reader = HeadReader()
    for n in range(len(response)):
        head = reader.feed(response[n:n + 1])
        if head is not None:
            break
    assert response[:n + 1].endswith((b"b\r\n\r\n", b"b\n\n")) and head == (302, "/x")


def test_head_reader_bounds_and_eof():
    reader = HeadReader(limit=32)
    assert reader.feed(b"HTTP/1.1 200 OK\r\nX: " + b"y" * 10) is None
    with pytest.raises(CheckFailure, match="header too large"):
        reader.feed(b"y" * 20)
    with pytest.raises(CheckFailure, match="short read"):
        HeadReader().eof()
    with pytest.raises(CheckFailure, match="bad response"):
        HeadReader().feed(b"<")  # cannot begin HTTP/: judged at once
