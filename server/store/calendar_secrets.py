"""The generated secret of each calendar."""

from __future__ import annotations

import secrets

from server.store.connection import StoreBase


class CalendarSecretQueries(StoreBase):
    """Store methods for calendar secrets."""

    async def calendar_secret(self, calendar: str, *, now: int) -> str:
        """The generated secret of ``calendar``, created on first use."""
        row = await self._reader.fetchone(
            "SELECT secret FROM calendar_secrets WHERE calendar = ?", (calendar,))
        if row is not None:
            return str(row[0])
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO calendar_secrets (calendar, secret, created) VALUES (?,?,?) "
                "ON CONFLICT DO NOTHING", (calendar, secrets.token_urlsafe(32), now))
            row = await db.fetchone(
                "SELECT secret FROM calendar_secrets WHERE calendar = ?", (calendar,))
            assert row is not None
            return str(row[0])
