"""Rise/fall dampening of check results (kglb.md §3.1), as a pure transition.

A real starts down with a count of 0. ``count`` > 0 is the number of consecutive
passes, < 0 the number of consecutive failures. A real that is down goes up
after ``rise`` consecutive passes; one that is up goes down after ``fall``
consecutive failures.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class Health:
    up: bool = False
    count: int = 0
    settled: bool = False  # decided once; it stays so (see ``decided``)

    def decided(self, fall: int) -> bool:
        """True once checks have decided this real: it went up, or failed ``fall`` times.

        Only a real's first decision is awaited: a real that went down and then
        passes once is still decided (down), not undecided again.
        """
        return self.settled or self.up or -self.count >= fall


def observe(health: Health, passed: bool, *, rise: int, fall: int, repeats: int = 1) -> Health:
    """The health after ``repeats`` more check results, all ``passed`` (or all failed).

    ``repeats`` > 1 is a folded run of equal results (see :mod:`kglb.fold`): the
    same as observing them one by one, in one step.
    """
    if rise < 1 or fall < 1:
        raise ValueError("rise and fall must be >= 1")
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    # The first result may turn the run around; the others only lengthen it,
    # and along one run ``up`` changes at most once, so the end state is exact.
    if passed:
        count = (1 if health.count < 0 else health.count + 1) + repeats - 1
        up = health.up or count >= rise
    else:
        count = (-1 if health.count > 0 else health.count - 1) - repeats + 1
        up = health.up and -count < fall
    settled = health.settled or up or -count >= fall
    return Health(up=up, count=count, settled=settled)
