"""Each source's busy rows in the served window, kept current change by change.

A calendar's merged timeline is the merge of its sources' merged blocks (a few
hundred a source, where the rows behind them are thousands). Each source's
rows in the window and their blocks are held in a ``RowSet`` with the
source's generation (``sources.generation``, moved by every write that changes
its instances, whichever process makes it). When a query finds it moved:

- every step in between was committed through this store (the store's change
  log has them): the rows they took out and put in are applied, and only the
  stretches of time they touch are merged again;
- otherwise (another process or instance wrote, or a step too large to log):
  that source's rows are read again, and only that source's.

When the served window moves on (each hour), the rows leaving it are dropped
and only those entering it are read. Every read of rows comes with the
generation it is of, so steps are never applied twice.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from server.booking.availability import BusyInterval, merge_rows
from server.booking.row_set import Row, RowSet
from server.store import Store


@dataclass(slots=True)
class SourceTimeline:
    generation: int | None  # None: of no known generation, read again next time
    window: tuple[int, int]
    rows: RowSet


class SourceTimelines:
    """Per source id: its rows in a window and their merged blocks."""

    def __init__(self) -> None:
        self._held: dict[int, SourceTimeline] = {}
        # One update of a source at a time: two calendars may share it.
        self._locks: dict[int, asyncio.Lock] = {}

    def __len__(self) -> int:
        return len(self._held)

    def clear(self) -> None:
        self._held.clear()

    def held(self, source_id: int) -> SourceTimeline | None:
        return self._held.get(source_id)

    async def merged(self, store: Store, source_ids: list[int],
                     window: tuple[int, int]) -> list[BusyInterval]:
        """The merged busy blocks of these sources' instances overlapping ``window``."""
        generations = await store.source_generations()
        blocks = [await self.blocks(store, source, generations.get(source), window)
                  for source in source_ids]
        if len(blocks) == 1:
            return list(blocks[0])
        return merge_rows((b.start, b.end, b.status) for part in blocks for b in part)

    async def blocks(self, store: Store, source_id: int, generation: int | None,
                     window: tuple[int, int]) -> list[BusyInterval]:
        """One source's merged blocks in ``window``, of ``generation`` or a later one."""
        lock = self._locks.setdefault(source_id, asyncio.Lock())
        async with lock:
            held = await _current(store, source_id, self._held.get(source_id), generation,
                                  window)
            self._held[source_id] = held
            return held.rows.blocks


async def _current(store: Store, source_id: int, held: SourceTimeline | None,
                   generation: int | None, window: tuple[int, int]) -> SourceTimeline:
    if held is not None and not _covers(held.generation, generation):
        held = _stepped(store, source_id, held, generation)
    if held is not None and held.window != window:
        held = await _moved(store, source_id, held, window)
    if held is None or not _covers(held.generation, generation):
        read, rows = await store.source_rows(source_id, window)
        held = SourceTimeline(read, window, RowSet(rows))
    return held


def _covers(held: int | None, wanted: int | None) -> bool:
    """Rows of generation ``held`` will do for ``wanted`` (a later one will too)."""
    return held is not None and wanted is not None and held >= wanted


def _stepped(store: Store, source_id: int, held: SourceTimeline,
             generation: int | None) -> SourceTimeline | None:
    """``held`` brought to ``generation`` by the logged steps, or None if it cannot be."""
    if held.generation is None or generation is None:
        return None
    steps = store.instance_changes(source_id, held.generation, generation)
    if steps is None:
        return None
    try:
        for removed, added in steps:
            held.rows.change(_within(removed, held.window), _within(added, held.window))
    except KeyError:  # not the rows the log says were there: read them again
        return None
    held.generation = generation
    return held


async def _moved(store: Store, source_id: int, held: SourceTimeline,
                 window: tuple[int, int]) -> SourceTimeline | None:
    """``held`` moved to ``window``: the rows leaving it dropped, those entering it read."""
    if held.generation is None or not (held.window[0] < window[1] and
                                       window[0] < held.window[1]):
        return None
    read, entering = await store.source_rows(source_id, window, besides=held.window)
    if read != held.generation:  # it changed meanwhile: read it all again
        return None
    try:
        held.rows.change(held.rows.outside(*window), entering)
    except KeyError:
        return None
    held.window = window
    return held


def _within(rows: tuple[Row, ...], window: tuple[int, int]) -> list[Row]:
    return [row for row in rows if row[1] > window[0] and row[0] < window[1]]
