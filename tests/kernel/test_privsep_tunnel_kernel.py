"""Tunnelled checks (enableFwmarks) under privilege separation on a real kernel (issue 18).

With fwmarks the unprivileged side keeps CAP_NET_RAW (SO_MARK needs it since
Linux 5.17) and nothing else; the writer alone holds CAP_NET_ADMIN. The lab is
test_tunnelled_check's (TUNNEL): two reals in namespaces behind veths, each
holding the VIP and decapsulating IPIP. Each real's server listens on the VIP
only, so a check that did not go through the real's fwmark service and the
tunnel would be refused: a real marked up was checked through the VIP.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import pytest
from _unprivileged import IN_VM, USER
from test_privsep_kernel import _descendants, _start, _wait
from test_tunnelled_check import add_real, remove_reals, sh

from actors.privileges import CAP_NET_ADMIN, CAP_NET_RAW, capabilities

VIP, PORT = "10.1.0.100", 80
REALS = {"kp-rs1": ("10.2.1.1", "10.2.1.11"), "kp-rs2": ("10.2.2.1", "10.2.2.12")}

pytestmark = pytest.mark.skipif(not IN_VM, reason="changes /root's mode: only inside the VM")

SERVER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 80))
s.listen(64)
print("ready", flush=True)
while True:
    s.accept()[0].close()
"""


@pytest.fixture
def reals():
    servers = {}
    sh("modprobe ipip", "sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0")
    try:
        for index, (ns, (lb, rs)) in enumerate(REALS.items()):
            add_real(ns, f"kp-v{index}", lb, rs, tunnel=True, vip=VIP)
            servers[ns] = subprocess.Popen(
                ["ip", "netns", "exec", ns, sys.executable, "-c", SERVER, VIP],
                stdout=subprocess.PIPE, text=True)
            assert servers[ns].stdout.readline().strip() == "ready"
        yield servers
    finally:
        remove_reals(servers, REALS)


def _config(directory: Path) -> Path:
    path = directory / "config.json"
    hosts = ", ".join(f'"{rs}"' for _, rs in REALS.values())
    path.write_text("""{"balancers": [{
        "name": "tunnelled", "setupName": "privsep",
        "lbService": {"ipvsService": {"tcpAttributes": {"address": {"ipv4": "%s"}, "port": %d}}},
        "upstreamRouting": {"forwardMethod": "TUNNEL"},
        "upstreamDiscovery": {"port": %d, "staticAttributes": {"hosts": [%s]}},
        "upstreamChecker": {"checker": {"tcp": {"checkTimeoutMs": 500}}, "intervalMs": 300,
                            "riseCount": 1, "fallCount": 2},
        "enableFwmarks": true,
        "dynamicRouting": {}}]}""" % (VIP, PORT, PORT, hosts))
    path.chmod(0o644)
    return path


def _ipvs() -> str:
    return subprocess.run(["ipvsadm", "-Ln"], capture_output=True, text=True).stdout


def _weights() -> dict[str, int]:
    """The weight of each real of the VIP's service (not of the per-real fwmark services)."""
    out = subprocess.run(["ipvsadm", "-Ln", "-t", f"{VIP}:{PORT}"], capture_output=True,
                         text=True).stdout
    rows = [line.split() for line in out.splitlines() if line.strip().startswith("->")]
    return {row[1].split(":")[0]: int(row[3]) for row in rows if row[1][0].isdigit()}


def _uid(pid: int) -> list[str]:
    status = Path(f"/proc/{pid}/status").read_text()
    return next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))


def test_tunnelled_checks_work_with_only_net_raw_on_the_unprivileged_side(reals):
    rs1, rs2 = (rs for _, rs in REALS.values())
    for rs in (rs1, rs2):  # a check not through the tunnel could not pass
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((rs, PORT), timeout=5).close()
    directory = Path(tempfile.mkdtemp(prefix="kglb-privsep-tunnel-"))
    log = directory / "kglb.log"
    writer = _start(_config(directory), log, directory / "owned.json")
    try:
        try:
            _wait(lambda: _weights().get(rs1, 0) > 0 and _weights().get(rs2, 0) > 0,
                  timeout=180)
        except AssertionError:
            raise AssertionError(f"no real up; ipvsadm:\n{_ipvs()}\nlog:\n"
                                 + log.read_text()[-6000:]) from None
        assert _ipvs().count("FWM ") == 2  # one service per real for its tunnelled check

        assert capabilities(writer.pid) >> CAP_NET_ADMIN & 1
        others = _descendants(writer.pid)
        assert others, "no unprivileged side"
        for pid in others:
            assert _uid(pid) == [USER] * 4, pid
            assert capabilities(pid) == 1 << CAP_NET_RAW, (pid, hex(capabilities(pid)))
            assert capabilities(pid, "CapPrm") == 1 << CAP_NET_RAW, pid

        # The writer's refusal counts reach the unprivileged side's status port.
        address = re.search(r"stats server listening\s+address=(\S+)", log.read_text())[1]
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=30) as response:
            metrics = response.read().decode()
        assert 'kglb_trio_privsep_refusals_total{reason="garbage"} 0.0' in metrics

        reals["kp-rs1"].kill()  # rs1's service stops: its tunnelled check fails
        reals["kp-rs1"].wait()
        _wait(lambda: _weights().get(rs1, 0) == 0, timeout=60)
        assert _weights().get(rs2, 0) > 0

        writer.send_signal(signal.SIGTERM)
        assert writer.wait(timeout=60) == 0
        assert VIP not in _ipvs()
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
        print(log.read_text()[-3000:])
