"""RowSet: after any sequence of changes, its blocks are merge_rows of its rows."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.booking.availability import BUSY, TENTATIVE, merge_rows
from server.booking.row_set import REBUILD_AT, Row, RowSet

GRID = 200

rows = st.tuples(st.integers(0, GRID - 1), st.integers(1, 40),
                 st.sampled_from([BUSY, TENTATIVE])).map(lambda r: (r[0], r[0] + r[1], r[2]))


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[Row], list[tuple[list[int], list[Row]]]]:
    """Initial rows and a list of changes: indexes into the rows then present
    (taken out) and rows put in; some changes are large enough to rebuild."""
    first = draw(st.lists(rows, max_size=30))
    changes = []
    for _ in range(draw(st.integers(1, 12))):
        big = draw(st.integers(0, 9)) == 0
        added = draw(st.lists(rows, max_size=REBUILD_AT + 10 if big else 4))
        picks = draw(st.lists(st.integers(0, 10_000), max_size=REBUILD_AT if big else 4))
        changes.append((picks, added))
    return first, changes


@settings(max_examples=400, deadline=None)
@given(histories())
def test_blocks_are_always_the_merge_of_the_rows(history: tuple[list[Row], list[
        tuple[list[int], list[Row]]]]) -> None:
    first, changes = history
    present = Counter(first)
    row_set = RowSet(first)
    assert row_set.blocks == merge_rows(first)
    for picks, added in changes:
        pool = sorted(present.elements())
        removed: list[Row] = []
        for pick in picks:
            if pool:
                removed.append(pool.pop(pick % len(pool)))
        row_set.change(removed, added)
        present.subtract(removed)
        present.update(added)
        expected = sorted(present.elements())
        assert sorted(row_set.rows()) == expected
        assert len(row_set) == len(expected)
        assert row_set.blocks == merge_rows(expected)


@settings(max_examples=200, deadline=None)
@given(st.lists(rows, max_size=30), st.integers(0, GRID), st.integers(0, GRID))
def test_outside_is_every_row_not_overlapping_the_window(some: list[Row], start: int,
                                                         length: int) -> None:
    end = start + length
    expected = [row for row in some if not (row[1] > start and row[0] < end)]
    assert sorted(RowSet(some).outside(start, end)) == sorted(expected)


@pytest.mark.parametrize("size", [1, REBUILD_AT + 1])
def test_removing_a_row_that_is_not_there_is_a_key_error(size: int) -> None:
    row_set = RowSet([(0, 10, BUSY)])
    with pytest.raises(KeyError):
        row_set.change([(0, 10, TENTATIVE)] * size, [])


def test_a_change_far_from_the_others_leaves_their_blocks_as_they_were() -> None:
    row_set = RowSet([(0, 10, BUSY), (10, 20, TENTATIVE), (100, 110, BUSY)])
    before = row_set.blocks
    row_set.change([], [(50, 60, BUSY)])
    assert row_set.blocks[0] is before[0] and row_set.blocks[-1] is before[-1]
    assert [(b.start, b.end) for b in row_set.blocks] == [(0, 10), (10, 20), (50, 60),
                                                          (100, 110)]
