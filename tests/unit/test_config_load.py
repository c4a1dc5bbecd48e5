"""load(): kglb's example, every default, jsonpb compatibility, whole-input errors, warnings."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import pytest

from kglb import Family, ForwardMethod, Protocol, ServiceFlag, ServiceKey
from kglb._model import SCHEDULERS
from kglb.config import (
    CheckerConfig,
    ConfigError,
    DnsCheck,
    DummyCheck,
    HttpCheck,
    SyslogCheck,
    TcpCheck,
    load,
)

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
EXAMPLE = (ROOT / "examples" / "example_config.json").read_text()
BASE = json.loads((HERE / "configs" / "base.json").read_text())
KGLB_EXAMPLE_SHA256 = "59dc9decdfa78ffc5bfadb904652dd5809f55143e0e2f1f069ab4381e796dfc9"


def with_balancer(**changes) -> str:
    data = copy.deepcopy(BASE)
    data["balancers"][0].update(changes)
    return json.dumps(data)


def only(text: str):
    (balancer,) = load(text).balancers
    return balancer


def problems_of(text: str | bytes) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as info:
        load(text)
    return info.value.problems


# ------------------------------------------------------------------ kglb's example


def test_example_is_kglbs_file_unchanged():
    # sha256 of kglb's examples/example_config.json (shared/reference/kglb-example-config.json)
    assert hashlib.sha256(EXAMPLE.encode()).hexdigest() == KGLB_EXAMPLE_SHA256


def test_example_means_what_kglb_md_1_7_says():
    config = load(EXAMPLE)
    assert config.warnings == ()
    (b,) = config.balancers
    assert (b.name, b.setup_name) == ("example-balancer", "example-setup")
    assert b.service.key == ServiceKey.tcp("192.168.100.10", 80)
    assert (b.service.scheduler, b.service.flags, b.service.timeout) == ("rr", ServiceFlag(0), 0)
    assert b.link == "lo"
    assert b.hosts == ("192.168.100.100", "192.168.100.101")
    assert (b.port, b.forward, b.weight_up) == (80, ForwardMethod.TUNNEL, 1000)
    assert b.checker == CheckerConfig(check=DummyCheck(), interval_ms=10000, rise=1, fall=1,
                                      concurrency=100)
    assert b.bgp is None
    assert b.announce_limit_ratio == 0.9  # the float32 of the file, shown as written
    assert b.identity == "example-balancer-192.168.100.10:80-tcp"


def test_snake_case_and_enum_numbers_mean_the_same():
    assert load((HERE / "configs" / "example_snake_case.json").read_text()) == load(EXAMPLE)


def test_bytes_and_a_bom_are_accepted():
    assert load(EXAMPLE.encode()) == load(EXAMPLE) == load("\ufeff" + EXAMPLE)


# ------------------------------------------------------------------ defaults


def test_kglb_defaults_when_fields_are_zero_or_absent():
    b = only(json.dumps(BASE))
    assert b.checker == CheckerConfig(check=TcpCheck(timeout_ms=5000), interval_ms=5000, rise=3,
                                      fall=2, concurrency=100)
    assert (b.forward, b.service.scheduler, b.weight_up) == (ForwardMethod.TUNNEL, "rr", 1000)
    assert (b.resolve_family, b.link, b.enable_fwmarks, b.configure_reals) == (Family.INET, "lo",
                                                                              False, False)
    assert (b.announce_limit_ratio, b.bgp) == (0.0, None)


def test_explicit_zero_means_default_as_in_kglb():
    b = only(with_balancer(weightUp=0, upstreamChecker={
        "intervalMs": 0, "riseCount": 0, "fallCount": 0, "concurrencyLimit": 0,
        "checker": {"tcp": {"checkTimeoutMs": 0}}}))
    assert (b.weight_up, b.checker.interval_ms, b.checker.rise, b.checker.fall,
            b.checker.concurrency, b.checker.check.timeout_ms) == (1000, 5000, 3, 2, 100, 5000)


@pytest.mark.parametrize("checker, expected", [
    ({"http": {}}, HttpCheck(scheme="http", uri="/", timeout_ms=5000)),
    ({"http": {"scheme": "https", "uri": "api/v1/", "checkTimeoutMs": 7}},
     HttpCheck(scheme="https", uri="/api/v1/", timeout_ms=7)),
    ({"http": {"scheme": "http://", "uri": "/x"}}, HttpCheck(scheme="http", uri="/x")),
    ({"http": {"scheme": "HTTPS"}}, HttpCheck(scheme="https")),
    ({"dns": {"queryString": "example.com"}}, DnsCheck(query="example.com.")),
    ({"dns": {"queryString": "."}}, DnsCheck(query=".")),
    ({"dns": {"queryString": "x.", "queryType": "AAAA", "protocol": "UDP", "rcode": 3,
              "checkTimeoutMs": 9}},
     DnsCheck(query="x.", query_type="AAAA", protocol=Protocol.UDP, rcode=3, timeout_ms=9)),
    ({"dns": {"queryString": "x.", "queryType": "TXT"}}, DnsCheck(query="x.", query_type="TXT")),
    ({"dns": {"queryString": "x.", "queryType": 5}}, DnsCheck(query="x.", query_type="SOA")),
    ({"syslog": {}}, SyslogCheck(timeout_ms=5000)),
    ({"syslog": {"logLevel": 10, "port": 514, "protocol": "UDP"}},
     SyslogCheck(log_level=10, port=514, protocol=Protocol.UDP)),
    ({"tcp": {"checkTimeoutMs": 250}}, TcpCheck(timeout_ms=250)),
    ({"dummy": {}}, DummyCheck()),
], ids=lambda v: json.dumps(v) if isinstance(v, dict) else "")
def test_check_defaults_and_normalisation(checker, expected):
    assert only(with_balancer(upstreamChecker={"checker": checker})).checker.check == expected


def test_http_check_keeps_every_field_and_header_order():
    check = only(with_balancer(upstreamChecker={"checker": {"http": {
        "headers": {"X-B": "2", "Host": "h.example", "A": "1"}, "codes": [200, 301],
        "proxyCheckUrl": "https://t.example/", "followRedirects": True}}})).checker.check
    assert check.headers == (("X-B", "2"), ("Host", "h.example"), ("A", "1"))
    assert (check.codes, check.proxy_check_url, check.follow_redirects) == (
        (200, 301), "https://t.example/", True)


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_every_kernel_scheduler(name):
    service = {"ipvsService": {"tcpAttributes": {"address": {"ipv4": "10.0.0.1"}, "port": 80},
                               "scheduler": name.upper()}}
    assert only(with_balancer(lbService=service)).service.scheduler == name


@pytest.mark.parametrize("flags, expected, timeout", [
    (["PERSISTENT"], ServiceFlag.PERSISTENT, 300),
    (["ONEPACKET", "SH_FALLBACK", "SH_PORT"],
     ServiceFlag.ONEPACKET | ServiceFlag.SCHED1 | ServiceFlag.SCHED2, 0),
    (["HASHED"], ServiceFlag(0), 0),
    (["SH_PORT", "PERSISTENT", "PERSISTENT"], ServiceFlag.SCHED2 | ServiceFlag.PERSISTENT, 300),
])
def test_flags(flags, expected, timeout):
    service = {"ipvsService": {"tcpAttributes": {"address": {"ipv4": "10.0.0.1"}, "port": 80},
                               "scheduler": "SH", "flags": flags}}
    b = only(with_balancer(lbService=service))
    assert (b.service.flags, b.service.timeout) == (expected, timeout)


def test_persistence_timeout_and_vip_link():
    service = {"ipvsService": {"udpAttributes": {"address": {"ipv6": "2001:DB8::0:1"}, "port": 53},
                               "flags": ["PERSISTENT"], "persistenceTimeoutS": 0}}
    b = only(with_balancer(lbService=service, vipLink="dummy0",
                           upstreamDiscovery={"port": 53, "resolveFamily": "AF_INET6",
                                              "staticAttributes": {"hosts": ["2001:db8::5"]}}))
    assert b.service.key == ServiceKey.udp("2001:db8::1", 53)
    assert (b.service.timeout, b.link, b.resolve_family) == (0, "dummy0", Family.INET6)


@pytest.mark.parametrize("spelling, expected", [
    ("TUNNEL", ForwardMethod.TUNNEL), ("MASQ", ForwardMethod.MASQ), (1, ForwardMethod.MASQ),
    ("DROUTE", ForwardMethod.DROUTE), ("DR", ForwardMethod.DROUTE), ("2", None)])
def test_forward_methods(spelling, expected):
    text = with_balancer(upstreamRouting={"forwardMethod": spelling})
    if expected is None:  # jsonpb takes enum names or numbers, not quoted numbers
        assert problems_of(text)[0].startswith("balancers[0].upstreamRouting.forwardMethod: unknown")
    else:
        assert only(text).forward is expected


def test_fwmark_service_and_bgp():
    b = only(with_balancer(
        lbService={"ipvsService": {"fwmarkAttributes": {"addressFamily": "AF_INET6", "fwmark": 7}}},
        upstreamDiscovery={"port": 80, "resolveFamily": 1, "staticAttributes": {"hosts": ["r.example"]}},
        dynamicRouting={"announceLimitRatio": 0.3, "bgpAttributes": {
            "localAsn": 65001, "peerAsn": 65000, "community": "65001:1, 65001:2",
            "prefix": {"ipv6": "2001:db8::"}, "prefixlen": 64, "holdTimeMs": 3000}}))
    assert b.key == ServiceKey.for_fwmark(7, Family.INET6)
    assert b.identity == "base-fwmark:7:v6"
    assert b.announce_limit_ratio == 0.3
    route = b.bgp.route()
    assert (route.prefix, route.communities, route.hold_time_ms) == (
        "2001:db8::/64", ("65001:1", "65001:2"), 3000)


def test_empty_config_is_valid_with_a_warning():
    assert load("{}").balancers == load('{"balancers": []}').balancers == ()
    assert load("{}").warnings == ("balancers: no balancers: nothing will be configured",)


def test_warnings_carry_paths():
    config = load(with_balancer(
        configureReals=True,
        lbService={"ipvsService": {"tcpAttributes": {"address": {"ipv4": "10.0.0.1"}, "port": 80},
                                   "flags": ["HASHED", "SH_PORT"]}},
        upstreamChecker={"checker": {"http": {}}},
        upstreamDiscovery={"staticAttributes": {"hosts": ["10.1.0.1"]}}))
    assert config.warnings == (
        "balancers[0].lbService.ipvsService.flags[0]: HASHED is set by the kernel itself: ignored",
        "balancers[0].lbService.ipvsService.flags[1]: SH_PORT has an effect only with the SH or MH "
        "scheduler, not RR",
        "balancers[0].upstreamChecker.checker.http.codes: is empty: every check fails (as in kglb)",
        "balancers[0].configureReals: is not implemented (as in kglb): the VIP is not configured "
        "on the reals",
        "balancers[0].upstreamDiscovery.port: is 0: every health check connects to port 0 and fails",
    )


# ------------------------------------------------------------------ schema (jsonpb)

SCHEMA = {
    "unknown field, with a hint": (with_balancer(riseCount=1),
                                   "balancers[0].riseCount: unknown field of BalancerConfig"),
    "typo": (with_balancer(upstreamChecker={"riseCont": 1, "checker": {"dummy": {}}}),
             "balancers[0].upstreamChecker.riseCont: unknown field of UpstreamChecker; "
             "did you mean 'riseCount'?"),
    "string expected": (with_balancer(name=5), "balancers[0].name: must be a string, not a number"),
    "bool expected": (with_balancer(enableFwmarks="true"),
                      "balancers[0].enableFwmarks: must be true or false, not a string"),
    "unknown enum name": (with_balancer(upstreamRouting={"forwardMethod": "tunnel"}),
                          "balancers[0].upstreamRouting.forwardMethod: unknown ForwardMethods 'tunnel'"),
    "unknown enum number": (with_balancer(upstreamRouting={"forwardMethod": 9}),
                            "balancers[0].upstreamRouting.forwardMethod: unknown ForwardMethods number 9"),
    "negative uint32": (with_balancer(weightUp=-1), "balancers[0].weightUp: -1 is out of range"),
    "uint32 overflow": (with_balancer(weightUp=2**32), "balancers[0].weightUp: 4294967296 is out of range"),
    "huge integer": (with_balancer(weightUp=10**300), "balancers[0].weightUp: 1000000"),
    "fraction for an integer": (with_balancer(weightUp=1.5), "balancers[0].weightUp: must be an integer"),
    "bool for an integer": (with_balancer(weightUp=True), "balancers[0].weightUp: must be an integer"),
    "python-only numeral": (with_balancer(weightUp="1_000"), "balancers[0].weightUp: must be an integer"),
    "two oneof members": (with_balancer(upstreamChecker={"checker": {"dummy": {}, "tcp": {}}}),
                          "balancers[0].upstreamChecker.checker.tcp: only one of dummy, dns, http, "
                          "syslog, tcp may be set (also 'dummy')"),
    "both spellings": (with_balancer(setup_name="x"),
                       "balancers[0].setup_name: given twice (also as 'setupName')"),
    "null in a list": (with_balancer(upstreamDiscovery={"staticAttributes": {"hosts": ["a", None]}}),
                       "balancers[0].upstreamDiscovery.staticAttributes.hosts[1]: must not be null"),
    "list expected": (with_balancer(upstreamDiscovery={"staticAttributes": {"hosts": "a"}}),
                      "balancers[0].upstreamDiscovery.staticAttributes.hosts: must be a list"),
    "object expected": (json.dumps({"balancers": [1]}), "balancers[0]: must be an object, not a number"),
    "map value": (with_balancer(upstreamChecker={"checker": {"http": {"headers": {"A": 1}}}}),
                  "balancers[0].upstreamChecker.checker.http.headers['A']: must be a string"),
    "float out of float32 range": (with_balancer(dynamicRouting={"announceLimitRatio": 1e300}),
                                   "balancers[0].dynamicRouting.announceLimitRatio: 1e+300 is out of range"),
    "top-level unknown": ('{"balancer": []}', "balancer: unknown field of ControlPlaneConfig; "
                                              "did you mean 'balancers'?"),
}


@pytest.mark.parametrize("text, expected", SCHEMA.values(), ids=SCHEMA.keys())
def test_schema(text, expected):
    problems = problems_of(text)
    assert len(problems) == 1 and problems[0].startswith(expected), problems


def test_duplicate_json_keys_are_refused_with_their_path():
    text = with_balancer()[:-3] + ', "name": "again"}]}'
    assert problems_of(text) == ("balancers[0]: key 'name' is given more than once",)


def test_jsonpb_leniencies_are_kept():
    # quoted numbers, null meaning unset, an integral float
    b = only(with_balancer(weightUp="7", configureReals=None, upstreamChecker={
        "intervalMs": 100.0, "checker": {"tcp": None, "dummy": {}}}))
    assert (b.weight_up, b.configure_reals, b.checker.interval_ms) == (7, False, 100)
    assert isinstance(b.checker.check, DummyCheck)


def test_all_schema_problems_at_once():
    text = with_balancer(name=1, foo=2, weightUp=-1)
    assert [p.split(":")[0] for p in problems_of(text)] == [
        "balancers[0].name", "balancers[0].foo", "balancers[0].weightUp"]  # file order


# ------------------------------------------------------------------ whole input


@pytest.mark.parametrize("text, expected", [
    ("", "empty config"),
    (b"", "empty config"),
    (" \n\t", "empty config"),
    ("[]", "the config must be a JSON object, not a list"),
    ("null", "the config must be a JSON object, not null"),
    ('"x"', "the config must be a JSON object, not a string"),
    ("7", "the config must be a JSON object, not a number"),
    ('{"balancers": [\n  {"name": "x",,}\n]}', "invalid JSON at line 2 column 16"),
    ('{"balancers": [', "invalid JSON at line 1 column 16"),
    ('{"a": NaN}', "invalid JSON: NaN is not valid JSON"),
    ('{"a": -Infinity}', "invalid JSON: -Infinity is not valid JSON"),
    ("[" * 100_000, "invalid JSON: nested too deeply"),
    ('{"balancers": [], "x": ' + "9" * 5000 + "}", "invalid JSON: "),
    (b"\xff\xfe{}", "not UTF-8 text: invalid byte at offset 0"),
    (b'{"balancers": [{"name": "\xe9"}]}', "not UTF-8 text: invalid byte at offset 25"),
])
def test_whole_input_problems(text, expected):
    problems = problems_of(text)
    assert len(problems) == 1 and problems[0].startswith(expected), problems


def test_huge_float_literal_is_a_config_error():
    text = with_balancer(dynamicRouting={"announceLimitRatio": 0.5}).replace("0.5", "1e999")
    assert problems_of(text) == (
        "balancers[0].dynamicRouting.announceLimitRatio: is too large for a number",)


def test_config_error_message_lists_every_problem():
    error = ConfigError(["a: x", "b: y"])
    assert str(error) == "a: x\nb: y" and error.problems == ("a: x", "b: y")
    assert ConfigError("one").problems == ("one",)
