"""What a source sends to its discovery actor: a complete answer, or why it has none."""

from __future__ import annotations

from dataclasses import dataclass

from kglb.discovery import Endpoint


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """Every real the source lists now (possibly none)."""

    endpoints: tuple[Endpoint, ...]

    def __post_init__(self) -> None:
        if not all(isinstance(e, Endpoint) for e in self.endpoints):
            raise TypeError("an Answer holds Endpoints")


@dataclass(frozen=True, slots=True, kw_only=True)
class Failure:
    """The source could not be read; ``reason`` is short and says why."""

    reason: str

    def __post_init__(self) -> None:
        if not self.reason:
            raise ValueError("a Failure needs a reason")
