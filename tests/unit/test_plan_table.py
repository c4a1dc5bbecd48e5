"""Table tests of kglb.plan: each operation kind, order, ownership, adoption, provisional."""

from __future__ import annotations

from dataclasses import replace

import pytest

from kglb import (
    AddAddress,
    AddReal,
    AddService,
    AnnounceRoute,
    DataPlaneState,
    DeleteAddress,
    DeleteReal,
    DeleteService,
    ForwardMethod,
    LinkAddress,
    Owned,
    Real,
    RealKey,
    Route,
    Service,
    ServiceFlag,
    ServiceKey,
    ServiceState,
    UpdateReal,
    UpdateService,
    WithdrawRoute,
)
from kglb.plan import Refused, apply_to, owned_after, plan

VIP = ServiceKey.tcp("10.0.0.1", 80)
OTHER = ServiceKey.tcp("10.0.0.9", 443)
FOREIGN = ServiceKey.udp("192.0.2.1", 53)
ADDR = LinkAddress(address="10.0.0.1")
ROUTE = Route(prefix="10.0.0.1/32", local_asn=65000, peer_asn=65001, hold_time_ms=3000)


def real(ip: str, weight: int = 1000, **kw) -> Real:
    return Real(key=RealKey(address=ip, port=80), weight=weight, **kw)


def svc(key: ServiceKey = VIP, *reals: Real, scheduler: str = "rr", **kw) -> ServiceState:
    return ServiceState(service=Service(key=key, scheduler=scheduler, **kw), reals=reals)


def state(*services: ServiceState, addresses=(), routes=()) -> DataPlaneState:
    return DataPlaneState(services=services, addresses=addresses, routes=routes)


def owns(*keys: ServiceKey, addresses=()) -> Owned:
    return Owned(services=frozenset(keys), addresses=frozenset(addresses))


def test_empty_to_full_in_kglb_order():
    desired = state(svc(VIP, real("10.1.0.1"), real("10.1.0.2")), addresses=[ADDR], routes=[ROUTE])
    ops = plan(DataPlaneState(), desired, Owned())
    assert ops == (
        AddService(service=desired.services[0].service),
        AddAddress(address=ADDR),
        AddReal(service=VIP, real=real("10.1.0.1")),
        AddReal(service=VIP, real=real("10.1.0.2")),
        AnnounceRoute(route=ROUTE),
    )


def test_full_to_empty_withdraws_first_and_deletes_last():
    current = state(svc(VIP, real("10.1.0.1")), addresses=[ADDR], routes=[ROUTE])
    ops = plan(current, DataPlaneState(), owns(VIP, addresses=[ADDR]))
    assert ops == (WithdrawRoute(route=ROUTE), DeleteService(service=VIP),
                   DeleteAddress(address=ADDR))


def test_every_kind_in_one_plan_is_ordered():
    r_new = Route(prefix="10.0.0.9/32", local_asn=1, peer_asn=2)
    gone = ServiceKey.tcp("10.0.0.5", 80)
    old_addr = LinkAddress(address="10.0.0.5")
    current = state(svc(VIP, real("10.1.0.1"), real("10.1.0.2")), svc(gone),
                    addresses=[ADDR, old_addr], routes=[ROUTE])
    desired = state(svc(VIP, real("10.1.0.1", 5), real("10.1.0.3")), svc(OTHER),
                    addresses=[ADDR, LinkAddress(address="10.0.0.9")], routes=[r_new])
    ops = plan(current, desired, owns(VIP, gone, addresses=[ADDR, old_addr]))
    assert [type(op).__name__ for op in ops] == [
        "WithdrawRoute", "AddService", "AddAddress",
        "AddReal", "UpdateReal", "DeleteReal",  # the existing service: add, update, delete
        "AnnounceRoute", "DeleteService", "DeleteAddress",
    ]
    assert apply_to(current, ops).service_map()[VIP].real_map().keys() == {
        RealKey(address="10.1.0.1", port=80), RealKey(address="10.1.0.3", port=80)}


@pytest.mark.parametrize("change", [
    {"scheduler": "wrr"},
    {"flags": ServiceFlag.PERSISTENT, "timeout": 300},
    {"flags": ServiceFlag.SCHED1 | ServiceFlag.SCHED2, "scheduler": "sh"},
])
def test_scheduler_flags_timeout_change_is_one_update_in_place(change):
    current = state(svc(VIP, real("10.1.0.1")))
    desired = state(svc(VIP, real("10.1.0.1"), **change))
    ops = plan(current, desired, owns(VIP))
    assert ops == (UpdateService(service=desired.services[0].service),)


def test_one_weight_flip_is_one_update():
    current = state(svc(VIP, real("10.1.0.1"), real("10.1.0.2")))
    desired = state(svc(VIP, real("10.1.0.1"), real("10.1.0.2", 0)))
    assert plan(current, desired, owns(VIP)) == (UpdateReal(service=VIP, real=real("10.1.0.2", 0)),)


def test_forward_method_change_is_an_update():
    current = state(svc(VIP, real("10.1.0.1")))
    desired = state(svc(VIP, real("10.1.0.1", forward=ForwardMethod.MASQ)))
    assert plan(current, desired, owns(VIP)) == (
        UpdateReal(service=VIP, real=real("10.1.0.1", forward=ForwardMethod.MASQ)),)


def test_hostname_and_name_do_not_count_as_changes():
    # The kernel knows neither: comparing them would cost an operation per round.
    current = state(svc(VIP, real("10.1.0.1")))
    named = ServiceState(service=Service(key=VIP), reals=(real("10.1.0.1", hostname="web1"),),
                         name="web")
    assert plan(current, state(named), owns(VIP)) == ()


def test_foreign_objects_are_never_touched():
    current = state(svc(VIP, real("10.1.0.1")), svc(FOREIGN, real("192.0.2.10")),
                    addresses=[ADDR, LinkAddress(address="192.0.2.1")])
    assert plan(current, DataPlaneState(), Owned()) == ()


def test_owned_but_gone_from_the_kernel_is_not_deleted():
    assert plan(DataPlaneState(), DataPlaneState(), owns(VIP, addresses=[ADDR])) == ()


def test_reals_of_an_adopted_service_that_are_not_desired_are_deleted():
    current = state(svc(VIP, real("10.1.0.1"), real("10.9.9.9")))
    desired = state(svc(VIP, real("10.1.0.1")))
    assert plan(current, desired, Owned()) == (
        DeleteReal(service=VIP, real=RealKey(address="10.9.9.9", port=80)),)


def test_adoption_of_an_identical_service_is_zero_operations():
    # A restart (or a lost ownership record): the kernel already serves the
    # desired state. Nothing is re-created, so there is no traffic gap.
    current = state(svc(VIP, real("10.1.0.1", 700)), addresses=[ADDR])
    desired = state(svc(VIP, real("10.1.0.1", 0, provisional=True, hostname="web1")),
                    addresses=[ADDR])
    assert plan(current, desired, Owned()) == ()
    after = owned_after(Owned(), current, desired, current)
    assert after.services == {VIP}
    assert after.addresses == frozenset()  # a VIP we did not add is never ours


def test_provisional_keeps_kernel_weight_and_adds_new_with_given_weight():
    current = state(svc(VIP, real("10.1.0.1", 700)))
    desired = state(svc(VIP, real("10.1.0.1", 0, provisional=True),
                        real("10.1.0.2", 0, provisional=True)))
    assert plan(current, desired, owns(VIP)) == (
        AddReal(service=VIP, real=real("10.1.0.2", 0, provisional=True)),)


def test_provisional_forward_change_keeps_the_weight():
    current = state(svc(VIP, real("10.1.0.1", 700)))
    desired = state(svc(VIP, real("10.1.0.1", 0, provisional=True, forward=ForwardMethod.MASQ)))
    assert plan(current, desired, owns(VIP)) == (
        UpdateReal(service=VIP, real=real("10.1.0.1", 700, provisional=True,
                                          forward=ForwardMethod.MASQ)),)


def test_desired_address_present_but_foreign_is_not_added_nor_adopted():
    current = state(addresses=[ADDR])
    desired = state(addresses=[ADDR])
    assert plan(current, desired, Owned()) == ()
    assert owned_after(Owned(), current, desired, current) == Owned()


def test_moving_a_vip_to_another_link_adds_then_deletes():
    moved = LinkAddress(link="dummy0", address="10.0.0.1")
    ops = plan(state(addresses=[ADDR]), state(addresses=[moved]), owns(addresses=[ADDR]))
    assert ops == (AddAddress(address=moved), DeleteAddress(address=ADDR))


def test_route_hold_time_is_not_identity():
    longer = Route(prefix="10.0.0.1/32", local_asn=65000, peer_asn=65001, hold_time_ms=9000)
    assert plan(state(routes=[ROUTE]), state(routes=[longer]), Owned()) == ()


def test_owned_after_tracks_created_deleted_and_missing():
    current = state(svc(OTHER), addresses=[LinkAddress(address="10.0.0.9")])
    desired = state(svc(VIP), addresses=[ADDR])
    owned = owns(OTHER, addresses=[LinkAddress(address="10.0.0.9")])
    ops = plan(current, desired, owned)
    after = apply_to(current, ops)
    assert owned_after(owned, current, desired, after) == owns(VIP, addresses=[ADDR])
    # a partial failure: the VIP could not be added, the old service not deleted
    partial = state(svc(OTHER), svc(VIP), addresses=[LinkAddress(address="10.0.0.9")])
    assert owned_after(owned, current, desired, partial) == owns(
        OTHER, VIP, addresses=[LinkAddress(address="10.0.0.9")])


@pytest.mark.parametrize("ops, code", [
    ([AddService(service=Service(key=VIP))], 17),
    ([DeleteService(service=OTHER)], 3),
    ([UpdateService(service=Service(key=OTHER))], 3),
    ([AddReal(service=OTHER, real=real("10.1.0.1"))], 3),
    ([AddReal(service=VIP, real=real("10.1.0.1"))], 17),
    ([UpdateReal(service=VIP, real=real("10.1.0.9"))], 2),
    ([DeleteReal(service=VIP, real=RealKey(address="10.1.0.9", port=80))], 2),
    ([AddAddress(address=ADDR)], 17),
    ([DeleteAddress(address=LinkAddress(address="10.0.0.9"))], 99),
])
def test_apply_to_refuses_like_the_kernel(ops, code):
    current = state(svc(VIP, real("10.1.0.1")), addresses=[ADDR])
    with pytest.raises(Refused) as e:
        apply_to(current, ops)
    assert e.value.errno == code


def test_a_local_real_read_back_as_localnode_is_not_updated():
    # The kernel reports a real on a local address as LOCALNODE whatever it was given;
    # re-sending the configured method would count as drift on every resync.
    key = ServiceKey.tcp("192.0.2.1", 80)
    real = Real(key=RealKey(address="127.0.0.2", port=80), weight=1000, forward=ForwardMethod.MASQ)
    desired = DataPlaneState(services=(ServiceState(service=Service(key=key), reals=(real,)),))
    kernel = DataPlaneState(services=(ServiceState(
        service=Service(key=key),
        reals=(Real(key=real.key, weight=1000, forward=ForwardMethod.LOCALNODE),)),))
    assert plan(kernel, desired, Owned(services=frozenset({key}))) == ()
    lowered = DataPlaneState(services=(ServiceState(
        service=Service(key=key), reals=(Real(key=real.key, weight=0, forward=ForwardMethod.LOCALNODE),)),))
    assert len(plan(lowered, desired, Owned(services=frozenset({key})))) == 1


def test_apply_to_carries_untouched_services_over_as_they_are():
    def service(port, weight):
        return ServiceState(service=Service(key=ServiceKey.tcp("192.0.2.1", port)), reals=(
            Real(key=RealKey(address="198.51.100.1", port=port), weight=weight),))

    a, b = service(80, 1), service(81, 1)
    after = apply_to(DataPlaneState(services=(a, b)), [UpdateReal(
        service=b.key, real=Real(key=RealKey(address="198.51.100.1", port=81), weight=5))])
    carried, changed = after.services
    assert carried is a  # not rebuilt: one change to a 10k-real state stays cheap
    assert [r.weight for r in changed.reals] == [5]
    # a service not yet as the kernel reports it (hostnames) is normalised, touched or not
    named = ServiceState(service=a.service, reals=(replace(a.reals[0], hostname="web-1"),))
    assert apply_to(DataPlaneState(services=(named,)), ()).services[0].reals[0].hostname == ""
