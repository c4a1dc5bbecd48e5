"""The writer behind a socket (issue 18): the unprivileged side's proxy, the writer's server.

Both ends run here over a real socketpair, the writer on MemoryDataPlane. The
hostile-peer tests write raw bytes to the server's socket, as a compromised
unprivileged side could: each refusal is counted by reason, logged, and the
"kernel" is unchanged (problem 2 of the issue).
"""

from __future__ import annotations

import struct
from functools import partial

import pytest
import trio
from _control_fakes import FakeCheck, balancer_config

from actors.app import run_kglb
from actors.metrics import render_metrics
from actors.dataplane import MemoryDataPlane
from actors.privsep_report import decode_report
from actors.probes import Prober
from actors.writer import Writer
from actors.writer_proxy import RemoteSpeaker, WriterProxy
from actors.writer_server import WriterServer
from kglb import (
    DataPlaneState,
    LinkAddress,
    Real,
    RealKey,
    Service,
    ServiceKey,
    ServiceState,
)
from kglb.config import Config
from kglb.privsep import (
    REFUSAL_REASONS,
    FrameReader,
    StateFrame,
    StopFrame,
    allowed_by,
    encode_frame,
    encode_to_writer,
)

CONFIG = Config(balancers=(balancer_config(rise=1, fall=1),))
VIP = ServiceKey.tcp("10.0.0.1", 80)


def _pair():
    a, b = trio.socket.socketpair()
    return trio.SocketStream(a), trio.SocketStream(b)


class Side:
    """The writer process's half: a Writer on MemoryDataPlane behind a WriterServer."""

    def __init__(self, tmp_path, dp=None):
        self.dp = dp if dp is not None else MemoryDataPlane()
        self.writer = Writer(self.dp, ownership_path=tmp_path / "owned.json")
        self.server = WriterServer(self.writer, allowed_by(CONFIG), max_frame=1 << 16)
        self.stopped = trio.Event()

    async def run_writer(self, *, task_status=trio.TASK_STATUS_IGNORED):
        await self.writer.run(receive_states=self.server.receive_states, task_status=task_status)
        self.stopped.set()


def state(*weights, vip="10.0.0.1", key=VIP, extra=()):
    reals = tuple(Real(key=RealKey(address=f"10.1.0.{i + 1}", port=80), weight=w)
                  for i, w in enumerate(weights))
    return DataPlaneState(services=(ServiceState(service=Service(key=key), reals=reals),) + extra,
                          addresses=(LinkAddress(address=vip),))


async def _until(predicate, timeout=10):
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)


async def _control_plane_through_the_socket(nursery, side, wrap=lambda stream: stream):
    """run_kglb on the unprivileged side, its writer ``side``'s behind a socketpair:
    (its handle, the proxy's stream as ``wrap`` made it)."""
    await nursery.start(side.run_writer)
    ours, theirs = _pair()
    nursery.start_soon(partial(side.server.serve, theirs, stopped=side.stopped))
    stream = wrap(ours)
    proxy = WriterProxy(stream)
    return await nursery.start(partial(
        run_kglb, CONFIG, prober=Prober(check=FakeCheck(), jitter=0), writer=proxy,
        speaker=RemoteSpeaker(proxy))), stream


async def test_run_kglb_through_the_socket_applies_and_shuts_down_gracefully(tmp_path):
    side = Side(tmp_path)
    async with trio.open_nursery() as nursery:
        handle, _ = await _control_plane_through_the_socket(nursery, side)
        await _until(lambda: handle.statistics().writer.applied is not None
                     and handle.statistics().writer.applied == handle.statistics().desired
                     and any(r.weight for s in side.dp.state.services for r in s.reals))
        stats = handle.statistics()
        assert [s.key for s in side.dp.state.services] == [VIP]
        assert stats.writer.owned.services == frozenset({VIP})
        assert stats.writer.addresses == frozenset({LinkAddress(address="10.0.0.1")})
        assert stats.writer.manager_state == "available"
        handle.shutdown()
    # The StopFrame made the writer remove what it owned; the server saw no refusal.
    assert side.dp.state.services == () and side.dp.state.addresses == ()
    assert dict(side.server.refused()) == {}


class Tap(trio.abc.Stream):
    """The proxy's stream, with a way in for a frame of the test's between the proxy's own."""

    def __init__(self, stream):
        self.stream = stream
        self._lock = trio.Lock()

    async def send_all(self, data):
        async with self._lock:
            await self.stream.send_all(data)

    inject = send_all

    async def wait_send_all_might_not_block(self):
        await self.stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes=None):
        return await self.stream.receive_some(max_bytes)

    async def aclose(self):
        await self.stream.aclose()


def _refusal_lines(handle):
    text = render_metrics(handle.statistics()).decode()
    return {line for line in text.splitlines()
            if line.startswith("kglb_trio_privsep_refusals_total{")}


async def test_refusals_reach_the_unprivileged_sides_metrics(tmp_path):
    side = Side(tmp_path)
    async with trio.open_nursery() as nursery:
        handle, tap = await _control_plane_through_the_socket(nursery, side, wrap=Tap)
        await _until(lambda: handle.statistics().writer.refused is not None)
        # Every reason is a series from the first report on, at 0 (rate() works from the start).
        assert _refusal_lines(handle) == {
            f'kglb_trio_privsep_refusals_total{{reason="{r}"}} 0.0' for r in REFUSAL_REASONS}
        # What a compromised unprivileged side could slip in: garbage and a VIP of its own.
        await tap.inject(encode_frame(b"\xff\xfe garbage"))
        await tap.inject(encode_frame(encode_to_writer(
            StateFrame(sequence=1000, state=state(5, vip="10.0.0.2")))))
        await _until(lambda: sum((handle.statistics().writer.refused or {}).values()) == 2)
        lines = _refusal_lines(handle)
        assert 'kglb_trio_privsep_refusals_total{reason="garbage"} 1.0' in lines
        assert 'kglb_trio_privsep_refusals_total{reason="address not allowed"} 1.0' in lines
        assert 'kglb_trio_privsep_refusals_total{reason="oversized"} 0.0' in lines
        assert "10.0.0.2" not in {a.address for a in side.dp.state.addresses}
        nursery.cancel_scope.cancel()


async def test_no_refusal_metric_with_the_writer_in_process():
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(partial(
            run_kglb, CONFIG, prober=Prober(check=FakeCheck(), jitter=0),
            dataplane=MemoryDataPlane()))
        await _until(lambda: handle.statistics().writer.applied is not None)
        assert handle.statistics().writer.refused is None
        assert _refusal_lines(handle) == set()
        nursery.cancel_scope.cancel()


class Peer:
    """A hostile unprivileged side: raw bytes in, reports out."""

    def __init__(self, stream):
        self.stream = stream
        self.reader = FrameReader()
        self.reports = []

    async def send(self, message):
        await self.stream.send_all(encode_frame(encode_to_writer(message)))

    async def read_reports(self):
        try:
            while data := await self.stream.receive_some(1 << 16):
                self.reports += [decode_report(p) for p in self.reader.feed(data)]
        except trio.ClosedResourceError:  # the test closed its end: the peer "died"
            pass


async def _serving(nursery, tmp_path, dp=None):
    side = Side(tmp_path, dp)
    await nursery.start(side.run_writer)
    ours, theirs = _pair()
    done = trio.Event()

    async def serve():
        await side.server.serve(theirs, stopped=side.stopped)
        done.set()

    nursery.start_soon(serve)
    peer = Peer(ours)
    nursery.start_soon(peer.read_reports)
    return side, peer, done


async def test_garbage_foreign_and_outside_states_are_refused_and_the_kernel_is_unchanged(tmp_path):
    kube = ServiceState(service=Service(key=ServiceKey.tcp("10.96.0.1", 443)),
                        reals=(Real(key=RealKey(address="10.2.0.1", port=6443), weight=1),))
    # A foreign service (another tool's) already in the kernel.
    dp = MemoryDataPlane(DataPlaneState(services=(kube,)))
    async with trio.open_nursery() as nursery:
        side, peer, done = await _serving(nursery, tmp_path, dp)
        await peer.send(StateFrame(sequence=1, state=state(5, 5)))
        await _until(lambda: side.writer.statistics().applied is not None)
        kernel = side.dp.state
        applied = side.dp.attempts.copy()

        await peer.stream.send_all(encode_frame(b"\xff\xfe garbage"))
        await peer.send(StateFrame(sequence=2, state=state(5, 5, extra=(kube,))))  # foreign
        await peer.send(StateFrame(sequence=3, state=state(5, 5, vip="10.0.0.2")))  # outside VIP
        other = ServiceState(service=Service(key=ServiceKey.tcp("10.0.0.9", 80)))
        await peer.send(StateFrame(sequence=4, state=state(5, 5, extra=(other,))))
        await _until(lambda: sum(side.server.refused().values()) == 4)
        counted = {"garbage": 1, "service not allowed": 2, "address not allowed": 1}
        assert dict(side.server.refused()) == counted
        await _until(lambda: peer.reports and peer.reports[-1].stats.refused == counted)
        assert side.dp.state == kernel and side.dp.attempts == applied
        assert not done.is_set()  # a whole payload refused: the connection goes on

        await peer.send(StateFrame(sequence=5, state=state(7, 7)))
        await _until(lambda: {r.weight for r in side.dp.state.service_map()[VIP].reals} == {7})
        assert peer.reports[-1].applied_sequence in (1, 5)
        await _until(lambda: peer.reports[-1].applied_sequence == 5)
        assert side.dp.state.service_map()[kube.key] == kube  # foreign: never touched
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("tail, reason", [
    (struct.pack(">I", (1 << 16) + 1), "oversized"),
    (struct.pack(">I", 100) + b"only a part", "truncated"),
    (struct.pack(">I", 0), "empty"),
])
async def test_a_broken_stream_is_dropped_and_the_kernel_kept(tmp_path, tail, reason):
    async with trio.open_nursery() as nursery:
        side, peer, done = await _serving(nursery, tmp_path)
        await peer.send(StateFrame(sequence=1, state=state(5, 5)))
        await _until(lambda: side.writer.statistics().applied is not None)
        kernel = side.dp.state
        await peer.stream.send_all(tail)
        if reason == "truncated":
            await peer.stream.send_eof()
        await _until(done.is_set)
        assert dict(side.server.refused()) == {reason: 1}
        # No graceful stop: the kernel keeps serving what it had.
        await trio.sleep(0.2)
        assert side.dp.state == kernel and not side.server.stopping
        # A new connection (the restarted unprivileged side) carries on.
        ours, theirs = _pair()
        nursery.start_soon(partial(side.server.serve, theirs, stopped=side.stopped))
        peer2 = Peer(ours)
        nursery.start_soon(peer2.read_reports)
        await peer2.send(StateFrame(sequence=1, state=state(9, 9)))
        await _until(lambda: {r.weight for r in side.dp.state.service_map()[VIP].reals} == {9})
        await peer2.send(StopFrame())
        await _until(lambda: peer2.reports and peer2.reports[-1].stopped)
        assert side.dp.state.services == ()
        nursery.cancel_scope.cancel()


async def test_a_closed_peer_keeps_the_kernel(tmp_path):
    async with trio.open_nursery() as nursery:
        side, peer, done = await _serving(nursery, tmp_path)
        await peer.send(StateFrame(sequence=1, state=state(5, 5)))
        await _until(lambda: side.writer.statistics().applied is not None)
        kernel = side.dp.state
        await peer.stream.aclose()
        await _until(done.is_set)
        await trio.sleep(0.2)
        assert side.dp.state == kernel
        assert dict(side.server.refused()) == {} and not side.server.stopping
        nursery.cancel_scope.cancel()
