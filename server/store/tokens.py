"""Stored OAuth tokens: one row a name, its value encrypted before it gets here.

The store neither encrypts nor decrypts: it keeps what server/sync/tokens.py
hands it (Fernet text) and hands it back. Names are ``<kind>:<source>``
(``google:work``, ``microsoft:office``).
"""

from __future__ import annotations

from collections.abc import Callable

from server.store.connection import StoreBase


class TokenQueries(StoreBase):
    """Store methods for the tokens table."""

    async def stored_token(self, name: str) -> str | None:
        row = await self._reader.fetchone("SELECT value FROM tokens WHERE name = ?", (name,))
        return str(row[0]) if row else None

    async def store_token(self, name: str, value: str, *, now: int) -> None:
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO tokens (name, value, updated) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value, "
                "updated = excluded.updated", (name, value, now))

    async def token_names(self) -> list[str]:
        rows = await self._reader.fetchall("SELECT name FROM tokens ORDER BY name")
        return [str(row[0]) for row in rows]

    async def rewrite_tokens(self, rewrite: Callable[[str, str], str | None], *,
                             now: int) -> int:
        """Replace each value with ``rewrite(name, value)`` (None: leave it), in one
        transaction, so a token refreshed meanwhile is not overwritten with an older
        one; how many were rewritten."""
        async with self._transaction() as db:
            rows = await db.fetchall("SELECT name, value FROM tokens ORDER BY name")
            changed = [(new, now, str(name)) for name, value in rows
                       if (new := rewrite(str(name), str(value))) is not None]
            await db.executemany("UPDATE tokens SET value = ?, updated = ? WHERE name = ?",
                                 changed)
        return len(changed)
