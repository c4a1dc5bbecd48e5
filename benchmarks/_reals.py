"""The reals server: one process answering on many loopback addresses, with health toggles.

Run as ``python -m benchmarks._reals --addresses FILE --port P --protocol tcp|http
--control SOCKET``. It binds every address in FILE (one a line) on port P,
prints ``ready`` on stdout, and serves until killed:

- ``tcp``: accepts and closes at once (a TCP check only needs the handshake);
- ``http``: reads a request and answers ``200`` (``503`` when failing), then closes.

A line protocol on the UNIX stream socket CONTROL flips health:
``down ADDR`` closes ADDR's listener (tcp: connections are refused) or makes it
answer 503 (http); ``up ADDR`` undoes it. Each reply is ``ok T`` where T is
``time.monotonic()`` right after the change took effect: CLOCK_MONOTONIC is
shared by every process on the host, so the harness measures latencies from it.

It is a plain ``selectors`` loop on non-blocking sockets: no framework, so
that its cost per connection stays near the kernel's and leaves the CPU to the
process under test. ``_nginx.py`` serves the reals that never flip when nginx
is installed.
"""

from __future__ import annotations

import argparse
import os
import resource
import selectors
import socket
import sys
import time

import trio

_LISTENER, _CONN, _CONTROL, _CONTROL_CONN = range(4)
_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"
_FAIL = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 5\r\nConnection: close\r\n\r\nfail\n"


def raise_nofile_limit() -> None:
    """Let this process hold one socket per address (10k and more)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class _Server:
    def __init__(self, *, port: int, protocol: str) -> None:
        if protocol not in ("tcp", "http"):
            raise ValueError(f"protocol must be tcp or http, not {protocol!r}")
        self.port = port
        self.http = protocol == "http"
        self.selector = selectors.DefaultSelector()
        self.listeners: dict[str, socket.socket] = {}
        self.failing: set[str] = set()
        self.buffers: dict[socket.socket, bytes] = {}
        self.known: frozenset[str] = frozenset()

    def listen(self, address: str) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, self.port))
        sock.listen(1024)
        sock.setblocking(False)
        self.selector.register(sock, selectors.EVENT_READ, (_LISTENER, address))
        self.listeners[address] = sock

    def unlisten(self, address: str) -> None:
        sock = self.listeners.pop(address)
        self.selector.unregister(sock)
        sock.close()

    def control(self, line: str) -> str:
        """Execute one control command; returns the reply line."""
        verb, _, address = line.strip().partition(" ")
        if verb == "ping":
            return f"ok {time.monotonic():.6f}"
        if verb not in ("up", "down") or address not in self.known:
            return f"error bad command {line.strip()!r}"
        if self.http:
            (self.failing.add if verb == "down" else self.failing.discard)(address)
        elif verb == "down" and address in self.listeners:
            self.unlisten(address)
        elif verb == "up" and address not in self.listeners:
            self.listen(address)
        return f"ok {time.monotonic():.6f}"

    def serve(self, addresses: list[str], control_path: str) -> None:
        self.known = frozenset(addresses)
        for address in addresses:
            self.listen(address)
        control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        control.bind(control_path)
        control.listen(4)
        control.setblocking(False)
        self.selector.register(control, selectors.EVENT_READ, (_CONTROL, ""))
        print("ready", flush=True)
        while True:
            self.handle(self.selector.select())

    def handle(self, events: list[tuple[selectors.SelectorKey, int]]) -> None:
        """One batch of ready sockets."""
        for key, _ in events:
            kind, address = key.data
            sock = key.fileobj
            if sock.fileno() < 0:
                # Closed by an earlier event of this batch: a "down" closed this
                # listener (accept() on it would raise EBADF and end the server).
                continue
            if kind == _LISTENER:
                self._accept(sock, address)
            elif kind == _CONN:
                self._answer(sock, address)
            elif kind == _CONTROL:
                conn, _ = sock.accept()
                conn.setblocking(False)
                self.selector.register(conn, selectors.EVENT_READ, (_CONTROL_CONN, ""))
                self.buffers[conn] = b""
            else:
                self._control_input(sock)

    def _accept(self, listener: socket.socket, address: str) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, ConnectionAbortedError):
                return
            if not self.http:
                conn.close()
                continue
            conn.setblocking(False)
            self.buffers[conn] = b""
            self.selector.register(conn, selectors.EVENT_READ, (_CONN, address))

    def _answer(self, conn: socket.socket, address: str) -> None:
        try:
            data = conn.recv(4096)
        except OSError:
            data = b""
        buffered = self.buffers[conn] + data
        if data and b"\r\n\r\n" not in buffered:
            self.buffers[conn] = buffered
            return
        if data:
            try:
                conn.send(_FAIL if address in self.failing else _OK)
            except OSError:
                pass
        self._drop(conn)

    def _control_input(self, conn: socket.socket) -> None:
        try:
            data = conn.recv(4096)
        except OSError:  # the harness phase ended mid-command
            data = b""
        if not data:
            self._drop(conn)
            return
        buffered = self.buffers[conn] + data
        *lines, rest = buffered.split(b"\n")
        self.buffers[conn] = rest
        replies = "".join(self.control(line.decode()) + "\n" for line in lines)
        conn.setblocking(True)  # replies are a few bytes; never worth a write buffer
        conn.sendall(replies.encode())
        conn.setblocking(False)

    def _drop(self, conn: socket.socket) -> None:
        self.selector.unregister(conn)
        del self.buffers[conn]
        conn.close()


class ControlClient:
    """The harness's end of the control socket (trio). One command at a time."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream
        self._lock = trio.StrictFIFOLock()
        self._buffer = b""

    @classmethod
    async def connect(cls, path: str) -> ControlClient:
        return cls(await trio.open_unix_socket(path))

    async def set_health(self, address: str, up: bool) -> float:
        """Flip ``address`` up or down; returns when (time.monotonic()) it took effect."""
        return await self._command(f"{'up' if up else 'down'} {address}")

    async def ping(self) -> float:
        return await self._command("ping")

    async def _command(self, line: str) -> float:
        async with self._lock:
            await self._stream.send_all(line.encode() + b"\n")
            while b"\n" not in self._buffer:
                data = await self._stream.receive_some(4096)
                if not data:
                    raise ConnectionError("reals server closed its control socket")
                self._buffer += data
            reply, _, self._buffer = self._buffer.partition(b"\n")
        verb, _, value = reply.decode().partition(" ")
        if verb != "ok":
            raise RuntimeError(f"reals server refused {line!r}: {value}")
        return float(value)

    async def aclose(self) -> None:
        await self._stream.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._reals", description=__doc__)
    parser.add_argument("--addresses", required=True, help="file with one address a line")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--protocol", choices=("tcp", "http"), required=True)
    parser.add_argument("--control", required=True, help="UNIX socket path for health flips")
    args = parser.parse_args(argv)
    with open(args.addresses) as f:
        addresses = [line.strip() for line in f if line.strip()]
    raise_nofile_limit()
    if os.path.exists(args.control):
        os.unlink(args.control)
    try:
        _Server(port=args.port, protocol=args.protocol).serve(addresses, args.control)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
