"""The stats/status HTTP server: a small HTTP/1.1 server on trio + h11.

Routes (GET or HEAD): ``/stats`` and ``/metrics`` (Prometheus text), ``/status``
(JSON, see actors.status), ``/healthz`` ("ok"), ``/`` and ``/page.json`` (the
live status page, see actors.status_page). Anything else is 404, other
methods 405.

Nothing here may stall the control plane. The snapshot is taken on the event
loop (``handle.statistics()`` only gathers immutable objects); turning it into
text is CPU work (10k reals: 0.2-0.3 s), so it runs in a worker thread,
one render at a time. Every request has a deadline (a slow or silent client is
dropped), the request line plus headers are bounded (431), garbage gets a 400,
and past ``max_connections`` a new client gets a 503 and is closed.
"""

from __future__ import annotations

import time
from http import HTTPStatus

import h11
import structlog
import trio

from . import metrics, status, status_page

__all__ = ["parse_address", "run_http_server"]

log = structlog.get_logger()

MAX_HEADER_BYTES = 16 * 1024
MAX_BODY_BYTES = 16 * 1024
REQUEST_TIMEOUT = 10.0
MAX_CONNECTIONS = 64
READ_SIZE = 16 * 1024
LINGER_SECONDS = 1.0
LINGER_BYTES = 256 * 1024


def parse_address(address: str) -> tuple[str, int]:
    """``"127.0.0.1:5678"``, ``"[::1]:5678"`` or ``":5678"`` (all addresses) -> (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"bad listen address {address!r}: expected HOST:PORT")
    return host.strip("[]") or "", int(port)


class _Server:
    def __init__(self, handle, *, loop_lag, request_timeout: float, max_connections: int) -> None:
        self.handle = handle
        self.loop_lag = loop_lag
        self.request_timeout = request_timeout
        self.connections = trio.CapacityLimiter(max_connections)
        # One render at a time: scrapes queue instead of taking both cores.
        self.renderer = trio.CapacityLimiter(1)
        self.page = status_page.PageCache(handle.statistics, self.renderer)

    async def body(self, path: str, query: str = "") -> tuple[int, str, bytes]:
        if path in status_page.PATHS:
            return await self.page.respond(path, query)
        if path == "/healthz":
            return 200, "text/plain; charset=utf-8", b"ok\n"
        if path not in ("/stats", "/metrics", "/status"):
            return 404, "text/plain; charset=utf-8", b"not found\n"
        try:
            stats = self.handle.statistics()
        except Exception as exc:
            # The control plane is still starting (or its snapshot is broken):
            # say so, and keep serving.
            log.warning("no statistics to serve", error=repr(exc))
            return 503, "text/plain; charset=utf-8", f"statistics unavailable: {exc}\n".encode()
        if path == "/status":
            now, wall = trio.current_time(), time.time()
            text = await trio.to_thread.run_sync(
                lambda: status.status_json(stats, now=now, wall=wall), limiter=self.renderer)
            return 200, "application/json", text
        lag = self.loop_lag.statistics() if self.loop_lag is not None else None
        text = await trio.to_thread.run_sync(
            lambda: metrics.render_metrics(stats, lag=lag), limiter=self.renderer)
        return 200, metrics.CONTENT_TYPE, text

    async def serve(self, stream: trio.SocketStream) -> None:
        async with stream:
            try:
                self.connections.acquire_on_behalf_of_nowait(stream)
            except trio.WouldBlock:
                with trio.move_on_after(self.request_timeout):
                    await _refuse(stream)
                    await _linger(stream)
                return
            try:
                await self._serve(stream)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the client went away; nothing to do
            except Exception:
                # A bug in rendering one request must not take the server (and with
                # it the control plane's nursery) down: log it loudly, drop the client.
                log.exception("http request failed")
            finally:
                self.connections.release_on_behalf_of(stream)

    async def _serve(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        while True:
            with trio.move_on_after(self.request_timeout) as scope:
                try:
                    request = await _next_request(stream, conn)
                except h11.RemoteProtocolError as exc:
                    if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                        await _respond(stream, conn, exc.error_status_hint, "text/plain",
                                       f"{exc}\n".encode(), close=True)
                        await _linger(stream)
                    return
                if request is None:
                    return  # clean close between requests
                path, _, query = request.target.decode("latin-1").partition("?")
                method = request.method.decode("latin-1")
                if method not in ("GET", "HEAD"):
                    await _respond(stream, conn, 405, "text/plain", b"method not allowed\n",
                                   close=True, extra=[("allow", "GET, HEAD")])
                    return
                code, content_type, body = await self.body(path, query)
                await _respond(stream, conn, code, content_type,
                               b"" if method == "HEAD" else body, length=len(body))
            if scope.cancelled_caught:
                log.info("http client timed out")
                return
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return


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


async def _respond(stream: trio.SocketStream, conn: h11.Connection, code: int,
                   content_type: str, body: bytes, *, close: bool = False,
                   length: int | None = None, extra: list[tuple[str, str]] = ()) -> None:
    headers = [("content-type", content_type),
               ("content-length", str(len(body) if length is None else length)),
               *extra]
    if close:
        headers.append(("connection", "close"))
    reason = HTTPStatus(code).phrase.encode()
    await stream.send_all(conn.send(h11.Response(status_code=code, headers=headers,
                                                 reason=reason)))
    if body:
        # Passthrough: a 4 MB scrape is sent as it is, not copied into h11's framing.
        for chunk in conn.send_with_data_passthrough(h11.Data(data=body)):
            await stream.send_all(chunk)
    await stream.send_all(conn.send(h11.EndOfMessage()))


async def _linger(stream: trio.SocketStream) -> None:
    """Close our side, then read and discard what the client still sends, briefly.

    Closing a socket with unread input makes the kernel send a reset, which can
    destroy the error response before the client reads it.
    """
    await stream.send_eof()
    with trio.move_on_after(LINGER_SECONDS):
        received = 0
        while received < LINGER_BYTES and (chunk := await stream.receive_some(READ_SIZE)):
            received += len(chunk)


async def _refuse(stream: trio.SocketStream) -> None:
    """503 before reading anything: h11 cannot answer a request it has not seen."""
    body = b"too many connections\n"
    await stream.send_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\n"
                          b"content-length: %d\r\nconnection: close\r\n\r\n%s"
                          % (len(body), body))


async def run_http_server(address: str, handle, *, loop_lag=None,
                          request_timeout: float = REQUEST_TIMEOUT,
                          max_connections: int = MAX_CONNECTIONS,
                          task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Serve stats and status for ``handle`` (anything with ``statistics()``) on ``address``.

    ``loop_lag``: a ``metrics.LoopLagMonitor`` whose samples are exported.
    Binding happens before ``task_status.started((host, port))`` (the bound
    address, useful with port 0), so a bad address or a port in use raises
    ``OSError`` at start, before anything else is touched (decisions.md row 4).
    """
    host, port = parse_address(address)
    listeners = await trio.open_tcp_listeners(port, host=host or None)
    server = _Server(handle, loop_lag=loop_lag, request_timeout=request_timeout,
                     max_connections=max_connections)
    bound = listeners[0].socket.getsockname()[:2]
    log.info("stats server listening", address=f"{bound[0]}:{bound[1]}")
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, server.serve, listeners)
        task_status.started(bound)
