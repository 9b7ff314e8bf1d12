"""The CalDAV endpoint's collections: current members and the change log behind sync tokens."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from server.store.connection import StoreBase
from server.store.database import Session


@dataclass(frozen=True, slots=True)
class DavCollection:
    calendar: str
    lineage: str  # random per collection: tokens of another database never match
    last_seq: int  # the newest change
    floor_seq: int  # tokens older than this predate pruned changes


@dataclass(frozen=True, slots=True)
class DavMember:
    uid: str
    start: int
    end: int
    status: str
    added: int
    seq: int  # the change that made the member what it is now (added or removed)
    removed: bool


_MEMBER = ("uid, start_ts, end_ts, status, added, COALESCE(removed_seq, added_seq), "
           "removed_seq IS NOT NULL")
MemberRow = tuple[str, int, int, str]  # uid, start, end, status


class DavQueries(StoreBase):
    """Store methods for the CalDAV endpoint."""

    async def dav_refresh(self, calendar: str, members: Sequence[MemberRow], *, now: int,
                          prune_before: int) -> None:
        """Make ``members`` the collection's members, logging each addition and removal."""
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO dav_collections (calendar, lineage) VALUES (?, ?) "
                "ON CONFLICT DO NOTHING", (calendar, secrets.token_urlsafe(9)))
            rows = await db.fetchall(
                "SELECT uid FROM dav_members WHERE calendar = ? AND removed_seq IS NULL",
                (calendar,))
            present = {str(row[0]) for row in rows}
            wanted = {member[0]: member for member in members}
            removed = sorted(present - wanted.keys())
            added = sorted((wanted[uid] for uid in wanted.keys() - present),
                           key=lambda m: (m[1], m[0]))
            if removed or added:
                await _log_changes(db, calendar, removed, added, now)
            await _prune(db, calendar, prune_before)

    async def dav_collection(self, calendar: str) -> DavCollection | None:
        row = await self._reader.fetchone(
            "SELECT calendar, lineage, last_seq, floor_seq FROM dav_collections "
            "WHERE calendar = ?", (calendar,))
        return DavCollection(*row) if row else None

    async def dav_members(self, calendar: str, *, uids: Sequence[str] | None = None,
                          start: int | None = None, end: int | None = None) -> list[DavMember]:
        """Current members, by start; only ``uids`` or those overlapping [start, end)."""
        sql = f"SELECT {_MEMBER} FROM dav_members WHERE calendar = ? AND removed_seq IS NULL"
        args: list[object] = [calendar]
        if uids is not None:
            if not uids:
                return []
            sql += f" AND uid IN ({','.join('?' * len(uids))})"
            args += uids
        if start is not None:
            sql += " AND end_ts > ?"
            args.append(start)
        if end is not None:
            sql += " AND start_ts < ?"
            args.append(end)
        rows = await self._reader.fetchall(sql + " ORDER BY start_ts, uid", args)
        return [_member(row) for row in rows]

    async def dav_changes(self, calendar: str, *, since: int, limit: int,
                          initial: bool) -> list[DavMember]:
        """Changes after position ``since``, oldest first: for a sync-collection answer.

        ``initial`` (no token) lists the current members only. Otherwise a
        member added and removed since the token is left out: the client never
        saw it.
        """
        if initial:
            rows = await self._reader.fetchall(
                f"""SELECT {_MEMBER} FROM dav_members
                    WHERE calendar = ? AND removed_seq IS NULL AND added_seq > ?
                    ORDER BY added_seq LIMIT ?""", (calendar, since, limit))
        else:
            rows = await self._reader.fetchall(
                f"""SELECT {_MEMBER} FROM dav_members
                    WHERE calendar = ? AND COALESCE(removed_seq, added_seq) > ?
                      AND NOT (removed_seq IS NOT NULL AND added_seq > ?)
                    ORDER BY COALESCE(removed_seq, added_seq) LIMIT ?""",
                (calendar, since, since, limit))
        return [_member(row) for row in rows]


def _member(row: Sequence[object]) -> DavMember:
    uid, start, end, status, added, seq, removed = row
    return DavMember(str(uid), int(start), int(end), str(status),  # type: ignore[call-overload]
                     int(added), int(seq), bool(removed))  # type: ignore[call-overload]


async def _log_changes(db: Session, calendar: str, removed: list[str],
                       added: list[MemberRow], now: int) -> None:
    row = await db.fetchone("SELECT value FROM meta WHERE key = 'dav_seq'")
    seq = int(row[0]) if row else 0
    for uid in removed:
        seq += 1
        await db.execute(
            "UPDATE dav_members SET removed = ?, removed_seq = ? WHERE calendar = ? AND uid = ?",
            (now, seq, calendar, uid))
    for uid, start, end, status in added:
        seq += 1
        await db.execute(
            """INSERT INTO dav_members
                   (calendar, uid, start_ts, end_ts, status, added, added_seq)
               VALUES (?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (calendar, uid) DO UPDATE SET
                   start_ts = excluded.start_ts, end_ts = excluded.end_ts,
                   status = excluded.status, added = excluded.added,
                   added_seq = excluded.added_seq, removed = NULL, removed_seq = NULL""",
            (calendar, uid, start, end, status, now, seq))
    await db.execute("UPDATE meta SET value = ? WHERE key = 'dav_seq'", (seq,))
    await db.execute("UPDATE dav_collections SET last_seq = ? WHERE calendar = ?",
                     (seq, calendar))


async def _prune(db: Session, calendar: str, before: int) -> None:
    """Forget removals older than ``before``; tokens from before them become invalid."""
    row = await db.fetchone(
        "SELECT MAX(removed_seq) FROM dav_members WHERE calendar = ? AND removed < ?",
        (calendar, before))
    if row is None or row[0] is None:
        return
    await db.execute("DELETE FROM dav_members WHERE calendar = ? AND removed < ?",
                     (calendar, before))
    await db.execute(
        "UPDATE dav_collections SET floor_seq = ? WHERE calendar = ? AND floor_seq < ?",
        (int(row[0]), calendar, int(row[0])))
