"""Scraping /stats and /status of a large snapshot: render cost and event-loop stall.

    python -m benchmarks.scrape [--reals 10000] [--scrapes 5]

A snapshot of ``--reals`` reals (100 per balancer, each with a check tally)
is served by actors.http to curl (needs curl); a ticker task measures how late the event loop
wakes it during the scrapes. The baseline, in the same run, renders the same
text inline on the event loop, as a naive handler would. The figure that
matters is the ratio of the worst stalls.
"""

from __future__ import annotations

import argparse
import statistics
import time

import trio

from actors.app import KglbStatistics
from actors.http import run_http_server
from actors.metrics import CheckTally, render_metrics
from actors.probes import ProberStatistics
from actors.status import status_json
from actors.writer import WriterStatistics
from kglb import (
    BalancerState,
    CheckResult,
    DataPlaneState,
    Health,
    ProbeResult,
    ProbeTarget,
    Real,
    RealKey,
    RealStatus,
    Service,
    ServiceKey,
    ServiceState,
)
from kglb.config import TcpCheck

_TARGET = ProbeTarget(address="10.100.0.1", port=80, check=TcpCheck())


def big_snapshot(n_reals: int) -> KglbStatistics:
    balancers, checks = [], {}
    per = 100
    tally = CheckTally()
    for latency in (0.001, 0.002, 0.05):
        tally = tally.record(ProbeResult(target=_TARGET, at=0.0,
                                         result=CheckResult(passed=True, latency=latency)))
    for b in range(max(1, n_reals // per)):
        key = ServiceKey.tcp(f"10.{b // 250}.{b % 250}.1", 80)
        reals, statuses = [], []
        for i in range(per):
            address = f"10.{100 + b // 250}.{b % 250}.{i + 1}"
            reals.append(Real(key=RealKey(address=address, port=80), weight=1000,
                              hostname=f"h{b}-{i}"))
            statuses.append(RealStatus(host=f"h{b}-{i}", address=address, port=80,
                                       health=Health(up=True, count=3), weight=1000,
                                       last=CheckResult(passed=True, latency=0.001), since=0.0))
        identity = f"b{b}-{key.kglb_key}"
        balancers.append(BalancerState(
            identity=identity, name=f"b{b}", setup_name="bench",
            services=(ServiceState(service=Service(key=key), reals=tuple(reals), name=f"b{b}"),),
            reals=tuple(statuses), alive_ratio=1.0, initial=False))
        checks.update({(identity, s.host): tally for s in statuses})
    desired = DataPlaneState(services=tuple(s for b in balancers for s in b.services))
    return KglbStatistics(
        balancers=tuple(balancers), desired=desired, route_decisions={}, state_hashes={},
        checks=checks, bgp_established=True,
        writer=WriterStatistics(applied=desired, manager_state="available"),
        prober=ProberStatistics(checks=0, by_reason={}, in_flight=0, targets=0, watches=0,
                                missed=0),
        reloads_ok=0, reloads_failed=0, restarts=0, restarts_by_actor={}, invalid_states=0,
        started_at=time.time())


class Handle:
    def __init__(self, stats):
        self.stats = stats

    def statistics(self):
        return self.stats


async def _ticker(stalls: list[float]) -> None:
    while True:
        start = trio.current_time()
        await trio.sleep(0.001)
        stalls.append(trio.current_time() - start - 0.001)


async def measure(stats, scrapes: int) -> dict[str, float]:
    out = {}
    async with trio.open_nursery() as nursery:
        _, port = await nursery.start(lambda task_status: run_http_server(
            "127.0.0.1:0", Handle(stats), task_status=task_status))
        stalls: list[float] = []
        nursery.start_soon(_ticker, stalls)
        await trio.sleep(2)  # idle: the machine's own noise, for reference
        out["idle worst loop stall (s)"] = max(stalls)
        # The scraper is another process (curl), as Prometheus would be, so the
        # stalls measured are the server's alone.
        for path in ("/stats", "/status"):
            stalls.clear()
            took = []
            for _ in range(scrapes):
                began = time.perf_counter()
                done = await trio.run_process(
                    ["curl", "-sf", "-o", "/dev/null", "-w", "%{size_download}",
                     f"http://127.0.0.1:{port}{path}"], capture_stdout=True)
                took.append(time.perf_counter() - began)
            out[f"{path} served (median s)"] = statistics.median(took)
            out[f"{path} bytes"] = int(done.stdout)
            out[f"{path} worst loop stall, threaded (s)"] = max(stalls)
        # baseline: the same work inline on the event loop
        for path, render in (("/stats", lambda: render_metrics(stats)),
                             ("/status", lambda: status_json(stats, now=0.0, wall=time.time()))):
            stalls.clear()
            for _ in range(scrapes):
                render()
                await trio.sleep(0.01)
            out[f"{path} worst loop stall, inline (s)"] = max(stalls)
        nursery.cancel_scope.cancel()
    return out


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.scrape")
    p.add_argument("--reals", type=int, default=10_000)
    p.add_argument("--scrapes", type=int, default=5)
    args = p.parse_args()
    stats = big_snapshot(args.reals)
    out = trio.run(measure, stats, args.scrapes)
    for key, value in out.items():
        print(f"{key:<45} {value:,.4f}" if isinstance(value, float) else f"{key:<45} {value:,}")
    for path in ("/stats", "/status"):
        ratio = (out[f"{path} worst loop stall, inline (s)"]
                 / max(out[f"{path} worst loop stall, threaded (s)"], 1e-6))
        print(f"{path}: worst stall inline / threaded = {ratio:.1f}x")


if __name__ == "__main__":
    main()
