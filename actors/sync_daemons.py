"""The sync-daemon actor: keeps the kernel's IPVS sync daemons equal to the config.

It converges at start, whenever the configured daemons change (a reload), and
every ``interval`` seconds (a daemon stopped behind our back is started
again). Each round reads the running daemons, plans with
``kglb.sync_daemons.plan_daemons`` (ours are adopted, foreign ones never
touched), records ownership ahead of any start (write, fsync, rename), then
stops and starts. A refused request (no such interface, a foreign daemon in
the role) is logged and counted and retried next round; nothing raises out of
the actor. At a graceful shutdown the daemons we own are stopped, after the
writer finished (connections keep being synchronised while the host drains),
unless ``keep_on_exit``.

Two backends, each a pair of blocking calls run in a worker thread:
``KernelDaemons`` (generic netlink, one short-lived socket per round) and
``MemoryDaemons`` (a fake kernel with the kernel's errors, for the in-memory
data plane and tests).
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterable, Sequence
from contextlib import closing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import structlog
import trio

from kglb import _ipvs_daemon_wire as dwire
from kglb import _ipvs_wire as wire
from kglb.sync_daemons import SyncDaemon, SyncState, by_state, plan_daemons

from .dataplane._ipvs_socket import IpvsSocket
from .ownership import write_json_atomically

__all__ = ["DaemonStatistics", "KernelDaemons", "MemoryDaemons", "SyncDaemons", "daemons_path"]

log = structlog.get_logger()

#: Seconds between two rounds when nothing changed (drift repair).
INTERVAL = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class DaemonStatistics:
    """An immutable snapshot: the daemons configured, running (last read), ours,
    foreign ones in a role we want, and refused requests by errno."""

    desired: tuple[SyncDaemon, ...] = ()
    running: tuple[SyncDaemon, ...] = ()
    owned: tuple[SyncDaemon, ...] = ()
    conflicts: tuple[SyncDaemon, ...] = ()
    errors: int = 0
    last_error: str | None = None


class DaemonBackend(Protocol):
    blocking: bool  # True: called in a worker thread

    def read(self) -> tuple[SyncDaemon, ...]: ...

    def change(self, stop: Sequence[SyncState], start: Sequence[SyncDaemon]) -> list[tuple[object, int, str]]:
        """Stop, then start; the refused ones as (daemon or state, errno, message)."""
        ...


class MemoryDaemons:
    """A fake kernel: one daemon per role, EEXIST/ESRCH like ip_vs_sync.c,
    ENODEV for an interface not in ``links`` (None: every name exists)."""

    blocking = False

    def __init__(self, links: Iterable[str] | None = None) -> None:
        self.running: dict[SyncState, SyncDaemon] = {}
        self._links = None if links is None else set(links)

    def read(self) -> tuple[SyncDaemon, ...]:
        return tuple(sorted(self.running.values()))

    def change(self, stop: Sequence[SyncState], start: Sequence[SyncDaemon]) -> list[tuple[object, int, str]]:
        refused: list[tuple[object, int, str]] = []
        for state in stop:
            if self.running.pop(state, None) is None:
                refused.append((state, errno.ESRCH, "no such daemon"))
        for daemon in start:
            if daemon.state in self.running:
                refused.append((daemon, errno.EEXIST, "a daemon of this role runs"))
            elif self._links is not None and daemon.interface not in self._links:
                refused.append((daemon, errno.ENODEV, f"no link named {daemon.interface!r}"))
            else:
                self.running[daemon.state] = daemon
        return refused


class KernelDaemons:
    """The kernel's daemons through IPVS generic netlink (blocking; any thread)."""

    blocking = True

    def read(self) -> tuple[SyncDaemon, ...]:
        with closing(IpvsSocket()) as sock:
            found = []
            for msg in sock.dump(lambda seq: dwire.dump_daemons_request(family=sock.family, seq=seq)):
                try:
                    found.append(dwire.decode_daemon(msg))
                except wire.Unrepresentable as exc:
                    log.warning("skipping a sync daemon we cannot model", error=str(exc))
            return tuple(sorted(found))

    def change(self, stop: Sequence[SyncState], start: Sequence[SyncDaemon]) -> list[tuple[object, int, str]]:
        with closing(IpvsSocket()) as sock:
            requests, targets = [], {}
            for target in [*stop, *start]:
                seq = sock.next_seq()
                if isinstance(target, SyncDaemon):
                    requests.append((seq, dwire.new_daemon_request(target, family=sock.family, seq=seq)))
                else:
                    requests.append((seq, dwire.del_daemon_request(target, family=sock.family, seq=seq)))
                targets[seq] = target
            refused = sock.transact(requests)
            return [(targets[seq], ack.errno, ack.message or os.strerror(ack.errno))
                    for seq, ack in sorted(refused.items())]


def daemons_path(ownership_path: str | os.PathLike[str]) -> Path:
    """Where the daemons we own are recorded: beside the writer's record."""
    path = Path(ownership_path)
    return path.with_name(f"{path.stem}.sync-daemons.json")


def load_daemons(path: Path) -> frozenset[SyncDaemon]:
    """The recorded daemons; none if the record is missing or unreadable (logged)."""
    try:
        data = json.loads(path.read_bytes())
        return frozenset(SyncDaemon(state=SyncState[d["state"]], interface=d["interface"],
                                    sync_id=d["sync_id"]) for d in data["daemons"])
    except FileNotFoundError:
        return frozenset()
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("unreadable sync-daemon record, owning none", path=str(path), error=repr(exc))
        return frozenset()


def save_daemons(path: Path, daemons: Iterable[SyncDaemon]) -> None:
    """Replace the record atomically (temporary file, fsync, rename). Raises OSError."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"version": 1, "daemons": [{"state": d.state.name, "interface": d.interface,
                                       "sync_id": d.sync_id} for d in sorted(daemons)]}
    write_json_atomically(path, data)


@dataclass
class SyncDaemons:
    """The actor. ``run`` converges until cancelled; ``set_desired`` after a
    reload; ``shutdown`` stops what we own (graceful shutdown only)."""

    backend: DaemonBackend
    record: Path
    desired: tuple[SyncDaemon, ...] = ()
    interval: float = INTERVAL
    _stats: DaemonStatistics = field(default_factory=DaemonStatistics)
    _owned: frozenset[SyncDaemon] = frozenset()
    _wake: trio.Event = field(default_factory=trio.Event)

    @classmethod
    def beside(cls, state_file: str | os.PathLike[str], desired: Sequence[SyncDaemon],
               backend: DaemonBackend | None = None) -> SyncDaemons:
        """The actor for a writer keeping ``state_file``: its record beside it, the kernel's
        daemons through ``backend`` (None: in memory, as a dry run)."""
        return cls(backend if backend is not None else MemoryDaemons(),
                   record=daemons_path(state_file), desired=tuple(desired))

    def statistics(self) -> DaemonStatistics:
        return self._stats

    def set_desired(self, daemons: Sequence[SyncDaemon]) -> None:
        if tuple(daemons) != self.desired:
            self.desired = tuple(daemons)
            self._wake.set()

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        self._owned = load_daemons(self.record)  # a small file, read once at start
        if not self.desired and not self._owned:
            task_status.started()  # nothing to keep: never touch the kernel's daemons
            await self._wake.wait()
        first = True
        while True:
            self._wake = trio.Event()
            await self._converge()
            if first:
                task_status.started()
                first = False
            with trio.move_on_after(self.interval):
                await self._wake.wait()

    async def shutdown(self) -> None:
        """Stop the daemons we own (shielded: it runs during a shutdown)."""
        if not self._owned:
            return
        with trio.CancelScope(shield=True), trio.move_on_after(10):
            await self._converge(desired=())

    async def _converge(self, *, desired: Sequence[SyncDaemon] | None = None) -> None:
        desired = self.desired if desired is None else tuple(desired)
        try:
            running = await self._call(self.backend.read)
            plan = plan_daemons(running, desired, self._owned)
            for daemon in plan.conflicts:
                log.error("a sync daemon we did not start holds a role we want; left alone",
                          running=str(daemon), wanted=str(by_state(desired)[daemon.state]))
            if not plan.stop and not plan.start:
                self._record(plan.owned)
                self._update(running=running, conflicts=plan.conflicts)
                return
            # Written ahead: what we are about to start is ours even if we crash now.
            self._record(self._owned | plan.owned)
            refused = await self._call(self.backend.change, plan.stop, plan.start)
            failed = {target for target, _, _ in refused if isinstance(target, SyncDaemon)}
            for target, code, text in refused:
                self._refused(f"{'start' if isinstance(target, SyncDaemon) else 'stop'} {target}",
                              code, text)
            for daemon in plan.start:
                if daemon not in failed:
                    log.info("sync daemon started", daemon=str(daemon))
            self._record(plan.owned - failed)
            running = await self._call(self.backend.read)
            self._update(running=running, conflicts=plan.conflicts)
        except (OSError, ValueError) as exc:
            self._refused("sync daemons", getattr(exc, "errno", None) or 0, str(exc))

    async def _call(self, fn, *args):
        if self.backend.blocking:
            return await trio.to_thread.run_sync(fn, *args)
        await trio.lowlevel.checkpoint()
        return fn(*args)

    def _record(self, owned: frozenset[SyncDaemon]) -> None:
        if owned != self._owned:
            save_daemons(self.record, owned)  # an OSError is counted by the caller
            self._owned = owned
        self._update(owned=tuple(sorted(owned)))

    def _refused(self, what: str, code: int, text: str) -> None:
        log.error("sync daemon request refused", request=what, errno=code, error=text)
        self._update(errors=self._stats.errors + 1, last_error=f"{what}: {text}")

    def _update(self, **changes) -> None:
        self._stats = replace(self._stats, desired=self.desired, **changes)
