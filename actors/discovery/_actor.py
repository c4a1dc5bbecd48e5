"""The discovery actor: one per balancer, sending latest-wins Endpoints to it.

Its source (a module of this package) runs as a task of the actor and sends
each answer, or failure, over a channel; the loop folds it into the source's
state with :func:`kglb.discovery.observe_answer` / ``observe_failure`` (keep
the last good list, hold back a too-large removal), resolves host names
(once per name, with the balancer's ``resolve_family``; a name that fails keeps
its last address, decisions.md row 17) and sends the complete list to the
balancer when it changed.

What must survive a restart of the actor lives in a :class:`DiscoveryMemory`
owned by the supervisor: the source's state, the last address of every name,
and what was sent last. A restarted actor therefore sends nothing new until
its source says something new.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import partial

import structlog
import trio

from kglb import Family
from kglb.config import BalancerConfig, DnsSource, EtcdSource, FileSource, Source, StaticSource
from kglb.discovery import (
    Endpoint,
    Endpoints,
    SourceState,
    describe,
    observe_answer,
    observe_failure,
)

from ..resolver import Resolve, ResolveError, resolve_host
from . import dns, etcd, file, static
from ._base import Answer, Failure

__all__ = ["DiscoveryMemory", "SourceStatus", "run_discovery"]

log = structlog.get_logger()

#: How often names are resolved again, and how soon a name that never
#: resolved is retried (kglb retries a failed resolution after 5 s).
RERESOLVE_INTERVAL = 60.0
RETRY_INTERVAL = 5.0
#: At most this many resolutions of one balancer run at once.
RESOLVE_CONCURRENCY = 32

_SOURCES = {StaticSource: static.run, FileSource: file.run, DnsSource: dns.run,
            EtcdSource: etcd.run}


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceStatus:
    """One balancer's source, for status and metrics (an immutable snapshot)."""

    kind: str  # static, file, dns, etcd
    detail: str  # the path, the name and type, the prefix
    up: bool
    last_success_age: float | None  # seconds since the last good answer (None: never)
    endpoints: int  # reals given to the balancer
    failures: int
    error: str = ""
    held: int = 0  # reals kept although the source removed them (maxRemoveRatio)


class DiscoveryMemory:
    """A balancer's discovery knowledge that outlives one run of its actor."""

    __slots__ = ("addresses", "config", "sent", "source", "state")

    def __init__(self) -> None:
        self.config: BalancerConfig | None = None  # the config ``state`` is of
        self.source: Source | None = None
        self.state = SourceState()
        self.addresses: dict[str, str] = {}  # name -> its last address
        self.sent: Endpoints | None = None

    def status(self, now: float | None = None) -> SourceStatus | None:
        """The source as of ``now`` (trio time; default: the current time)."""
        if self.source is None:
            return None
        if now is None:
            now = trio.current_time()
        last = self.state.last_success
        kind, detail = describe(self.source)
        held = 0 if self.state.held is None else sum(
            1 for e in self.state.endpoints if e.key not in self.state.held)
        return SourceStatus(kind=kind, detail=detail, up=self.state.up,
                            last_success_age=None if last is None else max(0.0, now - last),
                            endpoints=len(self.sent or ()), failures=self.state.failures,
                            error=self.state.error, held=held)


async def run_discovery(
    config: BalancerConfig,
    *,
    memory: DiscoveryMemory,
    send: trio.MemorySendChannel[Endpoints],
    resolve: Resolve = resolve_host,
    reresolve_interval: float = RERESOLVE_INTERVAL,
    task_status=trio.TASK_STATUS_IGNORED,
) -> None:
    """Run until cancelled; ``started()`` once the first list was sent.

    ``send`` is the balancer's input; it is not closed here (the supervisor
    owns it, and a restarted actor sends on it again).
    """
    source = config.discovery
    if memory.config != config:
        # A changed config starts afresh: its first answer applies in full
        # (the removal guard compares answers of one config, e.g. not ports
        # before and after a port change).
        memory.config, memory.source = config, source
        memory.state, memory.sent = SourceState(), None
    resolve = _resolver_for(source, resolve)
    kind, detail = describe(source)
    # Unbounded: a source sends at most one answer per event; the loop below
    # skips to the newest, so a burst costs one resolution and one send.
    answers_send, answers = trio.open_memory_channel[Answer | Failure](math.inf)
    with structlog.contextvars.bound_contextvars(balancer=config.identity, source=kind):
        async with answers_send, answers, trio.open_nursery() as nursery:
            nursery.start_soon(partial(_SOURCES[type(source)], source, config, answers_send))
            loop = _Loop(config, memory, send, resolve, detail)
            await loop.wait_first(answers)
            task_status.started()
            nursery.start_soon(loop.reresolve_loop, reresolve_interval)
            await loop.consume(answers)


def _resolver_for(source: Source, resolve: Resolve) -> Resolve:
    # SRV targets are resolved at the nameservers the records came from.
    if isinstance(source, DnsSource) and source.nameservers and resolve is resolve_host:
        return partial(resolve_host, resolver=dns.resolver_for(source))
    return resolve


class _Loop:
    def __init__(self, config, memory, send, resolve, detail) -> None:
        self.config: BalancerConfig = config
        self.memory: DiscoveryMemory = memory
        self.send = send
        self.resolve = resolve
        self.detail = detail
        # Names tried once in this run: a name that fails is retried by the
        # re-resolution loop, not by every answer of a busy source.
        self.tried: set[str] = set()

    async def wait_first(self, answers) -> None:
        """Fold the source's first answer (or failure) in and send a list."""
        if not self.memory.state.answered or self.memory.sent is None:
            self.fold(await answers.receive())
        await self.update(force=self.memory.sent is None)

    async def consume(self, answers) -> None:
        async for message in answers:
            burst = [message]
            while True:  # every answer is a complete list: only the newest matters
                try:
                    burst.append(answers.receive_nowait())
                except trio.WouldBlock:
                    break
            newest = next((m for m in reversed(burst) if isinstance(m, Answer)), None)
            if newest is not None:
                self.fold(newest)
            if isinstance(burst[-1], Failure):
                self.fold(burst[-1])
            await self.update()

    def fold(self, message: Answer | Failure) -> None:
        old = self.memory.state
        now = trio.current_time()
        if isinstance(message, Failure):
            new = observe_failure(old, message.reason)
            if old.up or old.error != new.error or not old.answered:
                log.warning("discovery source failed; keeping the last list",
                            where=self.detail, reason=message.reason, reals=len(old.endpoints))
        else:
            new = observe_answer(old, message.endpoints, now=now,
                                 max_remove_ratio=self.config.max_remove_ratio)
            if not old.up and old.answered:
                log.info("discovery source is back", where=self.detail)
            if new.held is not None and new.held != old.held:
                log.warning("discovery update removes too many reals; removals held until the "
                            "next update agrees", where=self.detail, proposed=len(new.held),
                            current=len(old.endpoints), max_remove_ratio=self.config.max_remove_ratio)
        self.memory.state = new

    async def update(self, *, force: bool = False) -> bool:
        """Resolve names and send the list if it changed. True if sent."""
        endpoints = self.memory.state.endpoints
        names = {e.host for e in endpoints if e.address is None}
        await self.resolve_names(names, fresh=False)
        inet6 = self.config.resolve_family is Family.INET6
        resolved = endpoints
        if names or any((":" in e.address) is not inet6 for e in endpoints):
            resolved = Endpoints(endpoints=tuple(
                r for r in map(self.resolved, endpoints)
                # A literal of the other family cannot be a real of this balancer.
                if r.address is None or (":" in r.address) is inet6))
        old = self.memory.sent
        if not force and resolved == old:
            return False
        _log_changes(old, resolved)
        self.memory.sent = resolved
        await self.send.send(resolved)
        return True

    def resolved(self, endpoint: Endpoint) -> Endpoint:
        if endpoint.address is not None:
            return endpoint
        address = self.memory.addresses.get(endpoint.host)
        return endpoint if address is None else replace(endpoint, address=address)

    async def resolve_names(self, names: set[str], *, fresh: bool) -> None:
        """Resolve ``names``: all of them with ``fresh``, else those not tried in this run
        (a restarted actor resolves every name once, as at start)."""
        addresses = self.memory.addresses
        for name in [n for n in addresses if n not in names and fresh]:
            del addresses[name]  # a name no longer listed is forgotten
        todo = sorted(names if fresh else names - self.tried)
        if not todo:
            return
        self.tried.update(todo)
        limiter = trio.CapacityLimiter(RESOLVE_CONCURRENCY)

        async def one(name: str) -> None:
            async with limiter:
                try:
                    address = await self.resolve(name, self.config.resolve_family)
                except ResolveError as exc:
                    last = addresses.get(name)
                    if last is None:
                        log.warning("host does not resolve; left out until it does",
                                    host=name, reason=str(exc))
                    else:
                        log.warning("host does not resolve; keeping its last address",
                                    host=name, reason=str(exc), last=last)
                    return
            addresses[name] = address

        async with trio.open_nursery() as nursery:
            for name in todo:
                nursery.start_soon(one, name)

    async def reresolve_loop(self, interval: float) -> None:
        while True:
            names = {e.host for e in self.memory.state.endpoints if e.address is None}
            unresolved = any(n not in self.memory.addresses for n in names)
            await trio.sleep(RETRY_INTERVAL if unresolved else interval)
            names = {e.host for e in self.memory.state.endpoints if e.address is None}
            if names:
                await self.resolve_names(names, fresh=True)
                await self.update()


def _log_changes(old: Endpoints | None, new: Endpoints) -> None:
    before = {e.key: e for e in old or ()}
    after = {e.key: e for e in new}
    added = [f"{e.host}:{e.port}" for k, e in after.items() if k not in before]
    removed = [f"{e.host}:{e.port}" for k, e in before.items() if k not in after]
    changed = sum(1 for k, e in after.items() if k in before and before[k] != e)
    if added or removed or changed:
        log.info("discovered reals changed", reals=len(new), added=added[:20],
                 removed=removed[:20], added_count=len(added), removed_count=len(removed),
                 changed=changed)
