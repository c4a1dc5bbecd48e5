"""Property (issue 13, problem 5): a config that ``--check`` passes never makes the
writer fail an operation for a reason the config alone determines.

Configs are drawn from small pools that include what once slipped through (communities
BIRD refuses, a prefix of the other family, MASQ with port 0, weights past the kernel's
int, VIPs shared by balancers). When ``load`` accepts one, its desired state, with every
real up and with every real provisional, must generate without problems, apply to the
in-memory kernel (MemoryDataPlane, which refuses as the kernel does) from empty and from
each other, and its routes must render into a BIRD include file.
"""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from actors.dataplane import MemoryDataPlane
from kglb import DataPlaneState, Owned
from kglb.balancer import Upstream, balancer_state
from kglb.bird import Neighbor, render, sessions_for
from kglb.config import ConfigError, load
from kglb.fwmark import FwmarkPool
from kglb.generator import generate
from kglb.health import Health
from kglb.plan import plan

# Pools: mostly valid values (so that enough configs load), a few that must be refused.
VIPS = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "2001:db8::1", "2001:db8::2"] * 3 + ["300.1.1.1"]
HOSTS = {"AF_INET": [f"10.1.0.{i}" for i in range(1, 10)] + ["2001:db8:1::9"],
         "AF_INET6": [f"2001:db8:1::{i}" for i in range(1, 10)] + ["10.1.0.9"]}
COMMUNITIES = ["65001:100", "65001:1,65001:2", "1:2:3", "65535:65535 4294967295:0:1"] * 3 + [
    "garbage", "70000:1", "1:2:4294967296", ""]
PREFIXES = [{"ipv4": "10.0.0.1"}, {"ipv4": "10.0.0.0"}, {"ipv6": "2001:db8::"},
            {"ipv6": "2001:db8::1"}, {"ipv4": "10.9.0.0"}]
NEIGHBORS = (Neighbor(address="192.0.2.1"), Neighbor(address="2001:db8:ff::1", asn=65010))



def mostly(valid: list, refused: list) -> st.SearchStrategy:
    """One of ``valid`` nine times in ten, else one of ``refused``."""
    return st.sampled_from(valid * (9 * max(1, len(refused)) // len(valid) + 1) + refused)


ip = st.sampled_from(VIPS).map(lambda a: {"ipv6": a} if ":" in a else {"ipv4": a})
addressed = st.builds(lambda kind, address, port: {kind: {"address": address, "port": port}},
                      st.sampled_from(["tcpAttributes", "udpAttributes"]), ip,
                      mostly([80, 443, 53, 65535], [0]))
fwmark = st.builds(lambda family, mark: {"fwmarkAttributes": {"addressFamily": family, "fwmark": mark}},
                   st.sampled_from(["AF_INET", "AF_INET6"]), st.sampled_from([1, 7]))
service = st.one_of(addressed, addressed, addressed, fwmark)
bgp = st.fixed_dictionaries({
    "localAsn": st.sampled_from([65001, 4200000000]), "peerAsn": st.sampled_from([65000, 1]),
    "community": st.sampled_from(COMMUNITIES), "prefix": st.sampled_from(PREFIXES),
    "prefixlen": st.sampled_from([8, 24, 32, 32, 64, 128, 128]),
    "holdTimeMs": st.sampled_from([0, 5000, 4294967295]),
})
balancer = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["web", "dns", "web"]),
        "setupName": st.just("edge"),
        "lbService": st.builds(
            lambda attributes, scheduler, flags: {"ipvsService": {**attributes, "scheduler": scheduler,
                                                                  "flags": flags}},
            service, mostly(["RR", "WRR", "SH", "MH", "LC"], ["IP_VS_SCH"]),
            st.lists(st.sampled_from(["PERSISTENT", "ONEPACKET", "SH_FALLBACK", "SH_PORT",
                                      "HASHED"]), unique=True, max_size=3)),
        "upstreamRouting": st.builds(lambda f: {"forwardMethod": f},
                                     st.sampled_from(["TUNNEL", "TUNNEL", "MASQ", "DROUTE"])),
        "upstreamDiscovery": st.sampled_from(["AF_INET", "AF_INET6"]).flatmap(
            lambda family: st.builds(
                lambda port, hosts: {"port": port, "resolveFamily": family,
                                     "staticAttributes": {"hosts": hosts}},
                mostly([8080, 80], [0]),
                st.lists(mostly(HOSTS[family][:-1], HOSTS[family][-1:]), min_size=1, max_size=3,
                         unique=True))),
        "upstreamChecker": st.just({"checker": {"tcp": {}}}),
        "dynamicRouting": st.one_of(st.just({}), bgp.map(lambda b: {"bgpAttributes": b})),
    },
    optional={
        "weightUp": mostly([1, 1000, 2147483647], [2147483648]),
        "enableFwmarks": mostly([False], [True]),
        "vipLink": mostly(["lo", "dummy0"], ["bad/name"]),
        "drainTimeoutMs": st.sampled_from([0, 1000, 4294967295]),
        "slowStartMs": st.sampled_from([0, 1000, 4294967295]),
        "flapDamping": mostly([{"halfLifeMs": 1000, "suppressFlaps": 3, "reuseFlaps": 1}],
                              [{"halfLifeMs": 0, "suppressFlaps": 1, "reuseFlaps": 3}]),
        "minPooledRatio": mostly([0.0, 0.5, 1.0], [1.5]),
    },
)
configs = st.lists(balancer, min_size=1, max_size=2).map(lambda bs: {"balancers": bs})


def desired(config, *, up: bool) -> DataPlaneState:
    pool, states = FwmarkPool(), []
    for b in config.balancers:
        upstreams = [Upstream(host=h, address=h, health=Health(up=up, count=b.checker.rise if up
                                                                 else 0, settled=up))
                     for h in b.hosts]
        marks = {h: pool.allocate(h) for h in b.hosts} if b.enable_fwmarks else {}
        states.append(balancer_state(b, upstreams, initial=not up, fwmarks=marks))
    generated = generate(states)
    assert generated.problems == ()
    return generated.state


def apply(dataplane: MemoryDataPlane, target: DataPlaneState) -> None:
    ops = plan(dataplane.state, DataPlaneState(services=target.services,
                                               addresses=target.addresses), Owned())
    dataplane.tamper(ops)  # raises Refused as the kernel would refuse


@settings(max_examples=400, deadline=None)
@given(configs)
def test_a_config_that_checks_never_makes_the_writer_fail(raw):
    try:
        config = load(json.dumps(raw))
    except ConfigError:
        return
    healthy, starting = desired(config, up=True), desired(config, up=False)
    for first, then in ((healthy, starting), (starting, healthy)):
        dataplane = MemoryDataPlane()
        apply(dataplane, first)
        apply(dataplane, then)
    routes = [b.bgp.route() for b in config.balancers if b.bgp is not None]
    sessions = set().union(*(sessions_for(r, NEIGHBORS) for r in routes))
    assert "protocol static" in render(routes, sessions) or not routes
