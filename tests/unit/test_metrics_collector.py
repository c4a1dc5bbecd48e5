"""The /stats text from a fake snapshot, metric by metric (kglb.md §4 table and ours)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from _ops_fakes import WALL, kglb_statistics, probe_result, snapshot
from actors.metrics import CheckTally, Histogram, LoopLagMonitor, render_metrics
from kglb import CheckResult, LinkAddress


def scrape(stats, lag=None) -> tuple[str, dict]:
    text = render_metrics(stats, wall=WALL, lag=lag).decode()
    samples: dict = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[s.name, tuple(sorted(s.labels.items()))] = s.value
    return text, samples


def value(samples, metric, /, **labels):
    return samples[metric, tuple(sorted(labels.items()))]


def series(samples, name):
    return {labels: v for (n, labels), v in samples.items() if n == name}


def test_kglb_counters_keep_their_exact_names_without_total():
    text, _ = scrape(snapshot())
    assert "# TYPE kglb:control_plane:healthcheck counter\n" in text
    assert ('kglb:control_plane:healthcheck{host="web1",result="pass",service="web",'
            'setup="prod"} 2.0\n') in text
    assert "# TYPE kglb:data_plane:service_bytes counter\n" in text
    assert "kglb:control_plane:healthcheck_total" not in text
    # ours follow the convention
    assert "# TYPE kglb_trio_drift_repairs_total counter\n" in text


def test_every_kglb_metric_is_visible():
    text, _ = scrape(snapshot())
    names = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    kglb = {
        "kglb:control_plane:balancer_state", "kglb:control_plane:route_announcement",
        "kglb:control_plane:upstreams_count", "kglb:control_plane:availability",
        "kglb:control_plane:state_hash", "kglb:control_plane:healthcheck",
        "kglb:control_plane:alive_ratio", "kglb:control_plane:discovery:static_upstream_count",
        "kglb:data_plane:manager_state", "kglb:data_plane:manager_state_age_sec",
        "kglb:data_plane:link_address", "kglb:data_plane:service_bytes",
        "kglb:data_plane:service_packets", "kglb:data_plane:upstream_bytes",
        "kglb:data_plane:upstream_packets", "kglb:data_plane:bgp_session",
        "kglb:data_plane:bgp_route",
    }
    assert kglb <= names
    assert "process_cpu_seconds_total" in names  # the process collector is there


def test_control_plane_metrics():
    _, s = scrape(snapshot())
    state = "kglb:control_plane:balancer_state"
    assert value(s, state, setup="prod", service="web", state="available") == 1
    assert value(s, state, setup="prod", service="web", state="initial") == 0
    assert value(s, state, setup="prod", service="web", state="failsafe") == 0
    assert value(s, state, setup="prod", service="dns", state="no_upstreams") == 1
    assert len(series(s, state)) == 2 * 5
    route = "kglb:control_plane:route_announcement"
    assert value(s, route, setup="prod", service="web", state="on") == 1
    assert value(s, route, setup="prod", service="web", state="off") == 0
    assert value(s, route, setup="prod", service="dns", state="off") == 1
    count = "kglb:control_plane:upstreams_count"
    assert value(s, count, setup="prod", service="web", alive="true") == 1
    assert value(s, count, setup="prod", service="web", alive="false") == 1
    assert value(s, "kglb:control_plane:alive_ratio", setup="prod", service="web") == 0.5
    static = "kglb:control_plane:discovery:static_upstream_count"
    assert value(s, static, setup="prod", service="web") == 2
    assert value(s, static, setup="prod", service="dns") == 1
    assert value(s, "kglb:control_plane:state_hash", entity="global",
                 setup="prod") == float(12345678901234567)
    hc = "kglb:control_plane:healthcheck_total"  # the parser appends _total when reading
    assert value(s, hc, setup="prod", service="web", host="web1", result="fail") == 1
    assert value(s, hc, setup="prod", service="web", host="web2", result="pass") == 0
    assert value(s, "kglb:control_plane:availability", initialized="true") == 1


def test_data_plane_metrics():
    _, s = scrape(snapshot())
    assert value(s, "kglb:data_plane:manager_state", state="available") == 1
    assert value(s, "kglb:data_plane:manager_state", state="set_state_failed") == 0
    assert value(s, "kglb:data_plane:manager_state_age_sec") == 4.0
    link = "kglb:data_plane:link_address"
    assert value(s, link, address="10.0.0.1", state="alive") == 1
    assert value(s, link, address="10.0.0.1", state="add_failed") == 0
    assert value(s, link, address="10.0.0.1", state="delete_failed") == 0
    sb = "kglb:data_plane:service_bytes_total"
    assert series(s, sb) == {(("direction", "in"), ("name", "web")): 1000,
                             (("direction", "out"), ("name", "web")): 5000}  # foreign left out
    assert value(s, "kglb:data_plane:service_packets_total", name="web", direction="out") == 20
    ub = "kglb:data_plane:upstream_bytes_total"
    assert value(s, ub, name="web1", direction="in") == 900
    assert value(s, ub, name="web2", direction="out") == 500
    assert value(s, "kglb:data_plane:upstream_packets_total", name="web2", direction="in") == 1
    assert value(s, "kglb:data_plane:bgp_session", state="established") == 1
    assert value(s, "kglb:data_plane:bgp_session", state="not_established") == 0
    assert series(s, "kglb:data_plane:bgp_route") == {(("route", "10.0.0.1/32"),): 1}


def test_our_metrics():
    _, s = scrape(snapshot())
    up = "kglb_trio_real_up"
    assert value(s, up, setup="prod", service="web", host="web1", address="10.1.0.1",
                 port="80") == 1
    assert value(s, up, setup="prod", service="web", host="web2", address="10.1.0.2",
                 port="80") == 0
    assert value(s, up, setup="prod", service="dns", host="ns.example.", address="",
                 port="53") == 0
    assert value(s, "kglb_trio_health_transitions_total", setup="prod", service="web",
                 host="web1") == 1
    lat = "kglb_trio_check_latency_seconds"
    assert value(s, lat + "_bucket", setup="prod", service="web", le="0.005") == 2
    assert value(s, lat + "_bucket", setup="prod", service="web", le="0.25") == 2
    assert value(s, lat + "_bucket", setup="prod", service="web", le="0.5") == 3
    assert value(s, lat + "_bucket", setup="prod", service="web", le="+Inf") == 3
    assert value(s, lat + "_count", setup="prod", service="web") == 3
    assert abs(value(s, lat + "_sum", setup="prod", service="web") - 0.308) < 1e-9
    assert value(s, "kglb_trio_apply_duration_seconds") == 0.012
    assert value(s, "kglb_trio_apply_operations_total") == 9
    assert value(s, "kglb_trio_netlink_errors_total", errno="17", name="EEXIST") == 2
    assert value(s, "kglb_trio_drift_repairs_total") == 1
    assert value(s, "kglb_trio_invalid_states_total") == 5
    assert value(s, "kglb_trio_config_reloads_total", result="ok") == 2
    assert value(s, "kglb_trio_config_reloads_total", result="failed") == 1
    assert value(s, "kglb_trio_actor_restarts_total", actor="balancer web") == 3
    assert value(s, "kglb_trio_checks_total", reason="timeout") == 2
    assert value(s, "kglb_trio_checks_in_flight") == 1
    assert value(s, "kglb_trio_check_missed_intervals_total") == 4
    assert value(s, "kglb_trio_objects", owner="ours", kind="service") == 2
    assert value(s, "kglb_trio_objects", owner="ours", kind="address") == 2
    assert value(s, "kglb_trio_objects", owner="foreign", kind="service") == 1
    assert value(s, "kglb_trio_objects", owner="foreign", kind="address") == 0


def test_link_address_failures_after_a_failed_apply():
    stats = snapshot()
    old = stats.writer.applied
    desired = replace(old, addresses=(LinkAddress(address="10.0.0.1"),
                                      LinkAddress(address="10.0.0.3")))
    stats = replace(stats, desired=desired,
                    writer=replace(stats.writer, manager_state="set_state_failed",
                                   failing=frozenset({"10.0.0.2", "10.0.0.3"})))
    _, s = scrape(stats)
    link = "kglb:data_plane:link_address"
    assert value(s, link, address="10.0.0.3", state="alive") == 0
    assert value(s, link, address="10.0.0.3", state="add_failed") == 1
    assert value(s, link, address="10.0.0.2", state="alive") == 1
    assert value(s, link, address="10.0.0.2", state="delete_failed") == 1
    assert value(s, link, address="10.0.0.1", state="add_failed") == 0
    assert value(s, "kglb:control_plane:availability", initialized="true") == 0


def test_an_added_address_of_a_failing_balancer_is_alive_not_add_failed():
    # issue 14, problem 2: the address was added, then the group's announce failed.
    stats = snapshot()
    added = LinkAddress(address="10.0.0.3")
    desired = replace(stats.writer.applied, addresses=(*stats.writer.applied.addresses, added))
    writer = replace(stats.writer, manager_state="set_state_failed",
                     addresses=stats.writer.addresses | {added},
                     owned=replace(stats.writer.owned,
                                   addresses=stats.writer.owned.addresses | {added}),
                     failing=frozenset({"10.0.0.3"}))
    _, s = scrape(replace(stats, desired=desired, writer=writer))
    link = "kglb:data_plane:link_address"
    assert value(s, link, address="10.0.0.3", state="alive") == 1
    assert value(s, link, address="10.0.0.3", state="add_failed") == 0
    assert value(s, link, address="10.0.0.1", state="add_failed") == 0


def test_empty_snapshot_before_anything_ran():
    _, s = scrape(kglb_statistics())
    assert value(s, "kglb:control_plane:availability", initialized="false") == 0
    assert value(s, "kglb:data_plane:manager_state_age_sec") == 60  # since the start
    assert value(s, "kglb:data_plane:manager_state", state="available") == 0
    assert not series(s, "kglb:control_plane:balancer_state")


def test_label_values_are_escaped():
    stats = snapshot()
    web = stats.balancers[0]
    odd = type(web.reals[0])(host='we"b\\1\n', address=None, port=80, health=web.reals[0].health,
                             weight=0)
    stats = replace(stats, balancers=(replace(web, reals=(odd,)),))
    _, s = scrape(stats)
    assert value(s, "kglb_trio_real_up", setup="prod", service="web", host='we"b\\1\n',
                 address="", port="80") == 1


def test_tally_counts_and_buckets():
    tally = CheckTally().record(probe_result(CheckResult(passed=False, reason="timeout",
                                                         latency=5.0)), transitioned=True)
    assert (tally.passed, tally.failed, tally.transitions) == (0, 1, 1)
    assert tally.latency.cumulative()[-2:] == [("10.0", 1), ("+Inf", 1)]
    assert tally.latency.cumulative()[0] == ("0.0001", 0)


def test_tally_counts_every_folded_check():
    folded = probe_result(CheckResult(passed=True, latency=0.0005), folded=(0.003, 20.0))
    tally = CheckTally().record(folded)
    assert (tally.passed, tally.failed, tally.transitions) == (3, 0, 0)
    assert tally.latency.counts[2] == 1 and tally.latency.counts[5] == 1  # 0.0005, 0.003
    assert tally.latency.counts[-1] == 1 and tally.latency.total == pytest.approx(20.0035)
    tally = tally.record(probe_result(CheckResult(passed=False, reason="timeout"),
                                      folded=(1.0,)))
    assert (tally.passed, tally.failed) == (3, 2)


async def test_loop_lag_monitor_sees_a_late_wake_up(mock_clock):
    async with trio.open_nursery() as nursery:
        monitor = await nursery.start(lambda task_status: LoopLagMonitor(interval=0.1).run(
            task_status=task_status))
        await trio.testing.wait_all_tasks_blocked()
        mock_clock.jump(0.6)  # the loop "was busy" for half a second
        await trio.testing.wait_all_tasks_blocked()
        lag = monitor.statistics()
        assert abs(lag.last - 0.5) < 1e-9
        assert lag.histogram.cumulative()[-1] == ("+Inf", 1)
        _, s = scrape(snapshot(), lag=lag)
        assert abs(value(s, "kglb_trio_event_loop_lag_last_seconds") - 0.5) < 1e-9
        assert value(s, "kglb_trio_event_loop_lag_seconds_bucket", le="0.25") == 0
        assert value(s, "kglb_trio_event_loop_lag_seconds_bucket", le="0.5") == 1
        nursery.cancel_scope.cancel()


def test_check_latency_has_sub_millisecond_buckets():
    # A loopback tcp check takes ~0.1 ms: it must not read as "under 1 ms" only.
    results = [probe_result(CheckResult(passed=True, latency=latency))
               for latency in (0.00008, 0.0002, 0.0004, 0.0009, 0.002)]
    tally = CheckTally()
    for result in results:
        tally = tally.record(result)
    assert tally.latency.cumulative()[:5] == [("0.0001", 1), ("0.00025", 2), ("0.0005", 3),
                                              ("0.001", 4), ("0.0025", 5)]


def test_histogram_keeps_counts_up_to_the_last_used_bucket():
    h = Histogram.empty((0.1, 1.0, 10.0))
    assert h.counts == () and h.cumulative()[-1] == ("+Inf", 0)
    h = h.observe(0.05, 0.07)
    assert h.counts == (2,)
    h = h.observe(0.5)
    assert h.counts == (2, 1)
    assert [c for _, c in h.cumulative()] == [2, 3, 3, 3]
    wide = Histogram.empty((0.1, 1.0, 10.0)).observe(50.0)
    assert wide.counts == (0, 0, 0, 1)
    merged = Histogram.merge([h, wide])
    assert merged.counts == (2, 1, 0, 1) and merged.total == pytest.approx(50.62)
