"""The sync-daemon actor through run_kglb, on the fake kernel (MemoryDaemons), in virtual time."""

import json
from functools import partial

import trio
from _control_fakes import FakeCheck, balancer_config

from actors.app import run_kglb
from actors.probes import Prober
from actors.status import status_document
from actors.sync_daemons import INTERVAL, MemoryDaemons, daemons_path
from kglb.config import Config
from kglb.sync_daemons import SyncDaemon, SyncState

MASTER = SyncDaemon(state=SyncState.MASTER, interface="eth1", sync_id=7)
BACKUP = SyncDaemon(state=SyncState.BACKUP, interface="eth1", sync_id=7)
BACKUP9 = SyncDaemon(state=SyncState.BACKUP, interface="eth1", sync_id=9)


def config(*daemons: SyncDaemon) -> Config:
    return Config(balancers=(balancer_config(),), sync_daemons=daemons)


async def start(nursery, cfg, kernel, tmp_path, **kw):
    return await nursery.start(partial(
        run_kglb, cfg, prober=Prober(check=FakeCheck(), jitter=0), sync_daemons=kernel,
        ownership_path=tmp_path / "owned.json", **kw))


def record(tmp_path) -> list[dict]:
    return json.loads(daemons_path(tmp_path / "owned.json").read_text())["daemons"]


async def test_daemons_start_with_the_config_change_on_reload_and_stop_at_shutdown(
        autojump_clock, tmp_path):
    kernel = MemoryDaemons()
    async with trio.open_nursery() as nursery:
        handle = await start(nursery, config(MASTER, BACKUP), kernel, tmp_path)
        assert kernel.read() == (MASTER, BACKUP)  # before the first state is applied
        assert record(tmp_path) == [{"state": "MASTER", "interface": "eth1", "sync_id": 7},
                                    {"state": "BACKUP", "interface": "eth1", "sync_id": 7}]
        assert await handle.reload(config(MASTER, BACKUP9)) == []
        await trio.sleep(0.1)
        assert kernel.read() == (MASTER, BACKUP9)
        stats = handle.statistics()
        assert stats.sync_daemons.owned == (MASTER, BACKUP9)
        doc = status_document(stats, now=trio.current_time(), wall=0.0)
        assert doc["sync_daemons"]["running"] == ["master eth1 syncid 7", "backup eth1 syncid 9"]
        handle.shutdown()
    assert kernel.read() == ()
    assert record(tmp_path) == []


async def test_a_restart_adopts_without_a_gap_and_keep_on_exit_leaves_them(autojump_clock, tmp_path):
    kernel = MemoryDaemons()
    async with trio.open_nursery() as nursery:
        handle = await start(nursery, config(MASTER), kernel, tmp_path, keep_on_exit=True)
        handle.shutdown()
    assert kernel.read() == (MASTER,)
    daemons_path(tmp_path / "owned.json").unlink()  # even with the record lost
    changes = []
    change = kernel.change
    kernel.change = lambda stop, start_: changes.append((stop, start_)) or change(stop, start_)
    async with trio.open_nursery() as nursery:
        handle = await start(nursery, config(MASTER), kernel, tmp_path)
        assert handle.statistics().sync_daemons.owned == (MASTER,)  # adopted
        handle.shutdown()
    assert changes == [((SyncState.MASTER,), ())]  # never restarted; stopped once, at the end
    assert kernel.read() == ()


async def test_a_foreign_daemon_is_never_touched(autojump_clock, tmp_path):
    kernel = MemoryDaemons()
    kernel.running[SyncState.BACKUP] = BACKUP9  # keepalived's
    async with trio.open_nursery() as nursery:
        handle = await start(nursery, config(MASTER, BACKUP), kernel, tmp_path)
        stats = handle.statistics().sync_daemons
        assert stats.conflicts == (BACKUP9,)
        assert stats.owned == (MASTER,)
        assert await handle.reload(config()) == []  # nothing wanted now
        await trio.sleep(0.1)
        assert kernel.read() == (BACKUP9,)
        handle.shutdown()
    assert kernel.read() == (BACKUP9,)


async def test_a_refused_start_is_counted_and_retried(autojump_clock, tmp_path):
    kernel = MemoryDaemons(links=("lo",))  # eth1 does not exist yet
    async with trio.open_nursery() as nursery:
        handle = await start(nursery, config(MASTER), kernel, tmp_path)
        stats = handle.statistics().sync_daemons
        assert stats.errors == 1
        assert stats.last_error == "start master eth1 syncid 7: no link named 'eth1'"
        assert stats.owned == () and kernel.read() == ()
        kernel._links.add("eth1")  # the link appears; so does a daemon stopped behind our back
        await trio.sleep(INTERVAL + 0.1)
        assert kernel.read() == (MASTER,)
        kernel.running.clear()
        await trio.sleep(INTERVAL)
        assert kernel.read() == (MASTER,)
        handle.shutdown()
    assert kernel.read() == ()


async def test_no_daemons_configured_never_reads_the_kernel(autojump_clock, tmp_path):
    kernel = MemoryDaemons()
    kernel.read = None  # any call would raise TypeError
    async with trio.open_nursery() as nursery:
        handle = await start(nursery, config(), kernel, tmp_path)
        await trio.sleep(2 * INTERVAL)
        handle.shutdown()
