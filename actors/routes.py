"""Route speakers: ``RouteSpeaker`` (the protocol) and ``MemorySpeaker``.

``MemorySpeaker`` is kglb's no-op BGP module: it keeps the announced routes in
memory and its session is always established. It is the default when no BGP
daemon is configured, and the speaker tests use.
"""

from __future__ import annotations

from kglb import Route

from .dataplane._base import RouteSpeaker

__all__ = ["MemorySpeaker", "RouteSpeaker"]


class MemorySpeaker:
    """Routes in memory. Announcing again replaces (new hold time); withdrawing
    a route that is not announced does nothing, as with a BGP daemon."""

    def __init__(self, routes: frozenset[Route] = frozenset()) -> None:
        self._routes: dict[Route, Route] = {r: r for r in routes}
        self.announced = 0
        self.withdrawn = 0

    def __repr__(self) -> str:
        return f"<MemorySpeaker routes={sorted(r.prefix for r in self._routes)}>"

    async def announce(self, route: Route) -> None:
        self._routes.pop(route, None)
        self._routes[route] = route
        self.announced += 1

    async def withdraw(self, route: Route) -> None:
        self._routes.pop(route, None)
        self.withdrawn += 1

    async def routes(self) -> frozenset[Route]:
        return frozenset(self._routes.values())

    def session_established(self) -> bool:
        return True
