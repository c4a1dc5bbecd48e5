"""The Prober in virtual time, with a fake check function."""

from __future__ import annotations

import pytest
import trio

from actors._lean_engine import GRAIN
from actors.probes import Prober, Unwatch, Watch, suggested_workers
from actors.supervisor import RestartBudget, open_supervisor
from kglb import CheckResult, ProbeTarget
from kglb.config import TcpCheck


def target(n: int) -> ProbeTarget:
    return ProbeTarget(address=f"10.0.0.{n}", port=80, check=TcpCheck())


class FakeCheck:
    """Records (address, start time); takes ``durations[address]`` seconds."""

    def __init__(self, durations: dict[str, float] | None = None) -> None:
        self.calls: list[tuple[str, float]] = []
        self.durations = durations or {}
        self.running = 0
        self.most = 0

    async def __call__(self, target: ProbeTarget) -> CheckResult:
        self.calls.append((target.address, trio.current_time()))
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await trio.sleep(self.durations.get(target.address, 0))
        finally:
            self.running -= 1
        return CheckResult(passed=target.address != "10.0.0.9", reason="ok"
                           if target.address != "10.0.0.9" else "refused")

    def starts(self, address: str) -> list[float]:
        return [t for a, t in self.calls if a == address]


@pytest.fixture
async def started(nursery):
    async def start(check, **options) -> Prober:
        prober = Prober(check=check, **options)
        await nursery.start(prober.run)
        return prober

    return start


def channel():
    return trio.open_memory_channel(1000)


async def test_first_check_at_once_then_every_interval(started, autojump_clock):
    fake = FakeCheck()
    prober = await started(fake, jitter=0)
    send, receive = channel()
    t0 = trio.current_time()
    prober.watch(target(1), interval=2.0, limiter=trio.CapacityLimiter(10), send=send)
    await trio.sleep(9)
    assert fake.starts("10.0.0.1") == [t0, t0 + 2, t0 + 4, t0 + 6, t0 + 8]
    results = [receive.receive_nowait() for _ in range(5)]
    assert [r.at for r in results] == [t0, t0 + 2, t0 + 4, t0 + 6, t0 + 8]
    assert all(r.target == target(1) and r.result.passed for r in results)


async def test_jitter_is_bounded_and_spreads(started, autojump_clock):
    fake = FakeCheck()
    prober = await started(fake, jitter=0.2)
    send, _ = trio.open_memory_channel(10000)
    for n in range(1, 6):
        prober.watch(target(n), interval=1.0, limiter=trio.CapacityLimiter(10), send=send)
    await trio.sleep(50)
    for n in range(1, 6):
        starts = fake.starts(f"10.0.0.{n}")
        first, *gaps = [b - a for a, b in zip(starts, starts[1:])]
        # A check starts within the engine's grain of its due time (due checks
        # start in batches), so a gap between starts can be a grain longer or
        # shorter than the drawn one.
        assert 0.5 - GRAIN <= first <= 1.5 + GRAIN
        assert all(0.8 - GRAIN <= gap <= 1.2 + GRAIN for gap in gaps)
        assert max(gaps) - min(gaps) > 0.1  # it does jitter
    # Started together, the probes are apart from their second check on: more
    # than one batch apart (five first gaps drawn over a whole interval span
    # less than a grain about once in ten million runs).
    seconds = sorted(fake.starts(f"10.0.0.{n}")[1] for n in range(1, 6))
    assert seconds[-1] - seconds[0] > GRAIN


async def test_concurrency_limit(started, autojump_clock):
    fake = FakeCheck({f"10.0.0.{n}": 0.5 for n in range(1, 11)})
    prober = await started(fake, jitter=0)
    send, _ = channel()
    limiter = trio.CapacityLimiter(3)
    for n in range(1, 11):
        prober.watch(target(n), interval=5.0, limiter=limiter, send=send)
    await trio.sleep(0.1)
    assert prober.statistics().in_flight == 3
    await trio.sleep(12)
    assert fake.most == 3
    assert len(fake.calls) == 30  # three rounds of ten, none lost


async def test_shared_target_is_probed_once(started, autojump_clock):
    fake = FakeCheck()
    prober = await started(fake, jitter=0)
    (send1, receive1), (send2, receive2) = channel(), channel()
    prober.watch(target(1), interval=1.0, limiter=trio.CapacityLimiter(1), send=send1)
    prober.watch(target(1), interval=1.0, limiter=trio.CapacityLimiter(1), send=send2)
    await trio.sleep(2.5)
    assert len(fake.calls) == 3
    assert receive1.statistics().current_buffer_used == 3
    assert receive2.statistics().current_buffer_used == 3
    stats = prober.statistics()
    assert (stats.targets, stats.watches) == (1, 2)


async def test_shared_target_runs_at_the_shortest_interval(started, autojump_clock):
    fake = FakeCheck()
    prober = await started(fake, jitter=0)
    send, _ = channel()
    slow = prober.watch(target(1), interval=4.0, limiter=trio.CapacityLimiter(1), send=send)
    await trio.sleep(0.5)
    prober.watch(target(1), interval=1.0, limiter=trio.CapacityLimiter(1), send=send)
    slow.cancel()
    await trio.sleep(8)
    t0 = fake.starts("10.0.0.1")[0]
    assert fake.starts("10.0.0.1")[:3] == [t0, t0 + 4, t0 + 5]


async def test_slow_target_does_not_delay_others(started, autojump_clock):
    fake = FakeCheck({"10.0.0.1": 30})
    prober = await started(fake, jitter=0)
    send, _ = channel()
    limiter = trio.CapacityLimiter(10)
    t0 = trio.current_time()
    prober.watch(target(1), interval=1.0, limiter=limiter, send=send)
    prober.watch(target(2), interval=1.0, limiter=limiter, send=send)
    await trio.sleep(5.5)
    assert fake.starts("10.0.0.2") == [t0 + n for n in range(6)]
    assert fake.starts("10.0.0.1") == [t0]


async def test_cancel_stops_delivery_and_the_probe(started, autojump_clock):
    fake = FakeCheck()
    prober = await started(fake, jitter=0)
    send, receive = channel()
    watch = prober.watch(target(1), interval=1.0, limiter=trio.CapacityLimiter(1), send=send)
    await trio.sleep(1.5)
    watch.cancel()
    watch.cancel()  # idempotent
    assert repr(watch).endswith("cancelled>")
    received = receive.statistics().current_buffer_used
    await trio.sleep(5)
    assert receive.statistics().current_buffer_used == received == 2
    assert len(fake.calls) == 2
    assert prober.statistics().targets == 0


async def test_cancel_during_a_check_delivers_nothing(started, autojump_clock):
    fake = FakeCheck({"10.0.0.1": 1})
    prober = await started(fake, jitter=0)
    send, receive = channel()
    watch = prober.watch(target(1), interval=5.0, limiter=trio.CapacityLimiter(1), send=send)
    await trio.sleep(0.5)
    watch.cancel()
    await trio.sleep(2)
    assert receive.statistics().current_buffer_used == 0


async def test_closed_channel_cancels_the_watch(started, autojump_clock):
    fake = FakeCheck()
    prober = await started(fake, jitter=0)
    send, receive = channel()
    watch = prober.watch(target(1), interval=1.0, limiter=trio.CapacityLimiter(1), send=send)
    await receive.aclose()
    await trio.sleep(3)
    assert not watch.active
    assert len(fake.calls) == 1
    assert prober.statistics().targets == 0


async def test_missed_intervals_are_counted(started, autojump_clock):
    # One slot for two targets whose checks take 1.5 s, every 1 s: they cannot keep up.
    fake = FakeCheck({"10.0.0.1": 1.5, "10.0.0.2": 1.5})
    prober = await started(fake, jitter=0)
    send, _ = channel()
    limiter = trio.CapacityLimiter(1)
    prober.watch(target(1), interval=1.0, limiter=limiter, send=send)
    prober.watch(target(2), interval=1.0, limiter=limiter, send=send)
    await trio.sleep(10)
    stats = prober.statistics()
    assert stats.missed >= 4
    assert fake.most == 1


async def test_statistics(started, autojump_clock):
    fake = FakeCheck()
    prober = await started(fake, jitter=0)
    send, receive = channel()
    prober.watch(target(1), interval=1.0, limiter=trio.CapacityLimiter(5), send=send)
    prober.watch(target(9), interval=1.0, limiter=trio.CapacityLimiter(5), send=send)
    await trio.sleep(1.5)
    stats = prober.statistics()
    assert stats.checks == 4
    assert dict(stats.by_reason) == {"ok": 2, "refused": 2}
    assert (stats.in_flight, stats.targets, stats.missed, stats.workers) == (0, 2, 0, ())
    assert [m.result.reason for m in messages(receive) if m.target == target(9)] == [
        "refused", "refused"]
    with pytest.raises(TypeError):
        stats.by_reason["ok"] = 0  # a snapshot, not a live view


def messages(receive) -> list:
    out = []
    while True:
        try:
            out.append(receive.receive_nowait())
        except trio.WouldBlock:
            return out


async def test_steady_results_are_folded_after_quiet_after(started, autojump_clock):
    fake = FakeCheck()
    prober = await started(fake, jitter=0, fold_period=5)
    send, receive = channel()
    t0 = trio.current_time()
    prober.watch(target(1), interval=1.0, limiter=trio.CapacityLimiter(1), send=send,
                 quiet_after=3)
    await trio.sleep(20.5)  # 21 checks: t0 .. t0+20
    got = messages(receive)
    assert [(m.at - t0, m.checks) for m in got] == [(0, 1), (1, 1), (2, 1), (8, 6), (14, 6),
                                                    (20, 6)]
    stats = prober.statistics()
    assert stats.checks == 21 and stats.by_reason["ok"] == 21  # counted when checked


async def test_no_folding_unless_every_watcher_allows_it(started, autojump_clock):
    fake = FakeCheck()
    prober = await started(fake, jitter=0, fold_period=5)
    (send1, receive1), (send2, receive2) = channel(), channel()
    prober.watch(target(1), interval=1.0, limiter=trio.CapacityLimiter(1), send=send1,
                 quiet_after=2)
    late = prober.watch(target(1), interval=1.0, limiter=trio.CapacityLimiter(1), send=send2)
    await trio.sleep(9.5)
    assert [m.checks for m in messages(receive1)] == [1] * 10
    assert len(messages(receive2)) == 10
    late.cancel()  # the folding watcher alone: its next 2 results, then folded (12..17)
    await trio.sleep(10)
    assert [m.checks for m in messages(receive1)] == [1, 1, 6]
    assert messages(receive2) == []


async def test_watch_needs_a_running_prober():
    send, _ = channel()
    with pytest.raises(RuntimeError):
        Prober().watch(target(1), interval=1, limiter=trio.CapacityLimiter(1), send=send)


def test_options_are_validated():
    with pytest.raises(ValueError):
        Prober(jitter=1)
    with pytest.raises(ValueError):
        Prober(workers=-1)
    with pytest.raises(ValueError):
        Prober(fold_period=-1)
    with pytest.raises(ValueError):
        Prober(check=lambda target: None, workers=2)  # workers cannot import a lambda


@pytest.mark.parametrize(
    "rate, cpus, workers", [(100, 8, 0), (1999, 8, 0), (2000, 8, 1), (10000, 2, 1), (10001, 2, 2),
                            (30000, 8, 3), (50000, 4, 4), (50000, 1, 0)],
)
def test_suggested_workers(rate, cpus, workers):
    assert suggested_workers(rate, cpus) == workers


async def test_a_crashed_prober_is_restarted_by_its_supervisor_with_every_probe(autojump_clock):
    """The Prober is an actor: a bug in it is a crash the Supervisor counts and restarts
    from, and the restarted run probes every target watched before, with no new watch."""
    crashes = []

    class CrashOnce(FakeCheck):
        async def __call__(self, target):
            if len(self.calls) == 2 and not crashes:
                crashes.append(trio.current_time())
                raise RuntimeError("a bug in a check")
            return await super().__call__(target)

    fake = CrashOnce()
    prober = Prober(check=fake, jitter=0)
    budget = RestartBudget()
    send, receive = channel()
    async with open_supervisor(budget=budget) as supervisor:
        await supervisor.start("prober", prober.run, budget=budget)
        prober.watch(target(1), interval=1.0, limiter=trio.CapacityLimiter(1), send=send)
        await trio.sleep(5)
        supervisor.cancel_all()
    assert budget.restarts() == {"prober": 1}
    starts = fake.starts("10.0.0.1")
    assert crashes and starts[:2] == [starts[0], starts[0] + 1]
    assert len(starts) >= 4 and all(t > crashes[0] for t in starts[2:])
    assert prober.statistics().targets == 1


async def test_the_inbox_takes_watch_and_unwatch_messages(started, autojump_clock):
    """Actors talk to the Prober through its inbox: a Watch again replaces the first
    (same target and channel), an Unwatch ends it; messages validate when built."""
    fake = FakeCheck()
    prober = await started(fake, jitter=0)
    send, receive = channel()
    limiter = trio.CapacityLimiter(1)
    t0 = trio.current_time()
    prober.inbox.send_nowait(Watch(target=target(1), interval=1.0, limiter=limiter, send=send))
    await trio.sleep(0.5)
    prober.inbox.send_nowait(Watch(target=target(1), interval=2.0, limiter=limiter, send=send))
    await trio.sleep(4)
    # The first check (at once) ran under the first Watch; the next ones every 2 s.
    assert fake.starts("10.0.0.1") == [t0, t0 + 1, t0 + 3]
    assert (prober.statistics().targets, prober.statistics().watches) == (1, 1)
    prober.inbox.send_nowait(Unwatch(target=target(1), send=send))
    await trio.sleep(5)
    assert len(fake.calls) == 3 and prober.statistics().targets == 0
    assert len(messages(receive)) == 3
    with pytest.raises(ValueError):
        Watch(target=target(1), interval=0, limiter=limiter, send=send)
    with pytest.raises(TypeError):
        Watch(target=("10.0.0.1", 80), interval=1.0, limiter=limiter, send=send)
