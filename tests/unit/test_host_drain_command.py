"""`kglb-trio drain` (pid from /status, SIGUSR2, follow until exit) and the status lines it relies on."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import types

from actors import _cmd_drain
from actors._cmd_status import render_table

# A stand-in instance: reports the drain's steps through the fake /status and
# exits a moment after SIGUSR2.
_INSTANCE = """
import signal, sys, time
signal.signal(signal.SIGUSR2, lambda *a: (print("drain", flush=True), time.sleep(0.5), sys.exit(0)))
print("ready", flush=True)
time.sleep(30)
sys.exit(3)
"""


class _Response:
    def __init__(self, payload):
        self._payload = payload

    def raise_for_status(self):
        pass

    def json(self):
        return self._payload


def test_drain_signals_the_instance_and_waits_for_it_to_stop(monkeypatch, capsys):
    child = subprocess.Popen([sys.executable, "-c", _INSTANCE], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "ready\n"
        steps = iter(["withdrawing", "withdrawing", "draining"])
        monkeypatch.setattr(_cmd_drain.httpx, "get", lambda url, timeout: _Response(
            {"pid": child.pid, "host_drain": next(steps, "stopping")}))
        monkeypatch.setattr(_cmd_drain, "_running", lambda pid: child.poll() is None)
        args = types.SimpleNamespace(status_address="127.0.0.1:5678", no_wait=False)
        assert _cmd_drain.main(args) == 0
        assert child.stdout.readline() == "drain\n"  # it got SIGUSR2, not a kill
        assert child.wait(timeout=5) == 0
    finally:
        child.kill()
        child.wait()
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"kglb-trio drain: draining pid {child.pid}"
    assert out[-1] == "kglb-trio drain: stopped"


def test_drain_reports_an_unreachable_instance(capsys):
    args = types.SimpleNamespace(status_address="127.0.0.1:1", no_wait=False)
    assert _cmd_drain.main(args) == 1
    assert "cannot read the instance's pid" in capsys.readouterr().err


def test_status_shows_sync_daemons_and_the_drain():
    from test_status_document import CANNED

    doc = dict(CANNED, host_drain="waiting hold", sync_daemons={
        "desired": ["master eth1 syncid 7", "backup eth1 syncid 7"],
        "running": ["master eth1 syncid 7", "backup eth1 syncid 9"],
        "owned": ["master eth1 syncid 7"], "conflicts": ["backup eth1 syncid 9"],
        "errors": 0, "last_error": None})
    lines = render_table(doc).splitlines()
    assert ("sync daemons: master eth1 syncid 7, backup eth1 syncid 9 (foreign);"
            " not running: backup eth1 syncid 7") in lines
    assert "host drain: waiting hold" in lines
    assert not any(line.startswith("sync daemons") for line in render_table(CANNED).splitlines())


async def test_sigusr2_drains_once_and_shutdown_signals_still_work():
    import os
    import signal
    from functools import partial

    import trio

    from actors.signals import run_signal_handler

    calls = []
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(run_signal_handler, shutdown=lambda: calls.append("shutdown"),
                                    force=lambda: calls.append("force"),
                                    drain=lambda: calls.append("drain")))
        # a second SIGUSR2 is ignored; SIGTERM cuts the drain short (gracefully), a next one forces
        for signum, expected in ((signal.SIGUSR2, 1), (signal.SIGUSR2, 1), (signal.SIGTERM, 2),
                                 (signal.SIGTERM, 3)):
            os.kill(os.getpid(), signum)
            with trio.fail_after(5):  # signal delivery is real, not virtual, time
                while len(calls) < expected:
                    await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert calls == ["drain", "shutdown", "force"]


def test_an_exited_but_unreaped_instance_is_not_running():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 10
        while _cmd_drain._running(child.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _cmd_drain._running(child.pid)  # a zombie until wait() below
        assert open(f"/proc/{child.pid}/stat").read().split(") ")[1][0] == "Z"
    finally:
        child.wait()
    assert not _cmd_drain._running(child.pid)
    assert _cmd_drain._running(os.getpid())
