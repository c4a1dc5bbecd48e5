"""kglb.schedule: due times, the first gap's spread, jitter and missed intervals (pure)."""

from __future__ import annotations

import pytest

from kglb.schedule import FIRST_SPREAD, Schedule


def test_first_due_at_once_then_every_interval_from_the_due_time():
    schedule = Schedule(10.0, jitter=0)
    assert schedule.due == 10.0
    assert schedule.start(10.3, 2.0) == 0  # late, but less than an interval
    assert schedule.advance(2.0, draw=1.0) == 12.0  # from the due time, not the start
    assert schedule.advance(2.0, draw=-1.0) == 14.0  # jitter 0: draws change nothing


@pytest.mark.parametrize("draw, first, second", [(1.0, 1.5, 1.1), (-1.0, 0.5, 0.9),
                                                 (0.0, 1.0, 1.0)])
def test_the_first_gap_is_spread_wider_than_the_jitter(draw, first, second):
    schedule = Schedule(0.0, jitter=0.1)
    assert schedule.spread == FIRST_SPREAD
    assert schedule.advance(1.0, draw) == pytest.approx(first)
    assert schedule.advance(1.0, draw) - first == pytest.approx(second)


@pytest.mark.parametrize("start, missed, due", [(0.99, 0, 0.0), (1.0, 1, 1.0), (3.5, 3, 3.5)])
def test_a_late_start_counts_whole_intervals_and_restarts_from_it(start, missed, due):
    schedule = Schedule(0.0, jitter=0)
    assert schedule.start(start, 1.0) == missed
    assert schedule.due == due
    assert schedule.advance(1.0, 0.0) == due + 1.0


def test_jitter_is_validated():
    with pytest.raises(ValueError):
        Schedule(0.0, jitter=1.0)
