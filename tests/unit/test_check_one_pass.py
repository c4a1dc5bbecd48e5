"""``--check`` is one pass (issue 13, problem 5): format errors and rules together, every
rule the run would refuse, and a warning for names that do not resolve now."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from actors import _cmd_check, cli
from actors.resolver import ResolveError
from kglb.config import ConfigError, load

CONFIGS = Path(__file__).parent / "configs"


def base() -> dict:
    return json.loads((CONFIGS / "base.json").read_text())


def problems_of(config: dict) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as info:
        load(json.dumps(config))
    return info.value.problems


def test_format_errors_do_not_hide_rule_errors():
    config = base()
    b = config["balancers"][0]
    b["upstreamChecker"].update(riseCount=-1, fallCount=2)
    b["upstreamRouting"] = {"forwardMethod": "TUNEL"}
    b["lbService"]["ipvsService"]["tcpAttributes"]["address"] = {"ipv4": "300.1.1.1"}
    assert problems_of(config) == (
        "balancers[0].upstreamRouting.forwardMethod: unknown ForwardMethods 'TUNEL' "
        "(one of TUNNEL, MASQ, DROUTE, DR); did you mean 'TUNNEL'?",
        "balancers[0].upstreamChecker.riseCount: -1 is out of range (0..4294967295)",
        "balancers[0].lbService.ipvsService.tcpAttributes.address.ipv4: "
        "'300.1.1.1' is not an IP address",
    )


def test_a_typo_does_not_hide_a_bad_vip():
    config = base()
    b = config["balancers"][0]
    b["weightUpp"] = 5
    b["lbService"]["ipvsService"]["tcpAttributes"]["address"] = {"ipv4": "10.0.0.256"}
    assert problems_of(config) == (
        "balancers[0].weightUpp: unknown field of BalancerConfig; did you mean 'weightUp'?",
        "balancers[0].lbService.ipvsService.tcpAttributes.address.ipv4: "
        "'10.0.0.256' is not an IP address",
    )


def test_a_bad_vip_does_not_hide_masq_with_port_0():
    config = base()
    b = config["balancers"][0]
    b["lbService"]["ipvsService"]["tcpAttributes"]["address"] = {"ipv4": "300.1.1.1"}
    b["upstreamRouting"] = {"forwardMethod": "MASQ"}
    b["upstreamDiscovery"]["port"] = 0
    assert problems_of(config) == (
        "balancers[0].lbService.ipvsService.tcpAttributes.address.ipv4: "
        "'300.1.1.1' is not an IP address",
        "balancers[0].upstreamDiscovery.port: must not be 0 with forwardMethod MASQ",
    )


def test_what_a_dropped_part_implies_is_not_reported_again():
    config = base()
    b = config["balancers"][0]
    b["upstreamDiscovery"]["staticAttributes"]["hosts"] = ["10.1.0.1", 7]
    b["lbService"]["ipvsService"]["tcpAttributes"] = "10.0.0.1:80"
    b["upstreamChecker"]["riseCount"] = "two"
    b["upstreamChecker"]["fallCount"] = 2
    assert problems_of(config) == (
        "balancers[0].lbService.ipvsService.tcpAttributes: must be an object, not a string",
        "balancers[0].upstreamDiscovery.staticAttributes.hosts[1]: must be a string, not a number",
        "balancers[0].upstreamChecker.riseCount: must be an integer, not 'two'",
    )  # no "is required", "must not be empty", "must be set when fallCount is set"


def with_bgp(**attributes) -> dict:
    config = base()
    bgp = {"localAsn": 65001, "peerAsn": 65000, "community": "65001:100",
           "prefix": {"ipv4": "10.0.0.1"}, "prefixlen": 32}
    bgp.update(attributes)
    config["balancers"][0]["dynamicRouting"] = {"bgpAttributes": bgp}
    return config


@pytest.mark.parametrize("community, expected", [
    ("garbage", "bad community 'garbage': expected A:B or A:B:C with decimal parts"),
    ("65001:100 70000:1", "bad community '70000:1': a part exceeds 16 bits"),
    ("1:2:4294967296", "bad community '1:2:4294967296': a part exceeds 32 bits"),
])
def test_communities_bird_refuses_are_refused_at_load(community, expected):
    assert problems_of(with_bgp(community=community)) == (
        f"balancers[0].dynamicRouting.bgpAttributes.community: {expected} (BIRD refuses it)",)


def test_large_and_standard_communities_load():
    route = load(json.dumps(with_bgp(community="65001:100,1:2:4294967295"))).balancers[0].bgp.route()
    assert route.communities == ("1:2:4294967295", "65001:100")


def test_prefix_of_the_other_family_is_refused():
    assert problems_of(with_bgp(prefix={"ipv6": "2001:db8::1"}, prefixlen=128)) == (
        "balancers[0].dynamicRouting.bgpAttributes.prefix: 2001:db8::1/128 is not an IPv4 prefix, "
        "like the service TCP 10.0.0.1:80",)


def test_prefix_that_does_not_contain_the_vip_is_a_warning():
    elsewhere = load(json.dumps(with_bgp(prefix={"ipv4": "10.9.0.0"}, prefixlen=16)))
    assert elsewhere.warnings == (
        "balancers[0].dynamicRouting.bgpAttributes.prefix: 10.9.0.0/16 does not contain the VIP "
        "10.0.0.1: the route does not bring its traffic here",)
    aggregate = load(json.dumps(with_bgp(prefix={"ipv4": "10.0.0.0"}, prefixlen=24)))
    assert aggregate.balancers[0].bgp.route().prefix == "10.0.0.0/24"
    assert aggregate.warnings == ()


# ------------------------------------------------------------------ names that do not resolve


@pytest.fixture
def resolver(monkeypatch):
    """Names resolve to 10.1.0.9 unless they end in .invalid; records what was asked."""
    asked = []

    async def resolve(host, family, *, timeout):
        asked.append((host, family.name, timeout))
        if host.endswith(".invalid"):
            raise ResolveError(f"{host}: no such name")
        return "10.1.0.9"

    monkeypatch.setattr(_cmd_check, "resolve", resolve)
    return asked


def with_hosts(tmp_path, *hosts) -> Path:
    config = base()
    config["balancers"][0]["upstreamDiscovery"]["staticAttributes"]["hosts"] = list(hosts)
    path = tmp_path / "c.json"
    path.write_text(json.dumps(config))
    return path


def test_check_warns_about_names_that_do_not_resolve(tmp_path, capsys, resolver):
    path = with_hosts(tmp_path, "10.1.0.1", "web.example.net", "no-such-host.invalid")
    assert cli.main(["--config", str(path), "--check"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1:] == [
        "warning: balancers[0].upstreamDiscovery.staticAttributes.hosts[2]: 'no-such-host.invalid' "
        "does not resolve now (no-such-host.invalid: no such name); it is left out until it does",
        f"{path}: OK, 1 balancer",
    ]
    assert sorted(resolver) == [("no-such-host.invalid", "INET", 5.0),
                                ("web.example.net", "INET", 5.0)]  # literals are not looked up


def test_strict_makes_warnings_fatal(tmp_path, capsys, resolver):
    path = with_hosts(tmp_path, "10.1.0.1", "no-such-host.invalid")
    assert cli.main(["--config", str(path), "--check", "--strict"]) == 3
    captured = capsys.readouterr()
    assert captured.err == f"{path}: 1 warning, failing (--strict)\n"
    assert "OK" not in captured.out
    clean = with_hosts(tmp_path, "10.1.0.1", "web.example.net")
    assert cli.main(["--config", str(clean), "--check", "--strict"]) == 0


def test_droute_needs_a_port_like_masq():
    """Found by test_check_property: the generator refused every state of this config."""
    config = base()
    config["balancers"][0]["upstreamRouting"] = {"forwardMethod": "DROUTE"}
    config["balancers"][0]["upstreamDiscovery"]["port"] = 0
    assert problems_of(config) == (
        "balancers[0].upstreamDiscovery.port: must not be 0 with forwardMethod DROUTE",)


def test_a_dropped_part_hides_only_what_follows_from_it():
    config = base()
    config["balancers"].append(base()["balancers"][0])  # the same service twice
    b = config["balancers"][1]
    b["lbService"]["ipvsService"]["flags"] = ["PERSISTENT", "STICKY"]
    b["lbService"]["ipvsService"]["tcpAttributes"]["address"] = {"ipv4": 10}
    problems = problems_of(config)
    assert problems[0].startswith("balancers[1].lbService.ipvsService.tcpAttributes.address.ipv4: "
                                  "must be a string")
    assert problems[1].startswith("balancers[1].lbService.ipvsService.flags[1]: unknown Flag 'STICKY'")
    assert len(problems) == 2  # not "address: needs ipv4 or ipv6"
    b["lbService"]["ipvsService"]["tcpAttributes"]["address"] = {"ipv4": "10.0.0.1"}
    assert problems_of(config)[1] == ("balancers[1].lbService: duplicate lb_service "
                                      "10.0.0.1:80-tcp (also balancers[0])")
