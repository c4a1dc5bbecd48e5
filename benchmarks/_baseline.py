"""The baseline: the least a health checker on trio can do for the same config.

One task per real, a raw ``trio.socket`` check (connect and close; for http a
hand-written GET and the status line), rise/fall through ``kglb.health.observe``,
and on a change one ``UpdateReal`` applied straight to the data plane. No
probe scheduler, no balancer or generator actors, no planner, no statistics:
what kglb-trio costs beyond this is the price of its structure.
"""

from __future__ import annotations

import random

import trio

from kglb import (
    AddReal,
    AddService,
    Health,
    Real,
    RealKey,
    UpdateReal,
    observe,
)
from kglb.config import Config, DummyCheck, HttpCheck

from ._measure import Recorder


async def bare_tcp(address: str, port: int) -> bool:
    """The least a tcp check can do on trio: connect, close."""
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
    try:
        await sock.connect((address, port))
        return True
    except OSError:
        return False
    finally:
        sock.close()


async def bare_http(address: str, port: int) -> bool:
    """The least an http check can do on trio: one GET, the status line only."""
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
    try:
        await sock.connect((address, port))
        await sock.send(f"GET / HTTP/1.1\r\nHost: {address}:{port}\r\n"
                        "Connection: close\r\n\r\n".encode())
        head = b""
        while b"\r\n" not in head:
            data = await sock.recv(4096)
            if not data:
                return False
            head += data
        return head.split(b" ", 2)[1] == b"200"
    except (OSError, IndexError):
        return False
    finally:
        sock.close()


async def _dummy(address: str, port: int) -> bool:
    return True


async def run_bare_checker(
    config: Config, dataplane, recorder: Recorder, *, task_status=trio.TASK_STATUS_IGNORED
) -> None:
    """Check every real of ``config`` forever; ``task_status.started()`` once the
    services and (weight 0) reals are in ``dataplane``."""
    setup = []
    for balancer in config.balancers:
        setup.append(AddService(service=balancer.service))
        setup.extend(
            AddReal(service=balancer.key, real=Real(key=RealKey(address=h, port=balancer.port),
                                                     weight=0, forward=balancer.forward))
            for h in balancer.hosts
        )
    await dataplane.apply(setup)
    async with trio.open_nursery() as nursery:
        for balancer in config.balancers:
            for host in balancer.hosts:
                nursery.start_soon(_watch, balancer, host, dataplane, recorder)
        task_status.started()


async def _watch(balancer, host: str, dataplane, recorder: Recorder) -> None:
    checker = balancer.checker
    check = _dummy if isinstance(checker.check, DummyCheck) else (
        bare_http if isinstance(checker.check, HttpCheck) else bare_tcp)
    timeout = getattr(checker.check, "timeout_ms", 1000) / 1000
    interval = checker.interval_ms / 1000
    key = RealKey(address=host, port=balancer.port)
    health = Health()
    next_check = trio.current_time() + random.uniform(0, interval)  # spread the checks
    while True:
        await trio.sleep_until(next_check)
        next_check += interval
        passed = False
        with trio.move_on_after(timeout):
            passed = await check(host, balancer.port)
        recorder.result(host, passed)
        new = observe(health, passed, rise=checker.rise, fall=checker.fall)
        if new.up != health.up:
            weight = balancer.weight_up if new.up else 0
            await dataplane.apply([UpdateReal(service=balancer.key, real=Real(
                key=key, weight=weight, forward=balancer.forward))])
        health = new
