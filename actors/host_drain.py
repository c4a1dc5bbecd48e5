"""Host drain: leave the ECMP group without resetting a connection, then stop.

Theory of operation. A drain (SIGUSR2, or ``kglb-trio drain``) runs once:

1. The route gate, which sits between the state generator and the writer,
   starts passing every desired state without its routes: the writer
   withdraws every route through its usual withdraw stage, and a reload or a
   health change during the drain can never announce one again.
2. Once the writer applied a state without routes, and at least the largest
   ``holdTimeMs`` of the withdrawn routes after the withdrawal began (as the
   writer's own shutdown waits), the routers have moved the flows to the
   other balancers.
3. The IPVS services stay as they are and keep forwarding the established
   connections that still reach this host, until none is active, or no packet
   reached our services for ``IDLE`` seconds (the flows went elsewhere: with
   ECMP they move to the hosts that remain, which carry them on through ``mh``
   with ``sloppy_tcp`` or the sync daemon's entries), or ``timeout``.
4. Then the ordinary graceful shutdown: services and VIPs removed (unless
   ``--keep-on-exit``), sync daemons stopped, and the process exits 0.
"""

from __future__ import annotations

from dataclasses import replace

import structlog
import trio

from kglb import DataPlaneState

from .drain import Connections

__all__ = ["IDLE", "HostDrain", "RouteGate"]

log = structlog.get_logger()

#: Seconds without a packet to our services after which the drain ends early.
IDLE = 10.0
#: Seconds between two reads of the IPVS counters while draining.
POLL = 1.0


class RouteGate:
    """Passes desired states from the generator to the writer; once
    ``withdraw_all()`` was called, without their routes (latest wins)."""

    def __init__(self) -> None:
        self.withdrawing = False
        self.latest: DataPlaneState | None = None  # the last state received, routes included
        self._waiting: trio.CancelScope | None = None

    def withdraw_all(self) -> None:
        """Withdraw every route from now on (idempotent, never blocks)."""
        self.withdrawing = True
        if self._waiting is not None:
            self._waiting.cancel()  # resend the latest state, without its routes

    def _gated(self, state: DataPlaneState) -> DataPlaneState:
        return replace(state, routes=()) if self.withdrawing and state.routes else state

    async def run(self, receive: trio.MemoryReceiveChannel[DataPlaneState],
                  send: trio.MemorySendChannel[DataPlaneState], *,
                  task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Forward until ``receive`` closes, then close ``send`` (the writer's
        graceful shutdown begins)."""
        async with send:
            task_status.started()
            sent: DataPlaneState | None = None
            while True:
                if self.latest is not None and self._gated(self.latest) != sent:
                    sent = self._gated(self.latest)
                    await send.send(sent)
                    continue  # withdraw_all() may have come while sending
                with trio.CancelScope() as self._waiting:
                    try:
                        self.latest = await receive.receive()
                    except trio.EndOfChannel:
                        return
                self._waiting = None


class HostDrain:
    """Runs the drain of the module docstring once it is requested.

    ``handle`` is the ``KglbHandle`` (statistics, shutdown), ``connections``
    gives the newest IPVS counters with their time (``actors.drain``: read here
    in one process, the writer's own readings under ``--privsep``), ``gate``
    withdraws the routes.
    """

    def __init__(self, gate: RouteGate, connections: Connections) -> None:
        self._gate = gate
        self._connections = connections
        self._requested = trio.Event()
        self._timeout = 0.0
        self.state = "serving"  # then "withdrawing", "waiting hold", "draining", "stopping"

    def request(self, timeout: float) -> None:
        """Begin draining (idempotent: a second request changes nothing)."""
        if not self._requested.is_set():
            self._timeout = timeout
            self._requested.set()

    async def run(self, handle, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await self._requested.wait()
        routes = self._gate.latest.routes if self._gate.latest is not None else ()
        hold = max((r.hold_time_ms for r in routes), default=0) / 1000
        log.info("draining the host: withdrawing every route", routes=len(routes),
                 hold_seconds=hold, timeout=self._timeout)
        with trio.move_on_after(self._timeout) as scope:
            self.state = "withdrawing"
            withdrawn_at = trio.current_time()
            self._gate.withdraw_all()
            while self._announced(handle):
                await trio.sleep(0.1)
            # The writer withdraws first thing, so the hold counts from here
            # (today's writer applies the state only after its own hold sleep).
            self.state = "waiting hold"
            await trio.sleep_until(withdrawn_at + hold)
            self.state = "draining"
            await self._wait_connections(handle)
        if scope.cancelled_caught:
            log.warning("drain timeout: stopping with connections still active", timeout=self._timeout)
        self.state = "stopping"
        log.info("drained: stopping")
        handle.shutdown()

    @staticmethod
    def _announced(handle) -> bool:
        applied = handle.statistics().writer.applied
        return applied is None or bool(applied.routes)

    async def _wait_connections(self, handle) -> None:
        # Idleness is measured between readings, not against our clock: under
        # --privsep the writer's readings come every few seconds, and a reading
        # that is merely old must not look like a flow that stopped.
        # Only readings taken from now on count: an older one predates the
        # withdrawal and may not show the flows that are still arriving.
        began = trio.current_time()
        last_read = idle_since = last_packets = None
        while True:
            read_at, counters = self._connections()
            if read_at is not None and read_at >= began and read_at != last_read:
                last_read = read_at
                ours = {s.key for s in (handle.statistics().desired or DataPlaneState()).services}
                active = sum(r.active_conns for key, c in counters.items() if key in ours
                             for r in c.reals)
                packets = sum(c.packets_in for key, c in counters.items() if key in ours)
                if packets != last_packets:
                    last_packets, idle_since = packets, read_at
                if active == 0:
                    log.info("drain: no active connection left")
                    return
                if read_at - idle_since >= IDLE:
                    log.info("drain: no packet for a while, the flows went elsewhere",
                             active=active, idle_seconds=IDLE)
                    return
            await trio.sleep(POLL)
