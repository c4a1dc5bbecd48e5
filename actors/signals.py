"""Signals of the ``kglb-trio`` process (decisions.md rows 2, 3).

SIGTERM, SIGINT, SIGQUIT and SIGUSR1 (kglbd's set) begin the graceful
shutdown; a second one forces a fast exit (the kernel is left as it is).
SIGHUP reloads the config. SIGUSR2 drains the host (actors/host_drain.py): routes
withdrawn, established connections served, then the graceful shutdown; a
shutdown signal during a drain begins the graceful shutdown at once.
"""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable

import structlog
import trio

__all__ = ["SHUTDOWN_SIGNALS", "run_signal_handler"]

log = structlog.get_logger()

SHUTDOWN_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1)


async def run_signal_handler(
    *,
    shutdown: Callable[[], None],
    force: Callable[[], None],
    reload: Callable[[], Awaitable[object]] | None = None,
    drain: Callable[[], None] | None = None,
    task_status=trio.TASK_STATUS_IGNORED,
) -> None:
    """Handle signals until cancelled: ``shutdown()`` on the first shutdown signal,
    ``force()`` on the next one, ``await reload()`` on SIGHUP (ignored while
    shutting down), ``drain()`` on SIGUSR2. Must run in the main thread.
    """
    with trio.open_signal_receiver(*SHUTDOWN_SIGNALS, signal.SIGHUP, signal.SIGUSR2) as signals:
        task_status.started()
        stopping = draining = False
        async for signum in signals:
            name = signal.Signals(signum).name
            if signum == signal.SIGUSR2:
                if stopping or draining or drain is None:
                    log.info("ignoring signal", signal=name)
                    continue
                draining = True  # a shutdown signal now cuts the drain short, gracefully
                log.info("draining the host", signal=name)
                drain()
            elif signum == signal.SIGHUP:
                if stopping or reload is None:
                    log.info("ignoring signal", signal=name)
                    continue
                log.info("reloading the config", signal=name)
                await reload()
            elif stopping:
                log.warning("second shutdown signal: exiting now, kernel left as it is",
                            signal=name)
                force()
            else:
                stopping = True
                log.info("starting shutdown", signal=name)
                shutdown()
