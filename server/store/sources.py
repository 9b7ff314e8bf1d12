"""Sources, their items and the busy instances expanded from them."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from server.errors import StoreError
from server.store.connection import StoreBase
from server.store.database import Session
from server.store.instance_log import Row
from server.store.leases import Fence, check_fence
from server.store.records import _SOURCE_COLUMNS, SourceRecord, StoredItem, _source_record

# A write changing more items than this keeps no account of the rows it took out
# (one more statement a round): readers of the source then read it again.
LOGGED_ITEMS = 256
# How often a source's rows are read again when it changed while they were read.
READ_ATTEMPTS = 3


class SourceQueries(StoreBase):
    """Store methods for sources, their items and instances."""

    # -- sources ---------------------------------------------------------

    async def ensure_source(self, name: str, kind: str) -> int:
        """The id of source ``name``; a changed kind starts it afresh."""
        async with self._transaction(busy_changes=True) as db:
            row = await db.fetchone("SELECT id, kind FROM sources WHERE name = ?", (name,))
            if row is not None and row[1] == kind:
                return int(row[0])
            if row is not None:
                await db.execute("DELETE FROM sources WHERE id = ?", (row[0],))
            new_row = await db.fetchone(
                "INSERT INTO sources (name, kind) VALUES (?, ?) RETURNING id", (name, kind))
            assert new_row is not None
            return int(new_row[0])

    async def source(self, source_id: int) -> SourceRecord:
        row = await self._reader.fetchone(
            f"SELECT {_SOURCE_COLUMNS} FROM sources WHERE id = ?", (source_id,))
        if row is None:
            raise StoreError(f"no source with id {source_id}")
        return _source_record(row)

    async def sources(self, *, max_age: float = 0.0) -> list[SourceRecord]:
        """Every source's record; ``max_age`` > 0 may answer from a read that recent.

        Feeds and the API report freshness on every answer; a second-old read
        saves them a database round trip each. A write through this store drops
        that read, so only another process's changes (``fbproxy sync``) can take
        ``max_age`` to show; on a shared database every call reads.
        """
        read_at, records = self._sources_seen
        # Shared (several instances): read every time, as the change counters are. A
        # second-old read there may predate another instance's first sync of a source,
        # and a booking would then find nothing known yet and refuse a free slot.
        if max_age <= 0 or self._db.shared or time.monotonic() - read_at >= max_age:
            rows = await self._reader.fetchall(f"SELECT {_SOURCE_COLUMNS} FROM sources")
            # Sorted here: PostgreSQL's collation may order names differently from SQLite.
            records = sorted((_source_record(row) for row in rows), key=lambda r: r.name)
            self._sources_seen = (time.monotonic(), records)
        return list(records)

    async def source_generations(self) -> dict[int, int]:
        """Each source's generation: it moves with every change to its instances."""
        rows = await self._reader.fetchall("SELECT id, generation FROM sources")
        return {int(source): int(generation) for source, generation in rows}

    async def source_rows(self, source_id: int, window: tuple[int, int], *,
                          besides: tuple[int, int] | None = None,
                          ) -> tuple[int | None, list[Row]]:
        """The source's instances overlapping ``window`` (those overlapping ``besides``
        left out: a window already held), and the generation they are of.

        The generation is read before and after the rows; None when it moved
        in between however often they were read, or there is no such source.
        """
        sql, args = _window_rows(source_id, window, besides)
        rows: list[Row] = []
        for _ in range(READ_ATTEMPTS):
            before = await self._generation(source_id)
            # Rows as the driver gives them (tuples, asyncpg Records): both index alike.
            rows = await self._reader.fetchall(sql, args)  # type: ignore[assignment]
            if before is not None and await self._generation(source_id) == before:
                return before, rows
        return None, rows

    async def _generation(self, source_id: int) -> int | None:
        row = await self._reader.fetchone("SELECT generation FROM sources WHERE id = ?",
                                          (source_id,))
        return int(row[0]) if row else None

    async def item_hashes(self, source_id: int) -> dict[str, str]:
        rows = await self._reader.fetchall(
            "SELECT item_key, content_hash FROM items WHERE source_id = ?", (source_id,))
        return {key: digest for key, digest in rows}

    async def items(self, source_id: int) -> list[tuple[str, str, str]]:
        """Every stored item: (key, iCalendar text, content hash)."""
        rows = await self._reader.fetchall(
            "SELECT item_key, ical, content_hash FROM items WHERE source_id = ?", (source_id,))
        return [(key, ical, digest) for key, ical, digest in rows]

    async def recurring_items(self, source_id: int) -> list[tuple[str, str]]:
        rows = await self._reader.fetchall(
            "SELECT item_key, ical FROM items WHERE source_id = ? AND recurring = 1", (source_id,))
        return [(key, ical) for key, ical in rows]

    # -- writes ------------------------------------------------------------

    async def apply_changes(
        self, source_id: int, *, upserts: Sequence[StoredItem], deletes: Sequence[str],
        state: dict[str, Any], now: int, window_end: int | None, fence: Fence | None = None,
    ) -> None:
        """Apply one sync round atomically and mark the source healthy."""
        changed = bool(upserts) or bool(deletes)

        async def write(db: Session) -> tuple[int | None, list[Row] | None]:
            await check_fence(db, source_id, fence)
            removed: list[Row] | None = []
            generation = None
            if changed:
                removed = await _rows_of(db, source_id, {*deletes, *(i.key for i in upserts)})
                generation = await _next_generation(db, source_id)
            await db.executemany(
                "DELETE FROM items WHERE source_id = ? AND item_key = ?",
                ((source_id, key) for key in deletes))
            await self._write_items(db, source_id, upserts)
            last_change = "?" if upserts or deletes else "COALESCE(last_change, ?)"
            await db.execute(
                f"""UPDATE sources SET state = ?, last_attempt = ?, last_success = ?,
                       last_change = {last_change},
                       last_error = NULL, consecutive_failures = 0, needs_reauth = 0,
                       window_end = COALESCE(?, window_end),
                       item_count = (SELECT COUNT(*) FROM items WHERE source_id = ?)
                   WHERE id = ?""",
                (json.dumps(state), now, now, now, window_end, source_id, source_id))
            return generation, removed

        # One go (the write lock held for the statements alone): rounds run while
        # bookings wait for the same lock.
        generation, removed = await self._run_transaction(write, busy_changes=changed)
        if generation is not None:
            self._instance_log.record(source_id, generation, removed, _rows(upserts))

    async def replace_instances(self, source_id: int, items: Sequence[StoredItem],
                                window_end: int, *, fence: Fence | None = None) -> None:
        """Re-store the instances of recurring items when the window moves on."""
        async def write(db: Session) -> tuple[int, list[Row] | None]:
            await check_fence(db, source_id, fence)
            removed = await _rows_of(db, source_id, {item.key for item in items})
            generation = await _next_generation(db, source_id)
            await self._write_items(db, source_id, items)
            await db.execute("UPDATE sources SET window_end = ? WHERE id = ?",
                             (window_end, source_id))
            return generation, removed

        generation, removed = await self._run_transaction(write, busy_changes=True)
        self._instance_log.record(source_id, generation, removed, _rows(items))

    @staticmethod
    async def _write_items(db: Session, source_id: int,
                           items: Sequence[StoredItem]) -> None:
        await db.executemany(
            "DELETE FROM instances WHERE source_id = ? AND item_key = ?",
            ((source_id, item.key) for item in items))
        await db.executemany(
            """INSERT INTO items (source_id, item_key, ical, content_hash, etag, recurring)
               VALUES (?, ?, ?, ?, ?, ?)
               ON CONFLICT (source_id, item_key) DO UPDATE SET ical = excluded.ical,
                   content_hash = excluded.content_hash, etag = excluded.etag,
                   recurring = excluded.recurring""",
            ((source_id, i.key, i.ical, i.content_hash, i.etag, int(i.recurring)) for i in items))
        await db.executemany(
            "INSERT INTO instances (source_id, item_key, start_ts, end_ts, status) "
            "VALUES (?, ?, ?, ?, ?)",
            ((source_id, i.key, row.start, row.end, row.status)
             for i in items for row in i.instances))
        longest = max((row.end - row.start for i in items for row in i.instances), default=0)
        # Only ever grows: an upper bound is all busy queries need (see _busy_rows).
        await db.execute("UPDATE sources SET max_span = ? WHERE id = ? AND max_span < ?",
                         (longest, source_id, longest))

    async def record_unchanged(self, source_id: int, *, state: dict[str, Any], now: int,
                               fence: Fence | None = None) -> None:
        async def write(db: Session) -> None:
            await check_fence(db, source_id, fence)
            await db.execute(
                """UPDATE sources SET state = ?, last_attempt = ?, last_success = ?,
                       last_error = NULL, consecutive_failures = 0, needs_reauth = 0
                   WHERE id = ?""", (json.dumps(state), now, now, source_id))

        await self._run_transaction(write)

    async def record_failure(self, source_id: int, *, error: str, now: int,
                             needs_reauth: bool = False) -> int:
        """Remember a failed round; returns the number of failures in a row."""
        async def write(db: Session) -> int:
            row = await db.fetchone(
                """UPDATE sources SET last_attempt = ?, last_error = ?,
                       consecutive_failures = consecutive_failures + 1, needs_reauth = ?
                   WHERE id = ? RETURNING consecutive_failures""",
                (now, error[:2000], int(needs_reauth), source_id))
            return int(row[0]) if row else 0

        return await self._run_transaction(write)

    async def prune_instances(self, source_id: int, *, before: int) -> int:
        """Drop instances that ended before ``before``; they can never matter again."""
        async def prune(db: Session) -> tuple[int | None, list[Row]]:
            removed = [(int(start), int(end), str(status)) for start, end, status in
                       await db.fetchall("DELETE FROM instances WHERE source_id = ? AND "
                                         "end_ts < ? RETURNING start_ts, end_ts, status",
                                         (source_id, before))]
            return (await _next_generation(db, source_id) if removed else None), removed

        generation, removed = await self._run_transaction(prune, busy_changes=True)
        if generation is not None:
            self._instance_log.record(source_id, generation, removed, [])
        return len(removed)

    async def instance_counts(self) -> dict[int, int]:
        """Busy instances stored per source id (for the status page)."""
        rows = await self._reader.fetchall(
            "SELECT source_id, COUNT(*) FROM instances GROUP BY source_id")
        return {int(source): int(count) for source, count in rows}

    async def record_duration(self, source_id: int, seconds: float) -> None:
        async def write(db: Session) -> None:
            await db.execute("UPDATE sources SET last_duration_ms = ? WHERE id = ?",
                             (int(seconds * 1000), source_id))

        await self._run_transaction(write)

    async def durations(self) -> dict[int, int]:
        """The last sync round's duration per source id, in milliseconds."""
        rows = await self._reader.fetchall(
            "SELECT id, last_duration_ms FROM sources WHERE last_duration_ms IS NOT NULL")
        return {int(source): int(ms) for source, ms in rows}


async def _next_generation(db: Session, source_id: int) -> int:
    """Move the source's generation on (its instances change in this transaction)."""
    row = await db.fetchone(
        "UPDATE sources SET generation = generation + 1 WHERE id = ? RETURNING generation",
        (source_id,))
    return int(row[0]) if row else 0


async def _rows_of(db: Session, source_id: int, keys: set[str]) -> list[Row] | None:
    """The instances these items have now; None when there are too many items."""
    if len(keys) > LOGGED_ITEMS:
        return None
    if not keys:
        return []
    marks = ",".join("?" * len(keys))
    rows = await db.fetchall(
        f"SELECT start_ts, end_ts, status FROM instances "
        f"WHERE source_id = ? AND item_key IN ({marks})", (source_id, *sorted(keys)))
    return [(int(start), int(end), str(status)) for start, end, status in rows]


def _rows(items: Sequence[StoredItem]) -> list[Row]:
    return [(row.start, row.end, row.status) for item in items for row in item.instances]


def _window_rows(source_id: int, window: tuple[int, int],
                 besides: tuple[int, int] | None) -> tuple[str, list[object]]:
    """The statement reading a source's rows overlapping ``window`` and not ``besides``.

    Each part reads the index on (source_id, end_ts) between two bounds: a row
    overlapping [start, end) ends before end + the source's longest instance.
    """
    start, end = window
    longest = "(SELECT max_span FROM sources WHERE id = ?)"
    if besides is None:
        return (f"""SELECT start_ts, end_ts, status FROM instances
                    WHERE source_id = ? AND end_ts > ? AND start_ts < ?
                      AND end_ts < ? + {longest}""",
                [source_id, start, end, end, source_id])
    held_start, held_end = besides
    # Those ending before the held window, and those starting after it.
    return (f"""SELECT start_ts, end_ts, status FROM instances
                WHERE source_id = ? AND end_ts > ? AND end_ts <= ? AND start_ts < ?
                UNION ALL
                SELECT start_ts, end_ts, status FROM instances
                WHERE source_id = ? AND end_ts > ? AND start_ts >= ? AND start_ts < ?
                  AND end_ts < ? + {longest}""",
            [source_id, start, held_start, end,
             source_id, max(start, held_end), held_end, end, end, source_id])
