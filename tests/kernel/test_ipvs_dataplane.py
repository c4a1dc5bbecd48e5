"""IpvsDataPlane against the real kernel: every service kind, flag, scheduler and
forward method; in-place updates; read-back equality; per-request errors in a
pipelined batch; foreign services left alone; VIP addresses."""

import errno
import os
import platform
import subprocess

import pytest
import trio

from actors.dataplane import OperationError
from actors.dataplane.ipvs import IpvsDataPlane
from kglb._model import SCHEDULERS
from kglb import (
    AddAddress,
    AddReal,
    AddService,
    AnnounceRoute,
    DataPlaneState,
    DeleteAddress,
    DeleteReal,
    DeleteService,
    Family,
    ForwardMethod,
    LinkAddress,
    Real,
    RealKey,
    Route,
    Service,
    ServiceFlag,
    ServiceKey,
    ServiceState,
    UpdateReal,
    UpdateService,
)

F = ServiceFlag
TUN, MASQ, DR = ForwardMethod.TUNNEL, ForwardMethod.MASQ, ForwardMethod.DROUTE


@pytest.fixture
async def dataplane():
    dp = IpvsDataPlane()
    yield dp
    await dp.aclose()


def real(address, port=80, weight=1, forward=TUN):
    return Real(key=RealKey(address=address, port=port), weight=weight, forward=forward)


def add_ops(states):
    ops = []
    for state in states:
        ops.append(AddService(service=state.service))
        ops += [AddReal(service=state.key, real=r) for r in state.reals]
    return ops


async def ipvs_state(dp) -> tuple[ServiceState, ...]:
    return (await dp.read()).services


EVERY_KIND = (
    ServiceState(
        service=Service(key=ServiceKey.tcp("10.0.0.1", 80), scheduler="wrr"),
        reals=(real("10.2.0.1", weight=5, forward=TUN), real("10.2.0.2", weight=3, forward=MASQ),
               real("10.2.0.3", weight=0, forward=DR)),
    ),
    ServiceState(
        service=Service(key=ServiceKey.udp("10.0.0.1", 53), scheduler="rr", flags=F.ONEPACKET),
        reals=(real("10.2.0.1", 53, forward=MASQ),),
    ),
    ServiceState(
        service=Service(key=ServiceKey.tcp("10.0.0.2", 443), scheduler="wlc", flags=F.PERSISTENT, timeout=300),
        reals=(real("10.2.0.4", 443, forward=DR),),
    ),
    ServiceState(
        service=Service(key=ServiceKey.for_fwmark(42), scheduler="sh", flags=F.SCHED1 | F.SCHED2),
        reals=(real("10.2.0.5", 0, weight=2), real("10.2.0.6", 0, weight=4)),
    ),
    ServiceState(
        service=Service(key=ServiceKey.tcp("fd00::1", 80), scheduler="mh", flags=F.SCHED2),
        reals=(real("fd00::2", 8080, forward=MASQ), real("fd00::3", 80, weight=9, forward=TUN)),
    ),
    ServiceState(
        service=Service(key=ServiceKey.udp("fd00::1", 53), scheduler="lc"),
        reals=(real("fd00::4", 53, forward=DR),),
    ),
    ServiceState(
        service=Service(key=ServiceKey.for_fwmark(43, Family.INET6), scheduler="wrr", flags=F.PERSISTENT, timeout=60),
        reals=(real("fd00::5", 0, weight=7),),
    ),
)


async def test_every_service_kind_created_updated_and_deleted(dataplane):
    assert await dataplane.apply(add_ops(EVERY_KIND)) == []
    assert await ipvs_state(dataplane) == DataPlaneState(services=EVERY_KIND).services

    # in place: scheduler, flags and timeout; weight and forward method; nothing is re-created
    tcp, udp, persistent, fwmark, v6, _, _ = EVERY_KIND
    updates = [
        UpdateService(service=Service(key=tcp.key, scheduler="sh", flags=F.SCHED1)),
        UpdateService(service=Service(key=udp.key, scheduler="rr")),
        UpdateService(service=Service(key=persistent.key, scheduler="wlc", flags=F.PERSISTENT, timeout=900)),
        UpdateService(service=Service(key=v6.key, scheduler="wrr", flags=F.ONEPACKET)),
        UpdateReal(service=tcp.key, real=real("10.2.0.1", weight=50, forward=MASQ)),
        UpdateReal(service=fwmark.key, real=real("10.2.0.6", 0, weight=0, forward=DR)),
        DeleteReal(service=v6.key, real=RealKey(address="fd00::2", port=8080)),
    ]
    assert await dataplane.apply(updates) == []
    after = (await dataplane.read()).service_map()
    assert after[tcp.key].service == Service(key=tcp.key, scheduler="sh", flags=F.SCHED1)
    assert after[tcp.key].real_map()[RealKey(address="10.2.0.1", port=80)] == real("10.2.0.1", weight=50, forward=MASQ)
    assert after[udp.key].service.flags == F(0)
    assert after[persistent.key].service.timeout == 900
    assert after[v6.key].service == Service(key=v6.key, scheduler="wrr", flags=F.ONEPACKET)
    assert after[v6.key].reals == (real("fd00::3", 80, weight=9, forward=TUN),)
    assert after[fwmark.key].real_map()[RealKey(address="10.2.0.6", port=0)].weight == 0

    assert await dataplane.apply([DeleteService(service=s.key) for s in EVERY_KIND]) == []
    assert await ipvs_state(dataplane) == ()


def _kernel_schedulers() -> set[str]:
    base = f"/lib/modules/{platform.release()}/kernel/net/netfilter/ipvs"
    return {name for name in SCHEDULERS if os.path.exists(f"{base}/ip_vs_{name}.ko")}


async def test_every_scheduler_the_kernel_has(dataplane):
    available = _kernel_schedulers()
    assert {"rr", "wrr", "sh", "mh"} <= available
    services = [Service(key=ServiceKey.tcp("10.0.1.1", 1000 + i), scheduler=s) for i, s in enumerate(sorted(SCHEDULERS))]
    failures = await dataplane.apply([AddService(service=s) for s in services])
    assert {f.op.service.scheduler for f in failures} == SCHEDULERS - available
    assert {f.errno for f in failures} <= {errno.ENOENT}
    read = {s.service for s in await ipvs_state(dataplane)}
    assert read == {s for s in services if s.scheduler in available}


async def test_duplicate_destination_fails_alone_with_eexist(dataplane):
    key = ServiceKey.tcp("10.0.0.1", 80)
    duplicate = AddReal(service=key, real=real("10.2.0.1", weight=9))
    ops = [
        AddService(service=Service(key=key)),
        AddReal(service=key, real=real("10.2.0.1")),
        AddReal(service=key, real=real("10.2.0.2")),
        duplicate,
        AddReal(service=key, real=real("10.2.0.3")),
    ]
    failures = await dataplane.apply(ops)
    assert [(f.op, f.errno) for f in failures] == [(duplicate, errno.EEXIST)]
    [state] = await ipvs_state(dataplane)
    assert state.reals == (real("10.2.0.1"), real("10.2.0.2"), real("10.2.0.3"))


async def test_errors_name_their_operation(dataplane):
    missing = ServiceKey.tcp("10.0.0.9", 80)
    ops = [
        DeleteService(service=missing),
        AddReal(service=missing, real=real("10.2.0.1")),
        UpdateService(service=Service(key=missing)),
    ]
    failures = await dataplane.apply(ops)
    assert [f.op for f in failures] == ops
    assert all(isinstance(f, OperationError) and f.errno == errno.ESRCH for f in failures)


async def test_large_batch_is_pipelined_and_reads_back(dataplane):
    states = tuple(
        ServiceState(
            service=Service(key=ServiceKey.tcp("10.0.2.1", 2000 + s), scheduler="wrr"),
            reals=tuple(real(f"10.3.{s}.{r}", weight=r) for r in range(1, 51)),
        )
        for s in range(20)
    )
    assert await dataplane.apply(add_ops(states)) == []
    assert await ipvs_state(dataplane) == states
    counters = await dataplane.counters()
    assert set(counters) == {s.key for s in states}
    assert all(len(c.reals) == 50 and c.conns == 0 for c in counters.values())


async def test_foreign_services_are_read_and_survive(dataplane):
    subprocess.run(["ipvsadm", "-A", "-t", "10.0.9.9:80", "-s", "wlc"], check=True)
    subprocess.run(["ipvsadm", "-a", "-t", "10.0.9.9:80", "-r", "10.2.9.9:80", "-m", "-w", "3"], check=True)
    # an SCTP service cannot be modelled: it is skipped, counted, and never touched
    subprocess.run(["ipvsadm", "-A", "--sctp-service", "10.0.9.9:90"], check=True)
    ours = ServiceState(service=Service(key=ServiceKey.tcp("10.0.0.1", 80)), reals=(real("10.2.0.1"),))
    assert await dataplane.apply(add_ops([ours])) == []
    foreign = ServiceState(
        service=Service(key=ServiceKey.tcp("10.0.9.9", 80), scheduler="wlc"),
        reals=(real("10.2.9.9", weight=3, forward=MASQ),),
    )
    assert await ipvs_state(dataplane) == (ours, foreign)
    assert await dataplane.unrepresentable() == 1
    assert await dataplane.apply([DeleteService(service=ours.key)]) == []
    assert await ipvs_state(dataplane) == (foreign,)
    listing = subprocess.run(["ipvsadm", "-Ln"], capture_output=True, text=True, check=True).stdout
    assert "SCTP 10.0.9.9:90" in listing


async def test_vip_addresses_on_lo(dataplane):
    v4, v6 = LinkAddress(address="10.0.0.100"), LinkAddress(address="fd00::100")
    assert await dataplane.apply([AddAddress(address=v4), AddAddress(address=v6)]) == []
    addresses = (await dataplane.read()).addresses
    assert {v4, v6} <= set(addresses)
    assert LinkAddress(address="127.0.0.1") in addresses
    shown = subprocess.run(["ip", "-o", "addr", "show", "dev", "lo"], capture_output=True, text=True).stdout
    assert "10.0.0.100/32" in shown and "fd00::100/128" in shown

    again = AddAddress(address=v4)
    elsewhere = AddAddress(address=LinkAddress(link="nosuchlink0", address="10.0.0.101"))
    failures = await dataplane.apply([again, elsewhere, DeleteAddress(address=v4), DeleteAddress(address=v6)])
    assert [(f.op, f.errno) for f in failures] == [(again, errno.EEXIST), (elsewhere, errno.ENODEV)]
    assert not {v4, v6} & set((await dataplane.read()).addresses)
    [gone] = await dataplane.apply([DeleteAddress(address=v4)])
    assert gone.errno == errno.EADDRNOTAVAIL


async def test_route_operations_are_refused_before_anything_runs(dataplane):
    route = Route(prefix="10.0.0.1/32", local_asn=65000, peer_asn=65001)
    with pytest.raises(TypeError):
        await dataplane.apply([AddService(service=Service(key=ServiceKey.tcp("10.0.0.1", 80))),
                               AnnounceRoute(route=route)])
    assert await ipvs_state(dataplane) == ()


async def test_calls_after_aclose_are_refused():
    dp = IpvsDataPlane()
    assert (await dp.read()).services == ()
    await dp.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await dp.read()
