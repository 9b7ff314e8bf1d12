"""LRU: bounded, forgetting the entry used longest ago."""

from __future__ import annotations

import pytest

from server.kit.lru import LRU


def test_the_entry_used_longest_ago_goes_first() -> None:
    lru: LRU[str, int] = LRU(3)
    for n, key in enumerate("abc"):
        lru.put(key, n)
    assert lru.get("a") == 0  # now the newest
    lru.put("d", 3)
    assert "b" not in lru and len(lru) == 3
    assert [lru.get(k) for k in "acd"] == [0, 2, 3]
    lru.put("c", 20)  # replacing keeps one entry
    lru.put("e", 4)
    assert "a" not in lru and lru.get("c") == 20 and len(lru) == 3
    lru.clear()
    assert len(lru) == 0 and lru.get("c") is None


def test_it_holds_at_least_one_entry() -> None:
    with pytest.raises(ValueError):
        LRU(0)
