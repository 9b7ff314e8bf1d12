"""The SQLite store: schema, migrations and every SQL statement fbproxy runs.

Two connections: one writer (serialised by a lock, each change one
``BEGIN IMMEDIATE`` transaction) and one reader, which under WAL sees only
committed data, so a half-applied sync is never visible to an output.
Times are stored as integer Unix seconds (UTC).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from server.errors import StoreError

STATUS_BUSY = "busy"
STATUS_TENTATIVE = "tentative"

# Each entry moves the schema one version forward; never edit a released step.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE sources (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT '{}',
        last_attempt INTEGER,
        last_success INTEGER,
        last_change INTEGER,
        last_error TEXT,
        consecutive_failures INTEGER NOT NULL DEFAULT 0,
        needs_reauth INTEGER NOT NULL DEFAULT 0,
        item_count INTEGER NOT NULL DEFAULT 0,
        window_end INTEGER
    );
    CREATE TABLE items (
        id INTEGER PRIMARY KEY,
        source_id INTEGER NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
        item_key TEXT NOT NULL,
        ical TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        etag TEXT,
        recurring INTEGER NOT NULL DEFAULT 0,
        UNIQUE (source_id, item_key)
    );
    CREATE TABLE instances (
        source_id INTEGER NOT NULL,
        item_key TEXT NOT NULL,
        start_ts INTEGER NOT NULL,
        end_ts INTEGER NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('busy', 'tentative')),
        CHECK (end_ts > start_ts),
        FOREIGN KEY (source_id, item_key) REFERENCES items (source_id, item_key)
            ON DELETE CASCADE
    );
    CREATE INDEX instances_by_item ON instances (source_id, item_key);
    CREATE INDEX instances_by_range ON instances (source_id, end_ts, start_ts, status);
    CREATE TABLE calendar_secrets (
        calendar TEXT PRIMARY KEY,
        secret TEXT NOT NULL,
        created INTEGER NOT NULL
    );
    """,
    # 2: a counter of busy-time changes kept in the database, so that a server
    # sees what `fbproxy sync` (another process) changed and drops its caches.
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
    INSERT INTO meta (key, value) VALUES ('busy_generation', 0);
    """,
    # 3: bookings, and the time each one takes from each calendar (host, resources).
    """
    CREATE TABLE bookings (
        id TEXT PRIMARY KEY,
        page TEXT NOT NULL,
        host TEXT NOT NULL,
        start_ts INTEGER NOT NULL,
        end_ts INTEGER NOT NULL,
        guest_name TEXT NOT NULL,
        guest_email TEXT NOT NULL,
        answers TEXT NOT NULL DEFAULT '{}',
        cancel_secret TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('confirmed', 'cancelled')),
        created INTEGER NOT NULL,
        cancelled INTEGER,
        CHECK (end_ts > start_ts)
    );
    CREATE INDEX bookings_by_host ON bookings (host, start_ts);
    CREATE TABLE booking_blocks (
        booking_id TEXT NOT NULL REFERENCES bookings(id) ON DELETE CASCADE,
        calendar TEXT NOT NULL,
        start_ts INTEGER NOT NULL,
        end_ts INTEGER NOT NULL,
        CHECK (end_ts > start_ts)
    );
    CREATE INDEX booking_blocks_by_calendar ON booking_blocks (calendar, end_ts, start_ts);
    """,
    # 4: the hold outbox, written in the booking's own transaction.
    """
    CREATE TABLE hold_outbox (
        booking_id TEXT NOT NULL REFERENCES bookings(id),
        host TEXT NOT NULL,
        action TEXT NOT NULL CHECK (action IN ('write', 'delete')),
        source TEXT NOT NULL,
        calendar TEXT,
        hold TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt INTEGER NOT NULL,
        last_error TEXT,
        ref TEXT,
        etag TEXT,
        PRIMARY KEY (booking_id, host, action)
    );
    CREATE INDEX hold_outbox_due ON hold_outbox (state, next_attempt);
    """,
    # 5: what the guest was shown: one video link per booking, and their time zone.
    """
    ALTER TABLE bookings ADD COLUMN video_link TEXT NOT NULL DEFAULT '';
    ALTER TABLE bookings ADD COLUMN guest_timezone TEXT NOT NULL DEFAULT '';
    """,
)


@dataclass(frozen=True, slots=True)
class BusyRow:
    start: int
    end: int
    status: str


@dataclass(frozen=True, slots=True)
class StoredItem:
    """An item ready to store, with the busy instances expanded from it."""

    key: str
    ical: str
    content_hash: str
    etag: str | None
    recurring: bool
    instances: tuple[BusyRow, ...]
    # Not stored: which booking this item is the upstream hold of, if any.
    hold_booking: str | None = None


@dataclass(frozen=True, slots=True)
class SourceRecord:
    id: int
    name: str
    kind: str
    state: dict[str, Any]
    last_attempt: int | None
    last_success: int | None
    last_change: int | None
    last_error: str | None
    consecutive_failures: int
    needs_reauth: bool
    item_count: int
    window_end: int | None


_SOURCE_COLUMNS = (
    "id, name, kind, state, last_attempt, last_success, last_change, last_error, "
    "consecutive_failures, needs_reauth, item_count, window_end"
)


def _source_record(row: Sequence[Any]) -> SourceRecord:
    return SourceRecord(
        id=row[0], name=row[1], kind=row[2], state=json.loads(row[3]), last_attempt=row[4],
        last_success=row[5], last_change=row[6], last_error=row[7],
        consecutive_failures=row[8], needs_reauth=bool(row[9]), item_count=row[10],
        window_end=row[11],
    )


class Store:
    """All persistent state. Create with ``await Store.open(path)``."""

    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection) -> None:
        self._writer = writer
        self._reader = reader
        self._write_lock = asyncio.Lock()
        # Busy-time commits made here, and the last database counter read, so
        # that a cache check is usually free (see busy_generation).
        self._local_changes = 0
        self._seen: tuple[float, int] = (-1e9, 0)

    @classmethod
    async def open(cls, path: Path) -> Store:
        _prepare_file(path)
        try:
            writer = await _connect(path)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open database {path}: {exc}") from exc
        try:
            await _migrate(writer)
            reader = await _connect(path)
        except BaseException as exc:
            await writer.close()
            if isinstance(exc, sqlite3.DatabaseError):
                raise StoreError(f"cannot open database {path}: {exc}") from exc
            raise
        return cls(writer, reader)

    async def close(self) -> None:
        await self._reader.close()
        await self._writer.close()

    @asynccontextmanager
    async def _transaction(self, *, busy_changes: bool = False,
                           ) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction; ``busy_changes`` marks it as changing busy time."""
        async with self._write_lock:
            await self._writer.execute("BEGIN IMMEDIATE")
            try:
                yield self._writer
                if busy_changes:
                    await self._writer.execute(
                        "UPDATE meta SET value = value + 1 WHERE key = 'busy_generation'")
            except BaseException:
                await self._writer.execute("ROLLBACK")
                raise
            await self._writer.execute("COMMIT")
            if busy_changes:
                self._local_changes += 1

    async def busy_generation(self, *, max_age: float = 1.0) -> tuple[int, int]:
        """A key that changes whenever busy time changes, here or in another process.

        Output caches key on it. A change made through this store shows at
        once; one made by another process (`fbproxy sync`) within ``max_age``
        seconds, so a cached feed costs no database round trip per request.
        """
        read_at, value = self._seen
        if time.monotonic() - read_at >= max_age:
            cursor = await self._reader.execute(
                "SELECT value FROM meta WHERE key = 'busy_generation'")
            row = await cursor.fetchone()
            value = int(row[0]) if row else 0
            self._seen = (time.monotonic(), value)
        return value, self._local_changes

    # -- sources ---------------------------------------------------------

    async def ensure_source(self, name: str, kind: str) -> int:
        """The id of source ``name``; a changed kind starts it afresh."""
        async with self._transaction(busy_changes=True) as db:
            cursor = await db.execute("SELECT id, kind FROM sources WHERE name = ?", (name,))
            row = await cursor.fetchone()
            if row is not None and row[1] == kind:
                return int(row[0])
            if row is not None:
                await db.execute("DELETE FROM sources WHERE id = ?", (row[0],))
            cursor = await db.execute(
                "INSERT INTO sources (name, kind) VALUES (?, ?) RETURNING id", (name, kind))
            new_row = await cursor.fetchone()
            assert new_row is not None
            return int(new_row[0])

    async def source(self, source_id: int) -> SourceRecord:
        cursor = await self._reader.execute(
            f"SELECT {_SOURCE_COLUMNS} FROM sources WHERE id = ?", (source_id,))
        row = await cursor.fetchone()
        if row is None:
            raise StoreError(f"no source with id {source_id}")
        return _source_record(row)

    async def sources(self) -> list[SourceRecord]:
        cursor = await self._reader.execute(f"SELECT {_SOURCE_COLUMNS} FROM sources ORDER BY name")
        return [_source_record(row) for row in await cursor.fetchall()]

    async def item_hashes(self, source_id: int) -> dict[str, str]:
        cursor = await self._reader.execute(
            "SELECT item_key, content_hash FROM items WHERE source_id = ?", (source_id,))
        return {key: digest for key, digest in await cursor.fetchall()}

    async def recurring_items(self, source_id: int) -> list[tuple[str, str]]:
        cursor = await self._reader.execute(
            "SELECT item_key, ical FROM items WHERE source_id = ? AND recurring = 1", (source_id,))
        return [(key, ical) for key, ical in await cursor.fetchall()]

    # -- writes ------------------------------------------------------------

    async def apply_changes(
        self, source_id: int, *, upserts: Sequence[StoredItem], deletes: Sequence[str],
        state: dict[str, Any], now: int, window_end: int | None,
    ) -> None:
        """Apply one sync round atomically and mark the source healthy."""
        async with self._transaction(busy_changes=bool(upserts) or bool(deletes)) as db:
            await db.executemany(
                "DELETE FROM items WHERE source_id = ? AND item_key = ?",
                ((source_id, key) for key in deletes))
            await self._write_items(db, source_id, upserts)
            changed = 1 if upserts or deletes else 0
            await db.execute(
                """UPDATE sources SET state = ?, last_attempt = ?, last_success = ?,
                       last_change = CASE WHEN ? THEN ? ELSE COALESCE(last_change, ?) END,
                       last_error = NULL, consecutive_failures = 0, needs_reauth = 0,
                       window_end = COALESCE(?, window_end),
                       item_count = (SELECT COUNT(*) FROM items WHERE source_id = ?)
                   WHERE id = ?""",
                (json.dumps(state), now, now, changed, now, now, window_end, source_id, source_id))

    async def replace_instances(self, source_id: int, items: Sequence[StoredItem],
                                window_end: int) -> None:
        """Re-store the instances of recurring items when the window moves on."""
        async with self._transaction(busy_changes=True) as db:
            await self._write_items(db, source_id, items)
            await db.execute("UPDATE sources SET window_end = ? WHERE id = ?",
                             (window_end, source_id))

    @staticmethod
    async def _write_items(db: aiosqlite.Connection, source_id: int,
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

    async def record_unchanged(self, source_id: int, *, state: dict[str, Any], now: int) -> None:
        async with self._transaction() as db:
            await db.execute(
                """UPDATE sources SET state = ?, last_attempt = ?, last_success = ?,
                       last_error = NULL, consecutive_failures = 0, needs_reauth = 0
                   WHERE id = ?""", (json.dumps(state), now, now, source_id))

    async def record_failure(self, source_id: int, *, error: str, now: int,
                             needs_reauth: bool = False) -> int:
        """Remember a failed round; returns the number of failures in a row."""
        async with self._transaction() as db:
            cursor = await db.execute(
                """UPDATE sources SET last_attempt = ?, last_error = ?,
                       consecutive_failures = consecutive_failures + 1, needs_reauth = ?
                   WHERE id = ? RETURNING consecutive_failures""",
                (now, error[:2000], int(needs_reauth), source_id))
            row = await cursor.fetchone()
            return int(row[0]) if row else 0

    async def prune_instances(self, source_id: int, *, before: int) -> int:
        """Drop instances that ended before ``before``; they can never matter again."""
        async with self._transaction(busy_changes=True) as db:
            cursor = await db.execute(
                "DELETE FROM instances WHERE source_id = ? AND end_ts < ?", (source_id, before))
            return cursor.rowcount

    # -- reads for outputs -------------------------------------------------

    async def busy_rows(self, source_ids: Sequence[int], start: int, end: int,
                        calendars: Sequence[str] = ()) -> list[tuple[int, int, str]]:
        """(start, end, status) of the busy time overlapping [start, end).

        That is every instance of these sources plus the time bookings hold in
        these calendars. Plain tuples: a merged calendar reads tens of
        thousands of rows, and an object per row doubled the cost of a query.
        """
        return await _busy_rows(self._reader, source_ids, calendars, start, end)

    @asynccontextmanager
    async def booking_transaction(self) -> AsyncIterator[BookingTransaction]:
        """One write transaction to check a slot and book it: nobody books in between."""
        async with self._transaction(busy_changes=True) as db:
            yield BookingTransaction(db)

    async def cancel_booking(self, booking_id: str, *, now: int) -> bool:
        """Free a booking's time at once and queue the removal of its holds."""
        async with self._transaction(busy_changes=True) as db:
            cursor = await db.execute(
                "UPDATE bookings SET status = 'cancelled', cancelled = ? "
                "WHERE id = ? AND status = 'confirmed'", (now, booking_id))
            await db.execute("DELETE FROM booking_blocks WHERE booking_id = ?", (booking_id,))
            await db.execute(
                """INSERT OR IGNORE INTO hold_outbox
                       (booking_id, host, action, source, calendar, hold, next_attempt)
                   SELECT booking_id, host, 'delete', source, calendar, hold, ?
                   FROM hold_outbox WHERE booking_id = ? AND action = 'write'""",
                (now, booking_id))
            return cursor.rowcount == 1

    async def due_holds(self, now: int, limit: int = 50) -> list[OutboxRow]:
        cursor = await self._reader.execute(
            f"""SELECT {_OUTBOX_COLUMNS} FROM hold_outbox
                WHERE state = 'pending' AND next_attempt <= ?
                ORDER BY next_attempt LIMIT ?""", (now, limit))
        return [OutboxRow(*row) for row in await cursor.fetchall()]

    async def write_ref(self, booking_id: str, host: str) -> tuple[str | None, str | None]:
        """Where the write of this hold landed (ref, etag), if it did."""
        cursor = await self._reader.execute(
            "SELECT ref, etag FROM hold_outbox WHERE booking_id = ? AND host = ? "
            "AND action = 'write' AND state = 'done'", (booking_id, host))
        row = await cursor.fetchone()
        return (row[0], row[1]) if row else (None, None)

    async def hold_delivered(self, row: OutboxRow, *, ref: str | None,
                             etag: str | None) -> None:
        async with self._transaction() as db:
            await db.execute(
                """UPDATE hold_outbox SET state = 'done', attempts = attempts + 1, ref = ?,
                       etag = ?, last_error = NULL
                   WHERE booking_id = ? AND host = ? AND action = ?""",
                (ref, etag, row.booking_id, row.host, row.action))

    async def hold_pending(self, row: OutboxRow) -> bool:
        cursor = await self._reader.execute(
            "SELECT 1 FROM hold_outbox WHERE booking_id = ? AND host = ? AND action = ? "
            "AND state = 'pending'", (row.booking_id, row.host, row.action))
        return await cursor.fetchone() is not None

    async def retire_write(self, booking_id: str, host: str) -> None:
        """A booking cancelled before its hold was written: never write it."""
        async with self._transaction() as db:
            await db.execute(
                """UPDATE hold_outbox SET state = 'done', last_error = 'cancelled before delivery'
                   WHERE booking_id = ? AND host = ? AND action = 'write'
                   AND state = 'pending'""", (booking_id, host))

    async def hold_failed(self, row: OutboxRow, *, error: str, retry_at: int) -> None:
        async with self._transaction() as db:
            await db.execute(
                """UPDATE hold_outbox SET attempts = attempts + 1, last_error = ?,
                       next_attempt = ?
                   WHERE booking_id = ? AND host = ? AND action = ?""",
                (error[:2000], retry_at, row.booking_id, row.host, row.action))

    async def hold_summary(self) -> list[tuple[str, str, int, str | None]]:
        """(action, state, count, a last error) per action and state, for `fbproxy status`."""
        cursor = await self._reader.execute(
            """SELECT action, state, COUNT(*), MAX(last_error) FROM hold_outbox
               GROUP BY action, state ORDER BY action, state""")
        return [(a, s, int(n), e) for a, s, n, e in await cursor.fetchall()]

    async def undelivered_holds(self, limit: int = 50) -> list[PendingHold]:
        """Holds not yet written or removed upstream, oldest first (for `fbproxy status`)."""
        cursor = await self._reader.execute(
            """SELECT booking_id, host, action, source, attempts, next_attempt, last_error
               FROM hold_outbox WHERE state = 'pending' ORDER BY next_attempt LIMIT ?""",
            (limit,))
        return [PendingHold(*row) for row in await cursor.fetchall()]

    async def booking_starts(self, host: str, start: int, end: int) -> list[int]:
        """Start times of the host's confirmed bookings in [start, end) (daily limits)."""
        return await _booking_starts(self._reader, host, start, end)

    async def known_bookings(self, booking_ids: set[str]) -> set[str]:
        """Which of these ids are bookings of this fbproxy (any status)."""
        if not booking_ids:
            return set()
        ids = sorted(booking_ids)
        cursor = await self._reader.execute(
            f"SELECT id FROM bookings WHERE id IN ({','.join('?' * len(ids))})", ids)
        return {str(row[0]) for row in await cursor.fetchall()}

    async def booking(self, booking_id: str) -> BookingRecord | None:
        cursor = await self._reader.execute(
            f"SELECT {_BOOKING_COLUMNS} FROM bookings WHERE id = ?", (booking_id,))
        row = await cursor.fetchone()
        return _booking_record(row) if row else None

    async def calendar_secret(self, calendar: str, *, now: int) -> str:
        """The generated secret of ``calendar``, created on first use."""
        cursor = await self._reader.execute(
            "SELECT secret FROM calendar_secrets WHERE calendar = ?", (calendar,))
        row = await cursor.fetchone()
        if row is not None:
            return str(row[0])
        async with self._transaction() as db:
            await db.execute(
                "INSERT OR IGNORE INTO calendar_secrets (calendar, secret, created) VALUES (?,?,?)",
                (calendar, secrets.token_urlsafe(32), now))
            cursor = await db.execute(
                "SELECT secret FROM calendar_secrets WHERE calendar = ?", (calendar,))
            row = await cursor.fetchone()
            assert row is not None
            return str(row[0])


@dataclass(frozen=True, slots=True)
class BookingRecord:
    id: str
    page: str
    host: str
    start: int
    end: int
    guest_name: str
    guest_email: str
    answers: dict[str, str]
    cancel_secret: str
    status: str
    created: int
    video_link: str = ""
    guest_timezone: str = ""


_BOOKING_COLUMNS = ("id, page, host, start_ts, end_ts, guest_name, guest_email, answers, "
                    "cancel_secret, status, created, video_link, guest_timezone")


def _booking_record(row: Sequence[Any]) -> BookingRecord:
    return BookingRecord(
        id=row[0], page=row[1], host=row[2], start=row[3], end=row[4], guest_name=row[5],
        guest_email=row[6], answers=json.loads(row[7]), cancel_secret=row[8], status=row[9],
        created=row[10], video_link=row[11], guest_timezone=row[12])


async def _busy_rows(db: aiosqlite.Connection, source_ids: Sequence[int],
                     calendars: Sequence[str], start: int,
                     end: int) -> list[tuple[int, int, str]]:
    rows: list[tuple[int, int, str]] = []
    if source_ids:
        marks = ",".join("?" * len(source_ids))
        cursor = await db.execute(
            f"""SELECT start_ts, end_ts, status FROM instances
                WHERE source_id IN ({marks}) AND end_ts > ? AND start_ts < ?""",
            (*source_ids, start, end))
        rows += await cursor.fetchall()  # type: ignore[arg-type]
    if calendars:
        marks = ",".join("?" * len(calendars))
        cursor = await db.execute(
            f"""SELECT start_ts, end_ts, 'busy' FROM booking_blocks
                WHERE calendar IN ({marks}) AND end_ts > ? AND start_ts < ?""",
            (*calendars, start, end))
        rows += await cursor.fetchall()  # type: ignore[arg-type]
    return rows


@dataclass(frozen=True, slots=True)
class OutboxRow:
    booking_id: str
    host: str
    action: str
    source: str
    calendar: str | None
    hold: str
    attempts: int


@dataclass(frozen=True, slots=True)
class PendingHold:
    booking_id: str
    host: str
    action: str
    source: str
    attempts: int
    next_attempt: int
    last_error: str | None


_OUTBOX_COLUMNS = "booking_id, host, action, source, calendar, hold, attempts"


async def _booking_starts(db: aiosqlite.Connection, host: str, start: int,
                          end: int) -> list[int]:
    cursor = await db.execute(
        "SELECT start_ts FROM bookings WHERE host = ? AND status = 'confirmed' "
        "AND start_ts >= ? AND start_ts < ?", (host, start, end))
    return [int(row[0]) for row in await cursor.fetchall()]


class BookingTransaction:
    """Reads and the insert of one booking, inside one BEGIN IMMEDIATE transaction."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    async def busy_rows(self, source_ids: Sequence[int], calendars: Sequence[str], start: int,
                        end: int) -> list[tuple[int, int, str]]:
        return await _busy_rows(self._db, source_ids, calendars, start, end)

    async def booking_starts(self, host: str, start: int, end: int) -> list[int]:
        return await _booking_starts(self._db, host, start, end)

    async def host_stats(self, hosts: Sequence[str], since: int) -> dict[str, tuple[int, int]]:
        """Per host: confirmed bookings created since ``since``, and the last creation time."""
        marks = ",".join("?" * len(hosts))
        cursor = await self._db.execute(
            f"""SELECT host, SUM(created >= ?), MAX(created) FROM bookings
                WHERE status = 'confirmed' AND host IN ({marks}) GROUP BY host""",
            (since, *hosts))
        return {host: (int(count or 0), int(last)) for host, count, last in
                await cursor.fetchall()}

    async def insert(self, booking: BookingRecord,
                     blocks: Sequence[tuple[str, int, int]]) -> None:
        await self._db.execute(
            f"INSERT INTO bookings ({_BOOKING_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (booking.id, booking.page, booking.host, booking.start, booking.end,
             booking.guest_name, booking.guest_email, json.dumps(booking.answers),
             booking.cancel_secret, booking.status, booking.created, booking.video_link,
             booking.guest_timezone))
        await self._db.executemany(
            "INSERT INTO booking_blocks (booking_id, calendar, start_ts, end_ts) "
            "VALUES (?, ?, ?, ?)", ((booking.id, *block) for block in blocks))

    async def queue_hold(self, booking_id: str, host: str, *, source: str,
                         calendar: str | None, hold: dict[str, str], now: int) -> None:
        """Ask the outbox worker to write this hold; committed with the booking."""
        await self._db.execute(
            """INSERT INTO hold_outbox
                   (booking_id, host, action, source, calendar, hold, next_attempt)
               VALUES (?, ?, 'write', ?, ?, ?, ?)""",
            (booking_id, host, source, calendar, json.dumps(hold), now))


def _prepare_file(path: Path) -> None:
    """Create the folder and file private to this user (the data is personal)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.exists():
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    except OSError as exc:
        raise StoreError(f"cannot create database {path}: {exc.strerror}") from exc


async def _connect(path: Path) -> aiosqlite.Connection:
    db = await aiosqlite.connect(path, isolation_level=None)
    try:
        await db.execute("PRAGMA journal_mode = WAL")
        await db.execute("PRAGMA synchronous = NORMAL")
        await db.execute("PRAGMA foreign_keys = ON")
        await db.execute("PRAGMA busy_timeout = 5000")
    except BaseException:
        # Its worker thread would otherwise keep the process from exiting.
        await db.close()
        raise
    return db


async def _migrate(db: aiosqlite.Connection) -> None:
    cursor = await db.execute("PRAGMA user_version")
    row = await cursor.fetchone()
    version = int(row[0]) if row else 0
    if version > len(MIGRATIONS):
        raise StoreError(f"database schema version {version} is newer than this fbproxy "
                         f"understands ({len(MIGRATIONS)}); upgrade fbproxy")
    for target, script in enumerate(MIGRATIONS[version:], start=version + 1):
        # executescript would COMMIT on its own; run statements inside our transaction.
        await db.execute("BEGIN IMMEDIATE")
        try:
            for statement in (s.strip() for s in script.split(";")):
                if statement:
                    await db.execute(statement)
            await db.execute(f"PRAGMA user_version = {target}")
        except BaseException:
            await db.execute("ROLLBACK")
            raise
        await db.execute("COMMIT")
