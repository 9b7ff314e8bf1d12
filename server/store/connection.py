"""The two connections every query runs on, the write transaction, the busy counter."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiosqlite


class StoreBase:
    """The connections shared by the store's query mixins (see ``Store``)."""

    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection) -> None:
        self._writer = writer
        self._reader = reader
        self._write_lock = asyncio.Lock()
        # Busy-time commits made here, and the last database counter read, so
        # that a cache check is usually free (see busy_generation).
        self._local_changes = 0
        self._seen: tuple[float, int] = (-1e9, 0)

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
