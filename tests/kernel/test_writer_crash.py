"""Issue 14 in the kernel: kill -9 during a first apply leaks nothing, and a
failing balancer does not keep a healthy one from being removed."""

from __future__ import annotations

import subprocess

import pytest
import trio
from _writer_child import start_child
from _writer_helpers import wait_until

from actors.dataplane.ipvs import IpvsDataPlane
from actors.writer import Writer
from kglb import DataPlaneState, LinkAddress, Real, RealKey, Service, ServiceKey, ServiceState


def sh(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def add_foreign() -> None:
    sh("ipvsadm", "-A", "-t", "10.0.9.9:80", "-s", "wlc")
    sh("ipvsadm", "-a", "-t", "10.0.9.9:80", "-r", "10.2.9.9:80", "-m", "-w", "3")
    sh("ip", "addr", "add", "10.0.9.9/32", "dev", "lo")


def snapshot() -> tuple[list[str], list[str]]:
    """``ipvsadm -Sn`` and the addresses on lo, sorted."""
    ipvs = sorted(sh("ipvsadm", "-Sn").splitlines())
    addresses = sorted(line.split()[3] for line in sh("ip", "-o", "addr", "show", "dev", "lo")
                       .splitlines())
    return ipvs, addresses


@pytest.mark.parametrize(("kill", "restart_services", "lose_record"), [
    ("record-before", 20, False), ("record-during", 10, False), ("record-after", 20, False),
    ("apply-half", 10, False), ("apply-half", 20, True)])
def test_kill_nine_in_a_first_apply_then_restart_and_stop_leaves_the_kernel_as_before(
        tmp_path, kill, restart_services, lose_record):
    add_foreign()
    before = snapshot()
    record = tmp_path / "owned.json"
    code, _ = start_child(record, 20, 10, kill=kill, then="hold").wait()
    assert code == -9
    if kill == "apply-half":
        assert len(snapshot()[0]) > len(before[0])  # it died with half of it in the kernel
    if lose_record:  # the VIPs' IFA_PROTO mark still says they are ours
        record.unlink()
    assert start_child(record, restart_services, 10).wait() == (
        0, ["applied", "stopped available"])
    assert snapshot() == before


async def test_a_failing_balancer_does_not_keep_a_healthy_one_from_being_removed(tmp_path):
    # B's VIP is on a link that does not exist: its AddAddress fails with ENODEV.
    a, b = ServiceKey.tcp("10.0.0.1", 80), ServiceKey.tcp("10.0.0.2", 80)

    def part(key, link):
        return DataPlaneState(
            services=(ServiceState(service=Service(key=key), reals=(
                Real(key=RealKey(address="10.2.0.1", port=80), weight=1),)),),
            addresses=(LinkAddress(link=link, address=key.address),))

    healthy, failing = part(a, "lo"), part(b, "kglbmissing0")
    both = DataPlaneState(services=healthy.services + failing.services,
                          addresses=healthy.addresses + failing.addresses)
    dataplane = IpvsDataPlane(("lo", "kglbmissing0"))
    writer = Writer(dataplane, ownership_path=tmp_path / "owned.json", backoff=0.2)
    send, receive = trio.open_memory_channel(1)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run, receive)
            await send.send(both)
            await wait_until(lambda: writer.statistics().failing == {"10.0.0.2"})
            await wait_until(lambda: a in writer.statistics().owned.services
                             and writer.statistics().addresses >= set(healthy.addresses))
            await send.send(failing)  # reload: A removed
            await wait_until(lambda: "10.0.0.1" not in sh("ipvsadm", "-Sn")
                             and "10.0.0.1/32" not in sh("ip", "-o", "addr", "show", "dev", "lo"))
            assert writer.statistics().failing == {"10.0.0.2"}
            # B goes on being retried (ENODEV) with backoff, and counted
            await wait_until(lambda: writer.statistics().errors_by_errno.get(19, 0) >= 3)
            await send.aclose()
    finally:
        await dataplane.aclose()
    assert "10.0.0.2" not in sh("ipvsadm", "-Sn")  # B's service went at shutdown too
