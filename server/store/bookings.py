"""Bookings: busy-time reads, the booking transaction, cancellation and lookups."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from server.store.connection import StoreBase
from server.store.database import Session
from server.store.mail import MailJob, drop_reminders, queue_mail
from server.store.records import (
    _BOOKING_COLUMNS,
    BookingCounts,
    BookingRecord,
    _booking_record,
)

T = TypeVar("T")


class BookingQueries(StoreBase):
    """Store methods for busy-time reads and bookings."""

    # -- reads for outputs -------------------------------------------------

    async def busy_rows(self, source_ids: Sequence[int], start: int, end: int,
                        calendars: Sequence[str] = (), *,
                        exclude_booking: str = "") -> list[tuple[int, int, str]]:
        """(start, end, status) of the busy time overlapping [start, end).

        That is every instance of these sources plus the time bookings hold in
        these calendars (but ``exclude_booking``'s: a guest moving their booking).
        Plain tuples: a merged calendar reads tens of thousands of rows, and an
        object per row doubled the cost of a query.
        """
        return await _busy_rows(self._reader, source_ids, calendars, start, end,
                                exclude_booking)

    @asynccontextmanager
    async def booking_transaction(self) -> AsyncIterator[BookingTransaction]:
        """One write transaction to check a slot and book it: nobody books in between."""
        async with self._transaction(booking_changes=True) as db:
            yield BookingTransaction(db)

    async def book(self, body: Callable[[BookingTransaction], Coroutine[Any, Any, T]]) -> T:
        """``body`` (the check and the insert) as one booking transaction, run in one go:
        it may await only the transaction's methods (see ``Database.run_transaction``)."""
        return await self._run_transaction(lambda db: body(BookingTransaction(db)),
                                           booking_changes=True)

    async def cancel_booking(self, booking_id: str, *, now: int, reason: str = "",
                             by: str = "guest", mail: Sequence[MailJob] = (),
                             mail_limit: int = 20) -> bool:
        """Free a booking's time at once, queue the removal of its holds and ``mail``.

        The booking's SEQUENCE moves on, so the guest's calendar takes the
        cancellation for the event it has; reminders not yet sent are dropped.
        """
        async def cancel(db: Session) -> bool:
            cancelled = await db.execute(
                "UPDATE bookings SET status = 'cancelled', cancelled = ?, "
                "sequence = sequence + 1, cancel_reason = ?, cancelled_by = ? "
                "WHERE id = ? AND status = 'confirmed'", (now, reason, by, booking_id))
            if cancelled != 1:
                return False
            await db.execute("DELETE FROM booking_blocks WHERE booking_id = ?", (booking_id,))
            await drop_reminders(db, booking_id, "the booking was cancelled")
            row = await db.fetchone("SELECT sequence FROM bookings WHERE id = ?", (booking_id,))
            await queue_mail(db, booking_id, int(row[0]) if row else 0, mail, now=now,
                             per_address_per_day=mail_limit)
            # A hold moved but not yet delivered: the delete removes it wherever it is.
            await _holds_removed(db, booking_id, None, now, "cancelled before delivery")
            return True

        return await self._run_transaction(cancel, booking_changes=True)

    async def booking_counts(self, now: int) -> dict[str, BookingCounts]:
        """Per page: its bookings split so that every booking made lands in one count."""
        rows = await self._reader.fetchall(
            """SELECT page,
                      SUM(CASE WHEN status = 'confirmed' AND start_ts >= ? THEN 1 ELSE 0 END),
                      SUM(CASE WHEN status = 'confirmed' AND start_ts < ? THEN 1 ELSE 0 END),
                      SUM(CASE WHEN status = 'cancelled' THEN 1 ELSE 0 END)
               FROM bookings GROUP BY page""", (now, now))
        return {str(page): BookingCounts(int(a or 0), int(b or 0), int(c or 0))
                for page, a, b, c in rows}

    async def bookings_holding(self, calendar: str, start: int,
                               end: int) -> list[BookingRecord]:
        """Confirmed bookings that take time from ``calendar`` within [start, end)."""
        rows = await self._reader.fetchall(
            f"""SELECT {", ".join("b." + c.strip() for c in _BOOKING_COLUMNS.split(","))}
                FROM bookings b JOIN booking_blocks k ON k.booking_id = b.id
                WHERE k.calendar = ? AND k.end_ts > ? AND k.start_ts < ?
                  AND b.status = 'confirmed' ORDER BY b.start_ts""", (calendar, start, end))
        return [_booking_record(row) for row in rows]

    async def set_video_link(self, booking_id: str, link: str) -> None:
        """Give a booking the link its upstream hold got (Meet), unless it has one."""
        await self._write("UPDATE bookings SET video_link = ? WHERE id = ? AND video_link = ''",
                          (link, booking_id))

    async def booking_starts(self, host: str, start: int, end: int, *,
                             exclude_booking: str = "") -> list[int]:
        """Start times of the host's confirmed bookings in [start, end) (daily limits),
        but ``exclude_booking``'s."""
        return await _booking_starts(self._reader, host, start, end, exclude_booking)

    async def known_bookings(self, booking_ids: set[str]) -> set[str]:
        """Which of these ids are bookings of this fbproxy (any status)."""
        if not booking_ids:
            return set()
        ids = sorted(booking_ids)
        rows = await self._reader.fetchall(
            f"SELECT id FROM bookings WHERE id IN ({','.join('?' * len(ids))})", ids)
        return {str(row[0]) for row in rows}

    async def booking(self, booking_id: str) -> BookingRecord | None:
        return await _booking(self._reader, booking_id)


async def _busy_rows(db: Session, source_ids: Sequence[int],
                     calendars: Sequence[str], start: int, end: int,
                     exclude_booking: str = "") -> list[tuple[int, int, str]]:
    """Instances of the sources and booking blocks of the calendars overlapping [start, end).

    One statement, so one round trip to the database thread: inside a booking
    transaction, each round trip holds the write lock for an event-loop turn.
    """
    parts: list[str] = []
    parameters: list[object] = []
    if source_ids:
        marks = ",".join("?" * len(source_ids))
        # An instance overlapping [start, end) starts before end, so it ends before
        # end + the sources' longest instance: the index on (source_id, end_ts) is
        # read between two bounds instead of from start to the end of time.
        parts.append(
            f"""SELECT start_ts, end_ts, status FROM instances
                WHERE source_id IN ({marks}) AND end_ts > ? AND start_ts < ? AND end_ts < ? +
                    (SELECT COALESCE(MAX(max_span), 0) FROM sources WHERE id IN ({marks}))""")
        parameters += [*source_ids, start, end, end, *source_ids]
    if calendars:
        marks = ",".join("?" * len(calendars))
        parts.append(f"""SELECT start_ts, end_ts, 'busy' FROM booking_blocks
                         WHERE calendar IN ({marks}) AND end_ts > ? AND start_ts < ?
                           AND booking_id != ?""")
        parameters += [*calendars, start, end, exclude_booking]
    if not parts:
        return []
    # Rows as the driver gives them (tuples, asyncpg Records): both unpack alike.
    return await db.fetchall(" UNION ALL ".join(parts), parameters)  # type: ignore[return-value]


async def _booking_starts(db: Session, host: str, start: int, end: int,
                          exclude_booking: str = "") -> list[int]:
    rows = await db.fetchall(
        "SELECT start_ts FROM bookings WHERE host = ? AND status = 'confirmed' "
        "AND start_ts >= ? AND start_ts < ? AND id != ?", (host, start, end, exclude_booking))
    return [int(row[0]) for row in rows]


async def _booking(db: Session, booking_id: str) -> BookingRecord | None:
    row = await db.fetchone(f"SELECT {_BOOKING_COLUMNS} FROM bookings WHERE id = ?",
                            (booking_id,))
    return _booking_record(row) if row else None


async def _insert_blocks(db: Session, booking_id: str,
                         blocks: Sequence[tuple[str, int, int]]) -> None:
    """The time a booking takes from each calendar (host, resources)."""
    await db.executemany(
        "INSERT INTO booking_blocks (booking_id, calendar, start_ts, end_ts) "
        "VALUES (?, ?, ?, ?)", ((booking_id, *block) for block in blocks))


class BookingTransaction:
    """Reads and the insert of one booking, inside one BEGIN IMMEDIATE transaction."""

    def __init__(self, db: Session) -> None:
        self._db = db

    async def busy_rows(self, source_ids: Sequence[int], calendars: Sequence[str], start: int,
                        end: int, *, exclude_booking: str = "") -> list[tuple[int, int, str]]:
        return await _busy_rows(self._db, source_ids, calendars, start, end, exclude_booking)

    async def booking_starts(self, host: str, start: int, end: int, *,
                             exclude_booking: str = "") -> list[int]:
        return await _booking_starts(self._db, host, start, end, exclude_booking)

    async def booking(self, booking_id: str) -> BookingRecord | None:
        """The booking as this transaction sees it (a reschedule re-reads it here)."""
        return await _booking(self._db, booking_id)

    async def host_stats(self, hosts: Sequence[str], since: int) -> dict[str, tuple[int, int]]:
        """Per host: confirmed bookings created since ``since``, and the last creation time."""
        marks = ",".join("?" * len(hosts))
        rows = await self._db.fetchall(
            f"""SELECT host, SUM(CASE WHEN created >= ? THEN 1 ELSE 0 END), MAX(created)
                FROM bookings
                WHERE status = 'confirmed' AND host IN ({marks}) GROUP BY host""",
            (since, *hosts))
        return {host: (int(count or 0), int(last)) for host, count, last in rows}

    async def insert(self, booking: BookingRecord,
                     blocks: Sequence[tuple[str, int, int]]) -> None:
        await self._db.execute(
            f"INSERT INTO bookings ({_BOOKING_COLUMNS}) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (booking.id, booking.page, booking.host, booking.start, booking.end,
             booking.guest_name, booking.guest_email, json.dumps(booking.answers),
             booking.cancel_secret, booking.status, booking.created, booking.video_link,
             booking.guest_timezone, booking.sequence, booking.cancel_reason,
             booking.cancelled_by, booking.host_secret, booking.guest_language))
        await _insert_blocks(self._db, booking.id, blocks)

    async def queue_mail(self, booking: BookingRecord, jobs: Sequence[MailJob], *, now: int,
                         per_address_per_day: int) -> None:
        """Queue messages about ``booking``; committed with it."""
        await queue_mail(self._db, booking.id, booking.sequence, jobs, now=now,
                         per_address_per_day=per_address_per_day)

    async def queue_hold(self, booking_id: str, host: str, *, source: str,
                         calendar: str | None, hold: dict[str, Any], now: int) -> None:
        """Ask the outbox worker to write this hold; committed with the booking."""
        await _hold_written(self._db, booking_id, host, HoldPlan(source, calendar, hold), now)

    async def move(self, booking: BookingRecord, blocks: Sequence[tuple[str, int, int]], *,
                   sequence: int) -> bool:
        """Give the booking its new time, host and ``blocks``, if it is still confirmed at
        ``sequence``: its SEQUENCE moves on. The old blocks go first (the database
        refuses overlapping blocks, and the new time may overlap the old)."""
        moved = await self._db.execute(
            "UPDATE bookings SET host = ?, start_ts = ?, end_ts = ?, sequence = sequence + 1 "
            "WHERE id = ? AND status = 'confirmed' AND sequence = ?",
            (booking.host, booking.start, booking.end, booking.id, sequence))
        if moved != 1:
            return False
        await self._db.execute("DELETE FROM booking_blocks WHERE booking_id = ?", (booking.id,))
        await _insert_blocks(self._db, booking.id, blocks)
        return True

    async def requeue_mail(self, booking: BookingRecord, jobs: Sequence[MailJob], *, now: int,
                           per_address_per_day: int) -> None:
        """A moved booking's messages: the old time's reminders dropped, ``jobs`` queued."""
        await drop_reminders(self._db, booking.id, "the booking was moved")
        await self.queue_mail(booking, jobs, now=now, per_address_per_day=per_address_per_day)

    async def move_holds(self, booking_id: str, holds: Mapping[str, HoldPlan],
                         now: int) -> None:
        """The outbox rows that bring each host's calendar to the booking's new time.

        ``holds``: per host that holds the booking now (with a hold target), where
        and what. A host that kept it has its hold moved in place (one 'move' row,
        re-armed by each reschedule; a write not yet delivered also says the new
        time); a host that lost it (round robin) has its hold removed, as on
        cancelling; a new host gets a hold written.
        """
        rows = await self._db.fetchall(
            "SELECT host, action, state FROM hold_outbox WHERE booking_id = ?", (booking_id,))
        have = {(str(host), str(action)): str(state) for host, action, state in rows}
        holding = {host for host, action in have
                   if action == "write" and (host, "delete") not in have}
        for host in sorted(holding - set(holds)):
            await _holds_removed(self._db, booking_id, host, now, "moved to another host")
        for host, plan in holds.items():
            deleted = have.get((host, "delete"))
            if deleted is not None:
                # Back to a host whose hold was (to be) removed: that removal is void.
                await self._db.execute(
                    "DELETE FROM hold_outbox WHERE booking_id = ? AND host = ? "
                    "AND action = 'delete'", (booking_id, host))
            if (host, "write") not in have or deleted == "done":
                await _hold_written(self._db, booking_id, host, plan, now)
            else:
                await _hold_moved(self._db, booking_id, host, plan, now)


@dataclass(frozen=True, slots=True)
class HoldPlan:
    """Where a host's hold goes and what it says (``hold_fields``)."""

    source: str
    calendar: str | None
    hold: dict[str, Any]


async def _hold_written(db: Session, booking_id: str, host: str, plan: HoldPlan,
                        now: int) -> None:
    """A hold to write afresh (a new host; or one whose hold was removed meanwhile)."""
    await db.execute(
        """INSERT INTO hold_outbox
               (booking_id, host, action, source, calendar, hold, next_attempt)
           VALUES (?, ?, 'write', ?, ?, ?, ?)
           ON CONFLICT (booking_id, host, action) DO UPDATE SET
               source = excluded.source, calendar = excluded.calendar, hold = excluded.hold,
               state = 'pending', attempts = 0, next_attempt = excluded.next_attempt,
               last_error = NULL, ref = NULL, etag = NULL""",
        (booking_id, host, plan.source, plan.calendar, json.dumps(plan.hold), now))
    await db.execute(
        "UPDATE hold_outbox SET state = 'done', last_error = 'superseded by a new write' "
        "WHERE booking_id = ? AND host = ? AND action = 'move' AND state = 'pending'",
        (booking_id, host))


async def _hold_moved(db: Session, booking_id: str, host: str, plan: HoldPlan,
                      now: int) -> None:
    """The host keeps the booking: its hold moves in place, once, to the newest time."""
    hold = json.dumps(plan.hold)
    # A write still to deliver writes the new time (the move then finds it there).
    await db.execute(
        "UPDATE hold_outbox SET hold = ? WHERE booking_id = ? AND host = ? "
        "AND action = 'write' AND state = 'pending'", (hold, booking_id, host))
    await db.execute(
        """INSERT INTO hold_outbox
               (booking_id, host, action, source, calendar, hold, next_attempt)
           SELECT booking_id, host, 'move', source, calendar, ?, ?
           FROM hold_outbox WHERE booking_id = ? AND host = ? AND action = 'write'
           ON CONFLICT (booking_id, host, action) DO UPDATE SET
               hold = excluded.hold, state = 'pending', attempts = 0,
               next_attempt = excluded.next_attempt, last_error = NULL""",
        (hold, now, booking_id, host))


async def _holds_removed(db: Session, booking_id: str, host: str | None, now: int,
                         why: str) -> None:
    """Queue the removal of ``host``'s hold of the booking (None: every host's, a
    cancellation), and retire its move not yet delivered (``why`` says so)."""
    one = " AND host = ?" if host is not None else ""
    hosts = (host,) if host is not None else ()
    await db.execute(
        f"""INSERT INTO hold_outbox
               (booking_id, host, action, source, calendar, hold, next_attempt)
           SELECT booking_id, host, 'delete', source, calendar, hold, ?
           FROM hold_outbox WHERE booking_id = ?{one} AND action = 'write'
           ON CONFLICT DO NOTHING""", (now, booking_id, *hosts))
    await db.execute(
        f"UPDATE hold_outbox SET state = 'done', last_error = ? "
        f"WHERE booking_id = ?{one} AND action = 'move' AND state = 'pending'",
        (why, booking_id, *hosts))
