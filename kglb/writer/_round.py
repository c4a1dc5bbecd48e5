"""One round of the writer machine: its stages, and what it records ahead."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace

from .._model import AddAddress, AddService, DataPlaneState, LinkAddress, Operation, Owned, Route

__all__ = ["STAGE", "STAGES", "Round", "Trouble", "with_creations"]

#: Stage of each planner phase, in apply order.
STAGE = {0: "withdraw", 1: "build", 2: "build", 3: "build", 4: "announce",
         5: "delete", 6: "delete"}
STAGES = ("withdraw", "build", "announce", "delete")


@dataclass(frozen=True, slots=True)
class Trouble:
    """A failing group: consecutive failed rounds, and when it may try again."""

    failures: int
    retry_at: float


@dataclass(slots=True)
class Round:
    """A plan being applied stage by stage, and what happened to it so far."""

    before: DataPlaneState
    target: DataPlaneState
    stages: deque[tuple[str, list[Operation]]]
    done: list[Operation] = field(default_factory=list)
    groups: set[str] = field(default_factory=set)  # groups with operations this round
    failed: set[str] = field(default_factory=set)
    withdrawn: set[Route] = field(default_factory=set)
    complete: bool = True  # the whole plan runs: the model then equals the target


def with_creations(owned: Owned, ops: list[Operation]) -> Owned | None:
    """``owned`` plus what ``ops`` create: the record to write before applying them
    (None: they create nothing)."""
    services = {op.service.key for op in ops if isinstance(op, AddService)}
    addresses = {op.address for op in ops if isinstance(op, AddAddress)}
    if not services and not addresses:
        return None
    if services <= owned.services and addresses <= owned.addresses:
        return owned
    return replace(owned, services=owned.services | services,
                   addresses=owned.addresses | frozenset[LinkAddress](addresses))
