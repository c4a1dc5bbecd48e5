"""The pool of firewall marks for tunnelled health checks (kglb.md §3.7).

One mark per real IP, shared by every balancer that uses that real and
reference-counted. Free marks are handed out first-in, first-out: a released
mark goes to the end of the pool, so a mark is reused as late as possible and
a stale kernel fwmark service is unlikely to catch new traffic.

This is plain data with no I/O; one instance is owned by one task.
"""

from __future__ import annotations

from collections import deque

DEFAULT_BASE = 10000
DEFAULT_SIZE = 5000


class FwmarkExhausted(Exception):
    """Every mark of the pool is held."""


class FwmarkPool:
    """Marks ``base .. base+size-1``, allocated per real IP (kglb's fwmark.Manager)."""

    __slots__ = ("_free", "_held")

    def __init__(self, size: int = DEFAULT_SIZE, base: int = DEFAULT_BASE) -> None:
        if size < 0 or base < 1:
            raise ValueError("the pool needs size >= 0 and base >= 1")
        self._free: deque[int] = deque(range(base, base + size))
        self._held: dict[str, list[int]] = {}  # ip -> [mark, refcount]

    def allocate(self, ip: str) -> int:
        """The mark of ``ip`` (one more reference), or the next free one.

        Raises FwmarkExhausted when ``ip`` holds none and the pool is empty.
        """
        held = self._held.get(ip)
        if held is not None:
            held[1] += 1
            return held[0]
        if not self._free:
            raise FwmarkExhausted(f"no more unused fwmarks for {ip}")
        mark = self._free.popleft()
        self._held[ip] = [mark, 1]
        return mark

    def release(self, ip: str) -> None:
        """Drop one reference; the mark returns to the end of the pool at zero.

        Releasing an IP that holds no mark is a caller bug: KeyError.
        """
        held = self._held[ip]
        held[1] -= 1
        if held[1] == 0:
            del self._held[ip]
            self._free.append(held[0])

    def get(self, ip: str) -> int | None:
        """The mark held by ``ip``, if any."""
        held = self._held.get(ip)
        return None if held is None else held[0]

    def statistics(self) -> tuple[int, int]:
        """(marks in use, marks free)."""
        return len(self._held), len(self._free)

    def __repr__(self) -> str:
        used, free = self.statistics()
        return f"<FwmarkPool used={used} free={free}>"
