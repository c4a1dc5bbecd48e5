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

from .metrics import CheckTally

__all__ = ["BalancerMemory", "run_balancer"]

log = structlog.get_logger()


class BalancerMemory:
    """A balancer's knowledge that outlives one run of its actor. Owned by one task at a time."""

    __slots__ = ("checks", "endpoints", "fwmarks", "initial", "published", "records")

    def __init__(self) -> None:
        self.endpoints: Endpoints | None = None  # discovery's last list
        self.records: dict[tuple[str, str, int], Upstream] = {}  # (host, address, port)
        self.initial = True
        self.fwmarks: dict[str, int] = {}  # address -> mark this balancer holds
        self.published: BalancerState | None = None
        self.checks: dict[str, CheckTally] = {}  # host -> cumulative check counts

    def upstreams(self, config: BalancerConfig) -> list[Upstream]:
        """The discovered reals, in discovery's order, with their address and health."""
        out = []
        for e in self.endpoints or ():
            record = None if e.address is None else self.records.get((e.host, e.address, e.port))
            out.append(record or Upstream(host=e.host, address=e.address, port=e.port,
                                          weight=e.weight))
        return out

    def snapshot(self, config: BalancerConfig, *, statuses: bool = True) -> BalancerState:
        """The balancer as of now; with ``statuses``, every real's latest check (for status)."""
        return balancer_state(config, self.upstreams(config), initial=self.initial,
                              fwmarks=self.fwmarks, statuses=statuses, previous=self.published)

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
    task_status=trio.TASK_STATUS_IGNORED,
) -> None:
    """Run one balancer until cancelled. ``started()`` comes after the first publication.

    ``prober`` offers ``watch(target, *, interval, limiter, send) -> Watch``;
    ``send`` is the generator's input and ``endpoints`` discovery's output
    (neither is closed here: the supervisor owns both, and a restart reuses them).
    """
    run = _Run(config, prober=prober, fwmarks=fwmarks, memory=memory, send=send)
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
                await run.consume()
        finally:
            run.stop_watches()


class _Run:
    """The state of one run of the actor; everything lasting is in ``memory``."""

    def __init__(self, config, *, prober, fwmarks, memory, send) -> None:
        self.config: BalancerConfig = config
        self.prober = prober
        self.pool: FwmarkPool = fwmarks
        self.memory: BalancerMemory = memory
        self.send = send
        self.limiter = trio.CapacityLimiter(config.checker.concurrency)
        # Unbounded: the prober must never block on one slow balancer; at most
        # one result per watched target per interval can be waiting.
        self.results_send, self.results = trio.open_memory_channel[ProbeResult](math.inf)
        self.watches: dict[ProbeTarget, object] = {}
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
        endpoints = [e for e in memory.endpoints or () if e.address is not None]
        listed = {e.host for e in memory.endpoints or ()}
        for host in [h for h in memory.checks if h not in listed]:
            del memory.checks[host]
        current = {(e.host, e.address, e.port) for e in endpoints}
        for key in list(memory.records):
            if key not in current:
                del memory.records[key]
        for e in endpoints:
            key = (e.host, e.address, e.port)
            record = memory.records.get(key)
            if record is None:
                memory.records[key] = Upstream(host=e.host, address=e.address, port=e.port,
                                               weight=e.weight)
            elif record.weight != e.weight:
                memory.records[key] = replace(record, weight=e.weight)

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
            self.watches.pop(target).cancel()
        interval = config.checker.interval_ms / 1000
        # After max(rise, fall) equal results a real's health is settled: the
        # prober may fold the ones that follow (kglb.fold).
        quiet_after = max(config.checker.rise, config.checker.fall)
        for target in self.hosts_of:
            if target not in self.watches:
                self.watches[target] = self.prober.watch(
                    target, interval=interval, limiter=self.limiter, send=self.results_send,
                    quiet_after=quiet_after)

    def target(self, address: str, port: int) -> ProbeTarget:
        mark = self.memory.fwmarks.get(address, 0)
        return ProbeTarget(address=address, port=port, check=self.config.checker.check,
                           fwmark=mark, via=self.config.key if mark else None)

    def stop_watches(self) -> None:
        for watch in self.watches.values():
            watch.cancel()
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
        checker = self.config.checker
        changed = False
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
            if flipped:
                log.info("real is up" if health.up else "real is down", real=host,
                         reason=result.result.reason)
            self.memory.records[key] = replace(
                old, health=health, last=result.result,
                since=result.at if flipped or old.since is None else old.since)
            changed = (changed or flipped
                       or health.decided(checker.fall) != old.health.decided(checker.fall))
        return changed

    async def publish(self) -> None:
        state = self.memory.snapshot(self.config, statuses=False)  # status reads snapshots
        self.memory.initial = state.initial
        if not state_changed(self.memory.published, state):
            return
        if state.failsafe and not (self.memory.published and self.memory.published.failsafe):
            log.error("failsafe mode is enabled: every real is down, all are given weight_up")
        self.memory.published = state
        await self.send.send(state)
