"""Graceful shutdown: probes stop, routes are withdrawn, hold time, then deletion (kglb.md §5.5)."""

import os
import signal
from functools import partial

import trio
from _control_fakes import FakeCheck, balancer_config

from actors.app import run_kglb
from actors.dataplane import MemoryDataPlane
from actors.probes import Prober
from actors.routes import MemorySpeaker
from actors.signals import run_signal_handler
from kglb import DeleteAddress, DeleteService
from kglb.config import Config


class RecordingDataPlane(MemoryDataPlane):
    def __init__(self, events):
        super().__init__()
        self.events = events

    async def apply(self, ops):
        for op in ops:
            self.events.append((trio.current_time(), type(op).__name__))
        return await super().apply(ops)


class RecordingSpeaker(MemorySpeaker):
    def __init__(self, events):
        super().__init__()
        self.events = events

    async def withdraw(self, route):
        self.events.append((trio.current_time(), "withdraw"))
        await super().withdraw(route)


async def run_and_shut_down(keep_on_exit, events, fake):
    config = Config(balancers=(balancer_config(bgp_prefix="10.0.0.1", hold_time_ms=2000),))
    dataplane = RecordingDataPlane(events)
    speaker = RecordingSpeaker(events)
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(partial(
            run_kglb, config, dataplane=dataplane, speaker=speaker,
            prober=Prober(check=fake, jitter=0), keep_on_exit=keep_on_exit))
        await trio.sleep(3.5)
        assert len(await speaker.routes()) == 1
        events.clear()
        fake.calls = 0
        handle.shutdown()
        handle.shutdown()  # idempotent
    return dataplane, speaker


async def test_withdraw_then_hold_time_then_delete(autojump_clock):
    events, fake = [], FakeCheck()
    t0 = trio.current_time()
    dataplane, speaker = await run_and_shut_down(False, events, fake)
    kinds = [kind for _, kind in events]
    assert kinds[0] == "withdraw"
    assert set(kinds[1:]) == {"DeleteService", "DeleteAddress"}
    withdrawn_at = events[0][0]
    assert all(at >= withdrawn_at + 2.0 for at, _ in events[1:])  # hold time respected
    assert dataplane.state.services == () and dataplane.state.addresses == ()
    assert await speaker.routes() == frozenset()
    assert fake.calls == 0  # probes stopped before the writer cleaned up
    assert trio.current_time() - t0 < 10


async def test_keep_on_exit_leaves_everything(autojump_clock):
    events, fake = [], FakeCheck()
    dataplane, speaker = await run_and_shut_down(True, events, fake)
    assert events == []
    assert len(dataplane.state.services) == 1 and len(dataplane.state.addresses) == 1
    assert len(await speaker.routes()) == 1


async def test_cancel_is_a_fast_exit_that_leaves_the_kernel(autojump_clock):
    config = Config(balancers=(balancer_config(),))
    dataplane = MemoryDataPlane()
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(run_kglb, config, dataplane=dataplane,
                                    prober=Prober(check=FakeCheck(), jitter=0)))
        await trio.sleep(1)
        nursery.cancel_scope.cancel()
    assert not any(isinstance(op, (DeleteService, DeleteAddress)) for op in dataplane.applied)
    assert len(dataplane.state.services) == 1


async def test_signals_first_shuts_down_second_forces_hup_reloads():
    calls = []

    async def reload():
        calls.append("reload")

    async with trio.open_nursery() as nursery:
        await nursery.start(partial(run_signal_handler, shutdown=lambda: calls.append("shutdown"),
                                    force=lambda: calls.append("force"), reload=reload))
        # the SIGHUP during shutdown is ignored: 3 calls after 4 signals
        for signum, expected in ((signal.SIGHUP, 1), (signal.SIGTERM, 2), (signal.SIGHUP, 2),
                                 (signal.SIGUSR1, 3)):
            os.kill(os.getpid(), signum)
            with trio.fail_after(5):  # signal delivery is real, not virtual, time
                while len(calls) < expected:
                    await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert calls == ["reload", "shutdown", "force"]
