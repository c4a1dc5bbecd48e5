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
from .dns import check_dns
from .dummy import check_dummy
from .http import check_http
from .syslog import check_syslog
from .tcp import check_tcp

CHECKERS = {
    DummyCheck: check_dummy,
    TcpCheck: check_tcp,
    HttpCheck: check_http,
    DnsCheck: check_dns,
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
