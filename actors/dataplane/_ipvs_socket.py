"""The IPVS generic-netlink socket: pipelined requests and dumps.

One thread owns an ``IpvsSocket`` (``IpvsDataPlane``'s netlink thread); it is
blocking and not thread-safe. Messages are built by ``kglb._ipvs_wire``.

Pipelining: the kernel handles every request of a ``send()`` before the call
returns and queues one ack per request on our socket, so a chunk of requests
costs one ``send()`` plus one ``recv()`` per ack, instead of a round trip each.
A chunk is sized so that all its acks fit in the receive buffer; an ack the
kernel could not queue is reported as ``ENOBUFS`` for its request.
"""

from __future__ import annotations

import errno
import itertools
import os
import socket
import struct
from collections.abc import Callable, Sequence

from kglb import _ipvs_wire as wire

NETLINK_GENERIC = 16
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10  # acks do not echo the request's payload
NETLINK_EXT_ACK = 11  # errors may carry a text message
SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33

_BUFFER_BYTES = 16 << 20
_ACK_TRUESIZE = 1024  # receive-buffer charge of one ack (an skb each), with margin
_RECV_BYTES = 1 << 18  # larger than any dump datagram
_PLAIN_ACK = struct.Struct("=IHHIIi16x")  # header, error, capped echo of the request header


class IpvsSocket:
    """A generic-netlink socket bound to the kernel's IPVS family.

    Raises ``FileNotFoundError`` at construction when the kernel has no IPVS
    family (ip_vs not loaded), ``PermissionError`` without CAP_NET_ADMIN (on
    the first request), ``OSError`` for anything else. ``sock`` stands in for
    the netlink socket (tests give a fake kernel).
    """

    def __init__(self, sock: socket.socket | None = None, *, timeout: float = 30.0) -> None:
        if sock is None:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC)
        try:
            for force, plain in ((SO_SNDBUFFORCE, socket.SO_SNDBUF), (SO_RCVBUFFORCE, socket.SO_RCVBUF)):
                try:  # the FORCE variants pass rmem_max/wmem_max; they need CAP_NET_ADMIN
                    sock.setsockopt(socket.SOL_SOCKET, force, _BUFFER_BYTES)
                except PermissionError:
                    sock.setsockopt(socket.SOL_SOCKET, plain, _BUFFER_BYTES)
            sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
            sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
            sock.bind((0, 0))
            sock.settimeout(timeout)
            self._timeout = timeout
            self._sock = sock
            self._seqs = itertools.count(1)
            self._buffer = bytearray(_RECV_BYTES)
            # getsockopt reports twice the usable size (the kernel's bookkeeping share)
            sndbuf = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) // 2
            rcvbuf = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
            self._chunk_bytes = max(4096, min(sndbuf - 4096, 1 << 20))
            self._chunk_requests = max(16, rcvbuf // _ACK_TRUESIZE)
            self.family = self._resolve_family()
        except BaseException:
            sock.close()
            raise

    def close(self) -> None:
        self._sock.close()

    def next_seq(self) -> int:
        return next(self._seqs) & 0xFFFFFFFF or next(self._seqs)

    def transact(self, requests: Sequence[tuple[int, bytes]]) -> dict[int, wire.Ack]:
        """Send ``(seq, request)`` pairs, pipelined; return the refused ones' acks by seq.

        Every request is acked; a request missing from the result succeeded.
        Raises ``OSError`` (``TimeoutError``) if the kernel stops answering: what
        ran is then unknown and the caller must re-read the kernel.
        """
        refused: dict[int, wire.Ack] = {}
        start = 0
        while start < len(requests):
            end, size = start, 0
            while end < len(requests) and end - start < self._chunk_requests:
                size += len(requests[end][1])
                if size > self._chunk_bytes and end > start:
                    break
                end += 1
            chunk = requests[start:end]
            self._sock.send(b"".join(data for _, data in chunk))
            self._collect_acks({seq for seq, _ in chunk}, refused)
            start = end
        return refused

    def _collect_acks(self, pending: set[int], refused: dict[int, wire.Ack]) -> None:
        buffer = self._buffer
        while pending:
            try:
                size = self._sock.recv_into(buffer)
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                self._acks_lost(pending, refused)
                return
            if size == _PLAIN_ACK.size:
                # the common case, one per request: a success (36 bytes with CAP_ACK)
                _, kind, _, seq, _, error = _PLAIN_ACK.unpack_from(buffer)
                if kind == wire.NLMSG_ERROR and error == 0:
                    pending.discard(seq)
                    continue
            for msg in wire.split_messages(bytes(buffer[:size])):
                self._take_ack(msg, pending, refused)

    def _acks_lost(self, pending: set[int], refused: dict[int, wire.Ack]) -> None:
        # the receive buffer overran; whatever acks it still holds are this chunk's
        self._sock.setblocking(False)
        try:
            messages = self._drain()
        finally:
            self._sock.settimeout(self._timeout)
        for msg in messages:
            self._take_ack(msg, pending, refused)
        for seq in pending:
            refused[seq] = wire.Ack(seq=seq, errno=errno.ENOBUFS, message="ack lost: outcome unknown")
        pending.clear()

    @staticmethod
    def _take_ack(msg: wire.NetlinkMessage, pending: set[int], refused: dict[int, wire.Ack]) -> None:
        if msg.kind == wire.NLMSG_ERROR and msg.seq in pending:
            pending.discard(msg.seq)
            ack = wire.parse_ack(msg)
            if ack.errno:
                refused[msg.seq] = ack

    def dump(self, build: Callable[[int], bytes]) -> list[wire.NetlinkMessage]:
        """Send the dump request ``build(seq)``; return its reply messages.

        Raises ``OSError`` with the kernel's errno if the dump is refused.
        """
        seq = self.next_seq()
        self._sock.send(build(seq))
        replies: list[wire.NetlinkMessage] = []
        while True:
            for msg in self._receive():
                if msg.seq != seq:
                    continue  # a late ack of an earlier, overrun chunk
                if msg.kind in (wire.NLMSG_DONE, wire.NLMSG_ERROR):
                    ack = wire.parse_ack(msg) if len(msg.payload) >= 4 else wire.Ack(seq=seq, errno=0)
                    if ack.errno:
                        raise OSError(ack.errno, ack.message or os.strerror(ack.errno))
                    if msg.kind == wire.NLMSG_DONE:
                        return replies
                    continue
                replies.append(msg)

    def _receive(self) -> list[wire.NetlinkMessage]:
        size = self._sock.recv_into(self._buffer)
        return list(wire.split_messages(bytes(self._buffer[:size])))

    def _drain(self) -> list[wire.NetlinkMessage]:
        messages: list[wire.NetlinkMessage] = []
        while True:
            try:
                messages += self._receive()
            except (BlockingIOError, InterruptedError):
                return messages

    def _resolve_family(self) -> int:
        seq = self.next_seq()
        self._sock.send(wire.get_family_request(wire.IPVS_GENL_NAME, seq=seq))
        family = None
        while True:
            for msg in self._receive():
                if msg.seq != seq:
                    continue
                if msg.kind == wire.NLMSG_ERROR:
                    ack = wire.parse_ack(msg)
                    if ack.errno == errno.ENOENT:
                        raise FileNotFoundError(
                            errno.ENOENT, "the kernel has no IPVS netlink family: load ip_vs (modprobe ip_vs)"
                        )
                    if ack.errno:
                        raise OSError(ack.errno, ack.message or os.strerror(ack.errno))
                    if family is None:
                        raise OSError(errno.EPROTO, "no family id in the answer")
                    return family
                if msg.kind == wire.GENL_ID_CTRL:
                    family = wire.family_id(msg)
