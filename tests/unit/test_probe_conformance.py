"""One verdict for the same bytes: every hostile real, every way a check runs.

The modes: the bare checker (``run_check``; for tcp and plain http the lean
engine's state machine driven by trio), an in-process Prober (the lean engine
for tcp and plain http, host names included, probe tasks for the rest) and a
Prober with a worker process. Every http case runs twice: plain, and with
``followRedirects`` (before issue 15 the two took different code paths and
disagreed). Each must give the table's reason, and a real that closes its
connection must fail at once, never after the check's timeout.

Not in the table: a tcp real that accepts and resets at once. Whether the
connect sees the handshake or the reset first is a race in every client
(Go's net.Dial reads SO_ERROR the same way), so no verdict can be required.
"""

from __future__ import annotations

from functools import partial

import pytest
import trio

from actors.checks import run_check
from actors.probes import Prober
from kglb import Protocol, ProbeTarget, ServiceKey
from kglb.config import DnsCheck, HttpCheck, TcpCheck

import _hostile_reals as reals
from test_checks_tcp import closed_port, unanswered_port
from test_lean_checks import localhost

TIMEOUT_MS = 3000
#: A closed connection must end the check well before its timeout.
AT_ONCE = TIMEOUT_MS / 1000 / 3
MODES = ["checker", "in-process", "worker"]


async def first_results(mode: str, nursery, targets: dict) -> dict:
    """name -> the first CheckResult of each target, checked in ``mode``."""
    results = {}
    if mode == "checker":
        async def one(name, target):
            results[name] = await run_check(target)

        async with trio.open_nursery() as checks:
            for name, target in targets.items():
                checks.start_soon(one, name, target)
        return results
    prober = Prober(workers=1 if mode == "worker" else 0)
    await nursery.start(prober.run)
    send, receive = trio.open_memory_channel(len(targets) * 4)
    limiter = trio.CapacityLimiter(len(targets))
    names = {target: name for name, target in targets.items()}
    watches = [prober.watch(target, interval=60, limiter=limiter, send=send)
               for target in targets.values()]
    with trio.move_on_after(TIMEOUT_MS / 1000 + 15):
        async for message in receive:
            results.setdefault(names[message.target], message.result)
            if len(results) == len(targets):
                break
    for watch in watches:
        watch.cancel()
    return results


def judge(results: dict, expected: dict[str, tuple[str, bool]]) -> None:
    """Every verdict as the table says, and every closed connection failed at once."""
    assert {name: result.reason for name, result in results.items()} == {
        name: reason for name, (reason, _) in expected.items()}
    slow = {name: round(results[name].latency, 3) for name, (_, closes) in expected.items()
            if closes and results[name].latency >= AT_ONCE}
    assert slow == {}, "a closed connection waited for its timeout"


@pytest.mark.parametrize("mode", MODES)
async def test_http_hostile_reals(mode, nursery, check_serve):
    targets, expected = {}, {}
    for name, (server, reason, closes) in reals.HTTP.items():
        port = await check_serve(server)
        for variant, follow in (("plain", False), ("followRedirects", True)):
            check = HttpCheck(codes=(200,), follow_redirects=follow, timeout_ms=TIMEOUT_MS)
            key = f"{name} [{variant}]"
            targets[key] = ProbeTarget(address="127.0.0.1", port=port, check=check)
            expected[key] = (reason, closes)
    judge(await first_results(mode, nursery, targets), expected)


@pytest.mark.parametrize("mode", MODES)
async def test_tcp_hostile_reals(mode, nursery, check_serve):
    check = TcpCheck(timeout_ms=TIMEOUT_MS)
    with unanswered_port() as unanswered:
        targets = {
            "accepts": await check_serve(reals.close_at_once),
            "refused": closed_port("127.0.0.1"),
            "silence (no SYN-ACK)": unanswered,
        }
        targets = {name: ProbeTarget(address="127.0.0.1", port=port, check=check)
                   for name, port in targets.items()}
        results = await first_results(mode, nursery, targets)
    judge(results, {"accepts": ("ok", True),
                    "refused": ("refused", True), "silence (no SYN-ACK)": ("timeout", False)})


@pytest.mark.parametrize("mode", MODES)
async def test_host_names_and_a_missing_tunnel(mode, nursery, check_serve):
    """Issue 15: a real named by a host name, one whose name does not resolve, and a
    tunnelled target whose VIP has no address: the same reason on every path."""
    tcp_port = await check_serve(reals.close_at_once, localhost())
    http_port = await check_serve(reals.answer(b"HTTP/1.1 200 OK\r\n\r\n"), localhost())
    checks = {"tcp": (TcpCheck(timeout_ms=TIMEOUT_MS), tcp_port)}
    for variant, follow in (("plain", False), ("followRedirects", True)):
        check = HttpCheck(codes=(200,), follow_redirects=follow, timeout_ms=TIMEOUT_MS)
        checks[f"http [{variant}]"] = (check, http_port)
    targets, expected = {}, {}
    for kind, (check, port) in checks.items():
        targets[f"{kind} localhost"] = ProbeTarget(address="localhost", port=port, check=check)
        expected[f"{kind} localhost"] = ("ok", True)
        targets[f"{kind} unresolvable"] = ProbeTarget(address="kglb-test.invalid", port=port,
                                                      check=check)
        expected[f"{kind} unresolvable"] = ("resolve", False)  # a resolver may be slow
        targets[f"{kind} no tunnel"] = ProbeTarget(address="127.0.0.1", port=port, check=check,
                                                   fwmark=7, via=ServiceKey.for_fwmark(7))
        expected[f"{kind} no tunnel"] = ("no tunnel", True)
    judge(await first_results(mode, nursery, targets), expected)


@pytest.mark.parametrize("mode", MODES)
async def test_tls_hostile_reals(mode, nursery, check_serve, check_server_tls):
    targets, expected = {}, {}
    for name, (server, reason, closes) in reals.tls_cases(check_server_tls).items():
        port = await check_serve(server)
        check = HttpCheck(scheme="https", codes=(200,), timeout_ms=TIMEOUT_MS)
        targets[name] = ProbeTarget(address="127.0.0.1", port=port, check=check)
        expected[name] = (reason, closes)
    judge(await first_results(mode, nursery, targets), expected)


@pytest.mark.parametrize("mode", MODES)
async def test_dns_hostile_reals(mode, nursery, check_serve):
    targets, expected = {}, {}
    for name, (server, reason, closes) in reals.DNS_TCP.items():
        port = await check_serve(server)
        check = DnsCheck(query="kglb.test.", protocol=Protocol.TCP, timeout_ms=TIMEOUT_MS)
        targets[name] = ProbeTarget(address="127.0.0.1", port=port, check=check)
        expected[name] = (reason, closes)
    for name, (make, reason, closes) in reals.DNS_UDP.items():
        port = await nursery.start(partial(reals.serve_udp, make))
        check = DnsCheck(query="kglb.test.", protocol=Protocol.UDP, timeout_ms=TIMEOUT_MS)
        targets[name] = ProbeTarget(address="127.0.0.1", port=port, check=check)
        expected[name] = (reason, closes)
    judge(await first_results(mode, nursery, targets), expected)
