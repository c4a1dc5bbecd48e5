"""What the unprivileged side sends the writer process."""

from __future__ import annotations

from dataclasses import dataclass

from .._model import DataPlaneState

__all__ = ["StateFrame", "StopFrame"]


@dataclass(frozen=True, slots=True, kw_only=True)
class StateFrame:
    """The newest desired state; ``sequence`` grows by one per state sent (from 1).

    The writer reports the sequence of the state it applied, so the unprivileged
    side knows which of its states is in the kernel without getting it back.
    """

    sequence: int
    state: DataPlaneState

    def __post_init__(self) -> None:
        if not 0 < self.sequence < 2**64:
            raise ValueError(f"sequence out of range: {self.sequence}")


@dataclass(frozen=True, slots=True, kw_only=True)
class StopFrame:
    """Shut down gracefully. A closed socket is not a stop: the kernel is kept."""
