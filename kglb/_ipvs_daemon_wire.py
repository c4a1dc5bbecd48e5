"""Generic-netlink messages for IPVS sync daemons, encoded and decoded. No I/O.

``include/uapi/linux/ip_vs.h``: IPVS_CMD_NEW_DAEMON (9), DEL_DAEMON (10) and
GET_DAEMON (11) carry a nested IPVS_CMD_ATTR_DAEMON (3). NEW needs the state,
the interface and the sync id (ip_vs_ctl.c refuses it without any of them);
DEL only the state (the kernel runs one daemon per role); GET is a dump that
answers one NEW_DAEMON message per running daemon (recent kernels add the
maximum length, multicast group, port and TTL, which we leave at their
defaults). Framing, acks and the socket are shared with the service commands
(``_ipvs_wire``, ``actors/dataplane/_ipvs_socket.py``).
"""

from __future__ import annotations

import enum
import struct

from ._ipvs_wire import (
    IPVS_GENL_VERSION,
    NLM_F_ACK,
    NLM_F_DUMP,
    NLM_F_REQUEST,
    NetlinkMessage,
    Unrepresentable,
    attr,
    genl_attrs,
    message,
    nest,
    parse_attrs,
)
from .sync_daemons import SyncDaemon, SyncState

__all__ = ["decode_daemon", "del_daemon_request", "dump_daemons_request", "new_daemon_request"]

CMD_NEW_DAEMON = 9
CMD_DEL_DAEMON = 10
CMD_GET_DAEMON = 11
CMD_ATTR_DAEMON = 3

_U32 = struct.Struct("=I")


class DaemonAttr(enum.IntEnum):
    STATE = 1
    MCAST_IFN = 2
    SYNC_ID = 3


def new_daemon_request(daemon: SyncDaemon, *, family: int, seq: int) -> bytes:
    """IPVS_CMD_NEW_DAEMON (with NLM_F_ACK): start ``daemon``."""
    payload = nest(
        CMD_ATTR_DAEMON,
        attr(DaemonAttr.STATE, _U32.pack(daemon.state)),
        attr(DaemonAttr.MCAST_IFN, daemon.interface.encode() + b"\0"),
        attr(DaemonAttr.SYNC_ID, _U32.pack(daemon.sync_id)),
    )
    return message(family, CMD_NEW_DAEMON, payload, seq=seq, flags=NLM_F_REQUEST | NLM_F_ACK,
                   version=IPVS_GENL_VERSION)


def del_daemon_request(state: SyncState, *, family: int, seq: int) -> bytes:
    """IPVS_CMD_DEL_DAEMON (with NLM_F_ACK): stop the daemon of role ``state``."""
    payload = nest(CMD_ATTR_DAEMON, attr(DaemonAttr.STATE, _U32.pack(state)))
    return message(family, CMD_DEL_DAEMON, payload, seq=seq, flags=NLM_F_REQUEST | NLM_F_ACK,
                   version=IPVS_GENL_VERSION)


def dump_daemons_request(*, family: int, seq: int) -> bytes:
    """IPVS_CMD_GET_DAEMON as a dump: every running daemon."""
    return message(family, CMD_GET_DAEMON, b"", seq=seq, flags=NLM_F_REQUEST | NLM_F_DUMP,
                   version=IPVS_GENL_VERSION)


def decode_daemon(msg: NetlinkMessage) -> SyncDaemon:
    """A daemon from a GET_DAEMON dump reply; raises ``Unrepresentable``."""
    a = parse_attrs(genl_attrs(msg).get(CMD_ATTR_DAEMON, b""))
    try:
        return SyncDaemon(
            state=SyncState(_U32.unpack(a[DaemonAttr.STATE])[0]),
            interface=bytes(a[DaemonAttr.MCAST_IFN]).split(b"\0", 1)[0].decode("utf-8", "replace"),
            sync_id=_U32.unpack(a[DaemonAttr.SYNC_ID])[0],
        )
    except (KeyError, ValueError, struct.error) as exc:
        raise Unrepresentable(f"sync daemon: {exc!r}") from None
