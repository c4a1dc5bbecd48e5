"""A writer process for the kill -9 tests: ``python tests/kernel/_writer_child.py ...``.

Runs a Writer over the real kernel (IpvsDataPlane) towards an N x M MASQ state
(VIPs 10.0.1.i on lo, reals 10.3.i.j:8080) and, with ``--kill``, SIGKILLs
itself at a chosen point: ``record-before`` (before the first ownership record
is written), ``record-during`` (the new record is written and synced but not
yet renamed), ``record-after`` (recorded, nothing created yet), ``apply-half``
(half of the first batch is in the kernel). ``--then stop`` shuts down
gracefully once applied; ``--then hold`` prints "applied" and waits to be
killed. Prints "applied" and "stopped" on stdout.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import trio  # noqa: E402

import actors.ownership  # noqa: E402
import actors.writer  # noqa: E402
from actors.dataplane.ipvs import IpvsDataPlane  # noqa: E402
from kglb import (  # noqa: E402
    DataPlaneState,
    ForwardMethod,
    LinkAddress,
    Real,
    RealKey,
    Service,
    ServiceKey,
    ServiceState,
)


def big_state(services: int, reals: int) -> DataPlaneState:
    out = []
    for i in range(1, services + 1):
        key = ServiceKey.tcp(f"10.0.1.{i}", 80)
        out.append(ServiceState(service=Service(key=key, scheduler="wrr"), reals=tuple(
            Real(key=RealKey(address=f"10.3.{i}.{j}", port=8080), weight=1,
                 forward=ForwardMethod.MASQ) for j in range(1, reals + 1))))
    return DataPlaneState(services=tuple(out), addresses=tuple(
        LinkAddress(address=s.key.address) for s in out))


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def arm(point: str) -> None:
    save = actors.writer.save_owned
    if point == "record-before":
        actors.writer.save_owned = lambda *a: die()
    elif point == "record-during":
        actors.ownership.os.replace = lambda *a: die()
    elif point == "record-after":
        actors.writer.save_owned = lambda *a: (save(*a), die())
    elif point == "apply-half":
        apply = IpvsDataPlane.apply

        async def half(self, ops):
            await apply(self, ops[: len(ops) // 2])
            die()

        IpvsDataPlane.apply = half


async def main(args) -> None:
    arm(args.kill)
    dataplane = IpvsDataPlane()
    writer = actors.writer.Writer(dataplane, ownership_path=args.record)
    send, receive = trio.open_memory_channel(1)
    state = big_state(args.services, args.reals)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run, receive)
            await send.send(state)
            while writer.statistics().applied != state:
                await trio.sleep(0.05)
            print("applied", flush=True)
            if args.then == "hold":
                await trio.sleep_forever()
            await send.aclose()
    finally:
        await dataplane.aclose()
    print("stopped", writer.statistics().manager_state, flush=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--services", type=int, required=True)
    p.add_argument("--reals", type=int, required=True)
    p.add_argument("--record", required=True)
    p.add_argument("--kill", default="none")
    p.add_argument("--then", choices=("stop", "hold"), default="stop")
    trio.run(main, p.parse_args())
