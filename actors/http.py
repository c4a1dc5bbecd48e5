"""The stats/status HTTP server: a small HTTP/1.1 server on trio + h11, run as an actor.

Routes (GET or HEAD): ``/stats`` and ``/metrics`` (Prometheus text, or
OpenMetrics when the scraper's Accept asks for it), ``/status`` (JSON, see
actors.status), ``/healthz`` ("ok"), ``/`` and ``/page.json`` (the live status
page, see actors.status_page). Anything else is 404, other methods 405.
One more route is one more entry in ``_Server.page``.

Nothing a client does may stall the control plane or raise out of here:

* Every error a socket can give (reset, ENOTCONN, EPIPE...) ends that
  client's task quietly, in the refusal path too.
* Fairness: a connection waiting for its request (a slowloris trickling a
  header, an idle keep-alive) is cheap, so many are allowed
  (``max_connections``, 512, at most a quarter of the open-files limit).
  When they are all taken, a new client evicts the one that has waited
  longest for a complete request: a well-behaved client sends its request
  at once, so it is the last to go. Only when every connection is busy
  answering (rendering, or sending to a slow reader) is a new client
  refused with a 503. Every request, reading and answering, has a deadline.
* Memory: ``/metrics`` and ``/status`` are rendered at most once per
  ``cache_seconds`` and shared by every reader (actors.scrape_cache), so a
  reader that never reads costs its socket buffers, not a body of its own.

The snapshot is taken on the event loop (``handle.statistics()`` only gathers
immutable objects); turning it into text is CPU work (10k reals: 0.2-0.3 s),
so it runs in a worker thread, one render at a time. A bug that escapes the
accept loop crashes this actor only: the Supervisor restarts it on the same
listening sockets, under the process's shared restart budget.
"""

from __future__ import annotations

import errno
import resource
import time
from http import HTTPStatus

import h11
import structlog
import trio

from . import metrics, status, status_page
from .scrape_cache import Page, SharedRender
from .supervisor import RestartBudget, open_supervisor

__all__ = ["parse_address", "refuse", "run_http_server"]

log = structlog.get_logger()

MAX_HEADER_BYTES = 16 * 1024
MAX_BODY_BYTES = 16 * 1024
REQUEST_TIMEOUT = 10.0
MAX_CONNECTIONS = 512
#: How long a rendered /metrics or /status is served to every reader.
CACHE_SECONDS = 2.0
READ_SIZE = 16 * 1024
LINGER_SECONDS = 1.0
LINGER_BYTES = 256 * 1024
#: accept(2) errors that say the host is out of something: wait, then go on.
ACCEPT_CAPACITY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
#: Errors a client's socket can give at any time: they end that client only.
CLIENT_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)
TEXT = "text/plain; charset=utf-8"


def parse_address(address: str) -> tuple[str, int]:
    """``"127.0.0.1:5678"``, ``"[::1]:5678"`` or ``":5678"`` (all addresses) -> (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"bad listen address {address!r}: expected HOST:PORT")
    return host.strip("[]") or "", int(port)


class _Connection:
    """One client: its cancel scope (eviction) and since when it waits for a request."""

    __slots__ = ("scope", "waiting_since")

    def __init__(self, now: float) -> None:
        self.scope = trio.CancelScope()
        self.waiting_since: float | None = now  # None while a request is being answered


class _Server:
    def __init__(self, handle, *, loop_lag, request_timeout: float, max_connections: int,
                 cache_seconds: float) -> None:
        self.handle = handle
        self.loop_lag = loop_lag
        self.request_timeout = request_timeout
        self.max_connections = max_connections
        self.live: dict[_Connection, None] = {}  # an ordered set
        self.refusing = 0
        self.evicted = 0
        self.pages = SharedRender(max_age=cache_seconds)
        # One render at a time: scrapes queue instead of taking both cores.
        self.renderer = trio.CapacityLimiter(1)

    async def run(self, *, listeners, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Accept on ``listeners`` (never closed here: a restart accepts on them again)."""
        async with trio.open_nursery() as nursery:
            for listener in listeners:
                nursery.start_soon(self._accept, listener, nursery)
            task_status.started()

    async def _accept(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in ACCEPT_CAPACITY_ERRNOS:
                    raise
                log.warning("status server cannot accept", error=str(exc))
                await trio.sleep(0.1)
                continue
            try:
                self._admit(stream, nursery)
            except BaseException:
                stream.socket.close()  # a bug: nobody else will close it
                raise

    def _admit(self, stream: trio.SocketStream, nursery: trio.Nursery) -> None:
        if len(self.live) >= self.max_connections:
            waiting = [c for c in self.live if c.waiting_since is not None]
            if not waiting:
                if self.refusing >= self.max_connections:
                    nursery.start_soon(trio.aclose_forcefully, stream)
                else:
                    nursery.start_soon(self._refuse, stream)
                return
            slowest = min(waiting, key=lambda c: c.waiting_since)
            del self.live[slowest]
            slowest.scope.cancel()
            self.evicted += 1
        connection = _Connection(trio.current_time())
        self.live[connection] = None
        nursery.start_soon(self._serve, stream, connection)

    async def _refuse(self, stream: trio.SocketStream) -> None:
        self.refusing += 1
        try:
            await refuse(stream, self.request_timeout)
        finally:
            self.refusing -= 1

    async def _serve(self, stream: trio.SocketStream, connection: _Connection) -> None:
        try:
            with connection.scope:
                async with stream:
                    await self._requests(stream, connection)
        except CLIENT_ERRORS:
            pass  # the client went away; nothing to do
        except Exception:
            # A bug in rendering one request must not take the server down:
            # log it loudly, drop that client.
            log.exception("http request failed")
        finally:
            self.live.pop(connection, None)

    async def _requests(self, stream: trio.SocketStream, connection: _Connection) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        while True:
            connection.waiting_since = trio.current_time()
            with trio.move_on_after(self.request_timeout) as scope:
                try:
                    request = await _next_request(stream, conn)
                except h11.RemoteProtocolError as exc:
                    if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                        await _respond(stream, conn, Page(code=exc.error_status_hint,
                                                          content_type=TEXT,
                                                          body=f"{exc}\n".encode()), close=True)
                        await _linger(stream)
                    return
                if request is None:
                    return  # clean close between requests
                connection.waiting_since = None
                path, _, query = request.target.decode("latin-1").partition("?")
                method = request.method.decode("latin-1")
                if method not in ("GET", "HEAD"):
                    await _respond(stream, conn, Page(code=405, content_type=TEXT,
                                                      body=b"method not allowed\n"),
                                   close=True, extra=[("allow", "GET, HEAD")])
                    return
                if path in status_page.KINDS:
                    page = await self.live_page(path, query)
                else:
                    page = await self.page(path, dict(request.headers).get(b"accept", b""))
                await _respond(stream, conn, page, head_only=method == "HEAD")
            if scope.cancelled_caught:
                log.info("http client timed out")
                return
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return

    async def page(self, path: str, accept: bytes) -> Page:
        if path == "/healthz":
            return Page(code=200, content_type=TEXT, body=b"ok\n")
        if path == "/status":
            return await self.pages.get("status", self._status)
        if path in ("/stats", "/metrics"):
            openmetrics = b"application/openmetrics-text" in accept
            return await self.pages.get(("metrics", openmetrics),
                                        lambda: self._metrics(openmetrics))
        return Page(code=404, content_type=TEXT, body=b"not found\n")

    def _statistics(self):
        try:
            return self.handle.statistics(), None
        except Exception as exc:
            # The control plane is still starting (or its snapshot is broken):
            # say so, and keep serving.
            log.warning("no statistics to serve", error=repr(exc))
            return None, Page(code=503, content_type=TEXT,
                              body=f"statistics unavailable: {exc}\n".encode())

    async def _status(self) -> Page:
        stats, unavailable = self._statistics()
        if unavailable:
            return unavailable
        now, wall = trio.current_time(), time.time()
        body = await trio.to_thread.run_sync(
            lambda: status.status_json(stats, now=now, wall=wall), limiter=self.renderer)
        return Page(code=200, content_type="application/json", body=body)

    async def live_page(self, path: str, query: str) -> Page:
        """``/`` or ``/page.json``: the unfiltered page is shared like /status."""
        kind, q = status_page.KINDS[path], status_page.parse_query(query)
        if q:  # an operator's filter: rare, and not kept (one kept page per key)
            return await self._live_page(kind, q)
        return await self.pages.get(("page", kind), lambda: self._live_page(kind, ""))

    async def _live_page(self, kind: str, query: str) -> Page:
        stats, unavailable = self._statistics()
        if unavailable:
            return unavailable
        now, wall = trio.current_time(), time.time()
        body = await trio.to_thread.run_sync(
            lambda: status_page.render(kind, stats, now=now, wall=wall, query=query),
            limiter=self.renderer)
        return Page(code=200, content_type=status_page.CONTENT_TYPES[kind], body=body)

    async def _metrics(self, openmetrics: bool) -> Page:
        stats, unavailable = self._statistics()
        if unavailable:
            return unavailable
        lag = self.loop_lag.statistics() if self.loop_lag is not None else None
        now = trio.current_time()
        body = await trio.to_thread.run_sync(
            lambda: metrics.render_metrics(stats, lag=lag, now=now, openmetrics=openmetrics),
            limiter=self.renderer)
        content_type = metrics.OPENMETRICS_CONTENT_TYPE if openmetrics else metrics.CONTENT_TYPE
        return Page(code=200, content_type=content_type, body=body)


async def _next_request(stream: trio.SocketStream, conn: h11.Connection) -> h11.Request | None:
    """The next request with its (bounded, ignored) body; None if the client closed first."""
    request = None
    head = body = 0
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await stream.receive_some(READ_SIZE)
            if request is None:
                # h11 bounds only incomplete events: a huge head arriving in
                # one burst would pass, so the head's bytes are counted here.
                head += len(data)
                if head > MAX_HEADER_BYTES:
                    raise h11.RemoteProtocolError("request head too large",
                                                  error_status_hint=431)
            conn.receive_data(data)
            continue
        if isinstance(event, h11.ConnectionClosed):
            return None
        if isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += len(event.data)
            if body > MAX_BODY_BYTES:
                raise h11.RemoteProtocolError("request body too large", error_status_hint=413)
        elif isinstance(event, h11.EndOfMessage):
            return request


async def _respond(stream: trio.SocketStream, conn: h11.Connection, page: Page, *,
                   close: bool = False, head_only: bool = False,
                   extra: list[tuple[str, str]] = ()) -> None:
    headers = [("content-type", page.content_type), ("content-length", str(len(page.body))),
               *extra]
    if close:
        headers.append(("connection", "close"))
    reason = HTTPStatus(page.code).phrase.encode()
    await stream.send_all(conn.send(h11.Response(status_code=page.code, headers=headers,
                                                 reason=reason)))
    if page.body and not head_only:
        # Passthrough: a 6 MB scrape is sent as it is (the shared bytes object),
        # not copied into h11's framing.
        for chunk in conn.send_with_data_passthrough(h11.Data(data=page.body)):
            await stream.send_all(chunk)
    await stream.send_all(conn.send(h11.EndOfMessage()))


async def _linger(stream: trio.abc.HalfCloseableStream) -> None:
    """Close our side, then read and discard what the client still sends, briefly.

    Closing a socket with unread input makes the kernel send a reset, which can
    destroy the error response before the client reads it.
    """
    await stream.send_eof()
    with trio.move_on_after(LINGER_SECONDS):
        received = 0
        while received < LINGER_BYTES and (chunk := await stream.receive_some(READ_SIZE)):
            received += len(chunk)


_REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\n"
            b"content-length: 21\r\nconnection: close\r\n\r\ntoo many connections\n")


async def refuse(stream: trio.abc.HalfCloseableStream, timeout: float) -> None:
    """A 503 before reading anything (h11 cannot answer a request it has not seen),
    then close. Never raises: a refused client may reset or be gone already."""
    try:
        with trio.move_on_after(timeout):
            await stream.send_all(_REFUSAL)
            await _linger(stream)
    except CLIENT_ERRORS:
        pass
    finally:
        await trio.aclose_forcefully(stream)


def _connection_limit(requested: int) -> int:
    """``requested``, but at most a quarter of the open-files limit: probes need sockets too."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return requested if soft == resource.RLIM_INFINITY else max(1, min(requested, soft // 4))


async def run_http_server(address: str, handle, *, loop_lag=None,
                          budget: RestartBudget | None = None,
                          request_timeout: float = REQUEST_TIMEOUT,
                          max_connections: int = MAX_CONNECTIONS,
                          cache_seconds: float = CACHE_SECONDS,
                          task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Serve stats and status for ``handle`` (anything with ``statistics()``) on ``address``.

    ``loop_lag``: a ``metrics.LoopLagMonitor`` whose samples are exported.
    ``budget``: the process's shared RestartBudget (None: one of its own);
    the server is the actor "status_server" there. Binding happens before
    ``task_status.started((host, port))`` (the bound address, useful with port
    0), so a bad address or a port in use raises ``OSError`` at start, before
    anything else is touched (decisions.md row 4).
    """
    host, port = parse_address(address)
    listeners = await trio.open_tcp_listeners(port, host=host or None)
    try:
        server = _Server(handle, loop_lag=loop_lag, request_timeout=request_timeout,
                         max_connections=_connection_limit(max_connections),
                         cache_seconds=cache_seconds)
        bound = listeners[0].socket.getsockname()[:2]
        log.info("stats server listening", address=f"{bound[0]}:{bound[1]}",
                 max_connections=server.max_connections)
        async with open_supervisor(budget=budget) as supervisor:
            await supervisor.start("status_server", server.run, listeners=listeners)
            task_status.started(bound)
    finally:
        for listener in listeners:
            await trio.aclose_forcefully(listener)
