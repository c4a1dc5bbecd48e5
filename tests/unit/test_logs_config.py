"""Log configuration: JSON lines with context, console on a TTY, rate limiting of floods."""

from __future__ import annotations

import io
import json

import pytest
import structlog
import trio

from actors.logs import RateLimiter, configure


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class Tty(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture(autouse=True)
def _reset_structlog():
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def lines(stream) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_balancer_and_real_from_contextvars():
    out = io.StringIO()
    configure("auto", "info", stream=out)  # not a TTY: JSON
    log = structlog.get_logger()
    with structlog.contextvars.bound_contextvars(balancer="web-10.0.0.1:80-tcp"):
        with structlog.contextvars.bound_contextvars(real="10.1.0.1:80"):
            log.info("real went down", reason="status 503")
        log.debug("not shown at info")
    (event,) = lines(out)
    assert event["event"] == "real went down"
    assert (event["balancer"], event["real"], event["reason"]) == (
        "web-10.0.0.1:80-tcp", "10.1.0.1:80", "status 503")
    assert event["level"] == "info" and event["timestamp"].endswith("Z")


async def test_trio_children_inherit_the_bound_context():
    out = io.StringIO()
    configure("json", "info", stream=out)

    async def probe(real):
        with structlog.contextvars.bound_contextvars(real=real):
            structlog.get_logger().info("check failed")

    with structlog.contextvars.bound_contextvars(balancer="web"):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(probe, "a:80")
            nursery.start_soon(probe, "b:80")
    assert sorted((e["balancer"], e["real"]) for e in lines(out)) == [("web", "a:80"),
                                                                    ("web", "b:80")]


def test_console_on_a_tty_and_unknown_format_rejected():
    out = Tty()
    configure("auto", "info", stream=out)
    structlog.get_logger().info("hello", balancer="web")
    text = out.getvalue()
    assert "hello" in text and "balancer" in text and not text.startswith("{")
    with pytest.raises(ValueError):
        configure("xml")


def test_a_flapping_real_cannot_flood_and_the_summary_says_how_many_were_dropped():
    clock = Clock()
    out = io.StringIO()
    configure("json", "info", stream=out, limiter=RateLimiter(burst=3, rate=0.5, clock=clock))
    log = structlog.get_logger()
    for _ in range(100):  # a real flapping 100 times within one instant
        log.info("health changed", balancer="web", real="10.1.0.1:80")
    log.info("health changed", balancer="web", real="10.1.0.2:80")  # another real: not muted
    events = lines(out)
    assert [e["real"] for e in events] == ["10.1.0.1:80"] * 3 + ["10.1.0.2:80"]
    clock.now = 2.0  # one token back (0.5/s)
    log.info("health changed", balancer="web", real="10.1.0.1:80")
    log.info("health changed", balancer="web", real="10.1.0.1:80")
    events = lines(out)[4:]
    assert len(events) == 1 and events[0]["suppressed"] == 97


def test_errors_are_never_rate_limited():
    out = io.StringIO()
    configure("json", "info", stream=out, limiter=RateLimiter(burst=1, rate=0.0, clock=Clock()))
    log = structlog.get_logger()
    for _ in range(5):
        log.error("apply failed", balancer="web")
    assert len(lines(out)) == 5


def test_limiter_memory_is_bounded():
    limiter = RateLimiter(burst=1, rate=0.0, clock=Clock(), max_keys=10)
    for i in range(25):
        limiter(None, "info", {"event": "x", "real": str(i)})
    assert len(limiter._buckets) <= 10
