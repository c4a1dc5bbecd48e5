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

* fixes glibc's mmap threshold at 1 MiB: glibc raises it to the size of
  the largest block freed (a 6-7 MB /metrics body at 10k reals), after
  which such bodies come from the heap, fragment it and stay in RSS after
  they are freed; mmapped, they go back to the kernel when freed.

:func:`release_memory`, after a reload, hands the heap's free pages back to
the kernel (``malloc_trim``). What it cannot hand back is CPython's own
arenas: 1 MiB each, returned only when every object in them is freed. After
a reload from 10k reals to 10 almost every object is freed, but the few that
survive (caches, the states of the reals that stay) are spread over most
arenas and pin them (``python -m benchmarks status-load``: ~93 arenas held
for ~20 MB of live objects).

The ``kglb-trio`` command calls them; an application embedding ``run_kglb``
owns its process and decides for itself.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc

__all__ = ["FULL_COLLECTION_EVERY", "release_memory", "settle_gc"]

#: Generation-1 collections per full collection (CPython's default is 10).
FULL_COLLECTION_EVERY = 100
#: Blocks at least this big are mmapped by glibc, so freeing them frees RSS.
MMAP_THRESHOLD = 1 << 20
_M_MMAP_THRESHOLD = -3  # glibc's malloc.h


def _libc():
    """glibc, or None (another libc: nothing to tune)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def settle_gc() -> None:
    """Freeze the objects that exist now, make full collections rarer, fix the mmap threshold."""
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)
    if (libc := _libc()) is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def release_memory() -> None:
    """Give the heap's free pages back to the kernel (blocks for a few ms: use a thread)."""
    if (libc := _libc()) is not None:
        libc.malloc_trim(0)
