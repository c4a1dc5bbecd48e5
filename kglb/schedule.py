"""When a target is checked: due times, first-check spread, jitter, missed intervals (sans-I/O).

Theory of operation. A target is first due when it becomes known, and then
every ``interval`` seconds from its previous *due* time (not from when the
check really started: a busy loop's late wake-ups must not stretch every
period). Each gap is scaled by ``1 + spread × draw``, ``draw`` a random number
in [-1, 1] that the caller draws: ``spread`` is ``jitter`` except for the
first gap, which is ``FIRST_SPREAD`` (½ to 1½ intervals), so the thousands of
targets a config load adds together do not stay in step ever after.
``jitter=0`` makes every time exact.

A check that starts a whole interval or more after its due time counts the
intervals it missed, and the schedule restarts from that start rather than
catching up in a burst. The interval is read at each check: the caller may
change it between checks (a watcher with a shorter one joined).

The caller reads the clock and passes it in; nothing here sleeps.
"""

from __future__ import annotations

__all__ = ["FIRST_SPREAD", "Schedule"]

#: The first gap is between ½ and 1½ intervals (with jitter on).
FIRST_SPREAD = 0.5


class Schedule:
    """One target's due time. ``start`` when its check starts, ``advance`` when it ends."""

    __slots__ = ("due", "jitter", "spread")

    def __init__(self, now: float, jitter: float) -> None:
        if not 0 <= jitter < 1:
            raise ValueError("jitter must be in [0, 1)")
        self.due = now  # the first check is due at once
        self.jitter = jitter
        self.spread = FIRST_SPREAD if jitter else 0.0

    def start(self, now: float, interval: float) -> int:
        """A check starts at ``now``: the whole intervals it missed (0 when on time)."""
        late = now - self.due
        if late < interval:
            return 0
        self.due = now
        return int(late // interval)

    def advance(self, interval: float, draw: float) -> float:
        """The check ended: the next due time, ``draw`` uniform in [-1, 1]."""
        self.due += interval * (1 + self.spread * draw)
        self.spread = self.jitter
        return self.due
