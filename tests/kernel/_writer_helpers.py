"""Running a Writer over an IpvsDataPlane in kernel tests (real time, short intervals)."""

from contextlib import asynccontextmanager

import trio

from actors.dataplane.ipvs import IpvsDataPlane
from actors.writer import Writer


async def wait_until(predicate, timeout=15.0):
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.02)


class WriterRun:
    """A running writer: ``apply`` a state and wait for it; ``shutdown`` gracefully."""

    def __init__(self, writer, send, dataplane):
        self.writer, self.dataplane = writer, dataplane
        self._send = send
        self.graceful = False

    async def apply(self, state):
        applies = self.writer.statistics().applies
        await self._send.send(state)
        await wait_until(lambda: self.writer.statistics().applies > applies)

    async def shutdown(self):
        self.graceful = True
        await self._send.aclose()


@asynccontextmanager
async def running_writer(ownership_path, **options):
    """Yield a ``WriterRun``. Leaving the block after ``shutdown()`` waits for the
    graceful shutdown; otherwise the writer is cancelled (kernel left as is)."""
    dataplane = IpvsDataPlane()
    writer = Writer(dataplane, ownership_path=ownership_path, **options)
    send, receive = trio.open_memory_channel(1)
    run = WriterRun(writer, send, dataplane)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run, receive)
            yield run
            if not run.graceful:
                nursery.cancel_scope.cancel()
            with trio.fail_after(30):
                while nursery.child_tasks:
                    await trio.sleep(0.02)
    finally:
        await dataplane.aclose()
