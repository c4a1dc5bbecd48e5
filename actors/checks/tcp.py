"""The tcp check: a successful connect is healthy, the connection is closed at once."""

from __future__ import annotations

from kglb import CheckResult, ProbeTarget
from kglb.config import TcpCheck

from ._net import connect_target, measured


async def check_tcp(target: ProbeTarget, settings: TcpCheck) -> CheckResult:
    """Connect (directly or tunnelled) within the timeout; refused, reset, ... are reasons."""
    return await measured(settings.timeout_ms, _connect(target))


async def _connect(target: ProbeTarget) -> str:
    sock = await connect_target(target)
    sock.close()
    return "ok"
