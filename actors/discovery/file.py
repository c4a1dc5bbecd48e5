"""File discovery: a Prometheus file_sd JSON file, looked at every ``refreshMs``.

The file is reread when its identity (inode, size, modification time)
changed; otherwise the last answer is sent again, so that a removal held by
maxRemoveRatio is confirmed by the next look. A missing, unreadable, partial
or invalid file is a failure: the actor keeps the last good list.
"""

from __future__ import annotations

import os

import trio

from kglb.config import BalancerConfig, FileSource
from kglb.discovery import DiscoveryError, parse_file_sd

from ._base import Answer, Failure

#: A file_sd file larger than this is refused rather than read (10k targets take ~300 kB).
MAX_SIZE = 64 << 20


async def run(source: FileSource, config: BalancerConfig,
              send: trio.MemorySendChannel[Answer | Failure]) -> None:
    seen: tuple[int, int, int] | None = None
    last: Answer | Failure | None = None
    while True:
        try:
            stat = await trio.to_thread.run_sync(os.stat, source.path)
            identity = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
            if identity != seen or not isinstance(last, Answer):
                last = await _read(source.path, config.port)
                seen = identity
        except OSError as exc:
            last, seen = Failure(reason=f"{source.path}: {exc.strerror or exc}"), None
        await send.send(last)
        await trio.sleep(source.refresh_ms / 1000)


async def _read(path: str, port: int) -> Answer | Failure:
    def read() -> bytes:
        with open(path, "rb") as f:
            return f.read(MAX_SIZE + 1)

    data = await trio.to_thread.run_sync(read)
    if len(data) > MAX_SIZE:
        return Failure(reason=f"{path}: larger than {MAX_SIZE} bytes")
    try:
        return Answer(endpoints=parse_file_sd(data, port))
    except DiscoveryError as exc:
        return Failure(reason=f"{path}: {exc}")
