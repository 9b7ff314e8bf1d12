"""Pure interval logic: merging busy time from many sources (no I/O here).

Intervals are half-open [start, end) in integer Unix seconds.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass
from operator import attrgetter

BUSY = "busy"
TENTATIVE = "tentative"


@dataclass(frozen=True, slots=True, order=True)
class BusyInterval:
    start: int
    end: int
    status: str = BUSY


def union(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Merge overlapping and touching spans; empty spans are dropped."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(s for s in spans if s[1] > s[0]):
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def subtract(spans: list[tuple[int, int]], holes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Parts of ``spans`` not covered by ``holes``; both sorted and disjoint."""
    result: list[tuple[int, int]] = []
    hole_index = 0
    for start, end in spans:
        cursor = start
        while hole_index < len(holes) and holes[hole_index][1] <= cursor:
            hole_index += 1
        probe = hole_index
        while probe < len(holes) and holes[probe][0] < end:
            hole_start, hole_end = holes[probe]
            if hole_start > cursor:
                result.append((cursor, hole_start))
            cursor = max(cursor, hole_end)
            probe += 1
        if cursor < end:
            result.append((cursor, end))
    return result


def merge_busy(intervals: Iterable[BusyInterval]) -> list[BusyInterval]:
    """One sorted, non-overlapping timeline; busy wins where it meets tentative.

    Adjacent blocks of the same status are joined, so a calendar app sees one
    block for back-to-back meetings.
    """
    return merge_rows((i.start, i.end, i.status) for i in intervals)


def merge_rows(rows: Iterable[tuple[int, int, str]]) -> list[BusyInterval]:
    """``merge_busy`` over plain (start, end, status) rows, as the store returns them."""
    busy_spans: list[tuple[int, int]] = []
    tentative_spans: list[tuple[int, int]] = []
    for start, end, status in rows:
        (busy_spans if status == BUSY else tentative_spans).append((start, end))
    busy = union(busy_spans)
    tentative = subtract(union(tentative_spans), busy)
    merged = [BusyInterval(s, e, BUSY) for s, e in busy]
    merged += [BusyInterval(s, e, TENTATIVE) for s, e in tentative]
    # Disjoint, so ordered by start alone; a key sorts in C where the dataclass's
    # own ordering would call Python for every comparison.
    merged.sort(key=_START)
    return merged


_START = attrgetter("start")


def overlapping(blocks: list[BusyInterval], start: int, end: int) -> list[BusyInterval]:
    """The blocks of a sorted, disjoint timeline that overlap [start, end)."""
    first = bisect.bisect_right(blocks, start, key=lambda b: b.end)
    last = bisect.bisect_left(blocks, end, key=lambda b: b.start)
    return blocks[first:last]
