"""Folding a target's steady check results into fewer messages (sans-I/O).

A real whose last ``max(rise, fall)`` checks all passed (or all failed) has
a settled health: more of the same changes its counters and nothing else.
Delivering each such result costs the main process ~100 µs (pipe, delivery,
rise/fall, tallies), a whole core at 10k reals checked every second
(``python -m benchmarks e2e``), and the loop lag that comes with it delays
the results that do matter. A :class:`Fold` sits where the results are made
(the Prober, inside the worker process when there are workers) and holds
such steady results back. It lets them go together, at most ``period``
seconds after the first one held, as one ProbeResult whose ``folded`` carries
the latencies of the earlier ones, so counts and latency histograms stay exact.

A result goes out at once, with whatever was held before it, when it is among
the first ``quiet_after`` of its run (a run: consecutive results with the same
``passed``), so rise/fall sees every result that can decide something. A held
group also goes out before a result with another outcome or reason: every
message stands for checks that all agree with it. ``quiet_after=0`` folds
nothing.
"""

from __future__ import annotations

from array import array

from ._messages import ProbeResult

__all__ = ["FOLD_LIMIT", "FOLD_PERIOD", "Fold"]

#: Seconds a held result may wait: below Prometheus's usual 15 s scrape interval.
FOLD_PERIOD = 10.0
#: At most this many checks per message (bounds its size at short intervals).
FOLD_LIMIT = 64


class Fold:
    """One target's folding state. ``add`` each result in order; send what it returns."""

    __slots__ = ("_held", "_latencies", "_passed", "_run", "_since", "limit", "period",
                 "quiet_after")

    def __init__(self, quiet_after: int = 0, *, period: float = FOLD_PERIOD,
                 limit: int = FOLD_LIMIT) -> None:
        if quiet_after < 0 or period < 0 or limit < 1:
            raise ValueError("quiet_after and period must be >= 0, limit >= 1")
        self.quiet_after = quiet_after
        self.period = period
        self.limit = limit
        self._run = 0
        self._passed: bool | None = None
        self._held: ProbeResult | None = None  # the newest result held back
        self._latencies = array("d")  # those held before it, oldest first (no float objects)
        self._since = 0.0  # ``at`` of the first result held

    def restart(self, quiet_after: int) -> None:
        """Deliver the next ``quiet_after`` results at once (a watcher joined, with a
        health of its own to decide), and fold after that many from now on."""
        self.quiet_after = quiet_after
        self._run = 0

    def add(self, message: ProbeResult) -> tuple[ProbeResult, ...]:
        """Take the next result of the target; return the messages to deliver now, in order."""
        result = message.result
        self._run = self._run + 1 if result.passed == self._passed else 1
        self._passed = result.passed
        out: tuple[ProbeResult, ...] = ()
        held = self._held
        if held is not None and (held.result.passed != result.passed
                                 or held.result.reason != result.reason):
            out = (self._release(),)
            held = None
        if held is None:
            self._since = message.at
        else:
            self._latencies.append(held.result.latency)
        self._held = message
        if (not self.quiet_after or self._run <= self.quiet_after
                or message.at - self._since >= self.period
                or len(self._latencies) + 1 >= self.limit):
            out += (self._release(),)
        return out

    def _release(self) -> ProbeResult:
        held = self._held
        self._held = None
        if not self._latencies:
            return held
        folded = tuple(self._latencies)
        del self._latencies[:]
        return ProbeResult(target=held.target, result=held.result, at=held.at, folded=folded)
