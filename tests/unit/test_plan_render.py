"""kglb.pretty renderings and the ``kglb-trio plan`` command (on MemoryDataPlane)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import structlog

from actors import _cmd_plan
from actors.dataplane import MemoryDataPlane
from actors.ownership import save_owned
from kglb import (
    AddAddress,
    AddReal,
    AddService,
    AnnounceRoute,
    DataPlaneState,
    DeleteAddress,
    DeleteReal,
    DeleteService,
    Family,
    ForwardMethod,
    LinkAddress,
    Owned,
    Real,
    RealKey,
    Route,
    Service,
    ServiceFlag,
    ServiceKey,
    ServiceState,
    UpdateReal,
    UpdateService,
    WithdrawRoute,
)
from kglb.config import load
from kglb.pretty import render_operation, render_plan, render_state

VIP = ServiceKey.tcp("10.0.0.1", 80)
V6 = ServiceKey.udp("fd00::1", 53)
REAL = Real(key=RealKey(address="10.0.0.2", port=80), weight=1000, hostname="web1")
ROUTE = Route(prefix="10.0.0.0/24", local_asn=65000, peer_asn=65001,
              communities=("65101:30000", "65102:10090"), hold_time_ms=3000)
CONFIG = (Path(__file__).parent / "configs" / "base.json").read_text()


@pytest.fixture(autouse=True)
def quiet_logs():
    # structlog's default prints to stdout, which is where the plan goes.
    with structlog.testing.capture_logs():
        yield


@pytest.mark.parametrize("op, text", [
    (AddService(service=Service(key=VIP)), "-A -t 10.0.0.1:80 -s rr"),
    (AddService(service=Service(key=V6, scheduler="sh",
                                flags=ServiceFlag.SCHED1 | ServiceFlag.SCHED2)),
     "-A -u [fd00::1]:53 -s sh -b sh-fallback,sh-port"),
    (UpdateService(service=Service(key=VIP, scheduler="wlc", timeout=300,
                                   flags=ServiceFlag.PERSISTENT | ServiceFlag.ONEPACKET)),
     "-E -t 10.0.0.1:80 -s wlc -p 300 -o"),
    (AddService(service=Service(key=ServiceKey.for_fwmark(7, Family.INET6))), "-A -f 7 -6 -s rr"),
    (DeleteService(service=VIP), "-D -t 10.0.0.1:80"),
    (AddReal(service=VIP, real=REAL), "-a -t 10.0.0.1:80 -r 10.0.0.2:80 -i -w 1000  # web1"),
    (UpdateReal(service=VIP, real=Real(key=REAL.key, weight=0, forward=ForwardMethod.MASQ)),
     "-e -t 10.0.0.1:80 -r 10.0.0.2:80 -m -w 0"),
    (AddReal(service=ServiceKey.for_fwmark(7),
             real=Real(key=RealKey(address="10.0.0.2"), weight=1, forward=ForwardMethod.DROUTE)),
     "-a -f 7 -r 10.0.0.2 -g -w 1"),
    (DeleteReal(service=V6, real=RealKey(address="fd00::2", port=53)),
     "-d -u [fd00::1]:53 -r [fd00::2]:53"),
    (AddAddress(address=LinkAddress(address="10.0.0.1")), "ip addr add 10.0.0.1/32 dev lo"),
    (DeleteAddress(address=LinkAddress(link="dummy0", address="fd00::1")),
     "ip addr del fd00::1/128 dev dummy0"),
    (AnnounceRoute(route=ROUTE),
     "announce 10.0.0.0/24 local-as 65000 peer-as 65001 "
     "communities 65101:30000,65102:10090 hold 3000ms"),
    (WithdrawRoute(route=Route(prefix="10.0.0.1/32", local_asn=1, peer_asn=2)),
     "withdraw 10.0.0.1/32 local-as 1 peer-as 2"),
])
def test_render_operation(op, text):
    assert render_operation(op) == text


def test_render_empty_plan():
    assert render_plan(()) == ["no changes"]


def test_render_state_in_kglb_format():
    state = DataPlaneState(
        services=(ServiceState(service=Service(key=ServiceKey.tcp("172.0.0.1", 443)),
                               reals=(Real(key=RealKey(address="10.0.0.1", port=443), weight=50,
                                           hostname="hostname1"),),
                               name="TestName1"),),
        routes=(Route(prefix="10.0.0.2/32", local_asn=10, peer_asn=20,
                      communities=("65101:30000", "65102:10090")),),
        addresses=(LinkAddress(address="172.0.0.1"),),
    )
    assert render_state(state) == [
        "----- Balancers",
        "Name Prot LocalAddress:Port Scheduler Flags",
        "  -> RemoteAddress:Port Forward Weight",
        "TestName1 TCP  172.0.0.1:443 rr",
        "  -> hostname1|10.0.0.1:443 Tunnel 50",
        "----- Dynamic Route Map",
        "LocalAsn PeerAsn Community Prefix/Prefixlen",
        " - 10 20 65101:30000,65102:10090 10.0.0.2/32",
        "----- Address Map",
        " - 172.0.0.1%lo",
    ]


async def test_plan_command_on_an_empty_kernel(tmp_path, capsys):
    status = await _cmd_plan.print_plan(load(CONFIG), str(tmp_path / "owned.json"),
                                        lambda links: MemoryDataPlane())
    assert status == 0
    assert capsys.readouterr().out.splitlines() == [
        "-A -t 10.0.0.1:80 -s rr",
        "ip addr add 10.0.0.1/32 dev lo",
        "-a -t 10.0.0.1:80 -r 10.1.0.1:8080 -i -w 0  # 10.1.0.1",
        "-a -t 10.0.0.1:80 -r 10.1.0.2:8080 -i -w 0  # 10.1.0.2",
    ]


async def test_plan_command_no_changes_keeps_kernel_weights(tmp_path, capsys):
    reals = tuple(Real(key=RealKey(address=a, port=8080), weight=7)
                  for a in ("10.1.0.1", "10.1.0.2"))
    kernel = DataPlaneState(services=(ServiceState(service=Service(key=VIP), reals=reals),),
                            addresses=(LinkAddress(address="10.0.0.1"),))
    status = await _cmd_plan.print_plan(load(CONFIG), str(tmp_path / "owned.json"),
                                        lambda links: MemoryDataPlane(kernel))
    assert status == 0
    assert capsys.readouterr().out.splitlines() == ["no changes"]


async def test_plan_command_removes_only_what_the_record_owns(tmp_path, capsys):
    old, foreign = ServiceKey.tcp("10.0.0.5", 80), ServiceKey.tcp("192.0.2.1", 80)
    kernel = DataPlaneState(services=(ServiceState(service=Service(key=old)),
                                      ServiceState(service=Service(key=foreign))))
    path = tmp_path / "owned.json"
    save_owned(path, Owned(services=frozenset({old})))
    await _cmd_plan.print_plan(load(CONFIG), str(path), lambda links: MemoryDataPlane(kernel))
    out = capsys.readouterr().out.splitlines()
    assert "-D -t 10.0.0.5:80" in out
    assert not any("192.0.2.1" in line for line in out)


async def test_plan_command_kernel_unreadable(tmp_path, capsys):
    def broken(links):
        raise OSError(97, "ip_vs is not loaded")

    status = await _cmd_plan.print_plan(load(CONFIG), str(tmp_path / "o.json"), broken)
    assert status == 4  # ExitCode.HOST
    assert "ip_vs is not loaded" in capsys.readouterr().err


def test_plan_main_bad_config(tmp_path, capsys, monkeypatch):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"balancers": [{"name": ""}]}))
    args = _cmd_plan.argparse.Namespace(config=str(bad), state_file=str(tmp_path / "o.json"))
    monkeypatch.setattr(_cmd_plan.logs, "configure", lambda **kw: None)  # process-wide
    assert _cmd_plan.main(args) == 3  # ExitCode.CONFIG
    assert capsys.readouterr().err


async def test_plan_command_writes_nothing(tmp_path, capsys):
    # issue 14, problem 4 ("the same for plan"): plan only reads the kernel and the record.
    path = tmp_path / "owned.json"
    save_owned(path, Owned(services=frozenset({ServiceKey.tcp("10.0.0.5", 80)})))
    (tmp_path / ".owned.json.partial").write_text("{")  # a crashed writer's half record
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in tmp_path.iterdir()}
    dp = MemoryDataPlane()
    await _cmd_plan.print_plan(load(CONFIG), str(path), lambda links: dp)
    assert capsys.readouterr().out
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in tmp_path.iterdir()} == before
    assert dp.applied == [] and dp.attempts == {}
