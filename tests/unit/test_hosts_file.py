"""A real named only in /etc/hosts resolves, as in kglb (Go's resolver reads the hosts
file before DNS): kglb/hosts.py parses it, actors/resolver.py consults it first."""

import dns.asyncresolver
import pytest
import trio

from actors import resolver as resolver_module
from actors.resolver import HostsFile, ResolveError, resolve_host
from kglb import Family
from kglb.hosts import parse_hosts

from test_resolver_dns import resolver  # noqa: F401  (the fixture: a loopback DNS server)

HOSTS = """\
# comment line
127.0.0.1   localhost
::1         localhost ip6-localhost
10.9.0.7    Web.Hosts.Test. web   # trailing comment
10.9.0.8    web.hosts.test
fd00::7     web.hosts.test
999.1.1.1   broken.test
not-an-ip   other.test
10.9.0.9
"""


def test_the_hosts_file_parses_as_glibc_reads_it():
    names = parse_hosts(HOSTS)
    assert names["web.hosts.test"] == ("10.9.0.7", "10.9.0.8", "fd00::7")
    assert names["web"] == ("10.9.0.7",)
    assert names["localhost"] == ("127.0.0.1", "::1")
    assert "broken.test" not in names and "other.test" not in names


@pytest.fixture
def hosts_file(tmp_path, monkeypatch):
    path = tmp_path / "hosts"
    path.write_text(HOSTS)
    monkeypatch.setattr(resolver_module, "HOSTS", HostsFile(str(path)))
    # The system's DNS is a loopback port nobody answers: no query leaves the host.
    monkeypatch.setattr(dns.asyncresolver, "get_default_resolver", _unreachable)
    return path


async def test_a_name_only_the_hosts_file_knows_resolves(hosts_file):
    """Failed before: the name went to DNS alone (no such name, or a timeout)."""
    assert await resolve_host("WEB.hosts.test.", Family.INET, timeout=0.5) == "10.9.0.7"
    assert await resolve_host("web.hosts.test", Family.INET6, timeout=0.5) == "fd00::7"


async def test_the_hosts_file_is_read_again_when_it_changes(hosts_file):
    assert await resolve_host("web", Family.INET, timeout=0.5) == "10.9.0.7"
    hosts_file.write_text("10.9.0.70 web\n")
    assert await resolve_host("web", Family.INET, timeout=0.5) == "10.9.0.70"
    hosts_file.unlink()  # no file: DNS alone
    assert await resolver_module.HOSTS.addresses("web") == ()
    with pytest.raises(ResolveError):
        await resolve_host("web", Family.INET, timeout=0.5)


async def test_a_resolver_given_is_asked_alone(hosts_file, resolver):  # noqa: F811
    """A DNS discovery source's own name servers: the hosts file does not apply."""
    hosts_file.write_text("10.9.9.9 web.test\n")
    assert await resolve_host("web.test.", Family.INET, resolver=resolver) == "10.1.0.1"


def _unreachable():
    r = dns.asyncresolver.Resolver(configure=False)
    r.nameservers = ["127.0.0.1"]
    r.port = 9  # discard: nothing answers
    return r


async def test_names_resolved_together_parse_the_file_once(hosts_file, monkeypatch):
    """A config load resolves thousands of names at once: one parse (in a thread) for all."""
    parses = []
    monkeypatch.setattr(resolver_module, "parse_hosts",
                        lambda text: parses.append(text) or parse_hosts(text))
    found = []

    async def one():
        found.append(await resolve_host("web", Family.INET, timeout=0.5))

    async with trio.open_nursery() as nursery:
        for _ in range(50):
            nursery.start_soon(one)
    assert found == ["10.9.0.7"] * 50 and len(parses) == 1
