"""Host name → address, with dnspython under trio (kglb.md §3.4, decisions.md rows 15, 17).

One resolution per host, with the balancer's ``resolve_family``, used both for
IPVS and for the health checks. An IP literal is returned as it is (canonical
text); a literal of the other family is an error, as in kglb. The first
address of the answer is used.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import dns.asyncresolver
import dns.exception
import dns.resolver

from kglb import Family, canonical_ip

__all__ = ["DEFAULT_TIMEOUT", "Resolve", "ResolveError", "resolve_host"]

#: kglb resolves with a one-minute limit; a balancer waits for its first
#: resolution before it publishes, so we bound it tighter.
DEFAULT_TIMEOUT = 10.0

Resolve = Callable[[str, Family], Awaitable[str]]
"""What a balancer calls to resolve a host: ``await resolve(host, family)``."""


class ResolveError(Exception):
    """The host has no address of the wanted family right now (the reason is the message)."""


def literal(host: str) -> str | None:
    """The canonical text of ``host`` if it is an IP literal, else None."""
    try:
        return canonical_ip(host)
    except ValueError:
        return None


async def resolve_host(
    host: str,
    family: Family,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    resolver: dns.asyncresolver.Resolver | None = None,
) -> str:
    """The first address of ``family`` for ``host``; raises ResolveError.

    ``resolver``: None = the system's (/etc/resolv.conf, its search domains).
    """
    address = literal(host)
    if address is not None:
        if Family.of(address) is not family:
            raise ResolveError(f"{host} is not an {family.name} address")
        return address
    rdtype = "A" if family is Family.INET else "AAAA"
    try:
        if resolver is None:
            resolver = dns.asyncresolver.get_default_resolver()
        answer = await resolver.resolve(host, rdtype, lifetime=timeout)
    except dns.resolver.NXDOMAIN:
        raise ResolveError(f"{host}: no such name") from None
    except dns.resolver.NoAnswer:
        raise ResolveError(f"{host}: no {rdtype} record") from None
    except dns.exception.Timeout:
        raise ResolveError(f"{host}: timeout after {timeout:g} s") from None
    except dns.exception.DNSException as exc:
        raise ResolveError(f"{host}: {exc}") from None
    for rdata in answer:
        return canonical_ip(rdata.address)
    raise ResolveError(f"{host}: empty {rdtype} answer")
