"""The garbage collector's policy for a long-running kglb-trio process.

Reference counting frees almost everything kglb-trio drops (its states are
acyclic); the cycle collector only has to find the rare garbage cycle. But a
full collection walks every tracked object, and at 10k reals that is ~150k
live objects: 50-100 ms of CPU during which the event loop stands still
(``python -m benchmarks e2e --reals 10000``: with CPython's default
thresholds one ran every ~10 s, and the slowest check→data-plane latencies
were exactly those pauses).

:func:`settle_gc`, called once the control plane is up:

* freezes what exists then (modules, the config, the probes, the first
  states: it lives for the whole run) out of every later collection;
* makes full collections ten times rarer: one per 100 young (generation 1)
  collections instead of 10, i.e. every few minutes rather than every few
  seconds at 10k reals. Young collections, a few ms each, are unchanged, and
  garbage cycles are still freed, only later.

The ``kglb-trio`` command calls it; an application embedding ``run_kglb``
owns its process and decides for itself.
"""

from __future__ import annotations

import gc

__all__ = ["FULL_COLLECTION_EVERY", "settle_gc"]

#: Generation-1 collections per full collection (CPython's default is 10).
FULL_COLLECTION_EVERY = 100


def settle_gc() -> None:
    """Freeze the objects that exist now and make full collections rarer."""
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)
