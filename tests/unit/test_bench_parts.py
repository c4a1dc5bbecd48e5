"""The benchmark harness's pieces at toy scale: config generation, measurement, menu."""

from __future__ import annotations

import os
import time

import pytest
import trio

from benchmarks.__main__ import main as menu_main
from benchmarks._config import build_config, config_json, real_address, real_addresses
from benchmarks._measure import Recorder, percentile, summary_ms
from benchmarks._phase import describe_error
from benchmarks._report import rss_slopes, table, targets
from actors.probes import suggested_workers
from benchmarks.e2e import _probe_workers, flip_pool
from kglb import (
    AddReal,
    CheckResult,
    DeleteReal,
    ProbeResult,
    ProbeTarget,
    Real,
    RealKey,
    ServiceKey,
    UpdateReal,
)
from kglb.config import HttpCheck, TcpCheck, load


def test_real_addresses_are_distinct_loopback_and_avoid_127_0():
    addresses = real_addresses(70_000)
    assert len(set(addresses)) == 70_000
    assert addresses[0] == "127.1.1.1" and addresses[249] == "127.1.1.250"
    assert addresses[250] == "127.1.2.1"
    assert real_address(62_500) == "127.2.1.1"
    assert all(a.startswith("127.") and not a.startswith("127.0.") for a in addresses)
    with pytest.raises(ValueError):
        real_address(-1)


@pytest.mark.parametrize("check", ["tcp", "http", "dummy"])
def test_config_splits_reals_over_vips_and_round_trips_through_kglb_json(check):
    config = build_config(real_addresses(25), check=check, interval_ms=1000, rise=3, fall=2,
                          reals_per_vip=10, concurrency=7, timeout_ms=900)
    assert [len(b.hosts) for b in config.balancers] == [10, 10, 5]
    assert len({b.key for b in config.balancers}) == 3
    assert load(config_json(config)) == config  # the reload feeds exactly this text


def test_config_check_kinds():
    tcp = build_config(("127.1.1.1",), check="tcp", interval_ms=500, rise=1, fall=1,
                       reals_per_vip=1, concurrency=1, timeout_ms=300)
    http = build_config(("127.1.1.1",), check="http", interval_ms=500, rise=1, fall=1,
                        reals_per_vip=1, concurrency=1, timeout_ms=300)
    assert tcp.balancers[0].checker.check == TcpCheck(timeout_ms=300)
    assert http.balancers[0].checker.check == HttpCheck(codes=(200,), timeout_ms=300)
    with pytest.raises(ValueError):
        build_config(("127.1.1.1",), check="icmp", interval_ms=500, rise=1, fall=1,
                     reals_per_vip=1, concurrency=1, timeout_ms=300)


def test_flip_pool_is_spread_and_bounded():
    reals = real_addresses(1000)
    pool = flip_pool(reals, flip_rate=1.0, interval=1.0, rise=3, fall=2)
    assert len(pool) == 18 and len(set(pool)) == 18 and set(pool) <= set(reals)
    assert pool[0] == reals[0] and pool[-1] > reals[900]
    assert len(flip_pool(reals[:20], flip_rate=5.0, interval=1.0, rise=3, fall=2)) == 2
    assert flip_pool(reals, flip_rate=0, interval=1.0, rise=3, fall=2) == ()


def test_percentiles_are_nearest_rank():
    values = [i / 1000 for i in range(1, 101)]  # 1..100 ms
    assert percentile(values, 50) == 0.05
    assert percentile(values, 99) == 0.099
    assert percentile([], 50) is None
    assert summary_ms(values) == {"n": 100, "p50_ms": 50.0, "p99_ms": 99.0, "max_ms": 100.0}


async def test_recorder_times_check_to_data_plane_and_flips():
    key = ServiceKey.tcp("10.255.0.1", 80)

    def real(address, weight):
        return Real(key=RealKey(address=address, port=18080), weight=weight)

    recorder = Recorder()
    recorder.result("127.1.1.1", True)
    recorder.result("127.1.1.2", True)
    now = time.monotonic()
    recorder.applied([AddReal(service=key, real=real("127.1.1.1", 0)),
                      AddReal(service=key, real=real("127.1.1.2", 0))], now, now, 0)
    assert recorder.up_count == 0
    recorder.applied([UpdateReal(service=key, real=real("127.1.1.1", 1000)),
                      UpdateReal(service=key, real=real("127.1.1.2", 1000))], now, now + 0.05, 0)
    assert recorder.up_count == 2
    [a, b] = recorder.control_latency["bringup"]
    assert 0.05 <= a < 0.5 and 0.05 <= b < 0.5

    recorder.period = "steady"
    recorder.expect("127.1.1.1", False, time.monotonic() - 1.0)  # the server flipped it 1 s ago
    recorder.result("127.1.1.1", False)
    recorder.applied([UpdateReal(service=key, real=real("127.1.1.1", 0))], now, time.monotonic(), 0)
    recorder.applied([DeleteReal(service=key, real=RealKey(address="127.1.1.2", port=18080))],
                     now, time.monotonic(), 0)
    assert recorder.up_count == 0 and recorder.went_down == ["127.1.1.1", "127.1.1.2"]
    assert recorder.deleted == ["127.1.1.2"]
    assert 1.0 <= recorder.flip_latency["down"][0] < 1.5
    assert recorder.flip_latency["up"] == [] and len(recorder.flip_control_latency) == 1
    assert recorder.apply_ops == {"bringup": 4, "steady": 2}


async def test_recorder_dates_a_delivered_result_when_it_was_checked():
    key = ServiceKey.tcp("10.255.0.1", 80)
    target = ProbeTarget(address="127.1.1.1", port=18080, check=TcpCheck())
    recorder = Recorder(flip_pool=("127.1.1.1",))
    recorder.expect("127.1.1.1", True, time.monotonic())
    # checked 0.2 s ago in a probe worker, delivered only now
    recorder.delivered(ProbeResult(target=target, result=CheckResult(passed=True),
                                   at=trio.current_time() - 0.2))
    now = time.monotonic()
    recorder.applied([AddReal(service=key, real=Real(key=RealKey(address="127.1.1.1",
                                                                 port=18080), weight=1))],
                     now, now + 0.05, 0)  # the data plane shows it 50 ms later
    [latency] = recorder.control_latency["bringup"]
    assert 0.25 <= latency < 0.35
    assert recorder.flip_control_latency == [latency]
    [probe], [control] = recorder.flip_control_split.values()
    assert 0.2 <= probe < 0.25 and 0.05 <= control < 0.1


def test_rss_slope_cancels_fixed_costs():
    runs = [{"reals": 1000, "kglb": {"rss_bytes": 50_000_000}, "baseline": {"rss_bytes": 30_000_000}},
            {"reals": 5000, "kglb": {"rss_bytes": 90_000_000}, "baseline": None}]
    assert rss_slopes(runs) == {"from_reals": 1000, "to_reals": 5000, "kglb": 10_000.0}
    assert rss_slopes(runs[:1]) == {}


def test_report_table_and_targets():
    phase = {"checks_per_second": 9900.0, "cpu_us_per_check": 80.0, "cpu_share": 0.8,
             "rss_bytes": 100 << 20, "rss_per_real_bytes": 8000.0,
             "loop_lag": {"n": 3, "p50_ms": 1.0, "p99_ms": 5.0, "max_ms": 9.0},
             "control_latency_flips": {"n": 10, "p50_ms": 10.0, "p99_ms": 40.0, "max_ms": 41.0},
             "flips": {"started": 10, "completed": 10, "missed": 0, "skipped": 0}}
    kglb = {**phase, "reload": {"seconds": 0.3, "health_resets": 0, "reals_gone_down": 0,
                                "reals_deleted": 0}}
    run = {"reals": 10_000, "scheduled_per_second": 10_000.0, "kglb": kglb,
           "baseline": {**phase, "cpu_us_per_check": 40.0}}
    assert targets(run) == {"control_latency_p99_le_50ms": True, "rss_per_real_le_10KiB": True,
                            "reload_lt_1s_no_resets": True}
    text = table(run)
    assert "2.00x" in text and "0.300 / 0" in text and "NOT MET" not in text
    assert "10 samples, so p99 is the maximum" in text
    longer = {**kglb, "control_latency_flips": {**phase["control_latency_flips"], "n": 240}}
    assert "p99 is the maximum" not in table({**run, "kglb": longer})
    assert targets({**run, "reals": 1000})["control_latency_p99_le_50ms"] is None


async def test_a_crash_is_described_by_its_distinct_innermost_errors():
    async def fail(n):
        raise ValueError(f"boom {n}")

    with pytest.raises(BaseExceptionGroup) as caught:
        async with trio.open_nursery() as nursery:
            for n in (1, 1, 2):
                nursery.start_soon(fail, n)
    text = describe_error(caught.value)
    assert text.startswith("ValueError: boom 1 at test_bench_parts.py:")
    assert "(x2)" in text and "boom 2" in text


def test_menu_lists_harnesses_and_refuses_unknown(capsys):
    assert menu_main([]) == 0
    out = capsys.readouterr().out
    assert "e2e" in out and "probes" in out and "ipvs" in out and "scrape" in out
    assert menu_main(["nope"]) == 2


def test_probe_workers_flag_is_a_number_or_what_kglb_trio_would_pick():
    cpus = os.cpu_count() or 1
    assert _probe_workers("auto", 10000.0) == suggested_workers(10000.0, cpus)
    assert _probe_workers("auto", 100.0) == 0
    assert _probe_workers("3", 10000.0) == 3
    for bad in ("x", "-1"):
        with pytest.raises(SystemExit):
            _probe_workers(bad, 1.0)
