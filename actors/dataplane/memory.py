"""MemoryDataPlane: a data plane that lives in memory and answers like the kernel.

Used by tests, by ``--dry-run`` and by the demo. It keeps IPVS services, reals
and link addresses in ``kglb.plan.KernelModel`` (EEXIST, ENOENT, ESRCH,
EADDRNOTAVAIL as the kernel gives them), records every operation it applied,
and can be told to refuse chosen operations (fault injection).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

from kglb import (
    AddAddress,
    AnnounceRoute,
    DeleteAddress,
    LinkAddress,
    DataPlaneState,
    Operation,
    RealKey,
    ServiceKey,
    WithdrawRoute,
)
from kglb.plan import KernelModel, Refused

from ._base import OperationError, RealCounters, ServiceCounters

#: How many applied operations ``applied`` keeps at least (tests read it).
APPLIED_KEPT = 1000

#: Decides whether an operation fails: returns an errno, or 0 to let it through.
Fault = Callable[[Operation], int]


class MemoryDataPlane:
    """An in-memory kernel.

    ``MemoryDataPlane(seed)`` starts with ``seed`` in the "kernel" (foreign
    services, addresses left by an earlier run...). ``applied`` lists every
    operation that took effect, in order; ``attempts`` counts every operation
    tried, by kind. ``fail(fault)`` installs a fault injector consulted before
    each operation; ``reads`` counts ``read()`` calls. Addresses added through
    ``apply`` carry a mark, as ``IpvsDataPlane`` marks them (``marked()``).
    """

    def __init__(self, seed: DataPlaneState = DataPlaneState()) -> None:
        if seed.routes:
            raise ValueError("routes belong to a RouteSpeaker, not to the data plane")
        self._model = KernelModel(seed)
        self._fault: Fault | None = None
        self._closed = False
        self.applied: list[Operation] = []  # the last APPLIED_KEPT or more, oldest first
        self.attempts: Counter[str] = Counter()
        self.reads = 0
        self._marked: set[LinkAddress] = set()  # added through apply: "our" kernel mark
        self.counter_values: dict[ServiceKey, ServiceCounters] = {}
        # zero counters, built once per set of reals: (real keys, counters)
        self._zeros: dict[ServiceKey, tuple[tuple[RealKey, ...], ServiceCounters]] = {}

    def __repr__(self) -> str:
        state = self._model.state()
        return (f"<MemoryDataPlane services={len(state.services)} "
                f"addresses={len(state.addresses)} applied={len(self.applied)}>")

    @property
    def state(self) -> DataPlaneState:
        """The current contents, synchronously (for tests)."""
        return self._model.state()

    def fail(self, fault: Fault | None) -> None:
        """Refuse operations for which ``fault(op)`` returns an errno (None: stop failing)."""
        self._fault = fault

    def tamper(self, ops: Sequence[Operation]) -> None:
        """Change the kernel behind the writer's back (another tool, or drift).

        Not recorded in ``applied``. Raises ``Refused`` like the kernel would.
        """
        for op in ops:
            self._model.apply(op)

    async def read(self) -> DataPlaneState:
        self._check_open()
        self.reads += 1
        return self._model.state()

    async def apply(self, ops: Sequence[Operation]) -> list[OperationError]:
        self._check_open()
        errors: list[OperationError] = []
        for op in ops:
            if isinstance(op, (AnnounceRoute, WithdrawRoute)):
                raise TypeError("route operations go to the RouteSpeaker")
            self.attempts[type(op).__name__] += 1
            code = self._fault(op) if self._fault is not None else 0
            if code:
                errors.append(OperationError(op=op, errno=code, message="injected fault"))
                continue
            try:
                self._model.apply(op)
            except Refused as e:
                errors.append(OperationError(op=op, errno=e.errno))
                continue
            self.applied.append(op)
            if isinstance(op, AddAddress):
                self._marked.add(op.address)
            elif isinstance(op, DeleteAddress):
                self._marked.discard(op.address)
        if len(self.applied) > 2 * APPLIED_KEPT:  # a long demo run must not grow forever
            del self.applied[:-APPLIED_KEPT]
        return errors

    async def marked(self) -> frozenset[LinkAddress]:
        """The addresses added through ``apply`` and still there (the IFA_PROTO mark)."""
        self._check_open()
        return frozenset(self._marked & set(self._model.state().addresses))

    async def counters(self) -> dict[ServiceKey, ServiceCounters]:
        """``counter_values`` where set (tests set them), else zero counters."""
        self._check_open()
        out = {}
        for key, reals in self._model.real_keys().items():
            cached = self._zeros.get(key)
            if cached is None or cached[0] != reals:  # the same key objects: fast
                cached = self._zeros[key] = (reals, ServiceCounters(
                    key=key, reals=tuple(RealCounters(key=rk) for rk in reals)))
            out[key] = self.counter_values.get(key) or cached[1]
        return out

    async def aclose(self) -> None:
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("MemoryDataPlane is closed")
