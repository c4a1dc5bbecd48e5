"""The unprivileged side's writer: the same face as ``Writer``, the work in another process.

``WriterProxy.run(receive_states=...)`` sends each newest desired state as a
frame to the writer process and ends with a ``StopFrame`` when its input
closes (the graceful shutdown), returning once the writer reports it has
stopped. ``statistics()`` is rebuilt from the writer's reports; ``applied``
is the state we sent under the sequence the writer reports as applied.

The writer process is trusted by this side (it is the privileged one), but
its reports are still bounded and decoded, never evaluated. When it goes
away, ``on_lost`` is called: there is nothing useful to do without it (its
supervisor restarts the whole pair).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import replace

import structlog
import trio
from google.protobuf.message import DecodeError

from kglb import DataPlaneState
from kglb.privsep import MAX_FRAME, FrameError, FrameReader, StateFrame, StopFrame, encode_frame
from kglb.privsep import encode_to_writer

from .privsep_report import decode_report
from .writer import WriterStatistics, _drain

__all__ = ["RemoteSpeaker", "WriterProxy", "connect"]

log = structlog.get_logger("kglb_trio.writer_proxy")

_KEEP_SENT = 16
#: Every so many states the whole state is sent, not only what changed: a state
#: the writer could not decode (a bug) must not leave it behind for long.
_FULL_EVERY = 100


class WriterProxy:
    def __init__(self, stream: trio.abc.Stream, *, on_lost: Callable[[], None] = lambda: None,
                 max_frame: int = MAX_FRAME) -> None:
        self._stream = stream
        self._on_lost = on_lost
        self._reader = FrameReader(max_frame)  # outlives a crashed run: the stream stays in step
        self._send_lock = trio.Lock()
        self._sequence = 0
        self._previous: dict | None = None  # services of the last state sent
        self._sent: deque[tuple[int, DataPlaneState]] = deque(maxlen=_KEEP_SENT)
        self._stats = WriterStatistics()
        self._applied_sequence = 0
        self._stopped = trio.Event()
        self._lost = False

    def __repr__(self) -> str:
        s = self._stats
        return (f"<WriterProxy {s.manager_state} sent={self._sequence} "
                f"applied={self._applied_sequence} refused={dict(s.refused or {})}>")

    def statistics(self) -> WriterStatistics:
        return self._stats

    async def run(self, receive_states: trio.MemoryReceiveChannel[DataPlaneState], *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Forward states until ``receive_states`` closes, then stop the writer gracefully."""
        task_status.started()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._receive_reports)
            if self._sent:  # a run after a crash: the writer may have missed the newest
                await self._send(self._sent[-1][1], full=True)
            while True:
                try:
                    state = await receive_states.receive()
                except trio.EndOfChannel:
                    break
                state, closed = _drain(receive_states, state)
                await self._send(state)
                if closed:
                    break
            await self._send_frame(encode_to_writer(StopFrame()))
            await self._stopped.wait()
            nursery.cancel_scope.cancel()

    async def _send(self, state: DataPlaneState, *, full: bool = False) -> None:
        self._sequence += 1
        frame = StateFrame(sequence=self._sequence, state=state)
        previous = None if full or self._sequence % _FULL_EVERY == 1 else self._previous
        if previous is None:  # 10k reals take ~50 ms to encode: off the event loop
            payload = await trio.to_thread.run_sync(encode_to_writer, frame)
        else:
            payload = encode_to_writer(frame, previous)
        self._sent.append((self._sequence, state))
        self._previous = state.service_map()
        await self._send_frame(payload)

    async def _send_frame(self, payload: bytes) -> None:
        async with self._send_lock:
            try:
                await self._stream.send_all(encode_frame(payload))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._lose("cannot send to the writer process")
                await trio.sleep_forever()

    async def _receive_reports(self) -> None:
        try:
            while True:
                data = await self._stream.receive_some(1 << 16)
                if not data:
                    self._reader.end()
                    break
                for payload in self._reader.feed(data):
                    self._take(payload)
                    if self._stopped.is_set():
                        return
        except (FrameError, DecodeError, ValueError) as e:
            log.error("a report from the writer process is broken", error=str(e))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        self._lose("the writer process closed the connection")
        await trio.sleep_forever()

    def _take(self, payload: bytes) -> None:
        report = decode_report(payload)
        stats = report.stats
        if not report.with_counters:  # counters come only when read anew
            stats = replace(stats, counters=self._stats.counters, counters_at=self._stats.counters_at)
        else:
            stats = replace(stats, counters_at=trio.current_time())
        if report.applied_sequence != self._applied_sequence:
            self._applied_sequence = report.applied_sequence
            applied_at = trio.current_time()
        else:
            applied_at = self._stats.applied_at
        applied = next((s for q, s in self._sent if q == report.applied_sequence),
                       self._stats.applied)
        self._stats = replace(stats, applied=applied, applied_at=applied_at)
        if report.stopped:
            self._stopped.set()

    def _lose(self, why: str) -> None:
        if not self._lost:
            self._lost = True
            log.error(why + "; the kernel stays as it is")
            self._on_lost()


class RemoteSpeaker:
    """What the control plane asks the route speaker (the BGP session), answered from reports."""

    def __init__(self, proxy: WriterProxy) -> None:
        self._proxy = proxy

    def session_established(self) -> bool:
        return self._proxy.statistics().session_established


def connect(fd: int, *, on_lost: Callable[[], None]) -> tuple[WriterProxy, RemoteSpeaker]:
    """The proxy (and speaker view) on the socket inherited as ``fd`` (``--privsep-fd``)."""
    import socket

    sock = trio.socket.from_stdlib_socket(socket.socket(fileno=fd))
    proxy = WriterProxy(trio.SocketStream(sock), on_lost=on_lost)
    return proxy, RemoteSpeaker(proxy)
