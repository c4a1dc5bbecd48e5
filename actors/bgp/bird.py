"""BirdSpeaker: a RouteSpeaker that announces through a running BIRD 2 daemon.

It owns one include file (``BirdSettings.include_path``) and nothing else of
BIRD's configuration; ``kglb.bird`` explains what goes in it. Every announce or
withdraw rewrites the file atomically and runs ``birdc configure``; if BIRD
refuses the new file, the previous one is put back so that a restart of BIRD
still finds a configuration it accepts. Reads go to BIRD itself (``birdc show
...``), never to our memory, so after a restart of kglb-trio ``routes()``
returns what BIRD still announces.

Sessions, once configured, stay configured when their last route is withdrawn:
a withdrawal is an UPDATE to the router, not a session teardown, and the
session state stays observable. They are made from the routes (BIRD needs the
local ASN, which only a route carries) and the neighbors in ``BirdSettings``.

birdc runs through ``trio.run_process``, bounded by ``BIRDC_TIMEOUT``.
"""

from __future__ import annotations

import errno
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import trio

from kglb import AnnounceRoute, Route, WithdrawRoute
from kglb.bird import (
    BirdSettings,
    ProtocolStatus,
    Session,
    parse_community,
    parse_protocols,
    parse_routes,
    render,
    sessions_for,
)

from ..dataplane import OperationError

__all__ = ["BIRDC_TIMEOUT", "BgpSessionStatus", "BgpStatistics", "BirdError", "BirdSpeaker"]

#: A reconfiguration of a big BIRD can take a while; a hung birdc must not hang us.
BIRDC_TIMEOUT = 10.0


class BirdError(OSError):
    """birdc failed: BIRD unreachable (``errno`` from the socket), too slow
    (ETIMEDOUT), or it refused the command (EINVAL, BIRD's message as text)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BgpSessionStatus:
    """One of our BGP sessions as BIRD last reported it. ``state`` is BIRD's
    BGP state ("Established", "Active", "Connect", ...) or "unknown" when BIRD
    did not list the protocol (not configured yet, or BIRD unreachable)."""

    name: str
    local_asn: int
    peer_asn: int
    neighbor: str
    state: str
    established: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class BgpStatistics:
    """A snapshot: sessions, the routes BIRD holds for us, and the last error
    talking to BIRD (empty after a successful poll)."""

    sessions: tuple[BgpSessionStatus, ...] = ()
    routes: tuple[Route, ...] = ()
    reachable: bool = False
    polls: int = 0
    configures: int = 0
    last_error: str = ""


def _key(route: Route) -> tuple:
    """Identity as BIRD can give it back: community order, duplicates and
    leading zeros are lost in BIRD's community sets."""
    return (route.prefix, route.local_asn, route.peer_asn,
            frozenset(_community(c) for c in route.communities))


def _community(text: str) -> tuple[int, ...] | str:
    try:
        return parse_community(text)
    except ValueError:  # render() refuses it, with the reason
        return text


class BirdSpeaker:
    """Announces routes through BIRD. Only the writer calls ``announce`` and
    ``withdraw`` (one task); ``run`` polls session states for ``statistics``."""

    def __init__(self, settings: BirdSettings) -> None:
        self._settings = settings
        self._routes: dict[tuple, Route] | None = None  # None until read from BIRD
        self._sessions: set[Session] = set()
        self._protocols: dict[str, ProtocolStatus] = {}
        self._stats = BgpStatistics()

    def __repr__(self) -> str:
        routes = "?" if self._routes is None else len(self._routes)
        return (f"<BirdSpeaker {self._settings.include_path} routes={routes}"
                f" sessions={len(self._sessions)}>")

    # ------------------------------------------------------------ RouteSpeaker

    async def announce(self, route: Route) -> None:
        """Add ``route`` (replacing an equal one, new hold time) and reconfigure BIRD.
        Raises OperationError if BIRD is unreachable or refuses."""
        op = AnnounceRoute(route=route)
        routes = dict(await self._known(op))
        routes.pop(_key(route), None)
        routes[_key(route)] = route
        sessions = self._sessions | sessions_for(route, self._settings.neighbors)
        await self._configure(op, routes, sessions)

    async def withdraw(self, route: Route) -> None:
        """Remove ``route`` if BIRD announces it (else nothing) and reconfigure BIRD.
        Raises OperationError if BIRD is unreachable or refuses."""
        op = WithdrawRoute(route=route)
        routes = dict(await self._known(op))
        if routes.pop(_key(route), None) is not None:
            await self._configure(op, routes, self._sessions)

    async def routes(self) -> frozenset[Route]:
        """The routes in BIRD's kglb tables, as announced (hold time included).
        Raises BirdError (an OSError) if BIRD cannot be asked."""
        read = await self._read()
        if self._routes is None:
            self._adopt(read)
        # Give back the Route as it was announced when BIRD holds the same thing,
        # so that a mere community reordering is not seen as a change.
        return frozenset(self._routes.get(_key(r), r) for r in read)

    def session_established(self) -> bool:
        """True when we have sessions and, at the last poll, BIRD reported every one Established."""
        return bool(self._stats.sessions) and all(s.established for s in self._stats.sessions)

    # ------------------------------------------------------------ the actor

    def statistics(self) -> BgpStatistics:
        return self._stats

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Poll BIRD every ``poll_interval`` seconds, forever. Starts after the first poll
        (which may fail: BIRD being down is reported, not fatal)."""
        await self.poll()
        task_status.started(self)
        while True:
            await trio.sleep(self._settings.poll_interval)
            await self.poll()

    async def poll(self) -> None:
        """Read session states and routes from BIRD into ``statistics()``."""
        try:
            routes = await self.routes()
        except BirdError as e:
            self._protocols = {}
            self._publish(reachable=False, last_error=str(e), polls=self._stats.polls + 1)
            return
        self._publish(reachable=True, last_error="", polls=self._stats.polls + 1,
                      routes=tuple(sorted(routes, key=_key_text)))

    # ------------------------------------------------------------ internals

    async def _known(self, op) -> dict[tuple, Route]:
        if self._routes is None:
            try:
                await self.routes()
            except BirdError as e:
                raise OperationError(op=op, errno=e.errno or errno.EIO, message=str(e)) from e
        return self._routes

    def _adopt(self, routes: frozenset[Route] | tuple[Route, ...]) -> None:
        self._routes = {_key(r): r for r in routes}
        for r in routes:
            self._sessions |= sessions_for(r, self._settings.neighbors)

    async def _configure(self, op, routes: dict[tuple, Route], sessions: set[Session]) -> None:
        try:
            text = render(routes.values(), sessions,
                          source_addresses=self._settings.source_addresses)
        except ValueError as e:
            raise OperationError(op=op, errno=errno.EINVAL, message=str(e)) from e
        path = Path(self._settings.include_path)
        try:
            previous = await trio.to_thread.run_sync(_read_or_none, path)
            await trio.to_thread.run_sync(_write_atomically, path, text)
        except OSError as e:
            message = f"{path}: {e.strerror}"
            raise OperationError(op=op, errno=e.errno or errno.EIO, message=message) from e
        try:
            await self._birdc("configure")
        except BirdError as e:
            # Never leave a file BIRD refuses: it would not start with it.
            message = e.strerror
            try:
                await trio.to_thread.run_sync(_restore, path, previous)
            except OSError as r:
                message += f"; and {path} could not be restored: {r.strerror}"
            raise OperationError(op=op, errno=e.errno or errno.EIO, message=message) from e
        self._routes = routes
        self._sessions = sessions
        self._publish(configures=self._stats.configures + 1,
                      routes=tuple(sorted(routes.values(), key=_key_text)))

    async def _read(self) -> tuple[Route, ...]:
        """Routes from BIRD; session states are refreshed on the way (same command)."""
        try:
            protocols = parse_protocols(await self._birdc("show", "protocols"))
            self._protocols = {p.name: p for p in protocols}
            tables = sorted({p.table for p in protocols
                             if p.proto == "Static" and p.table.startswith("kglb_v")})
            if not tables:
                return ()
            args = [word for table in tables for word in ("table", table)]
            return parse_routes(await self._birdc("show", "route", *args, "all"))
        except ValueError as e:  # birdc said something we do not understand
            raise BirdError(errno.EPROTO, str(e)) from None

    async def _birdc(self, *command: str) -> str:
        argv = [self._settings.birdc, "-s", self._settings.socket, *command]
        try:
            with trio.fail_after(BIRDC_TIMEOUT):
                done = await trio.run_process(argv, capture_stdout=True, capture_stderr=True,
                                              check=False, deliver_cancel=_kill)
        except trio.TooSlowError:
            message = f"birdc {' '.join(command)}: no answer in {BIRDC_TIMEOUT} s"
            raise BirdError(errno.ETIMEDOUT, message) from None
        except OSError as e:  # birdc itself missing
            message = f"cannot run {argv[0]}: {e.strerror}"
            raise BirdError(e.errno or errno.ENOENT, message) from None
        out = done.stdout.decode(errors="replace")
        if done.returncode != 0:
            text = out + done.stderr.decode(errors="replace")
            chatter = ("BIRD ", "Reading configuration")
            message = " ".join(line.strip() for line in text.splitlines()
                               if line.strip() and not line.startswith(chatter))
            code = errno.ECONNREFUSED if "Unable to connect" in message else errno.EINVAL
            raise BirdError(code, f"birdc {' '.join(command)}: {message}")
        return out

    def _publish(self, **changes) -> None:
        sessions = tuple(self._session_status(s) for s in sorted(self._sessions))
        self._stats = replace(self._stats, sessions=sessions, **changes)

    def _session_status(self, session: Session) -> BgpSessionStatus:
        status = self._protocols.get(session.name)
        state = (status.info.split() or [status.state])[0] if status else "unknown"
        return BgpSessionStatus(name=session.name, local_asn=session.local_asn,
                                peer_asn=session.peer_asn, neighbor=session.neighbor, state=state,
                                established=status is not None and status.established)


async def _kill(process: trio.Process) -> None:
    # birdc holds nothing worth a graceful exit; a hung one just goes.
    process.kill()


def _key_text(route: Route) -> tuple:
    return (route.prefix, route.local_asn, route.peer_asn, route.communities)


def _read_or_none(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def _write_atomically(path: Path, text: str) -> None:
    # The temporary name ends in ".tmp" so a glob include (kglb-trio*.conf) never sees it.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # BIRD runs as user "bird" on Debian
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _restore(path: Path, previous: str | None) -> None:
    if previous is None:
        path.unlink(missing_ok=True)
    else:
        _write_atomically(path, previous)
