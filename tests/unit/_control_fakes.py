"""Small builders and fakes for the control-plane tests (balancer, generator, app)."""

from __future__ import annotations

from kglb import CheckResult, ForwardMethod, ProbeTarget, Service, ServiceKey
from kglb.config import BalancerConfig, BgpAttributes, CheckerConfig, DummyCheck


def balancer_config(
    name: str = "web",
    *,
    vip: str = "10.0.0.1",
    port: int = 80,
    hosts: tuple[str, ...] = ("10.1.0.1", "10.1.0.2"),
    rise: int = 1,
    fall: int = 1,
    interval_ms: int = 1000,
    bgp_prefix: str | None = None,
    prefixlen: int = 32,
    hold_time_ms: int = 0,
    setup: str = "setup1",
    udp: bool = False,
    real_port: int | None = None,
    **kwargs,
) -> BalancerConfig:
    key = ServiceKey.udp(vip, port) if udp else ServiceKey.tcp(vip, port)
    bgp = None
    if bgp_prefix is not None:
        bgp = BgpAttributes(local_asn=65000, peer_asn=65001, community="65000:1",
                            prefix=bgp_prefix, prefixlen=prefixlen, hold_time_ms=hold_time_ms)
    kwargs.setdefault("forward", ForwardMethod.TUNNEL)
    return BalancerConfig(
        name=name, setup_name=setup, service=Service(key=key),
        port=port if real_port is None else real_port, hosts=hosts,
        checker=CheckerConfig(check=DummyCheck(), interval_ms=interval_ms, rise=rise, fall=fall),
        bgp=bgp, **kwargs)


class ResolverBug:
    """A resolver whose second call raises: the first re-resolution (60 s after
    the start) crashes the balancer's discovery actor."""

    def __init__(self, address: str = "10.1.0.1") -> None:
        self.address = address
        self.calls = 0

    async def __call__(self, host: str, family) -> str:
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("resolver bug")
        return self.address


class FakeCheck:
    """A check function whose answer per real address the test sets: ``fake.up[ip] = False``."""

    def __init__(self, default: bool = True) -> None:
        self.default = default
        self.up: dict[str, bool] = {}
        self.calls = 0

    async def __call__(self, target: ProbeTarget) -> CheckResult:
        self.calls += 1
        passed = self.up.get(target.address, self.default)
        return CheckResult(passed=passed, reason="ok" if passed else "refused")
