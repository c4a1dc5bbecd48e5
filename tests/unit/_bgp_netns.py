"""Real BIRD daemons in network namespaces made here, for the BGP tests.

Topology (all addresses live inside the namespaces, nothing outside them):

    kglbt-lb1-<pid> 169.254.77.1/30 ---veth--- 169.254.77.2/30 kglbt-rtr-<pid>
    kglbt-lb2-<pid> 169.254.77.5/30 ---veth--- 169.254.77.6/30 kglbt-rtr-<pid>
    (lb1's link also carries fd00:77::1/64 and fd00:77::2/64, for an IPv6 session)

Each "lb" runs a BIRD whose configuration is the few lines an operator writes
plus our include file, driven by a BirdSpeaker through birdc. The router runs
a BIRD that imports what it hears and installs it in its own kernel table with
``merge paths`` (ECMP). Waits are real (real daemons) and each is bounded.

Needs root, ``ip netns`` and bird2. Outside CI, a missing piece skips the
module with the reason; in CI (CI=true) it fails, because CI installs bird2.
A test module uses the ``network`` (module scope) and ``lab`` fixtures by
importing them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from actors.bgp import BirdSpeaker
from kglb import Route
from kglb.bird import BirdSettings, Neighbor

TAG = os.getpid()
ROUTER_ASN, LB_ASN = 65001, 65000
LINKS = {"lb1": ("169.254.77.1", "169.254.77.2"), "lb2": ("169.254.77.5", "169.254.77.6")}
LB1_V6 = ("fd00:77::1", "fd00:77::2")


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root for ip netns"
    for tool in ("ip", "bird", "birdc"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install bird2 iproute2)"
    probe = f"kglbt-probe-{TAG}"
    if subprocess.run(["ip", "netns", "add", probe], capture_output=True).returncode != 0:
        return "cannot create network namespaces here"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _require_environment() -> None:
    reason = _missing()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"BGP namespace test cannot run in CI: {reason}")
        pytest.skip(reason)


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


@dataclass(frozen=True)
class Lab:
    folder: Path
    namespaces: dict[str, str]

    def socket(self, node: str) -> str:
        return str(self.folder / f"{node}.ctl")

    def settings(self, node: str) -> BirdSettings:
        pairs = [LINKS[node], LB1_V6] if node == "lb1" else [LINKS[node]]
        return BirdSettings(
            neighbors=tuple(Neighbor(address=peer, asn=ROUTER_ASN) for _, peer in pairs),
            include_path=str(self.folder / node / "kglb-trio.conf"),
            socket=self.socket(node),
            source_addresses=tuple(local for local, _ in pairs),
            poll_interval=0.2,
        )


_ROUTER_CONF = """\
router id 169.254.77.2;
log "{folder}/rtr.log" all;
protocol device {{ scan time 1; }}
protocol kernel {{ ipv4 {{ export all; }}; merge paths on; }}
template bgp lb {{ connect delay time 1; connect retry time 1; ipv4 {{ import all; export none; }}; }}
protocol bgp lb1 from lb {{ local 169.254.77.2 as {rtr}; neighbor 169.254.77.1 as {lb}; }}
protocol bgp lb2 from lb {{ local 169.254.77.6 as {rtr}; neighbor 169.254.77.5 as {lb}; }}
protocol bgp lb1v6 {{
  connect delay time 1; connect retry time 1; ipv6 {{ import all; export none; }};
  local fd00:77::2 as {rtr}; neighbor fd00:77::1 as {lb};
}}
"""

# What an operator adds to bird.conf (plus the include line, the README's snippet).
_LB_CONF = """\
router id {address};
log "{folder}/{node}.log" all;
protocol device {{}}
include "{folder}/{node}/kglb-trio*.conf";
"""


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    _require_environment()
    folder = tmp_path_factory.mktemp("bgp")
    namespaces = {node: f"kglbt-{node}-{TAG}" for node in ("rtr", "lb1", "lb2")}
    daemons: list[subprocess.Popen] = []
    try:
        for ns in namespaces.values():
            _run("ip", "netns", "add", ns)
            _run("ip", "-n", ns, "link", "set", "lo", "up")
        for node, (local, peer) in LINKS.items():
            lb, rtr = namespaces[node], namespaces["rtr"]
            _run("ip", "link", "add", "kglbt0", "netns", lb, "type", "veth",
                 "peer", "name", f"kglbt-{node}", "netns", rtr)
            for ns, dev, address in ((lb, "kglbt0", local), (rtr, f"kglbt-{node}", peer)):
                _run("ip", "-n", ns, "addr", "add", f"{address}/30", "dev", dev)
                _run("ip", "-n", ns, "link", "set", dev, "up")
        for ns, dev, address in ((namespaces["lb1"], "kglbt0", LB1_V6[0]),
                                 (namespaces["rtr"], "kglbt-lb1", LB1_V6[1])):
            _run("ip", "-n", ns, "addr", "add", f"{address}/64", "dev", dev, "nodad")
        configs = {"rtr": _ROUTER_CONF.format(folder=folder, rtr=ROUTER_ASN, lb=LB_ASN)}
        for node, (local, _) in LINKS.items():
            (folder / node).mkdir()
            configs[node] = _LB_CONF.format(address=local, folder=folder, node=node)
        for node, text in configs.items():
            (folder / f"{node}.conf").write_text(text)
            daemons.append(subprocess.Popen(
                ["ip", "netns", "exec", namespaces[node], "bird", "-f",
                 "-c", str(folder / f"{node}.conf"), "-s", str(folder / f"{node}.ctl")],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        network = Lab(folder=folder, namespaces=namespaces)
        for node in configs:
            _wait_for_socket(network.socket(node), daemons)
        yield network
    finally:
        for daemon in daemons:
            daemon.terminate()
        for daemon in daemons:
            try:
                daemon.wait(timeout=5)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
        for ns in namespaces.values():  # deleting a namespace deletes its veth end
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def _wait_for_socket(path: str, daemons: list[subprocess.Popen]) -> None:
    for _ in range(50):
        if os.path.exists(path):
            return
        for daemon in daemons:
            if daemon.poll() is not None:
                raise RuntimeError(f"bird exited: {daemon.stderr.read().decode()}")
        time.sleep(0.1)  # a daemon starting, not timing logic
    raise RuntimeError(f"bird did not open {path}")


async def birdc(lab: Lab, node: str, *command: str) -> str:
    # check=False: "Network not found" is an answer (birdc exits 1 with it).
    done = await trio.run_process(["birdc", "-s", lab.socket(node), *command],
                                  capture_stdout=True, check=False)
    return done.stdout.decode()


async def ip_route(lab: Lab, prefix: str) -> str:
    done = await trio.run_process(["ip", "-n", lab.namespaces["rtr"], "route", "show", prefix],
                                  capture_stdout=True)
    return done.stdout.decode()


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    with trio.move_on_after(timeout):
        while not await check():
            await trio.sleep(0.1)
        return
    pytest.fail(f"not within {timeout} s: {what}")


@pytest.fixture
async def lab(network):
    """The network with nothing announced, even after an earlier test failed."""
    for node in LINKS:
        speaker = BirdSpeaker(network.settings(node))
        for route in await speaker.routes():
            await speaker.withdraw(route)
    return network


def vip(address: str, hold_time_ms: int = 0) -> Route:
    return Route(prefix=f"{address}/32", local_asn=LB_ASN, peer_asn=ROUTER_ASN,
                 communities=("65101:30000", "65102:10090", "4200000000:7:9"),
                 hold_time_ms=hold_time_ms)


async def learned(lab: Lab, prefix: str) -> bool:
    """The router's BIRD holds a route for ``prefix``."""
    return prefix in await birdc(lab, "rtr", "show", "route", prefix)


async def empty(lab: Lab, prefix: str) -> bool:
    """The router's kernel has no route for ``prefix``."""
    return not (await ip_route(lab, prefix)).strip()


async def negate(check: Callable[[], Awaitable[bool]]) -> bool:
    return not await check()
