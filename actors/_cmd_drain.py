"""``kglb-trio drain``: take this host out of the ECMP group, then stop kglb-trio.

It reads the running instance's pid from ``/status`` (the status port is
read-only, so the request itself is a signal: SIGUSR2, the same as
``systemctl kill -s SIGUSR2 kglb-trio``), then follows ``/status`` and prints
each step of the drain (actors/host_drain.py) until the process has exited.
Exit status (``exit_codes``): OK once the instance stopped (or, with
``--no-wait``, once the drain began), FAILED if it cannot be reached or
signalled, USAGE for a bad address.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import httpx

from ._cmd_status import TIMEOUT, _url
from .exit_codes import ExitCode

__all__ = ["main"]

POLL = 0.5


def _status(url: str) -> dict | None:
    try:
        response = httpx.get(url, timeout=TIMEOUT)
        response.raise_for_status()
        return response.json()
    except (httpx.HTTPError, ValueError):
        return None


def _running(pid: int) -> bool:
    """Whether ``pid`` still runs; an exited process its parent has not reaped yet
    (a zombie) does not."""
    try:
        stat = open(f"/proc/{pid}/stat", "rb").read()  # noqa: SIM115 (closed by refcount)
    except FileNotFoundError:
        return False
    except OSError:
        return True
    return stat.rsplit(b")", 1)[-1].split()[0] != b"Z"  # the name may hold spaces and ")"


def main(args) -> int:
    try:
        url = _url(args.status_address)
    except ValueError as exc:
        print(f"kglb-trio drain: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    doc = _status(url)
    if doc is None or not doc.get("pid"):
        print(f"kglb-trio drain: cannot read the instance's pid from {url}", file=sys.stderr)
        return ExitCode.FAILED
    pid = doc["pid"]
    try:
        os.kill(pid, signal.SIGUSR2)
    except OSError as exc:
        print(f"kglb-trio drain: cannot signal pid {pid}: {exc}", file=sys.stderr)
        return ExitCode.FAILED
    print(f"kglb-trio drain: draining pid {pid}", flush=True)
    if args.no_wait:
        return ExitCode.OK
    step = None
    while _running(pid):
        doc = _status(url)
        now = doc.get("host_drain") if doc else "stopping"
        if now != step and now is not None:
            print(f"kglb-trio drain: {now}", flush=True)
            step = now
        time.sleep(POLL)
    print("kglb-trio drain: stopped", flush=True)
    return ExitCode.OK
