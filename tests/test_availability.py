"""Property tests of the interval algebra against a brute-force minute grid.

Every interval lives on a small grid (0..GRID); the oracle paints each unit
busy / tentative / free and the result of the real code is painted the same
way and compared unit by unit.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from server.booking.availability import (
    BUSY,
    TENTATIVE,
    BusyInterval,
    merge_busy,
    merge_rows,
    overlapping,
    subtract,
    union,
)

GRID = 300
FREE = "free"

PROPERTY = settings(max_examples=300, deadline=None)


# -- strategies ---------------------------------------------------------------

# Any pair on the grid, including empty (start == end) and reversed spans.
raw_spans = st.lists(
    st.tuples(st.integers(0, GRID), st.integers(0, GRID)), max_size=12
)
# Non-empty spans only.
proper_spans = st.lists(
    st.tuples(st.integers(0, GRID - 1), st.integers(1, GRID)).filter(lambda s: s[0] < s[1]),
    max_size=12,
)


@st.composite
def disjoint_spans(draw: st.DrawFn) -> list[tuple[int, int]]:
    """Sorted, disjoint spans that may touch (subtract's weakest contract)."""
    points = sorted(draw(st.sets(st.integers(0, GRID), max_size=14)))
    pieces = list(zip(points, points[1:], strict=False))
    keep = draw(st.lists(st.booleans(), min_size=len(pieces), max_size=len(pieces)))
    return [piece for piece, kept in zip(pieces, keep, strict=True) if kept]


statuses = st.sampled_from([BUSY, TENTATIVE])
busy_intervals = st.lists(
    st.builds(
        lambda a, b, status: BusyInterval(a, b, status),
        st.integers(0, GRID),
        st.integers(0, GRID),
        statuses,
    ),
    max_size=15,
)


# -- oracle -------------------------------------------------------------------


def paint_spans(spans: list[tuple[int, int]]) -> list[bool]:
    grid = [False] * GRID
    for start, end in spans:
        for minute in range(max(start, 0), min(end, GRID)):
            grid[minute] = True
    return grid


def oracle_status(intervals: list[BusyInterval]) -> list[str]:
    grid = [FREE] * GRID
    for interval in intervals:
        for minute in range(max(interval.start, 0), min(interval.end, GRID)):
            if interval.status == BUSY:
                grid[minute] = BUSY
            elif grid[minute] == FREE:
                grid[minute] = TENTATIVE
    return grid


def render(intervals: list[BusyInterval]) -> list[str]:
    """The minute map of a result; fails if a minute is painted twice."""
    grid = [FREE] * GRID
    for interval in intervals:
        for minute in range(interval.start, interval.end):
            assert grid[minute] == FREE, f"minute {minute} covered twice in {intervals}"
            grid[minute] = interval.status
    return grid


def blocks_of(grid: list[bool]) -> list[tuple[int, int]]:
    """Maximal runs of True: the canonical answer of union."""
    runs: list[tuple[int, int]] = []
    start = None
    for minute, on in enumerate([*grid, False]):
        if on and start is None:
            start = minute
        elif not on and start is not None:
            runs.append((start, minute))
            start = None
    return runs


def assert_canonical_spans(spans: list[tuple[int, int]]) -> None:
    for start, end in spans:
        assert start < end, f"empty or reversed span in {spans}"
    for (_, end), (next_start, _) in zip(spans, spans[1:], strict=False):
        assert end < next_start, f"spans overlap or touch in {spans}"


def assert_canonical_timeline(result: list[BusyInterval]) -> None:
    assert result == sorted(result)
    for interval in result:
        assert interval.start < interval.end, f"empty block {interval}"
        assert interval.status in (BUSY, TENTATIVE)
    for left, right in zip(result, result[1:], strict=False):
        assert left.end <= right.start, f"overlap: {left} {right}"
        if left.end == right.start:
            assert left.status != right.status, f"same-status blocks touch: {left} {right}"


# -- union ---------------------------------------------------------------------


@PROPERTY
@given(raw_spans)
def test_union_matches_grid(spans: list[tuple[int, int]]) -> None:
    result = union(spans)
    assert_canonical_spans(result)
    assert result == blocks_of(paint_spans(spans))


@PROPERTY
@given(raw_spans)
def test_union_is_idempotent_and_order_free(spans: list[tuple[int, int]]) -> None:
    once = union(spans)
    assert union(once) == once
    assert union(list(reversed(spans))) == once


# -- subtract ------------------------------------------------------------------


@PROPERTY
@given(raw_spans, raw_spans)
def test_subtract_matches_grid(spans: list[tuple[int, int]], holes: list[tuple[int, int]]) -> None:
    # subtract's contract: both inputs sorted and disjoint (what union returns).
    base, cut = union(spans), union(holes)
    result = subtract(base, cut)
    # Pieces of one span are split by a hole of positive length and the
    # spans were apart already, so the result is canonical too.
    assert_canonical_spans(result)
    have = paint_spans(base)
    gone = paint_spans(cut)
    expected = [h and not g for h, g in zip(have, gone, strict=True)]
    assert result == blocks_of(expected)


@PROPERTY
@given(disjoint_spans(), disjoint_spans())
def test_subtract_accepts_touching_inputs(
    spans: list[tuple[int, int]], holes: list[tuple[int, int]]
) -> None:
    result = subtract(spans, holes)
    for start, end in result:
        assert start < end
    for (_, end), (next_start, _) in zip(result, result[1:], strict=False):
        assert end <= next_start
    expected = [h and not g for h, g in zip(paint_spans(spans), paint_spans(holes), strict=True)]
    assert paint_spans(result) == expected


@PROPERTY
@given(proper_spans)
def test_subtract_nothing_and_everything(spans: list[tuple[int, int]]) -> None:
    base = union(spans)
    assert subtract(base, []) == base
    assert subtract(base, [(0, GRID)]) == []
    assert subtract([], base) == []


# -- merge_busy ------------------------------------------------------------------


@PROPERTY
@given(busy_intervals)
def test_merge_busy_matches_grid(intervals: list[BusyInterval]) -> None:
    result = merge_busy(intervals)
    assert_canonical_timeline(result)
    assert render(result) == oracle_status(intervals)


@PROPERTY
@given(busy_intervals)
def test_merge_busy_is_idempotent_and_order_free(intervals: list[BusyInterval]) -> None:
    once = merge_busy(intervals)
    assert merge_busy(once) == once
    assert merge_busy(list(reversed(intervals))) == once
    assert merge_busy(iter(intervals)) == once


@PROPERTY
@given(busy_intervals)
def test_merge_busy_blocks_are_maximal(intervals: list[BusyInterval]) -> None:
    """The result is exactly the maximal same-status runs of the oracle map."""
    expected: list[BusyInterval] = []
    grid = oracle_status(intervals)
    for status in (BUSY, TENTATIVE):
        for start, end in blocks_of([g == status for g in grid]):
            expected.append(BusyInterval(start, end, status))
    assert merge_busy(intervals) == sorted(expected)


# -- hand examples -----------------------------------------------------------------


def test_union_examples() -> None:
    assert union([]) == []
    assert union([(5, 5), (7, 3)]) == []
    assert union([(0, 10), (10, 20)]) == [(0, 20)]
    assert union([(10, 20), (0, 5), (3, 12), (30, 40)]) == [(0, 20), (30, 40)]
    assert union([(0, 100), (10, 20)]) == [(0, 100)]


def test_subtract_examples() -> None:
    assert subtract([(0, 100)], [(10, 20), (30, 40)]) == [(0, 10), (20, 30), (40, 100)]
    assert subtract([(0, 10), (20, 30)], [(5, 25)]) == [(0, 5), (25, 30)]
    assert subtract([(0, 10)], [(10, 20)]) == [(0, 10)]
    assert subtract([(10, 20)], [(0, 10), (20, 30)]) == [(10, 20)]
    assert subtract([(10, 20)], [(0, 30)]) == []
    # One long hole spanning several spans.
    assert subtract([(0, 5), (10, 15), (20, 25)], [(3, 22)]) == [(0, 3), (22, 25)]


def test_merge_busy_examples() -> None:
    b, t = BUSY, TENTATIVE
    assert merge_busy([]) == []
    # Back-to-back meetings become one block.
    assert merge_busy([BusyInterval(0, 60, b), BusyInterval(60, 120, b)]) == [
        BusyInterval(0, 120, b)
    ]
    # Busy wins inside a tentative block, splitting it.
    assert merge_busy([BusyInterval(0, 100, t), BusyInterval(40, 60, b)]) == [
        BusyInterval(0, 40, t),
        BusyInterval(40, 60, b),
        BusyInterval(60, 100, t),
    ]
    # Tentative fully under busy disappears.
    assert merge_busy([BusyInterval(0, 100, b), BusyInterval(10, 20, t)]) == [
        BusyInterval(0, 100, b)
    ]
    # Different statuses touching stay separate.
    assert merge_busy([BusyInterval(0, 10, t), BusyInterval(10, 20, b)]) == [
        BusyInterval(0, 10, t),
        BusyInterval(10, 20, b),
    ]
    # Zero-length blocks are dropped.
    assert merge_busy([BusyInterval(5, 5, b), BusyInterval(7, 7, t)]) == []
    # Default status is busy.
    assert merge_busy([BusyInterval(0, 10)]) == [BusyInterval(0, 10, b)]


def test_merge_busy_real_timestamps() -> None:
    """Large Unix seconds behave like the small grid."""
    base = 1_780_000_000
    result = merge_busy([
        BusyInterval(base, base + 3600, TENTATIVE),
        BusyInterval(base + 1800, base + 5400, BUSY),
        BusyInterval(base + 5400, base + 7200, BUSY),
    ])
    assert result == [
        BusyInterval(base, base + 1800, TENTATIVE),
        BusyInterval(base + 1800, base + 7200, BUSY),
    ]


@given(busy_intervals, st.integers(-10, 310), st.integers(0, 120))
def test_overlapping_slices_the_timeline_like_a_filter(
    intervals: list[BusyInterval], start: int, length: int,
) -> None:
    timeline = merge_rows((i.start, i.end, i.status) for i in intervals)
    assert timeline == merge_busy(intervals)
    expected = [b for b in timeline if b.end > start and b.start < start + length]
    assert overlapping(timeline, start, start + length) == expected
