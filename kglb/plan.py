"""The planner: which operations turn the kernel's state into the desired one.

Theory of operation
-------------------
``plan(current, desired, owned)`` compares what is in the kernel (``current``:
every IPVS service, every address on the managed links, the routes we
announce) with what the control plane wants (``desired``) and returns the
operations, in kglb's safe order (kglb.md §5.3, §6):

1. withdraw routes that are no longer wanted (the writer then waits their hold time),
2. add new services, and update in place the ones whose scheduler, flags or
   timeout changed (never add+delete: the kernel would answer EEXIST forever),
3. add VIP addresses,
4. per service: add, update, then delete reals,
5. announce new routes (traffic is attracted only once the service exists),
6. delete services, then
7. delete VIP addresses.

Ownership decides what may be changed (decisions.md rows 19, 20):

* A desired service is ours whether or not we created it. If the kernel already
  has it (a restart, or another run left it), it is *adopted*: only the
  differences are applied, so a kernel that already matches costs zero
  operations and no traffic gap. The caller records adoption with
  ``owned_after``.
* A service or address that is not desired is deleted only if ``owned`` says we
  created or adopted it; anything else is foreign and never touched.
* A desired address already on its link but not owned is left alone and not
  adopted: we only ever remove VIPs we added.
* The kernel knows no hostnames and no "provisional" marks, so reals compare on
  weight and forward method only. A provisional real keeps the kernel's weight
  if it exists (a restart never lowers weights of a serving service); a new one
  is added with its given weight.
* Routes are always ours (the speaker only holds what we announced); they are
  identified without their hold time.

``apply_to(state, ops)`` is the model of the kernel the property tests and
``MemoryDataPlane`` use: it applies operations with the kernel's errno answers.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable
from dataclasses import replace

from ._model import (
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
    Operation,
    Owned,
    Real,
    RealKey,
    Route,
    Service,
    ServiceKey,
    ServiceState,
    UpdateReal,
    UpdateService,
    WithdrawRoute,
)

__all__ = ["PHASES", "KernelModel", "Refused", "apply_to", "kernel_real", "owned_after", "plan"]

#: The apply phase of each operation kind, in order. The writer applies one
#: phase at a time and stops at the first phase with a failure.
PHASES: dict[type, int] = {
    WithdrawRoute: 0,
    AddService: 1,
    UpdateService: 1,
    AddAddress: 2,
    AddReal: 3,
    UpdateReal: 3,
    DeleteReal: 3,
    AnnounceRoute: 4,
    DeleteService: 5,
    DeleteAddress: 6,
}


def kernel_real(real: Real) -> Real:
    """The real as the kernel would report it: no hostname, not provisional."""
    if real.hostname or real.provisional:
        return replace(real, hostname="", provisional=False)
    return real


def plan(
    current: DataPlaneState,
    desired: DataPlaneState,
    owned: Owned,
    *,
    synced: DataPlaneState | None = None,
) -> tuple[Operation, ...]:
    """Operations that make ``current`` equal ``desired`` for what we own, in kglb's order.

    Pure and total: any pair of valid states gives a plan, and applying it to
    ``current`` with ``apply_to`` never raises ``Refused``. ``plan(s, s, o)`` is
    empty for every ``s`` and ``o``.

    ``synced``, if given, is a desired state that ``current`` was made equal
    to (``current`` is ``apply_to`` of its plan, not a fresh read): a service
    of ``desired`` that is the very same object as in ``synced`` needs nothing
    and is not compared real by real again (a 10k-real state where one real
    flipped: ~3 ms saved).
    """
    have = current.service_map()
    want = desired.service_map()
    done = {} if synced is None else {s.key: s for s in synced.services}

    routes_now = set(current.routes)
    routes_wanted = set(desired.routes)
    withdraw = [WithdrawRoute(route=r) for r in current.routes if r not in routes_wanted]
    announce = [AnnounceRoute(route=r) for r in desired.routes if r not in routes_now]

    services: list[Operation] = []
    reals: list[Operation] = []
    for key, wanted in want.items():
        existing = have.get(key)
        if existing is not None and done.get(key) is wanted:
            continue
        if existing is None:
            services.append(AddService(service=wanted.service))
            reals.extend(AddReal(service=key, real=r) for r in wanted.reals)
            continue
        if existing.service != wanted.service:
            services.append(UpdateService(service=wanted.service))
        reals.extend(_plan_reals(key, existing, wanted))

    delete_services = [
        DeleteService(service=key) for key in have if key not in want and key in owned.services
    ]

    addresses_now = set(current.addresses)
    addresses_wanted = set(desired.addresses)
    add_addresses = [AddAddress(address=a) for a in desired.addresses if a not in addresses_now]
    delete_addresses = [
        DeleteAddress(address=a)
        for a in current.addresses
        if a not in addresses_wanted and a in owned.addresses
    ]

    return (*withdraw, *services, *add_addresses, *reals, *announce, *delete_services,
            *delete_addresses)


def _plan_reals(key: ServiceKey, existing: ServiceState, wanted: ServiceState) -> list[Operation]:
    if _unchanged(existing.reals, wanted.reals):
        return []
    have = existing.real_map()
    want = wanted.real_map()
    adds: list[Operation] = []
    updates: list[Operation] = []
    for rk, real in want.items():
        old = have.get(rk)
        if old is None:
            adds.append(AddReal(service=key, real=real))
            continue
        weight = old.weight if real.provisional else real.weight
        # The kernel reports a local real as LOCALNODE whatever it was given.
        forward_ok = old.forward in (real.forward, ForwardMethod.LOCALNODE)
        if weight != old.weight or not forward_ok:
            updates.append(UpdateReal(service=key, real=replace(real, weight=weight)))
    deletes = [DeleteReal(service=key, real=rk) for rk in have if rk not in want]
    return adds + updates + deletes


def _unchanged(have: tuple[Real, ...], want: tuple[Real, ...]) -> bool:
    """True if no real of the service needs an operation: the common case for all
    but one service of a 10k-real state, checked without building maps (both
    tuples are sorted by key)."""
    if len(have) != len(want):
        return False
    localnode = ForwardMethod.LOCALNODE
    for old, new in zip(have, want):
        if old.key != new.key:
            return False
        if not new.provisional and old.weight != new.weight:
            return False
        if old.forward != new.forward and old.forward is not localnode:
            return False
    return True


def owned_after(
    owned: Owned, before: DataPlaneState, desired: DataPlaneState, after: DataPlaneState
) -> Owned:
    """What we own once a plan from ``before`` towards ``desired`` left the kernel at ``after``.

    Works for a full success (``after = apply_to(before, ops)``) and after a
    partial failure (``after`` re-read from the kernel). Services: every desired
    one (created or adopted) plus what we owned, as far as it still exists.
    Addresses: what we owned plus the desired ones that were missing before
    (so we added them), as far as they exist now.
    """
    present = {s.key for s in after.services}
    services = (owned.services | {s.key for s in desired.services}) & present
    added = set(desired.addresses) - set(before.addresses)
    addresses = (owned.addresses | added) & set(after.addresses)
    return Owned(services=frozenset(services), addresses=frozenset(addresses))


class Refused(ValueError):
    """The kernel model refused an operation, with the errno the kernel would give."""

    def __init__(self, op: Operation, code: int) -> None:
        super().__init__(f"{type(op).__name__}: {errno.errorcode.get(code, code)}")
        self.op = op
        self.errno = code


class KernelModel:
    """A mutable model of IPVS, link addresses and announced routes.

    Errno answers as the kernel gives them: AddService on an existing service
    EEXIST, Update/DeleteService or any real operation on a missing service
    ESRCH, AddReal on an existing real EEXIST, Update/DeleteReal on a missing
    real ENOENT, AddAddress existing EEXIST, DeleteAddress missing
    EADDRNOTAVAIL. Routes behave like a BGP speaker: announcing again replaces,
    withdrawing a missing route does nothing. Reals are stored as the kernel
    reports them (``kernel_real``).
    """

    def __init__(self, state: DataPlaneState = DataPlaneState()) -> None:
        self._services: dict[ServiceKey, Service] = {}
        self._reals: dict[ServiceKey, dict[RealKey, Real]] = {}
        self._names: dict[ServiceKey, str] = {}
        for s in state.services:
            self._services[s.key] = s.service
            self._reals[s.key] = {r.key: kernel_real(r) for r in s.reals}
            self._names[s.key] = s.name
        self._addresses: set[LinkAddress] = set(state.addresses)
        self._routes: dict[Route, Route] = {r: r for r in state.routes}

    def state(self) -> DataPlaneState:
        return DataPlaneState(
            services=tuple(
                ServiceState(service=svc, reals=tuple(self._reals[k].values()),
                             name=self._names.get(k, ""))
                for k, svc in self._services.items()
            ),
            addresses=tuple(self._addresses),
            routes=tuple(self._routes.values()),
        )

    def real_keys(self) -> dict[ServiceKey, tuple[RealKey, ...]]:
        """The keys of every service's reals, cheaply (no state is built)."""
        return {key: tuple(reals) for key, reals in self._reals.items()}

    def apply(self, op: Operation) -> None:
        """Apply one operation, or raise ``Refused`` leaving the model unchanged."""
        match op:
            case AddService(service=svc):
                self._require(op, svc.key not in self._services, errno.EEXIST)
                self._services[svc.key] = svc
                self._reals[svc.key] = {}
            case UpdateService(service=svc):
                self._require(op, svc.key in self._services, errno.ESRCH)
                self._services[svc.key] = svc
            case DeleteService(service=key):
                self._require(op, key in self._services, errno.ESRCH)
                del self._services[key], self._reals[key]
                self._names.pop(key, None)
            case AddReal(service=key, real=real):
                reals = self._service_reals(op, key)
                self._require(op, real.key not in reals, errno.EEXIST)
                reals[real.key] = kernel_real(real)
            case UpdateReal(service=key, real=real):
                reals = self._service_reals(op, key)
                self._require(op, real.key in reals, errno.ENOENT)
                reals[real.key] = kernel_real(real)
            case DeleteReal(service=key, real=rk):
                reals = self._service_reals(op, key)
                self._require(op, rk in reals, errno.ENOENT)
                del reals[rk]
            case AddAddress(address=a):
                self._require(op, a not in self._addresses, errno.EEXIST)
                self._addresses.add(a)
            case DeleteAddress(address=a):
                self._require(op, a in self._addresses, errno.EADDRNOTAVAIL)
                self._addresses.discard(a)
            case AnnounceRoute(route=route):
                self._routes.pop(route, None)
                self._routes[route] = route
            case WithdrawRoute(route=route):
                self._routes.pop(route, None)
            case _:
                raise TypeError(f"not an operation: {op!r}")

    def _service_reals(self, op: Operation, key: ServiceKey) -> dict[RealKey, Real]:
        self._require(op, key in self._services, errno.ESRCH)
        return self._reals[key]

    @staticmethod
    def _require(op: Operation, condition: bool, code: int) -> None:
        if not condition:
            raise Refused(op, code)


def apply_to(state: DataPlaneState, ops: Iterable[Operation]) -> DataPlaneState:
    """The state after applying ``ops`` to ``state``; raises ``Refused`` at the first refusal.

    Services no operation names, and that are already as the kernel reports
    them, are carried over as they are (the writer applies one real's change
    to a 10k-real state; rebuilding everything cost ~10 ms).
    """
    ops = tuple(ops)
    touched = {key for op in ops if (key := _service_of(op)) is not None}
    carried = tuple(s for s in state.services if s.key not in touched and s.as_reported)
    rest = tuple(s for s in state.services if s.key in touched or not s.as_reported)
    model = KernelModel(replace(state, services=rest))
    for op in ops:
        model.apply(op)
    after = model.state()
    return replace(after, services=after.services + carried) if carried else after


def _service_of(op: Operation) -> ServiceKey | None:
    match op:
        case AddService(service=s) | UpdateService(service=s):
            return s.key
        case DeleteService(service=key) | AddReal(service=key) | UpdateReal(service=key) | \
                DeleteReal(service=key):
            return key
    return None

