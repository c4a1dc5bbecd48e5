"""IpvsDataPlane: the Linux kernel's IPVS table and VIP addresses, over netlink.

One dedicated OS thread creates, owns and closes the netlink sockets (a
``KernelSession``). Trio hands it whole calls (a batch of operations, a read)
through a ``queue.SimpleQueue``; the thread runs them one after another and
hands each result back with ``TrioToken.run_sync_soon``. There is never a
thread per call: pyroute2's sync API builds a new asyncio loop in every fresh
thread, and one owner thread measured 2x faster (shared/reference/libraries.md §4).
Counters are dumped by a second such thread, so that statistics never delay
a change of the data plane; reads go there too while the first thread is idle,
so the writer's periodic full read never delays an apply either.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

import outcome
import trio

from kglb import DataPlaneState, LinkAddress, Operation, ServiceKey

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

    ``counters()`` runs on a second thread with sockets of its own, started
    at its first call: a dump of 10k reals' counters (~0.15 s natively) must
    not hold up an ``apply`` queued behind it. ``read()`` runs there too,
    beside any apply (the writer throws away a read that overlapped one),
    unless an apply whose caller was cancelled is still unfinished: then it
    queues behind it on the first thread and sees all it did.
    """

    def __init__(self, links: Sequence[str] = ("lo",)) -> None:
        self._links = tuple(links)
        self._closed = False
        self._main = _NetlinkThread(self._links, "kglb-netlink")
        self._stats: _NetlinkThread | None = None
        self._reader = self._main  # the thread of the last read

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<IpvsDataPlane links={','.join(self._links)} {state}>"

    async def read(self) -> DataPlaneState:
        thread = self._main if self._main.abandoned else self._stats_thread()
        self._reader = thread
        return await self._call(thread, KernelSession.read)

    async def apply(self, ops: Sequence[Operation]) -> list[OperationError]:
        batch = tuple(ops)
        if not batch:
            return []
        return await self._call(self._main, lambda session: session.apply(batch))

    async def counters(self) -> dict[ServiceKey, ServiceCounters]:
        return await self._call(self._stats_thread(), KernelSession.counters)

    async def marked(self) -> frozenset[LinkAddress]:
        """The VIPs on the managed links that carry our kernel-side mark (IFA_PROTO)."""
        return await self._call(self._main, KernelSession.marked)

    async def unrepresentable(self) -> int:
        """How many kernel objects the last read skipped (SCTP services, unknown schedulers...)."""
        return await self._call(self._reader, lambda session: session.unrepresentable)

    def _stats_thread(self) -> _NetlinkThread | None:
        if self._stats is None and not self._closed:
            self._stats = _NetlinkThread(self._links, "kglb-netlink-stats")
        return self._stats

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        for thread in (self._main, self._stats):
            if thread is not None:
                await thread.aclose()

    async def _call(self, thread: _NetlinkThread | None, fn: Callable[[KernelSession], T]) -> T:
        if self._closed or thread is None:
            raise trio.ClosedResourceError("IpvsDataPlane is closed")
        return await thread.call(fn)


class _NetlinkThread:
    """One OS thread that owns one KernelSession and runs calls on it in order."""

    def __init__(self, links: tuple[str, ...], name: str) -> None:
        self._links = links
        self.abandoned = 0  # calls queued or running whose callers stopped waiting
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    async def call(self, fn: Callable[[KernelSession], T]) -> T:
        done = trio.Event()
        results: list[outcome.Outcome] = []

        def deliver(result: outcome.Outcome) -> None:
            if abandoned:
                self.abandoned -= 1
            results.append(result)
            done.set()

        abandoned = False
        self._jobs.put((fn, trio.lowlevel.current_trio_token(), deliver))
        try:
            await done.wait()
        except BaseException:
            # A cancelled caller stops waiting; the thread still finishes the call,
            # and the next call queues behind it (the writer re-reads after that).
            abandoned = not done.is_set()
            self.abandoned += abandoned
            raise
        return results[0].unwrap()

    async def aclose(self) -> None:
        self._jobs.put(None)
        # the thread finishes its queued calls first; closing sockets takes microseconds
        await trio.to_thread.run_sync(self._thread.join)

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
