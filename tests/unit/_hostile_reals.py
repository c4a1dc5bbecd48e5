"""Hostile reals for the conformance table: one loopback server per misbehaviour.

Each entry of HTTP, TLS, DNS_TCP and DNS_UDP is ``name -> (server, reason, closes)``:
``reason`` is the verdict every mode must give, ``closes`` whether the real
closes (or resets) its connection, so the check must end at once rather than
wait out its timeout. A server is a trio stream handler (DNS_UDP: a function
from the query datagram to the reply datagram, or None for no reply).
"""

from __future__ import annotations

import socket
import struct

import dns.flags
import dns.message
import dns.rrset
import trio

from test_checks_http import read_request

CHUNK = b"x" * 65536


async def _send(stream, *parts: bytes, close: bool = True) -> None:
    try:
        for part in parts:
            await stream.send_all(part)
        if not close:
            await trio.sleep_forever()
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # the check gave up: that is the point
    finally:
        await stream.aclose()


def answer(*parts: bytes, close: bool = True):
    async def handle(stream):
        await read_request(stream)
        await _send(stream, *parts, close=close)

    return handle


async def rst(stream) -> None:
    await read_request(stream)
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    stream.socket.close()


async def rst_at_once(stream) -> None:
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    stream.socket.close()


async def silent(stream) -> None:
    await trio.sleep_forever()


async def endless(stream, first: bytes, more: bytes, total: int) -> None:
    await read_request(stream)
    try:
        await stream.send_all(first)
        for _ in range(total // len(more)):
            await stream.send_all(more)
        await trio.sleep_forever()
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


async def endless_headers(stream) -> None:
    await endless(stream, b"HTTP/1.1 200 OK\r\n", b"X-Filler: yes\r\n" * 4096, 100 << 20)


async def status_line_100mb(stream) -> None:
    await endless(stream, b"HTTP/1.1 200 ", CHUNK, 100 << 20)


async def drip(stream) -> None:
    await read_request(stream)
    try:
        for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n":
            await stream.send_all(bytes([byte]))
            await trio.sleep(0.25)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


HTTP = {
    "ok": (answer(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), "ok", True),
    "status 503": (answer(b"HTTP/1.1 503 No\r\nContent-Length: 0\r\n\r\n"), "status 503", True),
    "silence": (silent, "timeout", False),
    "close at once": (answer(), "short read", True),
    "rst": (rst, "reset", True),
    "200 then endless headers": (endless_headers, "header too large", False),
    "'HTTP/1.1 2' then close": (answer(b"HTTP/1.1 2"), "short read", True),
    "HTTP/0.9 body then close": (answer(b"<html>hello</html>\n"), "bad response", True),
    "'HTTP/1.1 200' without CRLF then close": (answer(b"HTTP/1.1 200"), "short read", True),
    "100 MB status line": (status_line_100mb, "header too large", False),
    "garbage bytes, open": (answer(b"\x16\x03\x01\x00\xff garbage", close=False),
                            "bad response", False),
    "LF-only line endings": (answer(b"HTTP/1.1 200 OK\nContent-Length: 0\n\n", close=False),
                             "ok", False),
    "header without colon": (answer(b"HTTP/1.1 200 OK\r\nbogus\r\n\r\n"), "bad response", True),
    "slow drip": (drip, "timeout", False),
    "complete, no Content-Length, close": (answer(b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\nbody"),
                                           "ok", True),
    "head split over writes": (answer(b"HTTP/1.1 200 OK\r\n", b"Server: x\r\n", b"\r\n"),
                               "ok", True),
}


def tls_ok(context):
    async def handle(stream):
        tls = trio.SSLStream(stream, context, server_side=True)
        try:
            await tls.do_handshake()
            await read_request(tls)
            await tls.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            await tls.aclose()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    return handle


async def plain_answer(stream) -> None:
    await _send(stream, b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")


async def close_at_once(stream) -> None:
    await stream.aclose()


async def read_then_close(stream) -> None:
    # Read first: closing with unread bytes would send an RST instead of a FIN.
    try:
        await stream.receive_some(65536)
    except trio.BrokenResourceError:
        pass
    await stream.aclose()


def tls_cases(context) -> dict:
    return {
        "tls ok": (tls_ok(context), "ok", True),
        "tls: plain http answer": (plain_answer, "tls", True),
        "tls: close in handshake": (read_then_close, "tls", True),
        "tls: rst in handshake": (rst_at_once, "reset", True),
        "tls: silence": (silent, "timeout", False),
    }


def _reply(query: bytes) -> bytes:
    request = dns.message.from_wire(query)
    response = dns.message.make_response(request)
    response.answer.append(dns.rrset.from_text(request.question[0].name, 60, "IN", "A",
                                               "192.0.2.1", "192.0.2.2"))
    return response.to_wire()


def wrong_id(query: bytes) -> bytes:
    reply = _reply(query)
    return struct.pack("!H", struct.unpack_from("!H", reply)[0] ^ 1) + reply[2:]


def pointer_loop(query: bytes) -> bytes:
    # One question whose name is a compression pointer to itself (offset 12).
    return query[:2] + b"\x81\x80\x00\x01\x00\x00\x00\x00\x00\x00" + b"\xc0\x0c\x00\x01\x00\x01"


def truncated_flagged(query: bytes) -> bytes:
    # TC set and the last record cut: miekg/dns (kglb) judges the rcode it has.
    reply = bytearray(_reply(query)[:-6])
    reply[2] |= dns.flags.TC >> 8
    return bytes(reply)


def cut(query: bytes) -> bytes:
    return _reply(query)[:-6]  # cut without TC: a malformed message


def dns_tcp(make):
    async def handle(stream):
        data = b""
        try:
            while len(data) < 2 or len(data) < 2 + struct.unpack_from("!H", data)[0]:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    return
                data += chunk
            await stream.send_all(make(data[2:]))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await stream.aclose()

    return handle


def framed(make):
    return lambda query: struct.pack("!H", len(reply := make(query))) + reply


DNS_TCP = {
    "dns ok": (dns_tcp(framed(_reply)), "ok", True),
    "dns wrong id": (dns_tcp(framed(wrong_id)), "id mismatch", True),
    "dns pointer loop": (dns_tcp(framed(pointer_loop)), "bad response", True),
    "dns stream cut": (dns_tcp(lambda q: struct.pack("!H", 200) + _reply(q)[:20]),
                       "short read", True),
    "dns close unanswered": (read_then_close, "short read", True),
}

DNS_UDP = {
    "dns/udp ok": (_reply, "ok", False),
    "dns/udp wrong id": (wrong_id, "id mismatch", False),
    "dns/udp truncated (TC)": (truncated_flagged, "ok", False),
    "dns/udp cut": (cut, "bad response", False),
    "dns/udp pointer loop": (pointer_loop, "bad response", False),
    "dns/udp silence": (lambda query: None, "timeout", False),
}


async def serve_udp(make, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        await sock.bind(("127.0.0.1", 0))
        task_status.started(sock.getsockname()[1])
        while True:
            query, peer = await sock.recvfrom(65535)
            reply = make(query)
            if reply is not None:
                await sock.sendto(reply, peer)
