"""Privilege separation end to end: check result -> data plane, one process vs ``--privsep``.

``python -m benchmarks privsep-e2e --reals 10000`` runs the real ``kglb-trio``
command twice per repetition, as separate processes, on the same config:

* ``single``: ``kglb-trio --config F --dry-run --single-process`` (one process, as
  before issue 18);
* ``privsep``: ``kglb-trio --config F --dry-run --privsep --user U``: the
  writer process (``actors.writer_process``) starts the unprivileged side
  through ``actors.privileges`` (capabilities dropped, then ``actors.cli``
  exec'd), which sends desired states through ``WriterProxy`` to the writer's
  ``WriterServer``.

``--dry-run`` puts the writer on the in-memory data plane (no ip_vs needed)
and prints every operation it applied, on stdout, as it applies it. This
harness reads that stdout and stamps each line with ``time.monotonic()`` as it
arrives: that is "the data plane applied the op" (the pipe adds the same few
tens of microseconds in both modes).

The config: N reals on 127.a.b.c, 500 per VIP. The first ``--pool`` reals
(the first VIP) are checked over HTTP (rise 1, fall 1: one answer changes
their health) against ``benchmarks.privsep_reals``, which answers 200, or 503
once told a real is down, and says when it sent the first answer after each
change: that is "the check result entered the control plane" (the prober
reads it microseconds later). The other reals have kglb's dummy check (always
up): they make the control plane, its desired states and what crosses the
process boundary 10k reals large, while probing stays cheap enough for 2
shared CPUs. Both timestamps are CLOCK_MONOTONIC, one clock for every process
of the host.

Per run, once every real is up in the data plane and a settling pause is
over: ``--flips`` health flips (a pool real down, wait until the data plane
shows weight 0, then up again, wait for its weight), the latency of each, and
the CPU (user + sys, /proc/PID/stat) of every process of the kglb-trio tree
over the flip window, per second of it. The reals server is not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

from kglb import Service, ServiceKey

from ._config import VIP_PORT, build_config, config_json, real_addresses, vip_address
from ._measure import _TICK, _stat, percentile

_ROOT = Path(__file__).resolve().parent.parent
MODES = ("single", "privsep")
PER_VIP = 500
# ``-a``/``-e`` lines of ``kglb.pretty.render_operation``: the real and its new weight.
_REAL_LINE = re.compile(r"^-[ae] -t \S+ -r (?P<address>[0-9.]+):\d+ .*?-w (?P<weight>\d+)")


def build(n: int, pool: int, *, interval_ms: int, port: int, per_vip: int = PER_VIP):
    """The config: ``pool`` HTTP-checked reals first, then ``n - pool`` dummy-checked,
    ``per_vip`` a VIP (a VIP holds checked or dummy reals, never both)."""
    reals = real_addresses(n)
    common = {"interval_ms": interval_ms, "rise": 1, "fall": 1, "reals_per_vip": per_vip,
              "concurrency": 100, "timeout_ms": 1000, "port": port}
    checked = build_config(reals[:pool], check="http", **common)
    steady = build_config(reals[pool:], check="dummy", **common)
    first = len(checked.balancers)
    renamed = tuple(
        replace(b, name=f"bench-{first + i}",
                service=replace(b.service, key=ServiceKey.tcp(vip_address(first + i), VIP_PORT)))
        for i, b in enumerate(steady.balancers))
    return replace(checked, balancers=checked.balancers + renamed)


class OpsReader:
    """Reads a kglb-trio --dry-run's stdout: each real's weight and when it last crossed zero."""

    def __init__(self, stream) -> None:
        self._stream = stream
        self._cond = threading.Condition()
        self.weights: dict[str, int] = {}
        self.up = 0
        self.changed: dict[tuple[str, bool], float] = {}  # (address, up) -> newest arrival
        self.lines = 0
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for line in self._stream:
            at = time.monotonic()
            match = _REAL_LINE.match(line)
            with self._cond:
                self.lines += 1
                if match is None:
                    continue
                address, weight = match["address"], int(match["weight"])
                was = self.weights.get(address, 0) > 0
                self.weights[address] = weight
                if was != (weight > 0):
                    self.up += 1 if weight > 0 else -1
                    self.changed[(address, weight > 0)] = at
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait(self, predicate, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self) or not self.thread.is_alive(),
                                       timeout) and predicate(self)


class Control:
    """The blocking client of ``privsep_reals``'s control socket."""

    def __init__(self, path: str) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.connect(path)
        self._file = self._sock.makefile("r")

    def command(self, line: str) -> float | None:
        self._sock.sendall(line.encode() + b"\n")
        verb, _, value = self._file.readline().strip().partition(" ")
        return float(value) if verb == "ok" else None

    def close(self) -> None:
        self._file.close()
        self._sock.close()


def tree_cpu(root: int) -> dict[int, tuple[str, float]]:
    """pid -> (command, CPU seconds) of ``root`` and all its live descendants."""
    parents, found = {}, {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(f"/proc/{entry}")):
            parents[int(entry)] = int(fields[1])
            found[int(entry)] = (int(fields[11]) + int(fields[12])) / _TICK
    tree, grew = {root}, True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= more
        grew = bool(more)
    return {pid: (_role(pid), found[pid]) for pid in tree if pid in found}


def _role(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "gone"
    if b"--privsep-fd" in argv:  # before --privsep: the unprivileged side has both flags
        return "unprivileged side"
    if b"--privsep" in argv:
        return "writer process"
    if b"actors.cli" in argv:
        return "kglb-trio"
    return "probe worker"


def _cpu_delta(before: dict, after: dict) -> dict[str, float]:
    roles: dict[str, float] = {}
    for pid, (role, seconds) in after.items():
        roles[role] = roles.get(role, 0.0) + seconds - before.get(pid, (role, 0.0))[1]
    return roles


def run_once(mode: str, args, config_path: Path, control_path: str, pool: list[str],
             log_path: Path) -> dict:
    cmd = [sys.executable, "-m", "actors.cli", "--config", str(config_path), "--dry-run",
           "--probe-workers", str(args.probe_workers), "--log-format", "json",
           "--log-level", "warning"]
    # Explicit both ways: which mode a plain start picks depends on the user and flags.
    cmd += ["--privsep", "--user", args.user] if mode == "privsep" else ["--single-process"]
    started = time.monotonic()
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, cwd=_ROOT,
                                start_new_session=True)
    ops = OpsReader(proc.stdout)
    control = Control(control_path)
    try:
        if not ops.wait(lambda o: o.up == args.reals, args.startup_timeout):
            tail = "".join(log_path.read_text().splitlines(keepends=True)[-20:])
            raise RuntimeError(f"{mode}: {ops.up} of {args.reals} reals up after "
                               f"{args.startup_timeout} s; its log ends:\n{tail}")
        ready = time.monotonic() - started
        time.sleep(args.settle)
        idle0, idle_t0 = tree_cpu(proc.pid), time.monotonic()
        time.sleep(args.idle)
        cpu0, t0 = tree_cpu(proc.pid), time.monotonic()
        flips, missed = _flip(ops, control, pool, args)
        cpu1, t1 = tree_cpu(proc.pid), time.monotonic()
    finally:
        control.close()
        _stop(proc)
    window, idle_window = t1 - t0, t0 - idle_t0
    roles, idle = _cpu_delta(cpu0, cpu1), _cpu_delta(idle0, cpu0)
    latencies = [seconds for _, seconds in flips]
    # What a flip costs the control plane: its processes' CPU above their idle
    # rate. Probe workers are left out: a check costs them the same either way.
    control = sum(seconds for role, seconds in roles.items() if role != "probe worker")
    control_idle = sum(seconds for role, seconds in idle.items() if role != "probe worker")
    per_flip = (control - control_idle / idle_window * window) / max(1, len(flips))
    return {
        "mode": mode, "ready_s": round(ready, 1), "flips": len(flips), "missed": missed,
        "p50_ms": _ms(percentile(latencies, 50)), "p90_ms": _ms(percentile(latencies, 90)),
        "max_ms": _ms(max(latencies, default=None)), "window_s": round(window, 1),
        "cpu_per_s": round(sum(roles.values()) / window, 3),
        "cpu_per_s_by_process": {role: round(s / window, 3) for role, s in sorted(roles.items())},
        "idle_cpu_per_s": round(sum(idle.values()) / idle_window, 3),
        "idle_cpu_per_s_by_process": {role: round(s / idle_window, 3)
                                      for role, s in sorted(idle.items())},
        "control_cpu_ms_per_flip": round(per_flip * 1000, 2),
        **{f"p50_{way}_ms": _ms(percentile([s for w, s in flips if w == way], 50))
           for way in ("down", "up")},
        "latencies_ms": [[way, _ms(seconds)] for way, seconds in flips],
    }


def _flip(ops: OpsReader, control: Control, pool: list[str], args) -> tuple[list, int]:
    """``args.flips`` flips, down then up, over ``pool``: ([(way, seconds)], missed)."""
    flips, missed = [], 0
    patience = 5 * args.interval + 10
    for i in range(args.flips):
        address, up = pool[(i // 2) % len(pool)], i % 2 == 1
        flipped = control.command(f"{'up' if up else 'down'} {address}")
        if flipped is None:
            raise RuntimeError(f"the reals server refused to flip {address}")
        if not ops.wait(lambda o: o.changed.get((address, up), 0.0) > flipped, patience):
            missed += 1
            control.command(f"up {address}")
            ops.wait(lambda o: o.weights.get(address, 0) > 0, patience)
            continue
        answered = control.command(f"answered {address}")
        if answered is None:
            missed += 1
            continue
        flips.append(("up" if up else "down", ops.changed[(address, up)] - answered))
    return flips, missed


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def _stop(proc: subprocess.Popen) -> None:
    """A graceful stop (SIGTERM), then the whole session killed if it lingers."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    proc.stdout.close()


def _start_reals(addresses: list[str], port: int, workdir: Path) -> tuple[subprocess.Popen, str]:
    listed = workdir / "pool.txt"
    listed.write_text("".join(a + "\n" for a in addresses))
    control = str(workdir / "control.sock")
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.privsep_reals", "--addresses",
                             str(listed), "--port", str(port), "--control", control],
                            stdout=subprocess.PIPE, text=True, cwd=_ROOT)
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        raise RuntimeError("benchmarks.privsep_reals did not start (see its error above)")
    return proc, control


#: The summary's columns: (key of a run's figures, header).
FIGURES = (("p50_ms", "p50 ms"), ("p90_ms", "p90 ms"), ("cpu_per_s", "CPU s/s"),
           ("idle_cpu_per_s", "idle CPU s/s"), ("control_cpu_ms_per_flip", "CPU ms/flip"))


def summary(runs: list[dict], modes: list[str]) -> list[str]:
    """Per mode: the median over runs of each figure with its range, privsep/single
    ratios of the medians, then the latencies of all runs' flips pooled."""
    def figure(mode: str, key: str) -> tuple[float, float, float]:
        values = [r[key] for r in runs if r["mode"] == mode and r.get(key) is not None]
        return statistics.median(values), min(values), max(values)

    lines = [f"{'mode':<8} {'runs':>4} " + " ".join(f"{h + ' (range)':>24}" for _, h in FIGURES)]
    medians = {}
    for mode in modes:
        row = [figure(mode, key) for key, _ in FIGURES]
        medians[mode] = [m for m, _, _ in row]
        cells = " ".join(f"{f'{m:.3g} ({lo:.3g} to {hi:.3g})':>24}" for m, lo, hi in row)
        lines.append(f"{mode:<8} {sum(r['mode'] == mode for r in runs):>4} {cells}")
    if set(MODES) <= set(medians):
        ratios = [f"{p / s:.2f}" if s > 0 else "-" for p, s in zip(medians["privsep"],
                                                                   medians["single"])]
        lines.append(f"{'ratio':<8} {'':>4} " + " ".join(f"{r:>24}" for r in ratios)
                     + "   (privsep / single, medians)")
    for mode in modes:
        pooled = [x for r in runs if r["mode"] == mode for _, x in r.get("latencies_ms", ())]
        if pooled:
            lines.append(f"{mode} flips pooled: n {len(pooled)}, p50 {percentile(pooled, 50)} ms, "
                         f"p90 {percentile(pooled, 90)} ms, max {max(pooled)} ms")
    return lines


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks privsep-e2e", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reals", type=int, default=10000, help="reals in the config [10000]")
    p.add_argument("--pool", type=int, default=PER_VIP,
                   help="HTTP-checked reals (the rest: dummy checks); flips go over them [500]")
    p.add_argument("--per-vip", type=int, default=PER_VIP, help="reals per VIP [500]")
    p.add_argument("--flips", type=int, default=40, help="health flips per run (down, up, ...) [40]")
    p.add_argument("--repeat", type=int, default=3, help="runs per mode, alternating [3]")
    p.add_argument("--modes", default=",".join(MODES), help="single,privsep [both]")
    p.add_argument("--interval", type=float, default=1.0, help="check interval, s [1]")
    p.add_argument("--probe-workers", type=int, default=1, help="kglb-trio --probe-workers [1]")
    p.add_argument("--user", default="0" if os.geteuid() == 0 else str(os.getuid()),
                   help="--privsep's --user [0: root with every capability dropped; this "
                        "machine's Python is under /root, which no other user can exec]")
    p.add_argument("--settle", type=float, default=5.0, help="pause after bring-up, s [5]")
    p.add_argument("--idle", type=float, default=10.0,
                   help="window without flips before the flips, for the idle CPU, s [10]")
    p.add_argument("--startup-timeout", type=float, default=300.0)
    p.add_argument("--port", type=int, default=18480, help="the HTTP reals' port [18480]")
    p.add_argument("--json", type=Path, help="also write every run's figures here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    if set(modes) - set(MODES) or not 0 < args.pool <= args.reals:
        parser().error("--modes takes single,privsep; --pool must be 1..--reals")
    config = build(args.reals, args.pool, interval_ms=round(args.interval * 1000), port=args.port,
                   per_vip=args.per_vip)
    pool = list(real_addresses(args.pool))  # build() checks exactly these over HTTP
    runs = []
    with tempfile.TemporaryDirectory(prefix="kglb-privsep-e2e-") as tmp:
        workdir = Path(tmp)
        os.chmod(workdir, 0o755)  # the unprivileged side reads the config
        config_path = workdir / "kglb.json"
        config_path.write_text(config_json(config))
        os.chmod(config_path, 0o644)
        reals, control = _start_reals(pool, args.port, workdir)
        try:
            for r in range(args.repeat):
                for mode in modes if r % 2 == 0 else modes[::-1]:
                    run = run_once(mode, args, config_path, control, pool,
                                   workdir / f"{mode}-{r}.log")
                    runs.append(run)
                    print(f"run {r + 1} {mode:<8} ready {run['ready_s']:>5} s  flips "
                          f"{run['flips']} (missed {run['missed']})  p50 {run['p50_ms']} ms  "
                          f"p90 {run['p90_ms']} ms  CPU {run['cpu_per_s']} s/s "
                          f"{run['cpu_per_s_by_process']}", flush=True)
        finally:
            reals.terminate()
            reals.wait()
    print(f"\n{args.reals} reals ({args.pool} HTTP-checked every {args.interval} s, rise/fall 1; "
          f"the rest dummy), {args.flips} flips a run, --probe-workers {args.probe_workers}")
    print("\n".join(summary(runs, modes)))
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         "runs": runs}, indent=1))
    return 0 if runs and all(r["flips"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
