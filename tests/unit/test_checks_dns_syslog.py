"""The dns check against a loopback DNS responder (UDP and TCP), and the syslog check."""

from __future__ import annotations

import re
import socket
import struct

import dns.message
import dns.rcode
import dns.rdatatype
import pytest
import trio

from actors.checks import run_check
from actors.checks.dns import judge
from kglb import Protocol, ProbeTarget
from kglb.config import DnsCheck, SyslogCheck

UDP, TCP = Protocol.UDP, Protocol.TCP


class Responder:
    """A DNS server on loopback; ``mode`` says how it misbehaves."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.rcode = dns.rcode.NOERROR
        self.questions: list[tuple[str, str, bool]] = []

    def answer(self, wire: bytes) -> bytes | None:
        query = dns.message.from_wire(wire)
        question = query.question[0]
        self.questions.append((question.name.to_text(), dns.rdatatype.to_text(question.rdtype),
                               bool(query.flags & dns.flags.RD)))
        reply = dns.message.make_response(query)
        reply.set_rcode(self.rcode)
        data = reply.to_wire()
        if self.mode == "wrong id":
            data = struct.pack("!H", (query.id + 1) % 65536) + data[2:]
        elif self.mode == "garbage":
            data = data[:2] + b"\xff" * 30
        elif self.mode == "silent":
            return None
        return data

    async def serve_udp(self, host: str, task_status=trio.TASK_STATUS_IGNORED) -> None:
        sock = trio.socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                                  socket.SOCK_DGRAM)
        with sock:
            await sock.bind((host, 0))
            task_status.started(sock.getsockname()[1])
            while True:
                wire, peer = await sock.recvfrom(65535)
                reply = self.answer(wire)
                if reply is not None:
                    await sock.sendto(reply, peer)

    async def handle_tcp(self, stream) -> None:
        size = struct.unpack("!H", await stream.receive_some(2))[0]
        wire = b""
        while len(wire) < size:
            wire += await stream.receive_some(size - len(wire))
        reply = self.answer(wire)
        if reply is None:
            await trio.sleep_forever()
        if self.mode == "short":
            await stream.send_all(struct.pack("!H", len(reply) + 10) + reply)
        else:
            await stream.send_all(struct.pack("!H", len(reply)) + reply)
        await stream.aclose()


@pytest.fixture
async def responder(nursery, check_serve):
    server = Responder()
    ports = {}
    for host in ("127.0.0.1", "::1"):
        ports[host, UDP] = await nursery.start(server.serve_udp, host)
        ports[host, TCP] = await check_serve(server.handle_tcp, host)
    server.ports = ports
    return server


async def dns_check(server, host, protocol, **settings):
    settings.setdefault("query", "example.test.")
    settings.setdefault("timeout_ms", 1000)
    check = DnsCheck(protocol=protocol, **settings)
    return await run_check(ProbeTarget(address=host, port=server.ports[host, protocol], check=check))


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
@pytest.mark.parametrize("protocol", [UDP, TCP])
async def test_dns_passes_on_the_configured_rcode(responder, host, protocol):
    result = await dns_check(responder, host, protocol, query_type="AAAA")
    assert (result.passed, result.reason) == (True, "ok")
    assert responder.questions == [("example.test.", "AAAA", True)]


@pytest.mark.parametrize("qtype", ["A", "AAAA", "NS", "MX", "TXT", "SOA"])
async def test_every_query_type_is_sent_as_itself(responder, qtype):
    assert (await dns_check(responder, "127.0.0.1", UDP, query_type=qtype)).passed
    assert responder.questions[0][1] == qtype


async def test_name_is_made_absolute(responder):
    assert (await dns_check(responder, "127.0.0.1", TCP, query="relative.test")).passed
    assert responder.questions[0][0] == "relative.test."


@pytest.mark.parametrize("protocol", [UDP, TCP])
async def test_rcode_mismatch(responder, protocol):
    responder.rcode = dns.rcode.NXDOMAIN
    result = await dns_check(responder, "127.0.0.1", protocol)
    assert (result.passed, result.reason) == (False, "rcode NXDOMAIN")
    assert (await dns_check(responder, "127.0.0.1", protocol, rcode=3)).passed


@pytest.mark.parametrize(
    "mode, protocol, reason",
    [
        ("wrong id", UDP, "id mismatch"),
        ("wrong id", TCP, "id mismatch"),
        ("garbage", UDP, "bad response"),
        ("short", TCP, "short read"),
        ("silent", UDP, "timeout"),
        ("silent", TCP, "timeout"),
    ],
)
async def test_dns_failures(responder, mode, protocol, reason):
    responder.mode = mode
    result = await dns_check(responder, "127.0.0.1", protocol, timeout_ms=200)
    assert (result.passed, result.reason) == (False, reason)


async def test_an_impossible_name_is_a_bad_query(responder):
    result = await dns_check(responder, "127.0.0.1", UDP, query="x" * 64 + ".test.")
    assert (result.passed, result.reason) == (False, "bad query")


def test_tiny_reply_is_bad():
    assert judge(b"\x00\x01", 1, 0) == "bad response"


# ------------------------------------------------------------------------ syslog

LINE = re.compile(
    rb"<(\d+)>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d) \S+ SyslogHealthChecker\[\d+\]: "
    rb"probe message\.\n"
)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
async def test_syslog_tcp_writes_kglbs_probe_line(check_serve, host):
    send, lines = trio.open_memory_channel(1)

    async def listen(stream):
        await send.send(await stream.receive_some(4096))

    port = await check_serve(listen, host)
    target = ProbeTarget(address=host, port=1, check=SyslogCheck(log_level=10, port=port))
    result = await run_check(target)
    assert (result.passed, result.reason) == (True, "ok")
    with trio.fail_after(2):
        line = await lines.receive()
    assert LINE.fullmatch(line) and LINE.fullmatch(line).group(1) == b"10"


async def test_syslog_udp():
    with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
        await listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        check = SyslogCheck(protocol=UDP, log_level=3)
        assert (await run_check(ProbeTarget(address="127.0.0.1", port=port, check=check))).passed
        with trio.fail_after(2):
            assert LINE.fullmatch(await listener.recv(4096))


async def test_syslog_tcp_refused():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    target = ProbeTarget(address="127.0.0.1", port=port, check=SyslogCheck())
    assert (await run_check(target)).reason == "refused"

