"""The SQLite backend: one file, one writer connection and one reader.

The writer is serialised by a lock, each change one ``BEGIN IMMEDIATE``
transaction (which also keeps out other processes on the same file); the
reader, under WAL, sees only committed data, so a half-applied sync is never
visible to an output.

The writer is a plain ``sqlite3`` connection used from one thread of its own
(``WriterThread``), so that a whole transaction can also run there in one go
(``run_transaction``): each statement of a transaction run from the event loop
costs a turn of the loop, and the write lock is held across them, so under load
a booking held it for ~10 ms and bookings queued for seconds behind each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import aiosqlite

from server.errors import SlotTaken, StoreError, StoreFull
from server.store.database import Database, Row, Session

# The message of the trigger that keeps bookings of one calendar apart (schema.py).
OVERLAP = "overlapping booking"
PRAGMAS = ("PRAGMA journal_mode = WAL", "PRAGMA synchronous = NORMAL",
           "PRAGMA foreign_keys = ON", "PRAGMA busy_timeout = 5000")

T = TypeVar("T")


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


class WriterThread:
    """A ``sqlite3`` connection used only from one thread of its own."""

    def __init__(self, thread: ThreadPoolExecutor, connection: sqlite3.Connection) -> None:
        self._thread = thread
        self.connection = connection
        self._closed = False

    @classmethod
    async def open(cls, path: Path) -> WriterThread:
        thread = ThreadPoolExecutor(1, thread_name_prefix="fbproxy-sqlite-writer")
        loop = asyncio.get_running_loop()
        try:
            connection = await loop.run_in_executor(thread, _connect_here, path)
        except BaseException:
            thread.shutdown(wait=False)
            raise
        return cls(thread, connection)

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` in the connection's thread."""
        return await self.submit(function, *args)

    def submit(self, function: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Queue ``function(*args)`` for the connection's thread now; its future. The
        thread runs what it is given in order."""
        return asyncio.get_running_loop().run_in_executor(
            self._thread, functools.partial(function, *args))

    async def close(self) -> None:
        """Close the connection and end its thread; closing again does nothing."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(sqlite3.Error):
            await self.run(self.connection.close)
        self._thread.shutdown(wait=False)


class ThreadSession:
    """Statements on the writer, each one a trip to its thread (the Session API)."""

    def __init__(self, writer: WriterThread) -> None:
        self.writer = writer

    async def fetchall(self, sql: str, args: Sequence[object] = ()) -> list[Row]:
        return await self.writer.run(_fetchall, self.writer.connection, sql, args)

    async def fetchone(self, sql: str, args: Sequence[object] = ()) -> Row | None:
        return next(iter(await self.fetchall(sql, args)), None)

    async def execute(self, sql: str, args: Sequence[object] = ()) -> int:
        return await self.writer.run(_execute, self.writer.connection, sql, args)

    async def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        await self.writer.run(_executemany, self.writer.connection, sql, list(rows))


class InThreadSession:
    """The Session API in the writer's thread itself: every call completes at once, so
    a transaction's body awaiting only this session runs to its end in one go
    (``run_to_end``)."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    async def fetchall(self, sql: str, args: Sequence[object] = ()) -> list[Row]:
        return _fetchall(self.connection, sql, args)

    async def fetchone(self, sql: str, args: Sequence[object] = ()) -> Row | None:
        return next(iter(_fetchall(self.connection, sql, args)), None)

    async def execute(self, sql: str, args: Sequence[object] = ()) -> int:
        return _execute(self.connection, sql, args)

    async def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        _executemany(self.connection, sql, rows)


def run_to_end(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that awaits nothing that suspends (``InThreadSession`` calls only)."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coroutine.close()
    raise RuntimeError("a transaction run in the writer's thread awaited something other "
                       "than its session")


def _fetchall(connection: sqlite3.Connection, sql: str, args: Sequence[object]) -> list[Row]:
    return connection.execute(sql, args).fetchall()


def _execute(connection: sqlite3.Connection, sql: str, args: Sequence[object]) -> int:
    return connection.execute(sql, args).rowcount


def _executemany(connection: sqlite3.Connection, sql: str,
                 rows: Iterable[Sequence[object]]) -> None:
    connection.executemany(sql, rows)


def _connect_here(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        for pragma in PRAGMAS:
            connection.execute(pragma)
    except BaseException:
        connection.close()
        raise
    return connection


class SqliteDatabase(Database):
    dialect = "sqlite"
    shared = False

    def __init__(self, path: Path, writer: WriterThread,
                 reader: aiosqlite.Connection) -> None:
        self.path = path
        self._thread = writer
        self._writer = ThreadSession(writer)
        self._reader = SqliteSession(reader)
        self._write_lock = asyncio.Lock()
        self._listeners: dict[str, list[Callable[[str], None]]] = {}

    @classmethod
    async def open(cls, path: Path,
                   migrate: Callable[[ThreadSession], Awaitable[None]]) -> SqliteDatabase:
        """Open the file, creating it private to this user, and bring its schema up to date."""
        _prepare_file(path)
        try:
            writer = await WriterThread.open(path)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open database {path}: {exc}") from exc
        try:
            await migrate(ThreadSession(writer))
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
    def writer(self) -> ThreadSession:
        """The writer connection, for tests that simulate a crash between steps."""
        return self._writer

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[ThreadSession]:
        async with self._write_lock:
            await self._writer.execute("BEGIN IMMEDIATE")
            try:
                yield self._writer
            except BaseException as exc:
                # SQLite may have rolled back already (a full disk does that).
                with contextlib.suppress(sqlite3.OperationalError):
                    await self._writer.execute("ROLLBACK")
                _reraise(exc)
            try:
                await self._writer.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                with contextlib.suppress(sqlite3.OperationalError):
                    await self._writer.execute("ROLLBACK")
                _reraise(exc)

    async def run_transaction(self, body: Callable[[Session], Coroutine[Any, Any, T]]) -> T:
        """``body`` in one transaction, run to its end in the writer's thread in one go:
        it may await only its session (see ``run_to_end``).

        The write lock is held only while the job is handed to the thread: the thread
        runs its jobs in order, so whoever takes the lock next has its first statement
        run after this transaction's end, and bookings do not queue behind each other
        for a turn of the event loop each."""
        async with self._write_lock:
            done: asyncio.Future[T] = self._thread.submit(
                _transaction_here, self._thread.connection, body)
        return await done

    async def notify(self, channel: str, payload: str) -> None:
        for callback in self._listeners.get(channel, ()):
            callback(payload)

    async def listen(self, channel: str, callback: Callable[[str], None]) -> None:
        callbacks = self._listeners.setdefault(channel, [])
        if callback not in callbacks:
            callbacks.append(callback)

    async def close(self) -> None:
        await self._reader.connection.close()
        await self._thread.close()


def _transaction_here(connection: sqlite3.Connection,
                      body: Callable[[Session], Coroutine[Any, Any, T]]) -> T:
    """A whole transaction, in the writer's thread."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        result = run_to_end(body(InThreadSession(connection)))
    except BaseException as exc:
        with contextlib.suppress(sqlite3.OperationalError):
            connection.execute("ROLLBACK")
        _reraise(exc)
    try:
        connection.execute("COMMIT")
    except sqlite3.OperationalError as exc:
        with contextlib.suppress(sqlite3.OperationalError):
            connection.execute("ROLLBACK")
        _reraise(exc)
    return result


def _reraise(exc: BaseException) -> NoReturn:
    """Raise what a failed statement means for the store (full, a refused booking), or
    the error itself."""
    if isinstance(exc, sqlite3.OperationalError) and _is_full(exc):
        raise StoreFull() from exc
    if isinstance(exc, sqlite3.IntegrityError) and OVERLAP in str(exc):
        raise SlotTaken(f"overlapping booking refused by the database: {exc}") from exc
    raise exc


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
        for pragma in PRAGMAS:
            await db.execute(pragma)
    except BaseException:
        # Its worker thread would otherwise keep the process from exiting.
        await db.close()
        raise
    return db
