"""Convert and validate ``ipvsSyncDaemons`` (kglb-trio's field of ControlPlaneConfig).

Each daemon needs a role (MASTER or BACKUP: the unset default is refused, a
daemon of no role cannot exist), an interface name the kernel accepts and a
sync id of 0-255; the kernel runs one daemon per role, so a role may appear
once.
"""

from __future__ import annotations

from ..pb import config_pb2
from ..sync_daemons import SyncDaemon, SyncState
from ._errors import Problems, Where

_STATES = {config_pb2.MASTER: SyncState.MASTER, config_pb2.BACKUP: SyncState.BACKUP}


def convert_sync_daemons(msg: config_pb2.ControlPlaneConfig, root: Where,
                         problems: Problems) -> tuple[SyncDaemon, ...]:
    """The valid daemons of ``msg``; every problem goes to ``problems``."""
    where = root.field("ipvs_sync_daemons")
    daemons: list[SyncDaemon] = []
    roles: set[SyncState] = set()
    for index, daemon in enumerate(msg.ipvs_sync_daemons):
        here = where.item(index)
        ok = True
        state = _STATES.get(daemon.state)
        if state is None:
            ok = False
            problems.error(here.field("state"), "required: MASTER or BACKUP")
        elif state in roles:
            ok = False
            problems.error(here.field("state"),
                           f"a second {state.name} daemon: the kernel runs one per role")
        else:
            roles.add(state)
        if not daemon.interface:
            ok = False
            problems.error(here.field("interface"), "required: the link that carries the sync traffic")
        if daemon.sync_id > 255:
            ok = False
            problems.error(here.field("sync_id"), f"{daemon.sync_id} is not in 0-255")
        try:
            checked = SyncDaemon(state=state or SyncState.MASTER, interface=daemon.interface,
                                 sync_id=min(daemon.sync_id, 255))
        except ValueError as exc:
            if daemon.interface:
                problems.error(here.field("interface"), str(exc))
            continue
        if ok:
            daemons.append(checked)
    return tuple(daemons)
