"""IpvsDataPlane's two netlink threads, with a fake KernelSession (no kernel needed)."""

from __future__ import annotations

import threading

import trio

from actors.dataplane import ipvs
from kglb import DataPlaneState


class FakeSession:
    """Records which thread ran each call; an apply waits until ``release`` is set."""

    calls: list[tuple[str, str]] = []
    release = threading.Event()

    def __init__(self, links) -> None:
        self.unrepresentable = threading.current_thread().name.count("stats")

    def _record(self, what: str) -> None:
        self.calls.append((what, threading.current_thread().name))

    def read(self) -> DataPlaneState:
        self._record("read")
        return DataPlaneState()

    def apply(self, batch):
        self._record("apply")
        self.release.wait(5)
        return []

    def counters(self):
        self._record("counters")
        return {}

    def close(self) -> None:
        pass


async def recorded(call: tuple[str, str]) -> None:
    """Wait until the fake session has run ``call`` (threads: real time)."""
    with trio.fail_after(5):
        while call not in FakeSession.calls:
            await trio.sleep(0.001)


async def test_reads_go_beside_applies_unless_an_apply_is_unfinished(monkeypatch):
    monkeypatch.setattr(ipvs, "KernelSession", FakeSession)
    FakeSession.calls = []
    FakeSession.release.clear()
    dataplane = ipvs.IpvsDataPlane()
    try:
        await dataplane.read()  # the apply thread is idle: read on the other one
        assert FakeSession.calls == [("read", "kglb-netlink-stats")]
        assert await dataplane.unrepresentable() == 1  # from the session that read

        async with trio.open_nursery() as nursery:
            nursery.start_soon(dataplane.apply, ["an op"])
            await recorded(("apply", "kglb-netlink"))
            await dataplane.read()  # an apply running: the read does not wait for it
            assert FakeSession.calls[-1] == ("read", "kglb-netlink-stats")
            FakeSession.release.set()

        # An apply whose caller gave up still runs: a read then queues behind it.
        FakeSession.release.clear()
        FakeSession.calls.clear()
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(dataplane.apply, ["an op"])
                await recorded(("apply", "kglb-netlink"))
                scope.cancel()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(dataplane.read)
            await trio.sleep(0.05)
            assert FakeSession.calls == [("apply", "kglb-netlink")]  # the read waits
            FakeSession.release.set()
        assert FakeSession.calls[-1] == ("read", "kglb-netlink")
        assert await dataplane.unrepresentable() == 0
    finally:
        FakeSession.release.set()
        await dataplane.aclose()
