"""The live status page: ``GET /`` (HTML) and ``GET /page.json`` (what the page polls).

Theory of operation. Both answers are one *page model*: display-ready rows
built from one statistics snapshot, so the server-side HTML (what a browser
with JavaScript off shows) and the page's script (which rebuilds the same
tables from ``/page.json``) lay out the same text and decide nothing.

The model is bounded whatever the config's size: every balancer gets a
one-line summary, but at most ``limit`` reals are listed in all, ranked down
first, then by how recently their health changed, so at 10k reals the ones an
operator opened the page for are on it and the answer stays ~100 KB.
``?q=`` filters balancers and reals by a case-insensitive substring (name,
service, VIP, host, address, reason), on the server, so it works without
JavaScript too.

The page polls ``/page.json`` every ``POLL_SECONDS`` rather than holding a
server-sent event stream: a poll is an ordinary short request under the HTTP
server's deadline and connection limit, needs no per-client task, and survives
restarts and proxies without reconnection logic. What keeps polling cheap is
the server's shared render (actors.scrape_cache): the unfiltered page is
rendered at most once per poll period whatever the number of open pages, in
a worker thread (ranking 10k reals must not run on the event loop that drives
the probes); a filtered one is rendered per request. An ETag would save
nothing: the model carries latencies and ages, so it changes on every render.

Everything here is read-only: the page has no form that posts and no route
that changes state.
"""

from __future__ import annotations

import heapq
import math
import operator
import time
from urllib.parse import parse_qs

import orjson

from .metrics import balancer_state
from .status import balancer_status, real_status, writer_status
from .status_page_html import render_page

__all__ = ["CONTENT_TYPES", "KINDS", "page_model", "parse_query", "render"]

KINDS = {"/": "html", "/page.json": "json"}  # path -> what is rendered there
CONTENT_TYPES = {"html": "text/html; charset=utf-8", "json": "application/json"}
LIMIT = 200  # reals listed per page: bounds the answer at any config size
CHANGES = 12  # rows of "recent health changes"
POLL_SECONDS = 2.0  # as long as the server keeps a render (actors.http.CACHE_SECONDS)
MAX_QUERY = 200  # characters of ``q`` kept

REAL_HEADERS = ("host", "address", "health", "weight", "last check", "reason", "latency",
                "in state")
CHANGE_HEADERS = ("when", "balancer", "host", "now", "changes")


def age(seconds: float | None) -> str:
    """``95.2`` -> ``"1m35s"``: short, for a table cell."""
    if seconds is None:
        return "-"
    s = max(0, int(seconds))
    for unit, size, sub, subsize in (("d", 86400, "h", 3600), ("h", 3600, "m", 60),
                                     ("m", 60, "s", 1)):
        if s >= size:
            return f"{s // size}{unit}{(s % size) // subsize:02d}{sub}"
    return f"{s}s"


def _real_row(r, *, now: float, wall: float) -> dict:
    d = real_status(r, now=now, wall=wall)
    a = d["address"]
    address = ("unresolved" if a is None else
               f"[{a}]:{d['port']}" if ":" in a else f"{a}:{d['port']}")
    last = {None: "not yet", True: "pass", False: "fail"}[d["passed"]]
    ms = d["latency_ms"]
    latency = "-" if ms is None else f"{ms:.1f} ms" if ms >= 10 else f"{ms:.2f} ms"
    # The lifecycle state (draining, ramping, suppressed, kept) says more than up/down.
    state, reason = d["state"], d["reason"] or ""
    if state == "draining":
        connections = "?" if d["connections"] is None else d["connections"]
        reason = f"{connections} connections left, {age(d['drain_left_seconds'])} left"
    return {"cls": state if state in ("up", "down") else "lifecycle",
            "cells": [d["host"], address, state, str(d["weight"]), last, reason, latency,
                      age(d["since_seconds"])]}


def _matches(q: str, *texts: object) -> bool:
    return any(q in str(t).lower() for t in texts if t is not None)


def _real_hit(q: str, r) -> bool:
    return _matches(q, r.host, r.address, None if r.last is None else r.last.reason)


def _discovery(source: dict | None) -> str:
    """The balancer's discovery source as /status has it (``source``, filled in by the
    discovery actor); without one the reals are the config's static list."""
    if not source:
        return "static"
    text = " ".join(str(source[k]) for k in ("kind", "detail") if source.get(k))
    if source.get("up") is False:
        text += f" (failing: {source.get('error') or 'no answer'}; keeping the last reals)"
    if source.get("held"):
        text += f", {source['held']} reals held"
    return text


def _balancer_head(d: dict) -> list[list[str]]:
    route = d["route"]
    route_text = ("none" if route is None else
                  f"{route['prefix']} {'announced' if route['announced'] else 'withheld'}")
    return [["service", d["service"] or "-"], ["VIP", d["vip"] or "-"], ["state", d["state"]],
            ["alive", f"{d['alive_ratio']:.0%}"], ["route", route_text],
            ["discovery", _discovery(d.get("source"))],
            ["setup", d["setup"]], ["forward", d["forward"] or "-"]]


def _writer_rows(stats, wall: float) -> list[list[str]]:
    w = writer_status(stats)
    applied_wall = stats.writer.applied_wall
    last = ("never" if applied_wall is None else
            f"{age(wall - applied_wall)} ago, took {w['last_apply_ms']:.1f} ms")
    errors = sum(w["errors"].values())
    return [["state", w["manager_state"]],
            ["in sync", "yes" if stats.desired is not None
             and stats.writer.applied == stats.desired else "no"],
            ["last apply", last], ["operations", str(w["operations"])],
            ["drift repairs", str(w["drift_repairs"])], ["errors", str(errors)],
            ["BGP session", "established" if w["bgp_session"] else "down"]
            if any(b.route is not None for b in stats.balancers) else ["BGP session", "no routes"],
            ["routes announced", ", ".join(w["announced"]) or "none"],
            ["reloads", f"{stats.reloads_ok} ok, {stats.reloads_failed} failed"],
            ["actor restarts", str(stats.restarts)]]


def page_model(stats, *, now: float, wall: float, query: str = "", limit: int = LIMIT) -> dict:
    """The page of one snapshot: summaries, at most ``limit`` reals, recent changes, writer.

    ``now`` is trio time and ``wall`` Unix time, taken together (as for
    ``actors.status``). ``query`` filters (see the module docstring).
    """
    q = query.strip().lower()
    kept, ranked = [], []
    up = down = 0
    for b in stats.balancers:
        d = balancer_status(b, stats.route_decisions, now, wall,
                            stats.discovery.get(b.identity), reals=[])
        whole = not q or _matches(q, d["name"], d["service"], d["vip"], d["setup"])
        index, matched, matched_down, b_up = len(kept), 0, 0, 0
        for i, r in enumerate(b.reals):
            b_up += r.health.up
            if whole or _real_hit(q, r):
                matched += 1
                matched_down += not r.health.up
                # Down first, then the most recent change; never-changed reals last.
                # Plain tuples, compared in C: this loop runs over every real.
                ranked.append((r.health.up, math.inf if r.since is None else -r.since, index, i))
        up, down = up + b_up, down + len(b.reals) - b_up
        if whole or matched:
            kept.append((b, d, matched, matched_down, b_up))
    shown: list[list[dict]] = [[] for _ in kept]
    for _, _, index, i in heapq.nsmallest(limit, ranked):
        shown[index].append(_real_row(kept[index][0].reals[i], now=now, wall=wall))
    balancers = []
    for (b, d, matched, matched_down, b_up), rows in zip(kept, shown, strict=True):
        hidden = matched - len(rows)
        hidden_down = matched_down - sum(row["cls"] == "down" for row in rows)
        balancers.append({
            "name": d["name"], "state": balancer_state(b), "head": _balancer_head(d),
            "count": f"{b_up} of {len(b.reals)} reals up",
            "note": (f"{hidden} more {'matching ' if q else ''}reals not listed "
                     + (f"({hidden_down} of them down)" if hidden_down else "(all up)")
                     if hidden else ""),
            "rows": rows})
    changes = []
    for _, recent, index, i in heapq.nsmallest(CHANGES, ranked, key=_by_recency):
        if recent == math.inf:
            break  # the rest never changed
        b = kept[index][0]
        r = b.reals[i]
        tally = stats.checks.get((b.identity, r.host))
        changes.append({"cls": "up" if r.health.up else "down",
                        "cells": [f"{age(now + recent)} ago", b.name, r.host,
                                  "up" if r.health.up else "down",
                                  "-" if tally is None else str(tally.transitions)]})
    listed = sum(map(len, shown))
    return {
        "generated": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(wall)),
        "query": query,
        "summary": (f"{len(stats.balancers)} balancers, {up + down} reals: {up} up, {down} down"
                    + ("" if stats.desired is not None else "; starting")),
        "listed": (f"{listed} reals listed" + (f" matching \u201c{query}\u201d" if q else "")
                   + (f" (at most {limit}: down and recently changed first)"
                      if len(ranked) > limit else "")),
        "poll_ms": int(POLL_SECONDS * 1000),
        "real_headers": list(REAL_HEADERS),
        "change_headers": list(CHANGE_HEADERS),
        "balancers": balancers,
        "changes": changes,
        "writer": _writer_rows(stats, wall),
    }


_by_recency = operator.itemgetter(1, 2, 3)


def parse_query(query: str) -> str:
    """The ``q`` parameter of a request's query string (bounded; "" when absent)."""
    values = parse_qs(query, max_num_fields=8).get("q") or [""]
    return values[0][:MAX_QUERY]


def render(kind: str, stats, *, now: float, wall: float, query: str = "") -> bytes:
    """The body of ``kind`` ("html" for ``/``, "json" for ``/page.json``): CPU work, for a
    worker thread (10k reals: 10-20 ms on a quiet host)."""
    model = page_model(stats, now=now, wall=wall, query=query)
    return orjson.dumps(model) if kind == "json" else render_page(model).encode()
