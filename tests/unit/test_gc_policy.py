"""actors/gc_policy.py: what exists is frozen, full collections become rarer."""

import gc

from actors.gc_policy import FULL_COLLECTION_EVERY, settle_gc


def test_settle_gc_freezes_and_spaces_full_collections():
    before = gc.get_threshold()
    try:
        gc.unfreeze()
        kept = [object() for _ in range(10)] + [[] for _ in range(10)]
        settle_gc()
        assert gc.get_freeze_count() >= len(kept) // 2  # the lists are tracked: frozen
        young, middle, full = gc.get_threshold()
        assert (young, middle) == before[:2] and full == FULL_COLLECTION_EVERY > before[2]
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
