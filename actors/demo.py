"""``make demo``: the control plane on 30 loopback reals, the IPVS table live on the terminal.

Three balancers with HTTP checks: "web" (healthy reals, two answering 500, one
flapping), "api" (two refusing connections, one too slow, one flapping) and
"batch" (every real failing at first, then recovering: the balancer leaves
its initial state and its route is announced). The reals are tiny servers on
127.0.x.y in this same trio process; the control plane (actors.app.run_kglb)
runs on real IPVS where the kernel has ip_vs and we are root (VIPs are
TEST-NET-1 addresses, removed at the end), else on the in-memory data plane;
``--dataplane`` forces one.

Lifecycle rules (kglb.lifecycle) are on: a recovering real while others
serve (web's and api's flapping ones) ramps up in slow start steps ("ramping"
in the table; the batch balancer, back from all-down, does not), and a third
of the way in the config is reloaded without api's last real, which drains
("draining", connections and time left) before it is deleted.

The table is redrawn every second for ``--duration`` seconds, then the
control plane shuts down gracefully (draining every real) and the demo exits 0.
The live status page is served on ``--status-address`` (127.0.0.1:5678,
kglb's status port; another free port when that one is taken), and every
frame prints its address.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from dataclasses import dataclass
from functools import partial
from typing import TextIO

import trio

from kglb import ForwardMethod, Service, ServiceKey
from kglb.config import BalancerConfig, BgpAttributes, CheckerConfig, Config, HttpCheck, Lifecycle

from . import logs
from ._cmd_status import render_table
from ._demo_reals import DemoReal, run_demo_reals
from .app import run_kglb
from .dataplane import MemoryDataPlane
from .http import parse_address, run_http_server
from .metrics import run_loop_lag_monitor
from .status import status_document

__all__ = ["Change", "Timing", "demo_reals", "main", "run_demo"]

#: name -> (VIP, behaviour of each real). The VIPs are TEST-NET-1 (RFC 5737).
LAYOUT = {
    "web": ("192.0.2.1", ["healthy"] * 9 + ["failing"] * 2 + ["flapping"]),
    "api": ("192.0.2.2", ["healthy"] * 7 + ["refused"] * 2 + ["slow", "flapping", "healthy"]),
    "batch": ("192.0.2.3", ["recovering"] * 6),
}
CLEAR = "\x1b[H\x1b[2J"


@dataclass(frozen=True, slots=True, kw_only=True)
class Timing:
    """How fast the demo moves (the tests run it much faster)."""

    interval_ms: int = 1000
    rise: int = 2
    fall: int = 2
    timeout_ms: int = 500
    flap_period: float = 4.0
    recover_after: float = 8.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """A real's health changed between two frames."""

    at: float  # seconds since the demo started
    balancer: str
    host: str
    up: bool


def demo_reals(timing: Timing) -> dict[str, list[DemoReal]]:
    """The reals of each balancer: 127.0.<n>.<i>, n per balancer, i per real."""
    out = {}
    for n, (name, (_, behaviours)) in enumerate(LAYOUT.items(), start=1):
        out[name] = [DemoReal(address=f"127.0.{n}.{i}", behaviour=b,
                              period=timing.recover_after if b == "recovering"
                              else timing.flap_period)
                     for i, b in enumerate(behaviours, start=1)]
    return out


def demo_config(reals: dict[str, list[DemoReal]], ports: dict[str, int], timing: Timing,
                *, without: str | None = None) -> Config:
    """The demo's config; ``without`` leaves that real's address out (the drain shown)."""
    checker = CheckerConfig(
        check=HttpCheck(uri="/health", codes=(200,), timeout_ms=timing.timeout_ms),
        interval_ms=timing.interval_ms, rise=timing.rise, fall=timing.fall)
    balancers = []
    for name, (vip, _) in LAYOUT.items():
        balancers.append(BalancerConfig(
            name=name, setup_name="demo",
            service=Service(key=ServiceKey.tcp(vip, 80), scheduler="wrr"),
            forward=ForwardMethod.MASQ, port=ports[name],
            hosts=tuple(r.address for r in reals[name] if r.address != without),
            checker=checker, announce_limit_ratio=0.5,
            lifecycle=Lifecycle(drain_timeout_ms=10 * timing.interval_ms,
                                slow_start_ms=4 * timing.interval_ms),
            bgp=BgpAttributes(local_asn=65000, peer_asn=65001, community="65000:1",
                              prefix=vip, prefixlen=32)))
    return Config(balancers=tuple(balancers))


class _Screen:
    """Draws frames and notices health changes between them."""

    def __init__(self, out: TextIO, *, clear: bool) -> None:
        self.out = out
        self.clear = clear
        self.health: dict[tuple[str, str], bool] = {}
        self.changes: list[Change] = []
        self.page = ""  # the status page's address, once it is served

    def draw(self, stats, *, elapsed: float, duration: float, mode: str) -> None:
        for b in stats.balancers:
            for r in b.reals:
                key = (b.name, r.host)
                if key in self.health and self.health[key] != r.health.up:
                    self.changes.append(Change(at=elapsed, balancer=b.name, host=r.host,
                                               up=r.health.up))
                self.health[key] = r.health.up
        doc = status_document(stats, now=trio.current_time(), wall=time.time())
        reals = sum(len(b["reals"]) for b in doc["balancers"])
        up = sum(r["health"] == "up" for b in doc["balancers"] for r in b["reals"])
        lines = [f"kglb-trio demo: {reals} reals on loopback ({up} up), {mode} data plane, "
                 f"{elapsed:.0f}s of {duration:.0f}s",
                 *([f"status page: {self.page}"] if self.page else []),
                 "", render_table(doc), "recent changes:"]
        lines += [f"  {c.at:5.1f}s  {c.balancer:<6} {c.host:<12} {'up' if c.up else 'down'}"
                  for c in self.changes[-8:]] or ["  (none yet)"]
        self.out.write((CLEAR if self.clear else "\n") + "\n".join(lines) + "\n")
        self.out.flush()


async def run_demo(*, duration: float = 30.0, refresh: float = 1.0, timing: Timing = Timing(),
                   kernel: bool = False, status_address: str | None = None,
                   out: TextIO = sys.stdout, clear: bool = False) -> list[Change]:
    """Run the whole demo for ``duration`` seconds; returns the health changes seen."""
    reals = demo_reals(timing)
    if kernel:
        from .dataplane.ipvs import IpvsDataPlane

        dataplane = IpvsDataPlane(["lo"])
    else:
        dataplane = MemoryDataPlane()
    screen = _Screen(out, clear=clear)
    try:
        async with trio.open_nursery() as nursery:
            ports = {name: await nursery.start(run_demo_reals, rs) for name, rs in reals.items()}
            stopped = trio.Event()

            async def control_plane(*, task_status=trio.TASK_STATUS_IGNORED) -> None:
                await run_kglb(demo_config(reals, ports, timing), dataplane=dataplane,
                               task_status=task_status)
                stopped.set()

            began = trio.current_time()
            handle = await nursery.start(control_plane)
            if status_address:
                lag = await nursery.start(run_loop_lag_monitor)
                screen.page = await _serve_status(nursery, status_address, handle, lag, out)
            mode = "kernel IPVS" if kernel else "in-memory"
            interrupted = trio.Event()
            nursery.start_soon(_first_signal, interrupted)
            leaving = reals["api"][-1].address
            while True:
                elapsed = trio.current_time() - began
                if elapsed >= duration / 3 and leaving:  # show a drain
                    await handle.reload(demo_config(reals, ports, timing, without=leaving))
                    leaving = None
                screen.draw(handle.statistics(), elapsed=elapsed, duration=duration, mode=mode)
                if elapsed >= duration or interrupted.is_set():
                    break
                with trio.move_on_after(min(refresh, duration - elapsed)):
                    await interrupted.wait()
            if interrupted.is_set():
                out.write("\ninterrupted: stopping gracefully (again to quit at once)\n")
            handle.shutdown()
            with trio.fail_after(30):
                await stopped.wait()
            owned = handle.statistics().writer.owned
            out.write(f"\ndemo finished: {len(screen.changes)} health changes; control plane "
                      f"stopped, {len(owned.services)} services and {len(owned.addresses)} VIPs "
                      f"left owned\n")
            nursery.cancel_scope.cancel()  # the demo reals
    finally:
        with trio.CancelScope(shield=True):
            await dataplane.aclose()
    return screen.changes


async def _serve_status(nursery, address: str, handle, lag, out: TextIO) -> str:
    """Start the status server; the page's URL. A taken port is not worth failing
    the demo for: another free port on the same host is used instead."""
    start = partial(run_http_server, handle=handle, loop_lag=lag)
    try:
        host, port = await nursery.start(partial(start, address))
    except OSError as exc:
        host = parse_address(address)[0] or "127.0.0.1"
        out.write(f"demo: status address {address} unavailable ({exc.strerror}); "
                  "using another port\n")
        host, port = await nursery.start(partial(start, f"[{host}]:0"))
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


async def _first_signal(interrupted: trio.Event) -> None:
    """Ctrl-C or SIGTERM ends the demo the graceful way: in kernel mode it removes
    its services and VIP. A second one raises KeyboardInterrupt as usual."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            interrupted.set()
            return


def _kernel_problem() -> str | None:
    if not os.path.exists("/proc/net/ip_vs"):
        return "this kernel has no ip_vs (/proc/net/ip_vs is missing)"
    if os.geteuid() != 0:
        return "--kernel needs root (CAP_NET_ADMIN)"
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m actors.demo", description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=30.0, help="seconds to run (default 30)")
    p.add_argument("--refresh", type=float, default=1.0, help="seconds between frames")
    p.add_argument("--dataplane", choices=("auto", "memory", "kernel"), default="auto",
                   help="kernel: drive the kernel's IPVS (root, ip_vs); memory: the in-memory "
                        "data plane; auto (default): kernel where possible, else memory")
    p.add_argument("--kernel", dest="dataplane", action="store_const", const="kernel",
                   help="same as --dataplane kernel")
    p.add_argument("--status-address", metavar="HOST:PORT", default="127.0.0.1:5678",
                   help="serve the status page (/) and /stats, /metrics, /status there during "
                        "the demo (default 127.0.0.1:5678; '' for none)")
    p.add_argument("--log-level", default="warning", choices=("debug", "info", "warning", "error"))
    args = p.parse_args(argv)
    problem = _kernel_problem()
    if args.dataplane == "kernel" and problem:
        print(f"demo: {problem}", file=sys.stderr)
        return 2
    kernel = args.dataplane == "kernel" or (args.dataplane == "auto" and problem is None)
    if args.dataplane == "auto" and problem:
        print(f"demo: using the in-memory data plane: {problem}", file=sys.stderr)
    logs.configure("auto", args.log_level)
    started = time.monotonic()
    changes = trio.run(lambda: run_demo(duration=args.duration, refresh=args.refresh,
                                        kernel=kernel, status_address=args.status_address,
                                        clear=sys.stdout.isatty()))
    # A full run shows health changing (the self-check); one cut short by Ctrl-C may not.
    cut_short = time.monotonic() - started < args.duration
    return 0 if changes or args.duration < 10 or cut_short else 1


if __name__ == "__main__":
    sys.exit(main())
