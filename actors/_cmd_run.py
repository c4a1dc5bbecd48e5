"""``kglb-trio --config FILE``: run the control plane until a signal.

Order of things: logging; the config (a bad one prints every problem with
its path and exits before anything is touched); the preflight checks of
the host (errors exit, warnings are logged; skipped with ``--dry-run``);
the run mode (``_run_mode``: started as root, a writer process and an
unprivileged side, actors/writer_process.py; else one process); the
stats/status server binds (an address in use exits, in one line, before
the kernel is touched, decisions.md row 4); signal handlers; then the control plane.
SIGUSR2 drains the host (``kglb-trio drain``, actors/host_drain.py) and then
stops. SIGHUP (and, with ``--watch-config``, a change of the file's mtime) reloads;
a failed reload keeps the running config. Under systemd it sends READY=1 once
the kernel matches the first desired state, STOPPING=1 at shutdown, and
watchdog pings. Exit status (``exit_codes``): OK after a graceful shutdown,
FAILED after a forced exit or a crash beyond the restart intensity, CONFIG for
a bad config, HOST for failed preflight checks, a status address that
cannot be bound or an unprivileged user that does not exist or cannot start
the unprivileged side, USAGE for a bad BGP setting.

``--dry-run`` runs on the in-memory data plane and prints every applied
change. It never touches what a live instance beside it uses: its ownership
record is in a temporary directory, routes stay in memory (BIRD's socket and
include file are never opened, even with ``--bgp-neighbor``), it sends no
systemd notifications, and the status server listens on an ephemeral
loopback port unless ``--status-address`` names another than the default.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from functools import partial

import structlog
import trio

from kglb import Operation
from kglb.config import Config, ConfigError
from kglb.pretty import render_operation

from . import _run_mode, logs, sdnotify
from .app import KglbHandle, run_kglb
from .gc_policy import release_memory, settle_gc
from .config_file import read_config
from .dataplane import MemoryDataPlane
from .exit_codes import ExitCode
from .http import run_http_server
from .metrics import LoopLagMonitor
from .probes import Prober, suggested_workers
from .signals import run_signal_handler
from .supervisor import RestartBudget

__all__ = ["main"]

log = structlog.get_logger()

#: How often ``--watch-config`` looks at the file's mtime.
WATCH_INTERVAL = 2.0


def main(args) -> int:
    logs.configure(args.log_format, args.log_level)
    try:
        config = read_config(args.config)
    except ConfigError as exc:
        print(f"kglb-trio: invalid config {args.config}:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return ExitCode.CONFIG
    for warning in config.warnings:
        log.warning("config", warning=warning)
    remote = args.privsep_fd is not None  # the unprivileged side of --privsep
    if not args.dry_run and not remote and not _preflight(config):
        return ExitCode.HOST
    if not args.dry_run and not remote and (problem := _state_file_problem(args.state_file)):
        print(f"kglb-trio: {problem}", file=sys.stderr)
        return ExitCode.HOST
    if not remote:
        try:
            mode = _run_mode.for_host(args, any(b.enable_fwmarks for b in config.balancers))
        except _run_mode.CannotSeparate as exc:
            print(f"kglb-trio: {exc}", file=sys.stderr)
            return ExitCode.HOST
        if mode.note:
            log.warning(mode.note)
        if mode.privsep and (problem := _run_mode.access_problem(mode.user, args.config)):
            print(f"kglb-trio: the unprivileged side (user {mode.user}) {problem}; give it "
                  "access, or pass --user NAME or --single-process", file=sys.stderr)
            return ExitCode.HOST
        args.privsep, args.user = mode.privsep, mode.user
    if args.dry_run:
        _isolate_dry_run(args)
    try:
        speaker = _speaker(args)
    except ValueError as exc:
        print(f"kglb-trio: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    if remote:
        speaker = None  # the writer process holds BIRD
    elif args.privsep:
        from . import writer_process

        return writer_process.main(args, config, speaker, _dataplane(args, config))
    try:
        return trio.run(_run, args, config, speaker)
    except BaseExceptionGroup as group:
        cannot_listen, rest = group.split(_CannotListen)
        if rest is None:
            # Before the kernel is touched (decisions.md row 4): one line, no traceback.
            print(f"kglb-trio: {_first(cannot_listen)}", file=sys.stderr)
            return ExitCode.HOST
        log.error("kglb-trio stopped on an error; the kernel is left as it is",
                  exc_info=group)
        return ExitCode.FAILED


class _CannotListen(Exception):
    """The status server cannot bind ``-status_port``; the message says why and how to fix it."""


def _first(group: BaseExceptionGroup) -> BaseException:
    while isinstance(group, BaseExceptionGroup):
        group = group.exceptions[0]
    return group


async def _start_status_server(nursery, address: str, handle, loop_lag, budget) -> None:
    try:
        await nursery.start(partial(run_http_server, address, handle, loop_lag=loop_lag,
                                    budget=budget))
    except OSError as exc:
        why = exc.strerror or str(exc)
        raise _CannotListen(f"-status_port {address}: cannot listen: {why.lower()}; "
                            "stop what uses it or give another HOST:PORT") from None


class _LateHandle:
    """The stats server binds before the control plane exists; it reads through this."""

    handle: KglbHandle | None = None

    def statistics(self):
        if self.handle is None:
            raise RuntimeError("the control plane is starting")
        return self.handle.statistics()


async def _run(args, config: Config, speaker) -> int:
    dataplane = _dataplane(args, config)
    late = _LateHandle()
    forced = False
    try:
        with trio.CancelScope() as everything:
            def force() -> None:
                nonlocal forced
                forced = True
                everything.cancel()

            def shutdown() -> None:
                sdnotify.notify("STOPPING=1")
                if late.handle is None:
                    force()
                else:
                    late.handle.shutdown()

            async with trio.open_nursery() as nursery:
                loop_lag = LoopLagMonitor()
                # One restart budget for the status server and every actor of the control plane.
                budget = RestartBudget()
                await _start_status_server(nursery, args.status_address, late, loop_lag, budget)
                await nursery.start(loop_lag.run)
                await nursery.start(partial(run_signal_handler, shutdown=shutdown, force=force,
                                            reload=lambda: _reload(args.config, late.handle, resize),
                                            drain=lambda: _drain(late.handle, args.drain_timeout)))
                prober = Prober(source_v4=args.source_ipv4, source_v6=args.source_ipv6,
                                workers=_probe_workers(args.probe_workers, config))

                def resize(new: Config) -> None:  # a reload sizes the workers as a start
                    prober.set_workers(_probe_workers(args.probe_workers, new))
                stopped = trio.Event()
                writer = None
                if args.privsep_fd is not None:
                    from .writer_proxy import connect

                    writer, speaker = connect(args.privsep_fd, on_lost=force)

                async def control_plane(*, task_status=trio.TASK_STATUS_IGNORED) -> None:
                    await run_kglb(
                        config, dataplane=dataplane, prober=prober, speaker=speaker,
                        ownership_path=None if args.dry_run else args.state_file,
                        keep_on_exit=args.keep_on_exit, budget=budget,
                        on_apply=_print_operations if args.dry_run else None,
                        writer=writer, sync_daemons=_sync_daemons(args),
                        task_status=task_status)
                    stopped.set()

                late.handle = await nursery.start(control_plane)
                settle_gc()  # no 50-100 ms full collections every few seconds (gc_policy)
                nursery.start_soon(_notify_ready, late.handle)
                await nursery.start(sdnotify.run_watchdog)
                if args.watch_config:
                    nursery.start_soon(_watch_config, args.config, late.handle, resize)
                await stopped.wait()
                nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await dataplane.aclose()
    return ExitCode.FAILED if forced else ExitCode.OK


def _drain(handle: KglbHandle | None, timeout: float) -> None:
    if handle is not None:
        sdnotify.notify("STOPPING=1")
        handle.drain_host(timeout)


def _sync_daemons(args):
    """The kernel's sync daemons; None (in memory) for a dry run. With --privsep this side
    has no CAP_NET_ADMIN: the kernel refuses them (logged, counted, shown by status)."""
    if args.dry_run:
        return None
    from .sync_daemons import KernelDaemons

    return KernelDaemons()


def _isolate_dry_run(args) -> None:
    """Keep a dry run off everything a live instance beside it uses."""
    from .cli import DEFAULT_STATUS_ADDRESS

    if args.bgp_neighbor:
        log.info("dry run: routes are kept in memory, BIRD is not touched",
                 bird_include=args.bird_include)
        args.bgp_neighbor = []
    if args.status_address == DEFAULT_STATUS_ADDRESS:
        args.status_address = "127.0.0.1:0"  # the live instance listens on the default
    os.environ.pop("NOTIFY_SOCKET", None)  # that is the live unit's, if any
    os.environ.pop("WATCHDOG_USEC", None)


def _probe_workers(requested: int, config: Config) -> int:
    """``--probe-workers``: N as asked, or 0 = sized from the config's checks per second."""
    if requested > 0:
        return requested
    rate = sum(len(b.hosts) * 1000 / b.checker.interval_ms for b in config.balancers)
    return suggested_workers(rate, os.cpu_count() or 1)


def _preflight(config: Config) -> bool:
    from .preflight import preflight, sloppy_sysctls

    errors, warnings = preflight(
        forwards={b.forward for b in config.balancers},
        tunnelled_checks=any(b.enable_fwmarks for b in config.balancers),
        sloppy=sloppy_sysctls(config.balancers))
    for warning in warnings:
        log.warning("preflight", warning=warning)
    for error in errors:
        print(f"kglb-trio: {error}", file=sys.stderr)
    return not errors


def _state_file_problem(path: str) -> str | None:
    """Why the ownership record cannot be written there, found before the kernel is touched
    (the writer records what it creates before creating it)."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as e:
        why = (e.strerror or str(e)).lower()
        return f"--state-file {path}: cannot create {directory}: {why}; give a path in a writable directory"
    if os.path.isdir(path) or not os.access(directory, os.W_OK | os.X_OK):
        return f"--state-file {path}: cannot write there; give a path in a writable directory"
    return None


async def _notify_ready(handle: KglbHandle) -> None:
    """READY=1 once the writer applied the first desired state."""
    while True:
        stats = handle.statistics()
        if stats.desired is not None and stats.writer.applied == stats.desired:
            sdnotify.notify("READY=1")
            return
        await trio.sleep(0.1)


def _dataplane(args, config: Config):
    if args.dry_run or args.privsep_fd is not None:
        return MemoryDataPlane()
    try:
        from .dataplane.ipvs import IpvsDataPlane
    except ImportError as exc:  # pyroute2 missing: say so loudly, run in memory
        log.error("IPVS data plane unavailable, running on the in-memory data plane",
                  error=str(exc))
        return MemoryDataPlane()
    links = sorted({"lo", *(b.link for b in config.balancers)})
    return IpvsDataPlane(links)


async def _reload(path: str, handle: KglbHandle | None,
                  resize: Callable[[Config], None] | None = None) -> list[str]:
    if handle is None:
        return ["the control plane is starting"]
    try:
        config = await trio.to_thread.run_sync(read_config, path)
    except ConfigError as exc:
        return handle.refuse_reload(exc.problems)
    sdnotify.notify("RELOADING=1")
    try:
        problems = await handle.reload(config)
    finally:
        sdnotify.notify("READY=1")
    if not problems:
        log.info("config reloaded", balancers=len(config.balancers))
        if resize is not None:
            resize(config)
        await trio.to_thread.run_sync(release_memory)  # what the old config freed (gc_policy)
    return problems


async def _watch_config(path: str, handle: KglbHandle,
                        resize: Callable[[Config], None] | None = None) -> None:
    """Reload whenever the file's mtime (or inode: editors replace files) changes."""

    def stamp() -> tuple[int, int] | None:
        try:
            info = os.stat(path)
        except OSError:
            return None
        return info.st_mtime_ns, info.st_ino

    seen = stamp()
    while True:
        await trio.sleep(WATCH_INTERVAL)
        now = stamp()
        if now is not None and now != seen:
            seen = now
            log.info("config file changed", path=path)
            await _reload(path, handle, resize)


def _print_operations(ops: list[Operation]) -> None:
    for op in ops:
        print(render_operation(op), flush=True)


def _speaker(args):
    """A BirdSpeaker when ``--bgp-neighbor`` is given, else None (in-memory routes, as kglb)."""
    if not args.bgp_neighbor:
        return None
    from kglb.bird import BirdSettings, parse_neighbor

    from .bgp import BirdSpeaker

    return BirdSpeaker(BirdSettings(
        neighbors=tuple(parse_neighbor(n) for n in args.bgp_neighbor),
        source_addresses=tuple(args.bgp_source_address),
        socket=args.bird_socket, include_path=args.bird_include, birdc=args.birdc))
