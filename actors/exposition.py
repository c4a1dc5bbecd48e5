"""Metric families as text: Prometheus 0.0.4 (kglb's way) and OpenMetrics 1.0.

kglb's counters have no ``_total`` suffix; prometheus_client's text writer
always appends one to counters, so ``expose`` writes the text format itself:
a counter is typed ``counter`` under the exact name of its samples. That
reproduces kglb's output line for line (client_golang does the same) while
our own counters follow the convention and end in ``_total``.

OpenMetrics requires a counter's samples to end in ``_total``, so there
kglb's counters are typed ``unknown`` under their exact sample name (the
series a scraper stores are the same in both formats), and ours are typed
``counter`` under the name without ``_total``. prometheus_client's own
OpenMetrics writer is not used: it rewrites the ``:`` of kglb's sample names.
"""

from __future__ import annotations

from prometheus_client.registry import CollectorRegistry
from prometheus_client.utils import floatToGoString

__all__ = ["OPENMETRICS_CONTENT_TYPE", "expose", "expose_openmetrics"]

OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def _escape(value: str) -> str:
    if "\\" not in value and "\n" not in value and '"' not in value:
        return value
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _samples(out: list[str], metric) -> None:
    for s in metric.samples:
        if s.labels:
            labels = ",".join([f'{k}="{_escape(v)}"' for k, v in s.labels.items()])
            out.append(f"{s.name}{{{labels}}} {floatToGoString(s.value)}\n")
        else:
            out.append(f"{s.name} {floatToGoString(s.value)}\n")


def expose(registry: CollectorRegistry) -> bytes:
    """Prometheus text format 0.0.4, with each family typed under its samples' exact name.

    Families without samples are left out, as client_golang (kglb) does.
    """
    out: list[str] = []
    for metric in registry.collect():
        if not metric.samples:
            continue
        kind = {"unknown": "untyped", "info": "gauge", "stateset": "gauge"}.get(metric.type,
                                                                                metric.type)
        name = metric.samples[0].name if kind == "counter" else metric.name
        out.append(f"# HELP {name} {_escape(metric.documentation)}\n# TYPE {name} {kind}\n")
        _samples(out, metric)
    return "".join(out).encode()


def expose_openmetrics(registry: CollectorRegistry) -> bytes:
    """OpenMetrics 1.0 text of the same families (see the module docstring)."""
    out: list[str] = []
    for metric in registry.collect():
        if not metric.samples:
            continue
        kind = {"untyped": "unknown", "info": "gauge", "stateset": "gauge"}.get(metric.type,
                                                                                metric.type)
        name = metric.name
        if kind == "counter":
            first = metric.samples[0].name
            if first.endswith("_total"):
                name = first.removesuffix("_total")
            else:
                kind, name = "unknown", first
        out.append(f"# HELP {name} {_escape(metric.documentation)}\n# TYPE {name} {kind}\n")
        _samples(out, metric)
    out.append("# EOF\n")
    return "".join(out).encode()
