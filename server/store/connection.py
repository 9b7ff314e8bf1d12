"""What every query mixin shares: the database, the write transaction, the change counters."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from server.store.database import Database, Session
from server.store.instance_log import Change, InstanceLog

T = TypeVar("T")


class StoreBase:
    """The database shared by the store's query mixins (see ``Store``)."""

    def __init__(self, database: Database) -> None:
        self._db = database
        self._reader: Session = database.reads
        # Commits made here (instances, bookings), and the last database counters
        # read, so that a cache check is usually free (see busy_generation).
        self._local_changes = [0, 0]
        self._seen: tuple[float, int, int] = (-1e9, 0, 0)
        self._sources_seen: tuple[float, list[Any]] = (-1e9, [])
        # The rows each recent change to a source's instances took out and put in.
        self._instance_log = InstanceLog()

    @property
    def database(self) -> Database:
        return self._db

    async def close(self) -> None:
        await self._db.close()

    @asynccontextmanager
    async def _transaction(self, *, busy_changes: bool = False, booking_changes: bool = False,
                           ) -> AsyncIterator[Session]:
        """One write transaction; the flags say it changes busy instances or bookings."""
        async with self._db.transaction() as db:
            yield db
            await _count_changes(db, busy_changes, booking_changes)
        self._committed(busy_changes, booking_changes)

    async def _run_transaction(self, body: Callable[[Session], Coroutine[Any, Any, T]], *,
                               busy_changes: bool = False, booking_changes: bool = False) -> T:
        """``body`` as one transaction run in one go (``Database.run_transaction``): it may
        await only its session. The flags are ``_transaction``'s."""
        async def whole(db: Session) -> T:
            result = await body(db)
            await _count_changes(db, busy_changes, booking_changes)
            return result

        result = await self._db.run_transaction(whole)
        self._committed(busy_changes, booking_changes)
        return result

    async def _write(self, sql: str, args: Sequence[object] = ()) -> int:
        """One statement as a transaction of its own, run in one go; rows changed."""
        async def statement(db: Session) -> int:
            return await db.execute(sql, args)

        return await self._run_transaction(statement)

    def _committed(self, busy_changes: bool, booking_changes: bool) -> None:
        self._local_changes[0] += busy_changes
        self._local_changes[1] += booking_changes
        # Any write may have changed a source's record: the next read is a fresh one
        # (writes are rare next to the reads that answer from it).
        self._sources_seen = (-1e9, [])

    async def busy_generation(self, *, max_age: float = 1.0) -> tuple[int, ...]:
        """A key that changes whenever busy time changes, here or in another process.

        Output caches key on it. A change made through this store shows at
        once; one made by another process (`fbproxy sync`, another instance)
        within ``max_age`` seconds on SQLite, so a cached feed costs no database
        round trip per request. On a shared database (PostgreSQL, several
        instances) it is read on every call: a slot booked through one instance
        is gone from every other's next answer.
        """
        instances, bookings = await self._generations(max_age)
        return instances, self._local_changes[0], bookings, self._local_changes[1]

    async def instance_generation(self, *, max_age: float = 1.0) -> tuple[int, int]:
        """Like ``busy_generation``, for synced instances only (not bookings)."""
        database, _ = await self._generations(max_age)
        return database, self._local_changes[0]

    async def booking_generation(self, *, max_age: float = 1.0) -> tuple[int, int]:
        """Like ``busy_generation``, for bookings only: they change far more often."""
        _, database = await self._generations(max_age)
        return database, self._local_changes[1]

    def instance_changes(self, source_id: int, since: int, until: int) -> list[Change] | None:
        """The rows taken out and put in by each step of a source's generation from
        ``since`` to ``until``, if every step was committed through this store
        lately; else None (read the source's rows again)."""
        return self._instance_log.between(source_id, since, until)

    async def _generations(self, max_age: float) -> tuple[int, int]:
        read_at, instances, bookings = self._seen
        if self._db.shared or time.monotonic() - read_at >= max_age:
            rows = await self._reader.fetchall(
                "SELECT key, value FROM meta "
                "WHERE key IN ('busy_generation', 'booking_generation')")
            values = {str(key): int(value) for key, value in rows}
            instances, bookings = values.get("busy_generation", 0), \
                values.get("booking_generation", 0)
            self._seen = (time.monotonic(), instances, bookings)
        return instances, bookings


async def _count_changes(db: Session, busy_changes: bool, booking_changes: bool) -> None:
    """Move the change counters of what the transaction changed (caches key on them)."""
    if busy_changes:
        await db.execute("UPDATE meta SET value = value + 1 WHERE key = 'busy_generation'")
    if booking_changes:
        await db.execute("UPDATE meta SET value = value + 1 WHERE key = 'booking_generation'")
