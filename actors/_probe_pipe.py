"""The messages between the Prober and its worker processes, and their framing.

Every message is a frozen dataclass that validates when built, on both sides
of the pipe (unpickling builds it again). Frames are length-prefixed pickles
of a batch (a tuple of commands, or one report): both ends are our own code
from the same installation, so pickle is safe here and is the cheapest
encoding of the targets.

Prober → worker: :class:`WatchCommand` (idempotent: replaces the probe's
watch) and :class:`UnwatchCommand` (an unknown id is ignored). Worker →
Prober: :class:`WorkerReport`, carrying :class:`WorkerResult`s already folded
by the worker (kglb.fold).
"""

from __future__ import annotations

import pickle
import struct
from collections.abc import Mapping
from dataclasses import dataclass

import trio

from kglb import ProbeTarget

_HEADER = struct.Struct("!I")


def _message(cls):
    return dataclass(frozen=True, slots=True, kw_only=True)(cls)


@_message
class WatchCommand:
    """Probe ``target`` as probe ``probe_id``, under the limiter named ``limiter``."""

    probe_id: int
    target: ProbeTarget
    interval: float  # seconds
    limiter: int  # the Prober's name for a limiter: probes with the same share it
    tokens: int  # that limiter's total, split over the workers by the worker
    quiet_after: int = 0

    def __post_init__(self) -> None:
        if self.probe_id < 0 or self.limiter < 0:
            raise ValueError("probe_id and limiter must be >= 0")
        if not self.interval > 0:
            raise ValueError("interval must be > 0")
        if self.tokens < 1 or self.quiet_after < 0:
            raise ValueError("tokens must be >= 1, quiet_after >= 0")
        if not isinstance(self.target, ProbeTarget):
            raise TypeError("target must be a ProbeTarget")


@_message
class UnwatchCommand:
    probe_id: int


@_message
class WorkerResult:
    """One ProbeResult of probe ``probe_id``, without its target (the Prober has it)."""

    probe_id: int
    passed: bool
    reason: str
    latency: float
    at: float  # when the newest check finished, on the worker's trio clock
    folded: tuple[float, ...] = ()  # the latencies of the earlier checks it stands for

    def __post_init__(self) -> None:
        if not self.reason:
            raise ValueError("a result needs a reason")
        if self.latency < 0:
            raise ValueError("latency must be >= 0")


@_message
class WorkerReport:
    """What a worker says, at least once a second."""

    results: tuple[WorkerResult, ...]
    in_flight: int
    missed: int  # intervals missed so far (cumulative)
    by_reason: Mapping[str, int]  # checks so far per reason (cumulative)
    clock: float  # the worker's trio clock minus ``time.perf_counter()``

    def __post_init__(self) -> None:
        if self.in_flight < 0 or self.missed < 0:
            raise ValueError("in_flight and missed must be >= 0")


def encode(obj: object) -> bytes:
    payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(payload)) + payload


class FrameReader:
    """Reads whole frames from a stream; ``receive()`` returns None at EOF."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buffer = bytearray()

    async def receive(self) -> object | None:
        while True:
            if len(self._buffer) >= _HEADER.size:
                (size,) = _HEADER.unpack_from(self._buffer)
                end = _HEADER.size + size
                if len(self._buffer) >= end:
                    frame = pickle.loads(self._buffer[_HEADER.size : end])
                    del self._buffer[:end]
                    return frame
            data = await self._stream.receive_some(1 << 20)
            if not data:
                return None
            self._buffer += data
