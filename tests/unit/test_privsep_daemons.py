"""IPVS sync daemons under ``--privsep`` (issue 18's follow-up): the writer process keeps them.

The unprivileged side has no CAP_NET_ADMIN, so the kernel refuses any daemon it
asks for. These tests show that the writer process's side runs the sync-daemon
actor on the config it read itself (started before the first apply, replaced on
SIGHUP, its own stopped after the graceful shutdown), that the unprivileged
side programs none, and that the daemons still show in its statistics and
``/status`` through the writer's reports. The "kernel" is ``MemoryDaemons``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from functools import partial
from pathlib import Path

import httpx
import trio
from _control_fakes import FakeCheck, balancer_config
from test_app_cmd_run import config as one_balancer

from actors import sync_daemons, writer_process
from actors.app import run_kglb
from actors.cli import run_parser
from actors.dataplane import MemoryDataPlane
from actors.privsep_report import decode_report, encode_report
from actors.probes import Prober
from actors.status import status_document
from actors.sync_daemons import DaemonStatistics, MemoryDaemons, SyncDaemons, daemons_path
from actors.writer import Writer, WriterStatistics
from actors.writer_proxy import RemoteDaemons, RemoteSpeaker, WriterProxy
from actors.writer_server import WriterServer
from kglb.config import Config
from kglb.privsep import allowed_by
from kglb.sync_daemons import SyncDaemon, SyncState

MASTER = SyncDaemon(state=SyncState.MASTER, interface="eth1", sync_id=7)
MASTER9 = SyncDaemon(state=SyncState.MASTER, interface="eth1", sync_id=9)
FOREIGN_BACKUP = SyncDaemon(state=SyncState.BACKUP, interface="eth2", sync_id=3)


def test_daemon_statistics_cross_the_socket_whole():
    daemons = DaemonStatistics(desired=(MASTER, SyncDaemon(state=SyncState.BACKUP, interface="eth1")),
                               running=(MASTER, FOREIGN_BACKUP), owned=(MASTER,),
                               conflicts=(FOREIGN_BACKUP,), errors=2,
                               last_error="start backup eth1 syncid 0: busy")
    payload = encode_report(WriterStatistics(), applied_sequence=0, refused={}, daemons=daemons)
    assert decode_report(payload).daemons == daemons
    empty = encode_report(WriterStatistics(), applied_sequence=0, refused={})
    assert decode_report(empty).daemons == DaemonStatistics()


async def _until(predicate, timeout=10):
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)


async def test_run_kglb_with_the_writer_elsewhere_shows_its_daemons_and_programs_none(tmp_path):
    config = Config(balancers=(balancer_config(rise=1, fall=1),), sync_daemons=(MASTER,))
    writer_kernel, our_kernel = MemoryDaemons(), MemoryDaemons()
    writer_kernel.running[SyncState.BACKUP] = FOREIGN_BACKUP  # another tool's
    writer = Writer(MemoryDataPlane(), ownership_path=tmp_path / "owned.json")
    daemons = SyncDaemons(writer_kernel, record=daemons_path(tmp_path / "owned.json"),
                          desired=config.sync_daemons)
    server = WriterServer(writer, allowed_by(config), daemons=daemons)
    a, b = trio.socket.socketpair()
    stopped = trio.Event()

    async def run_writer(*, task_status=trio.TASK_STATUS_IGNORED):
        await writer.run(receive_states=server.receive_states, task_status=task_status)
        stopped.set()

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(daemons.run)
            await nursery.start(run_writer)
            nursery.start_soon(partial(server.serve, trio.SocketStream(b), stopped=stopped))
            async with trio.open_nursery() as side:
                await _unprivileged_side(side, config, a, our_kernel, writer_kernel, tmp_path)
            nursery.cancel_scope.cancel()  # the writer process's daemon actor
    assert our_kernel.read() == () and not (tmp_path / "side").exists()


async def _unprivileged_side(nursery, config, sock, our_kernel, writer_kernel, tmp_path):
    proxy = WriterProxy(trio.SocketStream(sock))
    handle = await nursery.start(partial(
        run_kglb, config, prober=Prober(check=FakeCheck(), jitter=0), writer=proxy,
        speaker=RemoteSpeaker(proxy), daemons=RemoteDaemons(proxy),
        sync_daemons=our_kernel, ownership_path=tmp_path / "side" / "owned.json"))
    await _until(lambda: handle.statistics().sync_daemons.owned == (MASTER,))
    stats = handle.statistics().sync_daemons
    assert stats.running == (MASTER, FOREIGN_BACKUP) and stats.conflicts == ()
    doc = status_document(handle.statistics(), now=trio.current_time(), wall=0.0)
    assert doc["sync_daemons"]["running"] == ["master eth1 syncid 7", "backup eth2 syncid 3"]
    # A reload on this side changes nothing here: the writer follows its own config.
    assert await handle.reload(Config(balancers=config.balancers, sync_daemons=(MASTER9,))) == []
    await trio.sleep(0.2)
    assert writer_kernel.read() == (MASTER, FOREIGN_BACKUP)
    handle.shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config_file(tmp_path: Path, *daemons: SyncDaemon) -> Path:
    path = tmp_path / "kglb.json"
    document = json.loads(one_balancer())  # a dummy check: no network
    document["ipvsSyncDaemons"] = [{"state": d.state.name, "interface": d.interface,
                                    "syncId": d.sync_id} for d in daemons]
    path.write_text(json.dumps(document))
    return path


def _unprivileged_child() -> int | None:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(os.getpid())],
                         capture_output=True, text=True).stdout
    for pid in map(int, out.split()):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"--privsep-fd" in cmdline and b"actors.privileges" not in cmdline:
            return pid
    return None


async def _status(address: str) -> dict | None:
    try:
        async with httpx.AsyncClient() as client:
            return (await client.get(f"http://{address}/status", timeout=2)).json()
    except (httpx.HTTPError, ValueError):
        return None


async def test_the_writer_process_starts_replaces_and_stops_the_daemons(tmp_path, monkeypatch):
    """The writer process's side (in this process) against a real unprivileged side
    (a child process, run with --dry-run so it could touch no kernel in any case)."""
    kernel = MemoryDaemons()
    kernel.running[SyncState.BACKUP] = FOREIGN_BACKUP  # another tool's: never touched
    monkeypatch.setattr(sync_daemons, "KernelDaemons", lambda: kernel)
    config_path = _config_file(tmp_path, MASTER)
    address = f"127.0.0.1:{_free_port()}"
    user = "0" if os.geteuid() == 0 else str(os.getuid())
    argv = ["--config", str(config_path), "--privsep", "--user", user,
            "--state-file", str(tmp_path / "owned.json"), "--status-address", address,
            "--log-format", "console"]
    args = run_parser().parse_args(argv)
    args.argv = [*argv, "--dry-run"]  # the unprivileged side only
    config = writer_process.read_config(str(config_path))
    dataplane = MemoryDataPlane()
    monkeypatch.chdir(tmp_path)
    result = []

    async def writer_side():
        result.append(await writer_process._run(args, config, None, dataplane))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer_side)
        # Before the first apply the daemon runs, programmed by this (the writer's) side.
        await _until(lambda: dataplane.state.services, timeout=120)
        assert kernel.read() == (MASTER, FOREIGN_BACKUP)
        record = json.loads(daemons_path(tmp_path / "owned.json").read_text())
        assert record["daemons"] == [{"state": "MASTER", "interface": "eth1", "sync_id": 7}]

        # The unprivileged side's status shows the writer's daemons, the foreign one too.
        async def shows(running):
            doc = await _status(address)
            return doc is not None and doc["sync_daemons"]["running"] == running

        with trio.fail_after(60):
            while not await shows(["master eth1 syncid 7", "backup eth2 syncid 3"]):
                await trio.sleep(0.1)
        doc = await _status(address)
        assert doc["sync_daemons"]["owned"] == ["master eth1 syncid 7"]
        assert doc["sync_daemons"]["errors"] == 0

        # SIGHUP: the writer re-reads the config itself and replaces its daemon.
        _config_file(tmp_path, MASTER9)
        os.kill(os.getpid(), signal.SIGHUP)
        with trio.fail_after(60):
            while not await shows(["master eth1 syncid 9", "backup eth2 syncid 3"]):
                await trio.sleep(0.1)
        assert kernel.read() == (MASTER9, FOREIGN_BACKUP)

        # A graceful stop (SIGTERM, passed on to the unprivileged side as the writer does).
        child = _unprivileged_child()
        assert child is not None
        os.kill(child, signal.SIGTERM)
    assert result == [0]
    assert kernel.read() == (FOREIGN_BACKUP,)  # ours stopped, the foreign one left alone
    assert json.loads(daemons_path(tmp_path / "owned.json").read_text())["daemons"] == []
