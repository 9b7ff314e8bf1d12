"""The SQLite backend: one file, one writer connection and one reader.

The writer is serialised by a lock, each change one ``BEGIN IMMEDIATE``
transaction (which also keeps out other processes on the same file); the
reader, under WAL, sees only committed data, so a half-applied sync is never
visible to an output.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite

from server.errors import SlotTaken, StoreError, StoreFull
from server.store.database import Database, Row

# The message of the trigger that keeps bookings of one calendar apart (schema.py).
OVERLAP = "overlapping booking"


class SqliteSession:
    """Statements on one aiosqlite connection."""

    def __init__(self, connection: aiosqlite.Connection) -> None:
        self.connection = connection

    async def fetchall(self, sql: str, args: Sequence[object] = ()) -> list[Row]:
        return list(await self.connection.execute_fetchall(sql, args))

    async def fetchone(self, sql: str, args: Sequence[object] = ()) -> Row | None:
        # Run to the end in one call, never as execute, then fetch, then close: a
        # statement left active between those calls keeps a read transaction open
        # on this connection, and reads of other tasks interleaved meanwhile would
        # answer from its snapshot, older than commits they came after.
        rows = await self.connection.execute_fetchall(sql, args)
        return next(iter(rows), None)

    async def execute(self, sql: str, args: Sequence[object] = ()) -> int:
        async with self.connection.execute(sql, args) as cursor:
            return cursor.rowcount

    async def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        await self.connection.executemany(sql, rows)


class SqliteDatabase(Database):
    dialect = "sqlite"
    shared = False

    def __init__(self, path: Path, writer: aiosqlite.Connection,
                 reader: aiosqlite.Connection) -> None:
        self.path = path
        self._writer = SqliteSession(writer)
        self._reader = SqliteSession(reader)
        self._write_lock = asyncio.Lock()
        self._listeners: dict[str, list[Callable[[str], None]]] = {}

    @classmethod
    async def open(cls, path: Path,
                   migrate: Callable[[SqliteSession], Awaitable[None]]) -> SqliteDatabase:
        """Open the file, creating it private to this user, and bring its schema up to date."""
        _prepare_file(path)
        try:
            writer = await _connect(path)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open database {path}: {exc}") from exc
        try:
            await migrate(SqliteSession(writer))
            reader = await _connect(path)
        except BaseException as exc:
            await writer.close()
            if isinstance(exc, sqlite3.DatabaseError):
                raise StoreError(f"cannot open database {path}: {exc}") from exc
            raise
        return cls(path, writer, reader)

    @property
    def location(self) -> str:
        return str(self.path)

    @property
    def reads(self) -> SqliteSession:
        return self._reader

    @property
    def writer(self) -> SqliteSession:
        """The writer connection, for tests that simulate a crash between steps."""
        return self._writer

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqliteSession]:
        async with self._write_lock:
            await self._writer.execute("BEGIN IMMEDIATE")
            try:
                yield self._writer
            except BaseException as exc:
                # SQLite may have rolled back already (a full disk does that).
                with contextlib.suppress(sqlite3.OperationalError):
                    await self._writer.execute("ROLLBACK")
                if isinstance(exc, sqlite3.OperationalError) and _is_full(exc):
                    raise StoreFull() from exc
                if isinstance(exc, sqlite3.IntegrityError) and OVERLAP in str(exc):
                    raise SlotTaken(f"overlapping booking refused by the database: {exc}") \
                        from exc
                raise
            try:
                await self._writer.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                with contextlib.suppress(sqlite3.OperationalError):
                    await self._writer.execute("ROLLBACK")
                raise StoreFull() if _is_full(exc) else exc from exc

    async def notify(self, channel: str, payload: str) -> None:
        for callback in self._listeners.get(channel, ()):
            callback(payload)

    async def listen(self, channel: str, callback: Callable[[str], None]) -> None:
        callbacks = self._listeners.setdefault(channel, [])
        if callback not in callbacks:
            callbacks.append(callback)

    async def close(self) -> None:
        await self._reader.connection.close()
        await self._writer.connection.close()


def _is_full(exc: sqlite3.OperationalError) -> bool:
    return "full" in str(exc).lower()  # SQLITE_FULL: disk space or max_page_count


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
