"""Probes sharded over 2 worker processes, checking real loopback targets (real time, short)."""

from __future__ import annotations

import os
import signal
import socket
import time

import pytest
import trio
from functools import partial

from actors._probe_pipe import WorkerResult
from actors._probe_shards import urgent_first
from actors.probes import Prober
from actors.supervisor import RestartBudget
from kglb import ProbeTarget
from kglb.config import TcpCheck


def drain(receive) -> None:
    while True:
        try:
            receive.receive_nowait()
        except trio.WouldBlock:
            return


async def test_two_workers_check_loopback_targets_and_survive_a_crash(nursery, check_serve):
    ports = [await check_serve(lambda stream: stream.aclose()) for _ in range(4)]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    targets = [ProbeTarget(address="127.0.0.1", port=p, check=TcpCheck(timeout_ms=1000))
               for p in ports + [closed]]
    prober = Prober(workers=2)
    budget = RestartBudget()
    await nursery.start(partial(prober.run, budget=budget))
    send, receive = trio.open_memory_channel(1000)
    limiter = trio.CapacityLimiter(10)
    watches = [prober.watch(t, interval=0.2, limiter=limiter, send=send) for t in targets]

    async def results_for_every_target() -> dict:
        seen = {}
        while len(seen) < len(targets):
            message = await receive.receive()
            seen[message.target] = message.result
        return seen

    with trio.fail_after(15):
        seen = await results_for_every_target()
    assert [seen[t].reason for t in targets] == ["ok"] * 4 + ["refused"]
    stats = prober.statistics()
    assert sorted(w.targets for w in stats.workers) == [2, 3]
    assert stats.targets == 5 and stats.checks >= 5

    # A worker that dies is restarted and gets its targets back.
    victim = stats.workers[0]
    os.kill(victim.pid, signal.SIGKILL)
    with trio.fail_after(15):
        while prober.statistics().workers[0].restarts == 0:
            await trio.sleep(0.05)
        drain(receive)
        seen = await results_for_every_target()
    assert len(seen) == 5
    assert prober.statistics().workers[0].pid not in (None, victim.pid)
    # Counted as any actor's crash: in the shared budget (restarts, actor_restarts_total).
    assert budget.restarts() == {"probe worker 0": 1}

    # Cancelled watches: the workers stop probing them.
    for watch in watches:
        watch.cancel()
    await trio.sleep(0.5)
    drain(receive)
    await trio.sleep(0.6)
    assert receive.statistics().current_buffer_used == 0
    assert [w.targets for w in prober.statistics().workers] == [0, 0]


@pytest.mark.parametrize("workers", [0, 2])
async def test_steady_results_are_folded_where_they_are_checked(nursery, check_serve, workers):
    """In-process (the lean engine) and in workers (before the pipe): a folded message
    stands for several checks, and none is lost on the way."""
    port = await check_serve(lambda stream: stream.aclose())
    target = ProbeTarget(address="127.0.0.1", port=port, check=TcpCheck(timeout_ms=1000))
    prober = Prober(workers=workers, jitter=0, fold_period=0.3)
    await nursery.start(prober.run)
    send, receive = trio.open_memory_channel(1000)
    watch = prober.watch(target, interval=0.05, limiter=trio.CapacityLimiter(1), send=send,
                         quiet_after=2)
    got = []
    with trio.fail_after(15):
        while sum(m.checks > 1 for m in got) < 3:
            got.append(await receive.receive())
    watch.cancel()
    assert [m.checks for m in got[:2]] == [1, 1]  # the first 2 of the run at once
    assert all(m.result.passed and len(m.folded) == m.checks - 1 for m in got)
    assert max(m.checks for m in got) <= 9  # released after ~fold_period (6-7 checks)
    if workers:  # counted as delivered
        assert prober.statistics().checks == sum(m.checks for m in got)
    else:  # counted as checked: the held ones too
        assert prober.statistics().checks >= sum(m.checks for m in got)


async def test_a_result_carries_when_the_worker_checked_it_not_when_it_arrived(
        nursery, check_serve):
    """While the control plane is busy the worker goes on checking; the results it
    then reads are dated when they were checked (the latency a change really had)."""
    port = await check_serve(lambda stream: stream.aclose())
    target = ProbeTarget(address="127.0.0.1", port=port, check=TcpCheck(timeout_ms=1000))
    prober = Prober(workers=1, jitter=0)
    await nursery.start(prober.run)
    send, receive = trio.open_memory_channel(1000)
    prober.watch(target, interval=0.1, limiter=trio.CapacityLimiter(1), send=send)
    with trio.fail_after(15):
        await receive.receive()  # the worker is up and checking
    drain(receive)
    busy_from = trio.current_time()
    time.sleep(0.6)  # holds the whole trio thread, as a long step would
    busy_until = trio.current_time()
    got = []
    with trio.move_on_after(0.3):
        while True:
            got.append(await receive.receive())
    checked_while_busy = [m.at for m in got if busy_from < m.at < busy_until - 0.05]
    assert len(checked_while_busy) >= 3  # ~6 checks ran while the loop was held
    assert all(m.at <= trio.current_time() for m in got)


def test_a_frame_delivers_results_that_may_decide_first_in_each_targets_order():
    f = (0.1,)  # a folded result (it carries earlier latencies)

    def result(probe_id, tag, folded=()):
        return WorkerResult(probe_id=probe_id, passed=False, reason=tag, latency=0.0, at=0.0,
                            folded=folded)

    frame = (result(1, "a", f), result(2, "b"), result(1, "c"), result(3, "d", f),
             result(2, "e"), result(4, "g"))
    ordered = urgent_first(frame)
    assert [r.reason for r in ordered] == ["b", "e", "g", "a", "c", "d"]
    for probe_id in (1, 2, 3, 4):  # each target's own order is kept
        assert [r for r in ordered if r.probe_id == probe_id] == [
            r for r in frame if r.probe_id == probe_id]
    assert urgent_first(frame[:1]) == frame[:1]


async def test_the_worker_count_follows_set_workers_as_at_start(nursery, check_serve):
    """A reload from a small config to a large one (and back) moves every probe into
    worker processes (and back in-process), as a fresh start with that config would."""
    port = await check_serve(lambda stream: stream.aclose())
    targets = [ProbeTarget(address=f"127.0.0.{n}", port=port, check=TcpCheck(timeout_ms=1000))
               for n in (1, 2, 3)]
    prober = Prober(workers=0, jitter=0)
    await nursery.start(prober.run)
    send, receive = trio.open_memory_channel(1000)
    for target in targets:
        prober.watch(target, interval=0.1, limiter=trio.CapacityLimiter(10), send=send)

    async def every_target_checked_after(moment: float) -> None:
        seen = set()
        with trio.fail_after(15):
            while len(seen) < len(targets):
                message = await receive.receive()
                if message.at > moment:
                    seen.add(message.target)

    await every_target_checked_after(trio.current_time())
    assert prober.statistics().workers == ()
    prober.set_workers(2)
    await every_target_checked_after(trio.current_time() + 0.2)
    stats = prober.statistics()
    assert len(stats.workers) == 2 and sum(w.targets for w in stats.workers) == 3
    assert all(w.pid for w in stats.workers)
    prober.set_workers(0)
    moved = trio.current_time()
    await every_target_checked_after(moved + 0.2)
    stats = prober.statistics()
    assert stats.workers == () and stats.targets == 3 and stats.in_flight <= 3
    assert stats.checks >= 9  # the workers' checks are still counted


_ALONE = """
import os, signal, socket, sys
import trio
from actors.probes import Prober
from kglb import ProbeTarget
from kglb.config import TcpCheck

async def main():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    prober = Prober(workers=1)
    async with trio.open_nursery() as nursery:
        await nursery.start(prober.run)
        send, receive = trio.open_memory_channel(100)
        target = ProbeTarget(address="127.0.0.1", port=closed, check=TcpCheck())
        prober.watch(target, interval=0.2, limiter=trio.CapacityLimiter(1), send=send)
        with trio.fail_after(15):
            await receive.receive()
        print("before exit:", "actors.supervisor" in sys.modules)
        os.kill(prober.statistics().workers[0].pid, signal.SIGKILL)
        with trio.fail_after(15):
            while prober.statistics().workers[0].restarts == 0:
                await trio.sleep(0.05)
        print("after exit:", "actors.supervisor" in sys.modules)
        nursery.cancel_scope.cancel()

trio.run(main)
"""


def test_a_prober_run_alone_imports_the_supervisor_only_when_a_worker_exits():
    """Issue 15 (RSS with workers): a Prober run without a budget (a probe worker's,
    the probes benchmark's) made one at start, importing the supervisor (~10 MB of
    RSS); it is made at the first worker exit, which it still counts."""
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run([sys.executable, "-c", _ALONE], cwd=root, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    said = [line for line in done.stdout.splitlines() if line.endswith(("True", "False"))]
    assert said == ["before exit: False", "after exit: True"]
    log = done.stdout + done.stderr  # the crash is logged and counted as before
    assert "actor crashed" in log and "probe worker 0" in log
