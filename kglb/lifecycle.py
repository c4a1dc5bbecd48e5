"""Traffic-safe real lifecycle: drain, slow start, flap damping, a floor on depooling.

Theory of operation. Health (:mod:`kglb.health`) says whether a real's checks
pass; these rules decide what that means for its IPVS weight over time. Each
is off unless its ``BalancerConfig.lifecycle`` field is set, so a kglb config
keeps kglb's behaviour. Time is an argument (trio seconds); nothing here
reads a clock.

* Drain (``drain_timeout_ms``). A real that leaves the balancer (reload,
  discovery, shutdown) stays in the desired state at weight 0 (:class:`Drain`)
  until IPVS shows no established connection to it (ActiveConn = 0) or the
  timeout passed. Only ActiveConn counts: InActConn entries are connections
  that are closing or closed (FIN_WAIT, TIME_WAIT, CLOSE; IPVS keeps them for
  its state timeouts, up to 2 min) and carry no traffic worth waiting for; the
  kernel keeps a deleted destination's entries until they expire anyway. A
  reading counts only if taken :data:`DRAIN_SETTLE` seconds after the drain
  began, so that the weight 0 was applied before it (no connection can arrive
  after a reading that shows 0).
* Slow start (``slow_start_ms``). A real that becomes healthy while others in
  its balancer serve ramps to ``weight_up`` in :data:`SLOW_START_STEPS` (N)
  equal steps: at ``t`` seconds into a window of ``W`` seconds its weight is
  ``max(1, weight_up * k // N)`` with ``k = max(1, min(N, floor(t * N / W)))``,
  so 1/N of ``weight_up`` until ``2W/N``, then one more N-th every ``W/N``, and
  all of it at ``W``. This is Envoy's ``weight * max(min_weight_percent, (t /
  W) ** (1 / aggression))`` with aggression 1 and a minimum of 1/N, sampled
  every W/N: each step is one netlink operation per real, so a ramp costs N
  operations whatever the window. Ten steps of 10 % (Envoy's default minimum) are fine
  enough that no step more than doubles a real's share after the first, and
  few enough to cost nothing. Not applied to the reals of the balancer's first
  round of checks, nor when no other real is serving (start, all-down).
* Flap damping (``flap_damping``, RFC 2439). Every up->down transition adds 1
  to a penalty that halves every ``half_life_ms``. At or above
  ``suppress_flaps`` the real is suppressed: weight 0 even when healthy, until
  the penalty decays below ``reuse_flaps`` (:func:`release_at`).
* Floor (``min_pooled_ratio``). Failed checks never take the share of reals at
  positive weight below the ratio: :func:`kept_in` keeps enough failed reals at
  ``weight_up``, those that failed most recently first (the real that was
  serving a moment ago is likelier healthy than one down for an hour, PyBal's
  reasoning too). Suppressed and draining reals are never kept in. kglb's
  fail-open when every real is down is unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .config._types import FlapDamping

__all__ = ["DRAIN_SETTLE", "SLOW_START_STEPS", "Drain", "Flaps", "drain_over", "flapped",
           "kept_in", "next_ramp_step", "ramp_weight", "release_at", "suppressed"]

#: Weight steps of a slow start (see the module docstring).
SLOW_START_STEPS = 10
#: A counters reading ends a drain only if taken this long after it began.
DRAIN_SETTLE = 0.5
# Float tolerance on step boundaries: a timer due exactly at a boundary sees the step.
_EPSILON = 1e-9


# ------------------------------------------------------------------ drain


@dataclass(frozen=True, slots=True, kw_only=True)
class Drain:
    """A real that left its balancer and keeps weight 0 until it is drained."""

    since: float  # when it left
    port: int  # its port then (the balancer's port may have changed since)
    connections: int | None = None  # ActiveConn of the last valid reading; None: none yet

    def deadline(self, timeout_ms: int) -> float:
        return self.since + timeout_ms / 1000


def drain_over(drain: Drain, *, now: float, timeout_ms: int,
               active: int | None, read_at: float | None) -> bool:
    """True when ``drain`` is over at ``now``: timed out, or a valid reading shows ActiveConn 0.

    ``active`` is the real's ActiveConn in the reading taken at ``read_at``
    (0 if the reading does not have the real: the kernel has none of it).
    """
    if now >= drain.deadline(timeout_ms):
        return True
    return active == 0 and read_at is not None and read_at >= drain.since + DRAIN_SETTLE


# ------------------------------------------------------------------ slow start


def ramp_weight(weight_up: int, *, started: float | None, now: float, window_ms: int) -> int:
    """The weight of a real that began a slow start at ``started`` (None: none)."""
    if started is None or window_ms <= 0:
        return weight_up
    step = _step(started, now, window_ms)
    if step >= SLOW_START_STEPS:
        return weight_up
    return max(1, weight_up * step // SLOW_START_STEPS)


def next_ramp_step(*, started: float | None, now: float, window_ms: int) -> float | None:
    """When the weight of a ramping real changes next; None once it has ``weight_up``."""
    if started is None or window_ms <= 0:
        return None
    step = _step(started, now, window_ms)
    if step >= SLOW_START_STEPS:
        return None
    return started + (step + 1) * window_ms / 1000 / SLOW_START_STEPS


def _step(started: float, now: float, window_ms: int) -> int:
    elapsed = max(0.0, now - started)
    step = math.floor(elapsed * 1000 * SLOW_START_STEPS / window_ms + _EPSILON)
    return max(1, min(SLOW_START_STEPS, step))


# ------------------------------------------------------------------ flap damping


@dataclass(frozen=True, slots=True, kw_only=True)
class Flaps:
    """A real's flap penalty as of ``at``; ``suppressed`` once it reached suppress_flaps."""

    penalty: float = 0.0
    at: float = 0.0
    suppressed: bool = False

    def penalty_at(self, now: float, damping: FlapDamping) -> float:
        return self.penalty * 0.5 ** (max(0.0, now - self.at) * 1000 / damping.half_life_ms)


def flapped(flaps: Flaps, *, now: float, damping: FlapDamping) -> Flaps:
    """``flaps`` after one up->down transition at ``now``."""
    released = not suppressed(flaps, now=now, damping=damping)
    penalty = flaps.penalty_at(now, damping) + 1.0
    return Flaps(penalty=penalty, at=now,
                 suppressed=penalty >= damping.suppress_flaps or not released)


def release_at(flaps: Flaps, damping: FlapDamping) -> float | None:
    """When a suppressed real's penalty falls below ``reuse_flaps``; None if not suppressed."""
    if not flaps.suppressed:
        return None
    if flaps.penalty <= damping.reuse_flaps:
        return flaps.at
    return flaps.at + damping.half_life_ms / 1000 * math.log2(flaps.penalty / damping.reuse_flaps)


def suppressed(flaps: Flaps, *, now: float, damping: FlapDamping | None) -> bool:
    """True while the real must stay at weight 0 whatever its checks say."""
    if damping is None or not flaps.suppressed:
        return False
    return now < release_at(flaps, damping)


# ------------------------------------------------------------------ floor on depooling


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate:
    """A failed real that may be kept in: its address and when it went down (None: never up)."""

    address: str
    down_since: float | None


def kept_in(*, pooled: int, total: int, ratio: float,
            candidates: Sequence[Candidate]) -> frozenset[str]:
    """Addresses of failed reals kept at weight_up so that pooled/total stays >= ``ratio``.

    ``pooled`` reals are at a positive weight already, of ``total``. The most
    recently failed candidates go first; reals that were never up come last
    (they never served), and ties keep the given (config) order.
    """
    if ratio <= 0 or total == 0 or pooled == 0:
        return frozenset()  # pooled == 0: kglb's fail-open decides, not this floor
    needed = math.ceil(ratio * total - _EPSILON) - pooled
    if needed <= 0:
        return frozenset()
    order = sorted(range(len(candidates)), key=lambda i: (
        candidates[i].down_since is None, -(candidates[i].down_since or 0.0), i))
    return frozenset(candidates[i].address for i in order[:needed])
