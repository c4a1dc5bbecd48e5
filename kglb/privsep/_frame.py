"""Length-prefixed frames on a byte stream, without I/O (sans-I/O, as h11).

A frame is a 4-byte big-endian length and that many bytes of payload. The
reader is fed whatever the socket returned and hands back whole payloads. A
length above ``max_size`` is refused as soon as its header arrives, before a
byte of it is buffered: a hostile peer cannot make the reader hold more than
``max_size + 4`` bytes. After a ``FrameError`` the stream is out of step and
the connection must be closed; a payload that arrived whole but does not
decode is refused by the codec, and the stream stays usable.
"""

from __future__ import annotations

import struct

__all__ = ["FRAME_REASONS", "FrameError", "FrameReader", "MAX_FRAME", "encode_frame"]

_HEADER = struct.Struct(">I")

#: The largest payload either side accepts. A desired state of 10k reals is
#: about 0.5 MB; 64 MiB leaves room for 100x that and still bounds memory.
MAX_FRAME = 64 << 20


#: Why a frame or payload is refused: a bounded set, so each is a metric label.
#: The first three break the stream (the connection is dropped), the others
#: are whole payloads the codec refuses (``decode_to_writer``).
FRAME_REASONS = ("oversized", "empty", "truncated", "garbage", "unknown message", "invalid state")


class FrameError(Exception):
    """A frame or payload refused. ``reason`` is one of ``FRAME_REASONS``."""

    def __init__(self, reason: str, detail: str = "") -> None:
        if reason not in FRAME_REASONS:
            raise ValueError(f"not a frame reason: {reason!r}")
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def encode_frame(payload: bytes, max_size: int = MAX_FRAME) -> bytes:
    """``payload`` with its length in front; ValueError if it is over ``max_size``."""
    if len(payload) > max_size:
        raise ValueError(f"payload of {len(payload)} bytes is over the bound of {max_size}")
    return _HEADER.pack(len(payload)) + payload


class FrameReader:
    """Splits a byte stream into payloads of at most ``max_size`` bytes."""

    __slots__ = ("_buffer", "_max_size", "_need")

    def __init__(self, max_size: int = MAX_FRAME) -> None:
        if max_size < 1:
            raise ValueError("max_size must be >= 1")
        self._max_size = max_size
        self._buffer = bytearray()
        self._need: int | None = None  # payload length of the frame being read

    def __repr__(self) -> str:
        return f"<FrameReader buffered={len(self._buffer)} need={self._need}>"

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Every payload that ``data`` completes, in order.

        Raises FrameError("oversized") for a length over the bound and
        FrameError("empty") for a zero length (no message encodes to nothing
        we send, so it is noise).
        """
        self._buffer += data
        out = []
        while True:
            if self._need is None:
                if len(self._buffer) < _HEADER.size:
                    return out
                (need,) = _HEADER.unpack_from(self._buffer)
                if need > self._max_size:
                    raise FrameError("oversized", f"{need} bytes, bound {self._max_size}")
                if need == 0:
                    raise FrameError("empty", "a frame of length 0")
                del self._buffer[:_HEADER.size]
                self._need = need
            if len(self._buffer) < self._need:
                return out
            out.append(bytes(self._buffer[:self._need]))
            del self._buffer[:self._need]
            self._need = None

    def end(self) -> None:
        """The peer closed the stream: FrameError("truncated") if a frame was cut short."""
        if self._need is not None or self._buffer:
            raise FrameError("truncated", f"{len(self._buffer)} bytes of an unfinished frame")
