"""The store: every SQL statement fbproxy runs, on SQLite or PostgreSQL.

``Store`` is the contract the rest of the server uses: typed methods, one
transaction each (mixins by subject: sources, bookings, holds, …). They run
on a ``Database`` (database.py): SQLite (sqlite.py, one file, the default)
or PostgreSQL (postgres.py, shared by several instances). Either way a
change is one transaction and a reader sees only committed data, so a
half-applied sync is never visible to an output. Times are integer Unix
seconds (UTC).
"""

from __future__ import annotations

from pathlib import Path

from server.config.database import PostgresUrl
from server.errors import SlotTaken, StoreUnavailable
from server.store.alerts import AlertMessage, AlertQueries
from server.store.bookings import BookingQueries, BookingTransaction, HoldPlan
from server.store.calendar_secrets import CalendarSecretQueries
from server.store.channels import ChannelQueries, PushChannel
from server.store.dav import DavCollection, DavMember, DavQueries
from server.store.holds import HoldQueries
from server.store.leases import Fence, LeaseQueries
from server.store.mail import MailJob, MailQueries, MailRow, MailSummary
from server.store.postgres import PostgresDatabase
from server.store.ratelimits import RateBucketQueries
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
from server.store.schema import MIGRATIONS, migrate_sqlite
from server.store.schema_pg import migrate_postgres
from server.store.sources import SourceQueries
from server.store.sqlite import SqliteDatabase
from server.store.tokens import TokenQueries

__all__ = [
    "AlertMessage",
    "MIGRATIONS",
    "STATUS_BUSY",
    "STATUS_TENTATIVE",
    "BookingCounts",
    "BookingRecord",
    "BookingTransaction",
    "HoldPlan",
    "BusyRow",
    "DavCollection",
    "DavMember",
    "Fence",
    "MailJob",
    "MailRow",
    "MailSummary",
    "OutboxRow",
    "PendingHold",
    "PushChannel",
    "SlotTaken",
    "StoreUnavailable",
    "SourceRecord",
    "Store",
    "StoredItem",
]


class Store(SourceQueries, BookingQueries, HoldQueries, CalendarSecretQueries, DavQueries,
            ChannelQueries, AlertQueries, LeaseQueries, TokenQueries, RateBucketQueries,
            MailQueries):
    """All persistent state. Create with ``await Store.open(location)``: a path
    (SQLite, the default) or a PostgreSQL URL (several instances share it)."""

    @classmethod
    async def open(cls, location: Path | PostgresUrl) -> Store:
        if isinstance(location, PostgresUrl):
            return cls(await PostgresDatabase.open(location.url, migrate_postgres,
                                                   location=location.display()))  # noqa: ASYNC240 - not a path
        return cls(await SqliteDatabase.open(Path(location), migrate_sqlite))
