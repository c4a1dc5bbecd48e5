"""Privilege separation without I/O: frames, their codec, and the writer's admission rule.

The writer process holds CAP_NET_ADMIN and treats the unprivileged side as
untrusted: every frame is bounded (``FrameReader``), every payload decoded
into validated messages (``decode_to_writer``), and every desired state
checked against what the writer's own config allows (``admit``).
"""

from ._admission import ADMISSION_REASONS, REFUSAL_REASONS, Allowed, Problem, admit, allowed_by
from ._codec import (
    decode_to_writer,
    encode_to_writer,
    ip_of,
    key_of,
    link_of,
    put_ip,
    put_key,
    put_link,
    put_route,
    route_of,
)
from ._frame import FRAME_REASONS, MAX_FRAME, FrameError, FrameReader, encode_frame
from ._messages import StateFrame, StopFrame

__all__ = [
    "ADMISSION_REASONS",
    "FRAME_REASONS",
    "MAX_FRAME",
    "REFUSAL_REASONS",
    "Allowed",
    "FrameError",
    "FrameReader",
    "Problem",
    "StateFrame",
    "StopFrame",
    "admit",
    "allowed_by",
    "decode_to_writer",
    "encode_frame",
    "encode_to_writer",
    "ip_of",
    "key_of",
    "link_of",
    "put_ip",
    "put_key",
    "put_link",
    "put_route",
    "route_of",
]
