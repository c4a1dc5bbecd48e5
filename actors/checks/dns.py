"""The dns check: one query over UDP or TCP; healthy iff the reply's rcode is the configured one.

dnspython builds the query (RD=1, class IN) and parses the reply; the I/O is
our own trio socket, so tunnelled DNS-over-TCP is marked before connect like
every other check. The query wire is built once per (name, type) and only
its ID is randomised per check. A fresh socket per check means a reply can
only be an answer to this query; its ID must still match (as kglb).
"""

from __future__ import annotations

import random
import socket
import struct
from functools import lru_cache

import dns.exception
import dns.message
import dns.rcode
import dns.rdatatype

from kglb import CheckResult, Protocol, ProbeTarget
from kglb.config import DnsCheck

from ._net import CheckFailure, SocketConn, connect_target, measured, read_exactly

_TC = 0x02  # the truncation bit, in the third byte of the header
_MAX_UDP_REPLY = 65535  # one datagram: the read is bounded by construction


async def check_dns(target: ProbeTarget, settings: DnsCheck) -> CheckResult:
    """Send the query, read one reply, compare ID and rcode."""
    return await measured(settings.timeout_ms, _exchange(target, settings))


@lru_cache(maxsize=1024)
def _query_wire(name: str, query_type: str) -> bytes:
    absolute = name if name.endswith(".") else name + "."
    return dns.message.make_query(absolute, dns.rdatatype.from_text(query_type)).to_wire()


def judge(reply: bytes, query_id: int, rcode: int) -> str:
    """The verdict on one reply: "ok", "id mismatch", "bad response" or "rcode NAME".

    A truncated reply (TC set) is judged by the rcode in its header.
    """
    if len(reply) < 12:
        return "bad response"
    if struct.unpack_from("!H", reply)[0] != query_id:
        return "id mismatch"
    try:
        found = dns.message.from_wire(reply).rcode()
    except dns.exception.DNSException:
        # Truncated (TC) with its records cut short: miekg/dns (kglb) returns such
        # a reply without an error and kglb judges its rcode; so do we, when its
        # header and question are whole.
        if not reply[2] & _TC:
            return "bad response"
        try:
            found = dns.message.from_wire(reply, question_only=True).rcode()
        except dns.exception.DNSException:
            return "bad response"
    return "ok" if found == rcode else f"rcode {dns.rcode.to_text(found)}"


async def _exchange(target: ProbeTarget, settings: DnsCheck) -> str:
    query_id = random.getrandbits(16)
    try:
        wire = _query_wire(settings.query, settings.query_type)
    except dns.exception.DNSException:  # e.g. a label over 63 bytes
        return "bad query"
    query = struct.pack("!H", query_id) + wire[2:]
    if settings.protocol is Protocol.UDP:
        if target.fwmark:  # the loader rejects dns-over-udp with enable_fwmarks
            raise CheckFailure("no tunnel")
        sock = await connect_target(target, kind=socket.SOCK_DGRAM)
        with sock:
            await sock.send(query)
            reply = await sock.recv(_MAX_UDP_REPLY)
        return judge(reply, query_id, settings.rcode)
    sock = await connect_target(target)
    with sock:
        conn = SocketConn(sock)
        await conn.send_all(struct.pack("!H", len(query)) + query)
        (size,) = struct.unpack("!H", await read_exactly(conn, 2))
        reply = await read_exactly(conn, size)
    return judge(reply, query_id, settings.rcode)
