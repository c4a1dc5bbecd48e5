"""DNS discovery: A, AAAA or SRV records of one name, with dnspython on trio sockets.

Asked again when the answer's TTL ran out, but never sooner than
``refreshMs`` after the last query; a failed query is retried after
``refreshMs``. A name that does not exist, or has no record of the type, is
an answer with no reals (maxRemoveRatio holds its removals back); a timeout or
a server failure is a failure (the last list stays). SRV gives host, port and
weight (the lowest priority present); the actor resolves its targets at the
same nameservers.
"""

from __future__ import annotations

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.resolver
import trio

from kglb import canonical_ip
from kglb.config import BalancerConfig, DnsSource
from kglb.discovery import Endpoint, SrvRecord, srv_endpoints

from ._base import Answer, Failure

#: One query (with its retries over the nameservers) gives up after this long.
QUERY_TIMEOUT = 5.0


def resolver_for(source: DnsSource) -> dns.asyncresolver.Resolver:
    """A resolver asking ``source.nameservers`` (the system's resolvers when there are none)."""
    if not source.nameservers:
        return dns.asyncresolver.get_default_resolver()
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = [dns.nameserver.Do53Nameserver(ip, port)
                            for ip, port in source.nameservers]
    return resolver


async def run(source: DnsSource, config: BalancerConfig,
              send: trio.MemorySendChannel[Answer | Failure]) -> None:
    resolver = resolver_for(source)
    refresh = source.refresh_ms / 1000
    while True:
        message, ttl = await query(resolver, source, config.port)
        await send.send(message)
        await trio.sleep(max(refresh, ttl))


async def query(resolver: dns.asyncresolver.Resolver, source: DnsSource,
                port: int) -> tuple[Answer | Failure, float]:
    """One query: (what it says, its TTL in seconds; 0 for a failure)."""
    try:
        answer = await resolver.resolve(source.name, source.type, lifetime=QUERY_TIMEOUT,
                                        search=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return Answer(endpoints=()), 0.0
    except dns.exception.Timeout:
        return Failure(reason=f"{source.name} {source.type}: timeout"), 0.0
    except dns.exception.DNSException as exc:
        return Failure(reason=f"{source.name} {source.type}: {exc}"), 0.0
    ttl = float(answer.rrset.ttl) if answer.rrset is not None else 0.0
    name = source.name.rstrip(".")
    if source.type == "SRV":
        records = sorted((SrvRecord(priority=r.priority, weight=r.weight, port=r.port,
                                    target=r.target.to_text(omit_final_dot=True)) for r in answer),
                         key=lambda r: (r.target, r.port))
        try:
            return Answer(endpoints=srv_endpoints(records)), ttl
        except ValueError as exc:
            return Failure(reason=f"{source.name} SRV: {exc}"), 0.0
    # Sorted: servers rotate their answers, and the same reals are the same list.
    addresses = sorted({canonical_ip(r.address) for r in answer})
    return Answer(endpoints=tuple(Endpoint(host=name, address=a, port=port)
                                  for a in addresses)), ttl
