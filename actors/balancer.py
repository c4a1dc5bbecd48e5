"""The balancer actor: one per BalancerConfig (kglb.md §2.2, §3.4).

It takes its reals from its discovery actor (``actors/discovery``: latest-wins
:class:`kglb.discovery.Endpoints`, names already resolved), asks the Prober to
watch one ProbeTarget per real, folds each ProbeResult into that real's Health with
:func:`kglb.health.observe`, and sends a BalancerState to the generator only
when it changed in what the data plane or the routes see.

Everything that must survive a restart of the actor (a crash, or a reload
that changed this balancer) lives in a :class:`BalancerMemory` owned by the
supervisor: the last endpoints, the health of every real, the ``initial`` flag
and the fwmarks held. A restarted balancer therefore
publishes the same weights it had, and no real flaps.

The first state is sent once discovery gave a list (its source had one
attempt, every name one resolution), so a restart never publishes a service
without the reals that are still being discovered.

The lifecycle rules (:mod:`kglb.lifecycle`) change weights with time too: a
timer task publishes again at the next slow start step, flap release or drain
deadline, and polls ``connections`` (the newest IPVS counters reading)
while a real drains. A real that leaves the balancer with ``drainTimeoutMs``
set moves to ``memory.draining`` and stays in the published state at weight 0
until it is drained; one that comes back meanwhile is restored with its health.
"""

from __future__ import annotations

import math
from dataclasses import replace

import structlog
import trio

from kglb import BalancerState, ProbeResult, ProbeTarget, observe
from kglb.balancer import Upstream, balancer_state, state_changed
from kglb.config import BalancerConfig
from kglb.discovery import Endpoints
from kglb.fwmark import FwmarkExhausted, FwmarkPool
from kglb.lifecycle import Drain, flapped, next_ramp_step, release_at, suppressed

from .drain import DRAIN_POLL, Connections, end_drains, no_connections
from .metrics import CheckTally
from .probes import Unwatch, Watch

__all__ = ["BalancerMemory", "run_balancer"]

log = structlog.get_logger()


class BalancerMemory:
    """A balancer's knowledge that outlives one run of its actor. Owned by one task at a time."""

    __slots__ = ("checks", "draining", "endpoints", "fwmarks", "initial", "published",
                 "records", "serving_since")

    def __init__(self) -> None:
        self.endpoints: Endpoints | None = None  # discovery's last list
        self.records: dict[tuple[str, str, int], Upstream] = {}  # (host, address, port)
        self.initial = True
        self.fwmarks: dict[str, int] = {}  # address -> mark this balancer holds
        self.published: BalancerState | None = None
        self.checks: dict[str, CheckTally] = {}  # host -> cumulative check counts
        # (host, address, port) -> an upstream that left and drains (Upstream.drain set)
        self.draining: dict[tuple[str, str, int], Upstream] = {}
        # Since when the balancer serves (not initial, not all-down); None: it does not.
        self.serving_since: float | None = None

    def upstreams(self, config: BalancerConfig) -> list[Upstream]:
        """The discovered reals, in discovery's order, with their address and health;
        then the draining ones."""
        out = []
        for e in self.endpoints or ():
            record = None if e.address is None else self.records.get((e.host, e.address, e.port))
            out.append(record or Upstream(host=e.host, address=e.address, port=e.port,
                                          weight=e.weight))
        out.extend(self.draining.values())
        return out

    def snapshot(self, config: BalancerConfig, *, statuses: bool = True,
                 now: float | None = None) -> BalancerState:
        """The balancer at ``now`` (default: the current trio time); with ``statuses``,
        every real's latest check (for status)."""
        return balancer_state(config, self.upstreams(config), initial=self.initial,
                              fwmarks=self.fwmarks, statuses=statuses, previous=self.published,
                              now=trio.current_time() if now is None else now)

    def leave(self, config: BalancerConfig, key: tuple[str, str, int], now: float) -> None:
        """Record ``key`` is no longer wanted: it drains if it is in the data plane, else goes."""
        record = self.records.pop(key)
        if config.lifecycle.drain_timeout_ms and self._published_real(key[1], key[2]):
            self.draining[key] = replace(record, drain=Drain(since=now, port=key[2]))
            log.info("real drains", real=key[0], address=key[1],
                     timeout_ms=config.lifecycle.drain_timeout_ms)

    def drain_all(self, config: BalancerConfig, now: float) -> None:
        """Every real leaves (a graceful shutdown that drains); the memory is spent after."""
        for key in list(self.records):
            self.leave(config, key, now)
        self.endpoints = Endpoints()  # no real is wanted any more, not even unchecked

    def next_change(self, config: BalancerConfig, now: float) -> float | None:
        """The next time a weight may change without a new check result (None: never)."""
        life = config.lifecycle
        times = []
        for up in self.records.values():
            times.append(next_ramp_step(started=up.ramp_from, now=now,
                                        window_ms=life.slow_start_ms))
            if life.flap_damping is not None:
                times.append(release_at(up.flaps, life.flap_damping))
        if self.draining:
            times.append(now + DRAIN_POLL)
        due = [t for t in times if t is not None]
        return min(due) if due else None

    def _published_real(self, address: str, port: int) -> bool:
        if self.published is None or not self.published.services:
            return False
        return any(r.key.address == address and r.key.port == port
                   for r in self.published.services[0].reals)

    def release_fwmarks(self, pool: FwmarkPool) -> None:
        """Give back every mark held (the balancer is gone for good)."""
        for address in self.fwmarks:
            pool.release(address)
        self.fwmarks.clear()


async def run_balancer(
    config: BalancerConfig,
    *,
    prober,
    fwmarks: FwmarkPool,
    memory: BalancerMemory,
    send: trio.MemorySendChannel[BalancerState],
    endpoints: trio.MemoryReceiveChannel[Endpoints],
    connections: Connections = no_connections,
    task_status=trio.TASK_STATUS_IGNORED,
) -> None:
    """Run one balancer until cancelled. ``started()`` comes after the first publication.

    ``prober`` is the Prober's inbox: this sends it ``Watch`` and ``Unwatch``;
    ``send`` is the generator's input and ``endpoints`` discovery's output
    (neither is closed here: the supervisor owns both, and a restart reuses them).
    ``connections()`` is the newest IPVS counters reading (ends drains early).
    """
    run = _Run(config, prober=prober, fwmarks=fwmarks, memory=memory, send=send,
               connections=connections)
    with structlog.contextvars.bound_contextvars(balancer=config.identity):
        try:
            async with run.results_send, run.results, trio.open_nursery() as nursery:
                if memory.endpoints is None:
                    memory.endpoints = await endpoints.receive()
                run.take_newest(endpoints)
                run.sync()
                await run.publish()
                task_status.started()
                nursery.start_soon(run.consume_endpoints, endpoints)
                nursery.start_soon(run.lifecycle_loop)
                await run.consume()
        finally:
            run.stop_watches()


class _Run:
    """The state of one run of the actor; everything lasting is in ``memory``."""

    def __init__(self, config, *, prober, fwmarks, memory, send, connections) -> None:
        self.config: BalancerConfig = config
        self.prober = prober
        self.pool: FwmarkPool = fwmarks
        self.memory: BalancerMemory = memory
        self.send = send
        self.connections = connections
        self.publishing = trio.Lock()  # two tasks publish: states leave in the order built
        self.changed = trio.Event()  # set when a state went out: the timer recomputes
        self.limiter = trio.CapacityLimiter(config.checker.concurrency)
        # Unbounded: the prober must never block on one slow balancer; at most
        # one result per watched target per interval can be waiting.
        self.results_send, self.results = trio.open_memory_channel[ProbeResult](math.inf)
        self.watches: set[ProbeTarget] = set()  # sent to the Prober as Watch
        self.hosts_of: dict[ProbeTarget, tuple[str, ...]] = {}

    # ------------------------------------------------------------ discovery

    def take_newest(self, endpoints: trio.MemoryReceiveChannel[Endpoints]) -> bool:
        """Skip to discovery's newest list (latest wins). True if there was one."""
        taken = False
        while True:
            try:
                self.memory.endpoints = endpoints.receive_nowait()
            except trio.WouldBlock:
                return taken
            taken = True

    async def consume_endpoints(self, endpoints: trio.MemoryReceiveChannel[Endpoints]) -> None:
        async for newest in endpoints:
            self.memory.endpoints = newest
            self.take_newest(endpoints)
            self.sync()
            await self.publish()

    # ------------------------------------------------------------ reals and probes

    def sync(self) -> None:
        """Make records, fwmarks and watches match discovery's endpoints."""
        config, memory = self.config, self.memory
        endpoints = {(e.host, e.address, e.port): e
                     for e in memory.endpoints or () if e.address is not None}
        listed = {e.host for e in memory.endpoints or ()}
        for host in [h for h in memory.checks if h not in listed]:
            del memory.checks[host]
        current = endpoints.keys()
        now = trio.current_time()
        for key in list(memory.records):
            if key not in current:
                memory.leave(config, key, now)
        late = memory.published is not None and not memory.initial
        for key in current:
            if key in memory.draining:  # back while draining: restored as it was
                memory.records[key] = replace(memory.draining.pop(key), drain=None)
                log.info("draining real is back", real=key[0])
            e = endpoints[key]
            record = memory.records.get(key)
            if record is None:
                memory.records[key] = Upstream(host=e.host, address=e.address, port=e.port,
                                               weight=e.weight, late=late)
            elif record.weight != e.weight:
                memory.records[key] = replace(record, weight=e.weight)
        live = {(a, p) for _, a, p in current}
        for key in [k for k in memory.draining if (k[1], k[2]) in live]:
            del memory.draining[key]  # another host wants the same real: it serves on

        wanted = {a for _, a, _ in current} if config.enable_fwmarks else set()
        for address in [a for a in memory.fwmarks if a not in wanted]:
            self.pool.release(address)
            del memory.fwmarks[address]
        for address in sorted(wanted - memory.fwmarks.keys()):
            try:
                memory.fwmarks[address] = self.pool.allocate(address)
            except FwmarkExhausted as exc:
                log.error("no fwmark for real; it is checked directly", real=address,
                          reason=str(exc))

        hosts_of: dict[ProbeTarget, list[str]] = {}
        for host, address, port in sorted(current):
            hosts_of.setdefault(self.target(address, port), []).append(host)
        self.hosts_of = {t: tuple(h) for t, h in hosts_of.items()}
        for target in [t for t in self.watches if t not in self.hosts_of]:
            self.watches.remove(target)
            self.prober.send_nowait(Unwatch(target=target, send=self.results_send))
        interval = config.checker.interval_ms / 1000
        # After max(rise, fall) equal results a real's health is settled: the
        # prober may fold the ones that follow (kglb.fold).
        quiet_after = max(config.checker.rise, config.checker.fall)
        for target in self.hosts_of:
            if target not in self.watches:
                self.watches.add(target)
                self.prober.send_nowait(Watch(
                    target=target, interval=interval, limiter=self.limiter,
                    send=self.results_send, quiet_after=quiet_after))

    def target(self, address: str, port: int) -> ProbeTarget:
        mark = self.memory.fwmarks.get(address, 0)
        return ProbeTarget(address=address, port=port, check=self.config.checker.check,
                           fwmark=mark, via=self.config.key if mark else None)

    def stop_watches(self) -> None:
        for target in self.watches:
            self.prober.send_nowait(Unwatch(target=target, send=self.results_send))
        self.watches.clear()

    # ------------------------------------------------------------ health

    async def consume(self) -> None:
        async for result in self.results:
            decided = self.observe(result)
            # Take every result already waiting before publishing once: a
            # round in which many reals flip gives one state, not many.
            while True:
                try:
                    result = self.results.receive_nowait()
                except trio.WouldBlock:
                    break
                decided = self.observe(result) or decided
            if decided:
                await self.publish()

    def observe(self, result: ProbeResult) -> bool:
        """Fold one result in. True if a real's weight decision may have changed."""
        checker, life = self.config.checker, self.config.lifecycle
        changed = False
        now = trio.current_time()
        for host in self.hosts_of.get(result.target, ()):
            key = (host, result.target.address, result.target.port)
            old = self.memory.records.get(key)
            if old is None:
                continue
            health = observe(old.health, result.result.passed, rise=checker.rise,
                             fall=checker.fall, repeats=result.checks)
            flipped = health.up != old.health.up
            tally = self.memory.checks.get(host) or CheckTally()
            self.memory.checks[host] = tally.record(result, transitioned=flipped)
            flaps, ramp_from = old.flaps, old.ramp_from
            if flipped:
                log.info("real is up" if health.up else "real is down", real=host,
                         reason=result.result.reason)
                if not health.up:
                    ramp_from = None
                    if life.flap_damping is not None:
                        flaps = self.flapped(host, old.flaps, now)
                elif life.slow_start_ms and (old.health.settled or old.late) and self.serving(key):
                    ramp_from = now
            self.memory.records[key] = replace(
                old, health=health, last=result.result, flaps=flaps, ramp_from=ramp_from,
                since=result.at if flipped or old.since is None else old.since)
            changed = (changed or flipped
                       or health.decided(checker.fall) != old.health.decided(checker.fall))
        return changed

    def flapped(self, host: str, flaps, now: float):
        damping = self.config.lifecycle.flap_damping
        was = suppressed(flaps, now=now, damping=damping)
        flaps = flapped(flaps, now=now, damping=damping)
        if not was and flaps.suppressed:  # logged once per suppression
            log.warning("real is flapping: suppressed", real=host, penalty=round(flaps.penalty, 2),
                        until=release_at(flaps, damping))
        return flaps

    def serving(self, key) -> bool:
        """True if a real other than ``key`` serves now and the balancer has served for
        a whole slow start window (slow start ramps only then): the reals of a balancer
        that starts or comes back from all-down come in together, at full weight."""
        life, now = self.config.lifecycle, trio.current_time()
        damping, since = life.flap_damping, self.memory.serving_since
        if since is None or now - since < life.slow_start_ms / 1000:
            return False
        return any(
            other != key and up.health.up and not suppressed(up.flaps, now=now, damping=damping)
            for other, up in self.memory.records.items())

    # ------------------------------------------------------------ lifecycle timers

    async def lifecycle_loop(self) -> None:
        """Publish again when a weight changes with time; end drains."""
        while True:
            self.changed = trio.Event()
            due = self.memory.next_change(self.config, trio.current_time())
            with trio.move_on_at(math.inf if due is None else due):
                await self.changed.wait()
            now = trio.current_time()
            self.release(now)
            if self.memory.draining:  # asking for counters makes them read every second
                end_drains(self.memory, self.config, now, self.connections())
            async with self.publishing:
                await publish(self.memory, self.config, self.send)

    def release(self, now: float) -> None:
        """Clear the suppressed flag of reals whose penalty decayed (logged once)."""
        damping = self.config.lifecycle.flap_damping
        for key, up in list(self.memory.records.items()):
            if up.flaps.suppressed and not suppressed(up.flaps, now=now, damping=damping):
                self.memory.records[key] = replace(up, flaps=replace(
                    up.flaps, penalty=up.flaps.penalty_at(now, damping), at=now, suppressed=False))
                log.info("real is no longer suppressed", real=key[0])

    async def publish(self) -> None:
        async with self.publishing:
            if await publish(self.memory, self.config, self.send):
                self.changed.set()


async def publish(memory: BalancerMemory, config: BalancerConfig,
                  send: trio.MemorySendChannel[BalancerState]) -> bool:
    """Send ``memory``'s state now if it changed in what the data plane or routes see.

    True if it was sent."""
    now = trio.current_time()
    state = memory.snapshot(config, statuses=False, now=now)  # status reads snapshots
    memory.initial = state.initial
    if state.initial or state.failsafe or state.alive_ratio == 0:
        memory.serving_since = None
    elif memory.serving_since is None:
        memory.serving_since = now
    if not state_changed(memory.published, state):
        return False
    if state.failsafe and not (memory.published and memory.published.failsafe):
        log.error("failsafe mode is enabled: every real is down, all are given weight_up")
    memory.published = state
    await send.send(state)
    return True
