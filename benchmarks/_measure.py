"""What a benchmark phase measures: check results, data-plane changes, loop lag, CPU, RSS.

Every timestamp is ``time.monotonic()`` (CLOCK_MONOTONIC): the reals server
stamps its health flips with the same clock from another process, so "flip
applied" and "data plane changed" compare directly. (trio's own clock has a
random per-run offset, so it is used only for the loop-lag ticker.)

The ``Recorder`` sees both ends of the control plane: the check results as
the prober delivers them (address, passed, when) and the data plane (each real
whose weight crosses zero, when its ``apply`` returned). Control-plane latency
is the time from the check result that decided a change to the data plane
reflecting it: the newest result of that real agreeing with the change.
"""

from __future__ import annotations

import gc
import math
import os
import time
from collections.abc import Callable, Sequence

import trio

from kglb import AddReal, DeleteReal, Operation, ProbeResult, UpdateReal

_PAGE = os.sysconf("SC_PAGE_SIZE")


_TICK = os.sysconf("SC_CLK_TCK")


def _stat(proc: str) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state is [0], ppid [1])."""
    try:
        with open(f"{proc}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _children(pid: int) -> list[str]:
    """/proc/<child> of the live children of ``pid``."""
    parent, found = str(pid), []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(f"/proc/{entry}")) and fields[1] == parent:
            found.append(f"/proc/{entry}")
    return found


def _cpu(proc: str) -> float:
    fields = _stat(proc)
    return (int(fields[11]) + int(fields[12])) / _TICK if fields else 0.0  # utime + stime


def rss_bytes() -> int:
    """Resident set size of this process and its children, now."""
    total = 0
    for proc in ["/proc/self", *_children(os.getpid())]:
        try:
            with open(f"{proc}/statm") as f:
                total += int(f.read().split()[1]) * _PAGE
        except OSError:
            pass
    return total


def cpu_seconds() -> float:
    """CPU time of this process (every thread: the netlink writer's too) and of
    its live children (probe workers)."""
    return time.process_time() + sum(_cpu(proc) for proc in _children(os.getpid()))


def tree_cpu_seconds(pids) -> float:
    """CPU time of processes ``pids`` and their live children (the reals servers)."""
    return sum(_cpu(proc) for pid in pids for proc in [f"/proc/{pid}", *_children(pid)])


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summary_ms(values: Sequence[float]) -> dict:
    """count, p50, p99 and max of durations in seconds, reported in milliseconds."""
    def ms(v: float | None) -> float | None:
        return None if v is None else round(v * 1000, 3)

    return {
        "n": len(values),
        "p50_ms": ms(percentile(values, 50)),
        "p99_ms": ms(percentile(values, 99)),
        "max_ms": ms(max(values) if values else None),
    }


class LoopLag:
    """A ticker task: how late the trio loop wakes a task that asked to sleep ``period``."""

    def __init__(self, period: float = 0.01) -> None:
        self.period = period
        self.samples: list[float] = []

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            target = trio.current_time() + self.period
            await trio.sleep_until(target)
            self.samples.append(trio.current_time() - target)

    def reset(self) -> None:
        self.samples = []


class Stalls(trio.abc.Instrument):
    """What held the loop: garbage-collector pauses and the longest task steps.

    A trio instrument (every task step is timed) plus a ``gc.callbacks`` hook,
    on in both phases. ``reset()`` starts the window; ``summary()`` reports it.
    """

    def __init__(self, longest: int = 3) -> None:
        self._longest = longest
        self._step_start = 0.0
        self._gc_start = 0.0
        self.reset()

    def reset(self) -> None:
        self.gc_pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}  # by generation
        self.steps: list[tuple[float, str, str]] = []  # the longest (seconds, task, where)

    def install(self) -> None:
        trio.lowlevel.add_instrument(self)
        gc.callbacks.append(self._gc)

    def uninstall(self) -> None:
        trio.lowlevel.remove_instrument(self)
        gc.callbacks.remove(self._gc)

    def before_task_step(self, task) -> None:
        self._step_start = time.perf_counter()

    def after_task_step(self, task) -> None:
        if not self._step_start:  # installed in the middle of this step
            return
        took = time.perf_counter() - self._step_start
        if len(self.steps) < self._longest or took > self.steps[-1][0]:
            step = (took, task.name, _suspended_at(task))
            self.steps = sorted([*self.steps, step], reverse=True)[: self._longest]

    def _gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._gc_start = time.perf_counter()
        elif self._gc_start:
            self.gc_pauses[info["generation"]].append(time.perf_counter() - self._gc_start)

    def summary(self) -> dict:
        return {
            "gc": {f"gen{g}": {"count": len(p), "max_ms": round(max(p) * 1000, 1) if p else None}
                   for g, p in self.gc_pauses.items()},
            "longest_steps": [{"ms": round(took * 1000, 1), "task": name, "then_at": where}
                              for took, name, where in self.steps],
        }


def _suspended_at(task) -> str:
    """Where ``task`` waits now (the innermost await): the end of the step just timed."""
    coro, where = task.coro, "?"
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            break
        if "/trio/" not in frame.f_code.co_filename:  # trio's own awaits say little
            where = f"{frame.f_code.co_filename.rsplit('/', 2)[-1]}:{frame.f_lineno}"
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return where


class Recorder:
    """Check results and data-plane changes of one phase, and the latencies between them.

    Latencies go to the current ``period`` ("bringup", then "steady", ...), so
    the bring-up burst and the steady state are reported apart.
    """

    def __init__(self, flip_pool: tuple[str, ...] = ()) -> None:
        self.checks = 0  # delivered
        self.failed_checks = 0
        # Where checks are counted as they complete, when delivery lags (kglb-trio's
        # Prober folds steady results): () -> (checks, {reason: checks}).
        self.checks_source: Callable[[], tuple[int, dict[str, int]]] | None = None
        self.period = "bringup"
        self._last_pass: dict[str, float] = {}
        self._last_fail: dict[str, float] = {}
        self.up: dict[str, bool] = {}
        self.up_count = 0
        self.control_latency: dict[str, list[float]] = {}
        self.flip_latency: dict[str, list[float]] = {"down": [], "up": []}
        self.flip_control_latency: list[float] = []
        # The same, cut where the result reached the control plane (the Prober
        # delivering it): "probe" is the check's worker and the pipe, "control"
        # the balancer, generator and writer. Only for the flip pool's reals.
        self.flip_control_split: dict[str, list[float]] = {"probe": [], "control": []}
        self._pool = frozenset(flip_pool)
        self._arrived: dict[tuple[str, bool], float] = {}
        self.apply_seconds: dict[str, list[float]] = {}
        self.apply_ops: dict[str, int] = {}
        self.apply_errors = 0
        self.went_down: list[str] = []  # reals that went from up to down, any cause, in order
        self.deleted: list[str] = []
        self._expected: dict[tuple[str, bool], float] = {}
        self._changed = trio.Event()

    # ---------------------------------------------------------------- check side

    def result(self, address: str, passed: bool, checks: int = 1, at: float | None = None) -> None:
        """A check of ``address`` finished at ``at`` (time.monotonic(); default: now)."""
        now = time.monotonic() if at is None else at
        self.checks += checks
        if passed:
            self._last_pass[address] = now
        else:
            self.failed_checks += checks
            self._last_fail[address] = now

    def checks_done(self) -> tuple[int, int]:
        """(checks, failed checks) completed so far."""
        if self.checks_source is None:
            return self.checks, self.failed_checks
        checks, by_reason = self.checks_source()
        return checks, checks - by_reason.get("ok", 0)

    def delivered(self, message: ProbeResult) -> None:
        """A result as the prober delivers it, standing for ``message.checks`` checks,
        dated when its check finished (in a probe worker, before it arrived here)."""
        now = time.monotonic()
        address, passed = message.target.address, message.result.passed
        if address in self._pool:
            self._arrived[(address, passed)] = now
        self.result(address, passed, message.checks, now - (trio.current_time() - message.at))

    # ---------------------------------------------------------------- data plane side

    def applied(self, ops: Sequence[Operation], started: float, finished: float, errors: int) -> None:
        self.apply_seconds.setdefault(self.period, []).append(finished - started)
        self.apply_ops[self.period] = self.apply_ops.get(self.period, 0) + len(ops)
        self.apply_errors += errors
        for op in ops:
            if isinstance(op, (AddReal, UpdateReal)):
                self._real_is(op.real.key.address, op.real.weight > 0, finished)
            elif isinstance(op, DeleteReal):
                self.deleted.append(op.real.address)
                self._real_is(op.real.address, False, finished)
        self._changed.set()
        self._changed = trio.Event()

    def _real_is(self, address: str, up: bool, at: float) -> None:
        was = self.up.get(address)
        if was == up:
            return
        self.up[address] = up
        self.up_count += 1 if up else (-1 if was else 0)
        if was and not up:
            self.went_down.append(address)
        decided = (self._last_pass if up else self._last_fail).get(address)
        if decided is not None:
            self.control_latency.setdefault(self.period, []).append(at - decided)
        flipped = self._expected.pop((address, up), None)
        if flipped is not None:
            self.flip_latency["up" if up else "down"].append(at - flipped)
            if decided is not None:
                self.flip_control_latency.append(at - decided)
                arrived = self._arrived.get((address, up))
                if arrived is not None:
                    self.flip_control_split["probe"].append(arrived - decided)
                    self.flip_control_split["control"].append(at - arrived)

    # ---------------------------------------------------------------- waiting

    def expect(self, address: str, up: bool, since: float) -> None:
        """The reals server made ``address`` ``up`` at ``since``: time its arrival
        in the data plane, however late (until the next expect of the same)."""
        self._expected[(address, up)] = since

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Return once ``predicate()`` holds, re-testing after every apply."""
        while not predicate():
            await self._changed.wait()
