"""Prometheus metrics, built from one statistics snapshot at scrape time.

Nothing here keeps long-lived metric children: ``SnapshotCollector`` turns the
immutable snapshot the control plane hands out (``handle.statistics()``) into
metric families when scraped (libraries.md §5: 10k labelled children cost
~9 MiB). Rendering is CPU work for a worker thread: 10k reals (~43k series,
4 MB) take 0.2-0.3 s here (``python -m benchmarks.scrape``).

kglb's metrics keep their exact names and labels (kglb.md §4), and all of them
are visible and true (decisions.md rows 5, 6; kglb's GaugeGroup ones were never
exported); the text formats are written by actors.exposition. Where kglb's
metrics would mislead, they are made true: no BGP session series without BGP,
duplicate balancer names told apart (``balancer_labels``), the reason of a
check as a bounded metric of its own rather than a label of ``real_up``, and
the age of the IPVS counters exported beside them.

The snapshot attributes read (``stats`` is an ``actors.app.KglbStatistics``):

- ``stats.balancers``: tuple of ``kglb.BalancerState`` (with ``RealStatus`` per real)
- ``stats.desired``: the desired ``DataPlaneState``, None before the first one
- ``stats.route_decisions``: ``{balancer identity: bool}`` (route allowed)
- ``stats.state_hashes``: ``{setup name: int}``
- ``stats.checks``: ``{(balancer identity, real host): CheckTally}``
- ``stats.bgp_established``: bool
- ``stats.reloads_ok``, ``stats.reloads_failed``, ``stats.invalid_states``: int;
  ``stats.restarts_by_actor``: ``{actor: int}``; ``stats.started_at``: Unix time
- ``stats.writer`` (``actors.writer.WriterStatistics``): ``manager_state``,
  ``applied``, ``applied_wall``, ``last_apply_duration``, ``operations``,
  ``errors_by_errno``, ``drift_repairs``, ``owned``, ``foreign_services``,
  ``foreign_addresses``, ``routes`` (announced), ``counters``, ``counters_at``,
  ``refused`` (by reason; None without --privsep)
- ``stats.prober`` (``actors.probes.ProberStatistics``): ``by_reason``,
  ``in_flight``, ``missed``
- ``stats.discovery``: ``{balancer identity: actors.discovery.SourceStatus}``
"""

from __future__ import annotations

import bisect
import errno as errno_module
import itertools
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import trio
from prometheus_client import disable_created_metrics
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import CollectorRegistry
from prometheus_client.utils import floatToGoString

from kglb import BalancerState, ProbeResult
from kglb.privsep import REFUSAL_REASONS

from .exposition import OPENMETRICS_CONTENT_TYPE, expose, expose_openmetrics

__all__ = [
    "CONTENT_TYPE",
    "LATENCY_BUCKETS",
    "OPENMETRICS_CONTENT_TYPE",
    "CheckTally",
    "Histogram",
    "LoopLag",
    "LoopLagMonitor",
    "SnapshotCollector",
    "balancer_labels",
    "balancer_state",
    "build_registry",
    "disable_created_metrics",
    "expose",
    "expose_openmetrics",
    "render_metrics",
    "run_loop_lag_monitor",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Check latency buckets (seconds): checks time out at 5 s by default. The
#: sub-millisecond ones are for loopback and same-rack reals (a tcp check on
#: loopback takes ~0.1 ms: with 1 ms first, every check fell in one bucket).
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Event-loop lag buckets (seconds): above ~10 ms something blocks the loop.
#: Distinct reasons per balancer in ``reals_by_reason``; the rarest beyond are "other".
MAX_REASONS = 16
LAG_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)

BALANCER_STATES = ("initial", "available", "no_upstreams", "failsafe", "shutdown")
MANAGER_STATES = ("available", "set_state_failed", "shutdown_failed")


# ------------------------------------------------------------------ tallies kept by actors


@dataclass(frozen=True, slots=True, kw_only=True)
class Histogram:
    """Counts per bucket (not cumulative; the last one is +Inf) and the sum.

    ``counts`` stops at the last non-empty bucket: a real's checks mostly fall
    in one or two buckets, and 10k reals' histograms are the biggest tally.
    """

    bounds: tuple[float, ...]
    counts: tuple[int, ...] = ()
    total: float = 0.0

    @classmethod
    def empty(cls, bounds: tuple[float, ...]) -> Histogram:
        return cls(bounds=bounds)

    def observe(self, *values: float) -> Histogram:
        """The histogram with ``values`` added."""
        counts = list(self.counts)
        for value in values:
            i = bisect.bisect_left(self.bounds, value)
            if i >= len(counts):
                counts.extend([0] * (i + 1 - len(counts)))
            counts[i] += 1
        return Histogram(bounds=self.bounds, counts=tuple(counts), total=self.total + sum(values))

    @staticmethod
    def merge(histograms: list[Histogram]) -> Histogram:
        """The sum of histograms with the same bounds."""
        counts = tuple(map(sum, itertools.zip_longest(*(h.counts for h in histograms),
                                                      fillvalue=0)))
        return Histogram(bounds=histograms[0].bounds, counts=counts,
                         total=sum(h.total for h in histograms))

    def cumulative(self) -> list[tuple[str, int]]:
        out, running = [], 0
        counts = itertools.chain(self.counts, itertools.repeat(0))
        for bound, count in zip((*self.bounds, float("inf")), counts):
            running += count
            out.append((floatToGoString(bound), running))
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckTally:
    """Cumulative check counts of one real, kept by its balancer actor.

    ``record`` returns the next tally; ``transitioned`` says the result changed
    the real's health (up <-> down).
    """

    passed: int = 0
    failed: int = 0
    transitions: int = 0
    latency: Histogram = field(default_factory=lambda: Histogram.empty(LATENCY_BUCKETS))

    def record(self, message: ProbeResult, *, transitioned: bool = False) -> CheckTally:
        """Count every check ``message`` stands for (its folded ones too)."""
        result = message.result
        checks = message.checks
        return CheckTally(
            passed=self.passed + (checks if result.passed else 0),
            failed=self.failed + (0 if result.passed else checks),
            transitions=self.transitions + transitioned,
            latency=self.latency.observe(result.latency, *message.folded),
        )


# ------------------------------------------------------------------ event-loop lag


@dataclass(frozen=True, slots=True, kw_only=True)
class LoopLag:
    """How late the event loop woke a sleeping task: the last sample and all of them."""

    last: float = 0.0
    histogram: Histogram = field(default_factory=lambda: Histogram.empty(LAG_BUCKETS))


class LoopLagMonitor:
    """Sleeps ``interval`` again and again and records how late each wake-up was.

    A late wake-up means some code held the loop (a blocking call, a long
    computation): exactly what must never happen in a control plane.
    """

    def __init__(self, *, interval: float = 0.25) -> None:
        self._interval = interval
        self._lag = LoopLag()

    def statistics(self) -> LoopLag:
        return self._lag

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started(self)
        while True:
            start = trio.current_time()
            await trio.sleep(self._interval)
            lag = max(0.0, trio.current_time() - start - self._interval)
            self._lag = LoopLag(last=lag, histogram=self._lag.histogram.observe(lag))


async def run_loop_lag_monitor(*, interval: float = 0.25,
                               task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Run a ``LoopLagMonitor`` forever; ``task_status.started(monitor)``."""
    await LoopLagMonitor(interval=interval).run(task_status=task_status)


# ------------------------------------------------------------------ families


class _Family:
    """Samples of one family keyed by label values: ``set`` overwrites, ``add`` sums."""

    def __init__(self, name: str, help: str, kind: str, labels: tuple[str, ...] = ()) -> None:
        self.name, self.help, self.kind, self.labels = name, help, kind, labels
        self.values: dict[tuple[str, ...], float] = {}

    def set(self, value: float, *labels: str) -> None:
        self.values[labels] = value

    def add(self, value: float, *labels: str) -> None:
        self.values[labels] = self.values.get(labels, 0.0) + value

    def metric(self) -> Metric:
        # Labels go in name order, as client_golang (kglb) writes them.
        order = sorted(range(len(self.labels)), key=self.labels.__getitem__)
        names = [self.labels[i] for i in order]
        metric = Metric(self.name, self.help, self.kind)
        for values, value in self.values.items():
            metric.add_sample(self.name, dict(zip(names, [values[i] for i in order])), value)
        return metric


def _bounded(counted: Counter[str]) -> dict[str, int]:
    """At most MAX_REASONS reasons: the most common, the rest summed as "other"."""
    if len(counted) <= MAX_REASONS:
        return dict(counted)
    kept = dict(counted.most_common(MAX_REASONS - 1))
    kept["other"] = kept.get("other", 0) + sum(counted.values()) - sum(kept.values())
    return kept


def _one_hot(family: _Family, states: Iterable[str], current: str, *labels: str) -> None:
    for state in states:
        family.set(1.0 if state == current else 0.0, *labels, state)


def balancer_state(b: BalancerState) -> str:
    """kglb's balancer_state label: failsafe, no_upstreams, initial (never a real up yet) or available."""
    if b.failsafe:
        return "failsafe"
    if not (b.services and b.services[0].reals):
        return "no_upstreams"
    return "initial" if b.initial else "available"


def balancer_labels(balancers: Iterable[BalancerState]) -> dict[str, tuple[str, str]]:
    """(setup, service) label values by balancer identity.

    kglb allows two balancers with the same name in one setup; their series
    would collapse into one. Those (and only those) are told apart by their
    identity (``web-10.0.0.1:80-tcp``) as the ``service`` label; every other
    balancer keeps its name, so its series do not change.
    """
    balancers = list(balancers)
    names = [(b.setup_name or "unknown", b.name or "unknown") for b in balancers]
    counts = Counter(names)
    return {b.identity: (setup, b.identity if counts[setup, name] > 1 else name)
            for b, (setup, name) in zip(balancers, names)}


CP = "kglb:control_plane:"
DP = "kglb:data_plane:"
SS = ("setup", "service")


def _control_plane(stats) -> Iterator[Metric]:
    state = _Family(CP + "balancer_state", "1 for the balancer's current state.", "gauge",
                    (*SS, "state"))
    route = _Family(CP + "route_announcement", "1 for the route decision (on/off).", "gauge",
                    (*SS, "state"))
    count = _Family(CP + "upstreams_count", "Reals with weight != 0 (alive) and = 0.", "gauge",
                    (*SS, "alive"))
    ratio = _Family(CP + "alive_ratio", "Healthy reals / all reals.", "gauge", SS)
    static = _Family(CP + "discovery:static_upstream_count", "Configured hosts.", "gauge", SS)
    checks = _Family(CP + "healthcheck", "Checks per real and result.", "counter",
                     (*SS, "host", "result"))
    by_identity = balancer_labels(stats.balancers)
    for b in stats.balancers:
        labels = by_identity[b.identity]
        _one_hot(state, BALANCER_STATES, balancer_state(b), *labels)
        _one_hot(route, ("on", "off"), "on" if stats.route_decisions.get(b.identity) else "off",
                 *labels)
        reals = b.services[0].reals if b.services else ()
        alive = sum(1 for r in reals if r.weight)
        count.set(alive, *labels, "true")
        count.set(len(reals) - alive, *labels, "false")
        ratio.set(b.alive_ratio, *labels)
        source = stats.discovery.get(b.identity)
        if source is None or source.kind == "static":  # kglb's name: static discovery only
            static.set(len(b.reals), *labels)
        for r in b.reals:
            tally = stats.checks.get((b.identity, r.host))
            if tally is not None:
                checks.add(tally.passed, *labels, r.host, "pass")
                checks.add(tally.failed, *labels, r.host, "fail")
    hashes = _Family(CP + "state_hash", "Per-setup state hash (FNV-1 64 sum).", "gauge",
                     ("entity", "setup"))
    for setup, value in stats.state_hashes.items():
        hashes.set(float(value), "global", setup)
    availability = _Family(CP + "availability", "1 if the last apply succeeded.", "gauge",
                           ("initialized",))
    availability.set(1.0 if stats.writer.manager_state == "available" else 0.0,
                     "true" if stats.desired is not None else "false")
    for family in (state, route, count, ratio, static, checks, hashes, availability):
        yield family.metric()


def _data_plane(stats, wall: float) -> Iterator[Metric]:
    writer = stats.writer
    manager = _Family(DP + "manager_state", "1 for the writer's current state.", "gauge", ("state",))
    _one_hot(manager, MANAGER_STATES, writer.manager_state)
    age = _Family(DP + "manager_state_age_sec", "Seconds since the last successful apply.", "gauge")
    age.set(max(0.0, wall - (writer.applied_wall or stats.started_at)))
    links = _Family(DP + "link_address", "VIP addresses: alive, add_failed, delete_failed.",
                    "gauge", ("address", "state"))
    # From the kernel as the writer last knew it, and the groups (VIPs) whose
    # operations are failing: an address that is there is never "add_failed".
    present = {a.address for a in writer.addresses}
    desired = {a.address for a in stats.desired.addresses} if stats.desired else set()
    ours = {a.address for a in writer.owned.addresses}
    for address in sorted(desired | (ours & present)):
        alive, failing = address in present, address in writer.failing
        links.set(1.0 if alive else 0.0, address, "alive")
        links.set(1.0 if failing and not alive and address in desired else 0.0, address,
                  "add_failed")
        links.set(1.0 if failing and alive and address not in desired else 0.0, address,
                  "delete_failed")
    yield from (manager.metric(), age.metric(), links.metric())
    yield from _ipvs_counters(stats)
    if not any(b.route is not None for b in stats.balancers):
        return  # no BGP configured: no session to report on, no routes
    session = _Family(DP + "bgp_session", "1 for the BGP session state.", "gauge", ("state",))
    _one_hot(session, ("established", "not_established"),
             "established" if stats.bgp_established else "not_established")
    routes = _Family(DP + "bgp_route", "1 per announced route.", "gauge", ("route",))
    for r in sorted(writer.routes):
        routes.set(1.0, r.prefix.replace(":", ".").replace(" ", "_"))
    yield from (session.metric(), routes.metric())


def _ipvs_counters(stats) -> Iterator[Metric]:
    """Bytes and packets per balancer and per real, kglb's way: fwmark and foreign
    services left out, series with the same name summed."""
    names, hostnames = {}, {}
    by_identity = balancer_labels(stats.balancers)
    for b in stats.balancers:
        if b.services:
            main = b.services[0]
            names[main.key] = by_identity[b.identity][1].replace(":", "_")
            hostnames[main.key] = {r.key: r.hostname or r.key.address for r in main.reals}
    families = {}
    for scope in ("service", "upstream"):
        for what in ("bytes", "packets"):
            families[scope, what] = _Family(f"{DP}{scope}_{what}", f"IPVS {what} per {scope}.",
                                            "counter", ("name", "direction"))
    for key, counters in stats.writer.counters.items():
        if key not in names:
            continue
        for what in ("bytes", "packets"):
            for direction in ("in", "out"):
                attr = f"{what}_{direction}"
                families["service", what].add(getattr(counters, attr), names[key], direction)
                for real in counters.reals:
                    host = hostnames[key].get(real.key, "default")
                    families["upstream", what].add(getattr(real, attr), host, direction)
    for family in families.values():
        yield family.metric()


def _ours(stats, lag: LoopLag | None, now: float | None, wall: float
          ) -> Iterator[Metric]:
    P = "kglb_trio_"
    up = _Family(P + "real_up", "1 if the real is healthy.", "gauge",
                 (*SS, "host", "address", "port"))
    # The reason is not a label of real_up (each change would start a new
    # series per real): reals are counted per balancer and reason instead.
    reasons = _Family(P + "reals_by_reason", "Reals per balancer by the reason of their last "
                      "check (none: not checked yet).", "gauge", (*SS, "reason"))
    transitions = _Family(P + "health_transitions_total", "Up/down changes per real.", "counter",
                          (*SS, "host"))
    life = _Family(P + "real_lifecycle", "1 for a real in a lifecycle state (draining, "
                   "suppressed, ramping, kept); reals that are plainly up or down have none.",
                   "gauge", (*SS, "host", "address", "state"))
    drain_conns = _Family(P + "real_drain_connections", "ActiveConn of a draining real.",
                          "gauge", (*SS, "host", "address"))
    drain_left = _Family(P + "real_drain_seconds_left", "Time until a draining real is deleted "
                         "anyway.", "gauge", (*SS, "host", "address"))
    penalty = _Family(P + "real_flap_penalty", "Flap damping penalty of a real (when above 0).",
                      "gauge", (*SS, "host", "address"))
    latency: dict[tuple[str, str], list[Histogram]] = {}
    by_identity = balancer_labels(stats.balancers)
    for b in stats.balancers:
        labels = by_identity[b.identity]
        counted = Counter(r.last.reason if r.last else "none" for r in b.reals)
        for reason, n in _bounded(counted).items():
            reasons.set(n, *labels, reason)
        for r in b.reals:
            if r.state not in ("", "up", "down"):
                life.set(1.0, *labels, r.host, r.address or "", r.state)
            if r.drain_left is not None:
                drain_left.set(r.drain_left, *labels, r.host, r.address or "")
                if r.connections is not None:
                    drain_conns.set(r.connections, *labels, r.host, r.address or "")
            if r.penalty > 0:
                penalty.set(r.penalty, *labels, r.host, r.address or "")
            up.set(1.0 if r.health.up else 0.0, *labels, r.host, r.address or "", str(r.port))
            tally = stats.checks.get((b.identity, r.host))
            if tally is not None:
                transitions.add(tally.transitions, *labels, r.host)
                latency.setdefault(labels, []).append(tally.latency)
    hist = HistogramMetricFamily(P + "check_latency_seconds", "Check latency per balancer.",
                                 labels=SS)
    for labels, histograms in latency.items():
        h = Histogram.merge(histograms)
        hist.add_metric(list(labels), h.cumulative(), h.total)
    yield from (up.metric(), reasons.metric(), transitions.metric(), hist, life.metric(),
                drain_conns.metric(), drain_left.metric(), penalty.metric())
    # A page is shared for a while (actors.scrape_cache): say when it was made.
    rendered = _Family(P + "metrics_rendered_timestamp_seconds", "When this page was rendered "
                       "(Unix time); every reader within a few seconds gets the same page.",
                       "gauge")
    rendered.set(wall)
    yield rendered.metric()
    counters_at = stats.writer.counters_at
    if now is not None and counters_at is not None:
        age = _Family(P + "ipvs_counters_age_seconds", "Age of the IPVS byte and packet "
                      "counters served (they are read every few seconds).", "gauge")
        age.set(max(0.0, now - counters_at))
        yield age.metric()

    writer, prober = stats.writer, stats.prober
    simple = [
        ("apply_operations_total", "counter", "Operations applied to the data plane.",
         writer.operations),
        ("drift_repairs_total", "counter", "Applies that repaired a kernel changed behind us.",
         writer.drift_repairs),
        ("checks_in_flight", "gauge", "Checks running now.", prober.in_flight),
        ("check_missed_intervals_total", "counter", "Checks that could not start on time.",
         prober.missed),
        ("apply_duration_seconds", "gauge", "Duration of the last apply.",
         writer.last_apply_duration),
        ("invalid_states_total", "counter", "Generated states refused by validation.",
         stats.invalid_states),
    ]
    for name, kind, help, value in simple:
        family = _Family(P + name, help, kind)
        family.set(float(value))
        yield family.metric()
    errors = _Family(P + "netlink_errors_total", "Failed data-plane operations by errno.",
                     "counter", ("errno", "name"))
    for number, n in writer.errors_by_errno.items():
        errors.add(n, str(number), errno_module.errorcode.get(number, "unknown"))
    reloads = _Family(P + "config_reloads_total", "Config reloads by result.", "counter",
                      ("result",))
    reloads.set(stats.reloads_ok, "ok")
    reloads.set(stats.reloads_failed, "failed")
    checks = _Family(P + "checks_total", "Checks by result reason.", "counter", ("reason",))
    for reason, n in prober.by_reason.items():
        checks.add(n, reason)
    restarts = _Family(P + "actor_restarts_total", "Actors restarted after a crash.", "counter",
                       ("actor",))
    for actor, n in stats.restarts_by_actor.items():
        restarts.set(n, actor)
    objects = _Family(P + "objects", "IPVS services and VIPs we own, and foreign ones we leave alone.",
                      "gauge", ("owner", "kind"))
    objects.set(len(writer.owned.services), "ours", "service")
    objects.set(len(writer.owned.addresses), "ours", "address")
    objects.set(len(writer.foreign_services), "foreign", "service")
    objects.set(len(writer.foreign_addresses), "foreign", "address")
    yield from (errors.metric(), reloads.metric(), checks.metric(), restarts.metric(),
                objects.metric())
    if lag is not None:
        last = _Family(P + "event_loop_lag_last_seconds", "Last event-loop wake-up delay.", "gauge")
        last.set(lag.last)
        yield last.metric()
        loop = HistogramMetricFamily(P + "event_loop_lag_seconds", "Event-loop wake-up delays.")
        loop.add_metric([], lag.histogram.cumulative(), lag.histogram.total)
        yield loop


# ------------------------------------------------------------------ registry and text


class SnapshotCollector:
    """A prometheus_client collector over one statistics snapshot (see the module docstring)."""

    def __init__(self, stats, *, wall: float, lag: LoopLag | None = None,
                 now: float | None = None) -> None:
        self._stats, self._wall, self._lag, self._now = stats, wall, lag, now

    def collect(self) -> Iterator[Metric]:
        yield from _control_plane(self._stats)
        yield from _data_plane(self._stats, self._wall)
        yield from _ours(self._stats, self._lag, self._now, self._wall)
        yield from _discovery(self._stats)
        yield from _privsep(self._stats.writer)


def _privsep(writer) -> Iterator[Metric]:
    """What the --privsep writer process refused, by reason (every reason, 0 included)."""
    if writer.refused is None:  # the writer runs in this process: nothing to refuse
        return
    refusals = _Family("kglb_trio_privsep_refusals_total", "Frames and desired states the "
                       "writer process refused (the kernel unchanged), by reason.", "counter",
                       ("reason",))
    for reason, n in (dict.fromkeys(REFUSAL_REASONS, 0) | dict(writer.refused)).items():
        refusals.set(n, reason)
    yield refusals.metric()


def _discovery(stats) -> Iterator[Metric]:
    """Per balancer: its source's up, last success age, reals given, failures, reals held."""
    labels = (*SS, "source")
    up = _Family("kglb_trio_discovery_up", "1 if the last attempt of the source succeeded.",
                 "gauge", labels)
    age = _Family("kglb_trio_discovery_last_success_age_seconds",
                  "Seconds since the source last answered (absent: never).", "gauge", labels)
    count = _Family("kglb_trio_discovery_endpoints", "Reals the source gives the balancer.",
                    "gauge", labels)
    failures = _Family("kglb_trio_discovery_failures_total", "Failed attempts of the source.",
                       "counter", labels)
    held = _Family("kglb_trio_discovery_held_endpoints",
                   "Reals kept although the source removed them (maxRemoveRatio).", "gauge", labels)
    names = {b.identity: (b.setup_name or "unknown", b.name or "unknown") for b in stats.balancers}
    for identity, source in stats.discovery.items():
        if identity not in names:
            continue
        here = (*names[identity], source.kind)
        up.set(1.0 if source.up else 0.0, *here)
        if source.last_success_age is not None:
            age.set(source.last_success_age, *here)
        count.set(source.endpoints, *here)
        failures.set(source.failures, *here)
        held.set(source.held, *here)
    for family in (up, age, count, failures, held):
        yield family.metric()


def build_registry(stats, *, wall: float | None = None, lag: LoopLag | None = None,
                   now: float | None = None) -> CollectorRegistry:
    """A registry of our own: the snapshot's families plus the process collector."""
    disable_created_metrics()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(stats, wall=time.time() if wall is None else wall,
                                        lag=lag, now=now))
    ProcessCollector(registry=registry)
    return registry


def render_metrics(stats, *, wall: float | None = None, lag: LoopLag | None = None,
                   now: float | None = None, openmetrics: bool = False) -> bytes:
    """The whole scrape body for one snapshot. CPU-bound: call it in a worker thread.

    ``now``: the trio clock, for the age of the IPVS counters (left out without
    it). ``openmetrics``: OpenMetrics 1.0 text instead of Prometheus 0.0.4.
    """
    registry = build_registry(stats, wall=wall, lag=lag, now=now)
    return expose_openmetrics(registry) if openmetrics else expose(registry)
