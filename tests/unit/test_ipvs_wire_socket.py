"""IpvsSocket over a fake kernel: pipelined requests, acks matched by sequence
number whatever their order, chunking, lost acks, dumps, family lookup."""

import errno
import struct

import pytest

from actors.dataplane._ipvs_socket import IpvsSocket
from kglb import AddReal, AddService, Real, RealKey, Service, ServiceKey
from kglb import _ipvs_wire as wire

FAMILY = 0x21
KEY = ServiceKey.tcp("10.0.0.1", 80)


def header(size, kind, flags, seq):
    return struct.pack("=IHHII", size, kind, flags, seq, 99)


def ack(seq, err=0):
    payload = struct.pack("=i", -err) + header(16, FAMILY, 5, seq)
    return header(16 + len(payload), wire.NLMSG_ERROR, wire.NLM_F_CAPPED, seq) + payload


class FakeKernel:
    """Answers like the kernel: one datagram per ack, handled inside send().

    ``refuse`` maps a request's index (in arrival order) to an errno;
    ``reverse`` queues each send's acks in reverse order; ``drop_after`` loses
    every ack after that many (the receive buffer overran: ENOBUFS).
    """

    def __init__(self, refuse=None, has_ipvs=True):
        self.refuse, self.has_ipvs = refuse or {}, has_ipvs
        self.reverse, self.drop_after = False, None
        self.sends, self.requests, self.queue = [], 0, []
        self.dumps = {}

    def setsockopt(self, *args):
        pass

    def bind(self, address):
        pass

    def settimeout(self, value):
        pass

    def setblocking(self, flag):
        pass

    def getsockopt(self, level, option):
        return 2 * 65536

    def close(self):
        pass

    def send(self, data):
        self.sends.append(len(data))
        answers = []
        for msg in wire.split_messages(data):
            if msg.kind == wire.GENL_ID_CTRL:
                answers += self._family(msg.seq)
            elif msg.flags & wire.NLM_F_DUMP == wire.NLM_F_DUMP:
                answers += [b"".join(self.dumps.get(msg.seq, [])) + _done(msg.seq)]
            else:
                answers.append(ack(msg.seq, self.refuse.get(self.requests, 0)))
                self.requests += 1
        if self.drop_after is not None:
            answers = answers[: self.drop_after] + [OSError(errno.ENOBUFS, "overrun")]
        self.queue += reversed(answers) if self.reverse else answers
        return len(data)

    def _family(self, seq):
        if not self.has_ipvs:
            return [ack(seq, errno.ENOENT)]
        attr = wire.attr(wire.CTRL_ATTR_FAMILY_ID, struct.pack("=H", FAMILY))
        return [header(20 + len(attr), wire.GENL_ID_CTRL, 0, seq) + b"\x01\x02\x00\x00" + attr, ack(seq)]

    def recv_into(self, buffer):
        if not self.queue:
            raise BlockingIOError
        item = self.queue.pop(0)
        if isinstance(item, OSError):
            raise item
        buffer[: len(item)] = item
        return len(item)


def _done(seq):
    return header(20, wire.NLMSG_DONE, wire.NLM_F_MULTI, seq) + struct.pack("=i", 0)


def requests(sock, count):
    ops = [AddService(service=Service(key=KEY))]
    ops += [AddReal(service=KEY, real=Real(key=RealKey(address=f"10.2.0.{i}", port=80), weight=1))
            for i in range(1, count)]
    out = []
    for op in ops:
        seq = sock.next_seq()
        out.append((seq, wire.encode_operation(op, family=sock.family, seq=seq)))
    return out


def test_family_is_resolved_at_open():
    assert IpvsSocket(FakeKernel()).family == FAMILY


def test_missing_ipvs_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match="modprobe ip_vs"):
        IpvsSocket(FakeKernel(has_ipvs=False))


def test_acks_in_any_order_are_matched_to_their_requests():
    kernel = FakeKernel(refuse={3: errno.EEXIST, 7: errno.ESRCH})
    sock = IpvsSocket(kernel)
    kernel.reverse = True
    reqs = requests(sock, 10)
    refused = sock.transact(reqs)
    assert kernel.sends[1:] == [sum(len(r) for _, r in reqs)]  # one send() for the whole batch
    assert refused == {
        reqs[3][0]: wire.Ack(seq=reqs[3][0], errno=errno.EEXIST),
        reqs[7][0]: wire.Ack(seq=reqs[7][0], errno=errno.ESRCH),
    }
    assert not kernel.queue


def test_batches_are_chunked_so_their_acks_fit_the_receive_buffer():
    kernel = FakeKernel()
    sock = IpvsSocket(kernel)
    sock._chunk_requests = 4  # noqa: SLF001 - as if the receive buffer held 4 acks
    reqs = requests(sock, 10)
    assert sock.transact(reqs) == {}
    assert len(kernel.sends) == 1 + 3
    assert not kernel.queue  # every ack was read


def test_lost_acks_are_reported_as_enobufs():
    kernel = FakeKernel()
    sock = IpvsSocket(kernel)
    kernel.drop_after = 6
    reqs = requests(sock, 10)
    refused = sock.transact(reqs)
    assert sorted(refused) == [seq for seq, _ in reqs[6:]]
    assert {ack.errno for ack in refused.values()} == {errno.ENOBUFS}


def test_dump_collects_replies_until_done():
    kernel = FakeKernel()
    sock = IpvsSocket(kernel)
    seq = sock.next_seq() + 1  # the dump takes the next number
    reply = wire.message(FAMILY, wire.Cmd.NEW_SERVICE, b"", seq=seq, flags=wire.NLM_F_MULTI, version=1)
    kernel.dumps[seq] = [reply, reply]
    replies = sock.dump(lambda s: wire.dump_services_request(family=FAMILY, seq=s))
    assert [(m.kind, m.seq) for m in replies] == [(FAMILY, seq), (FAMILY, seq)]
