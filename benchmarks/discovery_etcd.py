"""``python -m benchmarks discovery``: N reals under one etcd prefix, R changes a second.

A real etcd (Debian's etcd-server) is started on loopback with a temporary
data dir and N keys are put under ``/bench/web/``. kglb-trio runs in this
process (``run_kglb``, the in-memory data plane, dummy checks every 5 s) with
one balancer whose source is that prefix. A writer process then deletes and
puts back keys at R changes a second for D seconds, logging the monotonic
time of each write; a bare watcher process (trio + httpx on the same JSON
gateway, nothing else) logs when it sees each change: that is the baseline,
etcd's own write -> watch latency, measured in the same run.

Printed: write -> data-plane change (the AddReal/DeleteReal applied) p50/p99
beside write -> bare watch event p50/p99 and their ratio; this process's CPU
(kglb-trio) over the window; and "lost": writes whose change never reached the
data plane, plus the difference between etcd's final prefix and the data
plane's reals. CLOCK_MONOTONIC is shared by the processes of one machine.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial

import httpx
import trio

from actors import logs
from actors.app import run_kglb
from actors.dataplane import MemoryDataPlane
from actors.discovery.etcd import prefix_end
from actors.probes import Prober
from kglb import AddReal, DeleteReal, ForwardMethod, Service, ServiceKey
from kglb.config import BalancerConfig, CheckerConfig, Config, DummyCheck, EtcdSource

PREFIX = "/bench/web/"
KEYS_PER_TXN = 100  # etcd's default --max-txn-ops is 128
REST = 15.0  # seconds between a key's delete and its put back (well above the p99)


def address(i: int) -> str:
    return f"10.{1 + i // 62500}.{(i // 250) % 250 + 1}.{i % 250 + 1}"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def start_etcd(data_dir: str) -> tuple[subprocess.Popen, str]:
    ports = []
    for _ in range(2):
        with __import__("socket").socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    url, peer = f"http://127.0.0.1:{ports[0]}", f"http://127.0.0.1:{ports[1]}"
    proc = subprocess.Popen(
        [shutil.which("etcd") or "etcd", "--name", "bench", "--data-dir", data_dir,
         "--listen-client-urls", url, "--advertise-client-urls", url, "--listen-peer-urls", peer,
         "--initial-advertise-peer-urls", peer, "--initial-cluster", f"bench={peer}",
         "--log-level", "error", "--quota-backend-bytes", str(4 << 30)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("etcd did not start")


def populate(url: str, n: int) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        for start in range(0, n, KEYS_PER_TXN):
            puts = [{"request_put": {"key": b64(f"{PREFIX}{i}"), "value": b64(f"{address(i)}:80")}}
                    for i in range(start, min(n, start + KEYS_PER_TXN))]
            client.post("/v3/kv/txn", json={"success": puts}).raise_for_status()


# ---------------------------------------------------------------- the two helper processes

def writer_main(url: str, n: int, rate: float, duration: float, seed: int) -> None:
    """Delete or put back one key per 1/rate s; print one JSON line per write.

    A key is put back no sooner than ``REST`` s after its delete, and deleted
    no sooner than ``REST`` s after it was put back, so that each write is a
    change of its own (two opposite writes within one coalescing window rightly
    give no data-plane change at all)."""
    rng = random.Random(seed)
    deleted: list[tuple[float, int]] = []  # (when, key), oldest first
    present = list(range(n))
    put_back: dict[int, float] = {}  # key -> when it was put back
    start = time.monotonic()
    with httpx.Client(base_url=url, timeout=10) as client:
        for k in range(int(rate * duration)):
            due = start + k / rate
            time.sleep(max(0.0, due - time.monotonic()))
            at = time.monotonic()
            if deleted and deleted[0][0] < at - REST and rng.random() < 0.5:
                _, i = deleted.pop(0)
                client.post("/v3/kv/put", json={"key": b64(f"{PREFIX}{i}"),
                                                "value": b64(f"{address(i)}:80")}).raise_for_status()
                present.append(i)
                put_back[i] = at
                op = "add"
            else:
                while True:
                    index = rng.randrange(len(present))
                    if put_back.get(present[index], -REST) < at - REST:
                        break
                i = present.pop(index)
                client.post("/v3/kv/deleterange",
                            json={"key": b64(f"{PREFIX}{i}")}).raise_for_status()
                deleted.append((at, i))
                op = "delete"
            print(json.dumps({"op": op, "address": address(i), "at": at}), flush=True)


async def _watch(url: str) -> None:
    prefix = PREFIX.encode()
    request = {"create_request": {"key": base64.b64encode(prefix).decode(),
                                  "range_end": base64.b64encode(prefix_end(prefix)).decode()}}
    async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=None)) as client:
        async with client.stream("POST", f"{url}/v3/watch", json=request) as response:
            print(json.dumps({"ready": True}), flush=True)
            async for line in response.aiter_lines():
                now = time.monotonic()
                for event in json.loads(line).get("result", {}).get("events", ()):
                    key = base64.b64decode(event["kv"]["key"]).decode()
                    i = int(key.rsplit("/", 1)[1])
                    op = "delete" if event.get("type") == "DELETE" else "add"
                    print(json.dumps({"op": op, "address": address(i), "at": now}), flush=True)


def watcher_main(url: str) -> None:
    trio.run(_watch, url)


# ---------------------------------------------------------------- the measurement

def percentiles(values: list[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    ordered = sorted(values)
    return (statistics.median(ordered),
            ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)])


def match(writes: list[dict], seen: list[dict]) -> tuple[list[float], int]:
    """Latency of each write to the first later sighting of the same change; count unmatched."""
    pending: dict[tuple[str, str], list[float]] = {}
    for s in seen:
        pending.setdefault((s["op"], s["address"]), []).append(s["at"])
    latencies, lost = [], 0
    for w in writes:
        times = pending.get((w["op"], w["address"]), [])
        later = [t for t in times if t >= w["at"]]
        if not later:
            lost += 1
            if os.environ.get("BENCH_DEBUG"):
                print("unmatched", w, sorted(times), file=sys.stderr)
            continue
        times.remove(later[0])
        latencies.append(later[0] - w["at"])
    return latencies, lost


async def measure(args, url: str) -> dict:
    changes: list[dict] = []

    def on_apply(ops) -> None:
        now = time.monotonic()
        for op in ops:
            if isinstance(op, AddReal):
                changes.append({"op": "add", "address": op.real.key.address, "at": now})
            elif isinstance(op, DeleteReal):
                changes.append({"op": "delete", "address": op.real.address, "at": now})

    config = Config(balancers=(BalancerConfig(
        name="web", setup_name="bench", service=Service(key=ServiceKey.tcp("10.0.0.1", 80)),
        forward=ForwardMethod.TUNNEL, port=80,
        checker=CheckerConfig(check=DummyCheck(), interval_ms=5000, rise=1, fall=1),
        source=EtcdSource(endpoints=(url,), prefix=PREFIX)),))
    dataplane = MemoryDataPlane()
    py = sys.executable
    async with trio.open_nursery() as nursery:
        started = time.monotonic()
        handle = await nursery.start(partial(run_kglb, config, dataplane=dataplane,
                                             prober=Prober(), on_apply=on_apply))
        with trio.fail_after(120):
            while len(main_reals(dataplane)) < args.reals:
                await trio.sleep(0.1)
        load_seconds = time.monotonic() - started
        await trio.sleep(2)
        # To a file: a pipe nobody reads while the writer runs would stall the watcher.
        watch_log = tempfile.TemporaryFile()
        watcher = await trio.lowlevel.open_process(
            [py, "-m", "benchmarks.discovery_etcd", "--watcher", url], stdout=watch_log)
        with trio.fail_after(30):
            while os.fstat(watch_log.fileno()).st_size == 0:  # its "ready" line
                await trio.sleep(0.05)
        cpu0, wall0 = _cpu(), time.monotonic()
        done = await trio.run_process(
            [py, "-m", "benchmarks.discovery_etcd", "--writer", url, "--reals", str(args.reals),
             "--rate", str(args.rate), "--duration", str(args.duration)],
            capture_stdout=True)
        cpu1, wall1 = _cpu(), time.monotonic()
        await trio.sleep(3)  # the last changes settle
        watcher.kill()
        await watcher.wait()
        watch_log.seek(0)
        seen_bare = [m for m in map(json.loads, watch_log.read().splitlines()) if "op" in m]
        writes = [json.loads(line) for line in done.stdout.decode().splitlines()]
        final = {address(int(k)) for k in _etcd_keys(url)}
        plane = set(main_reals(dataplane))
        handle.shutdown()
    ipvs, lost = match(writes, changes)
    bare, bare_lost = match(writes, seen_bare)
    return {"reals": args.reals, "rate": args.rate, "duration": args.duration,
            "writes": len(writes), "initial_load_s": load_seconds,
            "ipvs_p50": percentiles(ipvs)[0], "ipvs_p99": percentiles(ipvs)[1],
            "bare_p50": percentiles(bare)[0], "bare_p99": percentiles(bare)[1],
            "cpu_percent": 100 * (cpu1 - cpu0) / (wall1 - wall0),
            "lost": lost, "bare_lost": bare_lost, "final_mismatch": len(final ^ plane)}


def main_reals(dataplane: MemoryDataPlane) -> list[str]:
    for service in dataplane.state.services:
        if not service.key.fwmark:
            return [r.key.address for r in service.reals]
    return []


def _etcd_keys(url: str) -> list[str]:
    prefix = PREFIX.encode()
    data = httpx.post(f"{url}/v3/kv/range", json={
        "key": base64.b64encode(prefix).decode(),
        "range_end": base64.b64encode(prefix_end(prefix)).decode(), "keys_only": True},
        timeout=30).json()
    return [base64.b64decode(kv["key"]).decode().rsplit("/", 1)[1] for kv in data.get("kvs", ())]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def report(r: dict) -> str:
    ratio50 = r["ipvs_p50"] / r["bare_p50"] if r["bare_p50"] else math.nan
    ratio99 = r["ipvs_p99"] / r["bare_p99"] if r["bare_p99"] else math.nan
    return "\n".join([
        f"{r['reals']} reals under one etcd prefix, {r['rate']:g} changes/s for "
        f"{r['duration']:g} s ({r['writes']} writes); initial list -> data plane "
        f"{r['initial_load_s']:.1f} s",
        f"  write -> data plane   p50 {r['ipvs_p50'] * 1000:7.1f} ms   p99 "
        f"{r['ipvs_p99'] * 1000:7.1f} ms",
        f"  write -> bare watch   p50 {r['bare_p50'] * 1000:7.1f} ms   p99 "
        f"{r['bare_p99'] * 1000:7.1f} ms   (baseline, same run)",
        f"  ratio                 p50 {ratio50:7.1f} x    p99 {ratio99:7.1f} x",
        f"  kglb-trio CPU {r['cpu_percent']:.0f}% of one core over the window",
        f"  lost: {r['lost']} writes never reached the data plane (bare watch: "
        f"{r['bare_lost']}); final etcd prefix vs data plane: {r['final_mismatch']} differ",
    ])


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks discovery")
    parser.add_argument("--reals", type=int, default=10000)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--writer", metavar="URL")
    parser.add_argument("--watcher", metavar="URL")
    args = parser.parse_args()
    if args.writer:
        writer_main(args.writer, args.reals, args.rate, args.duration, seed=1)
        return 0
    if args.watcher:
        watcher_main(args.watcher)
        return 0
    if shutil.which("etcd") is None:
        print("etcd is not installed (apt-get install etcd-server)", file=sys.stderr)
        return 2
    logs.configure(level="warning")  # one log line per change would be measured too
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_etcd(os.path.join(tmp, "etcd"))
        try:
            populate(url, args.reals)
            result = trio.run(measure, args, url)
        finally:
            proc.kill()
            proc.wait()
    print(report(result))
    print(json.dumps(result))
    return 0 if result["lost"] == 0 and result["final_mismatch"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
