"""actors.preflight against fake /proc trees."""

from pathlib import Path

import pytest

from actors.preflight import preflight
from kglb import ForwardMethod

ROOT_CAPS = "000001ffffffffff"


def fake_proc(tmp_path: Path, *, ip_vs=True, caps=ROOT_CAPS, sysctls=None, conntrack=False) -> Path:
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "self/status").write_text(f"Name:\tkglb\nCapInh:\t0000000000000000\nCapEff:\t{caps}\n")
    (proc / "net").mkdir()
    values = {
        "net/ipv4/vs/expire_nodest_conn": 1,
        "net/ipv4/vs/conntrack": 0,
        "net/ipv4/ip_forward": 1,
        "net/ipv4/conf/all/rp_filter": 0,
        "net/ipv4/conf/default/rp_filter": 1,
        "net/ipv4/conf/lo/rp_filter": 0,
        "net/ipv4/conf/eth0/rp_filter": 0,
    }
    values.update(sysctls or {})
    if ip_vs:
        (proc / "net/ip_vs").write_text("IP Virtual Server version 1.2.1 (size=4096)\n")
    else:
        values = {k: v for k, v in values.items() if "/vs/" not in k}
    if conntrack:
        values["net/netfilter/nf_conntrack_max"] = 262144
    for name, value in values.items():
        path = proc / "sys" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{value}\n")
    return proc


def test_a_good_host_passes(tmp_path):
    proc = fake_proc(tmp_path, conntrack=True, sysctls={"net/ipv4/vs/conntrack": 1})
    assert preflight(forwards={ForwardMethod.MASQ, ForwardMethod.TUNNEL}, tunnelled_checks=True, proc=proc) == ((), ())


def test_missing_ip_vs_names_the_module_and_modprobe(tmp_path):
    errors, _ = preflight(proc=fake_proc(tmp_path, ip_vs=False))
    [error] = errors
    assert "ip_vs" in error and "modprobe ip_vs" in error


def test_missing_cap_net_admin(tmp_path):
    errors, _ = preflight(proc=fake_proc(tmp_path, caps="0000000000000000"))
    assert [e for e in errors if "CAP_NET_ADMIN" in e]
    # CAP_NET_ADMIN alone is enough
    assert preflight(proc=fake_proc(tmp_path / "x", caps="0000000000001000")) == ((), ())


def test_expire_nodest_conn_off_is_a_warning(tmp_path):
    errors, warnings = preflight(proc=fake_proc(tmp_path, sysctls={"net/ipv4/vs/expire_nodest_conn": 0}))
    assert errors == ()
    assert ["expire_nodest_conn=1" in w for w in warnings] == [True]


@pytest.mark.parametrize("forwards", [{ForwardMethod.MASQ}, {ForwardMethod.TUNNEL}])
def test_conntrack_matters_only_for_masq(tmp_path, forwards):
    _, warnings = preflight(forwards=forwards, proc=fake_proc(tmp_path, conntrack=True))
    assert any("net.ipv4.vs.conntrack=1" in w for w in warnings) == (ForwardMethod.MASQ in forwards)


def test_masq_without_forwarding(tmp_path):
    proc = fake_proc(tmp_path, sysctls={"net/ipv4/ip_forward": 0})
    _, warnings = preflight(forwards={ForwardMethod.MASQ}, proc=proc)
    assert any("ip_forward=1" in w for w in warnings)
    assert preflight(forwards={ForwardMethod.DROUTE}, proc=proc) == ((), ())


def test_rp_filter_breaks_tunnelled_checks(tmp_path):
    proc = fake_proc(tmp_path, sysctls={"net/ipv4/conf/eth0/rp_filter": 1})
    assert preflight(proc=proc) == ((), ())  # no tunnelled checks: rp_filter is fine
    _, [warning] = preflight(tunnelled_checks=True, proc=proc)
    assert "rp_filter is on for eth0:" in warning
    # conf/all raises every link
    proc = fake_proc(tmp_path / "all", sysctls={"net/ipv4/conf/all/rp_filter": 2})
    _, [warning] = preflight(tunnelled_checks=True, proc=proc)
    assert "rp_filter is on for eth0, lo:" in warning


# ----------------------------------------------------------------- failover (issue 19)

def _bgp_balancer(scheduler: str, *, fwmark: int = 0, udp: bool = False, bgp: bool = True):
    from kglb import Service, ServiceKey
    from kglb.config import BgpAttributes, BalancerConfig, CheckerConfig, DummyCheck

    if fwmark:
        key = ServiceKey.for_fwmark(fwmark)
    else:
        key = ServiceKey.udp("10.0.0.1", 53) if udp else ServiceKey.tcp("10.0.0.1", 80)
    attrs = BgpAttributes(local_asn=65000, peer_asn=65001, community="65000:1",
                          prefix="10.0.0.1", prefixlen=32) if bgp else None
    return BalancerConfig(name="b", setup_name="s", service=Service(key=key, scheduler=scheduler),
                          port=80, hosts=("10.1.0.1",), checker=CheckerConfig(check=DummyCheck()),
                          bgp=attrs)


@pytest.mark.parametrize(("balancers", "needed"), [
    ([_bgp_balancer("mh")], {"sloppy_tcp"}),
    ([_bgp_balancer("mh", fwmark=5)], {"sloppy_tcp", "sloppy_sctp"}),
    ([_bgp_balancer("mh", udp=True)], set()),  # any UDP packet may create an entry
    ([_bgp_balancer("mh", bgp=False)], set()),  # no ECMP without a route
    ([_bgp_balancer("wrr")], set()),  # no consistent hash: the sync daemon is the remedy
])
def test_sloppy_sysctls_follow_mh_behind_bgp(balancers, needed):
    from actors.preflight import sloppy_sysctls

    assert sloppy_sysctls(balancers) == needed


def test_sloppy_tcp_off_is_reported_with_its_fix(tmp_path):
    proc = fake_proc(tmp_path, sysctls={"net/ipv4/vs/sloppy_tcp": 0, "net/ipv4/vs/sloppy_sctp": 1})
    errors, warnings = preflight(sloppy={"sloppy_tcp", "sloppy_sctp"}, proc=proc)
    assert errors == ()
    assert len(warnings) == 1
    assert warnings[0].startswith("net.ipv4.vs.sloppy_tcp is not 1 while a balancer uses mh behind BGP")
    assert "`sysctl -w net.ipv4.vs.sloppy_tcp=1`" in warnings[0]


def test_sloppy_tcp_on_is_quiet(tmp_path):
    proc = fake_proc(tmp_path, sysctls={"net/ipv4/vs/sloppy_tcp": 1})
    assert preflight(sloppy={"sloppy_tcp"}, proc=proc) == ((), ())
