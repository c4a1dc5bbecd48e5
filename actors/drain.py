"""Draining reals: the connection counts that end a drain, and the drain at shutdown.

A balancer learns a real's ActiveConn from IPVS counters: the newest of the
writer's (``WriterStatistics.counters``, read every ``counters_interval``
seconds for metrics) and those :class:`DrainCounters` reads every
:data:`DRAIN_COUNTERS_INTERVAL` seconds while somebody looks, that is while
a real drains. On demand rather than a faster writer cadence decided at
start: a reload may add ``drainTimeoutMs`` to a running config, and a config
without drains costs no extra dumps. A reading is an immutable snapshot
that a stale copy cannot make wrong (a drain ends only on a reading taken
after it began, see :func:`kglb.lifecycle.drain_over`).

At a graceful shutdown without ``--keep-on-exit`` the control plane stops its
balancers, moves every real of a balancer with ``drainTimeoutMs`` to draining
and publishes, then waits until they are drained (or their timeouts passed)
before the writer removes everything. A balancer removed from the config
drains the same way (:func:`drain_leaving`): its route is withdrawn (no real
is alive), its reals stay at weight 0 until drained, then it leaves.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace

import structlog
import trio

from kglb import BalancerState, RealKey, ServiceKey
from kglb.config import BalancerConfig
from kglb.lifecycle import drain_over

__all__ = ["DRAIN_COUNTERS_INTERVAL", "DRAIN_POLL", "Connections", "DrainCounters", "Reading",
           "drain_at_shutdown", "drain_leaving", "end_drains", "no_connections", "reading_of"]

log = structlog.get_logger()

#: How often a balancer with draining reals looks at the newest reading.
DRAIN_POLL = 0.5
#: How often the writer reads IPVS counters when some balancer drains (else its 10 s):
#: a drained real is deleted within about this much after its last connection closed.
DRAIN_COUNTERS_INTERVAL = 1.0

#: (trio time of the reading or None, IPVS counters by service) — duck-typed
#: ``actors.dataplane.ServiceCounters`` with ``reals`` of ``key``/``active_conns``.
Reading = tuple[float | None, Mapping[ServiceKey, object]]
Connections = Callable[[], Reading]


def no_connections() -> Reading:
    """No reading: drains end at their timeout."""
    return None, {}


def reading_of(statistics: Callable[[], object]) -> Connections:
    """A Connections view of a writer's ``statistics()`` (its counters and their time)."""

    def read() -> Reading:
        stats = statistics()
        return stats.counters_at, stats.counters

    return read


class DrainCounters:
    """IPVS counters read every ``interval`` seconds while drains look at them.

    :meth:`read` (a :data:`Connections`) asks for a reading and returns the
    newest one, this reader's or ``also``'s (the writer's); :meth:`run` is
    the actor that reads. Nobody calls ``read`` unless a real drains, so
    without drains nothing is read here.
    """

    def __init__(self, dataplane, *, also: Connections = no_connections,
                 interval: float = DRAIN_COUNTERS_INTERVAL) -> None:
        self._dataplane = dataplane
        self._also = also
        self._interval = interval
        self._wanted = trio.Event()
        self._reading: Reading = no_connections()

    def read(self) -> Reading:
        self._wanted.set()
        mine, other = self._reading, self._also()
        if other[0] is not None and (mine[0] is None or other[0] > mine[0]):
            return other
        return mine

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await self._wanted.wait()
            self._wanted = trio.Event()
            try:
                counters = await self._dataplane.counters()
            except (OSError, trio.ClosedResourceError) as e:  # drains end at their timeout
                log.warning("cannot read IPVS counters for drains", error=str(e))
            else:
                self._reading = (trio.current_time(), counters)
            await trio.sleep(self._interval)


def end_drains(memory, config: BalancerConfig, now: float, reading: Reading) -> list[str]:
    """Drop ``memory``'s drained reals; record the connections left of the others.

    Returns the hosts whose drain ended.
    """
    read_at, counters = reading
    service = counters.get(config.key)
    active: dict[RealKey, int] = {} if service is None else {
        real.key: real.active_conns for real in service.reals}
    ended = []
    timeout = config.lifecycle.drain_timeout_ms
    for key, up in list(memory.draining.items()):
        count = None if read_at is None else active.get(RealKey(address=key[1], port=key[2]), 0)
        if drain_over(up.drain, now=now, timeout_ms=timeout, active=count, read_at=read_at):
            del memory.draining[key]
            ended.append(key[0])
            log.info("real drained: deleted", real=key[0], address=key[1],
                     connections=count, timed_out=now >= up.drain.deadline(timeout))
        elif count is not None and read_at >= up.drain.since and count != up.drain.connections:
            memory.draining[key] = replace(up, drain=replace(up.drain, connections=count))
    return ended


async def drain_at_shutdown(
    memories: Mapping[str, object], configs: Mapping[str, BalancerConfig],
    send: trio.MemorySendChannel[BalancerState], connections: Connections,
) -> None:
    """Drain every real of every balancer with a drain timeout, then return.

    The balancer actors must be stopped: this owns their memories now.
    """
    from .balancer import publish  # the balancer module imports this one

    draining = {i: c for i, c in configs.items() if c.lifecycle.drain_timeout_ms and i in memories}
    if not draining:
        return
    now = trio.current_time()
    for identity, config in draining.items():
        memories[identity].drain_all(config, now)
        await publish(memories[identity], config, send)
    log.info("draining every real before shutdown",
             reals=sum(len(memories[i].draining) for i in draining))
    await _until_drained(memories, draining, send, connections)


async def drain_leaving(
    memory, config: BalancerConfig, send: trio.MemorySendChannel[BalancerState],
    connections: Connections, *, left: Callable[[], Awaitable[None]],
    task_status=trio.TASK_STATUS_IGNORED,
) -> None:
    """Drain a balancer removed from the config, then ``await left()``.

    Its actor must be stopped: this owns its memory. The first publish gives
    every real weight 0 and, no real being alive, withdraws its route.
    """
    from .balancer import publish

    task_status.started()
    memory.drain_all(config, trio.current_time())  # a restart finds nothing more to move
    log.info("balancer removed: draining its reals", balancer=config.identity,
                 reals=len(memory.draining))
    await publish(memory, config, send)
    await _until_drained({config.identity: memory}, {config.identity: config}, send, connections)
    await left()


async def _until_drained(memories, configs, send, connections: Connections) -> None:
    from .balancer import publish

    while any(memories[i].draining for i in configs):
        await trio.sleep(DRAIN_POLL)
        now = trio.current_time()
        for identity, config in configs.items():
            if end_drains(memories[identity], config, now, connections()):
                await publish(memories[identity], config, send)
