"""kglb/fold.py: steady results are held back and delivered together, nothing is lost."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kglb import CheckResult, Health, ProbeResult, ProbeTarget, observe
from kglb.config import TcpCheck
from kglb.fold import Fold

TARGET = ProbeTarget(address="10.0.0.1", port=80, check=TcpCheck())


def result(passed: bool, at: float, latency: float = 0.001, reason: str | None = None):
    reason = reason or ("ok" if passed else "refused")
    return ProbeResult(target=TARGET, at=at,
                       result=CheckResult(passed=passed, reason=reason, latency=latency))


def feed(fold: Fold, messages) -> list[list[ProbeResult]]:
    return [list(fold.add(m)) for m in messages]


def test_nothing_is_folded_without_quiet_after():
    fold = Fold(0)
    messages = [result(True, t) for t in range(20)]
    assert feed(fold, messages) == [[m] for m in messages]


def test_a_run_is_delivered_until_quiet_after_then_held_for_a_period():
    fold = Fold(3, period=10)
    messages = [result(True, t, latency=t / 1000) for t in range(15)]
    out = feed(fold, messages)
    assert out[:3] == [[messages[0]], [messages[1]], [messages[2]]]
    assert out[3:13] == [[]] * 10  # held: 3..12
    # at 13 the first held one (at 3) is 10 s old: one message stands for 11 checks
    (folded,) = out[13]
    assert folded.result == messages[13].result and folded.at == 13
    assert folded.folded == tuple(t / 1000 for t in range(3, 13)) and folded.checks == 11
    assert out[14] == []


def test_another_outcome_releases_the_held_group_first():
    fold = Fold(2, period=100)
    out = feed(fold, [result(True, 0), result(True, 1), result(True, 2), result(True, 3),
                      result(False, 4)])
    assert out[2:4] == [[], []]
    held, failure = out[4]
    assert held.result.passed and held.at == 3 and held.folded == (0.001,)
    assert failure == result(False, 4)


def test_another_reason_releases_the_held_group_first():
    fold = Fold(1, period=100)
    out = feed(fold, [result(False, 0), result(False, 1, reason="timeout"),
                      result(False, 2, reason="timeout"), result(False, 3, reason="refused")])
    assert out[1:3] == [[], []]
    (timeouts,) = out[3]  # the refusal is the 4th failure of its run: held in turn
    assert timeouts.result.reason == "timeout" and timeouts.checks == 2
    (refused,) = fold.add(result(True, 4))[:1]
    assert refused.result.reason == "refused" and refused.checks == 1


def test_limit_bounds_a_message():
    fold = Fold(1, period=1e9, limit=4)
    out = feed(fold, [result(True, t) for t in range(10)])
    assert [m.checks for ms in out for m in ms] == [1, 4, 4]


def test_restart_delivers_the_next_quiet_after_results_at_once():
    fold = Fold(2, period=100)
    feed(fold, [result(True, t) for t in range(5)])  # 2..4 held
    fold.restart(3)
    out = feed(fold, [result(True, t) for t in range(5, 10)])
    assert [m.checks for m in out[0]] == [4]  # 2, 3, 4 ride along with 5
    assert out[1:3] == [[out[1][0]], [out[2][0]]] and out[3:] == [[], []]


def test_settings_are_validated():
    for bad in ({"quiet_after": -1}, {"period": -1}, {"limit": 0}):
        with pytest.raises(ValueError):
            Fold(**bad)


steps = st.lists(st.tuples(st.booleans(), st.sampled_from(["ok", "a", "b"]),
                           st.floats(0, 1), st.floats(0, 5)), max_size=80)


@given(steps, st.integers(1, 4), st.integers(1, 4), st.floats(0, 20), st.integers(1, 8))
def test_health_and_counts_are_those_of_every_result(steps, rise, fall, period, limit):
    """Folding with quiet_after = max(rise, fall) changes no decision and drops no check."""
    fold = Fold(max(rise, fall), period=period, limit=limit)
    every, delivered, at = Health(), Health(), 0.0
    sent_latencies, all_latencies = [], []
    for passed, reason, latency, dt in steps:
        at += dt
        message = ProbeResult(target=TARGET, at=at,
                              result=CheckResult(passed=passed, reason=reason, latency=latency))
        all_latencies.append(latency)
        every = observe(every, passed, rise=rise, fall=fall)
        for out in fold.add(message):
            delivered = observe(delivered, out.result.passed, rise=rise, fall=fall,
                                repeats=out.checks)
            sent_latencies += [*out.folded, out.result.latency]
        assert (delivered.up, delivered.decided(fall)) == (every.up, every.decided(fall))
        assert sent_latencies == all_latencies[: len(sent_latencies)]
    held = len(all_latencies) - len(sent_latencies)
    assert held <= min(limit - 1, len(all_latencies))
