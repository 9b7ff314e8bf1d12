"""A multiset of busy rows and their merged blocks, kept up to date by changes (pure).

``RowSet`` holds what one source contributes to a window: its busy rows and
``merge_rows`` of them. A change (rows out, rows in) re-merges only the
stretches of time it touches, so a one-event change costs a few bisects
instead of merging every row again.

Why a local re-merge is exact: call a *stretch* a maximal run of merged blocks
that touch each other (busy next to tentative); together the stretches cover
exactly the union of all rows, and rows in different stretches never meet.
The region of a change is each changed row's span together with every old
stretch it touches. Every row after the change lies wholly inside one region
or touches none (an old row lies in its old stretch, a new row in its own
span), so merging the rows that start inside a region gives that region's new
blocks, and the blocks outside every region stay as they were.

The rows live in two ``array('q')`` and a ``bytearray`` sorted by start,
17 bytes a row instead of the ~130 of a tuple of two ints and a string.
"""

from __future__ import annotations

import bisect
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from operator import itemgetter

from server.booking.availability import BUSY, TENTATIVE, BusyInterval, merge_rows, union

Row = tuple[int, int, str]

_START, _END, _STATUS = itemgetter(0), itemgetter(1), itemgetter(2)
# Past this many rows in one change, sorting everything again is cheaper than
# moving the arrays' tails once per row.
REBUILD_AT = 64


class RowSet:
    """Busy rows (start, end, status) and ``merge_rows`` of them (``blocks``)."""

    __slots__ = ("_ends", "_starts", "_tentative", "blocks")

    def __init__(self, rows: Iterable[Row] = ()) -> None:
        self._starts = array("q")
        self._ends = array("q")
        self._tentative = bytearray()
        self.blocks: list[BusyInterval] = []
        self._load(rows)

    def _load(self, rows: Iterable[Row]) -> None:
        ordered = sorted(rows, key=_START)
        self._starts = array("q", map(_START, ordered))
        self._ends = array("q", map(_END, ordered))
        self._tentative = bytearray(map(TENTATIVE.__eq__, map(_STATUS, ordered)))
        self.blocks = merge_rows(ordered)

    def __len__(self) -> int:
        return len(self._starts)

    def rows(self, first: int = 0, last: int | None = None) -> Iterator[Row]:
        """The rows from index ``first`` to ``last`` (all by default), by start."""
        stop = len(self._starts) if last is None else last
        for index in range(first, stop):
            yield (self._starts[index], self._ends[index],
                   TENTATIVE if self._tentative[index] else BUSY)

    def outside(self, start: int, end: int) -> list[Row]:
        """The rows that do not overlap [start, end): what a window move drops."""
        before = bisect.bisect_left(self._starts, start)
        after = bisect.bisect_left(self._starts, end)
        return [row for row in self.rows(0, before) if row[1] <= start] + \
            list(self.rows(max(before, after)))

    def change(self, removed: Sequence[Row], added: Sequence[Row]) -> None:
        """Take ``removed`` out and put ``added`` in, then re-merge what they touch.

        A removed row must be there: ``KeyError`` otherwise, and the set is then
        left half changed (whoever holds it reads the rows again).
        """
        if not removed and not added:
            return
        if len(removed) + len(added) > REBUILD_AT:
            self._rebuild(removed, added)
            return
        for row in removed:
            self._remove(row)
        for row in added:
            self._insert(row)
        spans = union((row[0], row[1]) for rows in (removed, added) for row in rows)
        self.blocks = self._remerge(spans)

    def _rebuild(self, removed: Sequence[Row], added: Sequence[Row]) -> None:
        counts = Counter(self.rows())
        counts.subtract(removed)
        if any(count < 0 for count in counts.values()):
            raise KeyError("a removed row is not in the set")
        self._load([*counts.elements(), *added])

    def _remove(self, row: Row) -> None:
        start, end, status = row
        tentative = status != BUSY
        index = bisect.bisect_left(self._starts, start)
        while index < len(self._starts) and self._starts[index] == start:
            if self._ends[index] == end and bool(self._tentative[index]) == tentative:
                del self._starts[index], self._ends[index], self._tentative[index]
                return
            index += 1
        raise KeyError(row)

    def _insert(self, row: Row) -> None:
        index = bisect.bisect_right(self._starts, row[0])
        self._starts.insert(index, row[0])
        self._ends.insert(index, row[1])
        self._tentative.insert(index, row[2] != BUSY)

    def _remerge(self, spans: list[tuple[int, int]]) -> list[BusyInterval]:
        """The blocks with every region of ``spans`` merged again from its rows."""
        old = self.blocks
        merged: list[BusyInterval] = []
        kept = 0  # old blocks before this index are copied or replaced already
        for low, high, first, last in _regions(old, spans):
            merged += old[kept:first]
            rows_from = bisect.bisect_left(self._starts, low)
            rows_to = bisect.bisect_right(self._starts, high)
            merged += merge_rows(self.rows(rows_from, rows_to))
            kept = last
        merged += old[kept:]
        return merged


def _regions(blocks: list[BusyInterval], spans: list[tuple[int, int]],
             ) -> list[tuple[int, int, int, int]]:
    """Each span grown by the stretches of ``blocks`` it touches, regions that meet
    joined: (low, high, index of the region's first block, index after its last)."""
    regions: list[tuple[int, int, int, int]] = []
    for low, high in spans:
        first = bisect.bisect_left(blocks, low, key=lambda b: b.end)  # first with end >= low
        last = bisect.bisect_right(blocks, high, key=lambda b: b.start)  # first with start > high
        if first < last:
            while first > 0 and blocks[first - 1].end == blocks[first].start:
                first -= 1
            while last < len(blocks) and blocks[last - 1].end == blocks[last].start:
                last += 1
            low, high = min(low, blocks[first].start), max(high, blocks[last - 1].end)
        if regions and low <= regions[-1][1]:
            previous = regions.pop()
            low, high = min(low, previous[0]), max(high, previous[1])
            first = min(first, previous[2])
            last = max(last, previous[3])
        regions.append((low, high, first, last))
    return regions
