"""The writer's end of the socket: untrusted frames in, reports out (issue 18).

``WriterServer`` sits between one peer connection (the unprivileged side) and
a ``Writer`` running in this process. Every frame is bounded and decoded by
``kglb.privsep``; every desired state is admitted against the config this
process read itself (``kglb.privsep.admit``). A refused frame or state is
logged and counted by reason (one of ``REFUSAL_REASONS``; the reports carry
the counts to the unprivileged side's metrics) and changes nothing: the
writer keeps working on the last admitted state. A broken frame (oversized,
truncated) leaves the stream out of step, so the connection is dropped; a
payload that arrived whole but is garbage or not allowed is refused and the
connection goes on.

A closed connection is not a shutdown: the kernel stays as it is and the
server waits for the next connection. Only a ``StopFrame`` closes the
writer's input, which makes it shut down gracefully.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from types import MappingProxyType

import structlog
import trio

from kglb import DataPlaneState
from kglb.privsep import (
    MAX_FRAME,
    Allowed,
    FrameError,
    FrameReader,
    StopFrame,
    admit,
    decode_to_writer,
    encode_frame,
)

from .privsep_report import encode_report
from .writer import Writer

__all__ = ["REPORT_INTERVAL", "WriterServer"]

log = structlog.get_logger("kglb_trio.writer_server")

#: Reports go at most this often (the status API reads them; 10 a second is plenty).
REPORT_INTERVAL = 0.1
_RECEIVE = 1 << 16
_KEEP_SENT = 16  # recent admitted states, to name the one the writer applied


class WriterServer:
    """Feeds ``writer`` from peer connections; ``receive_states`` is the writer's input."""

    def __init__(self, writer: Writer, allowed: Allowed, *, max_frame: int = MAX_FRAME) -> None:
        self.writer = writer
        self.allowed = allowed
        self._max_frame = max_frame
        # One state in flight, as in process: the writer drains to the newest.
        self._send_states, self.receive_states = trio.open_memory_channel[DataPlaneState](1)
        self._admitted: deque[tuple[int, DataPlaneState]] = deque(maxlen=_KEEP_SENT)
        self._refused: Counter[str] = Counter()
        self.stopping = False
        self.connections = 0
        self._base: dict = {}

    def __repr__(self) -> str:
        return (f"<WriterServer connections={self.connections} refused={dict(self._refused)} "
                f"stopping={self.stopping}>")

    def refused(self):
        """Frames and states refused so far, by reason (an immutable snapshot)."""
        return MappingProxyType(dict(self._refused))

    def stop(self) -> None:
        """Close the writer's input: it shuts down gracefully (idempotent)."""
        self.stopping = True
        self._send_states.close()

    async def serve(self, stream: trio.abc.Stream, *, stopped: trio.Event | None = None) -> None:
        """Serve one connection until it closes, breaks, or the writer has stopped.

        ``stopped`` is set by the caller once the writer's run returned; the
        last report then says so and this returns.
        """
        self.connections += 1
        stopped = stopped if stopped is not None else trio.Event()
        async with stream, trio.open_nursery() as nursery:
            nursery.start_soon(self._report_loop, stream, stopped, nursery.cancel_scope)
            await self._receive_loop(stream)
            if not self.stopping:
                nursery.cancel_scope.cancel()
        log.info("peer connection ended", stopping=self.stopping)

    async def _receive_loop(self, stream: trio.abc.Stream) -> None:
        reader = FrameReader(self._max_frame)
        self._base = {}  # the services of the last state decoded on this connection
        try:
            while True:
                data = await stream.receive_some(_RECEIVE)
                if not data:
                    reader.end()
                    log.warning("the unprivileged side closed its end; the kernel stays as it is")
                    return
                for payload in reader.feed(data):
                    await self._handle(payload)
        except FrameError as e:
            self._refuse(e.reason, e.detail)  # the stream is out of step: drop it
        except (trio.BrokenResourceError, trio.ClosedResourceError) as e:
            log.warning("the connection broke; the kernel stays as it is", error=str(e))

    async def _handle(self, payload: bytes) -> None:
        try:
            message = decode_to_writer(payload, self._base)
        except FrameError as e:
            self._refuse(e.reason, e.detail)
            return
        if isinstance(message, StopFrame):
            log.info("graceful stop asked by the unprivileged side")
            self.stop()
            return
        self._base = message.state.service_map()
        if self.stopping:
            return
        problems = admit(message.state, self.allowed)
        if problems:
            # Counted once per state, under its first problem's reason; all are logged.
            self._refuse(problems[0].reason, "; ".join(map(str, problems[:5])),
                         problems=len(problems))
            return
        self._admitted.append((message.sequence, message.state))
        await self._send_states.send(message.state)

    def _refuse(self, reason: str, detail: str, **extra) -> None:
        self._refused[reason] += 1
        log.error("frame refused; the kernel is unchanged", reason=reason, detail=detail[:500],
                  **extra)

    def applied_sequence(self) -> int:
        """The sequence of the admitted state the writer applied last (0: none we know)."""
        applied = self.writer.statistics().applied
        if applied is None:
            return 0
        for sequence, state in reversed(self._admitted):
            if state is applied or state == applied:
                return sequence
        return 0

    async def _report_loop(self, stream: trio.abc.Stream, stopped: trio.Event,
                           scope: trio.CancelScope) -> None:
        last = None
        counters_at = math.nan
        sequence = 0
        refused: dict = {}
        while True:
            done = stopped.is_set()
            stats = self.writer.statistics()
            if stats.applied_at != (last.applied_at if last else None):
                sequence = self.applied_sequence() or sequence
            if done or stats is not last or refused != self._refused:
                with_counters = stats.counters_at != counters_at
                payload = encode_report(stats, applied_sequence=sequence,
                                        refused=dict(self._refused), stopped=done,
                                        with_counters=with_counters)
                try:
                    await stream.send_all(encode_frame(payload))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    scope.cancel()
                    return
                last, refused = stats, dict(self._refused)
                if with_counters:
                    counters_at = stats.counters_at
            if done:
                scope.cancel()
                return
            with trio.move_on_after(REPORT_INTERVAL):
                await stopped.wait()
