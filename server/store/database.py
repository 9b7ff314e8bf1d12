"""What the store's queries run on: a database with reads and write transactions.

Two implementations: ``sqlite.py`` (one file, the default) and ``postgres.py``
(a server several fbproxy instances share). The queries are written once, in
the SQL both understand, with ``?`` for parameters; the few statements that
differ ask ``dialect``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal, Protocol, TypeVar

Row = Sequence[Any]
T = TypeVar("T")
Dialect = Literal["sqlite", "postgresql"]


class Session(Protocol):
    """Statements on one connection: a transaction's, or the shared reads'."""

    async def fetchall(self, sql: str, args: Sequence[object] = ()) -> list[Row]: ...

    async def fetchone(self, sql: str, args: Sequence[object] = ()) -> Row | None: ...

    async def execute(self, sql: str, args: Sequence[object] = ()) -> int:
        """Run one statement; the number of rows it changed."""
        ...

    async def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None: ...


class Database(ABC):
    """One store backend: committed reads, and write transactions one at a time."""

    dialect: Dialect
    # True when other processes may change the data at any time (PostgreSQL):
    # caches then check the database's change counters on every request.
    shared: bool

    @property
    @abstractmethod
    def reads(self) -> Session:
        """Reads outside any transaction; they see only committed data."""

    @abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[Session]:
        """One write transaction. Writers never interleave: on SQLite the file's
        write lock, on PostgreSQL an advisory lock every instance takes."""

    async def run_transaction(self, body: Callable[[Session], Coroutine[Any, Any, T]]) -> T:
        """``body`` in one write transaction. ``body`` may await only its session: SQLite
        runs it in its writer's thread in one go, so the write lock is held for the
        statements alone, not for a turn of the event loop between each two."""
        async with self.transaction() as db:
            return await body(db)

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def notify(self, channel: str, payload: str) -> None:
        """Tell every process listening on ``channel`` (PostgreSQL NOTIFY)."""

    @abstractmethod
    async def listen(self, channel: str, callback: Callable[[str], None]) -> None:
        """Call ``callback`` with each payload notified on ``channel``, from any process
        on PostgreSQL, from this one on SQLite (another process on the same file
        polls instead). Calling it again re-establishes a lost listening connection."""

    @property
    @abstractmethod
    def location(self) -> str:
        """Where the data is, for messages (a path, or a URL without its password)."""
