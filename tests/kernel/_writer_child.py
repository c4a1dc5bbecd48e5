"""A writer process for the kill -9 tests and benchmark: ``run_child(...)``.

Forks (the parent has imported everything already: under TCG a fresh Python
would spend most of the test importing) a process that runs a Writer over the
real kernel (IpvsDataPlane) towards an N x M MASQ state (VIPs 10.0.1.i on lo,
reals 10.3.i.j:8080) and, with ``kill``, SIGKILLs itself at a chosen point:
``record-before`` (before the first ownership record is written),
``record-during`` (the new record is written and synced but not yet renamed),
``record-after`` (recorded, nothing created yet), ``apply-half`` (half of the
first batch is in the kernel). ``then="stop"`` shuts down gracefully once
applied; ``then="hold"`` reports "applied" and waits to be killed.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass

import trio

import actors.ownership
import actors.writer
from actors.dataplane.ipvs import IpvsDataPlane
from kglb import (
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


@dataclass
class Child:
    pid: int
    lines: object  # a text file: "applied", "stopped <manager state>"

    def wait(self) -> tuple[int, list[str]]:
        """(-signal or exit status, the lines it reported)."""
        said = [line.strip() for line in self.lines]
        _, status = os.waitpid(self.pid, 0)
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        return code, said

    def wait_for(self, text: str) -> None:
        line = self.lines.readline()
        assert line.strip() == text, line


def start_child(record, services: int, reals: int, *, kill: str = "none",
                then: str = "stop") -> Child:
    read, write = os.pipe()
    pid = os.fork()
    if pid:
        os.close(write)
        return Child(pid=pid, lines=os.fdopen(read, "r"))
    os.close(read)
    status = 1
    try:
        with os.fdopen(write, "w", buffering=1) as out:
            arm(kill)
            trio.run(_main, record, big_state(services, reals), then, out)
            status = 0
    finally:
        os._exit(status)


async def _main(record, state: DataPlaneState, then: str, out) -> None:
    dataplane = IpvsDataPlane()
    writer = actors.writer.Writer(dataplane, ownership_path=record)
    send, receive = trio.open_memory_channel(1)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run, receive)
            await send.send(state)
            while writer.statistics().applied != state:
                await trio.sleep(0.02)
            print("applied", file=out)
            if then == "hold":
                await trio.sleep_forever()
            await send.aclose()
    finally:
        await dataplane.aclose()
    print("stopped", writer.statistics().manager_state, file=out)
