"""The status page at N reals: its size, its render time, and what open pages cost the probes.

    python -m benchmarks status-page [--reals 10000] [--pages 5] [--duration 20]

kglb-trio (``actors.app.run_kglb``, in-process probing, memory data plane)
checks ``--reals`` TCP reals on loopback (served by another process, see
``benchmarks._servers``) every ``--interval`` seconds, with its status server
on a free port. After every real is up, three windows of ``--duration``
seconds are measured in the same run (after two check intervals, so the
bunched first rounds are over), each with the loop-lag ticker and the
prober's check count:

- ``idle``: no page open (the baseline), first and again last;
- ``pages``: ``--pages`` clients polling ``/page.json`` every 2 s, as the
  page's script does (another process, as browsers would be);
- ``status``: the same clients polling ``/status`` every 2 s, the whole
  document, as a page built on it would.

The figures that matter are the ratios: checks/s and loop lag with pages
open against idle (1.0 = no effect) and against polling ``/status``. Page
sizes are those served; render times are the page model's, measured in
this process on the live snapshot.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import trio

from actors import logs
from actors.app import run_kglb
from actors.dataplane import MemoryDataPlane
from actors.gc_policy import settle_gc
from actors.http import run_http_server
from actors.probes import Prober
from actors.status import status_json
from actors.status_page import POLL_SECONDS, render

from ._config import REAL_PORT, build_config, real_addresses
from ._measure import LoopLag, summary_ms
from ._servers import run_reals

_ROOT = Path(__file__).resolve().parent.parent
#: The measured windows in order; idle comes twice, so a drift of the
#: machine's load shows as two different idle figures.
WINDOWS = (("idle", None), ("pages", "/page.json"), ("status", "/status"), ("idle again", None))


def poll(urls: list[str], period: float) -> None:
    """``--poll`` mode: one thread per URL, each fetching it every ``period`` s, until killed."""
    def page(url: str) -> None:
        while True:
            began = time.monotonic()
            with urllib.request.urlopen(url, timeout=30) as r:
                r.read()
            time.sleep(max(0.0, period - (time.monotonic() - began)))

    threads = [threading.Thread(target=page, args=(u,), daemon=True) for u in urls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _fetch_size(url: str) -> int:
    with urllib.request.urlopen(url, timeout=60) as r:
        return len(r.read())


def _render_ms(fn, repeat: int = 5) -> float:
    took = []
    for _ in range(repeat):
        began = time.perf_counter()
        fn()
        took.append(time.perf_counter() - began)
    return round(statistics.median(took) * 1000, 1)


async def _window(handle, lag: LoopLag, duration: float, pollers: list[str] | None) -> dict:
    proc = None
    if pollers:
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "benchmarks.status_page", "--poll", *pollers], cwd=_ROOT)
        await trio.sleep(1.0)  # the clients' start-up is not the server's cost
    try:
        lag.reset()
        checks0, began = handle.statistics().prober.checks, trio.current_time()
        await trio.sleep(duration)
        checks = handle.statistics().prober.checks - checks0
        took = trio.current_time() - began
    finally:
        if proc is not None:
            proc.kill()
            await proc.wait()
    lag_ms = summary_ms(lag.samples)
    return {"checks/s": round(checks / took), "lag p50 ms": lag_ms["p50_ms"],
            "lag p99 ms": lag_ms["p99_ms"], "lag max ms": lag_ms["max_ms"]}


async def _wait_all_up(handle, n: int, timeout: float) -> float:
    began = trio.current_time()
    with trio.fail_after(timeout):
        while sum(r.health.up for b in handle.statistics().balancers for r in b.reals) < n:
            await trio.sleep(0.5)
    return trio.current_time() - began


async def measure(args) -> dict:
    reals = real_addresses(args.reals)
    config = build_config(reals, check="tcp", interval_ms=int(args.interval * 1000), rise=1,
                          fall=2, reals_per_vip=500, concurrency=1000, timeout_ms=1000,
                          port=args.real_port)
    out: dict = {}
    async with trio.open_nursery() as nursery:
        stopped = trio.Event()

        async def control_plane(task_status) -> None:
            await run_kglb(config, dataplane=MemoryDataPlane(), prober=Prober(),
                           task_status=task_status)
            stopped.set()

        handle = await nursery.start(control_plane)
        host, port = await nursery.start(lambda task_status: run_http_server(
            "127.0.0.1:0", handle, task_status=task_status))
        lag = LoopLag()
        await nursery.start(lag.run)
        out["bring-up s"] = round(await _wait_all_up(handle, len(reals), 120), 1)
        settle_gc()  # as `kglb-trio` does once started
        base = f"http://{host}:{port}"
        for path in ("/", "/page.json", "/status"):
            out[f"{path} bytes"] = await trio.to_thread.run_sync(_fetch_size, base + path)
        stats, now, wall = handle.statistics(), trio.current_time(), time.time()
        out["render / ms"] = _render_ms(lambda: render("html", stats, now=now, wall=wall,
                                                        query=""))
        out["render /page.json ms"] = _render_ms(lambda: render("json", stats, now=now,
                                                                 wall=wall, query=""))
        out["render /status ms"] = _render_ms(lambda: status_json(stats, now=now, wall=wall))
        # The first rounds after bring-up are bunched: let one interval pass, twice.
        await trio.sleep(2 * args.interval)
        for name, path in WINDOWS:
            urls = None if path is None else [base + path] * args.pages
            out[name] = await _window(handle, lag, args.duration, urls)
        handle.shutdown()  # ends run_kglb; the server and the ticker run until cancelled
        await stopped.wait()
        nursery.cancel_scope.cancel()
    return out


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks status-page",
                                description=__doc__.splitlines()[0])
    p.add_argument("--reals", type=int, default=10_000)
    p.add_argument("--pages", type=int, default=5)
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--interval", type=float, default=5.0, help="check interval, s (default 5)")
    p.add_argument("--real-port", type=int, default=REAL_PORT + 100,
                   help=f"the reals' port (default {REAL_PORT + 100}: beside, not on, the "
                        "other harnesses' so they can run at once)")
    p.add_argument("--poll", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.poll:
        poll(args.poll, POLL_SECONDS)
        return
    logs.configure("auto", "warning")  # 10k "real is up" lines are not the figures
    with tempfile.TemporaryDirectory(prefix="kglb-bench-page-") as workdir, \
            run_reals(real_addresses(args.reals), (), port=args.real_port, protocol="tcp",
                      workdir=Path(workdir)):
        out = trio.run(measure, args)
    print(f"status page at {args.reals} reals, {args.pages} pages polling every "
          f"{POLL_SECONDS:g} s, checks every {args.interval:g} s")
    for key in ("bring-up s", "/ bytes", "/page.json bytes", "/status bytes", "render / ms",
                "render /page.json ms", "render /status ms"):
        print(f"  {key:<24} {out[key]:,}")
    print(f"  {'window':<11} {'checks/s':>9} {'lag p50 ms':>11} {'lag p99 ms':>11} "
          f"{'lag max ms':>11}")
    for name, _ in WINDOWS:
        w = out[name]
        print(f"  {name:<11} {w['checks/s']:>9,} {w['lag p50 ms']:>11} {w['lag p99 ms']:>11} "
              f"{w['lag max ms']:>11}")
    pages, full = out["pages"], out["status"]
    idle = {k: (out["idle"][k] + out["idle again"][k]) / 2 for k in ("checks/s", "lag p99 ms")}
    print(f"  pages/idle (mean of both): checks/s {pages['checks/s'] / idle['checks/s']:.2f}x, "
          f"lag p99 {pages['lag p99 ms'] / idle['lag p99 ms']:.2f}x")
    print(f"  pages/status: checks/s {pages['checks/s'] / full['checks/s']:.2f}x, "
          f"lag p99 {pages['lag p99 ms'] / full['lag p99 ms']:.2f}x")


if __name__ == "__main__":
    main()
