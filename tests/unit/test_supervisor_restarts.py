"""Supervisor: crashed actors restart with backoff; past the intensity the process stops."""

from functools import partial

import pytest
import trio
from _control_fakes import FakeCheck, ResolverBug, balancer_config

from actors.app import run_kglb
from actors.dataplane import MemoryDataPlane
from actors.probes import Prober
from actors.supervisor import RestartIntensityExceeded, RestartPolicy, open_supervisor
from kglb.config import Config


def leaf(exc, kind):
    """The first exception of ``kind`` inside a (nested) exception group."""
    if isinstance(exc, kind):
        return exc
    for inner in getattr(exc, "exceptions", ()):
        found = leaf(inner, kind)
        if found is not None:
            return found
    return None


async def test_crashed_child_restarts_with_doubling_backoff(autojump_clock):
    starts = []

    async def flaky(*, task_status):
        starts.append(trio.current_time())
        task_status.started()
        if len(starts) < 4:
            raise RuntimeError("boom")
        await trio.sleep_forever()

    async with open_supervisor(RestartPolicy(intensity=5, period=60, backoff=0.5)) as sup:
        t0 = trio.current_time()
        await sup.start("flaky", flaky)
        await trio.sleep(10)
        assert [round(t - t0, 3) for t in starts] == [0, 0.5, 1.5, 3.5]
        assert sup.restarts() == {"flaky": 3}
        await sup.stop("flaky")
        sup.cancel_all()


async def test_restart_intensity_exceeded_raises(autojump_clock):
    async def always(*, task_status):
        task_status.started()
        raise RuntimeError("boom")

    with pytest.raises(BaseExceptionGroup) as info:
        async with open_supervisor(RestartPolicy(intensity=5, period=60)) as sup:
            await sup.start("always", always)
            await trio.sleep(100)
    exc = leaf(info.value, RestartIntensityExceeded)
    assert exc is not None and "6 crashes" in str(exc)


async def test_crashes_spread_over_time_do_not_add_up(autojump_clock):
    count = 0

    async def slow_crash(*, task_status):
        nonlocal count
        count += 1
        task_status.started()
        await trio.sleep(61)
        raise RuntimeError("boom")

    async with open_supervisor(RestartPolicy(intensity=1, period=60)) as sup:
        await sup.start("slow", slow_crash)
        await trio.sleep(500)
        assert count >= 7
        sup.cancel_all()


async def test_balancer_crash_is_restarted_and_the_data_plane_untouched(autojump_clock):
    resolve = ResolverBug()
    config = Config(balancers=(balancer_config(hosts=("web1.example",)),))
    dataplane = MemoryDataPlane()
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(partial(
            run_kglb, config, dataplane=dataplane, resolve=resolve,
            prober=Prober(check=FakeCheck(), jitter=0)))
        await trio.sleep(1)
        before = dataplane.state
        applied = len(dataplane.applied)
        await trio.sleep(65)
        stats = handle.statistics()
        # Names are resolved by the balancer's discovery actor: that one crashed.
        assert dict(stats.restarts_by_actor) == {"discovery web-10.0.0.1:80-tcp": 1}
        assert stats.restarts == 1
        assert dataplane.state == before and len(dataplane.applied) == applied
        handle.shutdown()


async def test_balancer_crashing_beyond_intensity_stops_run_kglb_and_keeps_the_kernel(
        autojump_clock):
    async def resolve(host, family):
        if trio.current_time() > start + 10:
            raise RuntimeError("resolver bug")
        return "10.1.0.1"

    config = Config(balancers=(balancer_config(hosts=("web1.example",)),))
    dataplane = MemoryDataPlane()
    start = trio.current_time()
    with pytest.raises(BaseExceptionGroup) as info:
        async with trio.open_nursery() as nursery:
            await nursery.start(partial(
                run_kglb, config, dataplane=dataplane, resolve=resolve,
                prober=Prober(check=FakeCheck(), jitter=0),
                policy=RestartPolicy(intensity=2, period=600)))
            await trio.sleep(1)
            serving = dataplane.state
            await trio.sleep(1000)
    assert leaf(info.value, RestartIntensityExceeded) is not None
    assert dataplane.state == serving and serving.services  # nothing was removed
