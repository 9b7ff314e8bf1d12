"""Source leases: which instance syncs each source, and the fence on a round's commit."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from server.errors import LeaseLost
from server.store.connection import StoreBase
from server.store.database import Session


@dataclass(frozen=True, slots=True)
class Fence:
    """What a sync round started from. Its results commit only while the source's
    stored sync state is still ``state`` and, with leases, this holder still holds
    the lease at ``epoch``: a round of an instance that lost the source (stalled,
    cut off, taken over) is discarded instead of overwriting the new holder's work."""

    state: dict[str, Any]
    holder: str | None = None
    epoch: int | None = None


# A row per live instance sits beside the source leases, its "source" this prefix and
# the holder (no source name starts with it): how instances count each other.
INSTANCE = "@"
# Rows of instances gone this long are deleted.
FORGET_AFTER = 86400

_TAKE = """INSERT INTO source_leases (source, holder, epoch, expires)
           VALUES (?, ?, 1, ?)
           ON CONFLICT (source) DO UPDATE SET
               epoch = CASE WHEN source_leases.holder = excluded.holder
                            THEN source_leases.epoch
                            ELSE source_leases.epoch + 1 END,
               holder = excluded.holder, expires = excluded.expires
           WHERE source_leases.holder = excluded.holder
              OR source_leases.expires <= ?
           RETURNING epoch"""


class LeaseQueries(StoreBase):
    """Store methods for source leases."""

    async def take_leases(self, names: Sequence[str], holder: str, *, now: int,
                          ttl: int) -> dict[str, int]:
        """Renew ``holder``'s leases among ``names`` and take those free or expired,
        up to its fair share: the sources spread over the live instances (so
        several instances sync on several cores), and one that holds more than
        its share (others started since) lets the rest go.

        Returns the leases held afterwards, each with its epoch (a taken-over
        lease gets a new epoch, which fences the previous holder's rounds).
        """
        held: dict[str, int] = {}
        async with self._transaction() as db:
            await db.execute(_TAKE, (INSTANCE + holder, holder, now + ttl, now))
            await db.execute("DELETE FROM source_leases WHERE source LIKE ? AND expires < ?",
                             (INSTANCE + "%", now - FORGET_AFTER))
            live = await db.fetchone(
                "SELECT COUNT(*) FROM source_leases WHERE source LIKE ? AND expires > ?",
                (INSTANCE + "%", now))
            share = math.ceil(len(names) / max(1, int(live[0]) if live else 1))
            rows = await db.fetchall(
                "SELECT source FROM source_leases WHERE holder = ? AND expires > ? "
                "AND source NOT LIKE ?", (holder, now, INSTANCE + "%"))
            mine = sorted(str(row[0]) for row in rows if row[0] in names)
            for name in mine[share:]:
                await db.execute("UPDATE source_leases SET expires = 0 "
                                 "WHERE source = ? AND holder = ?", (name, holder))
            for name in [*mine[:share], *(n for n in names if n not in mine)]:
                if len(held) >= share:
                    break
                row = await db.fetchone(
                    _TAKE, (name, holder, now + ttl, now))
                if row is not None:
                    held[name] = int(row[0])
        return held

    async def release_leases(self, holder: str) -> None:
        """Give up every lease of ``holder`` (a clean shutdown): others take over at once."""
        async with self._transaction() as db:
            await db.execute("UPDATE source_leases SET expires = 0 WHERE holder = ?", (holder,))

    async def lease_holders(self) -> dict[str, tuple[str, int]]:
        """Per source: who holds its lease and until when (for status)."""
        rows = await self._reader.fetchall(
            "SELECT source, holder, expires FROM source_leases WHERE source NOT LIKE ?",
            (INSTANCE + "%",))
        return {str(source): (str(holder), int(expires)) for source, holder, expires in rows}


async def check_fence(db: Session, source_id: int, fence: Fence | None) -> None:
    """Inside a write transaction: refuse to commit a round its fence no longer allows."""
    if fence is None:
        return
    row = await db.fetchone(
        """SELECT s.name, s.state, l.holder, l.epoch FROM sources s
           LEFT JOIN source_leases l ON l.source = s.name WHERE s.id = ?""", (source_id,))
    if row is None:
        raise LeaseLost(f"source id {source_id} is gone")
    name, state, holder, epoch = row
    if fence.holder is not None and (holder != fence.holder or epoch != fence.epoch):
        raise LeaseLost(f"source {name}: another instance ({holder}) took over; "
                        "this round is discarded")
    if json.loads(state) != fence.state:
        raise LeaseLost(f"source {name}: its sync state changed during this round "
                        "(another process synced it); this round is discarded")
