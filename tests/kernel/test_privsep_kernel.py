"""``kglb-trio`` on a real kernel, privilege-separated as it runs as root by default (issue
18): who holds which capability, and traffic through the VIP while either process is killed
with SIGKILL.

The topology is test_e2e_traffic's (a client namespace, two busybox httpd
reals, the VM's root namespace balancing). kglb-trio runs from its CLI as
root with no mode flag; the unprivileged side runs as uid 65534 (``_unprivileged``
opens the Python installation to it inside the VM's overlay only).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from _unprivileged import IN_VM, USER, unprivileged_flags
from test_e2e_traffic import REALS, VIP, fetch, topology  # noqa: F401 (a fixture)

from actors.privileges import CAP_NET_ADMIN, capabilities

PORT = 80

pytestmark = pytest.mark.skipif(not IN_VM, reason="changes /root's mode: only inside the VM")


def _config(directory: Path) -> Path:
    path = directory / "config.json"
    path.write_text(json.dumps({"balancers": [{
        "name": "web", "setupName": "privsep",
        "lbService": {"ipvsService": {"tcpAttributes": {"address": {"ipv4": VIP}, "port": PORT}}},
        "upstreamRouting": {"forwardMethod": "MASQ"},
        "upstreamDiscovery": {"port": PORT, "staticAttributes": {"hosts": sorted(REALS.values())}},
        "upstreamChecker": {"checker": {"tcp": {"checkTimeoutMs": 500}}, "intervalMs": 300,
                            "riseCount": 1, "fallCount": 2},
        "dynamicRouting": {},
    }]}))
    path.chmod(0o644)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(config: Path, log: Path, state: Path) -> subprocess.Popen:
    with log.open("a") as f:
        return subprocess.Popen(
            [sys.executable, "-m", "actors.cli", "--config", str(config),  # the default as root
             *unprivileged_flags(config.parent), "--state-file", str(state),
             "--log-format", "console",
             "--status-address", f"127.0.0.1:{_free_port()}"],
            stdout=f, stderr=subprocess.STDOUT)


def _descendants(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True).stdout
    parent = {int(p): int(pp) for p, pp in (line.split() for line in out.splitlines())}
    found, frontier = [], [pid]
    while frontier:
        kids = [p for p, pp in parent.items() if pp in frontier]
        found += kids
        frontier = kids
    return found


def _weights() -> dict[str, int]:
    out = subprocess.run(["ipvsadm", "-Ln", "-t", f"{VIP}:{PORT}"], capture_output=True,
                         text=True).stdout
    return {line.split()[1].split(":")[0]: int(line.split()[3])
            for line in out.splitlines() if line.strip().startswith("->") and ":" in line.split()[1]
            and line.split()[1][0].isdigit()}


def _wait(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")


def _count(log: Path, text: str) -> int:
    return log.read_text().count(text)


def _converged() -> bool:
    return _weights() == {address: 1000 for address in REALS.values()}


class Traffic:
    """A client loop in the client namespace: one new connection every 20 ms; failures counted."""

    def __init__(self, directory: Path) -> None:
        self.out = directory / "traffic.txt"
        script = (f"while :; do if curl -s -o /dev/null --max-time 2 -H 'Connection: close' "
                  f"http://{VIP}:{PORT}/; then echo ok; else echo FAIL; fi; sleep 0.02; done")
        self.proc = subprocess.Popen(["ip", "netns", "exec", "client", "sh", "-c", script],
                                     stdout=self.out.open("w"), stderr=subprocess.DEVNULL,
                                     start_new_session=True)

    def counts(self) -> tuple[int, int]:
        lines = self.out.read_text().split()
        return lines.count("ok"), lines.count("FAIL")

    def stop(self) -> tuple[int, int]:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        return self.counts()


def test_only_the_writer_holds_net_admin_and_kill_9_of_either_side_drops_nothing(topology):  # noqa: F811
    directory = Path(tempfile.mkdtemp(prefix="kglb-privsep-"))
    config, log, state = _config(directory), directory / "kglb.log", directory / "owned.json"
    writer = _start(config, log, state)
    traffic = None
    try:
        try:
            _wait(_converged, timeout=180)
        except AssertionError:
            ps = subprocess.run(["ps", "-e", "-o", "pid,ppid,uid,stat,wchan:20,args"],
                                capture_output=True, text=True).stdout
            raise AssertionError(f"no convergence; ipvsadm: {_weights()}; ps:\n{ps}\nlog:\n"
                                 + log.read_text()[-6000:]) from None
        # Problem 1: only the writer has CAP_NET_ADMIN; the rest runs as the user with nothing.
        others = _descendants(writer.pid)
        assert capabilities(writer.pid) >> CAP_NET_ADMIN & 1
        assert others, "no unprivileged side"
        for pid in others:
            status = Path(f"/proc/{pid}/status").read_text()
            uid = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
            assert uid == [USER] * 4, (pid, uid)
            assert capabilities(pid) == 0 and capabilities(pid, "CapPrm") == 0, pid
        assert sorted(fetch(PORT)) == ["rs1", "rs1", "rs2", "rs2"]

        # Problem 3: kill -9 of either side under traffic. (Python starts slowly under
        # emulation: each wait is for the log line that shows the step done.)
        traffic = Traffic(directory)
        _wait(lambda: traffic.counts()[0] >= 10)
        os.kill(others[0], signal.SIGKILL)
        _wait(lambda: _count(log, "control plane started") == 2, timeout=240)
        time.sleep(2)  # its first checks pass and it publishes (provisional weights first)
        assert _converged()
        assert VIP in subprocess.run(["ip", "addr", "show", "dev", "lo"], capture_output=True,
                                     text=True).stdout
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        time.sleep(1)
        assert _converged()  # the kernel keeps forwarding without any kglb-trio
        writer = _start(config, log, state)  # what systemd's Restart=on-failure does
        _wait(lambda: _count(log, "control plane started") == 3, timeout=240)
        time.sleep(2)
        assert _converged()
        ok, failed = traffic.stop()
        traffic = None
        print(f"privsep kill -9 under traffic: {ok} connections ok, {failed} failed")
        assert ok > 20 and failed == 0, (ok, failed)
        writer.send_signal(signal.SIGTERM)
        assert writer.wait(timeout=60) == 0
        out = subprocess.run(["ipvsadm", "-Ln"], capture_output=True, text=True).stdout
        assert VIP not in out
    finally:
        if traffic is not None:
            traffic.stop()
        if writer.poll() is None:
            writer.kill()
            writer.wait()
        print(log.read_text()[-4000:])
