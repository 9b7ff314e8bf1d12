"""The two connections every query runs on, the write transaction, the busy counter."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiosqlite

from server.errors import StoreFull


class StoreBase:
    """The connections shared by the store's query mixins (see ``Store``)."""

    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection) -> None:
        self._writer = writer
        self._reader = reader
        self._write_lock = asyncio.Lock()
        # Commits made here (instances, bookings), and the last database counters
        # read, so that a cache check is usually free (see busy_generation).
        self._local_changes = [0, 0]
        self._seen: tuple[float, int, int] = (-1e9, 0, 0)
        self._sources_seen: tuple[float, list[Any]] = (-1e9, [])

    async def close(self) -> None:
        await self._reader.close()
        await self._writer.close()

    @asynccontextmanager
    async def _transaction(self, *, busy_changes: bool = False, booking_changes: bool = False,
                           ) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction; the flags say it changes busy instances or bookings."""
        async with self._write_lock:
            await self._writer.execute("BEGIN IMMEDIATE")
            try:
                yield self._writer
                if busy_changes:
                    await self._writer.execute(
                        "UPDATE meta SET value = value + 1 WHERE key = 'busy_generation'")
                if booking_changes:
                    await self._writer.execute(
                        "UPDATE meta SET value = value + 1 WHERE key = 'booking_generation'")
            except BaseException as exc:
                # SQLite may have rolled back already (a full disk does that).
                with contextlib.suppress(sqlite3.OperationalError):
                    await self._writer.execute("ROLLBACK")
                if isinstance(exc, sqlite3.OperationalError) and _is_full(exc):
                    raise StoreFull() from exc
                raise
            try:
                await self._writer.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                with contextlib.suppress(sqlite3.OperationalError):
                    await self._writer.execute("ROLLBACK")
                raise StoreFull() if _is_full(exc) else exc from exc
            self._local_changes[0] += busy_changes
            self._local_changes[1] += booking_changes

    async def busy_generation(self, *, max_age: float = 1.0) -> tuple[int, ...]:
        """A key that changes whenever busy time changes, here or in another process.

        Output caches key on it. A change made through this store shows at
        once; one made by another process (`fbproxy sync`) within ``max_age``
        seconds, so a cached feed costs no database round trip per request.
        """
        return (*await self.instance_generation(max_age=max_age),
                *await self.booking_generation(max_age=max_age))

    async def instance_generation(self, *, max_age: float = 1.0) -> tuple[int, int]:
        """Like ``busy_generation``, for synced instances only (not bookings)."""
        database, _ = await self._generations(max_age)
        return database, self._local_changes[0]

    async def booking_generation(self, *, max_age: float = 1.0) -> tuple[int, int]:
        """Like ``busy_generation``, for bookings only: they change far more often."""
        _, database = await self._generations(max_age)
        return database, self._local_changes[1]

    async def _generations(self, max_age: float) -> tuple[int, int]:
        read_at, instances, bookings = self._seen
        if time.monotonic() - read_at >= max_age:
            cursor = await self._reader.execute(
                "SELECT key, value FROM meta "
                "WHERE key IN ('busy_generation', 'booking_generation')")
            values = {str(key): int(value) for key, value in await cursor.fetchall()}
            instances, bookings = values.get("busy_generation", 0), \
                values.get("booking_generation", 0)
            self._seen = (time.monotonic(), instances, bookings)
        return instances, bookings


def _is_full(exc: sqlite3.OperationalError) -> bool:
    return "full" in str(exc).lower()  # SQLITE_FULL: disk space or max_page_count
