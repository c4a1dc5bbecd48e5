"""Tunnelled (fwmark) checks through real IPVS: the marked connection lands on exactly its real.

Topology (made here, inside the VM): the LB is the root namespace with the
VIP 10.1.0.100 on lo; two reals in their own namespaces, each on a veth
pair (rs1 10.2.1.11 behind 10.2.1.1, rs2 10.2.2.12 behind 10.2.2.1). IPVS has
the VIP service TCP 10.1.0.100:80 with both reals, and one fwmark service
per real (10001 → rs1, 10002 → rs2), as kglb's enable_fwmarks makes them.
rs1 answers HTTP 200 and rs2 answers 201, so a check's status shows which
real it reached. Run for TUNNEL (kglb's default: IPIP to the real, which
holds the VIP too) and MASQ.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import trio

from actors.checks import run_check
from kglb import ProbeTarget, ServiceKey
from kglb.config import HttpCheck, TcpCheck

VIP = "10.1.0.100"
REALS = {  # namespace: (LB side address, real address, HTTP status it answers, fwmark)
    "kt-rs1": ("10.2.1.1", "10.2.1.11", 200, 10001),
    "kt-rs2": ("10.2.2.1", "10.2.2.12", 201, 10002),
}

SERVER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 80))
s.listen(64)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.recv(4096)
    c.sendall(b"HTTP/1.1 %s X\\r\\nContent-Length: 0\\r\\n\\r\\n" % sys.argv[1].encode())
    c.close()
"""


def sh(*commands: str) -> None:
    for command in commands:
        subprocess.run(command, shell=True, check=True)


def in_ns(ns: str, *commands: str) -> None:
    sh(*(f"ip netns exec {ns} {command}" for command in commands))


def add_real(ns: str, link: str, lb: str, rs: str, *, tunnel: bool, vip: str = VIP) -> None:
    """A real in namespace ``ns`` at ``rs``, behind ``lb`` on veth ``link``; with ``tunnel``
    it also holds ``vip`` and decapsulates IPIP (needs ``modprobe ipip``)."""
    sh(f"ip netns add {ns}",
       f"ip link add {link} type veth peer name eth0 netns {ns}",
       f"ip addr add {lb}/24 dev {link}", f"ip link set {link} up",
       # tunnel: the real answers from the VIP, a local address here
       f"sysctl -qw net.ipv4.conf.{link}.accept_local=1 net.ipv4.conf.{link}.rp_filter=0")
    in_ns(ns, "ip link set lo up", f"ip addr add {rs}/24 dev eth0", "ip link set eth0 up",
          f"ip route add default via {lb}")
    if tunnel:
        in_ns(ns, f"ip addr add {vip}/32 dev lo", "ip link set tunl0 up",
              "sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.tunl0.rp_filter=0"
              " net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2")


def remove_reals(servers: dict, namespaces) -> None:
    """Stop the reals' ``servers`` and delete their ``namespaces`` (their veths go with them)."""
    for server in servers.values():
        server.kill()
        server.wait()
    for ns in namespaces:
        subprocess.run(["ip", "netns", "del", ns], check=False)


@pytest.fixture(params=["tunnel", "masq"])
def topology(request):
    method = request.param
    servers = {}
    sh("sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0",
       f"ip addr add {VIP}/32 dev lo")
    if method == "tunnel":
        sh("modprobe ipip")
    try:
        for index, (ns, (lb, rs, status, mark)) in enumerate(REALS.items()):
            add_real(ns, f"kt-v{index}", lb, rs, tunnel=method == "tunnel")
            servers[ns] = subprocess.Popen(
                ["ip", "netns", "exec", ns, sys.executable, "-c", SERVER, str(status)],
                stdout=subprocess.PIPE, text=True)
            assert servers[ns].stdout.readline().strip() == "ready"
        flag = "-i" if method == "tunnel" else "-m"
        sh(f"ipvsadm -A -t {VIP}:80 -s rr")
        for ns, (lb, rs, status, mark) in REALS.items():
            sh(f"ipvsadm -a -t {VIP}:80 -r {rs}:80 {flag}",
               f"ipvsadm -A -f {mark} -s rr", f"ipvsadm -a -f {mark} -r {rs}:80 {flag}")
        yield servers
    finally:
        remove_reals(servers, REALS)


def tunnelled(ns: str, check) -> ProbeTarget:
    lb, rs, status, mark = REALS[ns]
    return ProbeTarget(address=rs, port=80, check=check, fwmark=mark, via=ServiceKey.tcp(VIP, 80))


async def test_marked_check_lands_on_its_real_and_fails_with_it(topology):
    http = HttpCheck(codes=(200,), timeout_ms=3000)
    with trio.fail_after(30):
        first = await run_check(tunnelled("kt-rs1", http))
        second = await run_check(tunnelled("kt-rs2", http))
        again = await run_check(tunnelled("kt-rs2", HttpCheck(codes=(201,), timeout_ms=3000)))
    # rs1 answers 200, rs2 answers 201: each mark reached exactly its own real.
    assert (first.reason, second.reason, again.reason) == ("ok", "status 201", "ok")
    tcp = TcpCheck(timeout_ms=2000)
    for _ in range(4):  # never the other real, whatever the VIP service's scheduler does
        assert (await run_check(tunnelled("kt-rs1", http))).reason == "ok"
        assert (await run_check(tunnelled("kt-rs1", tcp))).passed

    topology["kt-rs1"].kill()
    topology["kt-rs1"].wait()
    with trio.fail_after(30):
        down = await run_check(tunnelled("kt-rs1", tcp))
        down_http = await run_check(tunnelled("kt-rs1", http))
        up = await run_check(tunnelled("kt-rs2", tcp))
    assert (down.passed, down.reason) == (False, "refused")
    assert not down_http.passed
    assert (up.passed, up.reason) == (True, "ok")
