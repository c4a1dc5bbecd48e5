"""File discovery against a real file: atomic and non-atomic rewrites, missing, emptied."""

import math
import os
from functools import partial

import trio

from _control_fakes import balancer_config
from _discovery_harness import discovering
from actors.discovery import DiscoveryMemory, run_discovery
from actors.discovery import _actor as discovery_actor
from actors.resolver import ResolveError
from kglb.config import FileSource

REFRESH_MS = 20


def write_atomically(path, text):
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def targets(*items):
    return '[{"targets": [%s], "labels": {"job": "web"}}]' % ", ".join(f'"{t}"' for t in items)


async def test_atomic_rewrite_is_picked_up_with_ports(tmp_path):
    path = tmp_path / "reals.json"
    write_atomically(path, targets("10.1.0.1:81", "10.1.0.2"))
    async with discovering(FileSource(path=str(path), refresh_ms=REFRESH_MS), port=80) as found:
        await found.wait_for(lambda r: r == {("10.1.0.1", "10.1.0.1", 81),
                                             ("10.1.0.2", "10.1.0.2", 80)})
        write_atomically(path, targets("10.1.0.1:81", "10.1.0.2", "10.1.0.3:82"))
        await found.wait_for(lambda r: ("10.1.0.3", "10.1.0.3", 82) in r and len(r) == 3)
        status = found.memory.status()
        assert status.kind == "file" and status.up and status.endpoints == 3


async def test_partial_write_keeps_the_last_list_until_the_file_is_whole(tmp_path):
    path = tmp_path / "reals.json"
    write_atomically(path, targets("10.1.0.1", "10.1.0.2"))
    full = targets("10.1.0.1", "10.1.0.2", "10.1.0.3")
    async with discovering(FileSource(path=str(path), refresh_ms=REFRESH_MS)) as found:
        await found.wait_for(lambda r: len(r) == 2)
        with open(path, "w") as f:  # rewritten in place, and not finished yet
            f.write(full[: len(full) // 2])
            f.flush()
            status = await found.wait_status(lambda s: not s.up)
            assert "not valid JSON" in status.error and status.endpoints == 2
            assert found.receive.statistics().current_buffer_used == 0  # nothing sent
            f.write(full[len(full) // 2:])
        await found.wait_for(lambda r: len(r) == 3)
        await found.wait_status(lambda s: s.up)


async def test_missing_file_at_start_gives_no_reals_then_the_file_is_read(tmp_path):
    path = tmp_path / "later.json"
    async with discovering(FileSource(path=str(path), refresh_ms=REFRESH_MS)) as found:
        await found.wait_for(lambda r: r == set())
        assert not found.memory.status().up and "No such file" in found.memory.status().error
        write_atomically(path, targets("10.1.0.7"))
        await found.wait_for(lambda r: {h for h, _, _ in r} == {"10.1.0.7"})


async def test_an_emptied_file_is_held_once_then_applied_when_it_stays_empty(tmp_path):
    path = tmp_path / "reals.json"
    write_atomically(path, targets("10.1.0.1", "10.1.0.2", "10.1.0.3", "10.1.0.4"))
    source = FileSource(path=str(path), refresh_ms=200)
    async with discovering(source) as found:
        await found.wait_for(lambda r: len(r) == 4)
        write_atomically(path, "[]")
        status = await found.wait_status(lambda s: s.held)
        assert status.held == 4 and found.memory.sent is not None and len(found.memory.sent) == 4
        await found.wait_for(lambda r: r == set())  # the next look agrees: applied


async def test_names_in_the_file_are_resolved_and_a_failing_name_keeps_its_address(
        tmp_path, monkeypatch):
    monkeypatch.setattr(discovery_actor, "RETRY_INTERVAL", 0.05)
    answers = {"web-1.example": "10.1.0.1"}

    async def resolve(host, family):
        if host not in answers:
            raise ResolveError(f"{host}: no such name")
        return answers[host]

    path = tmp_path / "reals.json"
    write_atomically(path, targets("web-1.example:81", "web-2.example"))
    config = balancer_config(hosts=(), source=FileSource(path=str(path), refresh_ms=REFRESH_MS))
    send, receive = trio.open_memory_channel(math.inf)
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(run_discovery, config, memory=DiscoveryMemory(), send=send,
                                    resolve=resolve, reresolve_interval=0.05))
        first = receive.receive_nowait()
        assert {(e.host, e.address, e.port) for e in first} == {
            ("web-1.example", "10.1.0.1", 81), ("web-2.example", None, 80)}
        del answers["web-1.example"]
        answers["web-2.example"] = "10.1.0.2"
        with trio.fail_after(10):
            second = await receive.receive()  # at the retry of a name never resolved
        assert {(e.host, e.address) for e in second} == {
            ("web-1.example", "10.1.0.1"), ("web-2.example", "10.1.0.2")}
        nursery.cancel_scope.cancel()
