"""Alerts: the state last reported for each subject, and the messages still to send."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from server.store.connection import StoreBase


@dataclass(frozen=True, slots=True)
class AlertMessage:
    id: int
    alert: str
    payload: dict[str, Any]
    attempts: int


class AlertQueries(StoreBase):
    """Store methods for alerts."""

    async def alert_states(self) -> dict[str, tuple[str, int]]:
        rows = await self._reader.fetchall("SELECT subject, state, since FROM alert_state")
        return {str(s): (str(state), int(since)) for s, state, since in rows}

    async def change_alert_state(self, subject: str, state: str, *, now: int,
                                 messages: Sequence[tuple[str, dict[str, Any]]],
                                 seen: str | None = None) -> bool:
        """Record ``subject``'s new state and queue its messages, in one transaction.

        Only if its state is still ``seen`` (None: none recorded), the one the caller
        judged the change from: of several instances seeing the same change, one
        queues the messages. False when another got there first.
        """
        async with self._transaction() as db:
            row = await db.fetchone("SELECT state FROM alert_state WHERE subject = ?",
                                    (subject,))
            if (row[0] if row else None) != seen:
                return False
            await db.execute(
                """INSERT INTO alert_state (subject, state, since) VALUES (?, ?, ?)
                   ON CONFLICT (subject) DO UPDATE SET state = excluded.state,
                       since = excluded.since""", (subject, state, now))
            await db.executemany(
                "INSERT INTO alert_outbox (alert, payload, next_attempt) VALUES (?, ?, ?)",
                ((alert, json.dumps(payload), now) for alert, payload in messages))
        return True

    async def claim_alerts(self, now: int, *, holder: str, claim_seconds: int,
                           limit: int = 50) -> list[AlertMessage]:
        """Take due messages for ``holder`` to send (see HoldQueries.claim_holds)."""
        skip = " FOR UPDATE SKIP LOCKED" if self._db.dialect == "postgresql" else ""
        async with self._transaction() as db:
            rows = await db.fetchall(
                f"""SELECT id, alert, payload, attempts FROM alert_outbox
                    WHERE state = 'pending' AND next_attempt <= ? AND claimed_until <= ?
                    ORDER BY id LIMIT ?{skip}""", (now, now, limit))
            await db.executemany(
                "UPDATE alert_outbox SET claimed_by = ?, claimed_until = ? WHERE id = ?",
                ((holder, now + claim_seconds, row[0]) for row in rows))
        return [AlertMessage(int(i), str(a), json.loads(p), int(n)) for i, a, p, n in rows]

    async def due_alerts(self, now: int, limit: int = 50) -> list[AlertMessage]:
        rows = await self._reader.fetchall(
            """SELECT id, alert, payload, attempts FROM alert_outbox
               WHERE state = 'pending' AND next_attempt <= ? ORDER BY id LIMIT ?""",
            (now, limit))
        return [AlertMessage(int(i), str(a), json.loads(p), int(n))
                for i, a, p, n in rows]

    async def alert_sent(self, message_id: int) -> None:
        async with self._transaction() as db:
            await db.execute("UPDATE alert_outbox SET state = 'sent', claimed_by = NULL, "
                             "claimed_until = 0 WHERE id = ?", (message_id,))

    async def alert_failed(self, message_id: int, *, error: str, retry_at: int) -> None:
        async with self._transaction() as db:
            await db.execute(
                """UPDATE alert_outbox SET attempts = attempts + 1, last_error = ?,
                       next_attempt = ?, claimed_by = NULL, claimed_until = 0
                   WHERE id = ?""", (error[:500], retry_at, message_id))
