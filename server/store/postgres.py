"""The PostgreSQL backend: a server several fbproxy instances share (asyncpg).

asyncpg because it is the fastest Python driver (binary protocol, prepared
statements cached per connection, its own pool) and fbproxy is read-heavy:
every feed and slot request is a query. Writers take one advisory lock per
transaction, so every write transaction of every instance runs one at a time,
as SQLite's do within one file: the queries, written for that, stay correct
(the booking check, the CalDAV change log's sequence, a source's new id).
Bookings are additionally held apart by an exclusion constraint (schema_pg).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

import asyncpg

from server.errors import SlotTaken, StoreError, StoreUnavailable
from server.store.database import Database, Row

# An advisory lock key (any 64-bit number: "fbpx" and a counter) for all writes.
WRITE_LOCK = 0x66627078_00000001


@functools.lru_cache(maxsize=4096)
def numbered(sql: str) -> str:
    """``?`` placeholders as PostgreSQL's ``$1, $2, …`` (none sit inside our literals)."""
    parts = sql.split("?")
    if len(parts) == 1:
        return sql
    out = [parts[0]]
    for number, part in enumerate(parts[1:], start=1):
        out.append(f"${number}{part}")
    return "".join(out)


def _clean(args: Sequence[object]) -> list[object]:
    # PostgreSQL text cannot hold NUL, which iCalendar forbids anyway (RFC 5545
    # 3.1: no control characters but tab): an upstream's NUL becomes U+FFFD.
    return [a.replace("\x00", "\ufffd") if isinstance(a, str) and "\x00" in a else a
            for a in args]


def _rowcount(status: str) -> int:
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


@asynccontextmanager
async def _errors(location: str) -> AsyncIterator[None]:
    try:
        yield
    except asyncpg.ExclusionViolationError as exc:
        raise SlotTaken(f"overlapping booking refused by the database: {exc}") from exc
    except (TimeoutError, OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
            asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError) as exc:
        raise StoreUnavailable(f"database {location} unavailable: {exc}") from exc
    except asyncpg.InsufficientPrivilegeError as exc:
        raise StoreError(f"database {location} refused: {exc}") from exc


class PostgresSession:
    """Statements on one pooled connection (a transaction's), or on the pool itself
    (reads: whichever connection is free; each sees committed data). asyncpg gives
    both the same methods."""

    def __init__(self, target: Any, location: str) -> None:
        self._target = target
        self._location = location

    @property
    def connection(self) -> Any:
        """The asyncpg connection (a transaction's session): for COPY (transfer.py)."""
        return self._target

    async def fetchall(self, sql: str, args: Sequence[object] = ()) -> list[Row]:
        async with _errors(self._location):
            return cast(list[Row], await self._target.fetch(numbered(sql), *_clean(args)))

    async def fetchone(self, sql: str, args: Sequence[object] = ()) -> Row | None:
        async with _errors(self._location):
            return cast(Row | None, await self._target.fetchrow(numbered(sql), *_clean(args)))

    async def execute(self, sql: str, args: Sequence[object] = ()) -> int:
        async with _errors(self._location):
            return _rowcount(await self._target.execute(numbered(sql), *_clean(args)))

    async def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        batch = [_clean(row) for row in rows]
        if batch:
            async with _errors(self._location):
                await self._target.executemany(numbered(sql), batch)


class PostgresDatabase(Database):
    dialect = "postgresql"
    shared = True

    def __init__(self, pool: asyncpg.Pool, location: str, url: str = "") -> None:
        self.pool = pool
        self._location = location
        self._url = url
        # One connection of its own for LISTEN: a pooled one would be handed on.
        self._listener: asyncpg.Connection | None = None
        self._listening: dict[str, list[Callable[[str], None]]] = {}
        self._reads = PostgresSession(pool, location)
        # Queue this process's writers here rather than each holding a pooled
        # connection while it waits for the advisory lock.
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, url: str, migrate: Callable[[asyncpg.Connection, str], Awaitable[None]],
                   *, location: str, pool_size: int = 10) -> PostgresDatabase:
        """Connect a pool and bring the schema up to date."""
        try:
            pool = await asyncpg.create_pool(
                url, min_size=1, max_size=pool_size, command_timeout=60,
                server_settings={"application_name": "fbproxy"})
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreUnavailable(f"cannot open database {location}: {exc}") from exc
        assert pool is not None
        try:
            async with pool.acquire() as connection:
                await migrate(cast(asyncpg.Connection, connection), location)
        except BaseException:
            await pool.close()
            raise
        return cls(pool, location, url)

    @property
    def location(self) -> str:
        return self._location

    @property
    def reads(self) -> PostgresSession:
        return self._reads

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresSession]:
        async with self._write_lock, _errors(self._location):
            connection: Any
            async with self.pool.acquire() as connection, connection.transaction():
                await connection.execute("SELECT pg_advisory_xact_lock($1)", WRITE_LOCK)
                yield PostgresSession(connection, self._location)

    async def notify(self, channel: str, payload: str) -> None:
        await self._reads.execute("SELECT pg_notify(?, ?)", (channel, payload))

    async def listen(self, channel: str, callback: Callable[[str], None]) -> None:
        callbacks = self._listening.setdefault(channel, [])
        if callback not in callbacks:
            callbacks.append(callback)
        if self._listener is not None and not self._listener.is_closed():
            if len(callbacks) == 1:
                await self._add_listener(channel)
            return
        async with _errors(self._location):
            self._listener = await asyncpg.connect(
                self._url, server_settings={"application_name": "fbproxy-listen"})
            for name in self._listening:
                await self._add_listener(name)

    async def _add_listener(self, channel: str) -> None:
        def deliver(_connection: object, _pid: int, _channel: str, payload: object) -> None:
            for callback in self._listening.get(channel, ()):
                callback(str(payload))

        assert self._listener is not None
        await self._listener.add_listener(channel, deliver)

    async def close(self) -> None:
        if self._listener is not None:
            await self._listener.close()
        await self.pool.close()
