"""Issue 14, problem 4: ``--dry-run`` beside a live instance touches nothing of it.

The live instance is represented by everything it owns: its BIRD control
socket and include file, its ownership record, its status port and its
systemd notify socket. The dry run gets the very same flags plus --dry-run.
"""

import errno
import os
import signal
import socket

from test_app_cmd_run import config, kglb_trio, read_until

from actors.cli import DEFAULT_STATUS_ADDRESS


def occupy_status_port():
    """Listen on the default status address as a live instance would (None: it already is)."""
    host, port = DEFAULT_STATUS_ADDRESS.rsplit(":", 1)
    sock = socket.socket()
    try:
        sock.bind((host, int(port)))
    except OSError as e:
        assert e.errno == errno.EADDRINUSE
        sock.close()
        return None
    sock.listen()
    return sock


def test_a_dry_run_beside_a_live_instance_touches_nothing_of_it(tmp_path):
    path = tmp_path / "kglb.json"
    path.write_text(config())
    include = tmp_path / "kglb-trio.conf"
    include.write_text("# the live instance's routes\nprotocol static kglb_trio { }\n")
    record = tmp_path / "owned.json"
    record.write_text('{"version": 1, "services": [], "addresses": []}')
    bird = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    bird.bind(str(tmp_path / "bird.ctl"))
    bird.listen()
    bird.setblocking(False)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.setblocking(False)
    status = occupy_status_port()
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (include, record)}
    env = dict(os.environ, NOTIFY_SOCKET=str(tmp_path / "notify"))
    proc = kglb_trio("--config", str(path), "--dry-run", "--state-file", str(record),
                     "--bgp-neighbor", "192.0.2.254:65001", "--bird-socket",
                     str(tmp_path / "bird.ctl"), "--bird-include", str(include),
                     "--log-format", "json", env=env)
    try:
        # "-a" with the weight, or "-a" at 0 then "-e": whether the dummy check
        # answered before the first state was printed is a race.
        read_until(proc, "-t 10.0.0.1:80 -r 10.1.0.1:80 -i -w 1000")
        os.kill(proc.pid, signal.SIGTERM)
        read_until(proc, "-D -t 10.0.0.1:80")
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()
        if status is not None:
            status.close()
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (include, record)} == before
    assert sorted(x.name for x in tmp_path.iterdir()) == [
        "bird.ctl", "kglb-trio.conf", "kglb.json", "notify", "owned.json"]
    try:
        bird.accept()
        raise AssertionError("the dry run connected to BIRD's socket")
    except BlockingIOError:
        pass
    try:
        message = notify.recv(4096)
        raise AssertionError(f"the dry run notified systemd: {message!r}")
    except BlockingIOError:
        pass
