"""Token buckets in the database, so every instance counts a client's bookings together.

One row a bucket: ``key`` is ``<limit>:<client>`` (``bookings:192.0.2.7``,
``failed_bookings:2001:db8:1:2::/64``), ``tokens`` what was left when it was
last counted, ``updated`` when (Unix seconds, fractional). A missing row is a
full bucket. The arithmetic is kit/ratelimit.py's, written in SQL so that a
take or a refund is one statement: concurrent requests on any instance
cannot both spend the last token (PostgreSQL locks the row an upsert changes;
SQLite writes one at a time).

On PostgreSQL the statements run outside the write transaction's advisory
lock: they touch no other table, each is atomic by itself, and a flood of
booking attempts (the thing limited) must not queue behind sync rounds or
hold up bookings. On SQLite the in-memory limiter is used instead (one
process); these methods still work there, in a short write transaction.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from server.store.connection import StoreBase
from server.store.database import Session


class RateBucketQueries(StoreBase):
    """Store methods for the rate_buckets table (see kit/ratelimit.SharedBuckets)."""

    @asynccontextmanager
    async def _bucket_statement(self) -> AsyncIterator[Session]:
        if self._db.dialect == "postgresql":
            yield self._reader  # a pooled connection in autocommit: one statement, atomic
        else:
            async with self._transaction() as db:
                yield db

    def _refilled(self) -> str:
        """The stored bucket's tokens at ``excluded.updated``, capped at the burst.

        Parameters: the burst, then tokens per second. A clock that went back
        (another instance's, a little behind) refills nothing rather than drains.
        """
        low, high = ("GREATEST", "LEAST") if self._db.dialect == "postgresql" else \
            ("MAX", "MIN")
        return (f"{high}(?, rate_buckets.tokens + "
                f"{low}(0, excluded.updated - rate_buckets.updated) * ?)")

    async def take_rate_token(self, key: str, burst: float, per_second: float,
                              now: float) -> float:
        """Spend a token of bucket ``key``: 0 if there was one, else the seconds until one."""
        refilled = self._refilled()
        async with self._bucket_statement() as db:
            # A new bucket starts full, less this token; a stored one, refilled, gives
            # one when it has one, and is left alone (no row returned) when it has not.
            taken = await db.fetchone(
                "INSERT INTO rate_buckets (key, tokens, updated) VALUES (?, ?, ?) "
                f"ON CONFLICT (key) DO UPDATE SET tokens = {refilled} - 1, "
                "updated = excluded.updated "
                f"WHERE {refilled} >= 1 RETURNING tokens",
                (key, float(burst) - 1, float(now), float(burst), float(per_second),
                 float(burst), float(per_second)))
            if taken is not None:
                return 0.0
            row = await db.fetchone("SELECT tokens, updated FROM rate_buckets WHERE key = ?",
                                    (key,))
        if row is None:  # pruned in between: a full bucket
            return 0.0
        tokens = min(burst, float(row[0]) + max(0.0, now - float(row[1])) * per_second)
        return max(0.0, (1 - tokens) / per_second)

    async def refund_rate_token(self, key: str, burst: float, per_second: float,
                                now: float) -> None:
        """Give back one token of bucket ``key`` (never past the burst)."""
        low, high = ("GREATEST", "LEAST") if self._db.dialect == "postgresql" else \
            ("MAX", "MIN")
        async with self._bucket_statement() as db:
            await db.execute(
                f"UPDATE rate_buckets SET tokens = {high}(?, tokens + 1 + "
                f"{low}(0, ? - updated) * ?), updated = {high}(updated, ?) WHERE key = ?",
                (float(burst), float(now), float(per_second), float(now), key))

    async def prune_rate_buckets(self, prefix: str, *, idle_since: float,
                                 keep: int) -> int:
        """Forget buckets under ``prefix`` last counted before ``idle_since`` (full again,
        so forgetting them changes nothing), and all but the ``keep`` most recently
        counted; how many went."""
        # Keys from prefix to prefix + the next character: the primary key's range.
        low, high = prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)
        async with self._bucket_statement() as db:
            idle = await db.execute(
                "DELETE FROM rate_buckets WHERE key >= ? AND key < ? AND updated < ?",
                (low, high, float(idle_since)))
            # SQLite wants a LIMIT before OFFSET; -1 is none. PostgreSQL takes OFFSET alone.
            unlimited = "LIMIT -1 " if self._db.dialect == "sqlite" else ""
            crowd = await db.execute(
                "DELETE FROM rate_buckets WHERE key IN (SELECT key FROM rate_buckets "
                f"WHERE key >= ? AND key < ? ORDER BY updated DESC {unlimited}OFFSET ?)",
                (low, high, keep))
        return idle + crowd
