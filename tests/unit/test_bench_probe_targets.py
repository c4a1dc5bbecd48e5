"""benchmarks/probes.py judges issue 15's targets from the rows of one run."""

from benchmarks.probes import GO_US, cpu_target, targets


def test_cpu_ceilings_are_gos_cost_as_a_share_of_a_bare_check():
    assert set(GO_US) == {(c, n) for c in ("tcp", "http") for n in (1000, 5000, 10000)}
    assert all(0 < cpu_target(c, n) < 1 for c, n in GO_US)
    assert cpu_target("tcp", 2000) is None


def test_every_target_a_row_can_judge_is_judged():
    rows = [
        {"phase": "bare", "workers": None, "check": "http", "reals": 10000},
        {"phase": "lean", "workers": 0, "check": "http", "reals": 10000, "ratio": 0.1,
         "missed": 3, "rss_mb": 40.0},
        {"phase": "prober", "workers": 1, "check": "tcp", "reals": 10000, "ratio": 9.0,
         "missed": 0, "rss_mb": 81.0, "footprint_mb": 70.0},
    ]
    assert targets(rows) == [
        "http 10000 lean w=0: cpu ratio 0.1 <= 0.54 (Go 109–114 µs/check): met",
        "http 10000 lean w=0: missed intervals 3 == 0: NOT met",
        "http 10000 lean w=0: rss 40.0 MB <= 47 MB: met",
        "tcp 10000 prober w=1: cpu ratio 9.0 <= 0.38 (Go 44–46 µs/check): NOT met",
        "tcp 10000 prober w=1: rss 81.0 MB <= 80 MB: NOT met (shared pages once: 70.0 MB)",
    ]
