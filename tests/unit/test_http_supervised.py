"""Issue 13: the status server is an actor under the shared restart budget."""

from __future__ import annotations

import contextlib

import pytest
import trio

from actors import http
from actors.http import run_http_server
from actors.supervisor import RestartBudget, RestartIntensityExceeded, RestartPolicy
from test_http_fairness import Handle, healthz


async def test_a_crash_restarts_the_server_on_the_same_port(nursery, autojump_clock, monkeypatch):
    admit = http._Server._admit
    crashes = []

    def buggy_admit(self, stream, nursery):
        if not crashes:
            crashes.append(stream)
            raise RuntimeError("a bug in the accept loop")
        return admit(self, stream, nursery)

    monkeypatch.setattr(http._Server, "_admit", buggy_admit)
    budget = RestartBudget(RestartPolicy())
    _, port = await nursery.start(lambda task_status: run_http_server(
        "127.0.0.1:0", Handle(), budget=budget, task_status=task_status))
    try:
        first = await healthz(port)  # the connection the bug hit is closed, nothing else
    except trio.BrokenResourceError:
        first = b""  # closed with our request unread: a reset
    assert first == b""
    await trio.sleep(1)  # the restart's backoff
    assert (await healthz(port)).startswith(b"HTTP/1.1 200 ")
    assert budget.restarts() == {"status_server": 1}


async def test_crashes_beyond_the_shared_budget_end_the_server(autojump_clock, monkeypatch):
    def always_buggy(self, stream, nursery):
        raise RuntimeError("a bug")

    monkeypatch.setattr(http._Server, "_admit", always_buggy)
    budget = RestartBudget(RestartPolicy(intensity=2))
    budget.crashed("writer", 0.0, RuntimeError("another actor's crash counts too"))
    with pytest.raises(BaseExceptionGroup) as caught:
        async with trio.open_nursery() as nursery:
            _, port = await nursery.start(lambda task_status: run_http_server(
                "127.0.0.1:0", Handle(), budget=budget, task_status=task_status))
            for _ in range(3):
                with contextlib.suppress(trio.BrokenResourceError):
                    await healthz(port)
                await trio.sleep(1)
    assert caught.group_contains(RestartIntensityExceeded)


async def test_a_server_crash_touches_neither_probing_nor_the_data_plane(autojump_clock, monkeypatch):
    """Wired as kglb-trio wires it: one budget for the server and the control plane."""
    from functools import partial

    from _control_fakes import FakeCheck, balancer_config
    from actors.app import run_kglb
    from actors.dataplane import MemoryDataPlane
    from actors.probes import Prober
    from kglb.config import Config

    admit = http._Server._admit
    crashed = []

    def buggy_admit(self, stream, nursery):
        if not crashed:
            crashed.append(True)
            raise RuntimeError("a bug in the accept loop")
        return admit(self, stream, nursery)

    monkeypatch.setattr(http._Server, "_admit", buggy_admit)
    budget = RestartBudget()
    fake = FakeCheck()
    dataplane = MemoryDataPlane()
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(partial(
            run_kglb, Config(balancers=(balancer_config(),)), dataplane=dataplane,
            prober=Prober(check=fake, jitter=0), budget=budget))
        _, port = await nursery.start(lambda task_status: run_http_server(
            "127.0.0.1:0", handle, budget=budget, task_status=task_status))
        await trio.sleep(10)
        applied, checks = dataplane.state, fake.calls
        with contextlib.suppress(trio.BrokenResourceError):
            await healthz(port)  # the crash
        await trio.sleep(10)
        assert (await healthz(port)).startswith(b"HTTP/1.1 200 ")
        stats = handle.statistics()
        assert dict(stats.restarts_by_actor) == {"status_server": 1}
        assert dataplane.state == applied  # nothing was withdrawn or re-applied
        assert fake.calls > checks  # probing went on
        nursery.cancel_scope.cancel()
