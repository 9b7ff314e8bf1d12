"""The mail outbox: messages about bookings, queued in the booking's own transaction.

A row says what to send (kind), to whom (the guest or a host calendar, and the
address it had when queued), for which version of the booking (its SEQUENCE)
and when (``next_attempt``: now, or a reminder's time). The message itself is
rendered when it is sent, from the booking as it is then. Rows are never
deleted: a sent row is the proof it was sent, so a reminder is sent once across
restarts, and the per-address limit counts what went out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from server.store.connection import StoreBase
from server.store.database import Row, Session

_COLUMNS = "id, booking_id, kind, recipient, address, sequence, tag, attempts, next_attempt"
DAY = 86400


@dataclass(frozen=True, slots=True)
class MailJob:
    """One message to queue."""

    kind: str  # invite | update | cancel | reminder | host_booked | host_moved | host_cancelled
    recipient: str  # "guest", or the host calendar's name
    address: str
    due: int  # not before (a reminder's time; else now)
    tag: str = ""  # which reminder ("24h"); "" otherwise


@dataclass(frozen=True, slots=True)
class MailRow:
    id: int
    booking_id: str
    kind: str
    recipient: str
    address: str
    sequence: int
    tag: str
    attempts: int
    next_attempt: int


@dataclass(frozen=True, slots=True)
class MailSummary:
    pending: int
    failing: int  # pending rows that failed at least once
    sent: int
    dropped: int
    last_error: str | None


async def queue_mail(db: Session, booking_id: str, sequence: int, jobs: Sequence[MailJob], *,
                     now: int, per_address_per_day: int) -> None:
    """Queue ``jobs`` inside the caller's transaction (a booking, move or cancellation).

    A job past its address's limit for the last 24 hours is stored as dropped, so
    the status page can say so; queueing the same job twice is harmless.
    """
    sent_to: dict[str, int] = {}  # address -> its messages in the last 24 hours
    for job in jobs:
        if job.address not in sent_to:
            row = await db.fetchone(
                "SELECT COUNT(*) FROM mail_outbox WHERE address = ? AND queued > ? "
                "AND state != 'dropped'", (job.address, now - DAY))
            sent_to[job.address] = int(row[0]) if row is not None else 0
        over = sent_to[job.address] >= per_address_per_day
        queued = await db.execute(
            """INSERT INTO mail_outbox (booking_id, kind, recipient, address, sequence, tag,
                                        state, next_attempt, queued, last_error)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING""",
            (booking_id, job.kind, job.recipient, job.address, sequence, job.tag,
             "dropped" if over else "pending", job.due, now,
             f"over {per_address_per_day} messages to this address in 24 hours"
             if over else None))
        if queued and not over:
            sent_to[job.address] += 1


async def drop_reminders(db: Session, booking_id: str, reason: str) -> None:
    """Reminders not yet sent will not be (the booking moved or was cancelled)."""
    await db.execute(
        "UPDATE mail_outbox SET state = 'dropped', last_error = ?, claimed_by = NULL, "
        "claimed_until = 0 WHERE booking_id = ? AND kind = 'reminder' AND state = 'pending'",
        (reason, booking_id))


class MailQueries(StoreBase):
    """Store methods for the mail outbox's worker and the status page."""

    async def claim_mail(self, now: int, *, holder: str, claim_seconds: int,
                         limit: int = 20) -> list[MailRow]:
        """Due rows for ``holder`` to send; nobody else takes them until they are sent,
        failed, or the claim runs out (its holder died mid-send)."""
        skip = " FOR UPDATE SKIP LOCKED" if self._db.dialect == "postgresql" else ""

        async def claim(db: Session) -> list[Row]:
            rows = await db.fetchall(
                f"""SELECT {_COLUMNS} FROM mail_outbox
                    WHERE state = 'pending' AND next_attempt <= ? AND claimed_until <= ?
                    ORDER BY next_attempt, id LIMIT ?{skip}""", (now, now, limit))
            await db.executemany(
                "UPDATE mail_outbox SET claimed_by = ?, claimed_until = ? WHERE id = ?",
                ((holder, now + claim_seconds, row[0]) for row in rows))
            return rows

        return [MailRow(*row) for row in await self._run_transaction(claim)]

    async def mail_sent(self, row: MailRow, *, now: int) -> None:
        await self._write(
            """UPDATE mail_outbox SET state = 'sent', sent = ?, attempts = attempts + 1,
                   last_error = NULL, claimed_by = NULL, claimed_until = 0
               WHERE id = ? AND state = 'pending'""", (now, row.id))

    async def mail_dropped(self, row: MailRow, reason: str) -> None:
        """Not to be sent after all (the page or host is gone from the config)."""
        await self._write(
            """UPDATE mail_outbox SET state = 'dropped', last_error = ?, claimed_by = NULL,
                   claimed_until = 0 WHERE id = ? AND state = 'pending'""",
            (reason[:2000], row.id))

    async def mail_failed(self, row: MailRow, *, error: str, retry_at: int) -> None:
        await self._write(
            """UPDATE mail_outbox SET attempts = attempts + 1, last_error = ?,
                   next_attempt = ?, claimed_by = NULL, claimed_until = 0
               WHERE id = ? AND state = 'pending'""", (error[:2000], retry_at, row.id))

    async def mail_pending(self, row: MailRow) -> bool:
        """Still to send (not dropped meanwhile by a reschedule or cancellation)."""
        return await self._reader.fetchone(
            "SELECT 1 FROM mail_outbox WHERE id = ? AND state = 'pending'",
            (row.id,)) is not None

    async def mail_summary(self, now: int) -> MailSummary:
        """Counts for `fbproxy status` and the status page (pending: due or not)."""
        row = await self._reader.fetchone(
            """SELECT SUM(CASE WHEN state = 'pending' AND next_attempt <= ? THEN 1 ELSE 0 END),
                      SUM(CASE WHEN state = 'pending' AND attempts > 0 THEN 1 ELSE 0 END),
                      SUM(CASE WHEN state = 'sent' THEN 1 ELSE 0 END),
                      SUM(CASE WHEN state = 'dropped' THEN 1 ELSE 0 END),
                      MAX(CASE WHEN state = 'pending' THEN last_error END)
               FROM mail_outbox""", (now,))
        if row is None:
            return MailSummary(0, 0, 0, 0, None)
        return MailSummary(int(row[0] or 0), int(row[1] or 0), int(row[2] or 0),
                           int(row[3] or 0), row[4])

    async def mail_of_booking(self, booking_id: str) -> list[tuple[str, str, str, int, str]]:
        """(kind, recipient, state, sequence, tag) of a booking's messages, oldest first."""
        rows = await self._reader.fetchall(
            "SELECT kind, recipient, state, sequence, tag FROM mail_outbox "
            "WHERE booking_id = ? ORDER BY id", (booking_id,))
        return [(str(k), str(r), str(s), int(q), str(t)) for k, r, s, q, t in rows]

    async def failing_mail(self, min_attempts: int) -> list[MailRow]:
        """Pending rows that failed at least ``min_attempts`` times (the mail_failing alert)."""
        rows = await self._reader.fetchall(
            f"SELECT {_COLUMNS} FROM mail_outbox WHERE state = 'pending' AND attempts >= ? "
            "ORDER BY id", (min_attempts,))
        return [MailRow(*row) for row in rows]
