"""DNS discovery against a DNS server started by the test: A, AAAA, SRV, TTLs, failures."""

import dns.asyncresolver
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import pytest
import trio

from _control_fakes import balancer_config
from _dns_server import Zone, dns_server
from _discovery_harness import discovering
from actors.discovery import dns as dns_source
from kglb import Family
from kglb.config import DnsSource


def source(server, name="web.test.", rdtype="A", refresh_ms=50):
    host, port = server.rsplit(":", 1)
    return DnsSource(name=name, type=rdtype, refresh_ms=refresh_ms,
                     nameservers=((host, int(port)),))


async def test_a_records_are_reals_and_follow_the_zone():
    zone = Zone()
    zone.set("web.test", "A", 1, "10.1.0.1", "10.1.0.2")
    async with dns_server(zone) as server, discovering(source(server), port=81) as found:
        await found.wait_for(lambda r: r == {("web.test", "10.1.0.1", 81),
                                             ("web.test", "10.1.0.2", 81)})
        zone.set("web.test", "A", 1, "10.1.0.1", "10.1.0.2", "10.1.0.3")
        await found.wait_for(lambda r: len(r) == 3)
        assert found.memory.status().kind == "dns" and found.memory.status().up


async def test_aaaa_records():
    zone = Zone()
    zone.set("web6.test", "AAAA", 1, "2001:db8::1")
    async with dns_server(zone) as server, discovering(
            source(server, name="web6.test.", rdtype="AAAA"),
            resolve_family=Family.INET6) as found:
        await found.wait_for(lambda r: r == {("web6.test", "2001:db8::1", 80)})
        assert [q[2] for q in zone.queries][:1] == ["AAAA"]


async def test_srv_gives_host_port_and_weight_and_targets_resolve_at_the_same_server():
    zone = Zone()
    zone.set("_http._tcp.web.test", "SRV", 1, "10 10 8081 a.web.test.", "10 30 8082 b.web.test.",
             "20 50 8083 backup.web.test.")
    zone.set("a.web.test", "A", 1, "10.1.0.1")
    zone.set("b.web.test", "A", 1, "10.1.0.2")
    async with dns_server(zone) as server, discovering(
            source(server, name="_http._tcp.web.test.", rdtype="SRV")) as found:
        last = await found.wait_for(lambda r: r == {("a.web.test", "10.1.0.1", 8081),
                                                    ("b.web.test", "10.1.0.2", 8082)})
        assert {e.host: e.weight for e in last} == {"a.web.test": 1 / 3, "b.web.test": 1.0}


async def test_a_failing_server_keeps_the_last_list_and_recovers():
    zone = Zone()
    zone.set("web.test", "A", 1, "10.1.0.1", "10.1.0.2")
    async with dns_server(zone) as server, discovering(source(server)) as found:
        await found.wait_for(lambda r: len(r) == 2)
        zone.rcode = dns.rcode.SERVFAIL
        status = await found.wait_status(lambda s: not s.up)
        assert status.endpoints == 2 and "SERVFAIL" in status.error
        zone.rcode = dns.rcode.NOERROR
        zone.set("web.test", "A", 1, "10.1.0.9")  # removes 2 of 2: held once, then agreed
        await found.wait_for(lambda r: {a for _, a, _ in r} == {"10.1.0.9"})
        assert found.memory.status().up


class FakeResolver:
    """Answers with a fixed TTL and logs when it was asked (for virtual-time tests)."""

    def __init__(self, ttl):
        self.ttl = ttl
        self.times = []

    async def resolve(self, name, rdtype, **kwargs):
        self.times.append(trio.current_time())
        zone = Zone()
        zone.set("web.test", "A", self.ttl, "10.1.0.1")
        wire = zone.answer(dns.message.make_query(name, rdtype).to_wire())
        response = dns.message.from_wire(wire)
        return dns.resolver.Answer(dns.name.from_text(name), dns.rdatatype.A, dns.rdataclass.IN,
                                   response)


@pytest.mark.parametrize("ttl,refresh_ms,gap", [(30, 1000, 30.0), (0, 1000, 1.0), (2, 5000, 5.0)])
async def test_asked_again_at_the_ttl_but_never_sooner_than_refresh(
        autojump_clock, monkeypatch, ttl, refresh_ms, gap):
    resolver = FakeResolver(ttl)
    monkeypatch.setattr(dns_source, "resolver_for", lambda _: resolver)
    send, receive = trio.open_memory_channel(100)
    config = balancer_config(hosts=())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(dns_source.run, DnsSource(name="web.test.", refresh_ms=refresh_ms),
                           config, send)
        await trio.sleep(gap * 3 + 0.5)
        nursery.cancel_scope.cancel()
    start = resolver.times[0]
    assert [t - start for t in resolver.times] == [0.0, gap, 2 * gap, 3 * gap]


def test_system_resolver_without_nameservers():
    assert dns_source.resolver_for(DnsSource(name="x.")) is dns.asyncresolver.get_default_resolver()
