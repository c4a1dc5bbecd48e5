"""Two kglb-trio instances behind one ECMP router, in network namespaces made here.

    client  10.50.0.2 ── 10.50.0.1 ┐
    lb1 169.254.78.1/30 ── .78.2   ├ router (BIRD, ECMP: merge paths; forwards)
    lb2 169.254.78.5/30 ── .78.6   │
    rs1..rs3 10.60.0.11-13 ── br0 10.60.0.1/24 ┘

Each lb namespace runs its own BIRD and its own ``python -m actors.cli`` (own
IPVS table: IPVS state is per network namespace), both with the same config:
one ``mh`` service on the VIP, TUN to the reals, announced over BGP to the
router. The reals have the VIP on lo, decapsulate IPIP on tunl0, answer their
own name over HTTP and reply straight to the client through the router.

Only 10.x and 169.254.x addresses, all inside the namespaces. ``Lab.start``
builds everything; ``Lab.stop`` stops the instances gracefully (SIGTERM),
then the daemons, and deletes the namespaces.

For the failover tests (``long_lived``): a second service on the VIP, port 7,
whose reals are echo servers that greet with their name (``_failover_peers``),
and a router that spreads flows over both balancers by their ports. With
``sync``, a link ``sync0`` between lb1 (169.254.79.1) and lb2 (.2) carries the
IPVS sync daemons' multicast: each balancer runs a MASTER and a BACKUP.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from _unprivileged import unprivileged_flags

VIP = "10.99.1.1"
CLIENT = "10.50.0.2"
LBS = {"lb1": ("169.254.78.1", "169.254.78.2"), "lb2": ("169.254.78.5", "169.254.78.6")}
REALS = {"rs1": "10.60.0.11", "rs2": "10.60.0.12", "rs3": "10.60.0.13"}
LB_ASN, ROUTER_ASN = 65000, 65001
REPO = Path(__file__).resolve().parents[2]
ECHO_PORT = 7
SYNC_ID = 19
PEERS = Path(__file__).with_name("_failover_peers.py")

_TOPOLOGY = """
set -e
P={prefix}
for n in rtr lb1 lb2 cli rs1 rs2 rs3; do
    ip netns add $P-$n
    ip -n $P-$n link set lo up
    ip netns exec $P-$n sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
done
# The router forwards, and replies from the VIP come back from the reals'
# side while its route to the VIP points at the balancers: no rp_filter.
ip netns exec $P-rtr sysctl -qw net.ipv4.ip_forward=1
ip -n $P-rtr link add br0 type bridge
ip -n $P-rtr link set br0 up
ip -n $P-rtr addr add 10.60.0.1/24 dev br0
wire() {{  # node, node address, router address, prefix length
    ip link add eth0 netns $P-$1 type veth peer name $1 netns $P-rtr
    ip -n $P-$1 addr add $2/$4 dev eth0
    ip -n $P-$1 link set eth0 up
    ip -n $P-rtr addr add $3/$4 dev $1
    ip -n $P-rtr link set $1 up
    ip -n $P-$1 route add default via $3
}}
wire lb1 169.254.78.1 169.254.78.2 30
wire lb2 169.254.78.5 169.254.78.6 30
wire cli {client} 10.50.0.1 24
for i in 1 2 3; do
    ip link add eth0 netns $P-rs$i type veth peer name rs$i netns $P-rtr
    ip -n $P-rtr link set rs$i master br0 up
    ip -n $P-rs$i addr add 10.60.0.1$i/24 dev eth0
    ip -n $P-rs$i link set eth0 up
    ip -n $P-rs$i route add default via 10.60.0.1
    ip -n $P-rs$i addr add {vip}/32 dev lo
done
"""

# TUN reals: decapsulate IPIP (needs the ipip module: the VM has it).
_TUNNEL = """
set -e
for i in 1 2 3; do
    ip -n {prefix}-rs$i link set tunl0 up
    ip netns exec {prefix}-rs$i sysctl -qw net.ipv4.conf.tunl0.rp_filter=0
done
"""

# Failover: flows hashed by their ports (L4) over the next hops, and the sync link.
_SPREAD = "ip netns exec {prefix}-rtr sysctl -qw net.ipv4.fib_multipath_hash_policy=1"
_SYNC_LINK = """
set -e
ip link add sync0 netns {prefix}-lb1 type veth peer name sync0 netns {prefix}-lb2
ip -n {prefix}-lb1 addr add 169.254.79.1/30 dev sync0
ip -n {prefix}-lb2 addr add 169.254.79.2/30 dev sync0
ip -n {prefix}-lb1 link set sync0 up
ip -n {prefix}-lb2 link set sync0 up
"""

_ROUTER_CONF = """\
router id 169.254.78.2;
log "{folder}/rtr.log" all;
protocol device {{ scan time 1; }}
protocol kernel {{ ipv4 {{ export all; }}; merge paths on; }}
template bgp lb {{ connect delay time 1; connect retry time 1; ipv4 {{ import all; export none; }}; }}
protocol bgp lb1 from lb {{ local 169.254.78.2 as {rtr}; neighbor 169.254.78.1 as {lb}; }}
protocol bgp lb2 from lb {{ local 169.254.78.6 as {rtr}; neighbor 169.254.78.5 as {lb}; }}
"""

_LB_CONF = """\
router id {address};
log "{folder}/{node}.log" all;
protocol device {{}}
include "{folder}/{node}/kglb-trio*.conf";
"""


def config(*, scheduler: str = "MH", long_lived: bool = False, sync: bool = False) -> dict:
    """The one config both instances run: by default mh with mh-port, TUN,
    announced at >= 1/2 alive; the echo service and sync daemons on demand."""
    balancers = [_balancer("web", 80, scheduler)]
    if long_lived:
        balancers.append(_balancer("echo", ECHO_PORT, scheduler))
    daemons = [{"state": state, "interface": "sync0", "syncId": SYNC_ID}
               for state in ("MASTER", "BACKUP")]
    return {"balancers": balancers, **({"ipvsSyncDaemons": daemons} if sync else {})}


def _balancer(name: str, port: int, scheduler: str) -> dict:
    return {
        "name": name, "setupName": "mh",
        "lbService": {"ipvsService": {
            "tcpAttributes": {"address": {"ipv4": VIP}, "port": port},
            "scheduler": scheduler, **({"flags": ["SH_PORT"]} if scheduler == "MH" else {})}},
        "upstreamRouting": {"forwardMethod": "TUNNEL"},
        "upstreamDiscovery": {"port": port, "staticAttributes": {"hosts": list(REALS.values())}},
        "upstreamChecker": {"checker": {"tcp": {"checkTimeoutMs": 1000}},
                            "intervalMs": 1000, "riseCount": 1, "fallCount": 2},
        "dynamicRouting": {"announceLimitRatio": 0.5, "bgpAttributes": {
            "localAsn": LB_ASN, "peerAsn": ROUTER_ASN, "community": "65000:1",
            "prefix": {"ipv4": VIP}, "prefixlen": 32}},
    }


def _sh(script: str) -> None:
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"set-up failed: {done.stderr.strip()}")


@dataclass
class Lab:
    folder: Path
    prefix: str = "mh"
    scheduler: str = "MH"
    long_lived: bool = False
    sync: bool = False
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def ns(self, node: str) -> str:
        return f"{self.prefix}-{node}"

    def run(self, node: str, *argv: str, check: bool = False, timeout: float = 30) -> str:
        """``argv`` inside ``node``'s namespace; its stdout. With ``check`` a
        failure raises RuntimeError with the command's stderr."""
        done = subprocess.run(["ip", "netns", "exec", self.ns(node), *argv],
                              capture_output=True, text=True, timeout=timeout)
        if check and done.returncode:
            raise RuntimeError(f"{' '.join(argv)} in {node}: {done.stderr.strip()}")
        return done.stdout

    def start(self) -> None:
        """Namespaces, BIRDs, HTTP servers, then both kglb-trio instances."""
        _sh(_TOPOLOGY.format(prefix=self.prefix, vip=VIP, client=CLIENT))
        _sh(_TUNNEL.format(prefix=self.prefix))
        if self.long_lived:
            _sh(_SPREAD.format(prefix=self.prefix))
        if self.sync:
            _sh(_SYNC_LINK.format(prefix=self.prefix))
        conf = {"rtr": _ROUTER_CONF.format(folder=self.folder, rtr=ROUTER_ASN, lb=LB_ASN)}
        for node, (address, _) in LBS.items():
            (self.folder / node).mkdir()
            conf[node] = _LB_CONF.format(address=address, folder=self.folder, node=node)
        for node, text in conf.items():
            (self.folder / f"{node}.conf").write_text(text)
            self.start_bird(node)
        for node in REALS:
            www = self.folder / f"www-{node}"
            www.mkdir()
            (www / "index.html").write_text(f"{node}\n")
            self._spawn(f"httpd-{node}", node, "busybox", "httpd", "-f", "-p", "80", "-h", str(www))
            if self.long_lived:
                self._spawn(f"echo-{node}", node, sys.executable, str(PEERS), "server", node,
                            str(ECHO_PORT))
        (self.folder / "kglb.json").write_text(json.dumps(
            config(scheduler=self.scheduler, long_lived=self.long_lived, sync=self.sync)))
        for node in LBS:
            self.start_instance(node)

    def start_instance(self, node: str) -> None:
        """(Re)start ``node``'s kglb-trio."""
        address, router = LBS[node]
        self._spawn(
            f"kglb-{node}", node, sys.executable, "-m", "actors.cli",
            "--config", str(self.folder / "kglb.json"),
            "--bgp-neighbor", f"{router}:{ROUTER_ASN}", "--bgp-source-address", address,
            "--bird-socket", self.socket(node),
            "--bird-include", str(self.folder / node / "kglb-trio.conf"),
            "--state-file", str(self.folder / node / "owned.json"),
            "--status-address", "127.0.0.1:5678", "--log-format", "json", *self.run_flags())

    def run_flags(self) -> list[str]:
        """Privilege-separated, the default as root, except with ``sync``: the sync daemons
        do not work under privilege separation yet (they are programmed from the
        unprivileged side), so that lab runs kglb-trio in one process."""
        return ["--single-process"] if self.sync else unprivileged_flags(self.folder)

    def separated(self, node: str) -> bool:
        """Whether ``node``'s kglb-trio runs privilege-separated (started an unprivileged side)."""
        return "unprivileged side started" in (self.folder / f"kglb-{node}.out").read_text()

    def start_bird(self, node: str) -> None:
        """(Re)start ``node``'s BIRD on its config written by ``start``."""
        self._spawn(f"bird-{node}", node, "bird", "-f", "-c", str(self.folder / f"{node}.conf"),
                    "-s", self.socket(node))

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int:
        """Send ``sig`` to the process ``name``; its exit code."""
        self.processes[name].send_signal(sig)
        return self.processes[name].wait(timeout=30)

    def socket(self, node: str) -> str:
        return str(self.folder / f"{node}.ctl")

    def _spawn(self, name: str, node: str, *argv: str) -> None:
        log = open(self.folder / f"{name}.out", "ab")  # noqa: SIM115 (the child keeps it)
        with log:
            self.processes[name] = subprocess.Popen(
                ["ip", "netns", "exec", self.ns(node), *argv], cwd=REPO,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)

    def exited(self) -> list[str]:
        """The processes that are no longer running (all should run until ``stop``)."""
        return [name for name, process in self.processes.items() if process.poll() is not None]

    def logs(self, *names: str, lines: int = 15) -> str:
        """The last lines of the named processes' output (all kglb ones by default)."""
        out = []
        for name in names or [n for n in self.processes if n.startswith("kglb-")]:
            path = self.folder / f"{name}.out"
            text = path.read_text(errors="replace") if path.exists() else ""
            out.append(f"--- {name}:\n" + "\n".join(text.splitlines()[-lines:]))
        return "\n".join(out)

    def stop_instances(self) -> dict[str, int | None]:
        """SIGTERM to both kglb-trio instances (a graceful shutdown); their exit codes."""
        return self._stop([n for n in self.processes if n.startswith("kglb-")], timeout=15)

    def stop(self) -> None:
        """Stop the instances if still running, then the daemons; delete the namespaces."""
        # The instances first: they withdraw through BIRD, which must still run.
        self.stop_instances()
        self._stop(list(self.processes), timeout=5)
        for node in ("rtr", "lb1", "lb2", "cli", *REALS):  # sync0 goes with lb1 and lb2
            subprocess.run(["ip", "netns", "del", self.ns(node)], capture_output=True)

    def _stop(self, names: list[str], *, timeout: float) -> dict[str, int | None]:
        for name in names:  # all signalled first, so they stop in parallel
            if self.processes[name].poll() is None:
                self.processes[name].send_signal(signal.SIGTERM)
        codes: dict[str, int | None] = {}
        for name in names:
            try:
                codes[name] = self.processes[name].wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.processes[name].kill()
                self.processes[name].wait()
                codes[name] = None
        return codes
