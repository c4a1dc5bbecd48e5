"""Restarting crashed actors, and the control plane's set of balancers.

:class:`Supervisor` owns a nursery of named children. A child that raises is
logged and started again after a backoff (0.5 s doubling to 30 s, reset when
it had run for a whole period); past ``intensity`` crashes within ``period``
seconds (over all children, and over every supervisor sharing its
:class:`RestartBudget`) the supervisor gives up with
:class:`RestartIntensityExceeded`, which ends the process with an error. A
crash never touches the kernel: a restarted writer adopts what it finds, and
cancellation leaves the data plane as it is.

:class:`ControlPlane` runs the generator and, per BalancerConfig, a discovery
actor feeding a balancer actor under a Supervisor, and applies a new config: removed
balancers are stopped and leave the desired state at once (with ``drainTimeoutMs``:
once their reals drained, route withdrawn first, see :func:`actors.drain.drain_leaving`;
one that comes back meanwhile is restarted with its memory), changed ones are
restarted with their memory (addresses, health, initial flag, fwmarks), so
unchanged reals keep their health and nothing flaps; unchanged balancers are
not touched.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from functools import partial

import structlog
import trio

from kglb import BalancerState, DataPlaneState, ServiceKey
from kglb.config import BalancerConfig, Config
from kglb.fwmark import FwmarkPool

from kglb.discovery import Endpoints

from .balancer import BalancerMemory, run_balancer
from .discovery import DiscoveryMemory, SourceStatus, run_discovery
from .drain import Connections, drain_at_shutdown, drain_leaving, no_connections
from .generator import COALESCE, Expect, GeneratorMemory, run_generator
from .resolver import Resolve, resolve_host

__all__ = ["ControlPlane", "RestartBudget", "RestartIntensityExceeded", "RestartPolicy",
           "Supervisor", "config_problems", "open_supervisor"]

log = structlog.get_logger()

#: Balancers → generator. A balancer blocks when it is full, which is fine:
#: it keeps folding probe results meanwhile and sends its newest state later.
STATES_BUFFER = 256


class RestartIntensityExceeded(Exception):
    """Actors crashed more than the policy allows: the process must stop."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RestartPolicy:
    intensity: int = 5  # crashes allowed within ``period``; one more gives up
    period: float = 60.0
    backoff: float = 0.5  # first wait before a restart, doubling
    max_backoff: float = 30.0


class RestartBudget:
    """The crashes of one process, counted against one :class:`RestartPolicy`.

    Supervisors sharing a budget share the intensity (crashes of any of their
    children add up) and the restart counts by actor name; each child keeps
    its own backoff.
    """

    def __init__(self, policy: RestartPolicy = RestartPolicy()) -> None:
        self.policy = policy
        self._crashes: deque[float] = deque()
        self._restarts: Counter[str] = Counter()

    def restarts(self) -> dict[str, int]:
        return dict(self._restarts)

    def crashed(self, name: str, now: float, exc: Exception) -> None:
        """Count a crash of ``name``; raises RestartIntensityExceeded past the intensity."""
        log.error("actor crashed", actor=name, exc_info=exc)
        self._restarts[name] += 1
        self._crashes.append(now)
        while self._crashes and self._crashes[0] < now - self.policy.period:
            self._crashes.popleft()
        if len(self._crashes) > self.policy.intensity:
            raise RestartIntensityExceeded(
                f"{len(self._crashes)} crashes within {self.policy.period:g} s "
                f"(last: {name}: {exc!r})") from exc


class _StartedOnce:
    """A task status that forwards only the first ``started()`` (restarts call it again)."""

    def __init__(self, task_status) -> None:
        self._task_status = task_status
        self._done = False

    def started(self, value=None) -> None:
        if not self._done:
            self._done = True
            self._task_status.started(value)


class _Child:
    __slots__ = ("done", "scope")

    def __init__(self) -> None:
        self.scope = trio.CancelScope()
        self.done = trio.Event()


class Supervisor:
    """Named children with restarts. Create it with :func:`open_supervisor`.

    With a ``budget``, its policy applies and crashes count there (shared);
    without, the supervisor has a budget of its own for ``policy``.
    """

    def __init__(self, nursery: trio.Nursery, policy: RestartPolicy,
                 *, budget: RestartBudget | None = None) -> None:
        self._nursery = nursery
        self._budget = budget if budget is not None else RestartBudget(policy)
        self._policy = self._budget.policy
        self._children: dict[str, _Child] = {}

    async def start(self, name: str, fn: Callable[..., Awaitable[None]], **kwargs) -> None:
        """Start ``fn(**kwargs, task_status=...)`` as ``name``; returns once it started.

        If it crashes before starting, it is restarted like any crash, and this
        waits (or raises RestartIntensityExceeded).
        """
        if name in self._children:
            raise RuntimeError(f"{name} is already running")
        child = self._children[name] = _Child()
        try:
            # Named after the actor: trio's task tree and instruments say which one.
            await self._nursery.start(self._run_child, name, child, fn, kwargs,
                                      name=f"actor {name}")
        except BaseException:
            self._children.pop(name, None)
            raise

    async def stop(self, name: str) -> None:
        """Cancel ``name`` and wait until it has finished."""
        child = self._children.pop(name)
        child.scope.cancel()
        await child.done.wait()

    def cancel_all(self) -> None:
        self._nursery.cancel_scope.cancel()

    def restarts(self) -> dict[str, int]:
        """Crashes by actor name, over every supervisor sharing this one's budget."""
        return self._budget.restarts()

    async def _run_child(self, name, child, fn, kwargs, task_status=trio.TASK_STATUS_IGNORED):
        status = _StartedOnce(task_status)
        delay = self._policy.backoff
        try:
            with child.scope:
                while True:
                    began = trio.current_time()
                    try:
                        await fn(**kwargs, task_status=status)
                        return
                    except Exception as exc:
                        now = trio.current_time()
                        if now - began >= self._policy.period:
                            delay = self._policy.backoff
                        self._budget.crashed(name, now, exc)
                    log.info("restarting actor", actor=name, after=delay)
                    await trio.sleep(delay)
                    delay = min(delay * 2, self._policy.max_backoff)
        finally:
            if self._children.get(name) is child:
                del self._children[name]
            child.done.set()


@asynccontextmanager
async def open_supervisor(
    policy: RestartPolicy = RestartPolicy(), *, budget: RestartBudget | None = None
) -> AsyncIterator[Supervisor]:
    """A Supervisor whose children live as long as the ``async with`` block.

    Pass a shared ``budget`` to count its crashes with other supervisors'.
    """
    async with trio.open_nursery() as nursery:
        yield Supervisor(nursery, policy, budget=budget)


def config_problems(config: Config) -> list[str]:
    """Problems that make ``config`` unusable here (the loader already validated the rest)."""
    problems = []
    seen: dict[ServiceKey, int] = {}
    for i, balancer in enumerate(config.balancers):
        if balancer.key in seen:
            problems.append(f"balancers[{i}].lbService: duplicate service {balancer.key.kglb_key} "
                            f"(also balancers[{seen[balancer.key]}])")
        seen.setdefault(balancer.key, i)
    return problems


class ControlPlane:
    """The generator and the balancer actors of one config, under a Supervisor.

    ``send_desired`` is the writer's input: closed by :meth:`run` on a
    graceful stop only (a crash must not start the writer's cleanup).
    ``budget``: crash accounting shared with the writer's supervisor (None: its own).
    """

    def __init__(
        self,
        config: Config,
        *,
        prober,
        send_desired: trio.MemorySendChannel[DataPlaneState],
        fwmarks: FwmarkPool | None = None,
        resolve: Resolve = resolve_host,
        policy: RestartPolicy = RestartPolicy(),
        budget: RestartBudget | None = None,
        coalesce: float = COALESCE,
        connections: Connections = no_connections,
        drain_on_stop: bool = False,
    ) -> None:
        self.config = config
        self.configs: dict[str, BalancerConfig] = {}  # identity -> running config
        self.leaving: dict[str, BalancerConfig] = {}  # removed, draining: identity -> its config
        self.memories: dict[str, BalancerMemory] = {}
        self.discoveries: dict[str, DiscoveryMemory] = {}
        self.generator = GeneratorMemory()
        self.fwmarks = fwmarks if fwmarks is not None else FwmarkPool()
        self.reloads_ok = 0
        self.reloads_failed = 0
        self._prober = prober
        self._send_desired = send_desired
        self._resolve = resolve
        self._budget = budget if budget is not None else RestartBudget(policy)
        self._coalesce = coalesce
        self._connections = connections  # IPVS counters for drains (kglb.lifecycle)
        self._drain_on_stop = drain_on_stop
        self._states_send, self._states_receive = trio.open_memory_channel[
            BalancerState | Expect](STATES_BUFFER)
        self._supervisor: Supervisor | None = None
        self._stopping = trio.Event()
        self._lock = trio.Lock()  # one config change at a time

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Start everything, ``started(self)`` once every balancer published, run until stop()."""
        problems = config_problems(self.config)
        if problems:
            raise ValueError("; ".join(problems))
        async with open_supervisor(budget=self._budget) as supervisor:
            self._supervisor = supervisor
            await supervisor.start("generator", run_generator, receive=self._states_receive,
                                   send=self._send_desired, memory=self.generator,
                                   coalesce=self._coalesce)
            async with self._lock:
                await self._change(self.config)
            task_status.started(self)
            await self._stopping.wait()
            if self._drain_on_stop:
                for identity in list(self.configs):
                    await supervisor.stop(identity)
                for identity in list(self.leaving):
                    await supervisor.stop(_leaving_name(identity))
                await drain_at_shutdown(self.memories, {**self.configs, **self.leaving},
                                        self._states_send, self._connections)
            supervisor.cancel_all()
        # Only on a graceful stop: the writer now withdraws and cleans up.
        self._send_desired.close()

    def stop(self) -> None:
        """Stop probing and balancers, then close the writer's input (graceful shutdown)."""
        self._stopping.set()

    def restarts(self) -> dict[str, int]:
        """Crashes by actor name (the writer's too when it shares the budget)."""
        return self._budget.restarts()

    async def reload(self, config: Config) -> list[str]:
        """Switch to ``config``; its problems (nothing changed) or [] (applied)."""
        problems = config_problems(config)
        if problems or self._stopping.is_set():
            problems = problems or ["shutting down"]
            self.reloads_failed += 1
            log.error("config reload refused; keeping the running config", problems=problems)
            return problems
        async with self._lock:
            await self._change(config)
        self.config = config
        self.reloads_ok += 1
        return []

    def snapshots(self) -> tuple[BalancerState, ...]:
        """Every balancer as of now, in config order."""
        every = {**self.configs, **self.leaving}  # removed ones while they drain, last
        return tuple(self.memories[i].snapshot(c) for i, c in every.items()
                     if i in self.memories)

    def sources(self) -> dict[str, SourceStatus]:
        """Every balancer's discovery source as of now, by identity."""
        now = trio.current_time()
        out = {}
        for identity in self.configs:
            memory = self.discoveries.get(identity)
            status = memory.status(now) if memory is not None else None
            if status is not None:
                out[identity] = status
        return out

    async def _change(self, config: Config) -> None:
        assert self._supervisor is not None
        old = self.configs
        new = {b.identity: b for b in config.balancers}
        removed = [i for i in old if i not in new]
        changed = [i for i in new if i in old and old[i] != new[i]]
        added = [i for i in new if i not in old]  # a leaving one back keeps its memory
        # A removed balancer drains unless a balancer of the new config has its
        # service (two states of one service would make the desired state invalid).
        keys = {b.key for b in config.balancers}
        stays = {i: c for i, c in self.leaving.items() if i not in new and c.key not in keys}
        # Without its route: withdrawn unless another balancer announces that
        # prefix (a leaving one must not take a shared prefix down with it).
        drains = {i: replace(old[i], bgp=None) for i in removed
                  if old[i].lifecycle.drain_timeout_ms and old[i].key not in keys}
        # Announce first: states of removed balancers leave at once, draining ones stay.
        await self._states_send.send(Expect(identities=tuple(new) + tuple(stays) + tuple(drains)))
        for identity in [i for i in self.leaving if i not in stays]:
            await self._supervisor.stop(_leaving_name(identity))
            del self.leaving[identity]
            if identity not in new:
                self._forget(identity)
            else:  # back: discovery lists its reals again (drain_all emptied the memory's)
                self.discoveries[identity] = DiscoveryMemory()
        for identity in removed + changed:
            await self._supervisor.stop(identity)
            await self._supervisor.stop(_discovery_name(identity))
        for identity in removed:
            if identity in drains:
                self.leaving[identity] = drains[identity]
                await self._supervisor.start(
                    _leaving_name(identity), drain_leaving, memory=self.memories[identity],
                    config=drains[identity], send=self._states_send,
                    connections=self._connections, left=partial(self._left, identity))
            else:
                self._forget(identity)
        self.configs = new
        async with trio.open_nursery() as nursery:
            for identity in changed + added:
                self.memories.setdefault(identity, BalancerMemory())
                self.discoveries.setdefault(identity, DiscoveryMemory())
                nursery.start_soon(self._start_balancer, new[identity])
        if removed or changed or added:
            log.info("balancers updated", added=len(added), changed=len(changed),
                     removed=len(removed), unchanged=len(new) - len(added) - len(changed))

    def _forget(self, identity: str) -> None:
        self.discoveries.pop(identity)
        self.memories.pop(identity).release_fwmarks(self.fwmarks)
        log.info("balancer removed", balancer=identity)

    async def _left(self, identity: str) -> None:
        """A removed balancer drained: its state leaves now (called by its drain_leaving)."""
        async with self._lock:
            del self.leaving[identity]
            await self._states_send.send(Expect(identities=tuple(self.configs)
                                                + tuple(self.leaving)))
            self._forget(identity)

    async def _start_balancer(self, config: BalancerConfig) -> None:
        assert self._supervisor is not None
        # Discovery -> balancer. Owned here, not by either actor, so that each
        # may restart alone. Unbounded: a list per source event at most, and
        # the balancer skips to the newest (latest wins).
        endpoints_send, endpoints = trio.open_memory_channel[Endpoints](math.inf)
        await self._supervisor.start(
            _discovery_name(config.identity), run_discovery, config=config,
            memory=self.discoveries[config.identity], send=endpoints_send, resolve=self._resolve)
        await self._supervisor.start(
            config.identity, run_balancer, config=config, prober=self._prober.inbox,
            fwmarks=self.fwmarks, memory=self.memories[config.identity], send=self._states_send,
            endpoints=endpoints, connections=self._connections)


def _discovery_name(identity: str) -> str:
    return f"discovery {identity}"


def _leaving_name(identity: str) -> str:
    return f"leaving {identity}"
