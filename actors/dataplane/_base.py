"""The interfaces between the writer and what it drives: a data plane and a route speaker.

A ``DataPlane`` is the kernel as the writer sees it: IPVS services with their
reals, and VIP addresses on links. ``IpvsDataPlane`` (netlink) and
``MemoryDataPlane`` (a model that answers like the kernel, errno included)
implement it. Routes are not the data plane's business: they go to a
``RouteSpeaker`` (``MemorySpeaker`` by default, as kglb's no-op BGP module;
a BIRD-backed one elsewhere).

Errors are typed once, here: a refused operation is an ``OperationError``
carrying the operation and the kernel's errno. An ``OSError`` raised by a call
means the kernel (or the speaker) could not be reached at all: the writer logs
it, re-reads everything and retries. Anything else is a bug.
"""

from __future__ import annotations

import errno as _errno
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from kglb import DataPlaneState, Operation, RealKey, Route, ServiceKey


@dataclass(eq=True)
class OperationError(Exception):
    """The kernel (or the route speaker) refused ``op`` with ``errno``.

    ``errno`` is a positive errno number (17 EEXIST, 2 ENOENT, 3 ESRCH,
    99 EADDRNOTAVAIL, ...); ``message`` is free text for the log.
    """

    op: Operation
    errno: int
    message: str = ""

    def __str__(self) -> str:
        name = _errno.errorcode.get(self.errno, str(self.errno))
        text = self.message or os.strerror(self.errno)
        return f"{type(self.op).__name__} failed: {name} ({text})"


@dataclass(frozen=True, slots=True, kw_only=True)
class RealCounters:
    """IPVS counters of one destination. Packet counters may be 32-bit and wrap."""

    key: RealKey
    conns: int = 0
    packets_in: int = 0
    packets_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    active_conns: int = 0
    inactive_conns: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceCounters:
    """IPVS counters of one virtual service, with those of its reals (sorted by key)."""

    key: ServiceKey
    conns: int = 0
    packets_in: int = 0
    packets_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    reals: tuple[RealCounters, ...] = ()


@runtime_checkable
class DataPlane(Protocol):
    """The kernel's IPVS table and VIP addresses.

    Only the writer calls it, from one task, so implementations need no locks.
    """

    async def read(self) -> DataPlaneState:
        """Everything there: every IPVS service (foreign ones too) with its reals,
        and every address on the managed links. ``routes`` is always empty (routes
        belong to the ``RouteSpeaker``). Real hostnames are empty and ``provisional``
        is False: the kernel knows neither. Raises ``OSError`` if the kernel cannot
        be read."""
        ...

    async def apply(self, ops: Sequence[Operation]) -> list[OperationError]:
        """Apply IPVS and address operations, in order.

        Every operation is attempted even after a failure (an AddReal after a
        failed AddService then fails too, harmlessly); the failures are returned,
        in order, and nothing is raised for them. Route operations are not
        accepted (``TypeError``): they go to the ``RouteSpeaker``. After any
        failure the caller re-reads the kernel rather than guessing what ran.
        """
        ...

    async def counters(self) -> dict[ServiceKey, ServiceCounters]:
        """Current IPVS counters of every service (foreign ones included)."""
        ...

    # Optional: ``async def marked(self) -> frozenset[LinkAddress]``, the
    # addresses that carry this control plane's kernel-side mark (IpvsDataPlane:
    # IFA_PROTO). The writer owns them even when the ownership record is lost.

    async def aclose(self) -> None:
        """Release sockets and threads. The kernel state is left as it is."""
        ...


@runtime_checkable
class RouteSpeaker(Protocol):
    """Announces and withdraws this host's routes (kglb's BgpModule).

    ``announce`` and ``withdraw`` raise ``OperationError`` when refused. Routes
    are identified without their hold time; ``routes()`` returns them as they
    were announced (hold time included), so a withdrawal knows how long to wait.
    """

    async def announce(self, route: Route) -> None: ...

    async def withdraw(self, route: Route) -> None: ...

    async def routes(self) -> frozenset[Route]: ...

    def session_established(self) -> bool: ...
