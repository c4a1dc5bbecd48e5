"""One measured phase in its own process: bring the reals up, measure a window with flips.

A phase is the system under test (``kglb``: ``actors.app.run_kglb``; or
``baseline``: ``_baseline.run_bare_checker``) with a recording data plane, a
loop-lag ticker and a flip driver, in a fresh process so that its CPU time and
RSS are its own. Steps: bring-up (every real up in the data plane), a window
of ``duration`` seconds with flips (CPU, checks, lag and RSS measured over it),
the last flips allowed to land, then for kglb the reload of an equal config.
The result is a JSON-able dict.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

import trio

from actors.gc_policy import settle_gc
from kglb import DeleteService, Operation

from ._config import REAL_PORT, build_config, config_json
from ._measure import LoopLag, Recorder, Stalls, cpu_seconds, rss_bytes, summary_ms
from ._reals import ControlClient


@dataclass(frozen=True, slots=True, kw_only=True)
class PhaseSpec:
    system: str  # "kglb" or "baseline"
    reals: tuple[str, ...]
    flip_pool: tuple[str, ...]
    control: str  # the reals server's control socket
    check: str
    interval: float
    rise: int
    fall: int
    reals_per_vip: int
    concurrency: int
    timeout_ms: int
    duration: float
    flip_rate: float  # flip cycles (down, then up again) started per second
    dataplane: str  # "memory" or "ipvs"
    port: int = REAL_PORT
    coalesce: float | None = None  # run_kglb's coalesce; None: its default
    probe_workers: int = 0  # Prober(workers=...): probes in worker processes
    log_file: str | None = None  # kglb's log (JSON lines, info), as in production
    progress: bool = True

    def config(self):
        return build_config(
            self.reals, check=self.check, interval_ms=round(self.interval * 1000),
            rise=self.rise, fall=self.fall, reals_per_vip=self.reals_per_vip,
            concurrency=self.concurrency, timeout_ms=self.timeout_ms, port=self.port,
        )


class TimedDataPlane:
    """A data plane that tells the Recorder what each ``apply`` changed, and when."""

    def __init__(self, inner, recorder: Recorder) -> None:
        self._inner = inner
        self._recorder = recorder

    async def read(self):
        return await self._inner.read()

    async def apply(self, ops: Sequence[Operation]):
        started = time.monotonic()
        errors = await self._inner.apply(ops)
        self._recorder.applied(ops, started, time.monotonic(), len(errors))
        return errors

    async def counters(self):
        return await self._inner.counters()

    async def aclose(self) -> None:
        await self._inner.aclose()

    def __getattr__(self, name):
        # Implementation extras (MemoryDataPlane.state, IpvsDataPlane.unrepresentable).
        return getattr(self._inner, name)


class RecordingProber:
    """A Prober whose every delivered result the Recorder sees first.

    Only the Prober's public face is used (``run``, ``watch``, ``statistics``);
    recording at delivery works the same with probe worker processes.
    """

    def __init__(self, inner, recorder: Recorder) -> None:
        self._inner = inner
        self._recorder = recorder
        # One wrapper per channel (a balancer's), not per watch: the harness's
        # own memory is counted in the figures too.
        self._wrapped: dict[int, tuple[object, _RecordingSend]] = {}

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED, **options) -> None:
        await self._inner.run(task_status=task_status, **options)

    @property
    def inbox(self):
        return self  # the balancers' Watch and Unwatch come here first

    def send_nowait(self, message) -> None:
        """A Watch or Unwatch for the Prober's inbox, with the watcher's channel wrapped."""
        self._inner.inbox.send_nowait(replace(message, send=self._wrap(message.send)))

    def watch(self, target, *, interval, limiter, send, quiet_after=0):
        return self._inner.watch(target, interval=interval, limiter=limiter,
                                 send=self._wrap(send), quiet_after=quiet_after)

    def _wrap(self, send):
        kept = self._wrapped.get(id(send))
        if kept is None or kept[0] is not send:
            kept = self._wrapped[id(send)] = (send, _RecordingSend(send, self._recorder))
        return kept[1]

    def statistics(self):
        return self._inner.statistics()

    def __getattr__(self, name):
        return getattr(self._inner, name)


class _RecordingSend:
    """A watcher's send channel (``trio.MemorySendChannel``) that records each result."""

    def __init__(self, inner, recorder: Recorder) -> None:
        self._inner = inner
        self._recorder = recorder

    def send_nowait(self, message) -> None:
        self._inner.send_nowait(message)  # trio.WouldBlock: not delivered, not recorded
        self._recorder.delivered(message)

    async def send(self, message) -> None:
        self._recorder.delivered(message)
        await self._inner.send(message)

    def __getattr__(self, name):
        return getattr(self._inner, name)


def dataplane_class(kind: str):
    """The data plane class for ``--dataplane`` (``memory`` or ``ipvs``)."""
    if kind == "memory":
        from actors.dataplane import MemoryDataPlane

        return MemoryDataPlane
    if kind == "ipvs":
        try:
            from actors.dataplane.ipvs import IpvsDataPlane
        except ImportError as e:
            raise SystemExit(f"--dataplane ipvs is not available here: {e}") from None
        if not os.path.exists("/proc/net/ip_vs"):
            raise SystemExit("--dataplane ipvs: this kernel has no ip_vs loaded (modprobe ip_vs; "
                             "or run inside the VM: tools/ipvs-vm)")
        return IpvsDataPlane
    raise ValueError(f"unknown data plane {kind!r}")


class _Flips:
    """Takes reals of the flip pool down on the reals server and back up, timing each."""

    def __init__(self, spec: PhaseSpec, control: ControlClient, recorder: Recorder) -> None:
        self.spec = spec
        self.control = control
        self.recorder = recorder
        self.busy: set[str] = set()
        self.started = self.completed = self.missed = self.skipped = 0
        # A flip that the data plane has not shown by then is counted as missed
        # (twice the nominal time: an overloaded prober checks late).
        self.patience = 2 * (max(spec.rise, spec.fall) + 3) * spec.interval + spec.timeout_ms / 1000

    async def run(self, until: float) -> None:
        if self.spec.flip_rate <= 0 or not self.spec.flip_pool:
            return
        pool = itertools.cycle(self.spec.flip_pool)
        async with trio.open_nursery() as nursery:
            next_flip = time.monotonic()
            while next_flip < until:
                await trio.sleep(max(0.0, next_flip - time.monotonic()))
                next_flip += 1 / self.spec.flip_rate
                address = next((a for a in itertools.islice(pool, len(self.spec.flip_pool))
                                if a not in self.busy and self.recorder.up.get(a)), None)
                if address is None:
                    self.skipped += 1
                    continue
                self.busy.add(address)
                self.started += 1
                nursery.start_soon(self._cycle, address)

    async def _cycle(self, address: str) -> None:
        try:
            for up in (False, True):
                at = await self.control.set_health(address, up)
                self.recorder.expect(address, up, at)
                with trio.move_on_after(self.patience) as waited:
                    await self.recorder.wait_until(lambda: self.recorder.up.get(address) is up)
                if waited.cancelled_caught:
                    self.missed += 1
                    await self.control.set_health(address, True)
                    return
            self.completed += 1
        finally:
            self.busy.discard(address)


async def _progress(spec: PhaseSpec, recorder: Recorder, lag: LoopLag, flips: _Flips, t0: float) -> None:
    checks0, last = recorder.checks_done()[0], time.monotonic()
    while True:
        await trio.sleep(1)
        now, checks = time.monotonic(), recorder.checks_done()[0]
        rate = (checks - checks0) / (now - last)
        checks0, last = checks, now
        lag99 = summary_ms(lag.samples)["p99_ms"]
        sys.stderr.write(
            f"\r[{spec.system} N={len(spec.reals)}] {now - t0:5.1f}/{spec.duration:.0f} s  "
            f"checks/s {rate:7.0f} (scheduled {len(spec.reals) / spec.interval:.0f})  "
            f"lag p99 {lag99 or 0:6.1f} ms  flips {flips.completed}/{flips.started}   ")
        sys.stderr.flush()


def _system(spec: PhaseSpec, log: TextIO | None):
    """An ``async fn(config, dataplane, recorder, *, task_status)`` that starts the
    system under test. Importing it here, before the RSS baseline is taken, keeps
    module code out of the per-real memory figure."""
    if spec.system == "baseline":
        from ._baseline import run_bare_checker

        return run_bare_checker
    from actors.app import run_kglb
    from actors.probes import Prober

    from actors.logs import configure

    if log is not None:
        configure("json", "info", stream=log)
    tuning = {} if spec.coalesce is None else {"coalesce": spec.coalesce}

    async def start_kglb(config, dataplane, recorder, *, task_status=trio.TASK_STATUS_IGNORED):
        inner = Prober(workers=spec.probe_workers)
        recorder.checks_source = inner.checks_done
        prober = RecordingProber(inner, recorder)
        await run_kglb(config, dataplane=dataplane, prober=prober, task_status=task_status, **tuning)

    return start_kglb


async def _poll(predicate, every: float = 0.05) -> None:
    while not predicate():
        await trio.sleep(every)


def _health(handle) -> dict[tuple[str, str], tuple]:
    """(balancer, real) -> (up, since): a reset health state changes it."""
    return {(b.identity, r.host): (r.health.up, r.since)
            for b in handle.statistics().balancers for r in b.reals}


async def _reload(spec: PhaseSpec, handle, recorder: Recorder) -> dict:
    """Reload an equal config, as JSON text (what SIGHUP does after reading the
    file): how long, and how many health states it reset."""
    downs, deletes = len(recorder.went_down), len(recorder.deleted)
    before = _health(handle)
    recorder.period = "reload"
    text = config_json(spec.config())
    started = time.monotonic()
    problems = await handle.reload(text)
    seconds = time.monotonic() - started
    await trio.sleep(max(spec.rise, spec.fall) * spec.interval + 1)  # a reset would show by now
    after = _health(handle)
    pool = set(spec.flip_pool)  # a flip missed in the window may still land: not the reload's doing
    return {
        "seconds": round(seconds, 4),
        "config_bytes": len(text),
        "problems": problems,
        "health_resets": sum(after.get(key) != value for key, value in before.items()
                             if key[1] not in pool),
        "reals_gone_down": len(set(recorder.went_down[downs:]) - pool),
        "reals_deleted": len(set(recorder.deleted[deletes:]) - pool),
    }


def _plain(stats, depth: int = 1) -> dict:
    """The scalar fields of a statistics snapshot (and of its nested ones), for the JSON."""
    out = {}
    for name in getattr(stats, "__dataclass_fields__", None) or {}:
        value = getattr(stats, name)
        if isinstance(value, int | float | str | bool):
            out[name] = value
        elif depth and hasattr(value, "__dataclass_fields__"):
            out[name] = _plain(value, depth - 1)
    return out


async def run_phase(spec: PhaseSpec) -> dict:
    """Run one phase to the end; returns its figures."""
    with contextlib.ExitStack() as stack:
        log = stack.enter_context(open(spec.log_file, "w")) if spec.log_file else None
        return await _run_phase(spec, _system(spec, log))


async def _run_phase(spec: PhaseSpec, system) -> dict:
    dataplane_type = dataplane_class(spec.dataplane)  # imported before the RSS baseline too
    rss_start = rss_bytes()
    config = spec.config()
    recorder = Recorder(spec.flip_pool)
    dataplane = TimedDataPlane(dataplane_type(), recorder)
    lag = LoopLag()
    stalls = Stalls()
    control = await ControlClient.connect(spec.control)
    for address in spec.flip_pool:  # an earlier phase may have ended mid-flip
        await control.set_health(address, True)
    flips = _Flips(spec, control, recorder)
    out: dict | None = None
    async with trio.open_nursery() as nursery:
        await nursery.start(lag.run)
        stalls.install()
        try:
            async with trio.open_nursery() as under_test:
                t0 = time.monotonic()
                handle = await under_test.start(system, config, dataplane, recorder)
                settle_gc()  # as `kglb-trio` does once started (actors/_cmd_run.py)
                out = await _measure(spec, handle, recorder, lag, stalls, flips, nursery, t0,
                                     rss_start)
                if spec.system == "kglb":
                    handle.shutdown()  # graceful: it removes what it created (IPVS: no leftovers)
                    under_test.cancel_scope.deadline = trio.current_time() + 30
                else:
                    under_test.cancel_scope.cancel()
        except Exception as exc:
            if out is None:
                raise
            # The figures are in: a crash while stopping is reported beside them.
            out["shutdown_error"] = describe_error(exc)
            sys.stderr.write(f"\n[{spec.system}] crashed while shutting down: {out['shutdown_error']}\n")
        if spec.system == "baseline":
            await dataplane.apply([DeleteService(service=b.key) for b in config.balancers])
        nursery.cancel_scope.cancel()
    if spec.progress:
        sys.stderr.write("\n")
    await control.aclose()
    await dataplane.aclose()
    return out


def describe_error(exc: BaseException) -> str:
    """The distinct innermost errors of ``exc`` (an exception group, usually), one line."""
    leaves: dict[str, int] = {}

    def walk(e: BaseException) -> None:
        if isinstance(e, BaseExceptionGroup):
            for inner in e.exceptions:
                walk(inner)
            return
        frame = traceback.extract_tb(e.__traceback__)[-1] if e.__traceback__ else None
        where = f" at {Path(frame.filename).name}:{frame.lineno}" if frame else ""
        key = f"{type(e).__name__}: {e}{where}"
        leaves[key] = leaves.get(key, 0) + 1

    walk(exc)
    ranked = sorted(leaves.items(), key=lambda item: (-item[1], item[0]))  # most frequent first
    return "; ".join(f"{key} (x{count})" for key, count in ranked)


async def _measure(spec: PhaseSpec, handle, recorder: Recorder, lag: LoopLag, stalls: Stalls,
                   flips: _Flips, nursery: trio.Nursery, t0: float, rss_start: int) -> dict:
    n = len(spec.reals)
    out: dict = {"system": spec.system, "reals": n}
    bringup_limit = (spec.rise + 5) * spec.interval + n / 500
    with trio.move_on_after(bringup_limit):
        await recorder.wait_until(lambda: recorder.up_count >= n)
    out["bringup_seconds"] = round(time.monotonic() - t0, 3)
    out["bringup_up"] = recorder.up_count
    if recorder.up_count < n:
        sys.stderr.write(f"\n[{spec.system}] only {recorder.up_count}/{n} reals up "
                         f"after {bringup_limit:.0f} s; measuring anyway\n")
    recorder.period = "steady"
    lag.reset()
    stalls.reset()
    (checks0, failed0), cpu0, w0 = recorder.checks_done(), cpu_seconds(), time.monotonic()
    if spec.progress:
        nursery.start_soon(_progress, spec, recorder, lag, flips, w0)
    nursery.start_soon(flips.run, w0 + spec.duration)
    await trio.sleep(spec.duration)
    window = time.monotonic() - w0
    cpu = cpu_seconds() - cpu0
    checks, failed = recorder.checks_done()
    checks -= checks0
    out.update(
        window_seconds=round(window, 3),
        checks=checks,
        failed_checks=failed - failed0,
        checks_per_second=round(checks / window, 1),
        scheduled_per_second=round(n / spec.interval, 1),
        cpu_seconds=round(cpu, 3),
        cpu_us_per_check=round(cpu / checks * 1e6, 1) if checks else None,
        cpu_share=round(cpu / window, 3),
        loadavg=os.getloadavg(),  # the machine is shared: how busy it was
        rss_bytes=(rss := rss_bytes()),
        rss_per_real_bytes=round((rss - rss_start) / n, 1),
        loop_lag=summary_ms(lag.samples),
        stalls=stalls.summary(),
    )
    with trio.move_on_after(flips.patience * 2):
        await _poll(lambda: not flips.busy)  # let the last flips land
    out["flips"] = {"started": flips.started, "completed": flips.completed,
                    "missed": flips.missed, "skipped": flips.skipped,
                    "unfinished": len(flips.busy)}
    out["flip_latency_down"] = summary_ms(recorder.flip_latency["down"])
    out["flip_latency_up"] = summary_ms(recorder.flip_latency["up"])
    out["control_latency_flips"] = summary_ms(recorder.flip_control_latency)
    out["control_latency_flips_split"] = {part: summary_ms(v)
                                          for part, v in recorder.flip_control_split.items()}
    out["control_latency"] = {p: summary_ms(v) for p, v in recorder.control_latency.items()}
    if spec.system == "kglb":
        out["reload"] = await _reload(spec, handle, recorder)
        out["stats"] = _plain(handle.statistics())
        out["coalesce"] = spec.coalesce
        out["probe_workers"] = spec.probe_workers
    out["apply"] = {p: {**summary_ms(v), "ops": recorder.apply_ops.get(p, 0)}
                    for p, v in recorder.apply_seconds.items()}
    out["apply_errors"] = recorder.apply_errors
    return out
