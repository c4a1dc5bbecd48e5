"""The benchmark harness end to end at toy scale: the reals server, then a whole run."""

from __future__ import annotations

import json
import selectors
import shutil
import socket
import subprocess
import sys

import pytest
import trio

from benchmarks._config import real_addresses
from benchmarks._reals import ControlClient
from benchmarks import probe_memory
from benchmarks._servers import nginx_config, run_reals


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tcp_ok(address: str, port: int) -> bool:
    try:
        socket.create_connection((address, port), timeout=2).close()
        return True
    except ConnectionRefusedError:
        return False


def _http_status(address: str, port: int) -> bytes:
    with socket.create_connection((address, port), timeout=2) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        return s.recv(1024).split(b" ")[1]


async def test_reals_server_refuses_a_flipped_tcp_real_until_it_is_up_again(tmp_path):
    reals, port = real_addresses(20), _free_port()
    with run_reals(reals, reals[:2], port=port, protocol="tcp", workdir=tmp_path,
                   server="python") as info:
        assert all(_tcp_ok(a, port) for a in reals)
        control = await ControlClient.connect(info.control)
        before = trio.current_time()
        at = await control.set_health(reals[0], False)
        assert at > 0 and trio.current_time() - before < 1
        assert not _tcp_ok(reals[0], port) and _tcp_ok(reals[1], port)
        await control.set_health(reals[0], True)
        assert _tcp_ok(reals[0], port)
        with pytest.raises(RuntimeError):
            await control.set_health("127.9.9.9", False)  # not one of its reals
        await control.aclose()


async def test_reals_server_answers_503_for_a_flipped_http_real(tmp_path):
    reals, port = real_addresses(5), _free_port()
    with run_reals(reals, reals, port=port, protocol="http", workdir=tmp_path,
                   server="python") as info:
        control = await ControlClient.connect(info.control)
        await control.set_health(reals[3], False)
        assert [_http_status(a, port) for a in reals] == [b"200"] * 3 + [b"503", b"200"]
        await control.set_health(reals[3], True)
        assert _http_status(reals[3], port) == b"200"
        await control.aclose()


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed (nginx-light)")
async def test_nginx_serves_the_steady_reals_and_python_the_flip_pool(tmp_path):
    reals, port = real_addresses(20), _free_port()
    with run_reals(reals, reals[:2], port=port, protocol="http", workdir=tmp_path,
                   server="nginx") as info:
        assert info.description.startswith("nginx/") and len(info.pids) == 2
        assert {_http_status(a, port) for a in reals} == {b"200"}
        control = await ControlClient.connect(info.control)
        await control.set_health(reals[1], False)
        assert _http_status(reals[1], port) == b"503"
        await control.aclose()
    assert not _tcp_ok(reals[5], port)  # nginx stopped with the block


def test_nginx_config_listens_on_every_address(tmp_path):
    text = nginx_config(["127.1.1.1", "127.1.1.2"], port=18080, workdir=tmp_path)
    assert "listen 127.1.1.1:18080" in text and "listen 127.1.1.2:18080" in text
    assert "access_log off" in text and "worker_processes 1" in text


def test_e2e_run_at_20_reals_reports_both_phases(tmp_path):
    args = ["--reals", "20", "--duration", "1.5", "--interval", "0.2", "--rise", "1",
            "--fall", "1", "--flip-rate", "2", "--reals-per-vip", "10", "--timeout-ms", "200",
            "--server", "python", "--port", str(_free_port()), "--results", str(tmp_path),
            "--no-plot", "--quiet"]
    done = subprocess.run([sys.executable, "-m", "benchmarks", "e2e", *args],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    [path] = tmp_path.glob("*.json")
    [run] = json.loads(path.read_text())["runs"]
    for system in ("baseline", "kglb"):
        phase = run[system]
        assert phase["bringup_up"] == 20
        assert phase["checks_per_second"] > 0 and phase["cpu_us_per_check"] > 0
        assert phase["flips"]["completed"] >= 1 and phase["flips"]["missed"] == 0
        assert phase["flip_latency_down"]["n"] >= 1 and phase["control_latency_flips"]["n"] >= 2
    assert run["kglb"]["reload"]["problems"] == []
    assert run["kglb"]["reload"]["health_resets"] == 0
    assert "kglb-trio" in done.stdout and "baseline" in done.stdout


def test_reals_server_survives_a_down_and_a_connect_to_that_real_in_one_batch():
    """A "down" closes a listener that has a connection waiting in the same batch of
    events: the server skips it (accept() on the closed socket used to end the server)."""
    from benchmarks._reals import _CONTROL_CONN, _Server

    address, port = "127.1.0.9", _free_port()
    server = _Server(port=port, protocol="tcp")
    server.known = frozenset([address])
    server.listen(address)
    listener_key = server.selector.get_key(server.listeners[address])
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.setblocking(False)
        server.selector.register(theirs, selectors.EVENT_READ, (_CONTROL_CONN, ""))
        server.buffers[theirs] = b""
        ours.sendall(b"down 127.1.0.9\n")
        waiting = socket.socket()
        waiting.setblocking(False)
        waiting.connect_ex((address, port))  # queued on the listener
        control_key = server.selector.get_key(theirs)
        server.handle([(control_key, selectors.EVENT_READ), (listener_key, selectors.EVENT_READ)])
        waiting.close()
        assert ours.recv(100).startswith(b"ok ") and address not in server.listeners


def test_probe_memory_names_the_lines_that_hold_memory(capsys):
    """`python -m benchmarks probe-memory` at toy scale: bytes per target and their sites."""
    assert probe_memory.main(["--reals", "20", "--seconds", "0.5", "--server", "python",
                              "--port", str(_free_port()), "--top", "50"]) == 0
    out = capsys.readouterr().out
    assert "bytes per target" in out and "RSS after imports" in out
    assert "actors/probes.py" in out  # the Prober's probes are traced, by their line
