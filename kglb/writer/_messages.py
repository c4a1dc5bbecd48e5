"""What goes in and out of the writer machine: events, actions, named states.

Events carry ``now`` (trio time, read by the actor): the machine never reads
a clock. Actions are plain frozen data, so the actor that carries them out
can later sit behind a socket (issue 18) without changing the machine.
"""

from __future__ import annotations

import enum
import errno as _errno
from dataclasses import dataclass

from .._model import DataPlaneState, Operation, Owned

_frozen = dataclass(frozen=True, slots=True, kw_only=True)


class ManagerState(enum.StrEnum):
    """kglb's data_plane manager_state (a str, so metrics and JSON print it as is)."""

    INITIAL = "initial"  # nothing applied yet
    AVAILABLE = "available"  # every group applied its part of the newest state
    SET_STATE_FAILED = "set_state_failed"  # a group failed more than ``retries`` times in a row
    SHUTDOWN_FAILED = "shutdown_failed"  # the graceful shutdown could not remove everything


class Phase(enum.StrEnum):
    """What the machine waits for."""

    IDLE = "idle"  # for a desired state, a timer or a read beside it
    APPLYING = "applying"  # for the result of an ``Apply``
    READING = "reading"  # for a kernel read nothing may be applied beside
    STOPPED = "stopped"  # done: the actor returns


# --------------------------------------------------------------------- events


def _check_now(now: float) -> None:
    if now != now:  # NaN
        raise ValueError("now is NaN")


@_frozen
class Desired:
    """The generator's newest desired state."""

    state: DataPlaneState
    now: float

    def __post_init__(self) -> None:
        _check_now(self.now)


@_frozen
class Failure:
    """One operation the kernel or the speaker refused, with its errno (0: none known)."""

    op: Operation
    errno: int

    def __post_init__(self) -> None:
        if self.errno < 0:
            raise ValueError("errno must be >= 0")

    def __str__(self) -> str:
        return f"{type(self.op).__name__}: {_errno.errorcode.get(self.errno, self.errno)}"


@_frozen
class Applied:
    """The result of the last ``Apply``: what took effect and what was refused.

    ``unreachable`` is the errno when the kernel or speaker could not be reached
    at all (nothing is known of what ran); 0 otherwise.
    """

    done: tuple[Operation, ...] = ()
    failed: tuple[Failure, ...] = ()
    unreachable: int = 0
    now: float

    def __post_init__(self) -> None:
        _check_now(self.now)


@_frozen
class KernelRead:
    """The result of a ``ReadKernel``: the state (routes from the speaker), or None
    and the errno when it could not be read."""

    token: int
    state: DataPlaneState | None
    errno: int = 0
    now: float

    def __post_init__(self) -> None:
        _check_now(self.now)
        if self.state is None and self.errno <= 0:
            raise ValueError("a failed read needs an errno")


@_frozen
class TimerDue:
    """The deadline of the last ``ArmTimer`` has passed."""

    now: float


@_frozen
class Stop:
    """The input closed: shut down gracefully (``keep``: leave everything in place)."""

    keep: bool = False
    now: float


Event = Desired | Applied | KernelRead | TimerDue | Stop


# --------------------------------------------------------------------- actions


@_frozen
class Record:
    """Write the ownership record durably (write, fsync, rename) before going on.

    Written ahead of every apply that creates something (``owned`` then includes
    what is about to be created) and after it to confirm what exists."""

    owned: Owned


@_frozen
class Apply:
    """Apply ``ops`` (one stage: all of one kind of speaker or data-plane
    operations, in order), then report ``Applied``."""

    stage: str
    ops: tuple[Operation, ...]

    def __post_init__(self) -> None:
        if not self.ops:
            raise ValueError("an Apply needs operations")


@_frozen
class ReadKernel:
    """Read the data plane and the speaker's routes, then report ``KernelRead``.

    ``aside``: nothing depends on it yet, so it may run beside applies (the
    machine throws it away if one happened meanwhile)."""

    token: int
    aside: bool = False


@_frozen
class ArmTimer:
    """Send ``TimerDue`` at ``at`` (replaces the previous timer; inf: none)."""

    at: float


Action = Record | Apply | ReadKernel | ArmTimer
