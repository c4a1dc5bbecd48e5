"""Messages between actors: probe results and balancer states. All immutable."""

from __future__ import annotations

from dataclasses import dataclass

from ._model import LinkAddress, Route, ServiceKey, ServiceState
from .config._types import Check
from .health import Health


def _frozen(cls):
    return dataclass(frozen=True, slots=True, kw_only=True)(cls)


@_frozen
class CheckResult:
    """What one check of one real found. A failure is data, never an exception.

    ``reason`` is short and countable: "ok", "timeout", "refused", "reset",
    "unreachable", "tls", "status 503", "rcode NXDOMAIN", "id mismatch", ...
    """

    passed: bool
    reason: str = "ok"
    latency: float = 0.0  # seconds


@_frozen
class ProbeTarget:
    """What a probe checks. Equal targets are probed once and the result shared.

    ``address`` is the IP that is checked (or the VIP, with ``fwmark`` set:
    the connection goes to ``via``'s address and port, and IPVS's per-real
    fwmark service steers it to the real).
    """

    address: str
    port: int
    check: Check
    fwmark: int = 0
    via: ServiceKey | None = None  # the VIP service a tunnelled check goes through


@_frozen
class ProbeResult:
    """One check of ``target``, or the newest of a folded run of equal checks.

    ``folded`` holds the latencies of the earlier checks this message stands
    for, oldest first: each had the same ``passed`` and ``reason`` as
    ``result`` and was not delivered on its own (:mod:`kglb.fold`).
    """

    target: ProbeTarget
    result: CheckResult
    at: float  # trio.current_time() when the (newest) check finished
    folded: tuple[float, ...] = ()

    @property
    def checks(self) -> int:
        """How many checks this message stands for."""
        return 1 + len(self.folded)


@_frozen
class RealStatus:
    """One real of one balancer, for the status API and metrics."""

    host: str  # as configured (IP literal or name)
    address: str | None  # resolved IP, None if it never resolved
    port: int
    health: Health
    weight: int
    last: CheckResult | None = None
    since: float | None = None  # when ``health.up`` last changed
    fwmark: int = 0
    #: up, down, or one of the lifecycle's: draining, suppressed, ramping, kept
    #: (a failed real kept in by min_pooled_ratio).
    state: str = ""
    penalty: float = 0.0  # flap damping penalty now
    connections: int | None = None  # draining: ActiveConn at the last reading
    drain_left: float | None = None  # draining: seconds until the drain timeout


@_frozen
class BalancerState:
    """One balancer's complete contribution to the data plane (latest wins).

    ``services`` holds the main service first, then its per-real fwmark
    services. ``initial`` is kglb's InitialState: true until the first time
    the alive ratio was above 0. ``route`` is the configured BGP route, and
    the generator decides whether it is announced. ``reals`` (every real's
    health and last check, for status) is empty in the states a balancer
    publishes to the generator, which does not read it.
    """

    identity: str
    name: str
    setup_name: str
    services: tuple[ServiceState, ...]
    reals: tuple[RealStatus, ...] = ()
    alive_ratio: float = 0.0
    initial: bool = True
    failsafe: bool = False
    route: Route | None = None
    announce_limit_ratio: float = 0.0
    link_address: LinkAddress | None = None
