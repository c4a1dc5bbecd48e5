"""The ``/status`` document: every balancer and real, what was applied, what is ours.

``status_document`` turns one statistics snapshot (an
``actors.app.KglbStatistics``; the attributes read are listed in ``actors.metrics``) into plain JSON-able data; ``kglb-trio status`` and the demo
render it as a table. Times in the snapshot are trio clock readings, so the
caller passes ``now`` (trio.current_time()) and ``wall`` (time.time()) taken
together, and each time is reported both as wall-clock ISO text and as an age
in seconds.

Shape (version 1)::

    {"version": 1, "generated_at": ISO, "initialized": bool,
     "balancers": [{"name", "setup", "identity", "service", "key", "scheduler",
                    "flags", "persistence_seconds", "forward", "state", "alive_ratio", "initial",
                    "failsafe", "route": null | {"prefix", "announced"}, "vip": null | str,
                    "source": null | {"kind", "detail", "up", "last_success_seconds",
                                      "endpoints", "failures", "error", "held"},
                    "reals": [{"host", "address", "port", "weight", "health",
                               "count", "reason", "passed", "latency_ms",
                               "since", "since_seconds", "fwmark", "state",
                               "connections", "drain_left_seconds", "flap_penalty"}]}],
     "applied": null | {"at", "age_seconds", "services": [...], "addresses": [...],
                        "routes": [...]},
     "in_sync": bool, "writer": {...}, "owned": {...}, "foreign": {...},
     "reloads": {"ok", "failed"}, "restarts": {actor: int}, "pid": int,
     "host_drain": null | step, "sync_daemons": {"desired", "running", "owned",
     "conflicts": ["master eth1 syncid 7", ...], "errors", "last_error"}}
"""

from __future__ import annotations

import datetime as dt

import orjson

from kglb import DataPlaneState, Owned, Service, ServiceFlag, ServiceState

from .metrics import balancer_state

__all__ = ["balancer_status", "real_status", "status_document", "status_json", "writer_status"]

VERSION = 1


def _iso(wall: float | None) -> str | None:
    if wall is None:
        return None
    return dt.datetime.fromtimestamp(wall, dt.UTC).isoformat(timespec="milliseconds")


def _flags(flags: ServiceFlag) -> list[str]:
    return [f.name.lower() for f in ServiceFlag if f in flags and f.name]


def _persistence(service: Service) -> int | None:
    """The persistence timeout in seconds, or None for a service that is not persistent."""
    return service.timeout if ServiceFlag.PERSISTENT in service.flags else None


def _service(s: ServiceState) -> dict:
    return {
        "key": s.key.kglb_key,
        "service": str(s.key),
        "name": s.name,
        "scheduler": s.service.scheduler,
        "flags": _flags(s.service.flags),
        "persistence_seconds": _persistence(s.service),
        "reals": [{"address": r.key.address, "port": r.key.port, "weight": r.weight,
                   "forward": r.forward.name.lower(), "hostname": r.hostname}
                  for r in s.reals],
    }


def _owned(owned: Owned) -> dict:
    return {"services": sorted(k.kglb_key for k in owned.services),
            "addresses": sorted(f"{a.link}/{a.address}" for a in owned.addresses)}


def _source(source) -> dict | None:
    if source is None:
        return None
    age = source.last_success_age
    return {"kind": source.kind, "detail": source.detail, "up": source.up,
            "last_success_seconds": None if age is None else round(age, 3),
            "endpoints": source.endpoints, "failures": source.failures, "error": source.error,
            "held": source.held}


def real_status(r, *, now: float, wall: float) -> dict:
    """One real (a ``kglb.RealStatus``) as in the document's ``reals`` lists."""
    since = None if r.since is None else wall - (now - r.since)
    return {
        "host": r.host,
        "address": r.address,
        "port": r.port,
        "weight": r.weight,
        "health": "up" if r.health.up else "down",
        "count": r.health.count,
        "passed": None if r.last is None else r.last.passed,
        "reason": None if r.last is None else r.last.reason,
        "latency_ms": None if r.last is None else round(r.last.latency * 1000, 3),
        "since": _iso(since),
        "since_seconds": None if r.since is None else round(now - r.since, 3),
        "fwmark": r.fwmark,
        # lifecycle (kglb.lifecycle): draining, suppressed, ramping, kept, up, down
        "state": r.state or ("up" if r.health.up else "down"),
        "connections": r.connections,
        "drain_left_seconds": None if r.drain_left is None else round(r.drain_left, 3),
        "flap_penalty": round(r.penalty, 3),
    }


def balancer_status(b, route_decisions, now: float, wall: float, source=None, *,
                    reals: list[dict] | None = None) -> dict:
    """One balancer as in the document (``source``: its discovery source's statistics);
    ``reals`` replaces its list of every real (the status page lists a bounded selection)."""
    main = b.services[0] if b.services else None
    if reals is None:
        reals = [real_status(r, now=now, wall=wall) for r in b.reals]
    return {
        "name": b.name,
        "setup": b.setup_name,
        "identity": b.identity,
        "service": str(main.key) if main else None,
        "key": main.key.kglb_key if main else None,
        "scheduler": main.service.scheduler if main else None,
        "flags": _flags(main.service.flags) if main else [],
        "persistence_seconds": _persistence(main.service) if main else None,
        "forward": main.reals[0].forward.name.lower() if main and main.reals else None,
        "state": balancer_state(b),
        "alive_ratio": b.alive_ratio,
        "initial": b.initial,
        "failsafe": b.failsafe,
        "route": None if b.route is None else {
            "prefix": b.route.prefix, "announced": bool(route_decisions.get(b.identity))},
        "vip": None if b.link_address is None else b.link_address.address,
        "source": _source(source),
        "reals": reals,
    }


def _applied(state: DataPlaneState | None, applied_wall: float | None, wall: float) -> dict | None:
    if state is None:
        return None
    return {
        "at": _iso(applied_wall),
        "age_seconds": None if applied_wall is None else round(wall - applied_wall, 3),
        "services": [_service(s) for s in state.services],
        "addresses": [f"{a.link}/{a.address}" for a in state.addresses],
        "routes": [r.prefix for r in state.routes],
    }


def writer_status(stats) -> dict:
    """The document's ``writer`` object."""
    writer = stats.writer
    return {
        "manager_state": writer.manager_state,
        "operations": writer.operations,
        "errors": {str(k): v for k, v in sorted(writer.errors_by_errno.items())},
        "drift_repairs": writer.drift_repairs,
        "last_apply_ms": round(writer.last_apply_duration * 1000, 3),
        "bgp_session": stats.bgp_established,
        "announced": sorted(r.prefix for r in writer.routes),
    }


def status_document(stats, *, now: float, wall: float) -> dict:
    """The status of one snapshot as JSON-able data (see the module docstring)."""
    writer = stats.writer
    return {
        "version": VERSION,
        "generated_at": _iso(wall),
        "initialized": stats.desired is not None,
        "balancers": [balancer_status(b, stats.route_decisions, now, wall,
                                      stats.discovery.get(b.identity))
                      for b in stats.balancers],
        "applied": _applied(writer.applied, writer.applied_wall, wall),
        "in_sync": stats.desired is not None and writer.applied == stats.desired,
        "writer": writer_status(stats),
        "owned": _owned(writer.owned),
        "foreign": _owned(Owned(services=writer.foreign_services,
                                addresses=writer.foreign_addresses)),
        "reloads": {"ok": stats.reloads_ok, "failed": stats.reloads_failed},
        "restarts": dict(sorted(stats.restarts_by_actor.items())),
        "pid": stats.pid,
        "host_drain": stats.host_drain,
        "sync_daemons": _sync_daemons(stats.sync_daemons),
    }


def _sync_daemons(daemons) -> dict:
    def names(items) -> list[str]:
        return [str(d) for d in items]

    return {"desired": names(daemons.desired), "running": names(daemons.running),
            "owned": names(daemons.owned), "conflicts": names(daemons.conflicts),
            "errors": daemons.errors, "last_error": daemons.last_error}


def status_json(stats, *, now: float, wall: float) -> bytes:
    """``status_document`` serialised (orjson, indented for people using curl)."""
    return orjson.dumps(status_document(stats, now=now, wall=wall),
                        option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
