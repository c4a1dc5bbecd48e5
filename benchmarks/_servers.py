"""Starting and stopping the reals: nginx for the steady ones, ``_reals`` for the flipping ones.

The flip pool (the reals the harness takes down and brings back) is always
served by ``benchmarks._reals``, which can refuse connections or answer 503
per address on command. The other reals are served by nginx when it is
installed (Debian's nginx-light: one worker, C, so the reals cost little of the
2 shared CPUs), else by ``_reals`` too. Each is a separate process: the CPU
and memory the harness measures are the control plane's alone.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SERVER_CHOICES = ("auto", "nginx", "python")
_ROOT = Path(__file__).resolve().parent.parent  # so ``-m benchmarks._reals`` resolves anywhere


@dataclass(frozen=True, slots=True, kw_only=True)
class RealsInfo:
    """What is serving the reals, for the report."""

    control: str  # the flip pool's control socket
    description: str
    pids: tuple[int, ...]


def _nofile() -> int:
    """The hard open-files limit: all nginx may raise itself to."""
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return 1 << 20 if nofile == resource.RLIM_INFINITY else nofile


def nginx_config(addresses: list[str], *, port: int, workdir: Path) -> str:
    """An nginx.conf answering ``200 ok`` on every ``address:port``, with no logs."""
    nofile = _nofile()
    listens = "".join(f"    listen {a}:{port} backlog=1024;\n" for a in addresses)
    temp = "".join(
        f"  {kind}_temp_path {workdir}/{kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        "worker_processes 1;\n"
        f"worker_rlimit_nofile {nofile};\n"
        f"pid {workdir}/nginx.pid;\n"
        "error_log stderr crit;\n"
        "daemon off;\n"
        "master_process on;\n"
        "events { worker_connections 32768; multi_accept on; }\n"
        "http {\n"
        "  access_log off;\n"
        "  keepalive_timeout 0;\n"
        f"{temp}"
        "  server {\n"
        f"{listens}"
        '    location / { return 200 "ok\\n"; }\n'
        "  }\n"
        "}\n"
    )


def _wait_connectable(address: str, port: int, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"reals server exited with {proc.returncode} while starting")
        try:
            socket.create_connection((address, port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"reals server not answering on {address}:{port}") from None
            time.sleep(0.05)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


@contextlib.contextmanager
def run_reals(
    addresses: tuple[str, ...],
    flip_pool: tuple[str, ...],
    *,
    port: int,
    protocol: str,
    workdir: Path,
    server: str = "auto",
) -> Iterator[RealsInfo]:
    """Serve ``addresses`` on ``port`` until the block exits. ``flip_pool`` ⊆ ``addresses``.

    ``server``: ``nginx`` (fails if it is not installed), ``python``, or ``auto``
    (nginx when installed). Raises RuntimeError if a server does not come up.
    """
    if server not in SERVER_CHOICES:
        raise ValueError(f"server must be one of {SERVER_CHOICES}")
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if server == "nginx" and nginx is None:
        raise RuntimeError("nginx is not installed (apt-get install -y nginx-light)")
    use_nginx = nginx is not None and server != "python"
    pool = set(flip_pool)
    steady = [a for a in addresses if a not in pool]
    python_served = list(flip_pool) if use_nginx else list(addresses)
    workdir.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen] = []
    try:
        control = str(workdir / "control.sock")
        address_file = workdir / "python-addresses.txt"
        address_file.write_text("".join(a + "\n" for a in python_served))
        py = subprocess.Popen(
            [sys.executable, "-m", "benchmarks._reals", "--addresses", str(address_file),
             "--port", str(port), "--protocol", protocol, "--control", control],
            stdout=subprocess.PIPE, text=True, cwd=_ROOT,
        )
        procs.append(py)
        if py.stdout.readline().strip() != "ready":
            raise RuntimeError("benchmarks._reals did not start (see its error above)")
        description = f"python selectors server ({len(python_served)} addresses)"
        if use_nginx and steady:
            # One fd per listener and per connection: past half the open-files
            # limit (20,000 on a shared host, which root here may not raise),
            # the addresses are split over several nginx processes.
            chunk = max(1000, _nofile() // 2)
            parts = [steady[i:i + chunk] for i in range(0, len(steady), chunk)]
            for index, part in enumerate(parts):
                where = workdir if len(parts) == 1 else workdir / f"nginx-{index}"
                where.mkdir(parents=True, exist_ok=True)
                conf = where / "nginx.conf"
                conf.write_text(nginx_config(part, port=port, workdir=where))
                ng = subprocess.Popen([nginx, "-p", str(where), "-c", str(conf)])
                procs.append(ng)
                _wait_connectable(part[-1], port, ng, timeout=60)
            version = subprocess.run([nginx, "-v"], capture_output=True, text=True).stderr.strip()
            description = (f"{version.removeprefix('nginx version: ')} 1 worker ({len(steady)} "
                           f"addresses{f' over {len(parts)} processes' if len(parts) > 1 else ''})"
                           f" + {description}")
        yield RealsInfo(control=control, description=description, pids=tuple(p.pid for p in procs))
    finally:
        for proc in reversed(procs):
            _stop(proc)
