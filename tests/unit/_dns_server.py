"""A tiny authoritative DNS server on loopback UDP, for the discovery tests (dnspython, trio)."""

from __future__ import annotations

from contextlib import asynccontextmanager

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import trio


class Zone:
    """What the server answers: ``records[(name, type)] = (ttl, [rdata text, ...])``.

    ``rcode`` set to e.g. SERVFAIL makes every answer fail; ``queries`` logs
    (trio time, name, type) of each question.
    """

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], tuple[int, list[str]]] = {}
        self.rcode = dns.rcode.NOERROR
        self.queries: list[tuple[float, str, str]] = []

    def set(self, name: str, rdtype: str, ttl: int, *rdatas: str) -> None:
        self.records[(name.rstrip(".") + ".", rdtype)] = (ttl, list(rdatas))

    def answer(self, wire: bytes) -> bytes:
        query = dns.message.from_wire(wire)
        question = query.question[0]
        name, rdtype = question.name.to_text(), dns.rdatatype.to_text(question.rdtype)
        self.queries.append((trio.current_time(), name, rdtype))
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if self.rcode != dns.rcode.NOERROR:
            response.set_rcode(self.rcode)
        elif (name, rdtype) in self.records:
            ttl, rdatas = self.records[(name, rdtype)]
            response.answer.append(dns.rrset.from_text(name, ttl, "IN", rdtype, *rdatas))
        elif not any(n == name for n, _ in self.records):
            response.set_rcode(dns.rcode.NXDOMAIN)
        return response.to_wire()


@asynccontextmanager
async def dns_server(zone: Zone):
    """Serve ``zone`` on 127.0.0.1 (UDP); yields ``"127.0.0.1:port"``."""
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    await sock.bind(("127.0.0.1", 0))

    async def serve() -> None:
        while True:
            wire, peer = await sock.recvfrom(4096)
            await sock.sendto(zone.answer(wire), peer)

    with sock:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve)
            yield f"127.0.0.1:{sock.getsockname()[1]}"
            nursery.cancel_scope.cancel()
