"""actors/resolver.py: literals, families, and dnspython under trio against a loopback server."""

import dns.asyncresolver
import dns.message
import dns.rcode
import dns.rrset
import pytest
import trio

from actors.resolver import ResolveError, resolve_host
from kglb import Family

ZONE = {("web.test.", "A"): "10.1.0.1", ("web.test.", "AAAA"): "fd00::1"}


async def serve_dns(sock):
    while True:
        data, peer = await sock.recvfrom(4096)
        query = dns.message.from_wire(data)
        reply = dns.message.make_response(query)
        question = query.question[0]
        key = (question.name.to_text(), dns.rdatatype.to_text(question.rdtype))
        if key in ZONE:
            reply.answer.append(dns.rrset.from_text(question.name, 60, "IN", key[1], ZONE[key]))
        elif not any(name == key[0] for name, _ in ZONE):
            reply.set_rcode(dns.rcode.NXDOMAIN)
        await sock.sendto(reply.to_wire(), peer)


@pytest.fixture
async def resolver():
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    await sock.bind(("127.0.0.1", 0))
    r = dns.asyncresolver.Resolver(configure=False)
    r.nameservers = ["127.0.0.1"]
    r.port = sock.getsockname()[1]
    with sock:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve_dns, sock)
            yield r
            nursery.cancel_scope.cancel()


async def test_literals_are_returned_canonical():
    assert await resolve_host("10.1.0.1", Family.INET) == "10.1.0.1"
    assert await resolve_host("FD00:0::1", Family.INET6) == "fd00::1"


async def test_literal_of_the_other_family_is_an_error():
    with pytest.raises(ResolveError):
        await resolve_host("fd00::1", Family.INET)


async def test_names_resolve_with_the_requested_family(resolver):
    assert await resolve_host("web.test.", Family.INET, resolver=resolver) == "10.1.0.1"
    assert await resolve_host("web.test.", Family.INET6, resolver=resolver) == "fd00::1"


async def test_unknown_name_is_a_resolve_error(resolver):
    with pytest.raises(ResolveError, match="no such name"):
        await resolve_host("nope.test.", Family.INET, resolver=resolver)


async def test_timeout_is_a_resolve_error():
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    await sock.bind(("127.0.0.1", 0))  # never answers
    r = dns.asyncresolver.Resolver(configure=False)
    r.nameservers = ["127.0.0.1"]
    r.port = sock.getsockname()[1]
    with sock, pytest.raises(ResolveError, match="timeout"):
        await resolve_host("web.test.", Family.INET, resolver=r, timeout=0.3)
