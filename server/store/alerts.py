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
                                 messages: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Record ``subject``'s new state and queue its messages, in one transaction."""
        async with self._transaction() as db:
            await db.execute(
                """INSERT INTO alert_state (subject, state, since) VALUES (?, ?, ?)
                   ON CONFLICT (subject) DO UPDATE SET state = excluded.state,
                       since = excluded.since""", (subject, state, now))
            await db.executemany(
                "INSERT INTO alert_outbox (alert, payload, next_attempt) VALUES (?, ?, ?)",
                ((alert, json.dumps(payload), now) for alert, payload in messages))

    async def due_alerts(self, now: int, limit: int = 50) -> list[AlertMessage]:
        rows = await self._reader.fetchall(
            """SELECT id, alert, payload, attempts FROM alert_outbox
               WHERE state = 'pending' AND next_attempt <= ? ORDER BY id LIMIT ?""",
            (now, limit))
        return [AlertMessage(int(i), str(a), json.loads(p), int(n))
                for i, a, p, n in rows]

    async def alert_sent(self, message_id: int) -> None:
        async with self._transaction() as db:
            await db.execute("UPDATE alert_outbox SET state = 'sent' WHERE id = ?",
                             (message_id,))

    async def alert_failed(self, message_id: int, *, error: str, retry_at: int) -> None:
        async with self._transaction() as db:
            await db.execute(
                """UPDATE alert_outbox SET attempts = attempts + 1, last_error = ?,
                       next_attempt = ? WHERE id = ?""", (error[:500], retry_at, message_id))
