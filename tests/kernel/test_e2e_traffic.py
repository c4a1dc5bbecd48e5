"""Traffic through the VIP, end to end, with the Writer and IpvsDataPlane in charge.

Topology (built in the VM, as in tools/ipvs-vm/examples/e2e_netns.sh): the
VM's root namespace is the load balancer, with a bridge holding 10.1.0.1/24
and 10.2.0.1/24. A client namespace (10.1.0.2) and two real-server namespaces
(10.2.0.11, 10.2.0.12) hang off the bridge. Each real runs busybox httpd on
ports 80 (NAT), 81 (DR) and 82 (TUN), answering its own name, has the VIP on
its lo, decapsulates IPIP on tunl0, and sends replies from the VIP straight to
the client. One service per forwarding method, on the same VIP.
"""

import subprocess

import pytest
import trio
from _writer_helpers import running_writer

from actors.dataplane.ipvs import IpvsDataPlane
from kglb import (
    DataPlaneState,
    ForwardMethod,
    LinkAddress,
    Real,
    RealKey,
    Service,
    ServiceKey,
    ServiceState,
)

VIP = "10.1.0.100"
REALS = {"rs1": "10.2.0.11", "rs2": "10.2.0.12"}
PORTS = {ForwardMethod.MASQ: 80, ForwardMethod.DROUTE: 81, ForwardMethod.TUNNEL: 82}

TOPOLOGY = f"""
set -e
modprobe ipip
ip link add br0 type bridge
ip link set br0 up
ip addr add 10.1.0.1/24 dev br0
ip addr add 10.2.0.1/24 dev br0
sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.send_redirects=0 net.ipv4.conf.br0.send_redirects=0
mkhost() {{
    ip netns add $1
    ip link add v-$1 type veth peer name eth0 netns $1
    ip link set v-$1 master br0 up
    ip -n $1 link set lo up
    ip -n $1 link set eth0 up
    ip -n $1 addr add $2 dev eth0
    ip -n $1 route add default via $3
}}
mkhost client 10.1.0.2/24 10.1.0.1
for n in rs1 rs2; do
    [ $n = rs1 ] && a=10.2.0.11 || a=10.2.0.12
    mkhost $n $a/24 10.2.0.1
    ip -n $n addr add {VIP}/32 dev lo
    ip netns exec $n sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 \\
        net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
    ip -n $n rule add from {VIP} table 100
    ip -n $n route add 10.1.0.0/24 dev eth0 table 100
    ip -n $n link set tunl0 up
    ip netns exec $n sysctl -qw net.ipv4.conf.tunl0.rp_filter=0
    mkdir -p /tmp/www-$n && echo $n > /tmp/www-$n/index.html
done
"""
TEARDOWN = "ip netns del client; ip netns del rs1; ip netns del rs2; ip link del br0"


@pytest.fixture(scope="module")
def topology():
    subprocess.run(["bash", "-c", TOPOLOGY], check=True)
    servers = [
        # no inherited stdout: a server left behind would keep the VM's output pipe open
        subprocess.Popen(
            ["ip", "netns", "exec", name, "busybox", "httpd", "-f", "-p", str(port), "-h", f"/tmp/www-{name}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        for name in REALS
        for port in PORTS.values()
    ]
    yield
    for server in servers:
        server.terminate()
        server.wait()
    subprocess.run(["bash", "-c", TEARDOWN], check=False)


def fetch(port: int, count: int = 4, timeout: float = 3) -> list[str]:
    """The bodies of ``count`` HTTP requests, each on a new connection, from the
    client namespace to VIP:port (one curl process: they are slow to start here)."""
    urls = [f"http://{VIP}:{port}/"] * count
    command = ["ip", "netns", "exec", "client", "curl", "-s", "--max-time", str(timeout),
               "-H", "Connection: close", *urls]
    return subprocess.run(command, capture_output=True, text=True).stdout.split()


def desired(weights=None) -> DataPlaneState:
    weights = weights or {}
    return DataPlaneState(
        services=tuple(
            ServiceState(
                service=Service(key=ServiceKey.tcp(VIP, port), scheduler="rr"),
                reals=tuple(
                    Real(key=RealKey(address=address, port=port), weight=weights.get(name, 1), forward=forward)
                    for name, address in REALS.items()
                ),
            )
            for forward, port in PORTS.items()
        ),
        addresses=(LinkAddress(address=VIP),),
    )


async def wait_for_servers():
    for address in REALS.values():
        for port in PORTS.values():
            with trio.fail_after(10):
                while subprocess.run(["curl", "-sSo", "/dev/null", "--max-time", "1",
                                      f"http://{address}:{port}/"]).returncode:
                    await trio.sleep(0.1)


async def test_nat_dr_and_tun_traffic_weights_and_shutdown(topology, tmp_path):
    subprocess.run(["ipvsadm", "-A", "-t", "10.0.9.9:80", "-s", "wlc"], check=True)  # foreign
    await wait_for_servers()
    async with running_writer(tmp_path / "owned.json") as run:
        await run.apply(desired())
        subprocess.run(["ipvsadm", "-Z"], check=True)  # re-added dests keep old counters
        for port in PORTS.values():
            assert sorted(fetch(port)) == ["rs1", "rs1", "rs2", "rs2"], port

        await trio.sleep(2.5)  # the IPVS estimator folds counters in every 2 s
        counters = await run.dataplane.counters()
        for forward, port in PORTS.items():
            service = counters[ServiceKey.tcp(VIP, port)]
            assert service.conns >= 4 and service.packets_in > 0
            # NAT replies come back through the balancer; DR and TUN replies bypass it
            assert (service.packets_out > 0) == (forward is ForwardMethod.MASQ), forward
            assert all(real.conns >= 2 for real in service.reals)

        await run.apply(desired(weights={"rs2": 0}))
        for port in PORTS.values():
            assert fetch(port) == ["rs1"] * 4, port

        await run.shutdown()
    dataplane = IpvsDataPlane()
    try:
        state = await dataplane.read()
    finally:
        await dataplane.aclose()
    assert [s.key for s in state.services] == [ServiceKey.tcp("10.0.9.9", 80)]
    assert LinkAddress(address=VIP) not in state.addresses
    assert fetch(PORTS[ForwardMethod.MASQ], count=1, timeout=1) == []
