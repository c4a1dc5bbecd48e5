"""IPVS connection-synchronisation daemons: what to stop and start. No I/O.

Theory of operation. The kernel runs at most one sync daemon per role in a
network namespace: one MASTER (multicasts this host's connection entries) and
one BACKUP (creates the entries other hosts multicast). A daemon is identified
by its role; its interface and sync id can only change by stopping it and
starting it again (IPVS_CMD_DEL_DAEMON, IPVS_CMD_NEW_DAEMON).

``plan_daemons(current, desired, owned)`` compares the daemons running now
with the configured ones, role by role:

* equal: nothing to do, and the daemon is ours from now on (adopted, so a
  restart never stops and restarts it: no gap in synchronisation);
* running, ours, and not wanted as it is: stop it (then start the wanted one);
* running and not ours (keepalived's ``lvs_sync_daemon``, ipvsadm's): left
  alone; if a different daemon is wanted in that role, that is a conflict,
  reported, never resolved by stopping someone else's daemon;
* not running and wanted: start it.

Ownership is written ahead by the caller: a daemon is recorded as ours before
it is started, so a crash between the two leaks nothing.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["DaemonPlan", "SyncDaemon", "SyncState", "plan_daemons"]

# What the kernel's dev_valid_name() accepts (IFNAMSIZ 16, NUL included).
_LINK_NAME = re.compile(r"[^/:\s]{1,15}")


class SyncState(enum.IntEnum):
    """A daemon's role; the values are the kernel's IP_VS_STATE_* bits."""

    MASTER = 1
    BACKUP = 2


@dataclass(frozen=True, slots=True, kw_only=True, order=True)
class SyncDaemon:
    """One sync daemon: its role, its multicast interface, its sync id (0-255)."""

    state: SyncState
    interface: str
    sync_id: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", SyncState(self.state))
        if not _LINK_NAME.fullmatch(self.interface) or self.interface in (".", ".."):
            raise ValueError(f"invalid interface name {self.interface!r}")
        if not 0 <= self.sync_id <= 255:  # the kernel keeps it in a u8
            raise ValueError(f"sync id {self.sync_id} is not in 0-255")

    def __str__(self) -> str:
        return f"{self.state.name.lower()} {self.interface} syncid {self.sync_id}"


@dataclass(frozen=True, slots=True, kw_only=True)
class DaemonPlan:
    """What to do, in order: ``stop`` (roles), then ``start``; ``owned`` is the
    ownership once done (written before ``start`` runs); ``conflicts`` are
    foreign daemons in a role we want, left running."""

    stop: tuple[SyncState, ...] = ()
    start: tuple[SyncDaemon, ...] = ()
    owned: frozenset[SyncDaemon] = frozenset()
    conflicts: tuple[SyncDaemon, ...] = ()


def by_state(daemons: Iterable[SyncDaemon]) -> dict[SyncState, SyncDaemon]:
    """Role -> daemon; raises ValueError if a role appears twice."""
    out: dict[SyncState, SyncDaemon] = {}
    for daemon in daemons:
        if daemon.state in out:
            raise ValueError(f"two {daemon.state.name} sync daemons")
        out[daemon.state] = daemon
    return out


def plan_daemons(
    current: Iterable[SyncDaemon], desired: Iterable[SyncDaemon], owned: Iterable[SyncDaemon]
) -> DaemonPlan:
    """The stops and starts that turn ``current`` into ``desired`` (see the module doc).

    Raises ValueError if ``current`` or ``desired`` holds two daemons of one role.
    """
    now, wanted, ours = by_state(current), by_state(desired), set(owned)
    stop: list[SyncState] = []
    start: list[SyncDaemon] = []
    conflicts: list[SyncDaemon] = []
    result: set[SyncDaemon] = set()  # ours once done; one of ours that stopped is forgotten
    for state in SyncState:
        running, want = now.get(state), wanted.get(state)
        if running is not None and running == want:
            result.add(running)  # adopted, or still ours
        elif running is not None and running in ours:
            stop.append(state)
            if want is not None:
                start.append(want)
                result.add(want)
        elif running is not None:
            if want is not None:
                conflicts.append(running)
        elif want is not None:
            start.append(want)
            result.add(want)
    return DaemonPlan(stop=tuple(stop), start=tuple(start), owned=frozenset(result),
                      conflicts=tuple(conflicts))
