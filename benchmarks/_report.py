"""Reporting: the terminal table, the targets, the JSON file and the optional plot."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

KIB = 1024
TARGETS = {
    "control_latency_p99_ms": 50.0,  # check result -> data plane, at 10k reals
    "rss_per_real_bytes": 10 * KIB,
    "reload_seconds": 1.0,  # 10k-real config, with 0 health resets
}
TARGET_REALS = 10_000


def machine() -> dict:
    """What ran the benchmark: say it beside every figure."""
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_at_start": os.getloadavg(),
    }


def _get(d: dict | None, *path):
    for key in path:
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d


def targets(run: dict) -> dict:
    """Which targets this run's kglb phase meets (None: not measured at this N)."""
    kglb = run.get("kglb")
    if not kglb:
        return {}
    latency = _get(kglb, "control_latency_flips", "p99_ms")
    reload = kglb.get("reload") or {}
    resets = _resets(reload)
    at_scale = run["reals"] >= TARGET_REALS
    return {
        "control_latency_p99_le_50ms": (latency <= TARGETS["control_latency_p99_ms"])
        if latency is not None and at_scale else None,
        "rss_per_real_le_10KiB": kglb["rss_per_real_bytes"] <= TARGETS["rss_per_real_bytes"],
        "reload_lt_1s_no_resets": (reload.get("seconds", 99) < TARGETS["reload_seconds"] and resets == 0)
        if reload and at_scale else None,
    }


def _resets(reload: dict) -> int:
    """Health states a reload reset: seen in the statistics or in the data plane."""
    return max(reload.get("health_resets", 0),
               reload.get("reals_gone_down", 0) + reload.get("reals_deleted", 0))


def _fmt(value, spec: str = ".1f") -> str:
    if value is None:
        return "-"
    return format(value, spec) if isinstance(value, int | float) else str(value)


def _ratio(a, b) -> str:
    if not isinstance(a, int | float) or not isinstance(b, int | float) or b == 0:
        return "-"
    return f"{a / b:.2f}x"


def _gc(stalls: dict | None) -> str:
    """Full (gen 2) and young (gen 0+1) collections in the window: count (max ms)."""
    if not stalls:
        return "-"
    gc = stalls["gc"]
    young = [gc[g] for g in ("gen0", "gen1")]
    young_max = max((y["max_ms"] or 0 for y in young), default=0)
    full = gc["gen2"]
    return (f"{full['count']} ({full['max_ms'] or 0:.0f}) / "
            f"{sum(y['count'] for y in young)} ({young_max:.0f})")


def _step(stalls: dict | None) -> str:
    steps = (stalls or {}).get("longest_steps")
    return f"{steps[0]['ms']:.1f}" if steps else "-"


def _lat(d: dict | None) -> str:
    if not d or not d.get("n"):
        return "-"
    return f"{_fmt(d['p50_ms'])}/{_fmt(d['p99_ms'])}/{_fmt(d['max_ms'])}"


def table(run: dict) -> str:
    """The terminal table of one N: kglb-trio beside the baseline."""
    k, b = run.get("kglb") or {}, run.get("baseline") or {}
    rows = [
        ("checks/s (scheduled " + _fmt(run["scheduled_per_second"], ".0f") + ")",
         _fmt(k.get("checks_per_second"), ".0f"), _fmt(b.get("checks_per_second"), ".0f"),
         _ratio(k.get("checks_per_second"), b.get("checks_per_second"))),
        ("CPU µs per check", _fmt(k.get("cpu_us_per_check")), _fmt(b.get("cpu_us_per_check")),
         _ratio(k.get("cpu_us_per_check"), b.get("cpu_us_per_check"))),
        ("CPU, share of one core", _fmt(k.get("cpu_share"), ".2f"), _fmt(b.get("cpu_share"), ".2f"),
         _ratio(k.get("cpu_share"), b.get("cpu_share"))),
        ("RSS MiB", _fmt(_mib(k.get("rss_bytes"))), _fmt(_mib(b.get("rss_bytes"))),
         _ratio(k.get("rss_bytes"), b.get("rss_bytes"))),
        ("RSS per real, bytes", _fmt(k.get("rss_per_real_bytes"), ".0f"),
         _fmt(b.get("rss_per_real_bytes"), ".0f"),
         _ratio(k.get("rss_per_real_bytes"), b.get("rss_per_real_bytes"))),
        ("loop lag ms p50/p99/max", _lat(k.get("loop_lag")), _lat(b.get("loop_lag")),
         _ratio(_get(k, "loop_lag", "p99_ms"), _get(b, "loop_lag", "p99_ms"))),
        ("GC pauses: full / young, max ms", _gc(k.get("stalls")), _gc(b.get("stalls")), ""),
        ("longest task step ms", _step(k.get("stalls")), _step(b.get("stalls")), ""),
        ("flip -> data plane, down ms", _lat(k.get("flip_latency_down")),
         _lat(b.get("flip_latency_down")),
         _ratio(_get(k, "flip_latency_down", "p99_ms"), _get(b, "flip_latency_down", "p99_ms"))),
        ("flip -> data plane, up ms", _lat(k.get("flip_latency_up")), _lat(b.get("flip_latency_up")),
         _ratio(_get(k, "flip_latency_up", "p99_ms"), _get(b, "flip_latency_up", "p99_ms"))),
        ("check -> data plane (flips) ms", _lat(k.get("control_latency_flips")),
         _lat(b.get("control_latency_flips")),
         _ratio(_get(k, "control_latency_flips", "p99_ms"), _get(b, "control_latency_flips", "p99_ms"))),
        ("  of which check -> control plane ms", _lat(_get(k, "control_latency_flips_split", "probe")),
         "-", "-"),
        ("  of which control plane -> data plane", _lat(_get(k, "control_latency_flips_split", "control")),
         "-", "-"),
        ("check -> data plane (bring-up) ms", _lat(_get(k, "control_latency", "bringup")),
         _lat(_get(b, "control_latency", "bringup")),
         _ratio(_get(k, "control_latency", "bringup", "p99_ms"),
                _get(b, "control_latency", "bringup", "p99_ms"))),
        ("apply ms (steady) p50/p99/max", _lat(_get(k, "apply", "steady")),
         _lat(_get(b, "apply", "steady")), "-"),
        ("apply ms (bring-up) p50/p99/max", _lat(_get(k, "apply", "bringup")),
         _lat(_get(b, "apply", "bringup")), "-"),
        ("bring-up: all reals up, s", _fmt(k.get("bringup_seconds"), ".2f"),
         _fmt(b.get("bringup_seconds"), ".2f"),
         _ratio(k.get("bringup_seconds"), b.get("bringup_seconds"))),
        ("flips done/started (missed, unfinished)", _flips(k), _flips(b), "-"),
        ("load average (1 min) at window end", _fmt((k.get("loadavg") or [None])[0], ".2f"),
         _fmt((b.get("loadavg") or [None])[0], ".2f"), "-"),
        ("reals server CPU, share of one core", _fmt(_get(run, "server_cpu_share", "kglb"), ".2f"),
         _fmt(_get(run, "server_cpu_share", "baseline"), ".2f"), "-"),
    ]
    if "probe_workers" in k:
        rows.append(("probe worker processes", str(k["probe_workers"]), "-", "-"))
    reload = k.get("reload")
    if reload:
        rows.append(("reload equal config: s / reals reset",
                     f"{_fmt(reload['seconds'], '.3f')} / {_resets(reload)}", "-", "-"))
    if k:
        rows.append(("graceful shutdown", "FAILED (see JSON)" if k.get("shutdown_error") else "ok",
                     "-", "-"))
    width = max(len(r[0]) for r in rows)
    lines = [f"{'N=' + str(run['reals']):<{width}}  {'kglb-trio':>22}  {'baseline':>22}  {'ratio':>7}"]
    lines += [f"{r[0]:<{width}}  {r[1]:>22}  {r[2]:>22}  {r[3]:>7}" for r in rows]
    if k.get("shutdown_error"):
        lines.append(f"kglb-trio shutdown error: {k['shutdown_error'][:300]}")
    met = targets(run)
    if met:
        lines.append("targets: " + ", ".join(
            f"{name} {'MET' if ok else 'NOT MET'}" if ok is not None
            else f"{name} n/a ({'N<10k' if run['reals'] < TARGET_REALS else 'not measured'})"
            for name, ok in met.items()))
        samples = _get(k, "control_latency_flips", "n") or 0
        if met.get("control_latency_p99_le_50ms") is not None and samples < 100:
            lines.append(f"  (check -> data plane: {samples} samples, so p99 is the maximum; "
                         "a longer --duration gives a real p99)")
    return "\n".join(lines)


def _mib(value) -> float | None:
    return None if value is None else value / KIB / KIB


def _flips(phase: dict) -> str:
    f = phase.get("flips")
    return f"{f['completed']}/{f['started']} ({f['missed']}, {f.get('unfinished', 0)})" if f else "-"


def rss_slopes(runs: list[dict]) -> dict:
    """Marginal RSS per real between the smallest and the largest N (bytes), per system:
    fixed costs (interpreter, modules) cancel out, which a single N cannot do."""
    measured = sorted((r for r in runs if r.get("kglb") or r.get("baseline")), key=lambda r: r["reals"])
    if len(measured) < 2 or measured[0]["reals"] == measured[-1]["reals"]:
        return {}
    low, high = measured[0], measured[-1]
    out = {"from_reals": low["reals"], "to_reals": high["reals"]}
    for system in ("kglb", "baseline"):
        a, b = _get(low, system, "rss_bytes"), _get(high, system, "rss_bytes")
        if a is not None and b is not None:
            out[system] = round((b - a) / (high["reals"] - low["reals"]), 1)
    return out


def write_json(results: dict, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / (time.strftime("%Y%m%dT%H%M%S") + ".json")
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path


def plot(results: dict, path: Path) -> Path | None:
    """Latency p99 and CPU µs/check against N, kglb-trio and baseline, if matplotlib is here."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    runs = results["runs"]
    ns = [r["reals"] for r in runs]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for system in ("kglb", "baseline"):
        left.plot(ns, [_get(r, system, "control_latency_flips", "p99_ms") for r in runs], "o-", label=system)
        right.plot(ns, [_get(r, system, "cpu_us_per_check") for r in runs], "o-", label=system)
    left.axhline(TARGETS["control_latency_p99_ms"], linestyle="--", color="grey", label="target")
    left.set(xlabel="reals", ylabel="check -> data plane p99 (ms)", xscale="log")
    right.set(xlabel="reals", ylabel="CPU µs per check", xscale="log")
    left.legend()
    right.legend()
    fig.tight_layout()
    fig.savefig(path)
    return path
