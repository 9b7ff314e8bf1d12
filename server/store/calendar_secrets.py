"""The generated secret of each calendar."""

from __future__ import annotations

import secrets

from server.store.connection import StoreBase


class CalendarSecretQueries(StoreBase):
    """Store methods for calendar secrets."""

    async def calendar_secret(self, calendar: str, *, now: int) -> str:
        """The generated secret of ``calendar``, created on first use."""
        cursor = await self._reader.execute(
            "SELECT secret FROM calendar_secrets WHERE calendar = ?", (calendar,))
        row = await cursor.fetchone()
        if row is not None:
            return str(row[0])
        async with self._transaction() as db:
            await db.execute(
                "INSERT OR IGNORE INTO calendar_secrets (calendar, secret, created) VALUES (?,?,?)",
                (calendar, secrets.token_urlsafe(32), now))
            cursor = await db.execute(
                "SELECT secret FROM calendar_secrets WHERE calendar = ?", (calendar,))
            row = await cursor.fetchone()
            assert row is not None
            return str(row[0])
