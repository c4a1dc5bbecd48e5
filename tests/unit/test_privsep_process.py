"""``kglb-trio --privsep`` as processes (issue 18, problems 1 and 3), on the in-memory data plane.

``--dry-run`` keeps the writer on MemoryDataPlane and prints every change, so
what the writer does is visible on its stdout. Run as root, the unprivileged
side is started as uid 0 with every capability dropped (the host's Python is
under /root here, which another user could not exec); the VM test runs it as
another user.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from actors.privileges import capabilities

CONFIG = Path(__file__).parent / "configs" / "base.json"


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(x) for x in out.stdout.split()]


def _wait(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")


@pytest.fixture
def writer(tmp_path):
    out = tmp_path / "out.txt"
    user = "0" if os.geteuid() == 0 else str(os.getuid())
    with out.open("w") as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", "actors.cli", "--config", str(CONFIG), "--dry-run",
             "--privsep", "--user", user, "--log-format", "console"],
            stdout=f, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        yield proc, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _execed(pid: int) -> bool:
    """True once ``pid`` dropped its privileges and exec'd the unprivileged kglb-trio."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    # Between fork and exec the child still has the writer's command line (and all of
    # its capabilities): only the exec'd unprivileged side has --privsep-fd.
    return b"--privsep-fd" in cmdline and b"actors.privileges" not in cmdline


def _child(proc, other_than=None):
    return _wait(lambda: next((c for c in _children(proc.pid)
                               if c != other_than and _execed(c)), None))


def test_the_unprivileged_side_has_no_capabilities_and_the_writer_applies(writer):
    proc, out = writer
    child = _child(proc)
    assert capabilities(child) == 0
    assert capabilities(child, "CapAmb") == 0
    assert "--privsep-fd" in Path(f"/proc/{child}/cmdline").read_text()
    _wait(lambda: "-A -t 10.0.0.1:80 -s rr" in out.read_text())
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    text = out.read_text()
    # The graceful stop went through the unprivileged side to the writer.
    assert "graceful stop asked by the unprivileged side" in text
    assert "-D -t 10.0.0.1:80" in text and "ip addr del 10.0.0.1/32 dev lo" in text


def test_kill_9_of_the_unprivileged_side_keeps_the_kernel_and_restarts_it(writer):
    proc, out = writer
    first = _child(proc)
    _wait(lambda: "ip addr add 10.0.0.1/32 dev lo" in out.read_text())
    os.kill(first, signal.SIGKILL)
    second = _child(proc, other_than=first)
    _wait(lambda: "control plane started" in out.read_text().split("restarting it", 1)[-1])
    time.sleep(1.0)
    text = out.read_text()
    assert "the unprivileged side is gone; the kernel stays as it is" in text
    # Nothing was removed or re-added: the restarted side's state matched the kernel.
    assert "-D -t" not in text and "ip addr del" not in text
    assert text.count("-A -t 10.0.0.1:80") == 1
    assert capabilities(second) == 0
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0


def test_kill_9_of_the_writer_ends_the_unprivileged_side(writer):
    # systemd restarts the unit (Restart=always); nothing may keep running without the writer.
    proc, out = writer
    child = _child(proc)
    _wait(lambda: "ip addr add 10.0.0.1/32 dev lo" in out.read_text())
    proc.kill()
    proc.wait()
    _wait(lambda: not Path(f"/proc/{child}").exists()
          or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2], timeout=30)
