"""The checkers: one small module per check type, one entry point.

``run_check(target)`` runs the check that ``target.check`` describes against
the real (or through its fwmark tunnel) and returns a CheckResult. A failed
check is data with a short countable reason, never an exception; the check's
timeout bounds all of it.
"""

from __future__ import annotations

from kglb import CheckResult, ProbeTarget
from kglb.config import DnsCheck, DummyCheck, HttpCheck, SyslogCheck, TcpCheck

from ._net import TUNNEL_SOURCES
from .dummy import check_dummy
from .http import check_http
from .syslog import check_syslog
from .tcp import check_tcp



async def _check_dns(target: ProbeTarget, check: DnsCheck) -> CheckResult:
    # dnspython (and the importlib.metadata it loads) is ~3 MB of RSS: a probe
    # worker without DNS checks does without it.
    from .dns import check_dns

    return await check_dns(target, check)


CHECKERS = {
    DummyCheck: check_dummy,
    TcpCheck: check_tcp,
    HttpCheck: check_http,
    DnsCheck: _check_dns,
    SyslogCheck: check_syslog,
}


async def run_check(target: ProbeTarget) -> CheckResult:
    """Check ``target`` with the checker for ``type(target.check)``."""
    return await CHECKERS[type(target.check)](target, target.check)


__all__ = [
    "CHECKERS",
    "TUNNEL_SOURCES",
    "check_dns",
    "check_dummy",
    "check_http",
    "check_syslog",
    "check_tcp",
    "run_check",
]


def __getattr__(name: str):
    if name == "check_dns":
        from .dns import check_dns

        return check_dns
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
