"""The real lifecycle (issue 17) on a real kernel, with traffic through a MASQ VIP.

Topology (as in test_e2e_traffic.py): the VM's root namespace is the load
balancer with a bridge holding 10.1.0.1/24 and 10.2.0.1/24; a client namespace
(10.1.0.2) and two real namespaces (10.2.0.11, 10.2.0.12, default route via
the balancer, so MASQ replies come back through it). Each real runs a line
echo server on port 7000 that answers with its own name. The whole control
plane (run_kglb) drives IPVS; checks are a switch the test flips.
"""

import subprocess
import sys
from functools import partial

import pytest
import trio

from actors.app import run_kglb
from actors.dataplane.ipvs import IpvsDataPlane
from kglb import CheckResult, ForwardMethod, Service, ServiceKey
from kglb.config import BalancerConfig, CheckerConfig, Config, DummyCheck, FlapDamping, Lifecycle

VIP, PORT = "10.1.0.100", 7000
REALS = {"rs1": "10.2.0.11", "rs2": "10.2.0.12"}
NAMES = {address: name for name, address in REALS.items()}

TOPOLOGY = """
set -e
ip link add br0 type bridge
ip link set br0 up
ip addr add 10.1.0.1/24 dev br0
ip addr add 10.2.0.1/24 dev br0
sysctl -qw net.ipv4.ip_forward=1
mkhost() {
    ip netns add $1
    ip link add v-$1 type veth peer name eth0 netns $1
    ip link set v-$1 master br0 up
    ip -n $1 link set lo up
    ip -n $1 link set eth0 up
    ip -n $1 addr add $2 dev eth0
    ip -n $1 route add default via $3
}
mkhost client 10.1.0.2/24 10.1.0.1
mkhost rs1 10.2.0.11/24 10.2.0.1
mkhost rs2 10.2.0.12/24 10.2.0.1
"""
TEARDOWN = "ip netns del client; ip netns del rs1; ip netns del rs2; ip link del br0"

ECHO = """
import socketserver, sys
name = sys.argv[1]
class Echo(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            self.wfile.write(f"{name} {line.decode().strip()}\\n".encode())
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer(("0.0.0.0", 7000), Echo).serve_forever()
"""
# One long-lived connection: every line on stdin is sent, every answer printed.
TALKER = f"""
import socket, sys
s = socket.create_connection(("{VIP}", {PORT}), timeout=5)
f = s.makefile("rw")
for line in sys.stdin:
    f.write(line); f.flush()
    print(f.readline().strip(), flush=True)
"""
# N new connections, one line each: prints the name of the real that answered each.
ASKER = f"""
import socket, sys
for i in range(int(sys.argv[1])):
    with socket.create_connection(("{VIP}", {PORT}), timeout=3) as s:
        s.sendall(b"hello\\n")
        print(s.makefile().readline().split()[0], flush=True)
"""


@pytest.fixture(scope="module")
def topology():
    subprocess.run(["bash", "-c", TOPOLOGY], check=True)
    servers = [subprocess.Popen(["ip", "netns", "exec", name, sys.executable, "-c", ECHO, name],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
               for name in REALS]
    yield
    for server in servers:
        server.terminate()
        server.wait()
    subprocess.run(["bash", "-c", TEARDOWN], check=False)


class Switch:
    """The check function: a real passes unless the test set ``up[address] = False``."""

    def __init__(self) -> None:
        self.up: dict[str, bool] = {}

    async def __call__(self, target) -> CheckResult:
        passed = self.up.get(target.address, True)
        return CheckResult(passed=passed, reason="ok" if passed else "refused")


def config(hosts=tuple(REALS.values()), **life) -> Config:
    return Config(balancers=(BalancerConfig(
        name="echo", setup_name="lab", service=Service(key=ServiceKey.tcp(VIP, PORT)),
        forward=ForwardMethod.MASQ, port=PORT, hosts=hosts,
        checker=CheckerConfig(check=DummyCheck(), interval_ms=200, rise=1, fall=1),
        lifecycle=Lifecycle(**life)),))


def ipvs_weights() -> dict[str, int]:
    """Weights of the VIP's reals as ``ipvsadm -Ln`` prints them."""
    out = subprocess.run(["ipvsadm", "-Ln", "-t", f"{VIP}:{PORT}"], capture_output=True,
                         text=True).stdout
    weights = {}
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0] == "->" and parts[1] != "RemoteAddress:Port":
            weights[parts[1].rsplit(":", 1)[0]] = int(parts[3])
    return weights


async def wait_weights(expected: dict[str, int], timeout: float = 10) -> None:
    with trio.fail_after(timeout):
        while ipvs_weights() != expected:
            await trio.sleep(0.05)


def ask(n: int) -> list[str]:
    command = ["ip", "netns", "exec", "client", sys.executable, "-c", ASKER, str(n)]
    return subprocess.run(command, capture_output=True, text=True, timeout=30).stdout.split()


def talker() -> subprocess.Popen:
    return subprocess.Popen(["ip", "netns", "exec", "client", sys.executable, "-c", TALKER],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def talk(client: subprocess.Popen, text: str = "ping") -> str:
    client.stdin.write(text + "\n")
    client.stdin.flush()
    return client.stdout.readline().strip()


async def start(nursery, cfg, tmp_path, switch=None):
    return await nursery.start(partial(run_kglb, cfg, dataplane=IpvsDataPlane(),
                                       ownership_path=tmp_path / "owned.json",
                                       check=switch or Switch()))


async def test_a_drained_real_keeps_its_connection_and_goes_after_it_closes(topology, tmp_path):
    async with trio.open_nursery() as nursery:
        handle = await start(nursery, config(drain_timeout_ms=60_000), tmp_path)
        await wait_weights({a: 1000 for a in REALS.values()})
        client = talker()
        name = talk(client).split()[0]
        leaving, staying = REALS[name], next(a for n, a in REALS.items() if n != name)
        assert await handle.reload(config((staying,), drain_timeout_ms=60_000)) == []
        await wait_weights({leaving: 0, staying: 1000})
        for i in range(5):  # the old connection keeps working...
            assert talk(client, f"ping{i}") == f"{name} ping{i}"
            await trio.sleep(0.3)
        assert set(ask(6)) == {NAMES[staying]}  # ...while every new one goes elsewhere
        assert leaving in ipvs_weights()
        client.stdin.close()
        client.wait()
        closed = trio.current_time()
        await wait_weights({staying: 1000})
        # Deleted a few seconds after the close: the counters are read every 1 s, and
        # an apply under software emulation on a busy host takes up to ~2 s.
        assert trio.current_time() - closed < 8
        handle.shutdown()


async def test_a_removed_balancer_keeps_its_connections_until_they_close(topology, tmp_path):
    # The drain comes with a reload (not the first config), then the whole
    # balancer leaves: its service stays at weight 0 while the connection lives.
    async with trio.open_nursery() as nursery:
        handle = await start(nursery, config(), tmp_path)
        await wait_weights({a: 1000 for a in REALS.values()})
        assert await handle.reload(config(drain_timeout_ms=60_000)) == []
        client = talker()
        name = talk(client).split()[0]
        assert await handle.reload(Config(balancers=())) == []
        await wait_weights({REALS[name]: 0})  # the idle real went, the busy one drains
        for i in range(3):
            assert talk(client, f"ping{i}") == f"{name} ping{i}"
            await trio.sleep(0.3)
        client.stdin.close()
        client.wait()
        closed = trio.current_time()
        await wait_weights({})  # then the service goes
        assert trio.current_time() - closed < 8
        handle.shutdown()


async def test_a_connection_that_never_closes_is_cut_at_the_drain_timeout(topology, tmp_path):
    async with trio.open_nursery() as nursery:
        handle = await start(nursery, config(drain_timeout_ms=2500), tmp_path)
        await wait_weights({a: 1000 for a in REALS.values()})
        client = talker()
        name = talk(client).split()[0]
        leaving, staying = REALS[name], next(a for n, a in REALS.items() if n != name)
        began = trio.current_time()
        await handle.reload(config((staying,), drain_timeout_ms=2500))
        await wait_weights({leaving: 0, staying: 1000})
        await wait_weights({staying: 1000})
        assert 2.5 <= trio.current_time() - began < 4.5
        client.kill()
        client.wait()
        handle.shutdown()


async def test_a_recovering_real_ramps_in_the_documented_steps(topology, tmp_path):
    switch = Switch()
    rs2 = REALS["rs2"]
    async with trio.open_nursery() as nursery:
        handle = await start(nursery, config(slow_start_ms=3000), tmp_path, switch)
        await wait_weights({a: 1000 for a in REALS.values()})  # no ramp at start
        await trio.sleep(3)  # ramps begin once the balancer served a whole window
        switch.up[rs2] = False
        await wait_weights({REALS["rs1"]: 1000, rs2: 0})
        switch.up[rs2] = True
        seen = []
        with trio.move_on_after(12):  # 3 s of ramp, plus slow applies under emulation
            while not seen or seen[-1] != 1000:
                weight = ipvs_weights()[rs2]
                if weight and (not seen or seen[-1] != weight):
                    seen.append(weight)
                await trio.sleep(0.1)  # sampled every 100 ms
        # 10 steps over 3 s: 100 until 0.6 s, then +100 every 0.3 s. Under emulation a
        # sample may miss a 0.3 s step, never see one out of order.
        assert seen[0] == 100 and seen[-1] == 1000
        assert seen == sorted(seen) and set(seen) <= {100 * k for k in range(1, 11)}
        assert len(seen) >= 5  # most steps seen even on a loaded 2-core host
        handle.shutdown()


async def test_a_real_flapping_every_2s_is_suppressed_then_released(topology, tmp_path):
    switch = Switch()
    rs2 = REALS["rs2"]
    # penalties 1, 1.87, 2.63 at a flap every 2 s (>= 2.2 even at one every 2.5 s):
    # suppressed at the third; released once 2.63 * 0.5 ** (t / 10 s) < 2.0, about
    # 4 s after the last flap (3 s after it is steady).
    damping = FlapDamping(half_life_ms=10_000, suppress_flaps=2.2, reuse_flaps=2.0)
    async with trio.open_nursery() as nursery:
        handle = await start(nursery, config(flap_damping=damping), tmp_path, switch)
        await wait_weights({a: 1000 for a in REALS.values()})
        began = trio.current_time()
        for flap in range(3):  # down for 1 s, up for 1 s, on a fixed schedule
            switch.up[rs2] = False
            await trio.sleep_until(began + 2 * flap + 1)
            switch.up[rs2] = True
            await trio.sleep_until(began + 2 * flap + 2)
        steady = trio.current_time()
        await trio.sleep(0.5)
        assert ipvs_weights()[rs2] == 0  # healthy, but suppressed
        state = next(r for r in handle.statistics().balancers[0].reals if r.address == rs2)
        assert state.state == "suppressed" and state.health.up
        await wait_weights({a: 1000 for a in REALS.values()}, timeout=10)
        assert 1.0 <= trio.current_time() - steady <= 7.0
        handle.shutdown()
