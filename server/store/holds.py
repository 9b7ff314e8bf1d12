"""The hold outbox: holds to write or remove upstream, and their delivery."""

from __future__ import annotations

from server.store.connection import StoreBase
from server.store.database import Row, Session
from server.store.records import _OUTBOX_COLUMNS, OutboxRow, PendingHold

# How a delivered hold's last_error says that its video link is missing, and why.
VIDEO_PROBLEM = "no video link: "


class HoldQueries(StoreBase):
    """Store methods for the hold outbox."""

    async def claim_holds(self, now: int, *, holder: str, claim_seconds: int,
                          limit: int = 50) -> list[OutboxRow]:
        """Take due rows for ``holder`` to deliver: nobody else gets them until they are
        done, failed, or the claim runs out (its holder died mid-delivery)."""
        # SKIP LOCKED: instances never wait on each other's claims (with the write
        # lock every transaction takes, it never has to skip; it documents intent).
        skip = " FOR UPDATE SKIP LOCKED" if self._db.dialect == "postgresql" else ""

        async def claim(db: Session) -> list[Row]:
            rows = await db.fetchall(
                f"""SELECT {_OUTBOX_COLUMNS} FROM hold_outbox
                    WHERE state = 'pending' AND next_attempt <= ? AND claimed_until <= ?
                    ORDER BY next_attempt LIMIT ?{skip}""", (now, now, limit))
            await db.executemany(
                """UPDATE hold_outbox SET claimed_by = ?, claimed_until = ?
                   WHERE booking_id = ? AND host = ? AND action = ?""",
                ((holder, now + claim_seconds, row[0], row[1], row[2]) for row in rows))
            return rows

        return [OutboxRow(*row) for row in await self._run_transaction(claim)]

    async def renew_hold_claim(self, row: OutboxRow, *, holder: str, until: int) -> bool:
        """Keep a claim while its delivery runs; False if it was lost meanwhile."""
        return await self._write(
            """UPDATE hold_outbox SET claimed_until = ?
               WHERE booking_id = ? AND host = ? AND action = ? AND claimed_by = ?
               AND state = 'pending'""",
            (until, row.booking_id, row.host, row.action, holder)) == 1

    async def due_holds(self, now: int, limit: int = 50) -> list[OutboxRow]:
        """Due rows, claimed or not (for tests and status; delivery claims them)."""
        rows = await self._reader.fetchall(
            f"""SELECT {_OUTBOX_COLUMNS} FROM hold_outbox
                WHERE state = 'pending' AND next_attempt <= ?
                ORDER BY next_attempt LIMIT ?""", (now, limit))
        return [OutboxRow(*row) for row in rows]

    async def write_ref(self, booking_id: str, host: str) -> tuple[str | None, str | None]:
        """Where the write of this hold landed (ref, etag), if it did."""
        write = await self.write_state(booking_id, host)
        return (write[1], write[2]) if write is not None and write[0] == "done" else (None, None)

    async def write_state(self, booking_id: str,
                          host: str) -> tuple[str, str | None, str | None] | None:
        """(state, ref, etag) of this hold's write, if there is one (a move waits for it)."""
        row = await self._reader.fetchone(
            "SELECT state, ref, etag FROM hold_outbox WHERE booking_id = ? AND host = ? "
            "AND action = 'write'", (booking_id, host))
        return (str(row[0]), row[1], row[2]) if row else None

    async def hold_waiting(self, row: OutboxRow, *, note: str, retry_at: int) -> None:
        """Not yet: try again at ``retry_at``, no failed attempt counted (no alert)."""
        await self._write(
            """UPDATE hold_outbox SET last_error = ?, next_attempt = ?, claimed_by = NULL,
                   claimed_until = 0
               WHERE booking_id = ? AND host = ? AND action = ?""",
            (note, retry_at, row.booking_id, row.host, row.action))

    async def hold_moved(self, row: OutboxRow, *, ref: str, etag: str | None) -> bool:
        """A move delivered: the write's row learns where the hold is now (so a later
        move or delete finds it); the move is done unless a newer reschedule re-armed it
        meanwhile with another time (then it stays pending, to be delivered again)."""
        async def record(db: Session) -> bool:
            await db.execute(
                "UPDATE hold_outbox SET ref = ?, etag = ? WHERE booking_id = ? AND host = ? "
                "AND action = 'write'", (ref, etag, row.booking_id, row.host))
            done = await db.execute(
                """UPDATE hold_outbox SET state = 'done', attempts = attempts + 1,
                       last_error = NULL, claimed_by = NULL, claimed_until = 0
                   WHERE booking_id = ? AND host = ? AND action = 'move' AND hold = ?""",
                (row.booking_id, row.host, row.hold))
            if done != 1:
                await db.execute(
                    "UPDATE hold_outbox SET claimed_by = NULL, claimed_until = 0 "
                    "WHERE booking_id = ? AND host = ? AND action = 'move'",
                    (row.booking_id, row.host))
            return done == 1

        return await self._run_transaction(record)

    async def hold_delivered(self, row: OutboxRow, *, ref: str | None,
                             etag: str | None, problem: str | None = None) -> None:
        """Done; ``problem`` is what went wrong although the hold landed (no Meet link),
        kept in last_error so the status page shows it."""
        await self._write(
            """UPDATE hold_outbox SET state = 'done', attempts = attempts + 1, ref = ?,
                   etag = ?, last_error = ?, claimed_by = NULL, claimed_until = 0
               WHERE booking_id = ? AND host = ? AND action = ?""",
            (ref, etag, problem[:2000] if problem else None, row.booking_id, row.host,
             row.action))

    async def video_problem(self, booking_id: str) -> str | None:
        """Why a booking's hold landed without the video link it asked for, if it did."""
        row = await self._reader.fetchone(
            "SELECT last_error FROM hold_outbox WHERE booking_id = ? AND action = 'write' "
            "AND state = 'done' AND last_error LIKE ? LIMIT 1",
            (booking_id, VIDEO_PROBLEM + "%"))
        return str(row[0]).removeprefix(VIDEO_PROBLEM) if row else None

    async def hold_pending(self, row: OutboxRow) -> bool:
        return await self._reader.fetchone(
            "SELECT 1 FROM hold_outbox WHERE booking_id = ? AND host = ? AND action = ? "
            "AND state = 'pending'", (row.booking_id, row.host, row.action)) is not None

    async def retire_write(self, booking_id: str, host: str) -> None:
        """A booking cancelled before its hold was written: never write it."""
        await self._write(
            """UPDATE hold_outbox SET state = 'done', last_error = 'cancelled before delivery'
               WHERE booking_id = ? AND host = ? AND action = 'write'
               AND state = 'pending'""", (booking_id, host))

    async def hold_failed(self, row: OutboxRow, *, error: str, retry_at: int) -> None:
        await self._write(
            """UPDATE hold_outbox SET attempts = attempts + 1, last_error = ?,
                   next_attempt = ?, claimed_by = NULL, claimed_until = 0
               WHERE booking_id = ? AND host = ? AND action = ?""",
            (error[:2000], retry_at, row.booking_id, row.host, row.action))

    async def hold_summary(self) -> list[tuple[str, str, int, str | None]]:
        """(action, state, count, a last error) per action and state, for `fbproxy status`."""
        rows = await self._reader.fetchall(
            """SELECT action, state, COUNT(*), MAX(last_error) FROM hold_outbox
               GROUP BY action, state ORDER BY action, state""")
        return [(a, s, int(n), e) for a, s, n, e in rows]

    async def undelivered_holds(self, limit: int = 50) -> list[PendingHold]:
        """Holds not yet written or removed upstream, oldest first (for `fbproxy status`)."""
        rows = await self._reader.fetchall(
            """SELECT booking_id, host, action, source, attempts, next_attempt, last_error
               FROM hold_outbox WHERE state = 'pending' ORDER BY next_attempt LIMIT ?""",
            (limit,))
        return [PendingHold(*row) for row in rows]
