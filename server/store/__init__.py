"""The SQLite store: schema, migrations and every SQL statement fbproxy runs.

Two connections: one writer (serialised by a lock, each change one
``BEGIN IMMEDIATE`` transaction) and one reader, which under WAL sees only
committed data, so a half-applied sync is never visible to an output.
Times are stored as integer Unix seconds (UTC).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from server.errors import StoreError
from server.store.alerts import AlertMessage, AlertQueries
from server.store.bookings import BookingQueries, BookingTransaction
from server.store.calendar_secrets import CalendarSecretQueries
from server.store.channels import ChannelQueries, PushChannel
from server.store.dav import DavCollection, DavMember, DavQueries
from server.store.holds import HoldQueries
from server.store.records import (
    STATUS_BUSY,
    STATUS_TENTATIVE,
    BookingCounts,
    BookingRecord,
    BusyRow,
    OutboxRow,
    PendingHold,
    SourceRecord,
    StoredItem,
)
from server.store.schema import MIGRATIONS, _connect, _migrate, _prepare_file
from server.store.sources import SourceQueries

__all__ = [
    "AlertMessage",
    "MIGRATIONS",
    "STATUS_BUSY",
    "STATUS_TENTATIVE",
    "BookingCounts",
    "BookingRecord",
    "BookingTransaction",
    "BusyRow",
    "DavCollection",
    "DavMember",
    "OutboxRow",
    "PendingHold",
    "PushChannel",
    "SourceRecord",
    "Store",
    "StoredItem",
]


class Store(SourceQueries, BookingQueries, HoldQueries, CalendarSecretQueries, DavQueries,
            ChannelQueries, AlertQueries):
    """All persistent state. Create with ``await Store.open(path)``."""

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
