"""Issue 13, problem 6: metrics that mean what they say."""

from __future__ import annotations

from dataclasses import replace

from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families

from _ops_fakes import NOW, WALL, snapshot
from actors.metrics import render_metrics
from kglb import CheckResult


def samples(text: str, parse=text_string_to_metric_families) -> dict:
    out = {}
    for family in parse(text):
        for s in family.samples:
            out[s.name, tuple(sorted(s.labels.items()))] = s.value
    return out


def series(s: dict, name: str) -> dict:
    return {labels: v for (n, labels), v in s.items() if n == name}


def scrape(stats, **kw) -> dict:
    return samples(render_metrics(stats, wall=WALL, **kw).decode())


def test_no_bgp_session_series_without_bgp_configured():
    stats = snapshot()
    without = replace(stats, balancers=tuple(replace(b, route=None) for b in stats.balancers))
    assert not series(scrape(without), "kglb:data_plane:bgp_session")
    assert series(scrape(stats), "kglb:data_plane:bgp_session")  # with BGP it is there


def test_duplicate_balancer_names_keep_a_series_each():
    stats = snapshot()
    web, dns = stats.balancers
    # The same name, another service (kglb accepts this).
    twin = replace(web, identity="web-10.0.0.3:80-tcp",
                   reals=(replace(web.reals[0], host="web3"),))
    s = scrape(replace(stats, balancers=(web, twin, dns)))
    ratio = series(s, "kglb:control_plane:alive_ratio")
    assert ratio == {
        (("service", "web-10.0.0.1:80-tcp"), ("setup", "prod")): 0.5,
        (("service", "web-10.0.0.3:80-tcp"), ("setup", "prod")): 0.5,
        # a name used once keeps its series unchanged
        (("service", "dns"), ("setup", "prod")): 0.0,
    }
    up = series(s, "kglb_trio_real_up")
    assert {dict(labels)["service"] for labels in up} == {
        "web-10.0.0.1:80-tcp", "web-10.0.0.3:80-tcp", "dns"}


def test_the_reason_is_a_bounded_metric_of_its_own_not_a_label_of_real_up():
    stats = snapshot()
    s = scrape(stats)
    assert all("reason" not in dict(labels) for labels in series(s, "kglb_trio_real_up"))
    by_reason = series(s, "kglb_trio_reals_by_reason")
    assert by_reason == {
        (("reason", "ok"), ("service", "web"), ("setup", "prod")): 1,
        (("reason", "status 503"), ("service", "web"), ("setup", "prod")): 1,
        (("reason", "none"), ("service", "dns"), ("setup", "prod")): 1,
    }
    # A change of reason changes a value, never the series of real_up.
    web = stats.balancers[0]
    failing = replace(web.reals[1], last=CheckResult(passed=False, reason="timeout"))
    changed = scrape(replace(stats, balancers=(replace(web, reals=(web.reals[0], failing)),
                                               stats.balancers[1])))
    assert series(changed, "kglb_trio_real_up").keys() == series(s, "kglb_trio_real_up").keys()
    # Bounded: 40 different reasons in one balancer are at most 16 series.
    many = tuple(replace(web.reals[0], host=f"h{i}",
                         last=CheckResult(passed=False, reason=f"status {500 + i}"))
                 for i in range(40))
    wide = scrape(replace(stats, balancers=(replace(web, reals=many),)))
    reasons = series(wide, "kglb_trio_reals_by_reason")
    assert len(reasons) == 16 and sum(reasons.values()) == 40
    assert (("reason", "other"), ("service", "web"), ("setup", "prod")) in reasons


def test_the_age_of_the_ipvs_counters_is_exported():
    stats = snapshot()
    stats = replace(stats, writer=replace(stats.writer, counters_at=NOW - 7.5))
    s = scrape(stats, now=NOW)
    assert s["kglb_trio_ipvs_counters_age_seconds", ()] == 7.5


def test_a_shared_page_says_when_it_was_rendered():
    assert scrape(snapshot())["kglb_trio_metrics_rendered_timestamp_seconds", ()] == WALL


def test_openmetrics_has_the_same_series_and_parses_strictly():
    stats = replace(snapshot(), writer=replace(snapshot().writer, counters_at=NOW - 1))
    text = render_metrics(stats, wall=WALL, now=NOW).decode()
    om = render_metrics(stats, wall=WALL, now=NOW, openmetrics=True).decode()
    assert om.endswith("# EOF\n")
    strict = samples(om, parse_om)  # the OpenMetrics parser refuses anything off-spec
    plain = samples(text)
    # prometheus_client's 0.0.4 parser appends _total to every counter sample
    # it reads (the text has kglb's exact names); the process collector reads
    # /proc on each render.
    def same(found: dict) -> dict:
        return {(name.removesuffix("_total"), labels): v for (name, labels), v in found.items()
                if not name.startswith("process_")}

    assert same(strict) == same(plain)
    assert "# TYPE kglb:control_plane:healthcheck unknown\n" in om
    assert "# TYPE kglb_trio_drift_repairs counter\n" in om
