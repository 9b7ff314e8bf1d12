"""`fbproxy backup`: a consistent copy of the SQLite store while it is written, and restoring it."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from server.errors import StoreError
from server.store import MIGRATIONS, BookingRecord, BusyRow, Store, StoredItem
from server.store.backup import backup_sqlite

REPO = Path(__file__).resolve().parents[1]
PADDING = "X" * 3000  # a few rows a page: the copy takes many steps
# Far more steps than the database has pages for: the copy restarts instead of ending.
MAX_PAUSES = 500


def item(key: str) -> StoredItem:
    return StoredItem(key=key, ical=f"BEGIN:VCALENDAR\r\n{PADDING}", content_hash=key,
                      etag=None, recurring=False, instances=(BusyRow(100, 200, "busy"),))


def booking(number: int) -> BookingRecord:
    start = 1_000_000 + number * 3600
    return BookingRecord(id=f"b{number}", page="intro", host="alex", start=start,
                         end=start + 1800, guest_name="Guest", guest_email="guest@example.org",
                         answers={}, cancel_secret=f"cancel-{number}", status="confirmed",
                         created=start - 86400)


async def book(store: Store, number: int) -> None:
    async with store.booking_transaction() as transaction:
        record = booking(number)
        await transaction.insert(record, [("alex", record.start, record.end)])


class Writes:
    """Counts the writes a task commits; the backup's pause waits for one more."""

    def __init__(self) -> None:
        self.count = 0
        self.changed = threading.Condition()
        self.pauses = 0

    def committed(self) -> None:
        with self.changed:
            self.count += 1
            self.changed.notify_all()

    def wait_for_one_more(self, pause: float) -> None:
        """The backup's sleep between steps: returns once another write has committed."""
        with self.changed:
            seen = self.count
            assert self.changed.wait_for(lambda: self.count > seen, timeout=30), \
                "no write committed while the backup paused"
            self.pauses += 1
            # Raised out of the backup: a copy that starts over at every write never ends.
            assert self.pauses < MAX_PAUSES, "the backup keeps restarting"


async def keep_writing(store: Store, source: int, writes: Writes, stop: asyncio.Event) -> None:
    """Sync rounds and bookings through the Store API, one after another, until stopped."""
    number = 0
    while not stop.is_set():
        await store.apply_changes(source, upserts=[item(f"w{number}")], deletes=[], state={},
                                  now=number, window_end=None)
        writes.committed()
        await book(store, number)
        writes.committed()
        number += 1


def files(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def restore(backup: Path, database: Path) -> None:
    """As docs/operations.md says, fbproxy stopped: the old WAL files go, the copy comes in."""
    for side in ("-wal", "-shm"):
        Path(f"{database}{side}").unlink(missing_ok=True)
    shutil.copyfile(backup, database)


async def items_and_bookings(path: Path) -> tuple[set[str], set[str]]:
    store = await Store.open(path)
    try:
        source = await store.ensure_source("work", "ics")
        keys = {key for key, _, _ in await store.items(source)}
        booked = await store.known_bookings({f"b{n}" for n in range(10_000)})
    finally:
        await store.close()
    return keys, booked


async def test_a_backup_under_writes_is_the_database_as_it_began(tmp_path: Path) -> None:
    database = tmp_path / "fbproxy.sqlite3"
    store = await Store.open(database)
    source = await store.ensure_source("work", "ics")
    before = [item(f"before{n}") for n in range(60)]
    await store.apply_changes(source, upserts=before, deletes=[], state={}, now=0,
                              window_end=None)
    writes, stop = Writes(), asyncio.Event()
    writer = asyncio.create_task(keep_writing(store, source, writes, stop))
    try:
        result = await asyncio.to_thread(backup_sqlite, database, tmp_path / "copy.sqlite3",
                                         pages_per_step=4, sleep=writes.wait_for_one_more)
    finally:
        stop.set()
        await writer
        await store.close()  # also on failure: its thread would keep pytest from exiting

    assert writes.pauses > 10  # many steps, each with a write committed during it
    copy = result.path
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert result.schema_version == len(MIGRATIONS) and result.size == copy.stat().st_size
    # One self-contained file, no temporary or WAL beside it.
    assert [name for name in files(tmp_path) if "copy" in name] == ["copy.sqlite3"]
    with sqlite3.connect(copy) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert raw.execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS),)
    keys, booked = await items_and_bookings(copy)
    # Everything committed before the backup began, and a consistent cut of the rest:
    # the first k sync rounds and the bookings between them, never a later one alone.
    assert {f"before{n}" for n in range(60)} <= keys
    rounds = len(keys) - 60
    assert keys == {f"before{n}" for n in range(60)} | {f"w{n}" for n in range(rounds)}
    assert booked in ({f"b{n}" for n in range(rounds)}, {f"b{n}" for n in range(rounds - 1)})
    # Writes went on during the copy and are in the database, not in the copy.
    live_keys, _ = await items_and_bookings(database)
    assert len(live_keys) - 60 > rounds


async def test_restoring_a_backup(tmp_path: Path) -> None:
    database = tmp_path / "fbproxy.sqlite3"
    store = await Store.open(database)
    source = await store.ensure_source("work", "ics")
    await store.apply_changes(source, upserts=[item("kept")], deletes=[], state={}, now=0,
                              window_end=None)
    await book(store, 1)
    backup_sqlite(database, tmp_path / "backup.sqlite3", pause=0)
    await store.apply_changes(source, upserts=[item("later")], deletes=[], state={}, now=1,
                              window_end=None)
    await store.close()
    restore(tmp_path / "backup.sqlite3", database)
    assert await items_and_bookings(database) == ({"kept"}, {"b1"})
    store = await Store.open(database)  # and it takes writes again
    await store.apply_changes(source, upserts=[item("after")], deletes=[], state={}, now=2,
                              window_end=None)
    await store.close()
    assert (await items_and_bookings(database))[0] == {"kept", "after"}


async def test_backup_refuses_what_it_should(tmp_path: Path) -> None:
    database = tmp_path / "fbproxy.sqlite3"
    await (await Store.open(database)).close()
    target = tmp_path / "backup.sqlite3"
    target.write_text("an older backup")
    with pytest.raises(StoreError, match="backup.sqlite3 exists; pass --force to replace it"):
        backup_sqlite(database, target, pause=0)
    assert target.read_text() == "an older backup"
    assert backup_sqlite(database, target, force=True, pause=0).schema_version == \
        len(MIGRATIONS)
    with pytest.raises(StoreError, match="is the database itself"):
        backup_sqlite(database, database, force=True, pause=0)
    with pytest.raises(StoreError, match="no database at"):
        backup_sqlite(tmp_path / "missing.sqlite3", tmp_path / "b2", pause=0)
    with pytest.raises(StoreError, match="the folder .* does not exist"):
        backup_sqlite(database, tmp_path / "nope" / "b.sqlite3", pause=0)
    with pytest.raises(StoreError, match="is a folder"):
        backup_sqlite(database, tmp_path, pause=0)
    not_a_database = tmp_path / "notes.txt"
    not_a_database.write_text("not SQLite " * 100)
    with pytest.raises(StoreError, match="cannot back up .*notes.txt: file is not a database"):
        backup_sqlite(not_a_database, tmp_path / "b3", pause=0)
    # Nothing half-written is left behind by the refusals and failures.
    assert files(tmp_path) == ["backup.sqlite3", "fbproxy.sqlite3", "notes.txt"]


# -- the console script --------------------------------------------------------------------

# The console script runs this checkout's code (see tests/test_cli.py).
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(
    filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    "PYTHONWARNINGS": "ignore::FutureWarning:google.api_core._python_version_support"}


def fbproxy(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = str(Path(sys.executable).with_name("fbproxy"))
    return subprocess.run([command, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False, env=ENV)


@pytest.mark.clock_sensitive  # syncs the example on the wall clock
def test_fbproxy_backup_and_restore(tmp_path: Path) -> None:
    shutil.copy(REPO / "config.example.toml", tmp_path / "config.toml")
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    assert fbproxy("sync", "--config", "config.toml", cwd=tmp_path).returncode == 0
    database = tmp_path / "var" / "fbproxy.sqlite3"

    done = fbproxy("backup", "backup.sqlite3", "--config", "config.toml", cwd=tmp_path)
    assert done.returncode == 0, done
    size = (tmp_path / "backup.sqlite3").stat().st_size
    assert done.stdout == (f"backed up {database} to backup.sqlite3 ({size} bytes, schema "
                           f"version {len(MIGRATIONS)})\n")
    assert stat.S_IMODE((tmp_path / "backup.sqlite3").stat().st_mode) == 0o600
    again = fbproxy("backup", "backup.sqlite3", "--config", "config.toml", cwd=tmp_path)
    assert (again.returncode, again.stderr) == (
        1, "fbproxy: backup.sqlite3 exists; pass --force to replace it\n")
    forced = fbproxy("backup", "--force", "backup.sqlite3", "--config", "config.toml",
                     cwd=tmp_path)
    assert forced.returncode == 0, forced

    status = fbproxy("status", "--config", "config.toml", cwd=tmp_path)
    database.unlink()
    restore(tmp_path / "backup.sqlite3", database)
    restored = fbproxy("status", "--config", "config.toml", cwd=tmp_path)
    assert restored.returncode == 0, restored
    # The same sources with the same items (the ages have moved on a second, maybe).
    assert [line.split()[:3] for line in restored.stdout.splitlines()] == \
        [line.split()[:3] for line in status.stdout.splitlines()]
    assert " ok" in restored.stdout


@pytest.mark.clock_sensitive
def test_fbproxy_backup_points_postgresql_to_pg_dump(tmp_path: Path) -> None:
    (tmp_path / "work.ics").write_text("BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n")
    (tmp_path / "config.toml").write_text(
        '[server]\ndatabase = "postgresql://fbproxy:pw-not-printed-01@127.0.0.1:9/fbproxy"\n'
        '[[sources]]\nname = "work"\nkind = "ics"\nurl = "work.ics"\n')
    result = fbproxy("backup", "fbproxy.dump", "--config", "config.toml", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == (
        "fbproxy backup: server.database is PostgreSQL "
        "(postgresql://fbproxy:***@127.0.0.1:9/fbproxy); fbproxy backup copies SQLite only. "
        "Back PostgreSQL up with pg_dump: pg_dump --format=custom --file=fbproxy.dump "
        "--dbname='<the database URL>'\n")
    assert not (tmp_path / "fbproxy.dump").exists()
