"""The writer machine on its own: events in, actions out (issue 14, problem 5).

Each test asserts the whole answer to each event, as h11's tests do.
"""

from __future__ import annotations

import errno
import math

import pytest
from test_writer import ROUTE, VIP, desired

from kglb import (
    AddAddress,
    AddReal,
    AddService,
    DataPlaneState,
    DeleteAddress,
    DeleteService,
    LinkAddress,
    Owned,
    UpdateReal,
    WithdrawRoute,
)
from kglb.plan import apply_to
from kglb.writer import (
    Applied,
    Apply,
    ArmTimer,
    Desired,
    Failure,
    KernelRead,
    ManagerState,
    Phase,
    ReadKernel,
    Record,
    Stop,
    TimerDue,
    WriterMachine,
)

EMPTY = DataPlaneState()
ADDR = LinkAddress(address=VIP.address)


def machine(**kw) -> WriterMachine:
    m = WriterMachine(now=0.0, kernel=kw.pop("kernel", EMPTY), owned=kw.pop("owned", Owned()),
                      **kw)
    assert m.start(0.0) == [ArmTimer(at=30.0)]
    return m


def test_states_are_named_values():
    m = machine()
    assert (m.phase, m.manager_state) == (Phase.IDLE, ManagerState.INITIAL)
    assert isinstance(m.manager_state, ManagerState) and m.manager_state == "initial"


def test_a_first_state_records_ahead_then_builds_then_announces_then_confirms():
    m = machine()
    state = desired(1000, routes=(ROUTE,))
    service, real = state.services[0].service, state.services[0].reals[0]
    build = (AddService(service=service), AddAddress(address=ADDR), AddReal(service=VIP, real=real))
    assert m.handle(Desired(state=state, now=1.0)) == [
        Record(owned=Owned(services=frozenset({VIP}), addresses=frozenset({ADDR}))),
        Apply(stage="build", ops=build),
        ArmTimer(at=math.inf),
    ]
    assert m.phase is Phase.APPLYING
    announce = m.handle(Applied(done=build, now=1.0))
    assert announce == [Apply(stage="announce", ops=(announce[0].ops[0],))]
    assert m.handle(Applied(done=announce[0].ops, now=1.0)) == [ArmTimer(at=30.0)]
    # the record already named everything: nothing new to confirm
    assert (m.phase, m.manager_state, m.applies, m.applied) == (
        Phase.IDLE, ManagerState.AVAILABLE, 1, state)


def test_a_weight_flip_is_one_operation_and_no_read():
    state = desired(1000, 1000)
    m = machine()
    actions = m.handle(Desired(state=state, now=0.0))
    m.handle(Applied(done=actions[1].ops, now=0.0))
    flipped = desired(1000, 0)
    assert m.handle(Desired(state=flipped, now=2.0)) == [
        Apply(stage="build", ops=(UpdateReal(service=VIP, real=flipped.services[0].reals[1]),)),
        ArmTimer(at=math.inf),
    ]


def test_a_refusal_backs_the_group_off_reads_and_confirms_ownership():
    m = machine(backoff=1.0)
    state = desired(1000)
    actions = m.handle(Desired(state=state, now=0.0))
    ops = actions[1].ops
    refused = Failure(op=ops[2], errno=errno.ENOMEM)
    assert m.handle(Applied(done=ops[:2], failed=(refused,), now=0.0)) == [ReadKernel(token=1)]
    assert m.troubles["10.0.0.1"].retry_at == 1.0
    after = apply_to(EMPTY, ops[:2])
    # the read shows what exists: the record keeps it; the group waits for its retry
    assert m.handle(KernelRead(token=1, state=after, now=0.1)) == [ArmTimer(at=1.0)]
    assert m.owned == Owned(services=frozenset({VIP}), addresses=frozenset({ADDR}))
    assert m.handle(TimerDue(now=1.0)) == [Apply(stage="build", ops=(ops[2],))]
    assert m.handle(Applied(done=(ops[2],), now=1.0)) == [ArmTimer(at=30.0)]
    assert m.manager_state is ManagerState.AVAILABLE and m.troubles == {}
    assert m.errors == {errno.ENOMEM: 1}


def test_shutdown_withdraws_holds_the_deletions_then_records_nothing():
    m = machine()
    state = desired(1000, routes=(ROUTE,))
    first = m.handle(Desired(state=state, now=0.0))
    announce = m.handle(Applied(done=first[1].ops, now=0.0))
    m.handle(Applied(done=announce[0].ops, now=0.0))
    assert m.handle(Stop(now=10.0)) == [ReadKernel(token=1), ArmTimer(at=math.inf)]
    kernel = apply_to(EMPTY, first[1].ops + announce[0].ops)
    assert m.handle(KernelRead(token=1, state=kernel, now=10.0)) == [
        Apply(stage="withdraw", ops=(WithdrawRoute(route=ROUTE),))]
    assert m.handle(Applied(done=(WithdrawRoute(route=ROUTE),), now=10.0)) == [
        ArmTimer(at=15.0)]  # ROUTE holds 5 s
    deletes = (DeleteService(service=VIP), DeleteAddress(address=ADDR))
    assert m.handle(TimerDue(now=15.0)) == [Apply(stage="delete", ops=deletes)]
    assert m.handle(Applied(done=deletes, now=15.0)) == [Record(owned=Owned())]
    assert m.phase is Phase.STOPPED
    assert m.handle(Desired(state=state, now=16.0)) == []  # a stopped machine does nothing


def test_keep_on_exit_records_and_stops_at_once():
    m = machine(owned=Owned(services=frozenset({VIP})))
    assert m.handle(Stop(keep=True, now=1.0)) == [Record(owned=Owned(services=frozenset({VIP}))),
                                                  ArmTimer(at=math.inf)]
    assert m.phase is Phase.STOPPED


def test_a_read_beside_an_apply_is_thrown_away_and_asked_again():
    m = machine()
    state = desired(1000)
    actions = m.handle(Desired(state=state, now=0.0))
    m.handle(Applied(done=actions[1].ops, now=0.0))
    assert m.handle(TimerDue(now=30.0)) == [ReadKernel(token=1, aside=True)]
    flip = m.handle(Desired(state=desired(5), now=30.1))
    m.handle(Applied(done=flip[0].ops, now=30.1))
    stale = apply_to(EMPTY, actions[1].ops)  # read before the flip
    assert m.handle(KernelRead(token=1, state=stale, now=30.2)) == [
        ReadKernel(token=2, aside=True)]
    assert m.drift_repairs == 0


@pytest.mark.parametrize("bad", [
    lambda: Desired(state=EMPTY, now=float("nan")),
    lambda: KernelRead(token=1, state=None, now=0.0),
    lambda: Failure(op=DeleteService(service=VIP), errno=-1),
    lambda: Apply(stage="build", ops=()),
])
def test_invalid_messages_cannot_exist(bad):
    with pytest.raises(ValueError):
        bad()
