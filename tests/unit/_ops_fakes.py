"""A small statistics snapshot for the operators' interface tests.

Built by hand from the real dataclasses (kglb's BalancerState and friends,
WriterStatistics, ProberStatistics, KglbStatistics), so a renamed field
breaks these tests rather than a scrape in production.
"""

from __future__ import annotations

from actors.app import KglbStatistics
from actors.dataplane import RealCounters, ServiceCounters
from actors.metrics import CheckTally
from actors.probes import ProberStatistics
from actors.writer import WriterStatistics
from kglb import (
    BalancerState,
    CheckResult,
    DataPlaneState,
    ForwardMethod,
    Health,
    LinkAddress,
    Owned,
    ProbeResult,
    ProbeTarget,
    Real,
    RealKey,
    RealStatus,
    Route,
    Service,
    ServiceKey,
    ServiceState,
)
from kglb.config import TcpCheck

WEB_KEY = ServiceKey.tcp("10.0.0.1", 80)
DNS_KEY = ServiceKey.udp("10.0.0.2", 53)
FOREIGN_KEY = ServiceKey.tcp("10.9.9.9", 443)
NOW = 1000.0  # trio clock
WALL = 1_700_000_000.0  # time.time() taken with NOW


def probe_result(result: CheckResult, folded: tuple[float, ...] = ()) -> ProbeResult:
    target = ProbeTarget(address="10.1.0.1", port=80, check=TcpCheck())
    return ProbeResult(target=target, result=result, at=NOW, folded=folded)


def prober_statistics(**kw) -> ProberStatistics:
    fields = dict(checks=0, by_reason={}, in_flight=0, targets=0, watches=0, missed=0)
    return ProberStatistics(**(fields | kw))


def kglb_statistics(**kw) -> KglbStatistics:
    fields = dict(balancers=(), desired=None, route_decisions={}, state_hashes={}, checks={},
                  bgp_established=True, writer=WriterStatistics(), prober=prober_statistics(),
                  reloads_ok=0, reloads_failed=0, restarts=0, restarts_by_actor={},
                  invalid_states=0, started_at=WALL - 60)
    return KglbStatistics(**(fields | kw))


def _real(address: str, weight: int, hostname: str) -> Real:
    return Real(key=RealKey(address=address, port=80), weight=weight,
                forward=ForwardMethod.TUNNEL, hostname=hostname)


def web_balancer() -> BalancerState:
    reals = (_real("10.1.0.1", 1000, "web1"), _real("10.1.0.2", 0, "web2"))
    service = ServiceState(service=Service(key=WEB_KEY, scheduler="wrr"), reals=reals, name="web")
    return BalancerState(
        identity="web-10.0.0.1:80-tcp", name="web", setup_name="prod", services=(service,),
        reals=(
            RealStatus(host="web1", address="10.1.0.1", port=80, health=Health(up=True, count=5),
                       weight=1000, last=CheckResult(passed=True, latency=0.004), since=990.0),
            RealStatus(host="web2", address="10.1.0.2", port=80, health=Health(up=False, count=-3),
                       weight=0, last=CheckResult(passed=False, reason="status 503",
                                                  latency=0.2), since=970.0),
        ),
        alive_ratio=0.5, initial=False,
        route=Route(prefix="10.0.0.1/32", local_asn=65000, peer_asn=65001),
        link_address=LinkAddress(address="10.0.0.1"),
    )


def dns_balancer() -> BalancerState:
    """A balancer whose only real is unresolved and was never checked."""
    service = ServiceState(service=Service(key=DNS_KEY), reals=(), name="dns")
    return BalancerState(
        identity="dns-10.0.0.2:53-udp", name="dns", setup_name="prod", services=(service,),
        reals=(RealStatus(host="ns.example.", address=None, port=53, health=Health(), weight=0),),
        link_address=LinkAddress(address="10.0.0.2"),
    )


def snapshot() -> FakeStats:
    web, dns = web_balancer(), dns_balancer()
    desired = DataPlaneState(services=web.services + dns.services,
                             addresses=(web.link_address, dns.link_address),
                             routes=(web.route,))
    tally = CheckTally()
    for latency in (0.004, 0.004, 0.3):
        tally = tally.record(probe_result(CheckResult(passed=latency < 0.1, latency=latency)),
                             transitioned=latency > 0.1)
    counters = {
        WEB_KEY: ServiceCounters(key=WEB_KEY, bytes_in=1000, bytes_out=5000, packets_in=10,
                                 packets_out=20, reals=(
                                     RealCounters(key=RealKey(address="10.1.0.1", port=80),
                                                  bytes_in=900, bytes_out=4500, packets_in=9,
                                                  packets_out=18),
                                     RealCounters(key=RealKey(address="10.1.0.2", port=80),
                                                  bytes_in=100, bytes_out=500, packets_in=1,
                                                  packets_out=2))),
        FOREIGN_KEY: ServiceCounters(key=FOREIGN_KEY, bytes_in=7),
    }
    writer = WriterStatistics(
        applied=desired, applied_wall=WALL - 4.0, last_apply_duration=0.012, operations=9,
        errors=2, errors_by_errno={17: 2}, drift_repairs=1,
        owned=Owned(services=frozenset({WEB_KEY, DNS_KEY}),
                    addresses=frozenset(desired.addresses)),
        foreign_services=frozenset({FOREIGN_KEY}), routes=frozenset(desired.routes),
        addresses=frozenset(desired.addresses),
        session_established=True, manager_state="available", counters=counters,
    )
    return kglb_statistics(
        balancers=(web, dns), desired=desired,
        route_decisions={web.identity: True},
        state_hashes={"prod": 12345678901234567},
        checks={(web.identity, "web1"): tally, (web.identity, "web2"): CheckTally()},
        reloads_ok=2, reloads_failed=1, restarts=3, restarts_by_actor={"balancer web": 3},
        invalid_states=5,
        writer=writer,
        prober=prober_statistics(checks=9, by_reason={"ok": 7, "timeout": 2}, in_flight=1,
                                 missed=4),
    )
