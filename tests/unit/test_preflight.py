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
