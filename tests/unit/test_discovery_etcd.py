"""etcd discovery against a real etcd: list, watch, a killed and restarted etcd, compaction."""

import pytest
import trio

from _discovery_harness import discovering
from _etcd import Etcd, cutter
from actors.discovery import etcd as etcd_source
from kglb.config import EtcdSource


@pytest.fixture
def lists(monkeypatch):
    """How many times the prefix was listed (a resumed watch lists nothing)."""
    calls = []
    original = etcd_source._list

    async def counting(*args):
        calls.append(args[1])
        await original(*args)

    monkeypatch.setattr(etcd_source, "_list", counting)
    return calls


@pytest.fixture
def etcd(tmp_path):
    server = Etcd(tmp_path / "etcd")
    server.start()
    yield server
    server.kill()


def addresses(reals):
    return {address for _, address, _ in reals}


async def test_list_then_watch_with_ports_and_weights(etcd):
    etcd.put("/lb/web/a", "10.1.0.1:81")
    etcd.put("/lb/webx/other", "10.9.9.9:80")  # another prefix: not ours
    async with discovering(EtcdSource(endpoints=(etcd.url,), prefix="/lb/web/"), port=80) as found:
        await found.wait_for(lambda r: r == {("10.1.0.1", "10.1.0.1", 81)})
        etcd.put("/lb/web/b", '{"host": "10.1.0.2", "port": 82, "weight": 0.5}')
        last = await found.wait_for(lambda r: len(r) == 2)
        assert {e.address: (e.port, e.weight) for e in last} == {"10.1.0.1": (81, 1.0),
                                                                 "10.1.0.2": (82, 0.5)}
        etcd.put("/lb/web/c", "10.1.0.3")
        etcd.delete("/lb/web/a")
        await found.wait_for(lambda r: addresses(r) == {"10.1.0.2", "10.1.0.3"})
        etcd.put("/lb/web/bad", "not a real:x")  # left out, logged; the others stay
        await trio.sleep(0.2)
        assert addresses(found.reals(found.memory.sent)) == {"10.1.0.2", "10.1.0.3"}
        assert found.memory.status().kind == "etcd" and found.memory.status().up


async def test_killed_and_restarted_etcd_keeps_the_list_and_misses_nothing(etcd):
    for i in (1, 2, 3):
        etcd.put(f"/lb/web/{i}", f"10.1.0.{i}")
    async with discovering(EtcdSource(endpoints=(etcd.url,), prefix="/lb/web/")) as found:
        await found.wait_for(lambda r: len(r) == 3)
        etcd.kill()
        status = await found.wait_status(lambda s: not s.up)
        assert status.endpoints == 3 and status.failures >= 1
        etcd.start()
        etcd.put("/lb/web/4", "10.1.0.4")
        etcd.delete("/lb/web/1")
        await found.wait_for(lambda r: addresses(r) == {"10.1.0.2", "10.1.0.3", "10.1.0.4"},
                             timeout=20)
        await found.wait_status(lambda s: s.up)


async def test_watch_resumes_from_its_revision_after_a_disconnect(etcd, lists):
    etcd.put("/lb/web/1", "10.1.0.1")
    etcd.put("/lb/web/2", "10.1.0.2")
    async with cutter(etcd.port) as link, discovering(
            EtcdSource(endpoints=(link.url,), prefix="/lb/web/")) as found:
        await found.wait_for(lambda r: len(r) == 2)
        link.cut()
        await found.wait_status(lambda s: not s.up)
        # While cut off: a put and a delete, each a revision the watch must replay.
        etcd.put("/lb/web/3", "10.1.0.3")
        etcd.delete("/lb/web/1")
        link.open = True
        await found.wait_for(lambda r: addresses(r) == {"10.1.0.2", "10.1.0.3"}, timeout=20)
        assert len(lists) == 1  # resumed from its revision, not listed again


async def test_compacted_revision_lists_the_prefix_again(etcd, lists):
    etcd.put("/lb/web/1", "10.1.0.1")
    etcd.put("/lb/web/2", "10.1.0.2")
    async with cutter(etcd.port) as link, discovering(
            EtcdSource(endpoints=(link.url,), prefix="/lb/web/")) as found:
        await found.wait_for(lambda r: len(r) == 2)
        link.cut()
        await found.wait_status(lambda s: not s.up)
        etcd.put("/lb/web/3", "10.1.0.3")
        etcd.delete("/lb/web/2")
        revision = etcd.put("/lb/other", "x")
        etcd.compact(revision)  # the watch's next revision is gone
        link.open = True
        await found.wait_for(lambda r: addresses(r) == {"10.1.0.1", "10.1.0.3"}, timeout=20)
        await found.wait_status(lambda s: s.up)
        assert len(lists) == 2


async def test_a_wiped_prefix_is_held_until_it_stays_empty(etcd, monkeypatch):
    monkeypatch.setattr(etcd_source, "HEARTBEAT", 0.3)
    for i in (1, 2, 3, 4):
        etcd.put(f"/lb/web/{i}", f"10.1.0.{i}")
    async with discovering(EtcdSource(endpoints=(etcd.url,), prefix="/lb/web/")) as found:
        await found.wait_for(lambda r: len(r) == 4)
        etcd.delete_prefix("/lb/web/")
        status = await found.wait_status(lambda s: s.held)
        assert status.held == 4 and len(found.memory.sent) == 4
        await found.wait_for(lambda r: r == set())  # the heartbeat's answer agrees
