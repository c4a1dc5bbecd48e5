"""The writer's statistics across the process boundary: WriterStatistics <-> WriterReport.

The writer process sends a report whenever its statistics change (at most
``REPORT_INTERVAL`` apart); the unprivileged side rebuilds a
``WriterStatistics`` from it, so the status API and metrics read the same
snapshot as with the writer in process. The applied state is not sent back:
the report names its sequence number and the proxy keeps the states it sent.
IPVS counters (one entry per real) go only when a new read of them was made.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

from kglb import LinkAddress, Owned, RealKey, Route
from kglb.pb import common_pb2, privsep_pb2
from kglb.privsep import ip_of, key_of, link_of, put_ip, put_key, put_link, put_route, route_of

from .dataplane import RealCounters, ServiceCounters
from .writer import WriterStatistics

__all__ = ["Report", "decode_report", "encode_report"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    """One report: the statistics and what only the process boundary adds."""

    stats: WriterStatistics  # ``applied`` and ``applied_at`` are left at None here
    applied_sequence: int = 0
    stopped: bool = False
    with_counters: bool = False


def encode_report(stats: WriterStatistics, *, applied_sequence: int, refused: dict[str, int],
                  stopped: bool = False, with_counters: bool = False) -> bytes:
    out = privsep_pb2.FromWriter()
    r = out.report
    r.manager_state = str(stats.manager_state)
    r.applied_sequence = applied_sequence
    r.applied_wall = stats.applied_wall or 0.0
    r.last_apply_duration = stats.last_apply_duration
    r.applies, r.operations, r.errors = stats.applies, stats.operations, stats.errors
    r.drift_repairs = stats.drift_repairs
    r.operations_by_kind.update(stats.operations_by_kind)
    r.errors_by_errno.update(stats.errors_by_errno)
    for key in sorted(stats.owned.services):
        put_key(r.owned_services.add(), key)
    for key in sorted(stats.foreign_services):
        put_key(r.foreign_services.add(), key)
    for field, addresses in ((r.owned_addresses, stats.owned.addresses),
                             (r.foreign_addresses, stats.foreign_addresses),
                             (r.addresses, stats.addresses)):
        for a in sorted(addresses):
            put_link(field.add(), a)
    for field, routes in ((r.routes, stats.routes), (r.held, stats.held)):
        for route in sorted(routes):
            put_route(field.add(), route)
    r.failing.extend(sorted(stats.failing))
    r.session_established = stats.session_established
    r.refused.update(refused)
    r.stopped = stopped
    if with_counters:
        for c in stats.counters.values():
            pb = r.counters.add()
            put_key(pb.service, c.key)
            _put_stats(pb.stats, c)
            for real in c.reals:
                rpb = pb.reals.add(port=real.key.port)
                put_ip(rpb.address, real.key.address)
                _put_stats(rpb.stats, real)
                rpb.stats.active_conns_count = real.active_conns
                rpb.stats.inact_conns_count = real.inactive_conns
    return out.SerializeToString()


def _put_stats(pb: common_pb2.Stats, c) -> None:
    pb.connections_count, pb.packets_in_count, pb.packets_out_count = (
        c.conns, c.packets_in, c.packets_out)
    pb.bytes_in_count, pb.bytes_out_count = c.bytes_in, c.bytes_out


def decode_report(payload: bytes) -> Report:
    """A report from the writer; ValueError (or protobuf's DecodeError) if it is not one."""
    message = privsep_pb2.FromWriter()
    message.ParseFromString(payload)
    if message.WhichOneof("message") != "report":
        raise ValueError("not a writer report")
    r = message.report
    counters = {}
    for pb in r.counters:
        key = key_of(pb.service)
        reals = tuple(RealCounters(key=RealKey(address=ip_of(x.address), port=x.port),
                                   active_conns=x.stats.active_conns_count,
                                   inactive_conns=x.stats.inact_conns_count, **_counts(x.stats))
                      for x in pb.reals)
        counters[key] = ServiceCounters(key=key, reals=reals, **_counts(pb.stats))
    stats = WriterStatistics(
        manager_state=r.manager_state, applied_wall=r.applied_wall or None,
        last_apply_duration=r.last_apply_duration, applies=r.applies, operations=r.operations,
        operations_by_kind=MappingProxyType(dict(r.operations_by_kind)),
        errors=r.errors, errors_by_errno=MappingProxyType(dict(r.errors_by_errno)),
        drift_repairs=r.drift_repairs,
        owned=Owned(services=frozenset(key_of(k) for k in r.owned_services),
                    addresses=_links(r.owned_addresses)),
        foreign_services=frozenset(key_of(k) for k in r.foreign_services),
        foreign_addresses=_links(r.foreign_addresses), addresses=_links(r.addresses),
        routes=_routes(r.routes), failing=frozenset(r.failing), held=_routes(r.held),
        session_established=r.session_established, counters=MappingProxyType(counters),
        refused=MappingProxyType(dict(r.refused)))
    return Report(stats=stats, applied_sequence=r.applied_sequence, stopped=r.stopped,
                  with_counters=bool(r.counters))


def _counts(pb: common_pb2.Stats) -> dict[str, int]:
    return dict(conns=pb.connections_count, packets_in=pb.packets_in_count,
                packets_out=pb.packets_out_count, bytes_in=pb.bytes_in_count,
                bytes_out=pb.bytes_out_count)


def _links(items) -> frozenset[LinkAddress]:
    return frozenset(link_of(a) for a in items)


def _routes(items) -> frozenset[Route]:
    return frozenset(route_of(r) for r in items)

