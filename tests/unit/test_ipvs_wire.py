"""kglb._ipvs_wire: exact bytes, nesting round trips, acks and errors, dump replies.

pyroute2's IPVS message classes serve as an independent codec: our requests
must decode there, and dump replies pyroute2 encodes must decode here.
"""

import errno
import ipaddress
import struct

import pytest
from pyroute2.netlink.generic.ipvs import ipvsmsg

from kglb import (
    AddAddress,
    AddReal,
    AddService,
    DeleteReal,
    DeleteService,
    Family,
    ForwardMethod,
    LinkAddress,
    Real,
    RealKey,
    Service,
    ServiceFlag,
    ServiceKey,
    UpdateReal,
    UpdateService,
)
from kglb import _ipvs_wire as wire

FAMILY = 0x20
TCP80 = ServiceKey.tcp("10.0.0.1", 80)
V6 = ServiceKey.tcp("fd00::1", 443)
MARK = ServiceKey.for_fwmark(42)


def test_add_service_exact_bytes():
    data = wire.encode_operation(AddService(service=Service(key=TCP80, scheduler="rr")), family=FAMILY, seq=7)
    expected = bytes.fromhex(
        "5c000000 2000 0500 07000000 00000000"  # nlmsghdr: len 92, type, REQUEST|ACK, seq 7, pid 0
        "01010000"  # genl: NEW_SERVICE, version 1
        "48000180"  # nested SERVICE, 72 bytes
        "06000100 02000000"  # AF = AF_INET (u16, padded)
        "06000200 06000000"  # PROTOCOL = TCP
        "08000300 0a000001"  # ADDR = 10.0.0.1
        "06000400 00500000"  # PORT = 80, network order
        "07000600 72720000"  # SCHED_NAME = "rr\0"
        "0c000700 00000000 ffffffff"  # FLAGS = {0, mask ~0}
        "08000800 00000000"  # TIMEOUT = 0
        "08000900 ffffffff"  # NETMASK = 255.255.255.255
    )
    assert data == expected


def test_delete_real_exact_bytes():
    op = DeleteReal(service=MARK, real=RealKey(address="10.2.0.11", port=0))
    data = wire.encode_operation(op, family=FAMILY, seq=0x01020304)
    expected = bytes.fromhex(
        "44000000 2000 0500 04030201 00000000"  # len 68
        "07010000"  # DEL_DEST
        "14000180 06000100 02000000 08000500 2a000000"  # SERVICE {AF inet, FWMARK 42}
        "1c000280 06000b00 02000000 08000100 0a02000b 06000200 00000000"  # DEST {AF, ADDR, PORT 0}
    )
    assert data == expected


def _pyroute2(data: bytes) -> ipvsmsg:
    msg = ipvsmsg(data)
    msg.decode()
    return msg


@pytest.mark.parametrize(
    ("op", "cmd"),
    [
        (AddService(service=Service(key=TCP80, scheduler="wrr")), wire.Cmd.NEW_SERVICE),
        (UpdateService(service=Service(key=TCP80, scheduler="sh")), wire.Cmd.SET_SERVICE),
        (DeleteService(service=TCP80), wire.Cmd.DEL_SERVICE),
        (AddReal(service=TCP80, real=Real(key=RealKey(address="10.2.0.1", port=80), weight=5)), wire.Cmd.NEW_DEST),
        (UpdateReal(service=TCP80, real=Real(key=RealKey(address="10.2.0.1", port=80), weight=0)), wire.Cmd.SET_DEST),
        (DeleteReal(service=TCP80, real=RealKey(address="10.2.0.1", port=80)), wire.Cmd.DEL_DEST),
    ],
)
def test_operation_commands(op, cmd):
    msg = _pyroute2(wire.encode_operation(op, family=FAMILY, seq=1))
    assert msg["cmd"] == cmd
    assert msg["header"]["flags"] == wire.NLM_F_REQUEST | wire.NLM_F_ACK
    service = msg.get("IPVS_CMD_ATTR_SERVICE")
    assert (service.get("IPVS_SVC_ATTR_ADDR"), service.get("IPVS_SVC_ATTR_PORT")) == ("10.0.0.1", 80)


def test_service_attributes_round_trip_through_pyroute2():
    service = Service(
        key=V6, scheduler="sh", flags=ServiceFlag.PERSISTENT | ServiceFlag.SCHED1 | ServiceFlag.SCHED2, timeout=300
    )
    svc = _pyroute2(wire.encode_operation(UpdateService(service=service), family=FAMILY, seq=9)).get(
        "IPVS_CMD_ATTR_SERVICE"
    )
    assert svc.get("IPVS_SVC_ATTR_AF") == 10
    assert svc.get("IPVS_SVC_ATTR_ADDR") == "fd00::1"
    assert svc.get("IPVS_SVC_ATTR_SCHED_NAME") == "sh"
    assert svc.get("IPVS_SVC_ATTR_FLAGS")["flags"] == 0x19
    assert svc.get("IPVS_SVC_ATTR_TIMEOUT") == 300


@pytest.mark.parametrize(
    ("key", "netmask"), [(TCP80, 0xFFFFFFFF), (MARK, 0xFFFFFFFF), (V6, 128), (ServiceKey.for_fwmark(1, Family.INET6), 128)]
)
def test_netmask_is_a_mask_for_v4_and_a_prefix_length_for_v6(key, netmask):
    data = wire.encode_operation(AddService(service=Service(key=key)), family=FAMILY, seq=1)
    msg = next(wire.split_messages(data))
    svc = wire.parse_attrs(wire.genl_attrs(msg)[wire.CmdAttr.SERVICE])
    assert struct.unpack("=I", svc[wire.SvcAttr.NETMASK]) == (netmask,)


def test_dest_attributes():
    real = Real(key=RealKey(address="fd00::2", port=8080), weight=7, forward=ForwardMethod.MASQ)
    dest = _pyroute2(wire.encode_operation(AddReal(service=V6, real=real), family=FAMILY, seq=3)).get(
        "IPVS_CMD_ATTR_DEST"
    )
    assert dest.get("IPVS_DEST_ATTR_ADDR") == "fd00::2"
    assert dest.get("IPVS_DEST_ATTR_PORT") == 8080
    assert dest.get("IPVS_DEST_ATTR_WEIGHT") == 7
    assert dest.get("IPVS_DEST_ATTR_FWD_METHOD") == 0
    assert dest.get("IPVS_DEST_ATTR_ADDR_FAMILY") == 10


def test_non_ipvs_operation_is_refused():
    with pytest.raises(TypeError):
        wire.encode_operation(AddAddress(address=LinkAddress(address="10.0.0.1")), family=FAMILY, seq=1)


def test_nesting_round_trip_and_padding():
    inner = [wire.attr(1, b"a"), wire.attr(2, b"bcdef"), wire.nest(3, wire.attr(4, b"\x01\x02"))]
    outer = wire.nest(9, *inner) + wire.attr(10, b"xyz")
    assert len(outer) % 4 == 0
    top = wire.parse_attrs(outer)
    assert bytes(top[10]) == b"xyz"  # the NESTED flag is stripped from the type
    nested = wire.parse_attrs(top[9])
    assert bytes(nested[1]) == b"a" and bytes(nested[2]) == b"bcdef"
    assert bytes(wire.parse_attrs(nested[3])[4]) == b"\x01\x02"


def _error(seq: int, err: int, *, flags: int = 0, tlvs: bytes = b"", echoed: bytes = b"") -> bytes:
    request = struct.pack("=IHHII", 16 + len(echoed), FAMILY, 5, seq, 0)
    payload = struct.pack("=i", -err) + request + echoed + tlvs
    return struct.pack("=IHHII", 16 + len(payload), wire.NLMSG_ERROR, flags, seq, 1234) + payload


def test_acks_and_errors_are_matched_by_sequence_number():
    datagram = _error(5, 0) + _error(6, errno.EEXIST) + _error(7, errno.ESRCH)
    acks = [wire.parse_ack(m) for m in wire.split_messages(datagram)]
    assert acks == [
        wire.Ack(seq=5, errno=0),
        wire.Ack(seq=6, errno=errno.EEXIST),
        wire.Ack(seq=7, errno=errno.ESRCH),
    ]


@pytest.mark.parametrize("capped", [True, False])
def test_extended_ack_message(capped):
    tlvs = wire.attr(wire.NLMSGERR_ATTR_MSG, b"bad scheduler\0")
    echoed = b"" if capped else b"\x01\x01\x00\x00"
    flags = wire.NLM_F_ACK_TLVS | (wire.NLM_F_CAPPED if capped else 0)
    [msg] = wire.split_messages(_error(3, errno.ENOENT, flags=flags, tlvs=tlvs, echoed=echoed))
    assert wire.parse_ack(msg) == wire.Ack(seq=3, errno=errno.ENOENT, message="bad scheduler")


def test_truncated_datagram_is_an_error():
    with pytest.raises(ValueError):
        list(wire.split_messages(_error(1, 0)[:-4]))


def _reply(msg: ipvsmsg) -> wire.NetlinkMessage:
    msg["header"]["type"] = FAMILY
    msg["header"]["flags"] = wire.NLM_F_MULTI
    msg["header"]["sequence_number"] = 11
    msg.encode()
    [out] = wire.split_messages(msg.data)
    return out


def _stats(**values):
    return {"attrs": [(f"IPVS_STATS_ATTR_{k.upper()}", v) for k, v in values.items()]}


def test_decode_service_dump_reply():
    msg = ipvsmsg()
    msg["cmd"] = wire.Cmd.NEW_SERVICE
    msg["version"] = 1
    msg["attrs"] = [
        (
            "IPVS_CMD_ATTR_SERVICE",
            {
                "attrs": [
                    ("IPVS_SVC_ATTR_AF", 2),
                    ("IPVS_SVC_ATTR_PROTOCOL", 17),
                    ("IPVS_SVC_ATTR_ADDR", "10.0.0.9"),
                    ("IPVS_SVC_ATTR_PORT", 53),
                    ("IPVS_SVC_ATTR_SCHED_NAME", "mh"),
                    ("IPVS_SVC_ATTR_FLAGS", {"flags": 0x2 | 0x4, "mask": 0xFFFFFFFF}),
                    ("IPVS_SVC_ATTR_TIMEOUT", 0),
                    ("IPVS_SVC_ATTR_NETMASK", "255.255.255.255"),
                    ("IPVS_SVC_ATTR_STATS64", _stats(conns=3, inpkts=10, outpkts=9, inbytes=2**40, outbytes=5)),
                ]
            },
        )
    ]
    entry = wire.decode_service(_reply(msg))
    # HASHED is the kernel's own bit and never part of the model
    assert entry.service == Service(key=ServiceKey.udp("10.0.0.9", 53), scheduler="mh", flags=ServiceFlag.ONEPACKET)
    assert entry.stats == wire.Stats(conns=3, packets_in=10, packets_out=9, bytes_in=2**40, bytes_out=5)


def _dest_reply(forward: int) -> wire.NetlinkMessage:
    msg = ipvsmsg()
    msg["cmd"] = wire.Cmd.NEW_DEST
    msg["version"] = 1
    attrs = [
        ("IPVS_DEST_ATTR_ADDR_FAMILY", 10),
        ("IPVS_DEST_ATTR_ADDR", "fd00::7"),
        ("IPVS_DEST_ATTR_PORT", 80),
        ("IPVS_DEST_ATTR_FWD_METHOD", forward),
        ("IPVS_DEST_ATTR_WEIGHT", 100),
        ("IPVS_DEST_ATTR_ACTIVE_CONNS", 4),
        ("IPVS_DEST_ATTR_INACT_CONNS", 2),
        ("IPVS_DEST_ATTR_STATS", _stats(conns=1, inbytes=77)),
    ]
    msg["attrs"] = [("IPVS_CMD_ATTR_DEST", {"attrs": attrs})]
    return _reply(msg)


def test_decode_dest_dump_reply_reads_the_forward_method():
    entry = wire.decode_dest(_dest_reply(forward=2), Family.INET6)
    assert entry.real == Real(key=RealKey(address="fd00::7", port=80), weight=100, forward=ForwardMethod.TUNNEL)
    assert (entry.active_conns, entry.inactive_conns) == (4, 2)
    assert entry.stats == wire.Stats(conns=1, bytes_in=77)


def test_decode_dest_without_family_uses_the_service_family():
    # kernels before 4.x send no ADDR_FAMILY; the address is 16 bytes either way
    dest = wire.nest(
        wire.CmdAttr.DEST,
        wire.attr(wire.DestAttr.ADDR, bytes.fromhex("0a000007") + bytes(12)),
        wire.attr(wire.DestAttr.PORT, b"\x00\x50"),
        wire.attr(wire.DestAttr.FWD_METHOD, struct.pack("=I", 0)),
        wire.attr(wire.DestAttr.WEIGHT, struct.pack("=I", 1)),
    )
    data = wire.message(FAMILY, wire.Cmd.NEW_DEST, dest, seq=1, flags=wire.NLM_F_MULTI, version=1)
    entry = wire.decode_dest(next(wire.split_messages(data)), Family.INET)
    assert entry.real == Real(key=RealKey(address="10.0.0.7", port=80), weight=1, forward=ForwardMethod.MASQ)
    assert entry.stats == wire.Stats()


def test_local_destination_reads_as_localnode_and_bypass_is_unrepresentable():
    assert wire.decode_dest(_dest_reply(forward=1), Family.INET6).real.forward is ForwardMethod.LOCALNODE
    with pytest.raises(wire.Unrepresentable):
        wire.decode_dest(_dest_reply(forward=4), Family.INET6)


def test_family_request_and_answer():
    data = wire.get_family_request("IPVS", seq=2)
    assert data == bytes.fromhex("20000000 1000 0500 02000000 00000000 03010000 09000200 49505653 00000000")
    answer = struct.pack("=IHHII", 28, wire.GENL_ID_CTRL, 0, 2, 0) + b"\x01\x02\x00\x00"
    answer += wire.attr(wire.CTRL_ATTR_FAMILY_ID, struct.pack("=H", 42))
    [msg] = wire.split_messages(answer)
    assert wire.family_id(msg) == 42


@pytest.mark.parametrize(("address", "forward"), [("10.2.0.1", ForwardMethod.TUNNEL), ("fd00::2", ForwardMethod.MASQ)])
def test_packed_destination_equals_attribute_by_attribute(address, forward):
    real = Real(key=RealKey(address=address, port=443), weight=5, forward=forward)
    generic = wire.nest(
        wire.CmdAttr.DEST,
        wire.attr(wire.DestAttr.ADDR_FAMILY, struct.pack("=H", Family.of(address))),
        wire.attr(wire.DestAttr.ADDR, ipaddress.ip_address(address).packed),
        wire.attr(wire.DestAttr.PORT, struct.pack("!H", 443)),
        wire.attr(wire.DestAttr.FWD_METHOD, struct.pack("=I", forward)),
        wire.attr(wire.DestAttr.WEIGHT, struct.pack("=I", 5)),
        wire.attr(wire.DestAttr.U_THRESH, struct.pack("=I", 0)),
        wire.attr(wire.DestAttr.L_THRESH, struct.pack("=I", 0)),
    )
    data = wire.encode_operation(AddReal(service=TCP80, real=real), family=FAMILY, seq=1)
    assert data.endswith(generic)
