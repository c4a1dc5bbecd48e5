"""Benchmark configurations: N loopback reals spread over VIPs, as a kglb ``Config``.

Reals are distinct 127.a.b.c addresses (a >= 1, so 127.0.0.1 and whatever
listens there is never hit; b, c in 1..250) that all listen on one port. Every
127/8 address is local on Linux, so no address needs adding. VIPs are
10.255.x.y:80: with the memory data plane they are only names, and in the VM
they are what IPVS serves.
"""

from __future__ import annotations

import json

from kglb import ForwardMethod, Service, ServiceKey
from kglb.config import (
    BalancerConfig,
    CheckerConfig,
    Config,
    DummyCheck,
    HttpCheck,
    TcpCheck,
)

REAL_PORT = 18080
VIP_PORT = 80
_PER_OCTET = 250  # octets 1..250: no .0 or .255 even where a tool would frown at them

CHECK_KINDS = ("tcp", "http", "dummy")


def real_address(index: int) -> str:
    """The address of real number ``index`` (0-based): 127.1.0.1, 127.1.0.2, ..."""
    if not 0 <= index < 254 * _PER_OCTET * _PER_OCTET:
        raise ValueError(f"real index out of range: {index}")
    c = 1 + index % _PER_OCTET
    b = 1 + (index // _PER_OCTET) % _PER_OCTET
    a = 1 + index // (_PER_OCTET * _PER_OCTET)
    return f"127.{a}.{b}.{c}"


def real_addresses(count: int) -> tuple[str, ...]:
    return tuple(real_address(i) for i in range(count))


def vip_address(index: int) -> str:
    return f"10.255.{index // 250}.{1 + index % 250}"


def make_check(kind: str, *, timeout_ms: int):
    """The check config of ``kind`` (tcp, http or dummy). HTTP expects a 200 on /."""
    if kind == "tcp":
        return TcpCheck(timeout_ms=timeout_ms)
    if kind == "http":
        return HttpCheck(uri="/", codes=(200,), timeout_ms=timeout_ms)
    if kind == "dummy":
        return DummyCheck()
    raise ValueError(f"unknown check kind {kind!r}; expected one of {CHECK_KINDS}")


def build_config(
    reals: tuple[str, ...],
    *,
    check: str,
    interval_ms: int,
    rise: int,
    fall: int,
    reals_per_vip: int,
    concurrency: int,
    timeout_ms: int,
    port: int = REAL_PORT,
) -> Config:
    """One balancer per ``reals_per_vip`` reals, each with its own VIP; the reals
    listen on ``port``.

    Building it twice from the same arguments gives an equal (not identical)
    ``Config``: that is what the reload measurement feeds back.
    """
    if reals_per_vip < 1:
        raise ValueError("reals_per_vip must be >= 1")
    checker = CheckerConfig(
        check=make_check(check, timeout_ms=timeout_ms),
        interval_ms=interval_ms,
        rise=rise,
        fall=fall,
        concurrency=concurrency,
    )
    balancers = []
    for n, start in enumerate(range(0, len(reals), reals_per_vip)):
        balancers.append(
            BalancerConfig(
                name=f"bench-{n}",
                setup_name="bench",
                service=Service(key=ServiceKey.tcp(vip_address(n), VIP_PORT), scheduler="wrr"),
                forward=ForwardMethod.TUNNEL,
                port=port,
                hosts=reals[start : start + reals_per_vip],
                checker=checker,
            )
        )
    return Config(balancers=tuple(balancers))


def config_json(config: Config) -> str:
    """``config`` (as ``build_config`` makes it) in kglb's JSON file format.

    The reload measurement feeds this text to ``reload``, as a SIGHUP would
    after reading the file: parse, validate and diff are all part of the cost.
    """
    return json.dumps({"balancers": [_balancer_json(b) for b in config.balancers]})


def _balancer_json(b: BalancerConfig) -> dict:
    checker = b.checker
    check = checker.check
    if isinstance(check, TcpCheck):
        attributes = {"tcp": {"checkTimeoutMs": check.timeout_ms}}
    elif isinstance(check, HttpCheck):
        attributes = {"http": {"scheme": check.scheme, "uri": check.uri, "codes": list(check.codes),
                               "checkTimeoutMs": check.timeout_ms}}
    else:
        attributes = {"dummy": {}}
    return {
        "name": b.name,
        "setupName": b.setup_name,
        "lbService": {"ipvsService": {
            "tcpAttributes": {"address": {"ipv4": b.key.address}, "port": b.key.port},
            "scheduler": b.service.scheduler.upper(),
        }},
        "upstreamDiscovery": {"port": b.port, "staticAttributes": {"hosts": list(b.hosts)}},
        "upstreamChecker": {
            "checker": attributes,
            "intervalMs": checker.interval_ms,
            "riseCount": checker.rise,
            "fallCount": checker.fall,
            "concurrencyLimit": checker.concurrency,
        },
        "upstreamRouting": {"forwardMethod": b.forward.name},
        "dynamicRouting": {},
    }
