"""IPVS sync daemons on a real kernel: our codec starts, lists and stops them.

Runs in a network namespace of its own (the daemons are per namespace), on a
dummy link, so the VM's other tests never see them.
"""

import subprocess

import pytest

from actors.sync_daemons import KernelDaemons
from kglb.sync_daemons import SyncDaemon, SyncState

NS = "syncd"


def _sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def netns():
    import ctypes
    import os

    _sh("ip", "netns", "add", NS)
    try:
        _sh("ip", "-n", NS, "link", "add", "sync0", "type", "dummy")
        _sh("ip", "-n", NS, "addr", "add", "10.70.0.1/24", "dev", "sync0")
        _sh("ip", "-n", NS, "link", "set", "sync0", "up")
        own = os.open("/proc/self/ns/net", os.O_RDONLY)
        other = os.open(f"/run/netns/{NS}", os.O_RDONLY)
        libc = ctypes.CDLL(None, use_errno=True)
        # The test's own thread enters the namespace, and leaves it after.
        assert libc.setns(other, 0) == 0
        try:
            yield
        finally:
            assert libc.setns(own, 0) == 0
            os.close(own)
            os.close(other)
    finally:
        subprocess.run(["ip", "netns", "del", NS])


def test_start_list_and_stop_daemons(netns):
    kernel = KernelDaemons()
    master = SyncDaemon(state=SyncState.MASTER, interface="sync0", sync_id=42)
    backup = SyncDaemon(state=SyncState.BACKUP, interface="sync0", sync_id=42)
    assert kernel.read() == ()
    assert kernel.change((), (master, backup)) == []
    assert kernel.read() == (master, backup)
    ipvsadm = _sh("ipvsadm", "-L", "--daemon")
    assert "master sync daemon (mcast=sync0, syncid=42" in ipvsadm
    assert "backup sync daemon (mcast=sync0, syncid=42" in ipvsadm
    # a second master, a link that does not exist: refused with the kernel's errno
    refused = kernel.change((), (SyncDaemon(state=SyncState.MASTER, interface="sync0", sync_id=1),))
    assert [(target, code) for target, code, _ in refused] == [
        (SyncDaemon(state=SyncState.MASTER, interface="sync0", sync_id=1), 17)]  # EEXIST
    assert kernel.change((SyncState.BACKUP,), ()) == []
    assert kernel.read() == (master,)
    assert kernel.change((SyncState.MASTER,), ()) == []
    assert kernel.read() == ()
    refused = kernel.change((SyncState.MASTER,), ())  # none running
    assert len(refused) == 1 and refused[0][1] != 0
