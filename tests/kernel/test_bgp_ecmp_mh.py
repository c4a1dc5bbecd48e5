"""Two kglb-trio instances, one VIP, ECMP: with ``mh`` both send a flow to the same real.

The topology is in ``_bgp_mh_lab``: two balancer namespaces, each with its own
IPVS table, BIRD and ``python -m actors.cli`` (IpvsDataPlane + BirdSpeaker),
announce the same VIP to a router that installs both paths (BIRD ``merge
paths``). The client's flow is then forced through each balancer in turn (a
policy route on the router for the client's interface), keeping its source
address and port: Maglev hashing (``mh`` with mh-port) must pick the same real
on both balancers, so a flow survives being moved between them by ECMP.

Real daemons and real processes: every wait is bounded. Runs in the VM only.
"""

from __future__ import annotations

import shutil

import pytest
import trio
from _bgp_mh_lab import CLIENT, LBS, REALS, VIP, Lab
from _unprivileged import IN_VM

#: One flow per source port; mh-port hashes address and port, so they spread.
PORTS = tuple(range(40001, 40007))


@pytest.fixture
def lab(tmp_path):
    for tool in ("bird", "birdc", "busybox", "curl", "ipvsadm"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed (apt-get install bird2 busybox curl ipvsadm)")
    lab = Lab(tmp_path)
    try:
        lab.start()
        yield lab
    finally:
        lab.stop()


async def eventually(lab: Lab, check, timeout: float, what: str, *, running: bool = True) -> None:
    """Poll ``check`` until true; fail after ``timeout`` s or, while the
    processes should be ``running``, as soon as one of them exited."""
    with trio.move_on_after(timeout):
        while not check():
            if running and lab.exited():
                pytest.fail(f"{', '.join(lab.exited())} exited while waiting: {what}\n{lab.logs()}")
            await trio.sleep(0.5)  # each poll forks ip/ipvsadm: cheap, but the VM is slow
        return
    protocols = lab.run("rtr", "birdc", "-s", lab.socket("rtr"), "show", "protocols")
    pytest.fail(f"not within {timeout} s: {what}\n{protocols}\n{lab.logs()}")


def vip_route(lab: Lab) -> str:
    return lab.run("rtr", "ip", "route", "show", VIP)


def weights(lab: Lab, lb: str) -> dict[str, int]:
    """Real address -> IPVS weight of the VIP's service in ``lb``'s namespace."""
    out = lab.run(lb, "ipvsadm", "-Ln", "-t", f"{VIP}:80")
    return {line.split()[1].rsplit(":", 1)[0]: int(line.split()[3])
            for line in out.splitlines() if line.strip().startswith("-> ") and "Tunnel" in line}


def flows(lab: Lab, lb: str) -> dict[int, str]:
    """Client source port -> real address, from ``lb``'s IPVS connection table."""
    out = lab.run(lb, "ipvsadm", "-Lnc")
    found = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 6 and parts[3].startswith(f"{CLIENT}:") and parts[4] == f"{VIP}:80":
            found[int(parts[3].rsplit(":", 1)[1])] = parts[5].rsplit(":", 1)[0]
    return found


def fetch(lab: Lab, port: int) -> str:
    """The name of the real that answers the client's request from source port ``port``."""
    # 10 s: under software emulation on a busy host a first SYN can take seconds.
    return lab.run("cli", "curl", "-s", "--max-time", "10", "--local-port", str(port),
                   f"http://{VIP}/", timeout=15).strip()


async def test_two_balancers_announce_one_vip_and_agree_on_the_real_of_a_flow(lab):
    started = trio.current_time()

    def two_paths() -> bool:
        route = vip_route(lab)
        return "nexthop via 169.254.78.1 " in route and "nexthop via 169.254.78.5 " in route

    def all_up(lb: str) -> bool:
        now = weights(lab, lb)
        return set(now) == set(REALS.values()) and all(now.values())

    # Under TCG, two instances starting at once take most of this: 25-75 s as each
    # separates privileges (writer, access check, drop, unprivileged side: four Pythons).
    await eventually(lab, two_paths, 180,
                     "the router's kernel route to the VIP has both balancers as next hops")
    print(f"both paths at the router after {trio.current_time() - started:.1f} s")
    for lb in LBS:
        await eventually(lab, lambda lb=lb: all_up(lb), 30, f"{lb}'s reals are all up")
        service = lab.run(lb, "ipvsadm", "-Ln", "-t", f"{VIP}:80")
        assert " mh" in service and "mh-port" in service, service
    assert weights(lab, "lb1") == weights(lab, "lb2")
    # As root kglb-trio runs privilege-separated by default (one process outside the VM).
    assert [lab.separated(lb) for lb in LBS] == [IN_VM, IN_VM], lab.logs()

    print(f"all reals up in both balancers after {trio.current_time() - started:.1f} s")
    # Force the client's traffic through one balancer, then the other.
    lab.run("rtr", "ip", "rule", "add", "iif", "cli", "lookup", "101", "pref", "100", check=True)
    # Each source port is used twice (once per balancer). When curl happens to
    # close first, its side of the first connection sits in TIME_WAIT and the
    # second bind() to that port fails: the client keeps no TIME_WAIT sockets.
    lab.run("cli", "sysctl", "-qw", "net.ipv4.tcp_max_tw_buckets=0", check=True)
    answers: dict[str, dict[int, str]] = {}
    # lb2 sees the flows in the opposite order, so that a scheduler with
    # memory (rr, lc...) could not agree by chance: only the hash decides.
    for (lb, (address, _)), ports in zip(LBS.items(), (PORTS, PORTS[::-1])):
        lab.run("rtr", "ip", "route", "replace", f"{VIP}/32", "via", address, "table", "101",
                check=True)
        answers[lb] = {port: fetch(lab, port) for port in ports}

    assert set(answers["lb1"].values()) <= set(REALS), answers  # every request answered
    assert answers["lb1"] == answers["lb2"], answers
    assert len(set(answers["lb1"].values())) >= 2, answers  # the port is hashed too
    # Each balancer really carried each flow, and scheduled it to that real.
    expected = {port: REALS[name] for port, name in answers["lb1"].items()}
    assert flows(lab, "lb1") == expected
    assert flows(lab, "lb2") == expected

    print(f"flows checked after {trio.current_time() - started:.1f} s: {answers['lb1']}")
    # Graceful shutdown of both: routes withdrawn, services and VIPs removed.
    lab.run("rtr", "ip", "rule", "del", "pref", "100", check=True)
    codes = lab.stop_instances()
    assert codes == {"kglb-lb1": 0, "kglb-lb2": 0}, lab.logs()
    await eventually(lab, lambda: not vip_route(lab).strip(), 5,
                     "the router has no route to the VIP", running=False)
    for lb in LBS:
        assert VIP not in lab.run(lb, "ipvsadm", "-Ln")
        assert VIP not in lab.run(lb, "ip", "addr", "show", "dev", "lo")
