"""One rendered body per kind of page, shared by every reader within ``max_age``.

Rendering /metrics of 10k reals makes a 6-7 MB body in 0.2-0.3 s of CPU.
Rendered per request, 20 scrapers that never read would hold 20 bodies (and
their allocator fragments) for as long as the server lets them stay. Here a
body is rendered at most once per ``max_age`` per key; readers that arrive
while a render runs wait for that render instead of starting their own, and
all of them send the same ``bytes`` object (trio sends it through memoryview
slices, never copies). A reader that never reads therefore costs its socket
buffers and a reference, and an old body is freed when the last reader that
holds it is done.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass

import trio

__all__ = ["Page", "SharedRender"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Page:
    """A response body with its status code and content type."""

    code: int
    content_type: str
    body: bytes


class _Render:
    __slots__ = ("done", "page")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.page: Page | None = None


class SharedRender:
    """Pages by key, each rendered at most once per ``max_age`` seconds (trio time).

    A page kept for ``max_age`` could still take most of a core if rendering
    it takes nearly that long (10k reals on a loaded host: ~1 s), so a page
    is also kept for ``1 / duty`` times as long as its last render took:
    rendering one page never takes more than ``duty`` of the time.
    Only 200 pages are kept: a 503 while the control plane starts must not
    outlive the start. ``renders`` counts renders, for tests and benchmarks.
    """

    def __init__(self, *, max_age: float, duty: float = 0.1) -> None:
        if max_age < 0 or not 0 < duty <= 1:
            raise ValueError("max_age must be >= 0 and duty in (0, 1]")
        self._max_age = max_age
        self._duty = duty
        self._pages: dict[Hashable, tuple[float, Page]] = {}  # key -> (good until, page)
        self._running: dict[Hashable, _Render] = {}
        self.renders = 0

    async def get(self, key: Hashable, render: Callable[[], Awaitable[Page]]) -> Page:
        kept = self._pages.get(key)
        if kept is not None and trio.current_time() < kept[0]:
            return kept[1]
        running = self._running.get(key)
        if running is not None:
            # Someone renders this page now: take theirs, however long it took.
            await running.done.wait()
            if running.page is not None:
                return running.page
            # Their render failed (a bug, logged by them): try here.
        return await self._render(key, render)

    async def _render(self, key: Hashable, render: Callable[[], Awaitable[Page]]) -> Page:
        this = self._running[key] = _Render()
        began = trio.current_time()
        try:
            self.renders += 1
            page = await render()
            if page.code == 200:
                took = trio.current_time() - began
                # The old page lives on only in the readers still sending it.
                self._pages[key] = (began + max(self._max_age, took / self._duty), page)
            this.page = page
            return page
        finally:
            if self._running.get(key) is this:
                del self._running[key]
            this.done.set()
