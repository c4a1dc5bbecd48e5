"""Property tests of kglb.plan: the plan reaches the desired state and spares foreign objects."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from kglb import (
    DataPlaneState,
    ForwardMethod,
    LinkAddress,
    Owned,
    Real,
    RealKey,
    Route,
    Service,
    ServiceKey,
    ServiceState,
)
from kglb.plan import apply_to, kernel_real, plan

# Small pools, so current, desired and owned overlap often.
service_keys = st.sampled_from(
    [ServiceKey.tcp(f"10.0.0.{i}", 80) for i in range(1, 5)]
    + [ServiceKey.udp("10.0.0.1", 53), ServiceKey.tcp("fd00::1", 443), ServiceKey.for_fwmark(7)]
)
reals = st.builds(
    Real,
    key=st.builds(RealKey, address=st.sampled_from(["10.1.0.1", "10.1.0.2", "10.1.0.3"]),
                  port=st.sampled_from([0, 80])),
    weight=st.sampled_from([0, 1, 1000]),
    forward=st.sampled_from([ForwardMethod.TUNNEL, ForwardMethod.MASQ]),
    provisional=st.booleans(),
    hostname=st.sampled_from(["", "web1"]),
)
services = st.builds(
    ServiceState,
    service=st.builds(Service, key=service_keys, scheduler=st.sampled_from(["rr", "wrr", "sh"]),
                      timeout=st.sampled_from([0, 300])),
    reals=st.lists(reals, max_size=4, unique_by=lambda r: r.key).map(tuple),
)
addresses = st.builds(LinkAddress, link=st.sampled_from(["lo", "dummy0"]),
                      address=st.sampled_from(["10.0.0.1", "10.0.0.2", "fd00::1"]))
routes = st.builds(Route, prefix=st.sampled_from(["10.0.0.1/32", "10.0.0.0/24"]),
                   local_asn=st.just(65000), peer_asn=st.sampled_from([1, 2]),
                   hold_time_ms=st.sampled_from([0, 1000]))


states = st.builds(
    DataPlaneState,
    services=st.lists(services, max_size=4, unique_by=lambda s: s.key).map(tuple),
    addresses=st.lists(addresses, max_size=3).map(tuple),
    routes=st.lists(routes, max_size=2).map(tuple),
)
kernels = states.map(lambda s: apply_to(s, ()))  # as the kernel reports it: no hostnames
owned_sets = st.builds(Owned, services=st.frozensets(service_keys),
                       addresses=st.frozensets(addresses))


def _expected_service(wanted: ServiceState, existing: ServiceState | None) -> ServiceState:
    have = existing.real_map() if existing else {}
    out = []
    for r in wanted.reals:
        weight = have[r.key].weight if r.provisional and r.key in have else r.weight
        out.append(kernel_real(replace(r, weight=weight)))
    return ServiceState(service=wanted.service, reals=tuple(out))


@settings(max_examples=300, deadline=None)
@given(current=kernels, desired=states, owned=owned_sets)
def test_plan_reaches_desired_and_spares_foreign(current, desired, owned):
    after = apply_to(current, plan(current, desired, owned))  # never Refused
    have, want, got = current.service_map(), desired.service_map(), after.service_map()
    for key, wanted in want.items():
        assert got[key] == _expected_service(wanted, have.get(key))
    for key, existing in have.items():
        if key in want:
            continue
        if key in owned.services:
            assert key not in got
        else:
            assert got[key] == existing  # foreign: untouched, reals included
    for a in current.addresses:
        if a not in desired.addresses:
            assert (a in after.addresses) == (a not in owned.addresses)
    assert set(desired.addresses) <= set(after.addresses)
    assert set(after.routes) == set(desired.routes)
    assert plan(after, desired, owned) == ()  # converged


@settings(max_examples=200, deadline=None)
@given(desired=states, owned=owned_sets)
def test_plan_of_a_state_against_itself_is_empty(desired, owned):
    assert plan(desired, desired, owned) == ()


@settings(max_examples=200, deadline=None)
@given(current=kernels, owned=owned_sets, data=st.data())
def test_one_weight_flip_is_exactly_one_operation(current, owned, data):
    candidates = [s for s in current.services if s.reals]
    if not candidates:
        return
    target = data.draw(st.sampled_from(candidates))
    r = data.draw(st.sampled_from(target.reals))
    flipped = replace(r, weight=0 if r.weight else 1000)
    changed = replace(target, reals=tuple(flipped if x.key == r.key else x for x in target.reals))
    desired = DataPlaneState(
        services=tuple(changed if s.key == target.key else s for s in current.services),
        addresses=current.addresses, routes=current.routes)
    assert len(plan(current, desired, owned)) == 1


@settings(max_examples=300, deadline=None)
@given(current=kernels, first=states, desired=states, owned=owned_sets, data=st.data())
def test_synced_services_give_the_same_plan(current, first, desired, owned, data):
    """After applying a plan towards ``first``, planning towards a ``desired`` that
    shares some of ``first``'s very objects with ``synced=first`` is the full plan."""
    model = apply_to(current, plan(current, first, owned))
    shared = data.draw(st.lists(st.sampled_from(first.services), unique_by=lambda s: s.key)
                       if first.services else st.just([]))
    keys = {s.key for s in shared}
    mixed = DataPlaneState(
        services=tuple(shared) + tuple(s for s in desired.services if s.key not in keys),
        addresses=desired.addresses, routes=desired.routes)
    assert plan(model, mixed, owned, synced=first) == plan(model, mixed, owned)
