"""kglb._ipvs_daemon_wire: exact request bytes (ip_vs.h layout) and dump replies."""

import pytest

from kglb import _ipvs_daemon_wire as dwire
from kglb import _ipvs_wire as wire
from kglb.sync_daemons import SyncDaemon, SyncState

FAMILY = 0x20


def test_new_daemon_exact_bytes():
    daemon = SyncDaemon(state=SyncState.BACKUP, interface="eth1", sync_id=7)
    data = dwire.new_daemon_request(daemon, family=FAMILY, seq=9)
    assert data == bytes.fromhex(
        "34000000 2000 0500 09000000 00000000"  # nlmsghdr: len 52, type, REQUEST|ACK, seq 9
        "09010000"  # genl: NEW_DAEMON, version 1
        "20000380"  # nested DAEMON, 32 bytes
        "08000100 02000000"  # STATE = IP_VS_STATE_BACKUP (u32)
        "09000200 65746831 00000000"  # MCAST_IFN = "eth1\0", padded
        "08000300 07000000"  # SYNC_ID = 7 (u32)
    )


def test_del_daemon_carries_only_the_state():
    data = dwire.del_daemon_request(SyncState.MASTER, family=FAMILY, seq=1)
    assert data == bytes.fromhex(
        "20000000 2000 0500 01000000 00000000"
        "0a010000"  # DEL_DAEMON
        "0c000380 08000100 01000000"  # DAEMON {STATE = MASTER}
    )


def test_get_daemon_is_a_dump():
    data = dwire.dump_daemons_request(family=FAMILY, seq=3)
    assert data == bytes.fromhex("14000000 2000 0103 03000000 00000000 0b010000")


def _reply(*attrs: bytes) -> wire.NetlinkMessage:
    # as ip_vs_genl_dump_daemon answers: a NEW_DAEMON message per daemon, with more attributes
    payload = wire.nest(dwire.CMD_ATTR_DAEMON, *attrs)
    data = wire.message(FAMILY, dwire.CMD_NEW_DAEMON, payload, seq=3, flags=wire.NLM_F_MULTI, version=1)
    return next(wire.split_messages(data))


def test_a_dump_reply_decodes_and_ignores_the_newer_attributes():
    msg = _reply(
        wire.attr(1, (1).to_bytes(4, "little")),
        wire.attr(2, b"sync0\0"),
        wire.attr(3, (200).to_bytes(4, "little")),
        wire.attr(4, (1472).to_bytes(2, "little")),  # SYNC_MAXLEN
        wire.attr(5, bytes([224, 0, 0, 81])),  # MCAST_GROUP
        wire.attr(7, (8848).to_bytes(2, "big")),  # MCAST_PORT
        wire.attr(8, b"\x01"),  # MCAST_TTL
    )
    assert dwire.decode_daemon(msg) == SyncDaemon(state=SyncState.MASTER, interface="sync0", sync_id=200)


@pytest.mark.parametrize("attrs", [
    (wire.attr(2, b"eth1\0"), wire.attr(3, b"\0\0\0\0")),  # no state
    (wire.attr(1, (4).to_bytes(4, "little")), wire.attr(2, b"eth1\0"), wire.attr(3, b"\0\0\0\0")),
    (wire.attr(1, (1).to_bytes(4, "little")), wire.attr(2, b"eth1\0"), wire.attr(3, b"\0\0")),
])
def test_a_daemon_we_cannot_model_is_unrepresentable(attrs):
    with pytest.raises(wire.Unrepresentable):
        dwire.decode_daemon(_reply(*attrs))
