"""``kglb-trio --privsep``: the writer process and the unprivileged side it keeps (issue 18).

Theory of operation
-------------------
The process systemd (or the operator) starts as root becomes the writer: it
builds the real data plane and BIRD speaker, runs ``Writer`` exactly as the
one-process mode does, and serves it on one end of a socketpair
(``WriterServer``). It starts the rest of kglb-trio — config reload, discovery,
probes and their workers, balancers, the generator, the status server — as
``python -m actors.privileges --user NAME -- kglb-trio ... --privsep-fd N``,
which drops to ``NAME`` with no capabilities (CAP_NET_RAW alone when a
balancer enables fwmarks: SO_MARK needs it) before exec'ing.

Who restarts whom: the privileged side is the parent, because an
unprivileged parent cannot start a privileged child. If the unprivileged side
dies (kill -9, a crash beyond its restart intensity, a broken frame), the
writer keeps the kernel as it is and starts a new one, with backoff; the new
one's first states carry provisional weights, so the kernel keeps its weights
until health is known again. If the writer process dies, its socket closes,
the unprivileged side exits at once, and systemd restarts the unit
(``Restart=on-failure`` covers a kill); the new writer adopts the kernel (ownership record and
address marks) with zero operations when nothing changed. A bug in the writer
(an exception) restarts ``Writer.run`` in this process, as in one-process mode.

The IPVS sync daemons need CAP_NET_ADMIN too, so this process runs the
sync-daemon actor, on the config it read itself (and re-reads on SIGHUP),
exactly as one-process mode does: started before the first apply, repaired
every 30 s, recorded ahead beside the state file, its own stopped after the
writer's graceful shutdown. Its statistics ride in the reports, so the
unprivileged side's status shows them; that side runs no daemon actor.

Signals go to this process: SIGTERM and friends are passed to the
unprivileged side, which shuts down and sends a ``StopFrame``; the writer then
withdraws, holds and removes what it owns (unless ``--keep-on-exit``). SIGHUP
re-reads the config here first (the admission rule follows it), then is passed
on. A second shutdown signal exits at once, kernel left as it is.

Threat model (what this buys, honestly): a bug in a network-facing parser —
HTTP/DNS/syslog check replies, DNS discovery answers, the status port, the
config's JSON — runs as an unprivileged user with no capabilities. What such a
bug can do to the kernel is limited to what the writer admits: the services,
VIPs, routes and fwmark range of the config file the writer read itself (as
root), with the config's schedulers and forwarding methods; weights and real
addresses stay under the unprivileged side's control (as discovery's are).
Foreign IPVS objects and addresses stay out of reach. The writer process
itself still runs as root: it parses only bounded, validated protobuf frames
from the socket, the config file and netlink/BIRD replies.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import tempfile
from functools import partial
from pathlib import Path

import structlog
import trio

from kglb.config import Config, ConfigError
from kglb.privsep import allowed_by

from . import sdnotify
from ._cmd_run import _print_operations, _sync_daemons
from .app import writer_settings
from .config_file import read_config
from .exit_codes import ExitCode
from .gc_policy import settle_gc
from .privileges import so_mark_needs_net_admin
from .signals import run_signal_handler
from .supervisor import RestartBudget, open_supervisor
from .sync_daemons import SyncDaemons
from .writer import Writer
from .writer_server import WriterServer

__all__ = ["main", "unprivileged_argv"]

log = structlog.get_logger("kglb_trio.writer_process")

#: Backoff before starting the unprivileged side again, doubling up to the max;
#: it resets once a run lasted ``_STABLE`` seconds.
_BACKOFF, _MAX_BACKOFF, _STABLE = 0.5, 10.0, 60.0
#: How long a stopping unprivileged side may take before it is killed.
_EXIT_GRACE = 10.0


def main(args, config: Config, speaker, dataplane) -> int:
    """Run the writer process until a graceful stop (0) or a forced exit (1)."""
    if any(b.enable_fwmarks for b in config.balancers) and so_mark_needs_net_admin():
        print("kglb-trio: tunnelled checks (enableFwmarks) need CAP_NET_ADMIN for SO_MARK before "
              "Linux 5.17; privilege separation would give the probes that capability, which "
              "defeats it. Run with --single-process on this kernel.", file=sys.stderr)
        return ExitCode.HOST
    return trio.run(_run, args, config, speaker, dataplane)


def unprivileged_argv(args, fd: int, config: Config) -> list[str]:
    """The command line of the unprivileged side: drop, then the same kglb-trio in child mode."""
    drop = [sys.executable, "-m", "actors.privileges", "--user", args.user]
    if any(b.enable_fwmarks for b in config.balancers):
        drop.append("--net-raw")
    return [*drop, "--", sys.executable, "-m", "actors.cli", *args.argv, "--privsep-fd", str(fd)]


class _Keeper:
    """Starts the unprivileged side, serves it, starts it again when it dies."""

    def __init__(self, args, config: Config, server: WriterServer, stopped: trio.Event) -> None:
        self.args, self.config, self.server, self.stopped = args, config, server, stopped
        self.process: trio.Process | None = None
        self.starts = 0

    def signal(self, signum: int) -> bool:
        """Pass ``signum`` on; False if no unprivileged side is running."""
        if self.process is None or self.process.returncode is not None:
            return False
        self.process.send_signal(signum)
        return True

    async def run(self) -> None:
        backoff = _BACKOFF
        while not (self.server.stopping or self.stopped.is_set()):
            started = trio.current_time()
            await self._serve_one()
            if self.server.stopping or self.stopped.is_set():
                return
            backoff = _BACKOFF if trio.current_time() - started > _STABLE else backoff
            log.error("the unprivileged side is gone; the kernel stays as it is; restarting it",
                      returncode=self.process.returncode if self.process else None,
                      seconds=backoff)
            await trio.sleep(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF)

    async def _serve_one(self) -> None:
        ours, theirs = socket.socketpair()
        env = {k: v for k, v in os.environ.items()
               if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
        try:
            # Its own session: a terminal's Ctrl-C reaches the writer only, which passes it on.
            self.process = await trio.lowlevel.open_process(
                unprivileged_argv(self.args, theirs.fileno(), self.config),
                pass_fds=(theirs.fileno(),), env=env, start_new_session=True)
        finally:
            theirs.close()
        self.starts += 1
        log.info("unprivileged side started", pid=self.process.pid, user=self.args.user)
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
        await self.server.serve(stream, stopped=self.stopped)
        with trio.move_on_after(_EXIT_GRACE):
            await self.process.wait()
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


async def _run(args, config: Config, speaker, dataplane) -> int:
    with tempfile.TemporaryDirectory() as scratch:
        # A dry run keeps its record to itself (and prints what it would change).
        ownership = Path(scratch) / "owned.json" if args.dry_run else args.state_file
        writer = Writer(dataplane, speaker,
                        ownership_path=ownership, keep_on_exit=args.keep_on_exit,
                        on_apply=_print_operations if args.dry_run else None,
                        **writer_settings(config))
        daemons = SyncDaemons.beside(ownership, config.sync_daemons, _sync_daemons(args))
        return await _serve(args, config, writer, speaker, dataplane, daemons=daemons)


async def _serve(args, config: Config, writer: Writer, speaker, dataplane, *,
                 daemons: SyncDaemons) -> int:
    server = WriterServer(writer, allowed_by(config), daemons=daemons)
    stopped = trio.Event()
    keeper = _Keeper(args, config, server, stopped)
    forced = False
    try:
        with trio.CancelScope() as everything:
            def shutdown() -> None:
                sdnotify.notify("STOPPING=1")
                if not keeper.signal(signal.SIGTERM):
                    server.stop()  # no unprivileged side to stop first

            def force() -> None:
                nonlocal forced
                forced = True
                keeper.signal(signal.SIGKILL)
                everything.cancel()

            async def reload() -> None:
                try:
                    new = await trio.to_thread.run_sync(read_config, args.config)
                except ConfigError as exc:
                    log.error("config reload refused by the writer; keeping its rules",
                              problems=list(exc.problems))
                else:
                    server.allowed = allowed_by(new)
                    keeper.config = new
                    daemons.set_desired(new.sync_daemons)
                    log.info("writer admission rules reloaded", balancers=len(new.balancers))
                keeper.signal(signal.SIGHUP)

            async def run_writer(*, task_status=trio.TASK_STATUS_IGNORED) -> None:
                async with open_supervisor(budget=RestartBudget()) as supervisor:
                    await supervisor.start("writer", writer.run,
                                           receive_states=server.receive_states)
                    task_status.started()
                # The writer returned: its graceful shutdown is done; then the daemons
                # (connections kept being synchronised while it withdrew and drained).
                if not args.keep_on_exit:
                    await daemons.shutdown()
                stopped.set()

            async with trio.open_nursery() as nursery:
                if hasattr(speaker, "run"):
                    await nursery.start(speaker.run)
                await nursery.start(daemons.run)  # before the first apply, as in one process
                await nursery.start(run_writer)
                settle_gc()  # as in one process: the writer holds whole states (gc_policy)
                await nursery.start(partial(run_signal_handler, shutdown=shutdown, force=force,
                                            reload=reload))
                await nursery.start(sdnotify.run_watchdog)
                nursery.start_soon(_notify_ready, writer)
                nursery.start_soon(keeper.run)
                await stopped.wait()
                with trio.move_on_after(_EXIT_GRACE):
                    while keeper.process is not None and keeper.process.returncode is None:
                        await trio.sleep(0.05)
                nursery.cancel_scope.cancel()
    finally:
        keeper.signal(signal.SIGKILL)
        with trio.CancelScope(shield=True):
            await dataplane.aclose()
    return ExitCode.FAILED if forced else ExitCode.OK


async def _notify_ready(writer: Writer) -> None:
    """READY=1 once the writer applied a first state (the writer is systemd's main process)."""
    while writer.statistics().applied is None:
        await trio.sleep(0.1)
    sdnotify.notify("READY=1")
