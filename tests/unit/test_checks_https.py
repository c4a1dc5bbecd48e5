"""https and proxy checks: TLS servers with a certificate made at test time, a CONNECT proxy."""

from __future__ import annotations

import pytest
import trio

from actors.checks import run_check
from kglb import ProbeTarget
from kglb.config import HttpCheck

from test_checks_http import ok, read_request, responder


def tls_server(context, handler):
    async def handle(stream):
        tls = trio.SSLStream(stream, context, server_side=True)
        try:
            await tls.do_handshake()
        except trio.BrokenResourceError:
            return
        await handler(tls)

    return handle


async def check(host, port, **settings):
    settings.setdefault("codes", (200,))
    settings.setdefault("timeout_ms", 2000)
    return await run_check(ProbeTarget(address=host, port=port, check=HttpCheck(**settings)))


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
async def test_https_passes_without_sni_for_an_ip(check_serve, check_server_tls, host):
    names = []
    check_server_tls.sni_callback = lambda sock, name, ctx: names.append(name)
    port = await check_serve(tls_server(check_server_tls, responder(ok())), host)
    result = await check(host, port, scheme="https")
    assert (result.passed, result.reason) == (True, "ok")
    assert names == [None]


async def test_https_sni_from_host_header(check_serve, check_server_tls):
    names = []
    check_server_tls.sni_callback = lambda sock, name, ctx: names.append(name)
    port = await check_serve(tls_server(check_server_tls, responder(ok())))
    headers = (("Host", "www.example.test:8443"),)
    assert (await check("127.0.0.1", port, scheme="https", headers=headers)).passed
    assert names == ["www.example.test"]


async def test_https_to_a_plain_server_is_tls(check_serve):
    async def plain(stream):
        await stream.receive_some(4096)  # the ClientHello
        await stream.send_all(ok(400))
        await stream.aclose()

    port = await check_serve(plain)
    assert (await check("127.0.0.1", port, scheme="https")).reason == "tls"


async def test_https_status(check_serve, check_server_tls):
    port = await check_serve(tls_server(check_server_tls, responder(ok(503))))
    assert (await check("127.0.0.1", port, scheme="https")).reason == "status 503"


# ----------------------------------------------------------------------- proxies


def proxy(seen: list, *, connect_status: int = 200):
    """A forward proxy: CONNECT relays to the target, absolute-form GETs get a 200."""

    async def handle(stream):
        head = await read_request(stream)
        seen.append(head.split(b"\r\n")[0])
        method, target, _ = head.split(b" ", 2)
        if method != b"CONNECT":
            await stream.send_all(ok())
            return await stream.aclose()
        if connect_status != 200:
            await stream.send_all(ok(connect_status))
            return await stream.aclose()
        host, _, port = target.decode().rpartition(":")
        upstream = await trio.open_tcp_stream(host.strip("[]"), int(port))
        await stream.send_all(b"HTTP/1.1 200 Connection established\r\n\r\n")

        async def pipe(source, sink):
            try:
                while data := await source.receive_some(65536):
                    await sink.send_all(data)
            except trio.BrokenResourceError:
                pass
            await sink.aclose()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(pipe, stream, upstream)
            nursery.start_soon(pipe, upstream, stream)

    return handle


async def test_http_proxy_connects_to_an_https_target(check_serve, check_server_tls):
    names, seen = [], []
    check_server_tls.sni_callback = lambda sock, name, ctx: names.append(name)
    target = await check_serve(tls_server(check_server_tls, responder(ok(), seen=seen)))
    via_proxy = []
    port = await check_serve(proxy(via_proxy), "::1")
    url = f"https://localhost:{target}/status"
    result = await check("::1", port, scheme="http", proxy_check_url=url, uri="/ignored")
    assert (result.passed, result.reason) == (True, "ok")
    assert via_proxy == [f"CONNECT localhost:{target} HTTP/1.1".encode()]
    assert seen[0].split(b"\r\n")[:2] == [b"GET /status HTTP/1.1", f"Host: localhost:{target}".encode()]
    assert names == ["localhost"]


async def test_https_proxy_gets_an_http_target_in_absolute_form(check_serve, check_server_tls):
    seen = []
    port = await check_serve(tls_server(check_server_tls, proxy(seen)))
    url = "http://backend.test/x?y=1"
    assert (await check("127.0.0.1", port, scheme="https", proxy_check_url=url)).passed
    assert seen == [b"GET http://backend.test/x?y=1 HTTP/1.1"]


async def test_proxy_refusing_the_tunnel(check_serve):
    port = await check_serve(proxy([], connect_status=403))
    result = await check("127.0.0.1", port, proxy_check_url="https://backend.test/")
    assert result.reason == "proxy status 403"


async def test_bad_proxy_url(check_serve):
    port = await check_serve(proxy([]))
    assert (await check("127.0.0.1", port, proxy_check_url="ftp://x/")).reason == "bad url"
