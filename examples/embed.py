"""Embedding kglb-trio in a trio application (run: ``python examples/embed.py``).

Everything runs in memory: the in-memory data plane stands in for IPVS and a
fake check stands in for real health checks, so this needs no privileges and
touches nothing. It starts one balancer with two reals, lets one real fail,
reloads a new weight, prints what the data plane holds after each step, and
shuts down gracefully.
"""

from __future__ import annotations

from functools import partial

import trio

from actors.app import run_kglb
from actors.dataplane import MemoryDataPlane
from kglb import CheckResult, ProbeTarget
from kglb.config import load

CONFIG = """
{"balancers": [{
  "name": "web", "setupName": "demo",
  "lbService": {"ipvsService": {"tcpAttributes": {"address": {"ipv4": "192.0.2.10"}, "port": 80}}},
  "upstreamRouting": {"forwardMethod": "TUNNEL"},
  "upstreamDiscovery": {"port": 8080, "staticAttributes": {"hosts": ["198.51.100.1", "198.51.100.2"]}},
  "upstreamChecker": {"riseCount": 2, "fallCount": 2, "intervalMs": 500, "checker": {"dummy": {}}},
  "dynamicRouting": {"bgpAttributes": {"localAsn": 65000, "peerAsn": 65001,
                     "community": "65000:1", "prefix": {"ipv4": "192.0.2.10"}, "prefixlen": 32}}
}]}
"""

failing: set[str] = set()


async def fake_check(target: ProbeTarget) -> CheckResult:
    """Stands in for the configured check: passes unless the real is in ``failing``."""
    await trio.sleep(0.01)
    if target.address in failing:
        return CheckResult(passed=False, reason="refused")
    return CheckResult(passed=True)


def show(title: str, dataplane: MemoryDataPlane) -> None:
    print(f"-- {title}")
    for service in dataplane.state.services:
        reals = ", ".join(f"{r.key}={r.weight}" for r in service.reals)
        print(f"   {service.key} [{service.name}]: {reals}")


async def main() -> None:
    config = load(CONFIG)
    dataplane = MemoryDataPlane()
    async with trio.open_nursery() as nursery:
        kglb = await nursery.start(partial(run_kglb, config, dataplane=dataplane,
                                           check=fake_check))
        show("started: reals wait for riseCount passes", dataplane)
        await trio.sleep(1.0)
        show("healthy", dataplane)
        failing.add("198.51.100.2")
        await trio.sleep(1.5)
        show("198.51.100.2 failing", dataplane)
        heavier = CONFIG.replace('"dynamicRouting"', '"weightUp": 500, "dynamicRouting"')
        problems = await kglb.reload(heavier)
        await trio.sleep(0.5)
        show(f"reloaded with weightUp 500 (problems: {problems})", dataplane)
        stats = kglb.statistics()
        print(f"-- routes announced: {[r.prefix for r in stats.desired.routes]}, "
              f"state hash: {dict(stats.state_hashes)}")
        kglb.shutdown()
    show("after graceful shutdown", dataplane)


if __name__ == "__main__":
    trio.run(main)
