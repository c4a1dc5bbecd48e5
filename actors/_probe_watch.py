"""What the Prober keeps per watcher and per target, and the messages of its inbox.

A balancer sends :class:`Watch` and :class:`Unwatch` to ``Prober.inbox``;
the Prober keeps one :class:`Subscription` per watcher (a target and the
channel its results go to) and one :class:`Probe` per distinct target,
shared by the target's watchers.
"""

from __future__ import annotations

from dataclasses import dataclass

import trio

from kglb import ProbeResult, ProbeTarget
from kglb.fold import Fold

from ._lean_engine import Entry


@dataclass(frozen=True, slots=True, kw_only=True)
class Watch:
    """To the Prober's inbox: deliver ``target``'s results to ``send`` (a balancer's
    results channel) until an Unwatch of the same target and channel. Watching
    again replaces the earlier watch (a new interval, limiter or quiet_after)."""

    target: ProbeTarget
    interval: float  # seconds
    limiter: trio.CapacityLimiter  # bounds the checks in flight of the watcher's balancer
    send: trio.MemorySendChannel[ProbeResult]
    quiet_after: int = 0  # > 0: fold after that many equal results (kglb.fold)

    def __post_init__(self) -> None:
        if not isinstance(self.target, ProbeTarget):
            raise TypeError("target must be a ProbeTarget")
        if not self.interval > 0:
            raise ValueError("interval must be > 0")
        if self.quiet_after < 0:
            raise ValueError("quiet_after must be >= 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class Unwatch:
    """To the Prober's inbox: stop delivering ``target``'s results to ``send``."""

    target: ProbeTarget
    send: trio.MemorySendChannel[ProbeResult]


class Subscription:
    """One watcher's subscription to a target's results. ``cancel()`` ends it."""

    __slots__ = ("_prober", "active", "interval", "limiter", "quiet_after", "send", "target")

    def __init__(self, prober, target, interval, limiter, send, quiet_after=0) -> None:
        self._prober = prober
        self.target = target
        self.interval = interval
        self.limiter = limiter
        self.send = send
        self.quiet_after = quiet_after
        self.active = True

    def cancel(self) -> None:
        """Stop delivering to this watcher (idempotent, never blocks)."""
        if self.active:
            self.active = False
            self._prober._unwatch(self)

    def __repr__(self) -> str:
        state = "active" if self.active else "cancelled"
        return (f"<Subscription {self.target.address}:{self.target.port} every "
                f"{self.interval}s {state}>")


class Probe(Entry):
    """The shared state of one target's probe: its watchers, and its schedule and check
    in flight on the probe driver (an :class:`actors._lean_engine.Entry`)."""

    __slots__ = ("fold", "id", "shard", "target", "watchers")

    def __init__(self, target: ProbeTarget) -> None:
        super().__init__()
        self.target = target
        self.id: int | None = None  # its number across the pipe, once sharded
        # A tuple (one watcher, mostly: 40 bytes less than a list), replaced on change.
        self.watchers: tuple[Subscription, ...] = ()
        self.shard = None
        self.fold: Fold | None = None  # None: nothing to fold, or sharded (its worker folds)

    @property
    def interval(self) -> float:
        watchers = self.watchers
        if len(watchers) == 1:  # the common case, read at every check
            return watchers[0].interval
        return min(watch.interval for watch in watchers)

    @property
    def limiter(self) -> trio.CapacityLimiter:
        return self.watchers[0].limiter

    @property
    def quiet_after(self) -> int:
        """Fold after this many equal results: every watcher must allow it (0: never)."""
        quiet = [watch.quiet_after for watch in self.watchers]
        return 0 if 0 in quiet else max(quiet, default=0)
