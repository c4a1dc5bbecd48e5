"""The hosts file (``/etc/hosts``): the addresses a name has there (sans-I/O).

kglb resolves a real's host name with Go's system resolver, which reads the
hosts file before it asks DNS (the usual ``hosts: files dns`` order), so a
name that only the hosts file knows still resolves; kglb-trio does the same
(``actors.resolver``). The format: an address, then the names it has (the
canonical name and its aliases); ``#`` starts a comment. Names compare
without case and without a trailing dot. A line whose address does not parse
is skipped, as glibc and Go skip it.
"""

from __future__ import annotations

from ._model import canonical_ip

__all__ = ["host_key", "parse_hosts"]


def host_key(name: str) -> str:
    """How a name is looked up: lower case, no trailing dot."""
    return name.rstrip(".").lower()


def parse_hosts(text: str) -> dict[str, tuple[str, ...]]:
    """Each name (as :func:`host_key` makes it) to its addresses, canonical, in file order."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2:
            continue
        try:
            address = canonical_ip(fields[0])
        except ValueError:
            continue
        for name in fields[1:]:
            addresses = found.setdefault(host_key(name), [])
            if address not in addresses:
                addresses.append(address)
    return {name: tuple(addresses) for name, addresses in found.items()}
