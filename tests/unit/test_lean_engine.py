"""The lean engine's schedule, limiter, backpressure and removal, on a hand-driven clock.

Checks go to loopback: a closed port answers "refused" at once, a listener
that never accepts keeps an http check in flight until its timeout. The
engine is stepped by hand at chosen times (``step(now)``), so every timing
here is exact and no test sleeps for timing.
"""

from __future__ import annotations

import random
import select
import socket

import pytest
import trio

from actors._lean_engine import LeanEngine
from actors.checks import run_check
from actors.probes import Prober
from kglb import CheckResult, ProbeTarget
from kglb.config import HttpCheck, TcpCheck

from test_checks_tcp import closed_port
from test_lean_checks import Probe


class Harness:
    """An engine on a fake clock that records (probe, start time, reason)."""

    def __init__(self, jitter: float = 0.0, accept=lambda probe, result: True) -> None:
        self.now = 0.0
        self.results: list[tuple[object, float, str]] = []
        self._accept = accept
        self.engine = LeanEngine(self._on_result, jitter=jitter, clock=lambda: self.now,
                                 rng=random.Random(7))

    def _on_result(self, probe, result, now) -> bool:
        self.results.append((probe, round(self.now - result.latency, 6), result.reason))
        return self._accept(probe, result)

    def at(self, now: float) -> float:
        """Step at ``now`` until the checks in flight have nothing more to say."""
        self.now = now
        wake_at = self.engine.step(now)
        while self.engine.in_flight and select.select([self.engine.fileno()], [], [], 0.05)[0]:
            wake_at = self.engine.step(now)
        return wake_at

    def starts(self, probe) -> list[float]:
        return [start for p, start, _ in self.results if p is probe]


@pytest.fixture
def silent():
    """A port whose listener never accepts nor answers: http checks hang until timeout."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(100)
        yield listener.getsockname()[1]


def refused(interval: float = 1.0, tokens: int = 10) -> Probe:
    return Probe(ProbeTarget(address="127.0.0.1", port=closed_port("127.0.0.1"),
                             check=TcpCheck()), interval, tokens)


def hanging(port: int, interval: float = 10.0, timeout_ms: int = 1000) -> Probe:
    return Probe(ProbeTarget(address="127.0.0.1", port=port,
                             check=HttpCheck(codes=(200,), timeout_ms=timeout_ms)), interval)


def test_first_check_at_once_then_every_interval():
    h = Harness()
    probe = refused(interval=1.0)
    h.engine.add(probe)
    for now in (0.0, 0.5, 1.0, 1.7, 2.0, 3.0):
        h.at(now)
    assert h.starts(probe) == [0.0, 1.0, 2.0, 3.0]
    assert {reason for _, _, reason in h.results} == {"refused"}
    assert h.engine.in_flight == 0 and h.engine.missed == 0


def test_the_next_wake_up_is_the_next_due_time_within_ticks(silent):
    h = Harness()
    assert h.at(0.0) == float("inf")  # nothing to do: sleep until add()
    h.engine.add(refused(interval=2.0))
    assert h.at(0.0) == 2.0
    assert h.at(1.9995) == pytest.approx(2.0015)  # never sooner than a tick (2 ms)
    first, second = hanging(silent), hanging(silent)
    first.limiter = second.limiter = trio.CapacityLimiter(1)
    h.engine.add(first)
    assert h.at(2.5) == pytest.approx(2.502)  # a check in flight: poll every tick
    h.engine.add(second)
    assert h.at(2.6) == pytest.approx(2.6005)  # a full limiter: every quarter tick


def test_due_checks_start_in_batches_a_grain_apart():
    """Issue 15 (tcp at 1k checks/s): due times within a grain (20 ms at a 1 s
    interval) share a wake-up; a check starts at most a grain late, and its
    period is kept from its due time, not stretched by the grain."""
    h = Harness()
    a, b = refused(interval=1.0), refused(interval=1.005)
    h.engine.add(a)
    h.engine.add(b)
    assert h.at(0.0) == 1.0
    assert h.at(1.0) == pytest.approx(1.02)  # b is due at 1.005: with the next batch
    h.at(1.005)  # a step in between (a poll) starts no due check
    assert h.at(1.02) == pytest.approx(2.0)
    for now in (2.0, 2.015, 2.02, 3.0, 3.015, 3.02):
        h.at(now)
    assert h.starts(a) == [0.0, 1.0, 2.0, 3.0]
    assert h.starts(b) == [0.0, 1.02, 2.02, 3.02]  # due 1.005, 2.01, 3.015
    assert h.engine.missed == 0


def test_the_grain_is_at_most_a_fiftieth_of_the_shortest_interval():
    h = Harness()

    def pair(interval: float, apart: float):
        # Two probes added now whose second checks are due ``apart`` seconds apart.
        first, second = refused(interval=interval), refused(interval=interval + apart)
        h.engine.add(first)
        h.engine.add(second)
        return first, second

    a, b = pair(10.0, 0.005)
    h.at(0.0)
    assert h.at(10.0) == pytest.approx(10.02)  # 20 ms at most
    h.now = 10.03
    c, d = pair(0.5, 0.005)
    h.at(10.03)  # an add starts a batch at once: c, d and b (due 10.005)
    assert h.starts(b) == [0.0, 10.03] and h.starts(c) == h.starts(d) == [10.03]
    assert h.at(10.53) == pytest.approx(10.54)  # 10 ms: 2% of 0.5 s
    h.now = 10.6
    e, f = pair(0.05, 0.001)
    h.at(10.6)
    assert h.at(10.65) == pytest.approx(10.652)  # never finer than a tick (2 ms)


def test_the_deadline_of_a_check_that_ended_does_not_wake_the_engine():
    h = Harness()
    h.engine.add(refused(interval=10.0))  # tcp: a 5 s timeout, refused within the step
    assert h.at(0.0) == 10.0  # the next due time, not the dead deadline at 5.0


def test_deadlines_of_ended_checks_do_not_pile_up_behind_a_slow_one(silent):
    """Issue 15 (RSS at 10k): one check slow to end kept every later deadline in the
    heap for a whole timeout (27k entries, 3.8 MB, at 10k checks/s)."""
    h = Harness()
    h.engine.add(hanging(silent, interval=100.0, timeout_ms=60_000))
    quick = [refused(interval=0.1, tokens=1000) for _ in range(100)]
    for probe in quick:
        h.engine.add(probe)
    now = 0.0
    while now < 5:
        while h.at(now) <= now:  # a step starts at most STARTS_PER_STEP: go on
            pass
        now += 0.1
    assert len(h.results) >= 4000 and h.engine.in_flight == 1
    assert len(h.engine._deadlines) <= 2 * h.engine.in_flight + 64


def test_jitter_is_bounded_and_the_first_gap_spread():
    h = Harness(jitter=0.1)
    probe = refused(interval=1.0)
    h.engine.add(probe)
    now = 0.0
    while now < 30:
        h.at(now)
        now += 0.01
    starts = h.starts(probe)
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert 0.5 - 0.011 <= gaps[0] <= 1.5 + 0.011
    assert all(0.9 - 0.011 <= gap <= 1.1 + 0.011 for gap in gaps[1:])
    assert len(set(round(gap, 2) for gap in gaps[1:])) > 3  # really jittered


def test_a_full_limiter_queues_checks_in_order(silent):
    h = Harness()
    probes = [hanging(silent, timeout_ms=1000) for _ in range(3)]
    limiter = trio.CapacityLimiter(1)
    for probe in probes:
        probe.limiter = limiter
        h.engine.add(probe)
    h.at(0.0)
    assert h.engine.in_flight == 1 and limiter.borrowed_tokens == 1
    h.at(1.0)  # the first times out, the second starts
    h.at(2.0)
    h.at(3.0)
    assert [(h.starts(p), ) for p in probes] == [([0.0],), ([1.0],), ([2.0],)]
    assert {reason for _, _, reason in h.results} == {"timeout"}
    assert limiter.borrowed_tokens == 0
    assert h.engine.missed == 0


def test_a_late_start_counts_missed_intervals_and_restarts_the_schedule(silent):
    h = Harness()
    blocker = hanging(silent, interval=100, timeout_ms=3500)
    late = refused(interval=1.0)
    late.limiter = blocker.limiter = trio.CapacityLimiter(1)
    h.engine.add(blocker)
    h.engine.add(late)
    h.at(0.0)
    h.at(3.5)  # the blocker times out; ``late`` was due at 0 and starts now
    h.at(4.0)
    h.at(4.5)
    h.at(5.0)
    assert h.starts(late) == [3.5, 4.5]
    assert h.engine.missed == 3


def test_remove_closes_the_check_in_flight_and_delivers_nothing(silent):
    h = Harness()
    probe = hanging(silent)
    h.engine.add(probe)
    h.at(0.0)
    assert h.engine.in_flight == 1
    h.engine.remove(probe)
    h.engine.remove(probe)  # idempotent
    assert h.engine.in_flight == 0 and probe.limiter.borrowed_tokens == 0
    h.at(5.0)
    h.at(20.0)
    assert h.results == []


def test_a_refused_result_pauses_the_probe_until_resumed():
    paused = set()
    h = Harness(accept=lambda probe, result: probe not in paused)
    probe = refused(interval=1.0)
    paused.add(probe)
    h.engine.add(probe)
    for now in (0.0, 1.0, 2.0):
        h.at(now)
    assert h.starts(probe) == [0.0]
    paused.clear()
    h.engine.resume(probe)
    h.at(2.5)  # due at 1.0: 1.5 intervals late
    h.at(3.5)
    assert h.starts(probe) == [0.0, 2.5, 3.5]
    assert h.engine.missed == 1


async def test_prober_lean_delivers_to_watchers_and_counts(nursery, check_serve):
    port = await check_serve(lambda stream: stream.aclose())
    prober = Prober(lean=True)
    await nursery.start(prober.run)
    send, receive = trio.open_memory_channel(1)  # room for one: the rest waits (backpressure)
    good = ProbeTarget(address="127.0.0.1", port=port, check=TcpCheck())
    bad = ProbeTarget(address="127.0.0.1", port=closed_port("127.0.0.1"), check=TcpCheck())
    limiter = trio.CapacityLimiter(10)
    watches = [prober.watch(t, interval=0.05, limiter=limiter, send=send) for t in (good, bad)]
    seen = []
    with trio.fail_after(5):
        while len({m.target for m in seen}) < 2 or len(seen) < 6:
            seen.append(await receive.receive())
    assert {m.target: m.result.reason for m in seen} == {good: "ok", bad: "refused"}
    stats = prober.statistics()
    assert stats.checks >= 6 and set(stats.by_reason) == {"ok", "refused"}
    for watch in watches:
        watch.cancel()
    assert prober.statistics().targets == 0


def test_a_step_behind_schedule_is_bounded_and_asks_to_go_on_at_once(silent, monkeypatch):
    monkeypatch.setattr("actors._lean_engine.STARTS_PER_STEP", 4)
    h = Harness()
    probes = [hanging(silent, interval=10.0) for _ in range(10)]
    for probe in probes:
        h.engine.add(probe)
    assert h.engine.step(0.0) == 0.0  # 4 started, 6 still due: at once
    assert h.engine.in_flight == 4
    assert h.engine.step(0.001) == 0.001
    assert h.engine.in_flight == 8
    assert h.engine.step(0.002) == pytest.approx(0.004)  # all started: back to ticks
    assert h.engine.in_flight == 10 and h.engine.missed == 0


def test_a_poll_takes_a_bounded_number_of_completions(silent, monkeypatch):
    monkeypatch.setattr("actors._lean_engine.EVENTS_PER_POLL", 2)
    h = Harness()
    probes = [Probe(ProbeTarget(address="127.0.0.1", port=silent, check=TcpCheck()), 10.0)
              for _ in range(5)]
    for probe in probes:
        h.engine.add(probe)
    wake_at = h.engine.step(0.0)  # 5 connects to a listening port: all complete at once
    done = [len(h.results)]
    while h.engine.in_flight:
        assert wake_at == h.now  # 2 taken, more ready: go on at once
        select.select([h.engine.fileno()], [], [], 1.0)
        h.now += 0.1
        wake_at = h.engine.step(h.now)
        done.append(len(h.results))
    assert done == [2, 4, 5]
    assert {reason for _, _, reason in h.results} == {"ok"}


def test_latency_is_read_on_the_clock_not_the_step():
    """A tcp check on loopback ends within the step it started in: its latency is the
    clock's time between connect and completion, not 0.0 (issue 13, problem 6)."""
    ticks = iter(range(1, 1000))
    results = []
    engine = LeanEngine(lambda probe, result, now: results.append(result) or True, jitter=0,
                        clock=lambda: next(ticks) * 50e-6)  # each read 50 µs later
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(10)
        target = ProbeTarget(address="127.0.0.1", port=listener.getsockname()[1],
                             check=TcpCheck())
        engine.add(Probe(target))
        engine.step(1.0)  # its first check was due at the clock's first read
        while engine.in_flight and select.select([engine.fileno()], [], [], 1)[0]:
            engine.step(1.0)
    engine.close()
    assert results[0].passed and 0 < results[0].latency < 0.001


async def test_a_stopped_engine_gives_every_token_back_and_its_probes_start_again(silent):
    """The engine's state lives on the probes (no second object per target): an engine
    cancelled with checks in flight, lean and task ones, returns their tokens, and a
    new engine checks the same probes again at once."""
    async def never(target: ProbeTarget) -> CheckResult:
        await trio.sleep_forever()

    limiter = trio.CapacityLimiter(10)
    lean = hanging(silent, timeout_ms=60000)
    task = hanging(silent, timeout_ms=60000)
    lean.limiter = task.limiter = limiter
    for _ in range(2):  # the second round: the same probes on new engines
        async with trio.open_nursery() as nursery:
            for probe, check in ((lean, run_check), (task, never)):
                engine = LeanEngine(lambda probe, result, now: True, check=check)
                await nursery.start(engine.run)
                engine.add(probe)
            with trio.fail_after(5):
                while limiter.borrowed_tokens < 2:
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
        assert limiter.borrowed_tokens == 0
        assert lean.conn is None and task.conn is None
