"""Copying a SQLite store into PostgreSQL: ``fbproxy migrate-store``.

The copy is read inside one SQLite read transaction, a snapshot under WAL, so an
fbproxy still running on the file cannot make it inconsistent (what it writes
after the snapshot is not copied: the report says whether it wrote). It is
written inside one PostgreSQL transaction, so a failure leaves the target as
empty as it was. The tables and their columns come from the SQLite file and
must equal the PostgreSQL schema's, so a column added later is an error here,
never silently left behind.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiosqlite
import asyncpg

from server.config.database import PostgresUrl
from server.config.model import Config
from server.errors import StoreError
from server.kit.secretbox import SecretBox
from server.store import MIGRATIONS, Store
from server.store.database import Session
from server.store.postgres import PostgresDatabase

# Tables of the SQLite file left behind, and why (the report names them).
NOT_COPIED = {
    "source_leases": "leases belong to running instances; those on PostgreSQL take their own",
}
# Rows the PostgreSQL schema creates itself (counters at zero): replaced by the file's.
SEEDED = frozenset({"meta"})
# Rows a COPY: measured as fast as 5000 (PostgreSQL's per-row checks dominate),
# and a batch of items (each an iCalendar text) stays a few megabytes.
BATCH_ROWS = 2000
# What each PostgreSQL column type of the schema takes from Python (for error messages).
_PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "bigint": (int,), "integer": (int,), "text": (str,), "double precision": (int, float)}

# Called after each batch: table, rows copied of it so far, its rows in the snapshot.
Progress = Callable[[str, int, int], Awaitable[None]]


class TransferError(StoreError):
    """The copy was refused or failed; the target holds nothing of it."""


@dataclass(frozen=True)
class TransferReport:
    source: Path
    target: str  # without the password
    rows: dict[str, int]  # per table copied, in the order copied
    seconds: float
    upgraded_from: int | None  # the file's schema version, when it was migrated first
    changed_during_copy: bool  # something wrote to the file after the snapshot
    nul_replaced: int  # text values whose NUL characters became U+FFFD
    tokens: tuple[str, ...] = ()  # token files copied into the tokens table, encrypted


async def migrate_store(config: Config, target: PostgresUrl, *, batch_rows: int = BATCH_ROWS,
                        progress: Progress | None = None) -> TransferReport:
    """Copy the SQLite store of ``config`` into the empty PostgreSQL database ``target``."""
    source = _sqlite_path(config)
    token_files = _token_files(config)  # refused before anything is written without a key
    upgraded_from = await _bring_up_to_date(source)
    started = time.perf_counter()
    store = await Store.open(target)  # creates or migrates the target's schema
    try:
        database = store.database
        assert isinstance(database, PostgresDatabase)
        async with _Snapshot.open(source) as snapshot:
            try:
                async with database.transaction() as session:
                    copy = _Copy(snapshot, session.connection, database.location, batch_rows,
                                 progress)
                    rows = await copy.run()
                    tokens = await copy_token_files(config, token_files, session,
                                                    now=int(time.time()))
            except asyncpg.PostgresError as exc:
                raise TransferError(f"{database.location}: {exc}; nothing was copied") from exc
            changed = await snapshot.changed_since()
    finally:
        await store.close()
    return TransferReport(source=source, target=target.display(), rows=rows,
                          seconds=time.perf_counter() - started, upgraded_from=upgraded_from,
                          changed_during_copy=changed, nul_replaced=copy.nul_replaced,
                          tokens=tokens)


def _token_files(config: Config) -> list[tuple[str, Path]]:
    """The token files of Google and Microsoft sources that exist, each with its row's name
    (``google:work``, as server/sync/tokens.py names them); refused without a key."""
    files = []
    for source in config.sources:
        path = source.google.token_file if source.google is not None else \
            source.microsoft.token_cache_file if source.microsoft is not None else None
        if path is not None and path.is_file():
            files.append((f"{source.kind}:{source.name}", path))
    if files and config.server.secrets_key is None:
        names = ", ".join(name for name, _ in files)
        raise TransferError(
            f"{config.path}: the tokens of {names} are kept encrypted in PostgreSQL: set "
            f"[server] secrets_key_env or secrets_key_file first (see docs/configuration.md); "
            f"nothing was copied")
    return files


async def copy_token_files(config: Config, files: list[tuple[str, Path]], target: Session, *,
                           now: int) -> tuple[str, ...]:
    """Copy the sources' token files into the target's ``tokens`` table, encrypted with the
    first key of ``server.secrets_key``: with PostgreSQL every instance reads them there.
    A row of that name copied from the file's own ``tokens`` table is replaced: the file
    is what this installation used."""
    if not files:
        return ()
    assert config.server.secrets_key is not None
    box = SecretBox.from_text(str(config.server.secrets_key))
    for name, path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeError) as exc:
            raise TransferError(f"cannot read the token file {path}: {exc}; nothing was "
                                "copied") from exc
        await target.execute(
            "INSERT INTO tokens (name, value, updated) VALUES (?, ?, ?) ON CONFLICT (name) "
            "DO UPDATE SET value = excluded.value, updated = excluded.updated",
            (name, box.encrypt(text), now))
    return tuple(name for name, _ in files)


def _sqlite_path(config: Config) -> Path:
    database = config.server.database
    if not isinstance(database, Path):
        raise TransferError(f"{config.path}: server.database is already PostgreSQL; "
                            "migrate-store copies a SQLite file")
    return database


async def _bring_up_to_date(path: Path) -> int | None:
    """Migrate an older file to the newest schema first; the version it had, if older."""
    async with _connect(path) as connection, \
            connection.execute("PRAGMA user_version") as cursor:
        row = await cursor.fetchone()
    version = int(row[0]) if row else 0
    if version == len(MIGRATIONS):
        return None
    if version == 0:
        raise TransferError(f"{path} is not an fbproxy database (schema version 0)")
    if version > len(MIGRATIONS):
        raise TransferError(f"{path} has schema version {version}, newer than this fbproxy "
                            f"understands ({len(MIGRATIONS)}); upgrade fbproxy")
    store = await Store.open(path)
    await store.close()
    return version


@asynccontextmanager
async def _connect(path: Path) -> AsyncIterator[aiosqlite.Connection]:
    """A connection that only reads, to an existing file (mode=rw never creates one)."""
    try:
        connection = await aiosqlite.connect(f"file:{quote(str(path))}?mode=rw", uri=True,
                                             isolation_level=None)
    except sqlite3.Error as exc:
        raise TransferError(f"cannot open the SQLite database {path}: {exc}") from exc
    try:
        # A running fbproxy holds the write lock for a moment at a time.
        await connection.execute("PRAGMA busy_timeout = 5000")
        await connection.execute("PRAGMA query_only = ON")
        yield connection
    except sqlite3.Error as exc:
        raise TransferError(f"reading the SQLite database {path}: {exc}") from exc
    finally:
        await connection.close()


class _Snapshot:
    """Every read of the copy, inside one SQLite read transaction."""

    def __init__(self, connection: aiosqlite.Connection) -> None:
        self._connection = connection
        self._version = 0

    @classmethod
    @asynccontextmanager
    async def open(cls, path: Path) -> AsyncIterator[_Snapshot]:
        async with _connect(path) as connection:
            snapshot = cls(connection)
            await connection.execute("BEGIN")
            # The first read fixes the snapshot; data_version then counts the
            # commits of other connections, which changed_since compares.
            snapshot._version = int((await snapshot._one("PRAGMA data_version"))[0])
            version = int((await snapshot._one("PRAGMA user_version"))[0])
            if version != len(MIGRATIONS):
                raise TransferError(f"{path} changed to schema version {version} meanwhile")
            yield snapshot

    async def _one(self, sql: str) -> Any:
        async with self._connection.execute(sql) as cursor:
            return await cursor.fetchone()

    async def _all(self, sql: str) -> list[Any]:
        return list(await self._connection.execute_fetchall(sql))

    async def changed_since(self) -> bool:
        """End the read transaction; whether anyone committed after its snapshot."""
        await self._connection.execute("COMMIT")
        return int((await self._one("PRAGMA data_version"))[0]) != self._version

    async def tables(self) -> list[str]:
        """The file's tables in an order where every table follows those it references."""
        names = [str(row[0]) for row in await self._all(
            "SELECT name FROM sqlite_master WHERE type = 'table' "
            "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY rowid")]
        parents = {name: {str(row[2]) for row in await self._all(
            f"PRAGMA foreign_key_list({_quote(name)})")} & set(names) - {name}
            for name in names}
        ordered: list[str] = []
        while len(ordered) < len(names):
            ready = [n for n in names if n not in ordered and parents[n] <= set(ordered)]
            if not ready:
                raise TransferError("the file's foreign keys form a cycle among "
                                    + ", ".join(n for n in names if n not in ordered))
            ordered.append(ready[0])
        return ordered

    async def columns(self, table: str) -> list[str]:
        return [str(row[1]) for row in await self._all(f"PRAGMA table_info({_quote(table)})")]

    async def count(self, table: str) -> int:
        return int((await self._one(f"SELECT COUNT(*) FROM {_quote(table)}"))[0])

    async def meta(self) -> set[tuple[Any, ...]]:
        return {tuple(row) for row in await self._all("SELECT key, value FROM meta")}

    async def rows(self, table: str, columns: Sequence[str],
                   batch_rows: int) -> AsyncGenerator[list[Any], None]:
        sql = f"SELECT {', '.join(map(_quote, columns))} FROM {_quote(table)}"
        async with self._connection.execute(sql) as cursor:
            while batch := list(await cursor.fetchmany(batch_rows)):
                yield batch


class _Copy:
    """The copy into one PostgreSQL transaction: checks, tables, sequences, counts."""

    def __init__(self, snapshot: _Snapshot, connection: Any, location: str, batch_rows: int,
                 progress: Progress | None) -> None:
        self._snapshot = snapshot
        self._pg = connection  # asyncpg's, for copy_records_to_table
        self._location = location
        self._batch_rows = batch_rows
        self._progress = progress
        self._target: dict[str, dict[str, str]] = {}
        self.nul_replaced = 0

    async def run(self) -> dict[str, int]:
        tables = await self._snapshot.tables()
        target = self._target = await self._target_columns()
        copied = [t for t in tables if t not in NOT_COPIED]
        columns = await self._matching_columns(copied, target)
        await self._refuse_data([t for t in tables if t in target])
        rows = {}
        for table in copied:
            rows[table] = await self._copy_table(table, columns[table])
        await self._advance_sequences(copied)
        await self._verify(rows)
        return rows

    async def _refuse_data(self, tables: Sequence[str]) -> None:
        # Leases count too: instances already running on the target hold them.
        held = [t for t in tables if t not in SEEDED and await self._pg.fetchval(
            f"SELECT EXISTS (SELECT 1 FROM {_quote(t)})")]
        if held:
            raise TransferError(
                f"{self._location} already holds data (tables {', '.join(held)}); nothing "
                "was copied: migrate into an empty database (createdb a new one)")

    async def _target_columns(self) -> dict[str, dict[str, str]]:
        """Each PostgreSQL table's columns and their types."""
        rows = await self._pg.fetch(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = current_schema() ORDER BY ordinal_position")
        target: dict[str, dict[str, str]] = {}
        for table, column, data_type in rows:
            target.setdefault(str(table), {})[str(column)] = str(data_type)
        return target

    async def _matching_columns(self, tables: Sequence[str], target: dict[str, dict[str, str]],
                                ) -> dict[str, list[str]]:
        """Each table's columns, the same on both sides; every difference is an error."""
        found: dict[str, list[str]] = {}
        problems: list[str] = []
        for table in tables:
            found[table] = await self._snapshot.columns(table)
            if table not in target:
                problems.append(f"table {table} is in the SQLite file, not in PostgreSQL")
                continue
            problems += [f"{table}.{c}: a column of the SQLite file that PostgreSQL lacks"
                         for c in found[table] if c not in target[table]]
            problems += [f"{table}.{c}: a column of PostgreSQL that the SQLite file lacks"
                         for c in target[table] if c not in found[table]]
        if problems:
            raise TransferError("the schemas differ, nothing was copied: " + "; ".join(problems))
        return found

    async def _copy_table(self, table: str, columns: list[str]) -> int:
        total = await self._snapshot.count(table)
        if table in SEEDED:
            await self._pg.execute(f"DELETE FROM {_quote(table)}")
        done = 0
        async with aclosing(self._snapshot.rows(table, columns, self._batch_rows)) as batches:
            async for batch in batches:
                records = [self._text_safe(row) for row in batch]
                try:
                    await self._pg.copy_records_to_table(table, records=records,
                                                         columns=columns)
                except (asyncpg.PostgresError, asyncpg.InterfaceError, TypeError,
                        ValueError) as exc:
                    # TypeError, ValueError, asyncpg.DataError: a value SQLite kept (it
                    # types loosely) that asyncpg cannot send as the column's type.
                    culprit = self._misfit(table, columns, records)
                    raise TransferError(
                        f"copying {table}, rows {done + 1}-{done + len(records)}: "
                        f"{culprit or exc}; nothing was copied") from exc
                done += len(records)
                if self._progress is not None:
                    await self._progress(table, done, total)
        return done

    def _misfit(self, table: str, columns: Sequence[str],
                records: Sequence[Sequence[object]]) -> str | None:
        """The first value whose Python type the PostgreSQL column does not take."""
        types = self._target[table]
        for record in records:
            for column, value in zip(columns, record, strict=True):
                wanted = _PYTHON_TYPES.get(types[column])
                if value is not None and wanted and not isinstance(value, wanted):
                    return (f"{table}.{column} holds {value!r} ({type(value).__name__}), "
                            f"which PostgreSQL's {types[column]} column cannot take")
        return None

    def _text_safe(self, row: Sequence[object]) -> tuple[object, ...]:
        # PostgreSQL text cannot hold NUL (the PostgreSQL store replaces it too).
        if not any(isinstance(v, str) and "\x00" in v for v in row):
            return tuple(row)
        self.nul_replaced += sum(isinstance(v, str) and "\x00" in v for v in row)
        return tuple(v.replace("\x00", "\ufffd") if isinstance(v, str) else v for v in row)

    async def _advance_sequences(self, tables: Sequence[str]) -> None:
        """Past the copied ids, so the next source, item or alert gets a new one."""
        generated = await self._pg.fetch(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() "
            "AND (is_identity = 'YES' OR column_default LIKE 'nextval(%')")
        for table, column in generated:
            if table in tables:
                await self._pg.execute(
                    f"SELECT setval(pg_get_serial_sequence($1, $2), "
                    f"COALESCE(MAX({_quote(column)}), 0) + 1, false) FROM {_quote(table)}",
                    _quote(table), column)

    async def _verify(self, rows: dict[str, int]) -> None:
        """Row counts equal on both sides (and the counters exactly), before committing."""
        problems = []
        for table, copied in rows.items():
            source = await self._snapshot.count(table)
            target = int(await self._pg.fetchval(f"SELECT COUNT(*) FROM {_quote(table)}"))
            if not source == copied == target:
                problems.append(f"{table}: {source} rows in the file, {copied} copied, "
                                f"{target} in PostgreSQL")
        meta = {tuple(r) for r in await self._pg.fetch("SELECT key, value FROM meta")}
        if "meta" in rows and meta != await self._snapshot.meta():
            problems.append("meta: the counters differ")
        if problems:
            raise TransferError("the copy does not match, nothing was copied: "
                                + "; ".join(problems))


def _quote(name: str) -> str:
    """An identifier, quoted the way both SQLite and PostgreSQL read it."""
    return '"' + name.replace('"', '""') + '"'
