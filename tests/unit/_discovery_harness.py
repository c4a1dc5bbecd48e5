"""Running one discovery actor in a test and waiting for what it sends."""

from __future__ import annotations

import math
from contextlib import asynccontextmanager
from functools import partial

import trio

from _control_fakes import balancer_config
from actors.discovery import DiscoveryMemory, run_discovery


class Discovered:
    """The lists one discovery actor sent, newest last."""

    def __init__(self, receive, memory: DiscoveryMemory) -> None:
        self.receive = receive
        self.memory = memory
        self.lists = []

    @property
    def last(self):
        return self.lists[-1]

    def reals(self, endpoints=None) -> set[tuple[str, str | None, int]]:
        return {(e.host, e.address, e.port) for e in (endpoints or self.last)}

    async def wait_for(self, predicate, timeout: float = 10.0):
        """The first list (from the newest already sent on) for which ``predicate(reals)``."""
        with trio.fail_after(timeout):
            if self.lists and predicate(self.reals()):
                return self.last
            while True:
                self.lists.append(await self.receive.receive())
                if predicate(self.reals()):
                    return self.last

    async def wait_status(self, predicate, timeout: float = 10.0):
        with trio.fail_after(timeout):
            while not predicate(self.memory.status()):
                await trio.sleep(0.01)
            return self.memory.status()


@asynccontextmanager
async def discovering(source, memory: DiscoveryMemory | None = None, **config):
    """Run a discovery actor for a balancer with ``source``; yields a Discovered."""
    config.setdefault("hosts", ())
    balancer = balancer_config(source=source, **config)
    memory = memory or DiscoveryMemory()
    send, receive = trio.open_memory_channel(math.inf)
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(run_discovery, balancer, memory=memory, send=send))
        yield Discovered(receive, memory)
        nursery.cancel_scope.cancel()
