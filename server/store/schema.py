"""The SQLite schema: its migrations, forward only (PostgreSQL's are in schema_pg.py)."""

from __future__ import annotations

import sqlite3

from server.errors import StoreError
from server.store.database import Session

# Each entry moves the schema one version forward; never edit a released step.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE sources (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT '{}',
        last_attempt INTEGER,
        last_success INTEGER,
        last_change INTEGER,
        last_error TEXT,
        consecutive_failures INTEGER NOT NULL DEFAULT 0,
        needs_reauth INTEGER NOT NULL DEFAULT 0,
        item_count INTEGER NOT NULL DEFAULT 0,
        window_end INTEGER
    );
    CREATE TABLE items (
        id INTEGER PRIMARY KEY,
        source_id INTEGER NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
        item_key TEXT NOT NULL,
        ical TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        etag TEXT,
        recurring INTEGER NOT NULL DEFAULT 0,
        UNIQUE (source_id, item_key)
    );
    CREATE TABLE instances (
        source_id INTEGER NOT NULL,
        item_key TEXT NOT NULL,
        start_ts INTEGER NOT NULL,
        end_ts INTEGER NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('busy', 'tentative')),
        CHECK (end_ts > start_ts),
        FOREIGN KEY (source_id, item_key) REFERENCES items (source_id, item_key)
            ON DELETE CASCADE
    );
    CREATE INDEX instances_by_item ON instances (source_id, item_key);
    CREATE INDEX instances_by_range ON instances (source_id, end_ts, start_ts, status);
    CREATE TABLE calendar_secrets (
        calendar TEXT PRIMARY KEY,
        secret TEXT NOT NULL,
        created INTEGER NOT NULL
    );
    """,
    # 2: a counter of busy-time changes kept in the database, so that a server
    # sees what `fbproxy sync` (another process) changed and drops its caches.
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
    INSERT INTO meta (key, value) VALUES ('busy_generation', 0);
    """,
    # 3: bookings, and the time each one takes from each calendar (host, resources).
    """
    CREATE TABLE bookings (
        id TEXT PRIMARY KEY,
        page TEXT NOT NULL,
        host TEXT NOT NULL,
        start_ts INTEGER NOT NULL,
        end_ts INTEGER NOT NULL,
        guest_name TEXT NOT NULL,
        guest_email TEXT NOT NULL,
        answers TEXT NOT NULL DEFAULT '{}',
        cancel_secret TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('confirmed', 'cancelled')),
        created INTEGER NOT NULL,
        cancelled INTEGER,
        CHECK (end_ts > start_ts)
    );
    CREATE INDEX bookings_by_host ON bookings (host, start_ts);
    CREATE TABLE booking_blocks (
        booking_id TEXT NOT NULL REFERENCES bookings(id) ON DELETE CASCADE,
        calendar TEXT NOT NULL,
        start_ts INTEGER NOT NULL,
        end_ts INTEGER NOT NULL,
        CHECK (end_ts > start_ts)
    );
    CREATE INDEX booking_blocks_by_calendar ON booking_blocks (calendar, end_ts, start_ts);
    """,
    # 4: the hold outbox, written in the booking's own transaction.
    """
    CREATE TABLE hold_outbox (
        booking_id TEXT NOT NULL REFERENCES bookings(id),
        host TEXT NOT NULL,
        action TEXT NOT NULL CHECK (action IN ('write', 'delete')),
        source TEXT NOT NULL,
        calendar TEXT,
        hold TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt INTEGER NOT NULL,
        last_error TEXT,
        ref TEXT,
        etag TEXT,
        PRIMARY KEY (booking_id, host, action)
    );
    CREATE INDEX hold_outbox_due ON hold_outbox (state, next_attempt);
    """,
    # 5: what the guest was shown: one video link per booking, and their time zone.
    """
    ALTER TABLE bookings ADD COLUMN video_link TEXT NOT NULL DEFAULT '';
    ALTER TABLE bookings ADD COLUMN guest_timezone TEXT NOT NULL DEFAULT '';
    """,
    # 6: the CalDAV endpoint's members (busy blocks) and their change log. Removed
    # members stay as tombstones until pruned, so sync tokens outlive restarts.
    """
    CREATE TABLE dav_collections (
        calendar TEXT PRIMARY KEY,
        lineage TEXT NOT NULL,
        last_seq INTEGER NOT NULL DEFAULT 0,
        floor_seq INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;
    CREATE TABLE dav_members (
        calendar TEXT NOT NULL,
        uid TEXT NOT NULL,
        start_ts INTEGER NOT NULL,
        end_ts INTEGER NOT NULL,
        status TEXT NOT NULL,
        added INTEGER NOT NULL,
        added_seq INTEGER NOT NULL,
        removed INTEGER,
        removed_seq INTEGER,
        PRIMARY KEY (calendar, uid)
    ) WITHOUT ROWID;
    CREATE INDEX dav_members_by_seq ON dav_members (calendar, COALESCE(removed_seq, added_seq));
    CREATE INDEX dav_members_by_time ON dav_members (calendar, end_ts, start_ts)
        WHERE removed_seq IS NULL;
    INSERT INTO meta (key, value) VALUES ('dav_seq', 0);
    """,
    # 7: the longest instance a source ever stored, so a busy query for a short
    # span reads an index range bounded on both sides (end_ts < end + max_span).
    """
    ALTER TABLE sources ADD COLUMN max_span INTEGER NOT NULL DEFAULT 0;
    UPDATE sources SET max_span = COALESCE(
        (SELECT MAX(end_ts - start_ts) FROM instances WHERE source_id = sources.id), 0);
    """,
    # 8: bookings get their own change counter, so a booking does not make every
    # cached timeline of synced instances stale.
    """
    INSERT INTO meta (key, value) VALUES ('booking_generation', 0);
    """,
    # 9: push channels (Google watches), so notifications are verified and
    # channels renewed or stopped across restarts.
    """
    CREATE TABLE push_channels (
        channel_id TEXT PRIMARY KEY,
        source TEXT NOT NULL,
        calendar TEXT NOT NULL,
        resource_id TEXT NOT NULL,
        token TEXT NOT NULL,
        expiration INTEGER NOT NULL,
        created INTEGER NOT NULL
    ) WITHOUT ROWID;
    """,
    # 10: how long the last sync round took, for the status page.
    """
    ALTER TABLE sources ADD COLUMN last_duration_ms INTEGER;
    """,
    # 11: alerts: the last state reported per subject, and an outbox of messages.
    """
    CREATE TABLE alert_state (
        subject TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        since INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE alert_outbox (
        id INTEGER PRIMARY KEY,
        alert TEXT NOT NULL,
        payload TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt INTEGER NOT NULL,
        last_error TEXT
    );
    CREATE INDEX alert_outbox_due ON alert_outbox (state, next_attempt);
    """,
    # 12: the database itself refuses two overlapping bookings of one calendar
    # (PostgreSQL: an exclusion constraint), behind the booking transaction's check.
    """
    CREATE TRIGGER booking_blocks_never_overlap BEFORE INSERT ON booking_blocks
    WHEN EXISTS (SELECT 1 FROM booking_blocks WHERE calendar = NEW.calendar
                 AND start_ts < NEW.end_ts AND end_ts > NEW.start_ts)
    BEGIN SELECT RAISE(ABORT, 'overlapping booking'); END
    """,
    # 13: what several instances share: who syncs each source (a lease, its epoch
    # fencing a round of a holder that lost it), who delivers each outbox row,
    # OAuth tokens (encrypted), and the per-client rate limits.
    """
    CREATE TABLE source_leases (
        source TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        epoch INTEGER NOT NULL,
        expires INTEGER NOT NULL
    ) WITHOUT ROWID;
    ALTER TABLE hold_outbox ADD COLUMN claimed_by TEXT;
    ALTER TABLE hold_outbox ADD COLUMN claimed_until INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE alert_outbox ADD COLUMN claimed_by TEXT;
    ALTER TABLE alert_outbox ADD COLUMN claimed_until INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE tokens (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE rate_buckets (
        key TEXT PRIMARY KEY,
        tokens REAL NOT NULL,
        updated REAL NOT NULL
    ) WITHOUT ROWID;
    """,
    # 14: each source's own change counter, moved with every change to its
    # instances, so a cached timeline reads again only the sources that changed.
    """
    ALTER TABLE sources ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
    """,
    # 15: the guest's side of a booking. A booking's SEQUENCE (moved on every
    # reschedule and on cancelling, so the guest's calendar updates its copy), why
    # and by whom it was cancelled, the host's own secret (their cancel link); the
    # mail outbox, written in the booking's transactions; and holds moved in place.
    """
    ALTER TABLE bookings ADD COLUMN sequence INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE bookings ADD COLUMN cancel_reason TEXT NOT NULL DEFAULT '';
    ALTER TABLE bookings ADD COLUMN cancelled_by TEXT NOT NULL DEFAULT '';
    ALTER TABLE bookings ADD COLUMN host_secret TEXT NOT NULL DEFAULT '';
    CREATE TABLE mail_outbox (
        id INTEGER PRIMARY KEY,
        booking_id TEXT NOT NULL REFERENCES bookings(id),
        kind TEXT NOT NULL,
        recipient TEXT NOT NULL,
        address TEXT NOT NULL,
        sequence INTEGER NOT NULL,
        tag TEXT NOT NULL DEFAULT '',
        state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'dropped')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt INTEGER NOT NULL,
        queued INTEGER NOT NULL,
        sent INTEGER,
        last_error TEXT,
        claimed_by TEXT,
        claimed_until INTEGER NOT NULL DEFAULT 0,
        UNIQUE (booking_id, kind, recipient, sequence, tag)
    );
    CREATE INDEX mail_outbox_due ON mail_outbox (state, next_attempt);
    CREATE INDEX mail_outbox_by_address ON mail_outbox (address, queued);
    CREATE TABLE hold_outbox_15 (
        booking_id TEXT NOT NULL REFERENCES bookings(id),
        host TEXT NOT NULL,
        action TEXT NOT NULL CHECK (action IN ('write', 'delete', 'move')),
        source TEXT NOT NULL,
        calendar TEXT,
        hold TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt INTEGER NOT NULL,
        last_error TEXT,
        ref TEXT,
        etag TEXT,
        claimed_by TEXT,
        claimed_until INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (booking_id, host, action)
    );
    INSERT INTO hold_outbox_15 (booking_id, host, action, source, calendar, hold, state,
                                attempts, next_attempt, last_error, ref, etag, claimed_by,
                                claimed_until)
        SELECT booking_id, host, action, source, calendar, hold, state, attempts,
               next_attempt, last_error, ref, etag, claimed_by, claimed_until
        FROM hold_outbox;
    DROP TABLE hold_outbox;
    ALTER TABLE hold_outbox_15 RENAME TO hold_outbox;
    CREATE INDEX hold_outbox_due ON hold_outbox (state, next_attempt);
    """,
    # 16: the language a guest booked in, so their reminders and updates read in it.
    """
    ALTER TABLE bookings ADD COLUMN guest_language TEXT NOT NULL DEFAULT '';
    """,
)


def statements(script: str) -> list[str]:
    """A script's statements; a trigger's body keeps its own semicolons."""
    found, pending = [], ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                found.append(pending.strip())
            pending = ""
    if pending.strip(" \n;"):
        found.append(pending.strip())
    return found


async def migrate_sqlite(db: Session) -> None:
    row = await db.fetchone("PRAGMA user_version")
    version = int(row[0]) if row else 0
    if version > len(MIGRATIONS):
        raise StoreError(f"database schema version {version} is newer than this fbproxy "
                         f"understands ({len(MIGRATIONS)}); upgrade fbproxy")
    for target, script in enumerate(MIGRATIONS[version:], start=version + 1):
        # executescript would COMMIT on its own; run statements inside our transaction.
        await db.execute("BEGIN IMMEDIATE")
        try:
            for statement in statements(script):
                await db.execute(statement)
            await db.execute(f"PRAGMA user_version = {target}")
        except BaseException:
            await db.execute("ROLLBACK")
            raise
        await db.execute("COMMIT")
