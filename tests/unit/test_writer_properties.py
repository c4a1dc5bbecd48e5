"""Property tests of the writer machine (issue 14): random events against
MemoryDataPlane and a speaker fake; the machine is driven synchronously, as
the actor would drive it, with time as a plain number.

Properties: it converges once faults stop; it never deletes a foreign object;
it never deletes a service, real or VIP while a route covering it is announced
or inside its hold; it never creates what the ownership record does not name.
"""

from __future__ import annotations

import errno
import os
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.dataplane import MemoryDataPlane, OperationError
from actors.routes import MemorySpeaker
from kglb import (
    AddAddress,
    AddService,
    AnnounceRoute,
    DataPlaneState,
    DeleteAddress,
    DeleteReal,
    DeleteService,
    LinkAddress,
    Owned,
    Real,
    RealKey,
    Route,
    Service,
    ServiceKey,
    ServiceState,
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
    covers,
    held_address,
)

VIPS = ("10.0.0.1", "10.0.0.2", "10.0.0.3")
FOREIGN_SERVICE = ServiceState(service=Service(key=ServiceKey.tcp("192.0.2.1", 80)),
                               reals=(Real(key=RealKey(address="192.0.2.9", port=80), weight=3),))
# Someone else's address on a VIP we may want: never adopted, never removed.
FOREIGN_ADDRESSES = (LinkAddress(address="192.0.2.1"), LinkAddress(address="10.0.0.3"))
SEED = DataPlaneState(services=(FOREIGN_SERVICE,), addresses=FOREIGN_ADDRESSES)


def run(coro):
    """Run a coroutine that never blocks (MemoryDataPlane, MemorySpeaker)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    raise AssertionError("the fake blocked")


@st.composite
def vip_parts(draw, vip: str):
    services = []
    for port, key in ((80, ServiceKey.tcp(vip, 80)), (53, ServiceKey.udp(vip, 53))):
        if port == 53 and not draw(st.booleans()):
            continue
        reals = draw(st.lists(st.tuples(st.integers(1, 4), st.sampled_from([0, 1, 100])),
                              unique_by=lambda r: r[0], max_size=3))
        services.append(ServiceState(
            service=Service(key=key, scheduler=draw(st.sampled_from(["rr", "wrr"]))),
            reals=tuple(Real(key=RealKey(address=f"10.1.{VIPS.index(vip)}.{i}", port=port),
                             weight=w) for i, w in reals)))
    routes = ()
    if draw(st.booleans()):
        routes = (Route(prefix=f"{vip}/32", local_asn=65000, peer_asn=65001,
                        hold_time_ms=draw(st.sampled_from([0, 1000, 3000]))),)
    return services, routes


@st.composite
def desired_states(draw):
    services, addresses, routes = [], [], []
    for vip in VIPS:
        if draw(st.booleans()):
            s, r = draw(vip_parts(vip))
            services += s
            routes += r
            addresses.append(LinkAddress(address=vip))
    return DataPlaneState(services=tuple(services), addresses=tuple(addresses),
                          routes=tuple(routes))


steps = st.lists(st.one_of(
    st.tuples(st.just("desired"), desired_states()),
    st.tuples(st.just("advance"), st.sampled_from([0.01, 0.4, 1.0, 2.5, 9.0, 31.0])),
    st.tuples(st.just("fault"), st.sampled_from(VIPS)),
    st.tuples(st.just("heal"), st.none()),
    st.tuples(st.just("tamper"), st.sampled_from(VIPS)),
), max_size=14)


class Speaker(MemorySpeaker):
    def __init__(self, world: World) -> None:
        super().__init__()
        self.world = world

    async def announce(self, route: Route) -> None:
        if self.world.failing(route.prefix.split("/")[0]):
            raise OperationError(AnnounceRoute(route=route), errno.EINVAL)
        self.world.withdrawn.pop(route, None)  # announced again: nothing drains any more
        await super().announce(route)

    async def withdraw(self, route: Route) -> None:
        self.world.withdrawn.pop(route, None)  # keyed without the hold time: keep this one's
        self.world.withdrawn[route] = self.world.now
        await super().withdraw(route)


class World:
    """The machine, a memory kernel, a speaker, a clock, and the checks."""

    def __init__(self) -> None:
        self.now = 0.0
        self.dp = MemoryDataPlane(SEED)
        self.speaker = Speaker(self)
        self.withdrawn: dict[Route, float] = {}
        self.faults: set[str] = set()
        self.record = Owned()
        self.deadline = math.inf
        self.asides: list[int] = []
        self.target = DataPlaneState()  # the newest desired state, empty once stopping
        self.machine = WriterMachine(now=0.0, kernel=SEED, owned=Owned(), retries=2)
        self.dp.fail(self._fault)
        self.carry_out(self.machine.start(self.now))

    def failing(self, vip: str) -> bool:
        return vip in self.faults

    def _fault(self, op) -> int:
        address = getattr(getattr(op, "address", None), "address", None) or getattr(
            getattr(op, "service", None), "address", None)
        if isinstance(op, AddService):
            address = op.service.key.address
        return errno.ENOMEM if address in self.faults else 0

    def handle(self, event) -> None:
        self.carry_out(self.machine.handle(event))

    def carry_out(self, actions) -> None:
        queue = list(actions)  # in order, as the actor does: results queue behind
        while queue:
            action = queue.pop(0)
            match action:
                case Record(owned=owned):
                    self.record = owned
                case ArmTimer(at=at):
                    self.deadline = at
                case ReadKernel(token=token, aside=True):
                    self.asides.append(token)
                case ReadKernel(token=token):
                    queue += self.machine.handle(self.read(token))
                case Apply(stage=stage, ops=ops):
                    queue += self.machine.handle(self.apply(stage, ops))

    def read(self, token: int) -> KernelRead:
        state = run(self.dp.read())
        routes = run(self.speaker.routes())
        return KernelRead(token=token, state=DataPlaneState(
            services=state.services, addresses=state.addresses, routes=tuple(routes)),
            now=self.now)

    def apply(self, stage: str, ops) -> Applied:
        for op in ops:
            self.check(op)
        if stage in ("withdraw", "announce"):
            failed = []
            for op in ops:
                say = self.speaker.announce if isinstance(op, AnnounceRoute) else \
                    self.speaker.withdraw
                try:
                    run(say(op.route))
                except OperationError as e:
                    failed.append(e)
        else:
            failed = run(self.dp.apply(ops))
        bad = {e.op for e in failed}
        return Applied(done=tuple(op for op in ops if op not in bad),
                       failed=tuple(Failure(op=e.op, errno=e.errno) for e in failed),
                       now=self.now)

    def check(self, op) -> None:
        match op:
            case AddService(service=s):
                assert s.key in self.record.services, f"created unrecorded {op}"
            case AddAddress(address=a):
                assert a in self.record.addresses, f"created unrecorded {op}"
            case DeleteService(service=key) | DeleteReal(service=key):
                assert key != FOREIGN_SERVICE.key, f"deleted foreign {op}"
            case DeleteAddress(address=a):
                assert a not in FOREIGN_ADDRESSES, f"deleted foreign {op}"
        address = held_address(op)
        if address is None:
            return
        for route in run(self.speaker.routes()):
            if route not in self.target.routes:  # wanted: another balancer's on this VIP
                assert not covers(route, address), f"{op} while {route.prefix} is announced"
        for route, at in self.withdrawn.items():
            if covers(route, address):
                assert self.now >= at + route.hold_time_ms / 1000, f"{op} inside the hold"

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        for token in self.asides:  # reads beside the loop finish while time passes
            self.handle(self.read(token))
        self.asides = []
        while self.deadline <= end and self.machine.phase is not Phase.STOPPED:
            self.now = max(self.now, self.deadline)
            self.deadline = math.inf
            self.handle(TimerDue(now=self.now))
            for token in self.asides:
                self.handle(self.read(token))
            self.asides = []
        self.now = end


@settings(max_examples=int(os.environ.get("WRITER_EXAMPLES", "150")), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=steps, final=desired_states())
def test_random_events_converge_and_never_delete_what_they_must_not(steps, final):
    w = World()
    for kind, arg in steps:
        if kind == "desired":
            w.target = arg
            w.handle(Desired(state=arg, now=w.now))
        elif kind == "advance":
            w.advance(arg)
        elif kind == "fault":
            w.faults.add(arg)
        elif kind == "heal":
            w.faults.clear()
        elif kind == "tamper":  # drift: someone deletes one of our services
            ours = [s.key for s in w.dp.state.services if s.key.address == arg]
            if ours:
                w.dp.tamper([DeleteService(service=ours[0])])
    w.faults.clear()
    w.target = final
    w.handle(Desired(state=final, now=w.now))
    w.advance(70)  # past every backoff (8 s), hold (3 s) and a resync (30 s)
    assert w.machine.manager_state is ManagerState.AVAILABLE
    expected = apply_to(final, ())
    assert w.dp.state.service_map() == {
        **expected.service_map(), FOREIGN_SERVICE.key: FOREIGN_SERVICE}
    assert set(w.dp.state.addresses) == set(final.addresses) | set(FOREIGN_ADDRESSES)
    assert run(w.speaker.routes()) == set(final.routes)
    assert w.machine.applied == final
    # graceful stop: back to exactly the foreign objects
    w.target = DataPlaneState()
    w.handle(Stop(now=w.now))
    w.advance(10)
    assert w.machine.phase is Phase.STOPPED
    assert w.dp.state == SEED
    assert run(w.speaker.routes()) == frozenset()
    assert w.record == Owned()
