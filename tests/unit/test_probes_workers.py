"""Probes sharded over 2 worker processes, checking real loopback targets (real time, short)."""

from __future__ import annotations

import os
import signal
import socket

import pytest
import trio

from actors.probes import Prober
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
    await nursery.start(prober.run)
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
