"""Every validation rule of kglb (kglb.md §1.6) and our fixes, table-driven.

Each case mutates a valid one-balancer config (configs/base.json) and expects a
ConfigError with one problem at a given path.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from kglb.config import ConfigError, load

BASE = json.loads((Path(__file__).parent / "configs" / "base.json").read_text())
B = "balancers[0]"
SVC = f"{B}.lbService.ipvsService"
TCP = f"{SVC}.tcpAttributes"
DISC = f"{B}.upstreamDiscovery"
CHK = f"{B}.upstreamChecker"
BGP = f"{B}.dynamicRouting.bgpAttributes"
GOOD_BGP = {"localAsn": 65001, "peerAsn": 65000, "community": "65001:1",
            "prefix": {"ipv4": "10.0.0.1"}, "prefixlen": 32}


def config(**changes) -> dict:
    """BASE with balancer fields replaced (None deletes); dotted keys reach nested fields."""
    data = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        node = data["balancers"][0]
        *parents, last = dotted.split("__")
        for key in parents:
            node = node.setdefault(key, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return data


def problems_of(data: dict) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as info:
        load(json.dumps(data))
    return info.value.problems


def ipvs(**attributes) -> dict:
    return {"ipvsService": {"tcpAttributes": {"address": {"ipv4": "10.0.0.1"}, "port": 80},
                            **attributes}}


def checker(kind: str, **attributes) -> dict:
    return {"checker": {kind: attributes}}


CASES = {
    # kglb's ValidateBalancer
    "name required": (config(name=""), f"{B}.name: is required"),
    "setup_name required": (config(setupName=None), f"{B}.setupName: is required"),
    "lb_service required": (config(lbService=None), f"{B}.lbService: is required"),
    "ipvs_service required": (config(lbService={}), f"{B}.lbService.ipvsService: is required"),
    "service attributes required": (config(lbService={"ipvsService": {"scheduler": "RR"}}),
                                    f"{SVC}: needs one of tcpAttributes"),
    "port != 0": (config(lbService__ipvsService__tcpAttributes__port=0), f"{TCP}.port: must not be 0"),
    "address required": (config(lbService__ipvsService__tcpAttributes__address=None),
                         f"{TCP}.address: is required"),
    "udp port != 0": (config(lbService={"ipvsService": {"udpAttributes": {
        "address": {"ipv4": "10.0.0.1"}}}}), f"{SVC}.udpAttributes.port: must not be 0"),
    "fwmark != 0": (config(lbService={"ipvsService": {"fwmarkAttributes": {"fwmark": 0}}}),
                    f"{SVC}.fwmarkAttributes.fwmark: must not be 0"),
    "checker section required": (config(upstreamChecker=None), f"{CHK}: is required"),
    "checker required (kglb panicked)": (config(upstreamChecker={"intervalMs": 5}),
                                         f"{CHK}.checker: is required"),
    "checker attributes required": (config(upstreamChecker={"checker": {}}),
                                    f"{CHK}.checker: needs one of dummy"),
    "dns query required": (config(upstreamChecker=checker("dns", protocol="TCP")),
                           f"{CHK}.checker.dns.queryString: is required"),
    "udp dns + fwmarks": (config(enableFwmarks=True, upstreamChecker=checker(
        "dns", queryString="a.", protocol="UDP")),
        f"{CHK}.checker.dns.protocol: udp dns checker doesn't support fwmarks"),
    "syslog port <= 65535": (config(upstreamChecker=checker("syslog", port=65536)),
                             f"{CHK}.checker.syslog.port: must be at most 65535"),
    "routing required": (config(upstreamRouting=None), f"{B}.upstreamRouting: is required"),
    "discovery required (kglb panicked)": (config(upstreamDiscovery=None), f"{DISC}: is required"),
    "discovery attributes required": (config(upstreamDiscovery={"port": 80}),
                                      f"{DISC}: needs staticAttributes"),
    "static hosts non-empty": (config(upstreamDiscovery__staticAttributes__hosts=[]),
                               f"{DISC}.staticAttributes.hosts: must not be empty"),
    "dynamic routing required": (config(dynamicRouting=None), f"{B}.dynamicRouting: is required"),
    "ratio <= 1": (config(dynamicRouting={"announceLimitRatio": 1.01}),
                   f"{B}.dynamicRouting.announceLimitRatio: must be between 0 and 1"),
    "ratio >= 0": (config(dynamicRouting={"announceLimitRatio": -0.5}),
                   f"{B}.dynamicRouting.announceLimitRatio: must be between 0 and 1"),
    "ratio not NaN": (config(dynamicRouting={"announceLimitRatio": "NaN"}),
                      f"{B}.dynamicRouting.announceLimitRatio: must be between 0 and 1"),
    "ratio not infinite": (config(dynamicRouting={"announceLimitRatio": "Infinity"}),
                           f"{B}.dynamicRouting.announceLimitRatio: must be between 0 and 1"),
    "bgp local_asn": (config(dynamicRouting={"bgpAttributes": {**GOOD_BGP, "localAsn": 0}}),
                      f"{BGP}.localAsn: must not be 0"),
    "bgp peer_asn": (config(dynamicRouting={"bgpAttributes": {**GOOD_BGP, "peerAsn": 0}}),
                     f"{BGP}.peerAsn: must not be 0"),
    "bgp community": (config(dynamicRouting={"bgpAttributes": {**GOOD_BGP, "community": " , "}}),
                      f"{BGP}.community: is required"),
    "bgp prefix required": (config(dynamicRouting={"bgpAttributes": {**GOOD_BGP, "prefix": None}}),
                            f"{BGP}.prefix: is required"),
    "bgp prefix valid": (config(dynamicRouting={"bgpAttributes": {
        **GOOD_BGP, "prefix": {"ipv6": "zz::"}}}), f"{BGP}.prefix.ipv6: 'zz::' is not an IP address"),
    "bgp prefixlen != 0": (config(dynamicRouting={"bgpAttributes": {**GOOD_BGP, "prefixlen": 0}}),
                           f"{BGP}.prefixlen: must not be 0"),
    "bgp prefixlen fits": (config(dynamicRouting={"bgpAttributes": {**GOOD_BGP, "prefixlen": 33}}),
                           f"{BGP}.prefixlen: 33 is too long for 10.0.0.1"),
    # our fixes (decisions.md rows 10, 11, 12, 21)
    "invalid VIP text": (config(lbService__ipvsService__tcpAttributes__address={"ipv4": "10.0.0.300"}),
                         f"{TCP}.address.ipv4: '10.0.0.300' is not an IP address"),
    "ipv4 field holds IPv6": (config(lbService__ipvsService__tcpAttributes__address={"ipv4": "::1"}),
                              f"{TCP}.address.ipv4: '::1' is not an IPv4 address"),
    "IP without member": (config(lbService__ipvsService__tcpAttributes__address={}),
                          f"{TCP}.address: needs ipv4 or ipv6"),
    "scoped VIP": (config(lbService__ipvsService__tcpAttributes__address={"ipv6": "fe80::1%eth0"}),
                   f"{TCP}.address.ipv6: 'fe80::1%eth0': a scoped address"),
    "service port <= 65535": (config(lbService__ipvsService__tcpAttributes__port=65536),
                              f"{TCP}.port: must be at most 65535"),
    "only rise set": (config(upstreamChecker={"riseCount": 2, "checker": {"tcp": {}}}),
                      f"{CHK}.fallCount: must be set when riseCount is set (2)"),
    "only fall set": (config(upstreamChecker={"fallCount": 2, "checker": {"tcp": {}}}),
                      f"{CHK}.riseCount: must be set when fallCount is set (2)"),
    "IP_VS_SCH rejected": (config(lbService=ipvs(scheduler="IP_VS_SCH")),
                           f"{SVC}.scheduler: IP_VS_SCH is not a kernel scheduler"),
    "EMPTY flag": (config(lbService=ipvs(flags=["EMPTY"])), f"{SVC}.flags[0]: EMPTY is not a flag"),
    "dns label too long": (config(upstreamChecker=checker("dns", queryString="a" * 64 + ".net")),
                           f"{CHK}.checker.dns.queryString: '{'a' * 64}.net' is not a domain name"),
    "SCHED1 flag": (config(lbService=ipvs(flags=["PERSISTENT", "SCHED1"])),
                    f"{SVC}.flags[1]: SCHED1 is not supported"),
    "SCHED2 flag": (config(lbService=ipvs(flags=["SCHED2"])), f"{SVC}.flags[0]: SCHED2 is not supported"),
    "SCHED3 flag": (config(lbService=ipvs(flags=["SCHED3"])), f"{SVC}.flags[0]: SCHED3 is not supported"),
    "SH_NOPORT flag": (config(lbService=ipvs(flags=[9])), f"{SVC}.flags[0]: SH_NOPORT is not supported"),
    "persistence timeout needs PERSISTENT": (config(lbService=ipvs(persistenceTimeoutS=60)),
                                             f"{SVC}.persistenceTimeoutS: needs the PERSISTENT flag"),
    "mdb rejected": (config(upstreamDiscovery={"port": 80, "mdbAttributes": {"query": "q"}}),
                     f"{DISC}.mdbAttributes: mdb discovery is not implemented"),
    "MASQ + port 0": (config(upstreamRouting={"forwardMethod": "MASQ"}, upstreamDiscovery__port=0),
                      f"{DISC}.port: must not be 0 with forwardMethod MASQ"),
    "discovery port <= 65535": (config(upstreamDiscovery__port=65536),
                                f"{DISC}.port: must be at most 65535"),
    "blank host": (config(upstreamDiscovery__staticAttributes__hosts=["10.1.0.1", ""]),
                   f"{DISC}.staticAttributes.hosts[1]: '' is neither an IP address nor a host name"),
    "host with a port": (config(upstreamDiscovery__staticAttributes__hosts=["web:80"]),
                         f"{DISC}.staticAttributes.hosts[0]: 'web:80' is neither"),
    "duplicate host": (config(upstreamDiscovery__staticAttributes__hosts=["Web.example.", "web.example"]),
                       f"{DISC}.staticAttributes.hosts[1]: 'web.example' is listed twice (also at [0])"),
    "literal of the wrong family": (config(upstreamDiscovery__staticAttributes__hosts=["2001:db8::1"]),
                                    f"{DISC}.staticAttributes.hosts[0]: 2001:db8::1 is not an address "
                                    "of resolveFamily AF_INET"),
    "mixed families need TUNNEL": (config(upstreamRouting={"forwardMethod": "MASQ"},
                                          upstreamDiscovery__resolveFamily="AF_INET6",
                                          upstreamDiscovery__staticAttributes__hosts=["2001:db8::1"]),
                                   f"{DISC}.resolveFamily: AF_INET6 reals in an v4 service need "
                                   "forwardMethod TUNNEL"),
    "http scheme": (config(upstreamChecker=checker("http", scheme="ftp", codes=[200])),
                    f"{CHK}.checker.http.scheme: must be http or https, not 'ftp'"),
    "http header name": (config(upstreamChecker=checker("http", headers={"Bad Name": "x"}, codes=[200])),
                         f"{CHK}.checker.http.headers['Bad Name']: is not a valid header name"),
    "http header value": (config(upstreamChecker=checker("http", headers={"X": "a\r\nB: c"}, codes=[200])),
                          f"{CHK}.checker.http.headers['X']: header value contains CR, LF or NUL"),
    "http proxy url": (config(upstreamChecker=checker("http", proxyCheckUrl="example.com", codes=[200])),
                       f"{CHK}.checker.http.proxyCheckUrl: must be an http:// or https:// URL"),
    "dns query not a name": (config(upstreamChecker=checker("dns", queryString="a b.")),
                             f"{CHK}.checker.dns.queryString: 'a b.' is not a domain name"),
    "udp syslog + fwmarks": (config(enableFwmarks=True, upstreamChecker=checker("syslog", protocol="UDP")),
                             f"{CHK}.checker.syslog.protocol: udp syslog checker doesn't support fwmarks"),
    "weight_up fits the kernel": (config(weightUp=2**31), f"{B}.weightUp: must be at most 2147483647"),
    "vip_link blank": (config(vipLink=""), f"{B}.vipLink: '' is not a valid link name"),
    "vip_link with a slash": (config(vipLink="a/b"), f"{B}.vipLink: 'a/b' is not a valid link name"),
    "vip_link too long": (config(vipLink="x" * 16), f"{B}.vipLink: '{'x' * 16}' is not a valid link name"),
}


@pytest.mark.parametrize("data, expected", CASES.values(), ids=CASES.keys())
def test_rule(data, expected):
    problems = problems_of(data)
    assert len(problems) == 1, problems
    assert problems[0].startswith(expected), problems


def test_base_is_valid():
    assert load(json.dumps(BASE)).balancers[0].name == "base"


def two(second: dict, **first_changes) -> dict:
    data = config(**first_changes)
    data["balancers"].append({**copy.deepcopy(BASE["balancers"][0]), **second})
    return data


CROSS = {
    "duplicate lb_service (names may differ)": (
        two({"name": "other"}),
        "balancers[1].lbService: duplicate lb_service 10.0.0.1:80-tcp (also balancers[0])"),
    "duplicate after canonicalising the VIP": (
        two({"lbService": {"ipvsService": {"udpAttributes": {
            "address": {"ipv6": "2001:DB8:0::1"}, "port": 53}}}},
            lbService={"ipvsService": {"udpAttributes": {"address": {"ipv6": "2001:db8::1"}, "port": 53}}}),
        "balancers[1].lbService: duplicate lb_service 2001:db8::1:53-udp"),
    "duplicate fwmark": (
        two({"lbService": {"ipvsService": {"fwmarkAttributes": {"fwmark": 7}}}},
            lbService={"ipvsService": {"fwmarkAttributes": {"fwmark": 7}}}),
        "balancers[1].lbService: duplicate lb_service fwmark:7:v4"),
    "inconsistent enable_fwmarks per VIP": (
        two({"lbService": ipvs() | {"ipvsService": {"tcpAttributes": {
            "address": {"ipv4": "10.0.0.1"}, "port": 443}}}, "enableFwmarks": True}),
        "balancers[1].enableFwmarks: inconsistent value of enable_fwmarks for VIP 10.0.0.1"),
    "inconsistent enable_fwmarks among fwmark services": (
        two({"lbService": {"ipvsService": {"fwmarkAttributes": {"fwmark": 8}}}, "enableFwmarks": True},
            lbService={"ipvsService": {"fwmarkAttributes": {"fwmark": 7}}}),
        "balancers[1].enableFwmarks: inconsistent value of enable_fwmarks for VIP fwmark"),
    "one link per VIP": (
        two({"lbService": {"ipvsService": {"udpAttributes": {
            "address": {"ipv4": "10.0.0.1"}, "port": 80}}}, "vipLink": "dummy0"}),
        "balancers[1].vipLink: VIP 10.0.0.1 is on link 'lo' in balancers[0]"),
}


@pytest.mark.parametrize("data, expected", CROSS.values(), ids=CROSS.keys())
def test_rule_across_balancers(data, expected):
    problems = problems_of(data)
    assert len(problems) == 1, problems
    assert problems[0].startswith(expected), problems


def test_same_vip_different_ports_and_same_name_are_fine():
    data = two({"lbService": {"ipvsService": {"tcpAttributes": {
        "address": {"ipv4": "10.0.0.1"}, "port": 443}}}})
    config_ = load(json.dumps(data))
    assert [b.identity for b in config_.balancers] == ["base-10.0.0.1:80-tcp", "base-10.0.0.1:443-tcp"]


def test_every_problem_is_listed_in_document_order():
    data = config(name="", lbService__ipvsService__tcpAttributes__port=0,
                  upstreamChecker={"riseCount": 2, "checker": {"dns": {}}},
                  dynamicRouting={"announceLimitRatio": 2})
    data["balancers"].append({**copy.deepcopy(BASE["balancers"][0]), "setupName": ""})
    assert problems_of(data) == (
        f"{B}.name: is required",
        f"{TCP}.port: must not be 0",
        f"{CHK}.fallCount: must be set when riseCount is set (2); set both, or neither for 3/2",
        f"{CHK}.checker.dns.queryString: is required (the name to query)",
        f"{B}.dynamicRouting.announceLimitRatio: must be between 0 and 1, not 2.0",
        "balancers[1].setupName: is required",
    )


def test_paths_use_the_users_spelling():
    data = {"balancers": [{"name": "n", "setup_name": "s",
                           "lb_service": {"ipvs_service": {"tcp_attributes": {
                               "address": {"ipv4": "10.0.0.1"}, "port": 80}}},
                           "upstream_routing": {},
                           "upstream_discovery": {"port": 80, "static_attributes": {"hosts": ["h"]}},
                           "upstream_checker": {"rise_count": 1, "checker": {"dummy": {}}},
                           "dynamic_routing": {}}]}
    assert problems_of(data) == (
        "balancers[0].upstream_checker.fallCount: must be set when riseCount is set (1); "
        "set both, or neither for 3/2",)
