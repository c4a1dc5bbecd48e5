"""Logging: structlog, JSON lines for machines and a console renderer for people.

``configure()`` is called once by the command line. Actors log with
``structlog.get_logger()`` and bind their context with
``structlog.contextvars.bound_contextvars(balancer=..., real=...)``: trio
children inherit the parent's context at spawn, so every event a balancer's
probe task logs carries the balancer and the real without passing them around.

A flapping real must not flood the log (writes are synchronous: a slow stdout
pipe would stall the event loop). ``RateLimiter`` is a processor that keeps a
token bucket per (event, balancer, real): past the burst, events of that key
are dropped and counted, and the next one let through carries
``suppressed=N``.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

import orjson
import structlog

__all__ = ["RateLimiter", "configure"]

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR}


class RateLimiter:
    """A structlog processor: at most ``burst`` events per key, refilled at ``rate`` per second.

    The key is the event text plus the ``balancer`` and ``real`` fields, so one
    flapping real is limited without muting the others. Errors and anything
    above are never dropped: an operator must see every failure of the
    control plane itself, and those are rare by construction.
    """

    def __init__(self, *, burst: float = 5.0, rate: float = 0.2,
                 clock: Callable[[], float] = time.monotonic, max_keys: int = 10_000) -> None:
        self._burst = burst
        self._rate = rate
        self._clock = clock
        self._max_keys = max_keys
        # key -> [tokens, last refill time, suppressed count]; the lock is there
        # because the netlink writer's thread logs too.
        self._buckets: dict[tuple, list] = {}
        self._lock = threading.Lock()

    def __call__(self, logger: Any, method: str, event: dict) -> dict:
        if method in ("error", "critical", "exception"):
            return event
        key = (event.get("event"), event.get("balancer"), event.get("real"))
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) >= self._max_keys:
                    # Bounded memory: forgetting old keys only loses their counts.
                    self._buckets.clear()
                bucket = self._buckets[key] = [self._burst, now, 0]
            tokens = min(self._burst, bucket[0] + (now - bucket[1]) * self._rate)
            bucket[1] = now
            if tokens < 1.0:
                bucket[0] = tokens
                bucket[2] += 1
                raise structlog.DropEvent
            bucket[0] = tokens - 1.0
            if bucket[2]:
                event["suppressed"] = bucket[2]
                bucket[2] = 0
        return event


def _orjson_dumps(event: dict, **_: Any) -> bytes:
    # default=str: enums, addresses and dataclasses in events must never crash logging.
    return orjson.dumps(event, default=str)


def configure(format: str = "auto", level: str = "info", *, stream: TextIO | None = None,
              limiter: RateLimiter | None = None) -> None:
    """Set up structlog for the whole process.

    ``format``: "json" (one orjson line per event), "console" (coloured,
    aligned), or "auto": console when ``stream`` is a terminal, else JSON.
    ``level``: debug, info, warning or error. ``stream`` defaults to stderr.
    """
    if format not in ("auto", "json", "console"):
        raise ValueError(f"unknown log format {format!r}")
    stream = sys.stderr if stream is None else stream
    if format == "auto":
        format = "console" if stream.isatty() else "json"
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        limiter or RateLimiter(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    factory: Any
    if format == "json":
        processors.append(structlog.processors.format_exc_info)
        if hasattr(stream, "buffer"):
            processors.append(structlog.processors.JSONRenderer(serializer=_orjson_dumps))
            factory = structlog.BytesLoggerFactory(file=stream.buffer)
        else:  # a text-only stream (tests, embedding applications)
            processors.append(structlog.processors.JSONRenderer(
                serializer=lambda event, **kw: _orjson_dumps(event).decode()))
            factory = structlog.PrintLoggerFactory(file=stream)
    else:
        processors.append(structlog.dev.ConsoleRenderer(colors=stream.isatty()))
        factory = structlog.PrintLoggerFactory(file=stream)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )
