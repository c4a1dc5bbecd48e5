"""etcd discovery: every key under a prefix is one real (etcd v3's JSON gateway, over httpx).

Theory of operation. A range read lists the prefix and gives its revision;
a watch from the next revision streams every change after it, and each batch
of events sends the whole list again. When the connection breaks (etcd
restarted, a network fault) the watch resumes from the last revision seen, on
the next endpoint, so nothing is missed and nothing is listed twice; when
that revision was compacted meanwhile, etcd cancels the watch and the prefix
is listed again. While etcd cannot be reached the source reports failures and
the actor keeps the last list.

A value is ``"host:port"``, ``"host"`` (the discovery port) or
``{"host": …, "port": …, "weight": …}``; a key with an invalid value is left
out and logged. The list is also sent again every ``HEARTBEAT`` seconds so that
a large removal held by maxRemoveRatio gets its confirming second answer.
"""

from __future__ import annotations

import base64
import json

import httpx
import structlog
import trio

from kglb.config import BalancerConfig, EtcdSource
from kglb.discovery import DiscoveryError, Endpoint, parse_etcd_value

from ._base import Answer, Failure

log = structlog.get_logger()

HEARTBEAT = 5.0
#: Reconnect backoff: first wait, doubling up to the maximum.
BACKOFF = 0.2
MAX_BACKOFF = 5.0
#: Connecting and each range read give up after this long (a watch waits forever).
TIMEOUT = 5.0


class Compacted(Exception):
    """The watch's start revision was compacted: list again."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def prefix_end(prefix: bytes) -> bytes:
    """The smallest key after every key starting with ``prefix`` (etcd's range_end)."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"  # every key


class _Mirror:
    """The prefix as last read: key -> endpoint (None: an invalid value)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reals: dict[bytes, Endpoint | None] = {}
        self.revision = 0
        self.listed = False
        self.healthy = False  # listed and watching: the list is etcd's
        self._changed = trio.Event()

    def changed(self) -> None:
        """The list changed: the sender sends it (once for a burst of changes)."""
        self._changed.set()

    async def wait_changed(self, timeout: float) -> bool:
        """Wait for a change (True) or ``timeout`` (False)."""
        with trio.move_on_after(timeout):
            await self._changed.wait()
            self._changed = trio.Event()
            return True
        return False

    def put(self, key: bytes, value: bytes) -> None:
        try:
            self.reals[key] = parse_etcd_value(value, self.port)
        except DiscoveryError as exc:
            if self.reals.get(key, 0) is not None:  # log a bad value once
                log.warning("etcd value is not a real; left out", key=key.decode(errors="replace"),
                            reason=str(exc))
            self.reals[key] = None

    def answer(self) -> Answer:
        return Answer(endpoints=tuple(e for e in self.reals.values() if e is not None))


async def run(source: EtcdSource, config: BalancerConfig,
              send: trio.MemorySendChannel[Answer | Failure]) -> None:
    mirror = _Mirror(config.port)
    async with httpx.AsyncClient(timeout=httpx.Timeout(TIMEOUT, read=None)) as client, \
            trio.open_nursery() as nursery:
        nursery.start_soon(_sender, mirror, send)
        index, delay = 0, BACKOFF
        while True:
            base = source.endpoints[index % len(source.endpoints)]
            try:
                if not mirror.listed:
                    await _list(client, base, source.prefix.encode(), mirror)
                    mirror.healthy = True
                    mirror.changed()
                await _watch(client, base, source.prefix.encode(), mirror)
                reason = "watch stream ended"
            except Compacted:
                log.info("etcd revision compacted; listing the prefix again",
                         revision=mirror.revision)
                mirror.listed = False
                continue
            except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
                reason = f"{base}: {type(exc).__name__}: {exc}"[:300]
            # A source that was serving retries at once; one that keeps failing, slower.
            delay = BACKOFF if mirror.healthy else min(delay * 2, MAX_BACKOFF)
            mirror.healthy = False
            await send.send(Failure(reason=reason))
            index += 1
            await trio.sleep(delay)


async def _sender(mirror: _Mirror, send) -> None:
    # One task sends, the watch only marks: reading a burst of events never
    # waits for the (O(reals)) list to be built and handled once per event.
    # Without a change the list is sent again every HEARTBEAT.
    while True:
        await mirror.wait_changed(HEARTBEAT)
        if mirror.healthy:
            await send.send(mirror.answer())


async def _list(client: httpx.AsyncClient, base: str, prefix: bytes, mirror: _Mirror) -> None:
    response = await client.post(f"{base}/v3/kv/range", json={
        "key": _b64(prefix), "range_end": _b64(prefix_end(prefix))})
    response.raise_for_status()
    data = response.json()
    mirror.reals.clear()
    for kv in data.get("kvs", ()):
        mirror.put(base64.b64decode(kv["key"]), base64.b64decode(kv.get("value", "")))
    mirror.revision = int(data["header"]["revision"])
    mirror.listed = True


async def _watch(client: httpx.AsyncClient, base: str, prefix: bytes, mirror: _Mirror) -> None:
    request = {"create_request": {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix)),
                                  "start_revision": str(mirror.revision + 1)}}
    async with client.stream("POST", f"{base}/v3/watch", json=request) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.strip():
                continue
            message = json.loads(line)
            if "error" in message:
                raise ValueError(f"watch error: {message['error']}")
            result = message["result"]
            if int(result.get("compact_revision", 0)):
                raise Compacted()
            if result.get("canceled"):
                raise ValueError(f"watch canceled: {result.get('cancel_reason', '')}")
            mirror.healthy = True
            events = result.get("events", ())
            for event in events:
                kv = event["kv"]
                key = base64.b64decode(kv["key"])
                if event.get("type") == "DELETE":
                    mirror.reals.pop(key, None)
                else:
                    mirror.put(key, base64.b64decode(kv.get("value", "")))
                # Only an event moves the revision: a header's may be ahead of
                # events still in flight, which a resumed watch must not skip.
                mirror.revision = max(mirror.revision, int(kv.get("mod_revision", 0)))
            if events or result.get("created"):
                mirror.changed()
