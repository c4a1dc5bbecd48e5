"""The schema keeps kglb's wire and JSON contract; the committed generated code is current."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kglb.pb import common_pb2, config_pb2, healthchecker_pb2, state_pb2

ROOT = Path(__file__).parents[2]

# kglb's fields (proto/dropbox/proto/kglb/*.proto): message -> {field: number}.
KGLB_FIELDS = {
    config_pb2.ControlPlaneConfig: {"balancers": 1},
    config_pb2.BalancerConfig: {"name": 1, "lb_service": 2, "upstream_routing": 3,
                                "upstream_discovery": 4, "upstream_checker": 5, "dynamic_routing": 6,
                                "configure_reals": 7, "setup_name": 8, "weight_up": 9,
                                "enable_fwmarks": 10},
    config_pb2.UpstreamRouting: {"forward_method": 1},
    config_pb2.UpstreamDiscovery: {"port": 1, "resolve_family": 2, "mdb_attributes": 10,
                                   "static_attributes": 11},
    config_pb2.MdbDiscoveryAttributes: {"query": 1},
    config_pb2.StaticDiscoveryAttributes: {"hosts": 1},
    config_pb2.DynamicRouting: {"announce_limit_ratio": 1, "bgp_attributes": 10},
    common_pb2.IP: {"ipv4": 1, "ipv6": 2},
    common_pb2.LoadBalancerService: {"ipvs_service": 1},
    common_pb2.IpvsService: {"tcp_attributes": 1, "udp_attributes": 2, "fwmark_attributes": 3,
                             "scheduler": 4, "flags": 5},
    common_pb2.IpvsTcpAttributes: {"address": 1, "port": 2},
    common_pb2.IpvsUdpAttributes: {"address": 1, "port": 2},
    common_pb2.IpvsFwmarkAttributes: {"address_family": 1, "fwmark": 2},
    common_pb2.UpstreamState: {"address": 1, "port": 2, "hostname": 3, "weight": 4,
                               "forward_method": 5},
    common_pb2.BalancerState: {"name": 1, "lb_service": 2, "upstreams": 3},
    common_pb2.DynamicRoute: {"bgp_attributes": 10},
    common_pb2.BgpRouteAttributes: {"local_asn": 1, "peer_asn": 2, "community": 3, "prefix": 5,
                                    "prefixlen": 6, "hold_time_ms": 7},
    common_pb2.LinkAddress: {"link_name": 1, "address": 2},
    common_pb2.Stats: {name: number for number, name in enumerate(
        "connections_count packets_in_count packets_out_count bytes_in_count bytes_out_count "
        "connections_rate packets_in_rate packets_out_rate bytes_in_rate bytes_out_rate "
        "active_conns_count inact_conns_count persist_conns_count".split(), start=1)},
    state_pb2.DataPlaneState: {"balancers": 1, "dynamic_routes": 2, "link_addresses": 3},
    healthchecker_pb2.UpstreamChecker: {"interval_ms": 2, "rise_count": 3, "fall_count": 4,
                                        "checker": 5, "concurrency_limit": 6},
    healthchecker_pb2.HealthCheckerAttributes: {"dummy": 1, "dns": 2, "http": 3, "syslog": 4, "tcp": 5},
    healthchecker_pb2.HttpCheckerAttributes: {"scheme": 1, "uri": 2, "headers": 3, "codes": 4,
                                              "proxy_check_url": 5, "follow_redirects": 6,
                                              "check_timeout_ms": 10},
    healthchecker_pb2.DnsCheckerAttributes: {"query_string": 1, "query_type": 2, "protocol": 3,
                                             "rcode": 4, "check_timeout_ms": 10},
    healthchecker_pb2.SyslogCheckerAttributes: {"log_level": 1, "port": 2, "protocol": 3,
                                                "check_timeout_ms": 10},
    healthchecker_pb2.TcpCheckerAttributes: {"check_timeout_ms": 1},
}
OURS = {
    (common_pb2.IpvsService, "persistence_timeout_s"): 6,
    (config_pb2.BalancerConfig, "vip_link"): 11,
    (config_pb2.UpstreamDiscovery, "max_remove_ratio"): 3,
    (config_pb2.UpstreamDiscovery, "file_attributes"): 12,
    (config_pb2.UpstreamDiscovery, "dns_attributes"): 13,
    (config_pb2.UpstreamDiscovery, "etcd_attributes"): 14,
    (config_pb2.BalancerConfig, "drain_timeout_ms"): 12,
    (config_pb2.BalancerConfig, "slow_start_ms"): 13,
    (config_pb2.BalancerConfig, "flap_damping"): 14,
    (config_pb2.BalancerConfig, "min_pooled_ratio"): 15,
}
KGLB_ENUMS = {
    common_pb2.ForwardMethods: {"TUNNEL": 0, "MASQ": 1},
    common_pb2.AddressFamily: {"AF_INET": 0, "AF_INET6": 1},
    common_pb2.IPProtocol: {"TCP": 0, "UDP": 1},
    healthchecker_pb2.IPProtocol: {"TCP": 0, "UDP": 1},
    common_pb2.IpvsService.Scheduler: {"RR": 0, "WRR": 1, "IP_VS_SCH": 2},
    common_pb2.IpvsService.Flag: {name: number for number, name in enumerate(
        "EMPTY PERSISTENT HASHED ONEPACKET SCHED1 SCHED2 SCHED3 SH_FALLBACK SH_PORT SH_NOPORT".split())},
    healthchecker_pb2.DnsCheckerAttributes.DNSQueryType: {"A": 0, "AAAA": 1, "NS": 2, "MX": 3,
                                                          "TXT": 4, "SOA": 5},
}


@pytest.mark.parametrize("message", KGLB_FIELDS, ids=lambda m: m.DESCRIPTOR.full_name)
def test_kglb_fields_keep_their_numbers_and_json_names(message):
    fields = message.DESCRIPTOR.fields_by_name
    ours = {name for (m, name) in OURS if m is message}
    assert set(fields) - ours == set(KGLB_FIELDS[message])
    for name, number in KGLB_FIELDS[message].items():
        assert fields[name].number == number
        head, *rest = name.split("_")
        assert fields[name].json_name == head + "".join(p.capitalize() for p in rest)


def test_packages_are_kglbs():
    assert config_pb2.BalancerConfig.DESCRIPTOR.full_name == "kglb.BalancerConfig"
    assert healthchecker_pb2.UpstreamChecker.DESCRIPTOR.full_name == "healthchecker.UpstreamChecker"


def test_added_fields_take_new_numbers():
    for (message, name), number in OURS.items():
        assert message.DESCRIPTOR.fields_by_name[name].number == number
        assert message.DESCRIPTOR.fields_by_name[name].has_presence  # proto3 optional


@pytest.mark.parametrize("enum", KGLB_ENUMS, ids=lambda e: e.DESCRIPTOR.full_name)
def test_kglb_enum_values_are_kept(enum):
    for name, number in KGLB_ENUMS[enum].items():
        assert enum.Value(name) == number


def test_added_enum_values():
    schedulers = common_pb2.IpvsService.Scheduler
    added = "LC WLC LBLC LBLCR DH SH SED NQ FO OVF MH TWOS".split()
    assert [schedulers.Value(n) for n in added] == list(range(3, 15))
    assert common_pb2.ForwardMethods.Value("DROUTE") == common_pb2.ForwardMethods.Value("DR") == 2


needs_protoc = pytest.mark.skipif(importlib.util.find_spec("grpc_tools") is None,
                                  reason="grpcio-tools (the dev extra) is not installed")


@needs_protoc
def test_committed_code_is_current():
    run = subprocess.run(["bash", "tools/gen-proto.sh", "--check"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, env={"PY": sys.executable, "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr


@needs_protoc
def test_check_fails_on_stale_code(tmp_path):
    for part in ("proto", "tools/gen-proto.sh", "kglb/pb"):
        source, target = ROOT / part, tmp_path / part
        target.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if source.is_dir() else shutil.copy)(source, target)
    stale = tmp_path / "kglb/pb/config_pb2.py"
    stale.write_text(stale.read_text() + "# edited by hand\n")
    run = subprocess.run(["bash", "tools/gen-proto.sh", "--check"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120, env={"PY": sys.executable, "PATH": "/usr/bin:/bin"})
    assert run.returncode == 1
    assert "kglb/pb is out of date with proto/; run 'make proto'" in run.stderr
