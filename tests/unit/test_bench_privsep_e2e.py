"""``python -m benchmarks privsep-e2e`` (issue 18, "the cost"): its pieces, then a toy run."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time

from benchmarks._config import config_json, real_addresses
from benchmarks.privsep_e2e import Control, OpsReader, build, summary, tree_cpu
from kglb import AddReal, Real, RealKey, ServiceKey, UpdateReal
from kglb.config import DummyCheck, HttpCheck, load
from kglb.pretty import render_operation


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_config_checks_the_pool_over_http_and_the_rest_with_dummy_checks():
    config = build(25, 12, interval_ms=200, port=18999, per_vip=5)
    assert [len(b.hosts) for b in config.balancers] == [5, 5, 2, 5, 5, 3]
    assert [type(b.checker.check) for b in config.balancers] == [HttpCheck] * 3 + [DummyCheck] * 3
    assert [h for b in config.balancers[:3] for h in b.hosts] == list(real_addresses(12))
    assert len({b.key for b in config.balancers}) == 6 and len({b.name for b in config.balancers}) == 6
    assert all((b.checker.rise, b.checker.fall, b.port) == (1, 1, 18999) for b in config.balancers)
    assert load(config_json(config)) == config  # what kglb-trio reads from the file


def test_ops_reader_follows_weights_across_zero_from_dry_run_lines():
    key = ServiceKey.tcp("10.255.0.1", 80)

    def line(op) -> str:
        return render_operation(op) + "\n"

    def real(address: str, weight: int) -> Real:
        return Real(key=RealKey(address=address, port=18080), weight=weight, hostname=address)

    text = "".join([
        line(AddReal(service=key, real=real("127.1.1.1", 0))),
        line(AddReal(service=key, real=real("127.1.1.2", 1000))),
        "-A -t 10.255.0.1:80 -s wrr\n",  # not a real: ignored
        line(UpdateReal(service=key, real=real("127.1.1.1", 1000))),
        line(UpdateReal(service=key, real=real("127.1.1.2", 0))),
        line(UpdateReal(service=key, real=real("127.1.1.2", 0))),  # no crossing
    ])
    before = time.monotonic()
    ops = OpsReader(io.StringIO(text))
    ops.thread.join(5)
    assert ops.lines == 6
    assert ops.weights == {"127.1.1.1": 1000, "127.1.1.2": 0}
    assert ops.up == 1
    assert set(ops.changed) == {("127.1.1.1", True), ("127.1.1.2", True), ("127.1.1.2", False)}
    assert all(at >= before for at in ops.changed.values())
    assert ops.changed[("127.1.1.2", False)] >= ops.changed[("127.1.1.2", True)]
    assert not ops.wait(lambda o: o.up == 2, timeout=1)  # the stream ended first


def _get(address: str, port: int) -> bytes:
    with socket.create_connection((address, port), timeout=2) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        return s.recv(1024).split(b" ")[1]


def test_reals_server_says_when_a_real_first_answered_after_its_flip(tmp_path):
    reals, port = real_addresses(3), _free_port()
    (tmp_path / "a.txt").write_text("\n".join(reals))
    control_path = str(tmp_path / "control.sock")
    server = subprocess.Popen([sys.executable, "-m", "benchmarks.privsep_reals", "--addresses",
                               str(tmp_path / "a.txt"), "--port", str(port), "--control",
                               control_path], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "ready"
        control = Control(control_path)
        flipped = control.command(f"down {reals[1]}")
        assert control.command(f"answered {reals[1]}") is None  # no answer since the flip
        time.sleep(0.01)
        sent = time.monotonic()
        assert [_get(a, port) for a in reals] == [b"200", b"503", b"200"]
        first = control.command(f"answered {reals[1]}")
        assert flipped < sent <= first <= time.monotonic()
        _get(reals[1], port)
        assert control.command(f"answered {reals[1]}") == first  # the first answer, not the newest
        control.command(f"up {reals[1]}")
        assert control.command(f"answered {reals[1]}") is None
        assert _get(reals[1], port) == b"200" and control.command(f"answered {reals[1]}") > first
        assert control.command("answered 127.9.9.9") is None
        control.close()
    finally:
        server.kill()
        server.wait()


def test_tree_cpu_covers_grandchildren():
    busy = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\n" \
           "time.sleep(30)\n"
    child = subprocess.Popen([sys.executable, "-c",
                              f"import subprocess, sys; subprocess.run([sys.executable, '-c', {busy!r}])"])
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            tree = tree_cpu(child.pid)
            if len(tree) == 2 and sum(s for _, s in tree.values()) >= 0.3:
                break
            time.sleep(0.1)
        assert set(tree) >= {child.pid} and len(tree) == 2
        assert sum(s for _, s in tree.values()) >= 0.3
    finally:
        for pid in tree_cpu(child.pid):
            os.kill(pid, 9)
        child.wait()


def test_summary_gives_medians_ranges_ratios_and_pooled_latencies():
    def run(mode, p50, p90, cpu, latencies):
        return {"mode": mode, "p50_ms": p50, "p90_ms": p90, "cpu_per_s": cpu,
                "idle_cpu_per_s": cpu / 2, "control_cpu_ms_per_flip": cpu * 10,
                "latencies_ms": [["down", x] for x in latencies]}

    runs = [run("single", 8.0, 10.0, 0.2, [8.0, 10.0]), run("single", 10.0, 14.0, 0.4, [12.0]),
            run("privsep", 13.5, 18.0, 0.33, [13.5])]
    header, single, privsep, ratio, pooled_single, pooled_privsep = summary(runs, ["single", "privsep"])
    assert "p50 ms" in header and "CPU ms/flip" in header
    assert single.split()[:3] == ["single", "2", "9"] and "(8 to 10)" in single
    assert privsep.split()[:3] == ["privsep", "1", "13.5"]
    assert ratio.split()[1:6] == ["1.50", "1.50", "1.10", "1.10", "1.10"]
    assert pooled_single == "single flips pooled: n 3, p50 10.0 ms, p90 12.0 ms, max 12.0 ms"
    assert pooled_privsep.startswith("privsep flips pooled: n 1, p50 13.5 ms")


def test_a_toy_run_measures_both_modes(tmp_path):
    out = tmp_path / "runs.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "privsep-e2e", "--reals", "20", "--pool", "10",
         "--per-vip", "10", "--flips", "4", "--repeat", "1", "--interval", "0.2", "--settle", "0.5", "--idle", "0.5",
         "--port", str(_free_port()), "--json", str(out)],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    runs = json.loads(out.read_text())["runs"]
    assert [r["mode"] for r in runs] == ["single", "privsep"]
    for run in runs:
        assert run["flips"] == 4 and run["missed"] == 0
        assert 0 < run["p50_ms"] <= run["p90_ms"] <= run["max_ms"] < 1000
        assert run["cpu_per_s"] > 0
        assert [way for way, _ in run["latencies_ms"]] == ["down", "up"] * 2
        assert run["p50_down_ms"] > 0 and run["p50_up_ms"] > 0
        assert run["idle_cpu_per_s"] > 0 and run["control_cpu_ms_per_flip"] is not None
    assert set(runs[0]["cpu_per_s_by_process"]) <= {"kglb-trio", "probe worker"}
    assert {"writer process", "unprivileged side"} <= set(runs[1]["cpu_per_s_by_process"])
    assert "ratio" in done.stdout
