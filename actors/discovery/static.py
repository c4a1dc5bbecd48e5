"""Static discovery: the configured hosts, once (names are resolved by the actor)."""

from __future__ import annotations

import trio

from kglb.config import BalancerConfig, StaticSource
from kglb.discovery import Endpoint

from ._base import Answer, Failure


async def run(source: StaticSource, config: BalancerConfig,
              send: trio.MemorySendChannel[Answer | Failure]) -> None:
    await send.send(Answer(endpoints=tuple(Endpoint(host=h, port=config.port)
                                           for h in source.hosts)))
    await trio.sleep_forever()
