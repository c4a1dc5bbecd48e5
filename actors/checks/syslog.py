"""The syslog check: connect and write kglb's probe line; no reply is read.

Over UDP this passes unless the send itself fails (e.g. an ICMP error already
reported on the socket), as in kglb. Syslog is never tunnelled: the config
loader rejects syslog with enable_fwmarks, and a target that asks for it
anyway fails with "no tunnel" rather than silently checking something else.
"""

from __future__ import annotations

import datetime
import os
import socket

from kglb import CheckResult, Protocol, ProbeTarget
from kglb.config import SyslogCheck

from ._net import CheckFailure, SocketConn, connect_target, measured

_KIND = {Protocol.TCP: socket.SOCK_STREAM, Protocol.UDP: socket.SOCK_DGRAM}


async def check_syslog(target: ProbeTarget, settings: SyslogCheck) -> CheckResult:
    """Write ``<level>RFC3339 hostname SyslogHealthChecker[pid]: probe message.\\n``."""
    return await measured(settings.timeout_ms, _send(target, settings))


def probe_line(level: int, now: datetime.datetime) -> bytes:
    """kglb's probe message, with ``now`` as an aware local time."""
    stamp = now.isoformat(timespec="seconds").replace("+00:00", "Z")  # as Go's RFC3339
    host = socket.gethostname()
    return f"<{level}>{stamp} {host} SyslogHealthChecker[{os.getpid()}]: probe message.\n".encode()


async def _send(target: ProbeTarget, settings: SyslogCheck) -> str:
    if target.fwmark:
        raise CheckFailure("no tunnel")
    sock = await connect_target(target, port=settings.port, kind=_KIND[settings.protocol])
    with sock:
        line = probe_line(settings.log_level, datetime.datetime.now().astimezone())
        await SocketConn(sock).send_all(line)
    return "ok"
