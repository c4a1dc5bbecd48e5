"""Reals discovered through etcd change the IPVS table, and traffic reaches a new real.

In the VM (which shares the host's root filesystem, so Debian's etcd is
there): etcd on 127.0.0.1, kglb-trio's control plane with the IPVS data plane,
a MASQ service on a VIP, and real servers in namespaces behind a bridge. A
real put under the etcd prefix is checked, added to IPVS and served; a real
deleted from etcd leaves IPVS.
"""

import shutil
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from _etcd import Etcd  # noqa: E402  (the unit tests' etcd harness)

from actors.app import run_kglb  # noqa: E402
from actors.dataplane.ipvs import IpvsDataPlane  # noqa: E402
from kglb import ForwardMethod, Service, ServiceKey  # noqa: E402
from kglb.config import BalancerConfig, CheckerConfig, Config, EtcdSource, TcpCheck  # noqa: E402

VIP = "10.5.0.100"
REALS = {"d-rs1": "10.6.0.11", "d-rs2": "10.6.0.12"}
TOPOLOGY = """
set -e
ip link add br-d type bridge && ip link set br-d up
ip addr add 10.5.0.1/24 dev br-d && ip addr add 10.6.0.1/24 dev br-d
sysctl -qw net.ipv4.ip_forward=1
host() {
    ip netns add $1
    ip link add v-$1 type veth peer name eth0 netns $1
    ip link set v-$1 master br-d up
    ip -n $1 link set lo up && ip -n $1 link set eth0 up
    ip -n $1 addr add $2 dev eth0 && ip -n $1 route add default via $3
}
host d-cl 10.5.0.2/24 10.5.0.1
host d-rs1 10.6.0.11/24 10.6.0.1
host d-rs2 10.6.0.12/24 10.6.0.1
for n in d-rs1 d-rs2; do mkdir -p /tmp/www-$n && echo $n > /tmp/www-$n/index.html; done
"""
TEARDOWN = "for n in d-cl d-rs1 d-rs2; do ip netns del $n; done; ip link del br-d"


@pytest.fixture
def topology():
    if shutil.which("etcd") is None:
        pytest.fail("etcd is not installed (tools/debian-deps.sh installs etcd-server)")
    subprocess.run(["bash", "-c", TOPOLOGY], check=True)
    servers = [subprocess.Popen(["ip", "netns", "exec", name, "busybox", "httpd", "-f", "-p", "80",
                                 "-h", f"/tmp/www-{name}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
               for name in REALS]
    yield
    for server in servers:
        server.terminate()
        server.wait()
    subprocess.run(["bash", "-c", TEARDOWN], check=False)


def fetch(count: int = 4) -> list[str]:
    urls = [f"http://{VIP}:80/"] * count
    return subprocess.run(["ip", "netns", "exec", "d-cl", "curl", "-s", "--max-time", "2",
                           "-H", "Connection: close", *urls],
                          capture_output=True, text=True).stdout.split()


def ipvs_reals() -> dict[str, int]:
    out = subprocess.run(["ipvsadm", "-Ln", "-t", f"{VIP}:80"], capture_output=True,
                         text=True).stdout
    return {line.split()[1]: int(line.split()[3]) for line in out.splitlines()
            if line.strip().startswith("->") and line.split()[1][0].isdigit()}


async def wait_ipvs(expected: dict[str, int], timeout: float = 20.0) -> None:
    with trio.fail_after(timeout):
        while ipvs_reals() != expected:
            await trio.sleep(0.1)


async def test_etcd_changes_reach_ipvs_and_traffic_reaches_a_new_real(topology, tmp_path):
    etcd = Etcd(tmp_path / "etcd")
    etcd.start()
    try:
        etcd.put("/kt/web/rs1", f"{REALS['d-rs1']}:80")
        config = Config(balancers=(BalancerConfig(
            name="web", setup_name="kt", service=Service(key=ServiceKey.tcp(VIP, 80)),
            forward=ForwardMethod.MASQ, port=80,
            checker=CheckerConfig(check=TcpCheck(timeout_ms=1000), interval_ms=200, rise=1,
                                  fall=1),
            source=EtcdSource(endpoints=(etcd.url,), prefix="/kt/web/")),))
        dataplane = IpvsDataPlane()
        async with trio.open_nursery() as nursery:
            handle = await nursery.start(partial(run_kglb, config, dataplane=dataplane,
                                                 ownership_path=tmp_path / "owned.json"))
            await wait_ipvs({f"{REALS['d-rs1']}:80": 1000})
            assert fetch() == ["d-rs1"] * 4

            etcd.put("/kt/web/rs2", f"{REALS['d-rs2']}:80")  # a new real: checked, then served
            await wait_ipvs({f"{REALS['d-rs1']}:80": 1000, f"{REALS['d-rs2']}:80": 1000})
            assert sorted(fetch()) == ["d-rs1", "d-rs1", "d-rs2", "d-rs2"]

            etcd.delete("/kt/web/rs1")
            await wait_ipvs({f"{REALS['d-rs2']}:80": 1000})
            assert fetch() == ["d-rs2"] * 4
            handle.shutdown()
        assert ipvs_reals() == {}
    finally:
        etcd.kill()
