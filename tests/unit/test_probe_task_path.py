"""The driver's task path (https, dns, syslog, proxies, injected checks) at scale, in
virtual time: 1k targets under one limiter, checks that take time, no missed interval."""

from __future__ import annotations

from collections import Counter

import trio

from actors.probes import Prober
from kglb import CheckResult, ProbeTarget
from kglb.config import TcpCheck

REALS = 1000
INTERVAL = 1.0
LIMIT = 100  # kglb's default concurrencyLimit


def targets(n: int) -> list[ProbeTarget]:
    return [ProbeTarget(address=f"10.1.{i // 250}.{i % 250 + 1}", port=80, check=TcpCheck())
            for i in range(n)]


async def probe_for(seconds: float, duration: float, nursery) -> tuple[Prober, Counter]:
    """Watch REALS targets whose checks take ``duration``; the checks each one got."""
    starts: Counter[str] = Counter()

    async def check(target: ProbeTarget) -> CheckResult:
        starts[target.address] += 1
        await trio.sleep(duration)
        return CheckResult(passed=True, reason="ok", latency=duration)

    prober = Prober(check=check, jitter=0.1)
    await nursery.start(prober.run)
    limiter = trio.CapacityLimiter(LIMIT)
    send, receive = trio.open_memory_channel(2 * REALS)

    async def drain() -> None:
        async for _ in receive:
            pass

    nursery.start_soon(drain)
    for target in targets(REALS):
        prober.watch(target, interval=INTERVAL, limiter=limiter, send=send)
    await trio.sleep(seconds)
    return prober, starts


async def test_1k_task_checks_under_a_limiter_miss_no_interval(nursery, autojump_clock):
    # 100 tokens × (1 / 50 ms) = 2000 checks/s of room for 1000 checks/s due.
    prober, starts = await probe_for(20.0, 0.05, nursery)
    assert prober.statistics().missed == 0
    # Each target once per interval, ± the 10% jitter and the first gap's ½ interval.
    assert len(starts) == REALS
    assert min(starts.values()) >= 18 and max(starts.values()) <= 22, (
        min(starts.values()), max(starts.values()))


class Rounds(trio.abc.Instrument):
    """Counts trio's scheduling rounds (each ends in an I/O wait)."""

    def __init__(self) -> None:
        self.count = 0

    def before_io_wait(self, timeout: float) -> None:
        self.count += 1


async def test_a_token_given_back_starts_the_next_task_check_in_the_same_round(
        nursery, autojump_clock):
    # A full limiter: each token given back must start the next waiting check at
    # once, not after the driver's next step (a round to wake it, one more for the
    # task it starts): on a loaded host every round is milliseconds of a held token.
    rounds = Rounds()
    events: list[tuple[str, str, int]] = []

    async def check(target: ProbeTarget) -> CheckResult:
        events.append(("start", target.address, rounds.count))
        await trio.sleep(0.01)
        events.append(("end", target.address, rounds.count))
        return CheckResult(passed=True, reason="ok", latency=0.01)

    prober = Prober(check=check, jitter=0)
    await nursery.start(prober.run)
    limiter = trio.CapacityLimiter(1)
    send, receive = trio.open_memory_channel(100)
    trio.lowlevel.add_instrument(rounds)
    try:
        for target in targets(5):
            prober.watch(target, interval=INTERVAL, limiter=limiter, send=send)
        await trio.sleep(0.5)
    finally:
        trio.lowlevel.remove_instrument(rounds)
    assert [kind for kind, _, _ in events] == ["start", "end"] * 5
    assert len({address for _, address, _ in events}) == 5
    waits = [events[i + 1][2] - events[i][2] for i in range(1, len(events) - 1, 2)]
    assert waits == [0] * 4, waits
    assert prober.statistics().missed == 0


async def test_a_handed_over_check_removed_in_flight_delivers_nothing(nursery, autojump_clock):
    async def check(target: ProbeTarget) -> CheckResult:
        await trio.sleep(0.01)
        return CheckResult(passed=True, reason="ok", latency=0.01)

    prober = Prober(check=check, jitter=0)
    await nursery.start(prober.run)
    limiter = trio.CapacityLimiter(1)
    send, receive = trio.open_memory_channel(100)
    first, second = targets(2)
    prober.watch(first, interval=INTERVAL, limiter=limiter, send=send)
    late = prober.watch(second, interval=INTERVAL, limiter=limiter, send=send)
    await trio.sleep(0.015)  # the first ended at 0.01 and handed its token to the second
    assert prober.statistics().in_flight == 1 and limiter.borrowed_tokens == 1
    late.cancel()
    await trio.sleep(0.1)
    delivered = []
    while True:
        try:
            delivered.append(receive.receive_nowait().target)
        except trio.WouldBlock:
            break
    assert delivered == [first]
    assert limiter.borrowed_tokens == 0 and prober.statistics().in_flight == 0
