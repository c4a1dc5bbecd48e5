"""The tcp check: a successful connect is healthy, the connection is closed at once.

It is :mod:`actors._lean_checks`' state machine, the lean engine's own, here
driven by trio for ``run_check``: one implementation of connect and verdict.
"""

from __future__ import annotations

from kglb import CheckResult, ProbeTarget
from kglb.config import TcpCheck

# The module, not its names: actors._lean_checks imports this package's
# helpers, so either may be imported first.
from .. import _lean_checks


async def check_tcp(target: ProbeTarget, settings: TcpCheck) -> CheckResult:
    """Connect (directly or tunnelled) within the timeout; refused, reset, ... are reasons."""
    return await _lean_checks.check(target, _lean_checks.plan(target))
