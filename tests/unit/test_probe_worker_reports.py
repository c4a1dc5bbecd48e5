"""The probe worker's report writer, in virtual time: when results cross the pipe."""

from __future__ import annotations

import pickle

import pytest
import trio

from actors import probe_worker
from actors._probe_pipe import WatchCommand, WorkerResult, encode
from actors.probe_worker import _Outbox, _Tag, _Worker, _write_reports
from kglb import CheckResult, ProbeResult, ProbeTarget
from kglb.config import TcpCheck

TARGET = ProbeTarget(address="127.0.0.1", port=80, check=TcpCheck())


class StubProber:
    def counters(self):
        return 0, 0

    def checks_done(self):
        return 0, {}


class Pipe(trio.abc.SendStream):
    """Records when each report was written and the results it carried."""

    def __init__(self) -> None:
        self.reports: list[tuple[float, list]] = []

    async def send_all(self, data) -> None:
        self.reports.append((trio.current_time(), pickle.loads(bytes(data[4:])).results))

    async def wait_send_all_might_not_block(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


def result(tag: str, folded=()) -> ProbeResult:
    return ProbeResult(target=TARGET, result=CheckResult(passed=True, reason=tag),
                       at=trio.current_time(), folded=folded)


async def test_results_that_may_decide_go_at_once_and_folded_ones_are_gathered(
        nursery, autojump_clock):
    worker = _Worker(StubProber(), 1, _Outbox())
    pipe = Pipe()
    tag = _Tag(worker.outbox, probe_id=7)
    nursery.start_soon(_write_reports, worker, pipe)
    await trio.sleep(5.5)  # nothing to say: a report a second anyway
    assert [round(t) for t, _ in pipe.reports] == [1, 2, 3, 4, 5]
    assert all(results == () for _, results in pipe.reports)

    await trio.sleep(0.1)  # well after the last report
    pipe.reports.clear()
    start = trio.current_time()
    tag.send_nowait(result("first"))
    await trio.sleep(0.0005)
    tag.send_nowait(result("second"))  # right behind: waits for the spacing
    await trio.sleep(0.5)
    tag.send_nowait(result("steady", folded=(0.001,)))
    await trio.sleep(0.1)
    sent = [(round(t - start, 4), [r.reason for r in results]) for t, results in pipe.reports]
    spacing, gather = probe_worker._GATHER_URGENT, probe_worker._GATHER
    assert sent == [(0.0, ["first"]), (spacing, ["second"]), (0.5005 + gather, ["steady"])]


def test_pipe_messages_validate_when_built_and_when_read():
    """Typed messages, not tuples: a bad one cannot be built, nor read back."""
    good = WatchCommand(probe_id=1, target=TARGET, interval=1.0, limiter=0, tokens=10)
    assert pickle.loads(encode((good,))[4:]) == (good,)
    for bad in ({"interval": 0}, {"tokens": 0}, {"probe_id": -1}, {"target": ("10.0.0.1", 80)}):
        with pytest.raises((ValueError, TypeError)):
            WatchCommand(**{"probe_id": 1, "target": TARGET, "interval": 1.0, "limiter": 0,
                            "tokens": 10, **bad})
    with pytest.raises(ValueError):
        WorkerResult(probe_id=1, passed=True, reason="", latency=0.0, at=0.0)
    with pytest.raises(TypeError):  # the old tuple commands are refused
        _Worker(StubProber(), 1, _Outbox()).apply(("watch", 1, TARGET, 1.0, 0, 10, 0))
