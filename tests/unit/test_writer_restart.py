"""A crashed writer is restarted by the supervisor and carries on (virtual time)."""

from __future__ import annotations

from functools import partial

import pytest
import trio
from _control_fakes import FakeCheck, ResolverBug, balancer_config
from test_supervisor_restarts import leaf
from test_writer import desired, kernel_view

from actors.app import run_kglb
from actors.dataplane import MemoryDataPlane
from actors.probes import Prober
from actors.routes import MemorySpeaker
from actors.supervisor import RestartIntensityExceeded, RestartPolicy, open_supervisor
from actors.writer import Writer
from kglb import DataPlaneState, UpdateReal
from kglb.config import Config
from kglb.plan import plan

POLICY = RestartPolicy(intensity=5, period=60, backoff=0.5)


class CrashingDataPlane(MemoryDataPlane):
    """Raises RuntimeError (a bug, not a kernel error) on the given apply calls (1-based)."""

    def __init__(self, crash_on=(1,), seed: DataPlaneState = DataPlaneState()) -> None:
        super().__init__(seed)
        self.crash_on = crash_on  # a container of call numbers, or None: every call
        self.calls: list[float] = []

    async def apply(self, ops):
        self.calls.append(trio.current_time())
        if self.crash_on is None or len(self.calls) in self.crash_on:
            raise RuntimeError("data plane bug")
        return await super().apply(ops)


def kinds(ops):
    return [type(op).__name__ for op in ops]


async def test_a_crash_between_two_states_does_not_lose_the_second(tmp_path, autojump_clock):
    dp = CrashingDataPlane(crash_on={2})
    writer = Writer(dp, MemorySpeaker(), ownership_path=tmp_path / "owned.json")
    send, receive = trio.open_memory_channel(1)
    first, second = desired(1000, 1000), desired(1000, 0)
    async with open_supervisor(POLICY) as sup:
        await sup.start("writer", writer.run, receive_states=receive)
        await send.send(first)
        await trio.sleep(1)
        assert dp.state == kernel_view(first)
        applied = len(dp.applied)
        await send.send(second)  # sent once: the generator never sends it again
        await trio.sleep(0.4)
        assert sup.restarts() == {"writer": 1}
        assert dp.state == kernel_view(first)  # waiting out the backoff
        await trio.sleep(0.2)
        assert dp.calls[2] - dp.calls[1] == pytest.approx(0.5)
        assert dp.state == kernel_view(second)
        # re-reading and adopting cost nothing: only the one weight change
        assert kinds(dp.applied[applied:]) == ["UpdateReal"]
        assert dp.applied[applied:] == [UpdateReal(service=second.services[0].key,
                                                   real=second.services[0].reals[1])]
        assert writer.statistics().applied == second
        assert writer.statistics().owned.services == {second.services[0].key}
        await send.aclose()  # the channel survived the crash: graceful shutdown as always
    assert dp.state == DataPlaneState()
    assert sup.restarts() == {"writer": 1}


async def test_a_restarted_writer_converges_to_the_newest_queued_state(tmp_path, autojump_clock):
    dp = CrashingDataPlane(crash_on={1})
    writer = Writer(dp, MemorySpeaker(), ownership_path=tmp_path / "owned.json")
    send, receive = trio.open_memory_channel(1)
    newest = desired(1000, 1000, 1000)
    async with open_supervisor(POLICY) as sup:
        await sup.start("writer", writer.run, receive_states=receive)
        await send.send(desired(0))
        await trio.sleep(0.1)  # crashed; a newer state arrives during the backoff
        await send.send(newest)
        await trio.sleep(1)
        assert dp.state == kernel_view(newest)
        assert dp.applied == list(plan(DataPlaneState(), newest, writer.statistics().owned))
        assert kinds(dp.applied) == ["AddService", "AddAddress", "AddReal", "AddReal", "AddReal"]
        assert writer.statistics().applies == 1
        sup.cancel_all()  # cancellation stays a fast exit: nothing removed
    assert dp.state == kernel_view(newest)


async def test_writer_crash_in_run_kglb_is_restarted_and_counted(autojump_clock):
    dp = CrashingDataPlane(crash_on={1})
    config = Config(balancers=(balancer_config(rise=1),))
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(partial(
            run_kglb, config, dataplane=dp, prober=Prober(check=FakeCheck(), jitter=0),
            policy=POLICY))
        await trio.sleep(0.1)
        assert len(dp.calls) == 1 and dp.applied == []
        await trio.sleep(1)
        assert dp.calls[1] - dp.calls[0] == pytest.approx(0.5)
        stats = handle.statistics()
        assert stats.restarts == 1
        assert dict(stats.restarts_by_actor) == {"writer": 1}
        assert stats.writer.applied == stats.desired
        assert plan(dp.state, stats.desired, stats.writer.owned) == ()  # converged
        assert [r.weight for r in dp.state.services[0].reals] == [1000, 1000]
        assert kinds(dp.applied) == ["AddService", "AddAddress", "AddReal", "AddReal"]
        assert stats.writer.operations == 4
        handle.shutdown()
    assert dp.state == DataPlaneState()  # graceful shutdown after a restart, as always


async def test_writer_crashing_beyond_intensity_stops_run_kglb_and_keeps_the_kernel(
        autojump_clock):
    dp = CrashingDataPlane(crash_on=())
    fake = FakeCheck()
    config = Config(balancers=(balancer_config(rise=1, fall=1),))
    with pytest.raises(BaseExceptionGroup) as info:
        async with trio.open_nursery() as nursery:
            handle = await nursery.start(partial(
                run_kglb, config, dataplane=dp, prober=Prober(check=fake, jitter=0),
                policy=RestartPolicy(intensity=2, period=600)))
            await trio.sleep(1)
            serving, applied = dp.state, len(dp.applied)
            assert serving.services
            dp.crash_on = None  # every apply from now on
            fake.up["10.1.0.2"] = False
            await trio.sleep(100)
            handle.shutdown()  # not reached when it works; a failure, not a hang, otherwise
    exc = leaf(info.value, RestartIntensityExceeded)
    assert exc is not None and "writer" in str(exc)
    assert handle.statistics().restarts_by_actor["writer"] == 3
    assert dp.state == serving and len(dp.applied) == applied  # nothing removed or changed


async def test_writer_and_balancer_crashes_share_the_intensity(autojump_clock):
    resolve = ResolverBug()
    dp = CrashingDataPlane(crash_on={1})
    config = Config(balancers=(balancer_config(hosts=("web1.example",)),))
    with pytest.raises(BaseExceptionGroup) as info:
        async with trio.open_nursery() as nursery:
            handle = await nursery.start(partial(
                run_kglb, config, dataplane=dp, resolve=resolve,
                prober=Prober(check=FakeCheck(), jitter=0),
                policy=RestartPolicy(intensity=1, period=600)))
            await trio.sleep(1)
            assert dp.state.services  # the writer's crash alone was allowed
            await trio.sleep(100)
            handle.shutdown()
    assert leaf(info.value, RestartIntensityExceeded) is not None

