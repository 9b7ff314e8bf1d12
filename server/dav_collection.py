"""A merged calendar as a CalDAV collection: its members and their change log.

The members are the calendar's merged busy blocks in the served window. A
block's href, UID and body follow from its time range and status alone, so an
unchanged block keeps its href and ETag forever, and a changed block is one
member removed and one added. Each such change gets a sequence number in the
store; a sync token is a position in that log, valid across restarts until the
log is pruned (``server.caldav_token_retention``).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiohttp import web

from server.availability import BusyInterval
from server.busy import merged_busy, served_window
from server.config import CalendarConfig
from server.feeds import block_uid, render_block
from server.runtime import Runtime
from server.store import DavCollection, DavMember

TOKEN_PREFIX = "urn:x-fbproxy:sync:"
_TOKEN = re.compile(r"^urn:x-fbproxy:sync:([A-Za-z0-9_-]{1,64}):(\d{1,18})$")


@dataclass
class DavCollections:
    """Per calendar: what the stored members were last refreshed from, and a lock."""

    refreshed: dict[str, tuple[object, ...]] = field(default_factory=dict)
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)


DAV_COLLECTIONS: web.AppKey[DavCollections] = web.AppKey("dav_collections", DavCollections)


def member_uid(calendar_name: str, block: BusyInterval) -> str:
    """The member's name: the feed's block UID without its domain (so hrefs match UIDs)."""
    return block_uid(calendar_name, block).split("@", 1)[0]


async def current(runtime: Runtime, state: DavCollections,
                  calendar: CalendarConfig) -> DavCollection:
    """The collection, its members first brought up to date with the busy time."""
    window = served_window(runtime)
    key = (await runtime.store.busy_generation(), window)
    if state.refreshed.get(calendar.name) != key:
        lock = state.locks.setdefault(calendar.name, asyncio.Lock())
        async with lock:
            if state.refreshed.get(calendar.name) != key:
                blocks = await merged_busy(runtime, calendar, *window)
                now = int(runtime.clock.now().timestamp())
                retention = int(runtime.config.server.caldav_token_retention.total_seconds())
                await runtime.store.dav_refresh(
                    calendar.name,
                    [(member_uid(calendar.name, b), b.start, b.end, b.status) for b in blocks],
                    now=now, prune_before=now - retention)
                state.refreshed[calendar.name] = key
    collection = await runtime.store.dav_collection(calendar.name)
    assert collection is not None, "dav_refresh creates the collection"
    return collection


def sync_token(collection: DavCollection, seq: int | None = None) -> str:
    return f"{TOKEN_PREFIX}{collection.lineage}:{collection.last_seq if seq is None else seq}"


def token_position(collection: DavCollection, token: str) -> int | None:
    """The log position a client's token names; None when it is not (or no longer) valid."""
    match = _TOKEN.match(token.strip())
    if match is None or match.group(1) != collection.lineage:
        return None
    seq = int(match.group(2))
    if seq < collection.floor_seq or seq > collection.last_seq:
        return None
    return seq


def member_body(member: DavMember) -> bytes:
    block = BusyInterval(member.start, member.end, member.status)
    return render_block(f"{member.uid}@fbproxy", block,
                        stamp=datetime.fromtimestamp(member.added, UTC))


def member_etag(body: bytes) -> str:
    return f'"{hashlib.sha256(body).hexdigest()[:32]}"'
