"""systemd's notify protocol (sd_notify(3)), in plain socket code.

``notify("READY=1")`` once the data plane matches the first desired state,
``notify("STOPPING=1")`` when shutdown begins, ``notify("RELOADING=1")`` around
a reload. ``run_watchdog`` pings ``WATCHDOG=1`` from the event loop itself, so
a stuck loop (keepalived's 31-hour frozen checker, anchors.md §8.6) stops the
pings and systemd restarts the service. Outside systemd (no NOTIFY_SOCKET)
everything here does nothing.
"""

from __future__ import annotations

import os
import socket

import structlog
import trio

__all__ = ["notify", "run_watchdog", "watchdog_interval"]

log = structlog.get_logger()


def _address(environ) -> str | bytes | None:
    path = environ.get("NOTIFY_SOCKET", "")
    if not path:
        return None
    if path.startswith("@"):  # abstract namespace
        return b"\0" + path[1:].encode()
    if not path.startswith("/"):
        return None  # vsock and other schemes are not for us
    return path


def notify(message: str, *, environ=os.environ) -> bool:
    """Send one notification; True if it was sent. Never raises and never blocks."""
    address = _address(environ)
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.setblocking(False)
            sock.sendto(message.encode(), address)
    except OSError as exc:
        # A lost notification is not worth crashing a load balancer for; systemd
        # will complain (start timeout, watchdog) and that is the right signal.
        log.warning("sd_notify failed", message=message, error=str(exc))
        return False
    return True


def watchdog_interval(*, environ=os.environ) -> float | None:
    """The watchdog period systemd asked for, in seconds, or None when not supervised.

    WATCHDOG_PID, when set, names the process that must ping (sd_watchdog_enabled(3)).
    """
    usec = environ.get("WATCHDOG_USEC", "")
    pid = environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or _address(environ) is None:
        return None
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 1e6


async def run_watchdog(*, environ=os.environ, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Ping WATCHDOG=1 at half the period systemd expects, forever; return at once if not asked."""
    interval = watchdog_interval(environ=environ)
    task_status.started(interval)
    if interval is None:
        return
    while True:
        notify("WATCHDOG=1", environ=environ)
        await trio.sleep(interval / 2)
