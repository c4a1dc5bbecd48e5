"""From the health of one balancer's reals to its BalancerState (kglb.md §3.4, §3.7).

Theory of operation. Every configured host is an :class:`Upstream`: its last
resolved address (None if it never resolved) and the health of that address.
:func:`balancer_state` turns the upstreams into IPVS weights:

* a healthy real gets ``weight_up``; an unhealthy one gets 0 and stays in IPVS
  (quiesced: existing connections go on, no new ones);
* a real whose health is not decided yet (fewer than ``rise`` passes and
  fewer than ``fall`` failures since it appeared) is ``provisional``: weight 0
  for a new real, but the writer keeps the kernel's weight of a real that is
  already serving, so a restart causes no traffic gap;
* ``initial`` stays true until the alive ratio was above 0 once; until then
  nothing is announced and all-down means all at 0;
* after that, all-down means fail-open ("failsafe"): every real gets
  ``weight_up`` and the alive ratio becomes 1.0, so the route stays announced
  (kglb's intended behaviour, decisions.md row 24);
* hosts that never resolved are left out; two hosts on the same address
  collapse into one real (the first one listed wins);
* with ``enable_fwmarks``, each real also gets a one-real fwmark service
  (``fwmark<N>``) that tunnelled health checks go through;
* the lifecycle rules (:mod:`kglb.lifecycle`, off by default) come on top: a
  draining upstream is a real at weight 0 whatever happens (not counted in
  the alive ratio), a suppressed one is down, a ramping one gets its slow
  start weight, and failed reals may be kept in by ``min_pooled_ratio``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ._messages import BalancerState, CheckResult, RealStatus
from ._model import Family, ForwardMethod, LinkAddress, Real, RealKey, Service, ServiceKey, ServiceState
from .config._types import BalancerConfig
from .health import Health
from .lifecycle import Candidate, Drain, Flaps, kept_in, ramp_weight, suppressed


@dataclass(frozen=True, slots=True, kw_only=True)
class Upstream:
    """One configured host as the balancer knows it now."""

    host: str  # as configured: an IP literal or a name
    address: str | None  # canonical text of its last address; None if it never resolved
    health: Health = Health()
    last: CheckResult | None = None
    since: float | None = None  # when health.up last changed
    flaps: Flaps = Flaps()  # flap damping penalty
    ramp_from: float | None = None  # when its slow start began; None: no ramp
    drain: Drain | None = None  # set once it left the balancer and is draining
    late: bool = False  # appeared after the balancer served: its first up may ramp
    port: int | None = None  # the real's own port (discovery); None: the balancer's port
    weight: float = 1.0  # the source's weight: a factor of weight_up


def full_weight(weight_up: int, up: Upstream) -> int:
    """The IPVS weight of ``up`` when healthy: weight_up scaled by its source weight.

    A source weight never takes a healthy real to 0: removing it is how to drain."""
    return weight_up if up.weight == 1.0 else min(max(1, round(weight_up * up.weight)), 2**31 - 1)


def balancer_state(
    config: BalancerConfig,
    upstreams: Sequence[Upstream],
    *,
    initial: bool,
    fwmarks: Mapping[str, int] | None = None,
    statuses: bool = True,
    previous: BalancerState | None = None,
    now: float = 0.0,
) -> BalancerState:
    """The BalancerState of ``config`` given its upstreams, in config order.

    ``initial`` is the previous state's flag (True for a new balancer); the
    result carries the updated one. ``fwmarks`` maps a real's address to its
    mark; a real without a mark gets no fwmark service. ``statuses=False``
    leaves ``reals`` empty: the generator does not read them, and building
    500 of them is half the cost of a state.

    ``previous``, this balancer's last state, changes nothing in the result:
    its Real objects are reused where equal. A publication then builds only
    the reals that changed, and comparing it with the last one (and hashing
    it in the generator) finds the others identical at once.

    ``now`` (trio seconds) is the time the lifecycle rules are evaluated at.
    """
    fall = config.checker.fall
    weight_up = config.weight_up
    life = config.lifecycle
    chosen: dict[str, Upstream] = {}  # by address: one real per address and service
    draining: dict[str, Upstream] = {}
    for up in upstreams:
        if up.address is not None:
            (chosen if up.drain is None else draining).setdefault(up.address, up)
    for address in chosen.keys() & draining.keys():
        del draining[address]  # the same address is wanted again

    serving = {a for a, up in chosen.items() if up.health.up
               and not suppressed(up.flaps, now=now, damping=life.flap_damping)}
    alive = len(serving)
    total = len(chosen)
    ratio = alive / total if total else 0.0
    initial = initial and ratio == 0.0
    failsafe = not initial and total > 0 and alive == 0
    if failsafe:
        ratio = 1.0
    kept = frozenset() if initial or failsafe else kept_in(
        pooled=alive, total=total, ratio=life.min_pooled_ratio, candidates=[
            Candidate(address=a, down_since=up.since) for a, up in chosen.items()
            if not up.health.up and up.health.decided(fall) and a not in serving
            and not suppressed(up.flaps, now=now, damping=life.flap_damping)])

    reals = []
    weights: dict[str, int] = {}
    forward = config.forward
    reuse = _reals_by_address(previous, config.service.key)
    for address, up in chosen.items():
        port = config.port if up.port is None else up.port
        if failsafe or address in kept:
            weight = full_weight(weight_up, up)
        elif address in serving:
            weight = ramp_weight(full_weight(weight_up, up), started=up.ramp_from, now=now,
                                 window_ms=life.slow_start_ms)
        else:
            weight = 0
        weights[address] = weight
        provisional = not failsafe and not up.health.decided(fall)
        reals.append(_real(reuse.get(address), address=address, port=port, weight=weight,
                           forward=forward, host=up.host, provisional=provisional))
    for address, up in draining.items():
        weights[address] = 0
        reals.append(_real(reuse.get(address), address=address, port=up.drain.port, weight=0,
                           forward=forward, host=up.host, provisional=False))

    services = [ServiceState(service=config.service, reals=tuple(reals), name=config.name)]
    marks = fwmarks or {}
    if config.enable_fwmarks:
        services.extend(_fwmark_services(config, chosen, marks, previous))

    reals_status = () if not statuses else tuple(
        RealStatus(
            host=up.host,
            address=up.address,
            port=config.port if up.port is None else up.port,
            health=up.health,
            weight=0 if up.drain else weights.get(up.address, 0),
            last=up.last,
            since=up.since,
            fwmark=marks.get(up.address, 0) if config.enable_fwmarks and up.address else 0,
            state=_state(up, now=now, config=config, kept=kept, serving=serving),
            penalty=up.flaps.penalty_at(now, life.flap_damping) if life.flap_damping else 0.0,
            connections=up.drain.connections if up.drain else None,
            drain_left=(max(0.0, up.drain.deadline(life.drain_timeout_ms) - now)
                        if up.drain else None),
        )
        for up in upstreams
    )
    key = config.key
    link = None if key.fwmark else LinkAddress(link=config.link, address=key.address)
    return BalancerState(
        identity=config.identity,
        name=config.name,
        setup_name=config.setup_name,
        services=tuple(services),
        reals=reals_status,
        alive_ratio=ratio,
        initial=initial,
        failsafe=failsafe,
        route=config.bgp.route() if config.bgp is not None else None,
        announce_limit_ratio=config.announce_limit_ratio,
        link_address=link,
    )


def _real(old: Real | None, *, address: str, port: int, weight: int, forward: ForwardMethod,
          host: str, provisional: bool) -> Real:
    if (old is None or old.weight != weight or old.provisional != provisional
            or old.hostname != host or old.key.port != port or old.forward != forward):
        return Real(key=RealKey(address=address, port=port), weight=weight,
                    forward=forward, hostname=host, provisional=provisional)
    return old


def _state(up: Upstream, *, now: float, config: BalancerConfig, kept: frozenset[str],
           serving: set[str]) -> str:
    """The status word of one upstream: draining, suppressed, ramping, kept, up or down."""
    life = config.lifecycle
    if up.drain is not None:
        return "draining"
    if suppressed(up.flaps, now=now, damping=life.flap_damping):
        return "suppressed"
    if up.address in serving:
        full = full_weight(config.weight_up, up)
        if ramp_weight(full, started=up.ramp_from, now=now, window_ms=life.slow_start_ms) < full:
            return "ramping"
        return "up"
    return "kept" if up.address in kept else "down"


def _reals_by_address(previous: BalancerState | None, key: ServiceKey) -> Mapping[str, Real]:
    if previous is None or not previous.services or previous.services[0].key != key:
        return {}
    return {real.key.address: real for real in previous.services[0].reals}


def _fwmark_services(
    config: BalancerConfig, chosen: Mapping[str, Upstream], marks: Mapping[str, int],
    previous: BalancerState | None,
) -> list[ServiceState]:
    # kglb §3.7: rr, one real, always weight_up ("otherwise ipvs drops health
    # checks"). A MASQ real keeps its port (decisions.md row 8); TUNNEL uses 0.
    tunnel = config.forward is ForwardMethod.TUNNEL
    reuse = {} if previous is None else {s.key.fwmark: s for s in previous.services[1:]}
    out = []
    for address, up in chosen.items():
        mark = marks.get(address)
        if mark is None:
            continue
        port = 0 if tunnel else config.port if up.port is None else up.port
        old = reuse.get(mark)
        if old is not None:
            real = old.reals[0]
            if (real.key.address == address and real.key.port == port and real.hostname == up.host
                    and real.weight == config.weight_up and real.forward == config.forward):
                out.append(old)
                continue
        service = Service(key=ServiceKey.for_fwmark(mark, Family.of(address)), scheduler="rr")
        real = Real(key=RealKey(address=address, port=port), weight=config.weight_up,
                    forward=config.forward, hostname=up.host)
        out.append(ServiceState(service=service, reals=(real,), name=f"fwmark{mark}"))
    return out


def state_changed(old: BalancerState | None, new: BalancerState) -> bool:
    """True if ``new`` differs from ``old`` in what the data plane or routes see.

    Check latencies and health counters change with every probe; they are
    status, not state, and do not make a balancer publish.
    """
    if old is None:
        return True
    return (
        old.services != new.services
        or old.alive_ratio != new.alive_ratio
        or old.initial != new.initial
        or old.failsafe != new.failsafe
        or old.route != new.route
        or old.route is not None and old.route.hold_time_ms != new.route.hold_time_ms
        or old.announce_limit_ratio != new.announce_limit_ratio
        or old.link_address != new.link_address
    )
