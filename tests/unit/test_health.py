"""kglb/health.py: rise/fall dampening (kglb.md §3.1), step by step."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kglb.health import Health, observe

P, F = True, False


def run(results, *, rise, fall):
    health, seen = Health(), []
    for passed in results:
        health = observe(health, passed, rise=rise, fall=fall)
        seen.append(health.up)
    return health, seen


@pytest.mark.parametrize("results, rise, fall, ups", [
    # kglb's TestRaisingFalling: rise 3, fall 1
    ([P, P, P, F], 3, 1, [F, F, True, F]),
    # a failure in between restarts the count
    ([P, P, F, P, P, P], 3, 1, [F, F, F, F, F, True]),
    # fall 2: one failure is not enough, two are
    ([P, F, P, F, F], 1, 2, [True, True, True, True, F]),
    # rise 1 / fall 1 follows every result
    ([P, F, P], 1, 1, [True, F, True]),
    # a real starts down: failures keep it down
    ([F, F, F], 2, 2, [F, F, F]),
])
def test_sequences(results, rise, fall, ups):
    assert run(results, rise=rise, fall=fall)[1] == ups


def test_counts_are_consecutive_and_signed():
    health = Health()
    health = observe(health, True, rise=3, fall=2)
    assert health == Health(up=False, count=1)
    health = observe(health, True, rise=3, fall=2)
    assert health == Health(up=False, count=2)
    health = observe(health, False, rise=3, fall=2)
    assert health == Health(up=False, count=-1)
    health = observe(health, False, rise=3, fall=2)
    assert health == Health(up=False, count=-2, settled=True)


def test_decided_only_awaits_the_first_decision():
    health = Health()
    assert not health.decided(2)
    health = observe(health, False, rise=2, fall=2)
    assert not health.decided(2)  # one failure of two
    health = observe(health, False, rise=2, fall=2)
    assert health.decided(2) and not health.up
    health = observe(health, True, rise=2, fall=2)  # one pass: still down, still decided
    assert health.decided(2) and not health.up


def test_illegal_settings_raise_and_change_nothing():
    health = Health(up=True, count=4)
    with pytest.raises(ValueError):
        observe(health, True, rise=0, fall=1)
    assert health == Health(up=True, count=4)


@given(st.lists(st.booleans(), max_size=40), st.integers(1, 5), st.integers(1, 5))
def test_up_exactly_after_rise_passes_down_exactly_after_fall_failures(results, rise, fall):
    health, ups = run(results, rise=rise, fall=fall)
    for i, up in enumerate(ups):
        was = ups[i - 1] if i else False
        streak = 0
        for passed in reversed(results[: i + 1]):
            if passed != results[i]:
                break
            streak += 1
        if results[i]:
            assert up == (was or streak >= rise)
        else:
            assert up == (was and streak < fall)


@given(st.lists(st.booleans(), max_size=10), st.booleans(), st.integers(1, 12),
       st.integers(1, 5), st.integers(1, 5))
def test_repeats_is_the_same_as_observing_one_by_one(before, passed, repeats, rise, fall):
    start, _ = run(before, rise=rise, fall=fall)
    one_by_one = start
    for _ in range(repeats):
        one_by_one = observe(one_by_one, passed, rise=rise, fall=fall)
    assert observe(start, passed, rise=rise, fall=fall, repeats=repeats) == one_by_one


def test_repeats_must_be_positive():
    with pytest.raises(ValueError):
        observe(Health(), True, rise=1, fall=1, repeats=0)
