"""Framing between the Prober and its worker processes: length-prefixed pickles.

Both ends are our own code from the same installation, so pickle is safe
here and is the cheapest encoding of the targets (frozen dataclasses).
Frames are batches: one pickle per batch of commands or results.

Commands (Prober → worker), a list of:
  ("watch", id, target, interval, limiter_key, limiter_tokens, quiet_after)
                                                   (idempotent: replaces)
  ("unwatch", id)                                               (unknown id: ignored)
Reports (worker → Prober): (results, in_flight, missed, by_reason, clock),
by_reason the worker's checks so far per reason (cumulative), clock the
worker's trio clock minus ``time.perf_counter()``, and results a list of
(id, passed, reason, latency, folded, at): ProbeResults already folded by the
worker (kglb.fold), ``folded`` the latencies of the earlier checks, ``at`` when
the newest check finished, on the worker's trio clock.
"""

from __future__ import annotations

import pickle
import struct

import trio

_HEADER = struct.Struct("!I")


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
