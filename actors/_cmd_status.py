"""``kglb-trio status``: a running instance's balancers and reals, like ``ipvsadm -Ln``.

It fetches ``/status`` from the stats server and prints one block per
balancer: the virtual service line, then one line per real with its weight,
health, how long it has been in that health, and its last check result.
``--json`` prints the document as served. The demo renders with the same
``render_table``.
"""

from __future__ import annotations

import sys

import httpx

from kglb import ServiceFlag
from kglb.pretty import service_options

from .exit_codes import ExitCode
from .http import parse_address

__all__ = ["main", "render_table"]

TIMEOUT = 5.0
REAL_LINE = "  -> {:<28} {:<7} {:>6} {:<6} {:>8}  {}"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def _endpoint(address: str | None, port: int, host: str) -> str:
    if address is None:
        return f"{host}:{port} (unresolved)"
    text = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    return text if host in (address, "") else f"{text} {host}"


def _last(real: dict) -> str:
    if real.get("state") == "draining":
        connections = "?" if real["connections"] is None else real["connections"]
        return f"{connections} connections left, {real['drain_left_seconds']:.0f}s left"
    if real["reason"] is None:
        return "not checked yet"
    return f"{real['reason']} {real['latency_ms']:.1f}ms"


def _service_line(b: dict) -> str:
    proto, _, rest = (b["service"] or "? -").partition(" ")
    flags = ServiceFlag(0)
    for name in b["flags"]:
        flags |= ServiceFlag[name.upper()]
    options = service_options(flags, b["scheduler"] or "")
    flags = f" {','.join(options)}" if options else ""
    head = f"{proto:<4} {rest} {b['scheduler']}{flags}"
    route = ""
    if b["route"] is not None:
        route = f"  route {b['route']['prefix']} {'on' if b['route']['announced'] else 'off'}"
    return (f"{head:<40} {b['name']} ({b['setup']}) {b['state']}"
            f" alive {b['alive_ratio']:.0%}{route}")


def _source_line(source: dict | None) -> str | None:
    if source is None or source["kind"] == "static":
        return None
    state = "up" if source["up"] else f"DOWN ({source['error']})"
    held = f", {source['held']} held (maxRemoveRatio)" if source["held"] else ""
    return (f"  source {source['kind']} {source['detail']}: {state}, {source['endpoints']} reals, "
            f"last success {_age(source['last_success_seconds'])} ago{held}")


def render_table(doc: dict) -> str:
    """The status document as ipvsadm-like text (ends with a newline)."""
    applied = doc["applied"]
    writer = doc["writer"]
    if applied is None:
        sync = "nothing applied yet"
    else:
        sync = f"applied {_age(applied['age_seconds'])} ago"
        sync += ", in sync" if doc["in_sync"] else ", catching up"
    lines = [
        f"kglb-trio {doc['generated_at']}  data plane {writer['manager_state']} ({sync})"
        f"  reloads {doc['reloads']['ok']} ok {doc['reloads']['failed']} failed",
        "Prot LocalAddress:Port Scheduler Flags     Balancer (setup) State Alive Route",
        REAL_LINE.format("RemoteAddress:Port", "Forward", "Weight", "Health", "Since",
                         "Last check").rstrip(),
    ]
    for b in doc["balancers"]:
        lines.append(_service_line(b))
        source = _source_line(b.get("source"))
        if source is not None:
            lines.append(source)
        forward = (b["forward"] or "-").capitalize()
        for r in b["reals"]:
            lines.append(REAL_LINE.format(_endpoint(r["address"], r["port"], r["host"]), forward,
                                          r["weight"], r.get("state") or r["health"],
                                          _age(r["since_seconds"]),
                                          _last(r)))
    if writer["errors"]:
        lines.append("errors by errno: " + ", ".join(f"{k}: {v}"
                                                      for k, v in writer["errors"].items()))
    foreign = doc["foreign"]
    if foreign["services"] or foreign["addresses"]:
        lines.append("foreign (not ours, left alone): "
                     + " ".join(foreign["services"] + foreign["addresses"]))
    return "\n".join(lines) + "\n"


def _url(address: str) -> str:
    host, port = parse_address(address)
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}/status" if ":" in host else f"http://{host}:{port}/status"


def main(args) -> int:
    """Fetch and print; OK, or FAILED if the instance cannot be reached."""
    try:
        url = _url(args.status_address)
    except ValueError as exc:
        print(f"kglb-trio status: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    try:
        response = httpx.get(url, timeout=TIMEOUT)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        print(f"kglb-trio status: cannot read {url}: {exc} (is kglb-trio running with "
              "this -status_port?)", file=sys.stderr)
        return ExitCode.FAILED
    if args.json:
        sys.stdout.write(response.text)
        return ExitCode.OK
    try:
        table = render_table(response.json())
    except (ValueError, KeyError, TypeError) as exc:
        print(f"kglb-trio status: {url} did not answer a kglb-trio status document: {exc!r}",
              file=sys.stderr)
        return ExitCode.FAILED
    sys.stdout.write(table)
    return ExitCode.OK
