"""Pushing a whole IPVS table into the kernel: IpvsDataPlane beside ``ipvsadm -R``.

    python -m benchmarks ipvs [--services 100] [--reals 100] [--rounds 3]

Needs a kernel with ip_vs and root: on a host without ip_vs it re-runs itself
inside the VM (tools/ipvs-vm/run-in-ipvs-vm.sh), so both sides are measured in
the same VM, the same run.

Each round, from an empty IPVS table:

* ``ours``: what the writer does on a first start: ``read()`` the kernel,
  ``plan()`` against the desired state, ``apply()`` the operations (one
  pipelined netlink batch through the data plane's thread), all from trio;
* ``ipvsadm -R``: the same rules as ipvsadm text, restored by one process.

The figure is the median ratio ours / ipvsadm (target <= 1.0). It also reports
the operations planned for one real's weight flip (target 1) and the time of a
full read-back of the table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import trio

from kglb import (
    DataPlaneState,
    ForwardMethod,
    Owned,
    Real,
    RealKey,
    Service,
    ServiceKey,
    ServiceState,
    UpdateReal,
)
from kglb.plan import plan

_ROOT = Path(__file__).resolve().parent.parent


def desired_state(services: int, reals: int) -> DataPlaneState:
    return DataPlaneState(
        services=tuple(
            ServiceState(
                service=Service(key=ServiceKey.tcp(f"10.0.{s // 250}.{s % 250 + 1}", 80), scheduler="wrr"),
                reals=tuple(
                    Real(key=RealKey(address=f"10.{100 + r // 250}.{s % 250}.{r % 250 + 1}", port=80),
                         weight=1 + r % 10, forward=ForwardMethod.TUNNEL)
                    for r in range(reals)
                ),
            )
            for s in range(services)
        )
    )


def ipvsadm_rules(state: DataPlaneState) -> str:
    lines = []
    for svc in state.services:
        vip = f"{svc.key.address}:{svc.key.port}"
        lines.append(f"-A -t {vip} -s {svc.service.scheduler}")
        lines += [f"-a -t {vip} -r {r.key} -i -w {r.weight}" for r in svc.reals]
    return "\n".join(lines) + "\n"


def flush() -> None:
    subprocess.run(["ipvsadm", "-C"], check=True)


def time_ipvsadm(rules: str) -> float:
    flush()
    started = time.perf_counter()
    subprocess.run(["ipvsadm", "-R"], input=rules, text=True, check=True)
    return time.perf_counter() - started


async def time_ours(dataplane, desired: DataPlaneState) -> tuple[float, int]:
    flush()
    started = time.perf_counter()
    current = await dataplane.read()
    ops = plan(current, desired, Owned())
    failures = await dataplane.apply(ops)
    elapsed = time.perf_counter() - started
    if failures:
        raise SystemExit(f"{len(failures)} operations failed, first: {failures[0]}")
    return elapsed, len(ops)


async def measure(args: argparse.Namespace) -> int:
    from actors.dataplane.ipvs import IpvsDataPlane

    desired = desired_state(args.services, args.reals)
    rules = ipvsadm_rules(desired)
    dataplane = IpvsDataPlane()
    try:
        ours, baseline = [], []
        for _ in range(args.rounds):
            baseline.append(time_ipvsadm(rules))
            seconds, operations = await time_ours(dataplane, desired)
            ours.append(seconds)

        started = time.perf_counter()
        current = await dataplane.read()
        read_seconds = time.perf_counter() - started
        if current.services != desired.services:
            diff = next((a, b) for a, b in zip(current.services, desired.services) if a != b)
            raise SystemExit(f"read-back differs from the desired state: {diff}")

        first = desired.services[0]
        flipped_real = Real(key=first.reals[0].key, weight=0, forward=first.reals[0].forward)
        flipped = DataPlaneState(
            services=(ServiceState(service=first.service, reals=(flipped_real, *first.reals[1:])),
                      *desired.services[1:])
        )
        owned = Owned(services=frozenset(s.key for s in desired.services))
        flip_ops = plan(current, flipped, owned)
        started = time.perf_counter()
        assert not await dataplane.apply(flip_ops)
        flip_seconds = time.perf_counter() - started
    finally:
        await dataplane.aclose()
        flush()

    ratio = statistics.median(o / b for o, b in zip(ours, baseline))
    print(f"IPVS full sync: {args.services} services x {args.reals} reals = {operations} operations,"
          f" {args.rounds} rounds, in the ip_vs VM (TCG)")
    print(f"  ours (read + plan + pipelined apply): {_fmt(ours)}")
    print(f"  ipvsadm -R (same rules):              {_fmt(baseline)}")
    print(f"  ratio ours / ipvsadm (median):        {ratio:.2f}x   (target <= 1.0x)")
    print(f"  full read-back (dump, {operations} objects): {read_seconds * 1000:.0f} ms")
    kinds = sorted({type(op).__name__ for op in flip_ops})
    print(f"  one real flip: {len(flip_ops)} operation(s) {kinds}, applied in {flip_seconds * 1000:.1f} ms"
          "   (target 1)")
    return 0 if len(flip_ops) == 1 and isinstance(flip_ops[0], UpdateReal) else 1


def _fmt(values: list[float]) -> str:
    return "  ".join(f"{v:.2f}s" for v in values) + f"   median {statistics.median(values):.2f}s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks ipvs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=100)
    parser.add_argument("--reals", type=int, default=100, help="reals per service")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    if not os.path.exists("/proc/net/ip_vs"):
        if os.environ.get("IPVSVM_GUEST") == "1":
            raise SystemExit("inside the VM but ip_vs is not loaded")
        runner = _ROOT / "tools/ipvs-vm/run-in-ipvs-vm.sh"
        command = ["bash", str(runner), sys.executable, "-m", "benchmarks.ipvs_sync", *(argv or sys.argv[1:])]
        return subprocess.run(command, cwd=_ROOT).returncode
    return trio.run(measure, args)


if __name__ == "__main__":
    sys.exit(main())
