"""IpvsDataPlane: the Linux kernel's IPVS table and VIP addresses, over netlink.

One dedicated OS thread creates, owns and closes the netlink sockets (a
``KernelSession``). Trio hands it whole calls (a batch of operations, a read)
through a ``queue.SimpleQueue``; the thread runs them one after another and
hands each result back with ``TrioToken.run_sync_soon``. There is never a
thread per call: pyroute2's sync API builds a new asyncio loop in every fresh
thread, and one owner thread measured 2x faster (shared/reference/libraries.md §4).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

import outcome
import trio

from kglb import DataPlaneState, Operation, ServiceKey

from ._base import OperationError, ServiceCounters
from ._ipvs_kernel import KernelSession

T = TypeVar("T")
_Job = tuple[Callable[[KernelSession], object], trio.lowlevel.TrioToken, Callable[[outcome.Outcome], None]]


class IpvsDataPlane:
    """The real kernel, as a ``DataPlane``.

    ``links`` are the interfaces whose addresses ``read()`` reports and where
    VIPs may be added (default: ``lo``). The netlink thread starts here; if
    the sockets cannot be opened (no ip_vs, no CAP_NET_ADMIN), every call
    raises that ``OSError``. Run ``actors.preflight`` first for a clear message.
    """

    def __init__(self, links: Sequence[str] = ("lo",)) -> None:
        self._links = tuple(links)
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="kglb-netlink", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<IpvsDataPlane links={','.join(self._links)} {state}>"

    async def read(self) -> DataPlaneState:
        return await self._call(KernelSession.read)

    async def apply(self, ops: Sequence[Operation]) -> list[OperationError]:
        batch = tuple(ops)
        if not batch:
            return []
        return await self._call(lambda session: session.apply(batch))

    async def counters(self) -> dict[ServiceKey, ServiceCounters]:
        return await self._call(KernelSession.counters)

    async def unrepresentable(self) -> int:
        """How many kernel objects the last read skipped (SCTP services, unknown schedulers...)."""
        return await self._call(lambda session: session.unrepresentable)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._jobs.put(None)
        # the thread finishes its queued calls first; closing sockets takes microseconds
        await trio.to_thread.run_sync(self._thread.join)

    async def _call(self, fn: Callable[[KernelSession], T]) -> T:
        if self._closed:
            raise trio.ClosedResourceError("IpvsDataPlane is closed")
        done = trio.Event()
        results: list[outcome.Outcome] = []

        def deliver(result: outcome.Outcome) -> None:
            results.append(result)
            done.set()

        self._jobs.put((fn, trio.lowlevel.current_trio_token(), deliver))
        # A cancelled caller stops waiting; the thread still finishes the call,
        # and the next call queues behind it (the writer re-reads after that).
        await done.wait()
        return results[0].unwrap()

    def _serve(self) -> None:
        opened = outcome.capture(KernelSession, self._links)
        while (job := self._jobs.get()) is not None:
            fn, token, deliver = job
            if isinstance(opened, outcome.Value):
                result = outcome.capture(fn, opened.value)
            else:
                result = outcome.Error(_reopenable(opened.error))
            try:
                token.run_sync_soon(deliver, result)
            except trio.RunFinishedError:
                pass  # the caller's trio run has ended; nobody waits for this result
        if isinstance(opened, outcome.Value):
            opened.value.close()


def _reopenable(error: BaseException) -> BaseException:
    # every call re-raises the same open error; give each its own traceback
    return type(error)(*error.args) if isinstance(error, OSError) else error
