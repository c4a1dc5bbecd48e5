"""The demo: its reals behave as described, and a short run shows health changing live."""

from __future__ import annotations

import io
import os
import signal

import pytest
import trio

from actors import demo
from actors._demo_reals import DemoReal
from actors.demo import Timing, demo_reals, run_demo

FAST = Timing(interval_ms=100, rise=1, fall=1, timeout_ms=200, flap_period=0.5,
              recover_after=0.6)


def test_behaviours_over_time():
    flapping = DemoReal(address="127.0.0.9", behaviour="flapping", period=2.0)
    assert [flapping.healthy_at(t) for t in (0, 1.9, 2.0, 3.9, 4.0)] == [
        True, True, False, False, True]
    recovering = DemoReal(address="127.0.0.9", behaviour="recovering", period=5.0)
    assert [recovering.healthy_at(t) for t in (0, 4.9, 5.0)] == [False, False, True]
    assert DemoReal(address="127.0.0.9", behaviour="slow").healthy_at(0)
    assert not DemoReal(address="127.0.0.9", behaviour="failing").healthy_at(0)
    with pytest.raises(ValueError):
        DemoReal(address="10.0.0.1", behaviour="healthy")  # loopback only
    with pytest.raises(ValueError):
        DemoReal(address="127.0.0.1", behaviour="sleepy")


def test_layout_is_a_few_dozen_distinct_loopback_reals():
    reals = [r for rs in demo_reals(Timing()).values() for r in rs]
    assert len(reals) == 30 and len({r.address for r in reals}) == 30
    assert {r.behaviour for r in reals} == {"healthy", "failing", "refused", "slow", "flapping",
                                            "recovering"}


async def test_a_short_run_shows_reals_changing_and_shuts_down_cleanly():
    out = io.StringIO()
    changes = await run_demo(duration=2.0, refresh=0.25, timing=FAST, out=out)
    text = out.getvalue()
    # the flapping reals went down and came back; the recovering ones came up
    assert {("web", "127.0.1.12", False), ("web", "127.0.1.12", True)} <= {
        (c.balancer, c.host, c.up) for c in changes}
    assert {c.host for c in changes if c.balancer == "batch" and c.up} == {
        f"127.0.3.{i}" for i in range(1, 7)}
    # frames show the table with health and reasons
    assert "TCP  192.0.2.1:80 wrr" in text
    assert "status 500" in text and "refused" in text and "timeout" in text
    # redrawn every 0.25 s of a 2 s run: 8 frames on an idle host; a loaded
    # one draws fewer in real time, but always several
    assert text.count("kglb-trio demo: 30 reals on loopback") >= 4
    assert text.rstrip().endswith("0 services and 0 VIPs left owned")


@pytest.mark.skipif(os.path.exists("/proc/net/ip_vs") and os.geteuid() == 0,
                    reason="this machine could run the kernel demo")
def test_kernel_mode_refuses_clearly_without_ip_vs_or_root(capsys):
    assert demo.main(["--kernel", "--duration", "1"]) == 2
    assert "demo: " in capsys.readouterr().err


async def test_ctrl_c_stops_the_demo_gracefully():
    out = io.StringIO()

    async def interrupt_soon() -> None:
        await trio.sleep(1.0)
        os.kill(os.getpid(), signal.SIGINT)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(interrupt_soon)
        with trio.fail_after(20):
            await run_demo(duration=60.0, refresh=0.25, timing=FAST, out=out)
    text = out.getvalue()
    assert "interrupted: stopping gracefully" in text
    assert text.rstrip().endswith("0 services and 0 VIPs left owned")
