"""The status server under hostile clients, and memory after a shrinking reload.

    python -m benchmarks status-load [--reals 10000] [--slowloris 500] [--readers 20]
                                     [--duration 30] [--interval 2]

Starts ``--reals`` loopback reals and ``kglb-trio --dry-run`` (its own process,
so its RSS is its own) with them behind a TCP check every ``--interval``
seconds. Once every real is up it measures a quiet window (the baseline, in
the same run), then for ``--duration`` seconds:

* ``--slowloris`` clients each trickle a request header, a byte every 3 s,
  and reconnect whenever the server drops them;
* ``--readers`` clients each ask for /metrics (6-7 MB at 10k reals) with a
  4 KiB receive buffer and never read, reconnecting after 15 s;
* a well-behaved client (curl) asks for /healthz every 0.2 s, 1 s deadline each.

It reports the /healthz success rate and p99, the probing rate during the
attack beside the quiet window's (and the missed intervals; both from pages
rendered at known times, as pages are shared for a few seconds), and kglb-trio's
RSS: the quiet baseline, the peak during, and after the attackers left. Then
it reloads a 10-real config (SIGHUP) and compares the RSS with a fresh start
on that config. Loopback only; every client is bounded in time.
"""

from __future__ import annotations

import argparse
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

from ._config import REAL_PORT, build_config, config_json, real_addresses
from ._measure import percentile
from ._reals import raise_nofile_limit
from ._servers import run_reals

_ROOT = Path(__file__).resolve().parent.parent
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
METRICS = b"GET /metrics HTTP/1.1\r\nHost: bench\r\n\r\n"
SLOW_HEAD = b"GET /healthz HTTP/1.1\r\nHost: bench\r\nX-Slow: " + b"a" * 4000


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def fetch(port: int, request: bytes) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(request)
        chunks = []
        while chunk := await stream.receive_some(1 << 20):
            chunks.append(chunk)
    return b"".join(chunks)


async def counters(port: int) -> tuple[float, float, float, float]:
    """(checks done, missed intervals, reals up, rendered at) from one well-behaved scrape."""
    text = (await fetch(port, METRICS.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
            ).decode()

    def total(pattern: str) -> float:
        return sum(float(v) for v in re.findall(pattern, text, re.M))

    return (total(r"^kglb_trio_checks_total\{[^}]*\} (\S+)$"),
            total(r"^kglb_trio_check_missed_intervals_total (\S+)$"),
            total(r'^kglb:control_plane:upstreams_count\{alive="true"[^}]*\} (\S+)$'),
            total(r"^kglb_trio_metrics_rendered_timestamp_seconds (\S+)$"))


async def fresh_counters(port: int, after: float) -> tuple[float, float, float, float]:
    """``counters`` from a page rendered after Unix time ``after`` (pages are shared)."""
    while (found := await counters(port))[3] <= after:
        await trio.sleep(0.5)
    return found


async def slowloris(port: int) -> None:
    while True:
        try:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                for byte in SLOW_HEAD:
                    await stream.send_all(bytes([byte]))
                    await trio.sleep(3)
        except (OSError, trio.BrokenResourceError):
            await trio.sleep(0.1)  # dropped by the server: come back


async def non_reader(port: int) -> None:
    while True:
        sock = trio.socket.socket()
        with sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            try:
                await sock.connect(("127.0.0.1", port))
                await sock.send(METRICS)
            except OSError:
                await trio.sleep(0.1)
                continue
            await trio.sleep(15)  # never read; the server's deadline drops us first


async def healthz_prober(port: int, results: list[tuple[bool, float]]) -> None:
    """/healthz every 0.2 s from curl, a process of its own: the attackers' load on this
    process must not count as the server's latency."""
    while True:
        done = await trio.run_process(
            ["curl", "-s", "-o", "/dev/null", "--max-time", "1", "-w", "%{http_code} %{time_total}",
             f"http://127.0.0.1:{port}/healthz"], capture_stdout=True, check=False)
        code, _, took = done.stdout.decode().partition(" ")
        results.append((done.returncode == 0 and code == "200", float(took or 1.0)))
        await trio.sleep(0.2)


async def rss_sampler(pid: int, samples: list[float]) -> None:
    while True:
        samples.append(rss_mib(pid))
        await trio.sleep(0.5)


async def wait_up(port: int, reals: int, timeout: float) -> None:
    deadline = trio.current_time() + timeout
    while trio.current_time() < deadline:
        try:
            if (await counters(port))[2] >= reals:
                return
        except (OSError, trio.BrokenResourceError, ValueError):
            pass
        await trio.sleep(2)
    raise RuntimeError(f"not every real came up within {timeout:.0f} s")


def start_kglb(config: Path, port: int, workdir: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "actors.cli", "--config", str(config), "--dry-run",
         "--status-address", f"127.0.0.1:{port}", "--state-file", str(workdir / "owned.json"),
         "--log-format", "json", "--log-level", "warning"],
        cwd=_ROOT, stdout=subprocess.DEVNULL, stderr=open(workdir / "kglb.log", "ab"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def quiet_rss(pid: int, seconds: float) -> float:
    samples: list[float] = []
    with trio.move_on_after(seconds):
        await rss_sampler(pid, samples)
    return statistics.median(samples)


async def attack(args, pid: int, port: int) -> dict:
    out: dict = {}
    # The quiet window: the baseline of this run.
    for path in (METRICS, b"GET /status HTTP/1.1\r\nHost: b\r\n\r\n"):  # steady state scrapes
        await fetch(port, path.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
    c0 = await fresh_counters(port, time.time())
    out["rss_baseline_mib"] = await quiet_rss(pid, args.quiet)
    c1 = await fresh_counters(port, c0[3])
    out["checks_per_s_quiet"] = (c1[0] - c0[0]) / (c1[3] - c0[3])
    out["missed_quiet"] = c1[1] - c0[1]

    results: list[tuple[bool, float]] = []
    rss: list[float] = []
    async with trio.open_nursery() as nursery:
        for _ in range(args.slowloris):
            nursery.start_soon(slowloris, port)
        for _ in range(args.readers):
            nursery.start_soon(non_reader, port)
        nursery.start_soon(rss_sampler, pid, rss)
        await trio.sleep(2)  # let the attackers connect
        nursery.start_soon(healthz_prober, port, results)
        c2 = await fresh_counters(port, time.time())
        await trio.sleep(args.duration)
        c3 = await fresh_counters(port, c2[3] + args.duration)
        nursery.cancel_scope.cancel()
    latencies = [t for _, t in results]
    out["healthz_tries"] = len(results)
    out["healthz_ok_percent"] = 100 * sum(ok for ok, _ in results) / max(1, len(results))
    out["healthz_p99_ms"] = 1000 * (percentile(latencies, 99) or 0.0)
    out["healthz_max_ms"] = 1000 * max(latencies, default=0.0)
    out["checks_per_s_attack"] = (c3[0] - c2[0]) / (c3[3] - c2[3])
    out["missed_attack"] = c3[1] - c2[1]
    out["rss_peak_mib"] = max(rss)
    await trio.sleep(args.settle)  # the server's deadlines drop what is left
    out["rss_after_mib"] = await quiet_rss(pid, args.quiet)
    return out


async def reload_shrink(args, proc: subprocess.Popen, port: int, small: Path, workdir: Path
                        ) -> dict:
    out: dict = {"rss_before_reload_mib": rss_mib(proc.pid)}
    proc.send_signal(signal.SIGHUP)
    await wait_up(port, args.small, 60)
    await trio.sleep(args.settle)
    await fetch(port, METRICS.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
    out["rss_after_reload_mib"] = await quiet_rss(proc.pid, args.quiet)
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    fresh_port = free_port()
    fresh = start_kglb(small, fresh_port, workdir)
    try:
        await wait_up(fresh_port, args.small, 60)
        await trio.sleep(args.settle)
        await fetch(fresh_port, METRICS.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
        out["rss_fresh_small_mib"] = await quiet_rss(fresh.pid, args.quiet)
    finally:
        fresh.send_signal(signal.SIGTERM)
        fresh.wait(30)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks status-load", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reals", type=int, default=10_000)
    p.add_argument("--small", type=int, default=10, help="reals of the shrunk config")
    p.add_argument("--slowloris", type=int, default=500)
    p.add_argument("--readers", type=int, default=20, help="non-reading /metrics clients")
    p.add_argument("--duration", type=float, default=30.0, help="attack window, s")
    p.add_argument("--quiet", type=float, default=10.0, help="quiet windows, s")
    p.add_argument("--settle", type=float, default=12.0, help="wait after the attack, s")
    p.add_argument("--interval", type=float, default=2.0, help="check interval, s")
    p.add_argument("--port", type=int, default=REAL_PORT)
    args = p.parse_args(argv)
    raise_nofile_limit()
    reals = real_addresses(args.reals)

    def config(hosts) -> str:
        return config_json(build_config(hosts, check="tcp", interval_ms=int(args.interval * 1000),
                                        rise=1, fall=2, reals_per_vip=500, concurrency=100,
                                        timeout_ms=1000, port=args.port))

    with tempfile.TemporaryDirectory(prefix="kglb-status-load-") as tmp:
        workdir = Path(tmp)
        big, small = workdir / "big.json", workdir / "small.json"
        big.write_text(config(reals))
        small.write_text(config(reals[:args.small]))
        live = workdir / "live.json"
        live.write_text(big.read_text())
        with run_reals(reals, (), port=args.port, protocol="tcp", workdir=workdir / "reals",
                       server="auto"):
            port = free_port()
            proc = start_kglb(live, port, workdir)
            try:
                trio.run(wait_up, port, args.reals, 300.0)
                out = trio.run(attack, args, proc.pid, port)
                live.write_text(small.read_text())
                out |= trio.run(reload_shrink, args, proc, port, small, workdir)
            finally:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(30)
            if proc.returncode not in (0, None):
                print((workdir / "kglb.log").read_text()[-3000:], file=sys.stderr)
    scheduled = args.reals / args.interval
    print(f"kglb-trio --dry-run, {args.reals} reals, TCP check every {args.interval:g} s "
          f"({scheduled:.0f} checks/s scheduled); {args.slowloris} slowloris + {args.readers} "
          f"non-reading /metrics clients for {args.duration:g} s")
    rows = [
        ("/healthz answered 200 within 1 s", f"{out['healthz_ok_percent']:.1f} % "
         f"of {out['healthz_tries']}", "100 %"),
        ("/healthz p99 / max", f"{out['healthz_p99_ms']:.0f} / {out['healthz_max_ms']:.0f} ms",
         "< 1000 ms"),
        ("checks/s quiet -> under attack", f"{out['checks_per_s_quiet']:.0f} -> "
         f"{out['checks_per_s_attack']:.0f}", "held"),
        ("missed intervals quiet / attack", f"{out['missed_quiet']:.0f} / "
         f"{out['missed_attack']:.0f}", "0"),
        ("RSS baseline (quiet, after a scrape)", f"{out['rss_baseline_mib']:.1f} MiB", ""),
        ("RSS growth during (peak - baseline)",
         f"{out['rss_peak_mib'] - out['rss_baseline_mib']:+.1f} MiB", "< 20 MiB"),
        ("RSS after the attack - baseline",
         f"{out['rss_after_mib'] - out['rss_baseline_mib']:+.1f} MiB", "within +-10 MiB"),
        (f"RSS after reload to {args.small} reals / fresh start",
         f"{out['rss_after_reload_mib']:.1f} / {out['rss_fresh_small_mib']:.1f} MiB "
         f"(before reload {out['rss_before_reload_mib']:.1f})", "close"),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value, target in rows:
        print(f"  {name:<{width}}  {value:<32} target {target}" if target
              else f"  {name:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
