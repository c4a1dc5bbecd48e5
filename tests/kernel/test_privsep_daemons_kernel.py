"""IPVS sync daemons under ``kglb-trio --privsep`` on a real kernel: the writer process keeps them.

kglb-trio runs from its CLI as root inside a network namespace of its own (the
daemons, services and VIPs are per namespace, so the VM's other tests never
see them), with the unprivileged side as uid 65534, which the kernel would
refuse a daemon (EPERM). A MASTER daemon on a dummy link must run while
kglb-trio runs, show in ``/status`` with no refused request, and be gone after
SIGTERM. As in the other kernel tests, Python and the test's folder are opened to
that user inside the VM's overlay only (``_unprivileged``).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from _unprivileged import IN_VM, unprivileged_flags
from test_privsep_kernel import _wait

NS = "psyncd"
STATUS = "127.0.0.1:9181"

pytestmark = pytest.mark.skipif(not IN_VM, reason="changes /root's mode: only inside the VM")


def _sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def _in_ns(*argv: str) -> str:
    return subprocess.run(["ip", "netns", "exec", NS, *argv], capture_output=True,
                          text=True).stdout


@pytest.fixture
def netns():
    _sh("ip", "netns", "add", NS)
    try:
        _sh("ip", "-n", NS, "link", "set", "lo", "up")
        _sh("ip", "-n", NS, "link", "add", "sync0", "type", "dummy")
        _sh("ip", "-n", NS, "addr", "add", "10.72.0.1/24", "dev", "sync0")
        _sh("ip", "-n", NS, "link", "set", "sync0", "up")
        yield
    finally:
        subprocess.run(["ip", "netns", "del", NS])


def _config(directory: Path) -> Path:
    path = directory / "config.json"
    path.write_text(json.dumps({
        "balancers": [{
            "name": "web", "setupName": "privsep-daemons",
            "lbService": {"ipvsService": {"tcpAttributes": {
                "address": {"ipv4": "10.72.1.1"}, "port": 80}}},
            "upstreamRouting": {"forwardMethod": "TUNNEL"},
            "upstreamDiscovery": {"port": 80, "staticAttributes": {"hosts": ["10.72.0.2"]}},
            "upstreamChecker": {"checker": {"dummy": {}}, "intervalMs": 1000,
                                "riseCount": 1, "fallCount": 1},
            "dynamicRouting": {},
        }],
        "ipvsSyncDaemons": [{"state": "MASTER", "interface": "sync0", "syncId": 42}],
    }))
    path.chmod(0o644)
    return path


def _daemons() -> str:
    return _in_ns("ipvsadm", "-L", "--daemon")


def _status() -> dict | None:
    out = _in_ns("curl", "-s", "--max-time", "2", f"http://{STATUS}/status")
    try:
        return json.loads(out)
    except ValueError:
        return None


def test_the_writer_process_keeps_the_sync_daemons(netns):
    directory = Path(tempfile.mkdtemp(prefix="kglb-privsep-daemons-"))
    flags = unprivileged_flags(directory)  # --user 65534, which may exec Python and read these
    log = directory / "kglb.log"
    with log.open("w") as f:
        kglb = subprocess.Popen(
            ["ip", "netns", "exec", NS, sys.executable, "-m", "actors.cli",
             "--config", str(_config(directory)), "--privsep", *flags,
             "--state-file", str(directory / "owned.json"), "--status-address", STATUS,
             "--log-format", "console"],
            stdout=f, stderr=subprocess.STDOUT)
    try:
        try:
            _wait(lambda: "master sync daemon (mcast=sync0, syncid=42" in _daemons(), timeout=180)
            doc = _wait(lambda: (d := _status()) and d["sync_daemons"]["running"] and d,
                        timeout=180)
        except AssertionError:
            raise AssertionError(f"daemons: {_daemons()!r}; log:\n{log.read_text()[-6000:]}") from None
        daemons = doc["sync_daemons"]
        assert daemons["running"] == daemons["owned"] == ["master sync0 syncid 42"]
        assert daemons["errors"] == 0 and daemons["last_error"] is None, daemons
        # The status came from the unprivileged side, which has no capabilities.
        assert doc["pid"] != kglb.pid
        status = Path(f"/proc/{doc['pid']}/status").read_text()
        assert next(line.split()[1] for line in status.splitlines()
                    if line.startswith("CapEff:")) == "0000000000000000"
        kglb.send_signal(signal.SIGTERM)
        assert kglb.wait(timeout=120) == 0
        assert _daemons().strip() == ""
    finally:
        if kglb.poll() is None:
            kglb.kill()
            kglb.wait()
        print(log.read_text()[-3000:])
