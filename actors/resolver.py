"""Host name → address, with dnspython under trio (kglb.md §3.4, decisions.md rows 15, 17).

One resolution per host, with the balancer's ``resolve_family``, used both for
IPVS and for the health checks. An IP literal is returned as it is (canonical
text); a literal of the other family is an error, as in kglb. With the
system's resolver, the hosts file comes first (as Go's resolver, which kglb
uses: a name only ``/etc/hosts`` knows resolves), then DNS. The first address
of the wanted family is used.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable

import dns.asyncresolver
import dns.exception
import dns.resolver
import trio

from kglb import Family, canonical_ip
from kglb.hosts import host_key, parse_hosts

__all__ = ["DEFAULT_TIMEOUT", "HOSTS", "HostsFile", "Resolve", "ResolveError", "resolve_host"]

#: kglb resolves with a one-minute limit; a balancer waits for its first
#: resolution before it publishes, so we bound it tighter.
DEFAULT_TIMEOUT = 10.0

Resolve = Callable[[str, Family], Awaitable[str]]
"""What a balancer calls to resolve a host: ``await resolve(host, family)``."""


class HostsFile:
    """A hosts file, read again when it changes (one stat per lookup: it is small and
    local, and an operator who edits it expects the next resolution to see it). It is
    parsed in a thread: an ad-blocking hosts file can be megabytes."""

    def __init__(self, path: str = "/etc/hosts") -> None:
        self.path = path
        self._seen: tuple[int, int, int] | None = None
        self._names: dict[str, tuple[str, ...]] = {}
        self._reading = trio.Lock()  # thousands of names resolved at once parse it once

    async def addresses(self, host: str) -> tuple[str, ...]:
        """``host``'s addresses in the file, in its order (none: no file, or not there)."""
        if self._changed() is not None:
            async with self._reading:
                seen = self._changed()
                if seen is not None:
                    self._names = await trio.to_thread.run_sync(self._read)
                    self._seen = seen
        return self._names.get(host_key(host), ())

    def _changed(self) -> tuple[int, int, int] | None:
        """The file's identity when it differs from the one parsed last, else None."""
        try:
            info = os.stat(self.path)
        except OSError:
            self._seen, self._names = None, {}  # no file: nothing from it
            return None
        seen = (info.st_mtime_ns, info.st_size, info.st_ino)
        return None if seen == self._seen else seen

    def _read(self) -> dict[str, tuple[str, ...]]:
        try:
            with open(self.path, encoding="utf-8", errors="replace") as file:
                return parse_hosts(file.read())
        except OSError:
            return {}


#: The system's hosts file, consulted before DNS when no resolver is given.
HOSTS = HostsFile()


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

    ``resolver``: None = the system's (:data:`HOSTS` first, then /etc/resolv.conf
    and its search domains); a resolver given (a DNS discovery source's own
    name servers) is asked alone.
    """
    address = literal(host)
    if address is not None:
        if Family.of(address) is not family:
            raise ResolveError(f"{host} is not an {family.name} address")
        return address
    if resolver is None:
        for address in await HOSTS.addresses(host):
            if Family.of(address) is family:
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
