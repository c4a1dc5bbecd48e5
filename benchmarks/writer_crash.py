"""``python -m benchmarks writer-crash``: kill -9 at random instants of a first
apply, then restart and stop; count what leaked. Plus a weight flip beside a
hold. Root and a kernel with ip_vs (in the VM):

    bash tools/ipvs-vm/run-in-ipvs-vm.sh .venv/bin/python -m benchmarks writer-crash

Each cycle: a foreign IPVS service and address are in the kernel; a writer
process starts a first apply of ``--services`` x ``--reals`` MASQ reals and is
SIGKILLed at a random instant from 0.5 s before the first ownership record is
written to 0.5 s after the whole first apply is done (both calibrated first):
some kills land before the record, most during the apply, some after it. A new writer starts,
converges to the same or to a half-size config, and stops gracefully. The
kernel (``ipvsadm -Sn``, addresses on lo) must then equal what it was before
the cycle: anything else is a leak, counted per kind.

The weight flip: balancers X and Y on the real kernel, Y is removed (its route
withdrawn with a 3 s hold), and 0.5 s later a weight of X changes; the time
until the kernel has it is printed beside the same flip with no hold running
(the baseline), with their ratio.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "kernel"))

import trio  # noqa: E402
from _writer_child import start_child  # noqa: E402

from actors.dataplane.ipvs import IpvsDataPlane  # noqa: E402
from actors.routes import MemorySpeaker  # noqa: E402
from actors.writer import Writer  # noqa: E402
from kglb import (  # noqa: E402
    DataPlaneState,
    LinkAddress,
    Real,
    RealKey,
    Route,
    Service,
    ServiceKey,
    ServiceState,
)


def sh(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def snapshot() -> tuple[set[str], set[str]]:
    ipvs = set(sh("ipvsadm", "-Sn").splitlines())
    addresses = {line.split()[3] for line in sh("ip", "-o", "addr", "show", "dev", "lo").splitlines()}
    return ipvs, addresses


def counts() -> tuple[int, int, int]:
    ipvs, addresses = snapshot()
    return (sum(x.startswith("-A") for x in ipvs), sum(x.startswith("-a") for x in ipvs),
            sum(a.startswith("10.0.1.") for a in addresses))


def _calibrate(record: Path, services: int, reals: int) -> tuple[float, float]:
    """Seconds from the fork to the first ownership record, and to "applied"."""
    started = time.monotonic()
    child = start_child(record, services, reals, then="hold")
    first: list[float] = []

    def watch() -> None:
        while not record.exists():
            time.sleep(0.005)
        first.append(time.monotonic() - started)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    child.wait_for("applied")
    whole = time.monotonic() - started
    watcher.join()
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert start_child(record, services, reals).wait()[0] == 0
    return first[0], whole


def crash_cycles(cycles: int, services: int, reals: int) -> int:
    sh("ipvsadm", "-A", "-t", "10.0.9.9:80", "-s", "wlc")
    sh("ipvsadm", "-a", "-t", "10.0.9.9:80", "-r", "10.2.9.9:80", "-m", "-w", "3")
    sh("ip", "addr", "add", "10.0.9.9/32", "dev", "lo")
    before = snapshot()
    with tempfile.TemporaryDirectory() as tmp:
        record = Path(tmp) / "owned.json"
        first, whole = _calibrate(record, services, reals)
        print(f"a whole first apply of {services} x {reals}: first record written "
              f"{first:.2f} s after the fork, applied at {whole:.2f} s; kills are drawn "
              f"from [{max(0.0, first - 0.5):.2f}, {whole + 0.5:.2f}] s")
        print("cycle  kill at s  in kernel then (svc/reals/VIPs)  restart with  "
              "leaked svc/reals/VIPs")
        leaked_total = 0
        for cycle in range(1, cycles + 1):
            at = random.uniform(max(0.0, first - 0.5), whole + 0.5)
            child = start_child(record, services, reals, then="hold")
            time.sleep(at)
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
            then = counts()
            restart = random.choice([services, services // 2])
            code, said = start_child(record, restart, reals).wait()
            ipvs, addresses = snapshot()
            extra_ipvs, extra_addr = ipvs - before[0], addresses - before[1]
            missing = (before[0] - ipvs) | (before[1] - addresses)
            leaked = (sum(x.startswith("-A") for x in extra_ipvs),
                      sum(x.startswith("-a") for x in extra_ipvs), len(extra_addr))
            leaked_total += sum(leaked) + len(missing) + (code != 0)
            print(f"{cycle:5}  {at:9.2f}  {'/'.join(map(str, then)):>30}  {restart:12}  "
                  f"{'/'.join(map(str, leaked)):>21}"
                  + (f"  FOREIGN CHANGED {sorted(missing)}" if missing else "")
                  + ("" if code == 0 else f"  restart exit {code} {said}"))
    print(f"leaked objects over {cycles} cycles: {leaked_total}")
    return leaked_total


def _part(address: str, weight: int, hold_ms: int) -> DataPlaneState:
    key = ServiceKey.tcp(address, 80)
    return DataPlaneState(
        services=(ServiceState(service=Service(key=key), reals=tuple(
            Real(key=RealKey(address=f"10.4.0.{j}", port=80), weight=weight if j == 1 else 1)
            for j in range(1, 11))),),
        addresses=(LinkAddress(address=address),),
        routes=(Route(prefix=f"{address}/32", local_asn=65000, peer_asn=65001,
                      hold_time_ms=hold_ms),))


def _both(*parts: DataPlaneState) -> DataPlaneState:
    return DataPlaneState(services=tuple(s for p in parts for s in p.services),
                          addresses=tuple(a for p in parts for a in p.addresses),
                          routes=tuple(r for p in parts for r in p.routes))


async def _flip_ms(during_hold: bool) -> float:
    dataplane = IpvsDataPlane()
    seen: list[float] = []
    writer = Writer(dataplane, MemorySpeaker(), ownership_path=Path(tempfile.mkdtemp()) / "o",
                    on_apply=lambda ops: seen.append(time.monotonic()))
    send, receive = trio.open_memory_channel(1)
    x, y = _part("10.0.2.1", 1, 3000), _part("10.0.2.2", 1, 3000)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run, receive)
            await send.send(_both(x, y))
            while writer.statistics().applied is None:
                await trio.sleep(0.01)
            await send.send(x if during_hold else _both(x, y))  # Y removed: its hold starts
            await trio.sleep(0.5)
            flipped = _part("10.0.2.1", 7, 3000)
            seen.clear()
            sent = time.monotonic()
            await send.send(flipped if during_hold else _both(flipped, y))
            while not seen:
                await trio.sleep(0.001)
            took = (seen[0] - sent) * 1000
            held = bool(writer.statistics().held)
            assert held == during_hold, writer.statistics().held
            await send.aclose()
    finally:
        await dataplane.aclose()
    return took


def flip_beside_hold(rounds: int) -> None:
    base, held = [], []
    for _ in range(rounds):  # interleaved: the shared machine's noise hits both alike
        base.append(trio.run(_flip_ms, False))
        held.append(trio.run(_flip_ms, True))
    b, h = sorted(base)[len(base) // 2], sorted(held)[len(held) // 2]
    print(f"weight flip, median of {rounds}: {h:.1f} ms while another VIP is in a 3 s hold, "
          f"{b:.1f} ms with no hold (baseline); ratio {h / b:.2f}; worst during hold "
          f"{max(held):.1f} ms")


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks writer-crash")
    p.add_argument("--cycles", type=int, default=10)
    p.add_argument("--services", type=int, default=50)
    p.add_argument("--reals", type=int, default=50)
    p.add_argument("--flips", type=int, default=5, help="rounds of the weight-flip measure")
    p.add_argument("--seed", type=int, default=None)
    args = p.parse_args()
    random.seed(args.seed)
    flip_beside_hold(args.flips)
    return 1 if crash_cycles(args.cycles, args.services, args.reals) else 0


if __name__ == "__main__":
    sys.exit(main())
