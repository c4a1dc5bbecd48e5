"""kglb-trio as one async function: THE embedding API.

A trio application runs the whole control plane in its own nursery::

    import trio
    from actors.app import run_kglb
    from kglb.config import load

    async def main():
        config = load(open("kglb.json", "rb").read())
        async with trio.open_nursery() as nursery:
            kglb = await nursery.start(run_kglb, config)  # in-memory data plane
            ...
            stats = kglb.statistics()          # an immutable KglbStatistics snapshot
            problems = await kglb.reload(new)  # a Config, or JSON text/bytes
            kglb.shutdown()                    # graceful; run_kglb then returns

``run_kglb(config, *, dataplane=None, speaker=None, check=None, prober=None,
ownership_path=None, keep_on_exit=False, ...)``:

* ``dataplane``: an ``actors.dataplane.DataPlane``; None = a fresh
  ``MemoryDataPlane`` (nothing touches the kernel). ``speaker``: a
  ``RouteSpeaker``; None = ``MemorySpeaker`` (kglb's no-op BGP).
* ``check``: the check function ``async (ProbeTarget) -> CheckResult`` used
  by a default Prober; ``prober``: a Prober of your own (not yet running:
  run_kglb runs it). Tests pass fake checks and run in virtual time.
* ``ownership_path``: the writer's ownership record; None = a temporary file
  for this run only (right for the in-memory data plane, never for IPVS).
* ``keep_on_exit``: leave services, VIPs and routes in place at shutdown.
* ``sync_daemons``: where the IPVS sync daemons of ``config.sync_daemons``
  run (``actors.sync_daemons.KernelDaemons``); None = an in-memory fake.
  ``daemons``: the sync-daemon actor when it runs elsewhere, to show here
  instead of running one (``actors.writer_proxy.RemoteDaemons``: the
  --privsep writer process keeps them, as only it may program the kernel).

``handle.drain_host(timeout)`` withdraws every route, waits their hold time, lets
the established connections end (at most ``timeout`` s), then shuts down
gracefully (``actors/host_drain.py``).

``task_status.started(handle)`` comes once every balancer published its
first state. ``handle.shutdown()`` stops the probes and balancers, then
closes the writer's input: the writer withdraws the routes, waits their hold
time, removes what it owns (unless ``keep_on_exit``) and run_kglb returns.
Cancelling run_kglb instead is a fast exit that leaves the kernel as it is.
Every actor, the writer included, is restarted after a crash (a bug) with
backoff; a restarted writer adopts what it finds and converges to the newest
desired state. If actors crash beyond the restart intensity (counted over all
of them), run_kglb raises (an exception group holding
``RestartIntensityExceeded``) and the kernel is left as it is.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import structlog
import trio

from kglb import BalancerState, DataPlaneState, Operation
from kglb.config import Config

from .dataplane import MemoryDataPlane
from .discovery import SourceStatus
from .drain import DRAIN_COUNTERS_INTERVAL, DrainCounters, reading_of
from .host_drain import HostDrain, RouteGate
from .generator import COALESCE
from .metrics import CheckTally
from .probes import Prober, ProberStatistics
from .resolver import Resolve, resolve_host
from .routes import MemorySpeaker
from .supervisor import ControlPlane, RestartBudget, RestartPolicy, Supervisor, open_supervisor
from .sync_daemons import DaemonStatistics, SyncDaemons
from .writer import Writer, WriterStatistics

__all__ = ["KglbHandle", "KglbStatistics", "run_kglb"]

log = structlog.get_logger()


@dataclass(frozen=True, slots=True, kw_only=True)
class KglbStatistics:
    """One immutable snapshot of the whole control plane.

    ``balancers``: every balancer as of now, in config order (latest check
    results included). ``desired``: the last state sent to the writer (None
    before the first). ``route_decisions``: balancer identity -> route may be
    announced, for balancers with a route; ``state_hashes``: setup -> kglb
    state hash; both from the last generation. ``checks``: (identity, host) ->
    CheckTally. ``restarts``: actor crashes in total, ``restarts_by_actor``
    per actor name. ``invalid_states``: generations refused by validation.
    ``started_at``: Unix time. ``discovery``: identity -> its source's state.
    """

    balancers: tuple[BalancerState, ...]
    desired: DataPlaneState | None
    route_decisions: Mapping[str, bool]
    state_hashes: Mapping[str, int]
    checks: Mapping[tuple[str, str], CheckTally]
    bgp_established: bool
    writer: WriterStatistics
    prober: ProberStatistics
    reloads_ok: int
    reloads_failed: int
    restarts: int
    restarts_by_actor: Mapping[str, int]
    invalid_states: int
    started_at: float
    discovery: Mapping[str, SourceStatus] = field(default_factory=dict)  # identity -> its source
    sync_daemons: DaemonStatistics = DaemonStatistics()
    host_drain: str | None = None  # None, or the host drain's step (actors/host_drain.py)
    pid: int = 0


class KglbHandle:
    """What ``run_kglb`` hands to its starter: statistics, reload, shutdown."""

    def __init__(self, plane: ControlPlane, *, writer: Writer, prober, speaker,
                 daemons: SyncDaemons, drainer: HostDrain) -> None:
        self._plane = plane
        self._writer = writer
        self._prober = prober
        self._speaker = speaker
        self._daemons = daemons
        self._drainer = drainer
        self._started_at = time.time()

    def __repr__(self) -> str:
        return f"<KglbHandle balancers={len(self._plane.configs)} writer={self._writer!r}>"

    def statistics(self) -> KglbStatistics:
        plane = self._plane
        generated = plane.generator.generated
        restarts = plane.restarts()
        checks = {(identity, host): tally
                  for identity, memory in plane.memories.items()
                  for host, tally in memory.checks.items()}
        return KglbStatistics(
            balancers=plane.snapshots(),
            desired=plane.generator.desired,
            route_decisions=generated.announce if generated else MappingProxyType({}),
            state_hashes=generated.hashes if generated else MappingProxyType({}),
            checks=MappingProxyType(checks),
            bgp_established=self._speaker.session_established(),
            writer=self._writer.statistics(),
            prober=self._prober.statistics(),
            reloads_ok=plane.reloads_ok,
            reloads_failed=plane.reloads_failed,
            restarts=sum(restarts.values()),
            restarts_by_actor=MappingProxyType(restarts),
            invalid_states=plane.generator.invalid,
            started_at=self._started_at,
            discovery=MappingProxyType(plane.sources()),
            sync_daemons=self._daemons.statistics(),
            host_drain=None if self._drainer.state == "serving" else self._drainer.state,
            pid=os.getpid(),
        )

    async def reload(self, config: Config | str | bytes) -> list[str]:
        """Switch to ``config`` (or JSON text to load). Returns its problems; [] = applied.

        With problems nothing changes: the running config stays, the failure
        is logged and counted.
        """
        if not isinstance(config, Config):
            from kglb.config import ConfigError, load

            try:
                config = load(config)
            except ConfigError as exc:
                return self.refuse_reload(exc.problems)
        problems = await self._plane.reload(config)
        if not problems:
            self._daemons.set_desired(config.sync_daemons)
        return problems

    def refuse_reload(self, problems: Sequence[str]) -> list[str]:
        """Count and log a reload that failed before a Config existed (unreadable file)."""
        self._plane.reloads_failed += 1
        log.error("config reload refused; keeping the running config", problems=list(problems))
        return list(problems)

    def shutdown(self) -> None:
        """Begin the graceful shutdown (idempotent, never blocks); run_kglb returns when done."""
        self._plane.stop()

    def drain_host(self, timeout: float) -> None:
        """Begin a host drain (idempotent, never blocks); run_kglb returns when done."""
        self._drainer.request(timeout)


def writer_settings(config: Config) -> dict:
    """Writer arguments that follow from the config, for the --privsep writer process
    (an in-process writer's drains have counters read on demand: DrainCounters)."""
    # Drains there end on the counters the writer reads: read them often then.
    drains = any(b.lifecycle.drain_timeout_ms for b in config.balancers)
    return {"counters_interval": DRAIN_COUNTERS_INTERVAL} if drains else {}


async def run_kglb(
    config: Config,
    *,
    dataplane=None,
    speaker=None,
    check: Callable[..., Awaitable] | None = None,
    prober=None,
    ownership_path: str | Path | None = None,
    keep_on_exit: bool = False,
    on_apply: Callable[[Sequence[Operation]], None] | None = None,
    resolve: Resolve = resolve_host,
    policy: RestartPolicy = RestartPolicy(),
    budget: RestartBudget | None = None,
    coalesce: float = COALESCE,
    sync_daemons=None,
    daemons=None,
    writer=None,
    task_status=trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the control plane for ``config``; see the module docstring.

    ``on_apply`` sees every applied batch of operations (``--dry-run`` prints
    them); ``resolve``, ``policy`` and ``coalesce`` are for tests and tuning.
    ``writer``: something with Writer's face (``run``, ``statistics``) to use
    instead of an in-process Writer, e.g. ``actors.writer_proxy.WriterProxy``.
    ``budget``: a RestartBudget shared with actors the caller runs (the
    status server); None = one for ``policy``.
    Raises ValueError for a config the loader should have refused (duplicate
    services), before anything starts.
    """
    dataplane = dataplane if dataplane is not None else MemoryDataPlane()
    speaker = speaker if speaker is not None else MemorySpeaker()
    if prober is None:
        prober = Prober(check=check) if check is not None else Prober()
    with ExitStack() as stack:
        if ownership_path is None:
            ownership_path = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "owned.json"
        counters = None
        if writer is None:
            writer = Writer(dataplane, speaker, ownership_path=ownership_path,
                            keep_on_exit=keep_on_exit, on_apply=on_apply)
            # Drains end on IPVS counters: read every second while a real drains,
            # whatever config (first or reloaded) made it drain.
            counters = DrainCounters(dataplane, also=reading_of(writer.statistics))
        # A writer elsewhere (--privsep) reads the counters itself, at the cadence
        # writer_settings chose from the starting config; our data plane is not the kernel.
        connections = counters.read if counters is not None else reading_of(writer.statistics)
        # One state in flight: the writer drains to the newest anyway, and a
        # generator blocked here just generates again from newer states. The
        # receive end is ours, not the writer's: it must outlive a writer crash.
        send_desired, receive_desired = trio.open_memory_channel[DataPlaneState](1)
        stack.enter_context(receive_desired)
        # The route gate sits between the generator and the writer (a drain
        # withdraws every route there); one state in flight, as above.
        send_generated, receive_generated = trio.open_memory_channel[DataPlaneState](1)
        stack.enter_context(receive_generated)
        gate = RouteGate()
        budget = budget if budget is not None else RestartBudget(policy)
        plane = ControlPlane(config, prober=prober, send_desired=send_generated, resolve=resolve,
                             budget=budget, coalesce=coalesce,
                             connections=connections,
                             drain_on_stop=not keep_on_exit)
        if daemons is None:
            daemons = SyncDaemons.beside(ownership_path, config.sync_daemons, sync_daemons)
        drainer = HostDrain(gate, connections)

        async with trio.open_nursery() as nursery:
            # An actor like the others: restarted after a crash, under the shared
            # budget, which also counts its worker processes' exits.
            probing = Supervisor(nursery, policy, budget=budget)
            await probing.start("prober", prober.run, budget=budget)
            if counters is not None:
                await probing.start("drain counters", counters.run)
            await nursery.start(daemons.run)
            await nursery.start(gate.run, receive_generated, send_desired)
            if hasattr(speaker, "run"):  # a real speaker polls its daemon (BIRD)
                await nursery.start(speaker.run)
            # The writer has a supervisor of its own because it outlives the
            # control plane's (it cleans up after the balancers stopped); the
            # shared budget makes the intensity count every actor's crashes.
            async with open_supervisor(budget=budget) as supervisor:
                await supervisor.start("writer", writer.run, receive_states=receive_desired)
                await nursery.start(plane.run)
                handle = KglbHandle(plane, writer=writer, prober=prober, speaker=speaker,
                                    daemons=daemons, drainer=drainer)
                await nursery.start(drainer.run, handle)
                log.info("control plane started", balancers=len(config.balancers))
                task_status.started(handle)
            # Here the writer returned: its input closed and it shut down gracefully.
            if not keep_on_exit:
                await daemons.shutdown()
            log.info("control plane stopped")
            nursery.cancel_scope.cancel()  # the prober (and speaker poll): nothing needs them now
