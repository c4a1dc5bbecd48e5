"""``kglb-trio --config`` as a process: bad config, --dry-run, SIGHUP reload, SIGTERM."""

import json
import os
import queue
import threading
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def config(weight_up=0):
    balancer = {
        "name": "web", "setupName": "s",
        "lbService": {"ipvsService": {"tcpAttributes": {
            "address": {"ipv4": "10.0.0.1"}, "port": 80}}},
        "upstreamRouting": {"forwardMethod": "TUNNEL"},
        "upstreamDiscovery": {"port": 80, "staticAttributes": {"hosts": ["10.1.0.1"]}},
        "upstreamChecker": {"riseCount": 1, "fallCount": 1, "intervalMs": 1000,
                            "checker": {"dummy": {}}},
        "dynamicRouting": {},
    }
    if weight_up:
        balancer["weightUp"] = weight_up
    return json.dumps({"balancers": [balancer]})


def kglb_trio(*args, **kwargs):
    proc = subprocess.Popen([sys.executable, "-m", "actors.cli", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)
    # A reader thread, so a silent process fails the test at its deadline, not hangs it.
    proc.lines = queue.Queue()
    threading.Thread(target=lambda: [proc.lines.put(line) for line in proc.stdout]
                     + [proc.lines.put("")], daemon=True).start()
    return proc


def read_until(proc, text, timeout=20.0):
    lines, deadline = [], time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = proc.lines.get(timeout=left)
        except queue.Empty:
            break
        if not line:
            break
        lines.append(line)
        if text in line:
            return lines
    proc.kill()
    raise AssertionError(f"{text!r} not printed; got {lines}; stderr: {proc.stderr.read()}")


def test_bad_config_exits_3_with_every_problem(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"balancers": [{"name": ""}]}')
    proc = kglb_trio("--config", str(path), "--dry-run", "--state-file", str(tmp_path / "o.json"))
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 3  # ExitCode.CONFIG, as with --check and plan
    assert "invalid config" in err and "balancers[0]" in err
    assert not (tmp_path / "o.json").exists()


def test_dry_run_prints_changes_reloads_on_sighup_and_cleans_up_on_sigterm(tmp_path):
    path = tmp_path / "kglb.json"
    path.write_text(config())
    proc = kglb_trio("--config", str(path), "--dry-run", "--status-address", "127.0.0.1:0",
                     "--log-format", "json")
    try:
        # Added at weight 1000, or at 0 and then edited: the first apply may come
        # before the first check (a real starts down).
        read_until(proc, "-t 10.0.0.1:80 -r 10.1.0.1:80 -i -w 1000")
        path.write_text(config(weight_up=5))
        os.kill(proc.pid, signal.SIGHUP)
        read_until(proc, "-e -t 10.0.0.1:80 -r 10.1.0.1:80 -i -w 5")
        path.write_text("{broken")
        os.kill(proc.pid, signal.SIGHUP)  # refused: keeps running the old config
        time.sleep(0.5)
        os.kill(proc.pid, signal.SIGTERM)
        lines = read_until(proc, "-D -t 10.0.0.1:80")
        assert not any(line.startswith("-e ") for line in lines)
        assert proc.wait(timeout=20) == 0
        assert "config reload refused" in proc.stderr.read()
    finally:
        proc.kill()
