"""The demo's real servers: tiny HTTP servers on loopback addresses, each with a behaviour.

Every real of one balancer listens on its own 127.0.x.y address and the
balancer's port (kglb checks one port per balancer). Behaviours:

- ``healthy``: 200 to every request;
- ``failing``: 500;
- ``refused``: nothing listens (the check sees "refused");
- ``slow``: answers after ``slow_delay`` seconds (the check times out);
- ``flapping``: healthy and failing in turns of ``period`` seconds;
- ``recovering``: failing for ``period`` seconds after start, then healthy.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass

import trio

__all__ = ["BEHAVIOURS", "DemoReal", "run_demo_reals"]

BEHAVIOURS = ("healthy", "failing", "refused", "slow", "flapping", "recovering")
_OK = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: close\r\n\r\nok\n"
_FAIL = (b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 5\r\n"
         b"connection: close\r\n\r\nfail\n")


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoReal:
    address: str  # a 127.0.0.0/8 address
    behaviour: str
    period: float = 3.0  # flapping half-period, or how long a recovering real fails
    slow_delay: float = 2.0

    def __post_init__(self) -> None:
        if self.behaviour not in BEHAVIOURS:
            raise ValueError(f"unknown behaviour {self.behaviour!r}")
        if not self.address.startswith("127."):
            raise ValueError("demo reals live on loopback only")

    def healthy_at(self, elapsed: float) -> bool:
        """Whether this real answers 200 ``elapsed`` seconds after the servers started."""
        if self.behaviour == "flapping":
            return int(elapsed // self.period) % 2 == 0
        if self.behaviour == "recovering":
            return elapsed >= self.period
        return self.behaviour in ("healthy", "slow")


async def _serve_one(real: DemoReal, started: float, stream: trio.SocketStream) -> None:
    async with stream:
        with trio.move_on_after(5):
            request = b""
            while b"\r\n\r\n" not in request and len(request) < 16384:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    return
                request += chunk
            if real.behaviour == "slow":
                await trio.sleep(real.slow_delay)
            healthy = real.healthy_at(trio.current_time() - started)
            try:
                await stream.send_all(_OK if healthy else _FAIL)
            except trio.BrokenResourceError:
                pass  # the checker gave up (timeout) and closed


async def _bind_all(reals: list[DemoReal], port: int) -> list[trio.SocketListener]:
    socks = []
    try:
        for real in reals:
            sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            await sock.bind((real.address, port))
            sock.listen(128)
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return [trio.SocketListener(sock) for sock in socks]


async def _free_port(reals: list[DemoReal]) -> tuple[int, list[trio.SocketListener]]:
    """A port free on every listening address: ask the kernel for one, retry on a clash."""
    for _ in range(20):
        with socket.socket() as probe:
            probe.bind((reals[0].address, 0))
            port = probe.getsockname()[1]
        try:
            return port, await _bind_all(reals, port)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
    raise OSError(errno.EADDRINUSE, "no common free port for the demo reals")


async def run_demo_reals(reals: list[DemoReal], *,
                         task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Serve ``reals`` (one balancer's) until cancelled; ``task_status.started(port)``.

    ``refused`` reals get no listener. The port is chosen here and shared by all.
    """
    listening = [r for r in reals if r.behaviour != "refused"]
    if not listening:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            task_status.started(probe.getsockname()[1])
        return
    port, listeners = await _free_port(listening)
    started = trio.current_time()
    async with trio.open_nursery() as nursery:
        for real, listener in zip(listening, listeners):
            nursery.start_soon(trio.serve_listeners,
                               lambda stream, real=real: _serve_one(real, started, stream),
                               [listener])
        task_status.started(port)
