"""The dummy check: always passes, touches nothing (kglb's DummyChecker)."""

from __future__ import annotations

from kglb import CheckResult, ProbeTarget
from kglb.config import DummyCheck

_PASSED = CheckResult(passed=True)


async def check_dummy(target: ProbeTarget, settings: DummyCheck) -> CheckResult:
    """Passes at once, with no I/O."""
    return _PASSED
