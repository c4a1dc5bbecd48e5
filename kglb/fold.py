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

from ._messages import CheckResult, ProbeResult

__all__ = ["FOLD_LIMIT", "FOLD_PERIOD", "Fold"]

#: Seconds a held result may wait: below Prometheus's usual 15 s scrape interval.
FOLD_PERIOD = 10.0
#: At most this many checks per message (bounds its size at short intervals).
FOLD_LIMIT = 64


class Fold:
    """One target's folding state. ``add`` each result in order; send what it returns.

    What is held is kept as plain values (the latencies in an array, no float
    objects; the newest result's outcome, reason and time), not as the messages
    themselves: ~150 bytes less per target, at 10k reals 1.5 MB.
    """

    __slots__ = ("_at", "_latencies", "_passed", "_reason", "_run", "_since", "_target", "limit",
                 "period", "quiet_after")

    def __init__(self, quiet_after: int = 0, *, period: float = FOLD_PERIOD,
                 limit: int = FOLD_LIMIT) -> None:
        if quiet_after < 0 or period < 0 or limit < 1:
            raise ValueError("quiet_after and period must be >= 0, limit >= 1")
        self.quiet_after = quiet_after
        self.period = period
        self.limit = limit
        self._run = 0
        self._passed: bool | None = None  # of the newest result
        self._reason = ""  # of the newest result
        self._latencies = array("d")  # of the results held, oldest first
        self._since = 0.0  # ``at`` of the first result held
        self._at = 0.0  # ``at`` of the newest result held
        self._target = None  # of the results held

    def restart(self, quiet_after: int) -> None:
        """Deliver the next ``quiet_after`` results at once (a watcher joined, with a
        health of its own to decide), and fold after that many from now on."""
        self.quiet_after = quiet_after
        self._run = 0

    def add(self, message: ProbeResult) -> tuple[ProbeResult, ...]:
        """Take the next result of the target; return the messages to deliver now, in order."""
        result = message.result
        latencies = self._latencies
        held = len(latencies)
        out: tuple[ProbeResult, ...] = ()
        if held and (self._passed != result.passed or self._reason != result.reason):
            out = (self._release(),)
            held = 0
        self._run = self._run + 1 if result.passed == self._passed else 1
        self._passed = result.passed
        self._reason = result.reason
        since = self._since if held else message.at
        release = (not self.quiet_after or self._run <= self.quiet_after
                   or message.at - since >= self.period or held + 1 >= self.limit)
        if not held:
            if release:
                return (*out, message)  # the common case with nothing held: as it came
            self._since = message.at
            self._target = message.target
        latencies.append(result.latency)
        self._at = message.at
        if release:
            out += (self._release(),)
        return out

    def _release(self) -> ProbeResult:
        """The results held, as one message (they all agree with the newest one)."""
        latencies = self._latencies
        newest = CheckResult(passed=self._passed, reason=self._reason, latency=latencies[-1])
        folded = tuple(latencies[:-1])
        del latencies[:]
        return ProbeResult(target=self._target, result=newest, at=self._at, folded=folded)
