"""MemoryDataPlane answers like the kernel, records what it applied, and injects faults."""

from __future__ import annotations

import errno
from dataclasses import replace

import pytest

from actors.dataplane import DataPlane, MemoryDataPlane, OperationError
from actors.dataplane.memory import APPLIED_KEPT
from actors.routes import MemorySpeaker, RouteSpeaker
from kglb import (
    AddAddress,
    AddReal,
    AddService,
    AnnounceRoute,
    DataPlaneState,
    DeleteAddress,
    DeleteReal,
    DeleteService,
    LinkAddress,
    Real,
    RealKey,
    Route,
    Service,
    ServiceKey,
    ServiceState,
    UpdateReal,
)

VIP = ServiceKey.tcp("10.0.0.1", 80)
MISSING = ServiceKey.tcp("10.0.0.2", 80)
REAL = Real(key=RealKey(address="10.1.0.1", port=80), weight=10, hostname="web1")
ADDR = LinkAddress(address="10.0.0.1")


def seeded() -> MemoryDataPlane:
    return MemoryDataPlane(DataPlaneState(
        services=(ServiceState(service=Service(key=VIP), reals=(REAL,)),), addresses=(ADDR,)))


def test_implements_the_protocols():
    assert isinstance(MemoryDataPlane(), DataPlane)
    assert isinstance(MemorySpeaker(), RouteSpeaker)


@pytest.mark.parametrize("op, code", [
    (AddService(service=Service(key=VIP)), errno.EEXIST),
    (DeleteService(service=MISSING), errno.ESRCH),
    (AddReal(service=VIP, real=REAL), errno.EEXIST),
    (AddReal(service=MISSING, real=REAL), errno.ESRCH),
    (DeleteReal(service=VIP, real=RealKey(address="10.1.0.9", port=80)), errno.ENOENT),
    (UpdateReal(service=VIP, real=Real(key=RealKey(address="10.1.0.9", port=80), weight=1)),
     errno.ENOENT),
    (AddAddress(address=ADDR), errno.EEXIST),
    (DeleteAddress(address=LinkAddress(address="10.0.0.9")), errno.EADDRNOTAVAIL),
])
async def test_refusals_carry_the_kernel_errno_and_change_nothing(op, code):
    dp = seeded()
    before = await dp.read()
    assert await dp.apply([op]) == [OperationError(op=op, errno=code)]
    assert await dp.read() == before
    assert dp.applied == []
    assert dp.attempts[type(op).__name__] == 1


async def test_applies_in_order_continues_after_a_failure_and_records():
    dp = seeded()
    ops = [AddService(service=Service(key=VIP)),  # EEXIST
           DeleteReal(service=VIP, real=REAL.key),
           DeleteService(service=VIP),
           DeleteAddress(address=ADDR)]
    errors = await dp.apply(ops)
    assert [e.errno for e in errors] == [errno.EEXIST]
    assert dp.applied == ops[1:]
    assert await dp.read() == DataPlaneState()


async def test_read_reports_reals_as_the_kernel_does():
    state = await seeded().read()
    assert state.services[0].reals[0].hostname == ""


async def test_fault_injection():
    dp = MemoryDataPlane()
    dp.fail(lambda op: errno.ENOMEM if isinstance(op, AddReal) else 0)
    add = AddService(service=Service(key=VIP))
    errors = await dp.apply([add, AddReal(service=VIP, real=REAL)])
    assert [(e.op, e.errno) for e in errors] == [(AddReal(service=VIP, real=REAL), errno.ENOMEM)]
    assert dp.applied == [add]
    dp.fail(None)
    assert await dp.apply([AddReal(service=VIP, real=REAL)]) == []


async def test_route_operations_are_not_the_data_planes():
    route = Route(prefix="10.0.0.1/32", local_asn=1, peer_asn=2)
    with pytest.raises(TypeError):
        await MemoryDataPlane().apply([AnnounceRoute(route=route)])


async def test_counters_and_close():
    dp = seeded()
    counters = await dp.counters()
    assert counters[VIP].reals[0].key == REAL.key
    await dp.aclose()
    with pytest.raises(RuntimeError):
        await dp.read()


async def test_memory_speaker_is_idempotent_and_keeps_hold_time():
    speaker = MemorySpeaker()
    route = Route(prefix="10.0.0.1/32", local_asn=1, peer_asn=2, hold_time_ms=100)
    await speaker.announce(route)
    await speaker.announce(Route(prefix="10.0.0.1/32", local_asn=1, peer_asn=2, hold_time_ms=500))
    assert [r.hold_time_ms for r in await speaker.routes()] == [500]
    await speaker.withdraw(route)
    await speaker.withdraw(route)
    assert await speaker.routes() == frozenset()
    assert speaker.session_established()


async def test_counters_are_zero_per_real_and_rebuilt_when_reals_change():
    dp = MemoryDataPlane()
    vip = ServiceKey.tcp("10.0.0.1", 80)
    reals = [Real(key=RealKey(address=f"10.1.0.{i}", port=80), weight=1) for i in (1, 2)]
    await dp.apply([AddService(service=Service(key=vip)),
                    *(AddReal(service=vip, real=r) for r in reals)])
    first = await dp.counters()
    assert [c.key for c in first[vip].reals] == [r.key for r in reals]
    assert all(c.conns == 0 for c in first[vip].reals)
    assert (await dp.counters())[vip] is first[vip]  # unchanged reals: built once
    await dp.apply([DeleteReal(service=vip, real=reals[0].key)])
    assert [c.key for c in (await dp.counters())[vip].reals] == [reals[1].key]


async def test_applied_keeps_the_newest_operations_only():
    dp = MemoryDataPlane()
    vip = ServiceKey.tcp("10.0.0.1", 80)
    real = Real(key=RealKey(address="10.1.0.1", port=80), weight=1)
    await dp.apply([AddService(service=Service(key=vip)), AddReal(service=vip, real=real)])
    flips = [UpdateReal(service=vip, real=replace(real, weight=w % 7)) for w in range(2500)]
    for op in flips:
        await dp.apply([op])
    assert APPLIED_KEPT <= len(dp.applied) <= 2 * APPLIED_KEPT
    assert dp.applied[-1] == flips[-1] and dp.applied[0] in flips
