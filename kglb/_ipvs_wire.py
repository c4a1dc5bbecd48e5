"""Generic-netlink IPVS messages, encoded and decoded with ``struct``. No I/O.

Theory of operation. A netlink message is a 16-byte header (length, type,
flags, sequence number, port id) followed by a payload. Generic netlink adds a
4-byte header (command, version) and then attributes: each a 4-byte header
(length, type) and a payload padded to 4 bytes; a nested attribute carries
more attributes. IPVS requests carry a nested ``SERVICE`` attribute (and a
nested ``DEST`` one for destination commands).

The writer pipelines: it encodes many requests, each with its own sequence
number and ``NLM_F_ACK``, writes them in one ``send()``, and matches the
kernel's acks (``NLMSG_ERROR`` with error 0, or a negative errno) back to the
requests by sequence number. This module builds the bytes and parses the
answers; the socket lives in ``actors/dataplane/_ipvs_socket.py``.

Layouts follow ``include/uapi/linux/ip_vs.h``. Integers are in host byte
order, except ports (network order). The service netmask is a raw 32-bit
value: ``0xffffffff`` for IPv4 (and fwmark v4), the prefix length 128 for IPv6.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass

from ._model import (
    AddReal,
    AddService,
    DeleteReal,
    DeleteService,
    Family,
    ForwardMethod,
    Protocol,
    Real,
    RealKey,
    Service,
    ServiceFlag,
    ServiceKey,
    UpdateReal,
    UpdateService,
)

# netlink (linux/netlink.h)
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLM_F_CAPPED = 0x100  # on an error message: the request's payload is not echoed
NLM_F_ACK_TLVS = 0x200  # on an error message: extended-ack attributes follow
NLMSGERR_ATTR_MSG = 1
NLA_F_NESTED = 0x8000
_NLA_TYPE_MASK = 0x3FFF

# generic netlink controller (linux/genetlink.h)
GENL_ID_CTRL = 0x10
CTRL_CMD_GETFAMILY = 3
CTRL_ATTR_FAMILY_ID = 1
CTRL_ATTR_FAMILY_NAME = 2

IPVS_GENL_NAME = "IPVS"
IPVS_GENL_VERSION = 1

_NLMSGHDR = struct.Struct("=IHHII")
_GENLHDR = struct.Struct("=BBH")
_NLAHDR = struct.Struct("=HH")
_U16 = struct.Struct("=H")
_U32 = struct.Struct("=I")
_BE16 = struct.Struct("!H")
_FLAGS = struct.Struct("=II")
_ERRNO = struct.Struct("=i")


class Cmd(enum.IntEnum):
    NEW_SERVICE = 1
    SET_SERVICE = 2
    DEL_SERVICE = 3
    GET_SERVICE = 4
    NEW_DEST = 5
    SET_DEST = 6
    DEL_DEST = 7
    GET_DEST = 8


class CmdAttr(enum.IntEnum):
    SERVICE = 1
    DEST = 2


class SvcAttr(enum.IntEnum):
    AF = 1
    PROTOCOL = 2
    ADDR = 3
    PORT = 4
    FWMARK = 5
    SCHED_NAME = 6
    FLAGS = 7
    TIMEOUT = 8
    NETMASK = 9
    STATS = 10
    PE_NAME = 11
    STATS64 = 12


class DestAttr(enum.IntEnum):
    ADDR = 1
    PORT = 2
    FWD_METHOD = 3
    WEIGHT = 4
    U_THRESH = 5
    L_THRESH = 6
    ACTIVE_CONNS = 7
    INACT_CONNS = 8
    PERSIST_CONNS = 9
    STATS = 10
    ADDR_FAMILY = 11
    STATS64 = 12


class StatsAttr(enum.IntEnum):
    CONNS = 1
    INPKTS = 2
    OUTPKTS = 3
    INBYTES = 4
    OUTBYTES = 5


# --------------------------------------------------------------------- framing


def _align(n: int) -> int:
    return (n + 3) & ~3


def attr(kind: int, payload: bytes) -> bytes:
    """One attribute, padded to 4 bytes."""
    size = _NLAHDR.size + len(payload)
    return _NLAHDR.pack(size, kind) + payload + b"\0" * (_align(size) - size)


def nest(kind: int, *attrs: bytes) -> bytes:
    """A nested attribute holding ``attrs`` (already encoded)."""
    return attr(kind | NLA_F_NESTED, b"".join(attrs))


def message(kind: int, cmd: int, payload: bytes, *, seq: int, flags: int, version: int) -> bytes:
    """A generic-netlink message; the port id is 0 (the kernel fills ours in)."""
    size = _NLMSGHDR.size + _GENLHDR.size + len(payload)
    return _NLMSGHDR.pack(size, kind, flags, seq, 0) + _GENLHDR.pack(cmd, version, 0) + payload


def parse_attrs(data: bytes | memoryview) -> dict[int, bytes]:
    """Attribute type (flags stripped) -> payload. Truncated tails are ignored."""
    # hot in large dumps: bytes slices and local names beat memoryviews here
    data = bytes(data)
    unpack = _NLAHDR.unpack_from
    out: dict[int, bytes] = {}
    offset, end = 0, len(data)
    while offset + 4 <= end:
        size, kind = unpack(data, offset)
        if size < 4 or offset + size > end:
            break
        out[kind & _NLA_TYPE_MASK] = data[offset + 4 : offset + size]
        offset += (size + 3) & ~3
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class NetlinkMessage:
    """One received netlink message; ``payload`` excludes the 16-byte header."""

    kind: int
    flags: int
    seq: int
    payload: memoryview


def split_messages(buffer: bytes | memoryview) -> Iterator[NetlinkMessage]:
    """The messages in one datagram received from a netlink socket."""
    buffer = memoryview(buffer)
    offset = 0
    while offset + _NLMSGHDR.size <= len(buffer):
        size, kind, flags, seq, _pid = _NLMSGHDR.unpack_from(buffer, offset)
        if size < _NLMSGHDR.size or offset + size > len(buffer):
            raise ValueError(f"truncated netlink message at offset {offset}")
        yield NetlinkMessage(
            kind=kind, flags=flags, seq=seq, payload=buffer[offset + _NLMSGHDR.size : offset + size]
        )
        offset += _align(size)


def genl_attrs(msg: NetlinkMessage) -> dict[int, bytes]:
    """The top-level attributes of a generic-netlink message."""
    return parse_attrs(msg.payload[_GENLHDR.size :])


@dataclass(frozen=True, slots=True, kw_only=True)
class Ack:
    """The kernel's answer to one request: ``errno`` 0 means success."""

    seq: int
    errno: int
    message: str = ""


def parse_ack(msg: NetlinkMessage) -> Ack:
    """Decode an ``NLMSG_ERROR`` (or ``NLMSG_DONE``) message, extended ack included."""
    (error,) = _ERRNO.unpack_from(msg.payload, 0)
    text = ""
    if msg.kind == NLMSG_ERROR and msg.flags & NLM_F_ACK_TLVS:
        # the request's header is echoed, its payload too unless capped
        (orig_len,) = _U32.unpack_from(msg.payload, _ERRNO.size)
        echoed = _NLMSGHDR.size if msg.flags & NLM_F_CAPPED else _align(orig_len)
        tlvs = parse_attrs(msg.payload[_ERRNO.size + echoed :])
        if NLMSGERR_ATTR_MSG in tlvs:
            text = _cstring(tlvs[NLMSGERR_ATTR_MSG])
    return Ack(seq=msg.seq, errno=-error, message=text)


def _cstring(data: bytes | memoryview) -> str:
    return bytes(data).split(b"\0", 1)[0].decode("utf-8", "replace")


# --------------------------------------------------------------------- family lookup


def get_family_request(name: str, *, seq: int) -> bytes:
    """CTRL_CMD_GETFAMILY for ``name`` (the answer carries the family id)."""
    payload = attr(CTRL_ATTR_FAMILY_NAME, name.encode() + b"\0")
    return message(
        GENL_ID_CTRL, CTRL_CMD_GETFAMILY, payload, seq=seq, flags=NLM_F_REQUEST | NLM_F_ACK, version=1
    )


def family_id(msg: NetlinkMessage) -> int:
    """The family id in a CTRL_CMD_NEWFAMILY answer."""
    return _U16.unpack_from(genl_attrs(msg)[CTRL_ATTR_FAMILY_ID])[0]


# --------------------------------------------------------------------- requests

_ACK_REQUEST = NLM_F_REQUEST | NLM_F_ACK


def _addr(address: str) -> bytes:
    if ":" not in address:  # canonical IPv4 text; 10x faster than ipaddress
        return bytes(map(int, address.split(".")))
    return ipaddress.IPv6Address(address).packed


@functools.lru_cache(maxsize=4096)
def _service_key_nest(key: ServiceKey) -> bytes:
    # every destination request of a service repeats it
    return nest(CmdAttr.SERVICE, *_service_key_attrs(key))


def _service_key_attrs(key: ServiceKey) -> list[bytes]:
    attrs = [attr(SvcAttr.AF, _U16.pack(key.family))]
    if key.fwmark:
        return attrs + [attr(SvcAttr.FWMARK, _U32.pack(key.fwmark))]
    return attrs + [
        attr(SvcAttr.PROTOCOL, _U16.pack(key.protocol)),
        attr(SvcAttr.ADDR, _addr(key.address)),
        attr(SvcAttr.PORT, _BE16.pack(key.port)),
    ]


def _netmask(family: Family) -> int:
    # the kernel reads IPv6's netmask as a prefix length, IPv4's as a mask
    return 0xFFFFFFFF if family is Family.INET else 128


def _service_attrs(service: Service) -> bytes:
    return nest(
        CmdAttr.SERVICE,
        *_service_key_attrs(service.key),
        attr(SvcAttr.SCHED_NAME, service.scheduler.encode() + b"\0"),
        attr(SvcAttr.FLAGS, _FLAGS.pack(int(service.flags), 0xFFFFFFFF)),
        attr(SvcAttr.TIMEOUT, _U32.pack(service.timeout)),
        attr(SvcAttr.NETMASK, _U32.pack(_netmask(service.key.family))),
    )


def _dest_key_attrs(key: RealKey) -> list[bytes]:
    return [
        attr(DestAttr.ADDR_FAMILY, _U16.pack(Family.of(key.address))),
        attr(DestAttr.ADDR, _addr(key.address)),
        attr(DestAttr.PORT, _BE16.pack(key.port)),
    ]


# A full destination (family, address, port, forward method, weight, no
# thresholds) in one pack: a full sync encodes one per real.
_DEST_LAYOUTS = {n: struct.Struct(f"=HH HHH2x HH{n}s HH2s2x HHI HHI HHI HHI") for n in (4, 16)}


def _dest_attrs(real: Real) -> bytes:
    raw = _addr(real.key.address)
    layout = _DEST_LAYOUTS[len(raw)]
    return layout.pack(
        layout.size, CmdAttr.DEST | NLA_F_NESTED,
        6, DestAttr.ADDR_FAMILY, Family.INET if len(raw) == 4 else Family.INET6,
        4 + len(raw), DestAttr.ADDR, raw,
        6, DestAttr.PORT, _BE16.pack(real.key.port),
        8, DestAttr.FWD_METHOD, real.forward,
        8, DestAttr.WEIGHT, real.weight,
        8, DestAttr.U_THRESH, 0,
        8, DestAttr.L_THRESH, 0,
    )


IpvsOperation = AddService | UpdateService | DeleteService | AddReal | UpdateReal | DeleteReal


def encode_operation(op: IpvsOperation, *, family: int, seq: int) -> bytes:
    """The request (with NLM_F_ACK) that performs ``op``; ``family`` is the IPVS genl id."""
    match op:
        case AddService(service=s) | UpdateService(service=s):
            cmd = Cmd.NEW_SERVICE if isinstance(op, AddService) else Cmd.SET_SERVICE
            payload = _service_attrs(s)
        case DeleteService(service=key):
            cmd, payload = Cmd.DEL_SERVICE, _service_key_nest(key)
        case AddReal(service=key, real=r) | UpdateReal(service=key, real=r):
            cmd = Cmd.NEW_DEST if isinstance(op, AddReal) else Cmd.SET_DEST
            payload = _service_key_nest(key) + _dest_attrs(r)
        case DeleteReal(service=key, real=rk):
            cmd, payload = Cmd.DEL_DEST, _service_key_nest(key) + nest(CmdAttr.DEST, *_dest_key_attrs(rk))
        case _:
            raise TypeError(f"not an IPVS operation: {op!r}")
    return message(family, cmd, payload, seq=seq, flags=_ACK_REQUEST, version=IPVS_GENL_VERSION)


def dump_services_request(*, family: int, seq: int) -> bytes:
    return message(
        family, Cmd.GET_SERVICE, b"", seq=seq, flags=NLM_F_REQUEST | NLM_F_DUMP, version=IPVS_GENL_VERSION
    )


def dump_dests_request(key: ServiceKey, *, family: int, seq: int) -> bytes:
    payload = _service_key_nest(key)
    return message(
        family, Cmd.GET_DEST, payload, seq=seq, flags=NLM_F_REQUEST | NLM_F_DUMP, version=IPVS_GENL_VERSION
    )


# --------------------------------------------------------------------- dump replies


class Unrepresentable(ValueError):
    """A kernel object kglb-trio cannot model (SCTP, an unknown forward
    method or scheduler). It can only be foreign; the data plane leaves it alone."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Stats:
    conns: int = 0
    packets_in: int = 0
    packets_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceEntry:
    """A service from a dump; its counters are decoded on access (reads skip them)."""

    service: Service
    raw_stats: dict[int, bytes]

    @property
    def stats(self) -> Stats:
        return _stats(self.raw_stats, SvcAttr.STATS64, SvcAttr.STATS)


@dataclass(frozen=True, slots=True, kw_only=True)
class DestEntry:
    """A destination from a dump; its counters are decoded on access."""

    real: Real
    raw_stats: dict[int, bytes]
    active_conns: int = 0
    inactive_conns: int = 0

    @property
    def stats(self) -> Stats:
        return _stats(self.raw_stats, DestAttr.STATS64, DestAttr.STATS)


def _uint(data: memoryview | bytes) -> int:
    return int.from_bytes(data, sys.byteorder)


def _stats_attrs(attrs: dict[int, bytes], stats64: int, stats32: int) -> dict[int, bytes]:
    # just the two candidates, unparsed: decoding happens only if asked
    return {k: attrs[k] for k in (stats64, stats32) if k in attrs}


def _stats(attrs: dict[int, bytes], stats64: int, stats32: int) -> Stats:
    # STATS64 has 64-bit counters throughout; older kernels only send STATS
    nested = parse_attrs(attrs[stats64]) if stats64 in attrs else parse_attrs(attrs.get(stats32, b""))
    return Stats(
        conns=_uint(nested.get(StatsAttr.CONNS, b"")),
        packets_in=_uint(nested.get(StatsAttr.INPKTS, b"")),
        packets_out=_uint(nested.get(StatsAttr.OUTPKTS, b"")),
        bytes_in=_uint(nested.get(StatsAttr.INBYTES, b"")),
        bytes_out=_uint(nested.get(StatsAttr.OUTBYTES, b"")),
    )


def _address(family: int, raw: bytes) -> str:
    if family == Family.INET:
        return "%d.%d.%d.%d" % tuple(raw[:4])
    return str(ipaddress.IPv6Address(bytes(raw[:16])))


def decode_service(msg: NetlinkMessage) -> ServiceEntry:
    """A service from a GET_SERVICE dump reply; raises ``Unrepresentable``."""
    a = parse_attrs(genl_attrs(msg)[CmdAttr.SERVICE])
    family = _uint(a[SvcAttr.AF])
    if family not in (Family.INET, Family.INET6):
        raise Unrepresentable(f"address family {family}")
    fwmark = _uint(a[SvcAttr.FWMARK]) if SvcAttr.FWMARK in a else 0
    if fwmark:
        key = ServiceKey.for_fwmark(fwmark, Family(family))
    else:
        protocol = _uint(a[SvcAttr.PROTOCOL])
        if protocol not in (Protocol.TCP, Protocol.UDP):
            raise Unrepresentable(f"protocol {protocol}")
        key = ServiceKey(
            family=Family(family),
            protocol=Protocol(protocol),
            address=_address(family, a[SvcAttr.ADDR]),
            port=_BE16.unpack(a[SvcAttr.PORT])[0],
        )
    try:
        flags, _mask = _FLAGS.unpack(a[SvcAttr.FLAGS])
        service = Service(
            key=key,
            scheduler=_cstring(a[SvcAttr.SCHED_NAME]),
            flags=ServiceFlag(flags),
            timeout=_uint(a[SvcAttr.TIMEOUT]),
        )
    except ValueError as exc:
        raise Unrepresentable(f"{key}: {exc}") from None
    return ServiceEntry(service=service, raw_stats=_stats_attrs(a, SvcAttr.STATS64, SvcAttr.STATS))


def decode_dest(msg: NetlinkMessage, service_family: Family) -> DestEntry:
    """A destination from a GET_DEST dump reply; raises ``Unrepresentable``."""
    a = parse_attrs(genl_attrs(msg)[CmdAttr.DEST])
    family = _uint(a[DestAttr.ADDR_FAMILY]) if DestAttr.ADDR_FAMILY in a else service_family
    key = RealKey(address=_address(family, a[DestAttr.ADDR]), port=_BE16.unpack(a[DestAttr.PORT])[0])
    try:
        forward = ForwardMethod(_uint(a[DestAttr.FWD_METHOD]) & 0x7)  # IP_VS_CONN_F_FWD_MASK
        real = Real(key=key, weight=_uint(a[DestAttr.WEIGHT]), forward=forward)
    except ValueError as exc:
        raise Unrepresentable(f"destination {key}: {exc}") from None
    return DestEntry(
        real=real,
        raw_stats=_stats_attrs(a, DestAttr.STATS64, DestAttr.STATS),
        active_conns=_uint(a.get(DestAttr.ACTIVE_CONNS, b"")),
        inactive_conns=_uint(a.get(DestAttr.INACT_CONNS, b"")),
    )
