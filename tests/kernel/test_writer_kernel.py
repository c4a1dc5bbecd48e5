"""The Writer driving the real kernel: adoption on restart, drift repair, and
foreign services and addresses left alone from start to shutdown."""

import subprocess

import trio
from _writer_helpers import running_writer, wait_until

from actors.dataplane.ipvs import IpvsDataPlane
from kglb import (
    DataPlaneState,
    ForwardMethod,
    LinkAddress,
    Real,
    RealKey,
    Service,
    ServiceKey,
    ServiceState,
)

WEB = ServiceKey.tcp("10.0.0.1", 80)
DNS = ServiceKey.udp("10.0.0.1", 53)
DESIRED = DataPlaneState(
    services=(
        ServiceState(
            service=Service(key=WEB, scheduler="wrr"),
            reals=tuple(
                Real(key=RealKey(address=f"10.2.0.{i}", port=80), weight=10 * i, forward=ForwardMethod.TUNNEL)
                for i in (1, 2, 3)
            ),
        ),
        ServiceState(
            service=Service(key=DNS),
            reals=(Real(key=RealKey(address="10.2.0.1", port=53), weight=1, forward=ForwardMethod.MASQ),),
        ),
    ),
    addresses=(LinkAddress(address="10.0.0.1"),),
)
FOREIGN = ServiceKey.tcp("10.0.9.9", 80)


def sh(*args):
    subprocess.run(args, check=True)


def add_foreign():
    sh("ipvsadm", "-A", "-t", "10.0.9.9:80", "-s", "wlc")
    sh("ipvsadm", "-a", "-t", "10.0.9.9:80", "-r", "10.2.9.9:80", "-m", "-w", "3")
    sh("ip", "addr", "add", "10.0.9.9/32", "dev", "lo")


async def kernel(dataplane):
    state = await dataplane.read()
    ours = DataPlaneState(
        services=tuple(s for s in state.services if s.key != FOREIGN),
        addresses=tuple(a for a in state.addresses if a.address.startswith("10.0.0.")),
    )
    return ours, FOREIGN in state.service_map(), LinkAddress(address="10.0.9.9") in state.addresses


async def kernel_now():
    dataplane = IpvsDataPlane()
    try:
        return await kernel(dataplane)
    finally:
        await dataplane.aclose()


async def test_foreign_objects_survive_start_applies_and_shutdown(tmp_path):
    add_foreign()
    async with running_writer(tmp_path / "owned.json") as run:
        assert run.writer.statistics().foreign_services == {FOREIGN}
        await run.apply(DESIRED)
        assert await kernel(run.dataplane) == (DESIRED, True, True)
        smaller = DataPlaneState(services=DESIRED.services[:1], addresses=DESIRED.addresses)
        await run.apply(smaller)
        assert await kernel(run.dataplane) == (smaller, True, True)
        await run.shutdown()
    assert await kernel_now() == (DataPlaneState(), True, True)


async def test_restart_adopts_without_operations_and_repairs_drift(tmp_path):
    path = tmp_path / "owned.json"
    async with running_writer(path) as run:
        await run.apply(DESIRED)
        first = run.writer.statistics().operations
    assert first == 1 + 3 + 1 + 1 + 1  # services, reals, VIP

    # the first writer was cancelled: everything stays, and a new one adopts it
    async with running_writer(path, resync_interval=0.5) as run:
        await run.apply(DESIRED)
        assert run.writer.statistics().operations == 0
        assert run.writer.statistics().owned.services == {WEB, DNS}

        subprocess.run(
            ["ipvsadm", "-R"], check=True, text=True,
            input="-e -t 10.0.0.1:80 -r 10.2.0.1:80 -w 99 -m\n-d -t 10.0.0.1:80 -r 10.2.0.2:80\n"
                  "-E -u 10.0.0.1:53 -s wlc\n",
        )
        await wait_until(lambda: run.writer.statistics().drift_repairs >= 1)
        with trio.fail_after(10):
            while (await kernel(run.dataplane))[0] != DESIRED:
                await trio.sleep(0.1)
        assert run.writer.statistics().operations == 3  # UpdateReal, AddReal, UpdateService
        await run.shutdown()
    assert await kernel_now() == (DataPlaneState(), False, False)
