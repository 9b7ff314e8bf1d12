"""SIGKILL at random moments (seeded): after a restart nothing is half-applied or lost.

The real console script runs as a separate process and is killed with SIGKILL
during a full sync of 5,000 events, during an incremental change and during
a burst of bookings. Afterwards SQLite's integrity check passes, a source's
items are all of the old round or all of the new one, and every booking is
whole (its blocks with it) or absent.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from tests.peers import free_port

# The console script runs on the wall clock; every date here comes from the real now.
pytestmark = [pytest.mark.clock_sensitive, pytest.mark.slow]
FBPROXY = str(Path(sys.executable).with_name("fbproxy"))
# The console script runs this checkout's code, also when the venv was installed from
# another checkout (as in tests/test_cli.py).
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(
    filter(None, [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")]))}
SEED = 20261125
EVENTS = 5000


def weekend_days() -> list[date]:
    """Three weekends (Saturday, Sunday) from the first Saturday at least two days ahead.

    The servers here are the real console script on the real clock, so every date
    in these tests comes from the real "now" (the page's zone is UTC).
    """
    first = datetime.now(UTC).date() + timedelta(days=2)
    saturday = first + timedelta(days=(5 - first.weekday()) % 7)
    return [saturday + timedelta(days=week * 7 + d) for week in range(3) for d in (0, 1)]


def calendar(events: int, shift_hours: int = 0) -> str:
    """Events on the next 28 days (inside the synced window), 20 a day."""
    first = datetime.now(UTC).date() + timedelta(days=1)
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//crash test//EN"]
    for i in range(events):
        day, slot = divmod(i, 20)
        hour = 6 + (slot + shift_hours) % 14
        ymd = (first + timedelta(days=day % 28)).strftime("%Y%m%d")
        lines += ["BEGIN:VEVENT", f"UID:e{i}@test", "DTSTAMP:20260101T000000Z",
                  f"DTSTART:{ymd}T{hour:02d}{(i % 2) * 30:02d}00Z",
                  f"DTEND:{ymd}T{hour:02d}{(i % 2) * 30 + 20:02d}00Z",
                  f"SUMMARY:Event {i}", "END:VEVENT"]
    lines.append("END:VCALENDAR")
    return "\r\n".join(lines) + "\r\n"


# Weekend days open all day, so the weekend_days() are bookable.
PAGE = """[[booking_pages]]
slug = "intro"
title = "Intro"
hosts = ["me"]
duration = "30m"
timezone = "UTC"
minimum_notice = "0s"
max_days_ahead = 100
recheck = "off"
[booking_pages.hours]
sat = ["00:00-24:00"]
sun = ["00:00-24:00"]
"""


async def start_server(config: Path, folder: Path, url: str,
                       session: aiohttp.ClientSession) -> asyncio.subprocess.Process:
    """`fbproxy serve` as its own process, once /healthz answers."""
    server = await asyncio.create_subprocess_exec(
        FBPROXY, "serve", "--config", str(config), cwd=folder, env=ENV,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    for _ in range(400):
        try:
            async with session.get(f"{url}/healthz") as health:
                if health.status == 200:
                    break
        except aiohttp.ClientError:
            await asyncio.sleep(0.05)
    return server


def write_config(folder: Path, port: int) -> Path:
    path = folder / "config.toml"
    path.write_text(f"""
[server]
listen = "127.0.0.1:{port}"
database = "db/fbproxy.sqlite3"
rate_limit_bookings = "off"
rate_limit_pages = "off"
[[sources]]
name = "big"
kind = "ics"
url = "big.ics"
poll_interval = "10s"
[[calendars]]
name = "me"
sources = ["big"]
secret = "crash-crash-crash-0001"
{PAGE}""")
    return path


@contextmanager
def opened(db: Path) -> Iterator[sqlite3.Connection]:
    """A connection committed and closed at the end of the block.

    sqlite3's own context manager only commits. A connection left open in this
    process keeps SQLite's per-file state, with the mapping of the old ``-shm``
    WAL index, while ``restore`` deletes that file and rewrites the database in
    place: a later connection here then reads pages through the stale index, which
    shows as corruption ("btreeInitPage() returns error code 11") that no killed
    server caused.
    """
    conn = sqlite3.connect(db)
    try:
        with conn:
            yield conn
    finally:
        conn.close()


def check_database(db: Path) -> tuple[int, int, list[tuple[str, int]]]:
    """Integrity, then (items, instances, per booking its block count)."""
    with opened(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        items = conn.execute("SELECT COUNT(*) FROM items").fetchone()[0]
        instances = conn.execute("SELECT COUNT(*) FROM instances").fetchone()[0]
        bookings = conn.execute(
            """SELECT b.id, COUNT(k.booking_id) FROM bookings b
               LEFT JOIN booking_blocks k ON k.booking_id = b.id GROUP BY b.id""").fetchall()
    return items, instances, bookings


def sync_and_kill(folder: Path, config: Path, delay: float) -> None:
    process = subprocess.Popen([FBPROXY, "sync", "--config", str(config)], cwd=folder, env=ENV,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


def full_sync(folder: Path, config: Path) -> float:
    started = time.perf_counter()
    assert subprocess.run([FBPROXY, "sync", "--config", str(config)], cwd=folder, env=ENV,
                          capture_output=True, timeout=300).returncode == 0
    return time.perf_counter() - started


def snapshot(db: Path, copy: Path) -> None:
    with opened(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.copy(db, copy)


def restore(copy: Path, db: Path) -> None:
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    shutil.copy(copy, db)


def test_a_killed_full_and_incremental_sync_leaves_old_or_new_never_half(tmp_path) -> None:
    rng = random.Random(SEED)
    config = write_config(tmp_path, free_port())
    db = tmp_path / "db" / "fbproxy.sqlite3"
    big = tmp_path / "big.ics"
    big.write_text(calendar(EVENTS))
    seconds = full_sync(tmp_path, config)  # how long the round takes, unharmed
    empty, synced = tmp_path / "empty.sqlite3", tmp_path / "synced.sqlite3"
    snapshot(db, synced)
    with opened(db) as conn:
        before = sorted(conn.execute("SELECT start_ts FROM instances").fetchall())
        conn.execute("DELETE FROM instances")
        conn.execute("DELETE FROM items")
        conn.execute("UPDATE sources SET state = '{}', window_end = NULL")
    snapshot(db, empty)
    runs = []
    # A full sync of 5,000 events, killed at random moments: 0 or 5,000 items.
    # Seven random moments, and one after the round should be done.
    for delay in [rng.uniform(0.1, seconds * 1.1) for _ in range(7)] + [seconds * 2.0]:
        restore(empty, db)
        sync_and_kill(tmp_path, config, delay)
        items, instances, _ = check_database(db)
        assert items in (0, EVENTS), items
        assert (items == 0) == (instances == 0)
        runs.append(("full", round(delay, 2), items))
    # An incremental change (every event moves): the old or the new, never a mix.
    big.write_text(calendar(EVENTS, shift_hours=1))
    restore(synced, db)
    os.utime(big, (time.time() + 5, time.time() + 5))
    full_sync(tmp_path, config)
    with opened(db) as conn:
        after = sorted(conn.execute("SELECT start_ts FROM instances").fetchall())
    assert after != before
    for _ in range(6):
        restore(synced, db)
        os.utime(big, (time.time() + 5, time.time() + 5))
        delay = rng.uniform(0.1, seconds * 1.1)
        sync_and_kill(tmp_path, config, delay)
        check_database(db)
        with opened(db) as conn:
            now = sorted(conn.execute("SELECT start_ts FROM instances").fetchall())
        assert now in (before, after), "a mix of the old and the new round"
        moved = now == after
        runs.append(("incremental", round(delay, 2), "new" if moved else "old"))
    print(f"\nfull sync of {EVENTS} events takes {seconds:.2f} s; kill runs: {runs}")
    assert {r[2] for r in runs if r[0] == "full"} == {0, EVENTS}, "killed before and after"


async def test_bookings_killed_mid_burst_are_whole_or_absent(tmp_path) -> None:
    rng = random.Random(SEED + 1)
    port = free_port()
    config = write_config(tmp_path, port)
    (tmp_path / "big.ics").write_text(calendar(50))
    db = tmp_path / "db" / "fbproxy.sqlite3"
    first = await asyncio.create_subprocess_exec(FBPROXY, "sync", "--config", str(config), env=ENV,
                                                 cwd=tmp_path)
    assert await first.wait() == 0
    url = f"http://127.0.0.1:{port}"
    slots = [f"{d}T{h:02d}:{m:02d}:00Z" for d in weekend_days()
             for h in range(0, 6) for m in (0, 30)]
    confirmed: set[str] = set()
    for run in range(6):
        async with aiohttp.ClientSession() as session:
            server = await start_server(config, tmp_path, url, session)

            async def book(start: str, session: aiohttp.ClientSession = session,
                           url: str = url) -> None:
                body = {"start": start, "name": "Guest", "email": "g@example.org"}
                try:
                    async with session.post(f"{url}/api/v1/pages/intro/bookings",
                                            json=body) as response:
                        if response.status == 201:
                            confirmed.add(json.loads(await response.text())["id"])
                except (aiohttp.ClientError, asyncio.CancelledError):
                    pass

            burst = [asyncio.create_task(book(s)) for s in slots[run * 12:(run + 1) * 12]]
            await asyncio.sleep(rng.uniform(0.0, 0.15))
            server.send_signal(signal.SIGKILL)
            await server.wait()
            await asyncio.gather(*burst, return_exceptions=True)
        _items, _instances, bookings = check_database(db)
        stored = dict(bookings)
        assert all(blocks == 1 for blocks in stored.values()), stored
        assert confirmed <= set(stored), "every 201 the client saw is in the database"
    print(f"\n{len(stored)} bookings stored over 6 killed bursts, {len(confirmed)} confirmed "
          "to clients; all whole")


async def test_holds_land_exactly_once_across_killed_servers(tmp_path, radicale_peer) -> None:
    """SIGKILL while the hold worker writes to real Radicale; every hold lands once."""
    from icalendar import Calendar as ICalendar

    from adapters.base import HOLD_MARKER

    peer = radicale_peer
    work = peer.make_calendar("Work")
    rng = random.Random(SEED + 2)
    port = free_port()
    config = tmp_path / "config.toml"
    config.write_text(f"""
[server]
listen = "127.0.0.1:{port}"
database = "db/fbproxy.sqlite3"
rate_limit_bookings = "off"
rate_limit_pages = "off"
[[sources]]
name = "dav"
kind = "caldav"
url = "{peer.base_url}"
username = "{peer.username}"
password = "{peer.password}"
calendars = ["Work"]
poll_interval = "10s"
[[calendars]]
name = "me"
sources = ["dav"]
{PAGE}[booking_pages.hold_target]
me = {{ source = "dav", calendar = "Work" }}
""")
    url = f"http://127.0.0.1:{port}"
    booked: set[str] = set()
    days = weekend_days()

    async def serve_until(killed_after: float | None) -> None:
        async with aiohttp.ClientSession() as session:
            server = await start_server(config, tmp_path, url, session)
            if not booked:  # the first run books; the worker starts delivering at once
                for _ in range(400):  # after the first sync (never synced: nothing free)
                    async with session.get(f"{url}/api/v1/pages/intro/slots?start="
                                           f"{days[0]}&end={days[1]}") as slots:
                        if (await slots.json())["slots"]:
                            break
                    await asyncio.sleep(0.05)
                for day in days[:4]:
                    for hour in range(0, 6):
                        body = {"start": f"{day}T{hour:02d}:00:00Z",
                                "name": "Guest", "email": "g@example.org"}
                        async with session.post(f"{url}/api/v1/pages/intro/bookings",
                                                json=body) as response:
                            if response.status == 201:
                                booked.add((await response.json())["id"])
            if killed_after is not None:
                await asyncio.sleep(killed_after)
                server.send_signal(signal.SIGKILL)
            else:
                for _ in range(600):  # the last run: let every hold land
                    with opened(tmp_path / "db" / "fbproxy.sqlite3") as conn:
                        pending = conn.execute("SELECT COUNT(*) FROM hold_outbox WHERE "
                                               "state = 'pending'").fetchone()[0]
                    if pending == 0:
                        break
                    await asyncio.sleep(0.05)
                server.terminate()
        await server.wait()

    pending_at_kill = []
    for _ in range(5):
        await serve_until(rng.uniform(0.0, 0.6))
        with opened(tmp_path / "db" / "fbproxy.sqlite3") as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            pending_at_kill.append(conn.execute(
                "SELECT COUNT(*) FROM hold_outbox WHERE state = 'pending'").fetchone()[0])
    await serve_until(None)
    markers: list[str] = []
    for href in peer.hrefs(work):
        body = peer.request("GET", href, expect=(200,)).text
        markers += [str(e[HOLD_MARKER]) for e in ICalendar.from_ical(body).walk("VEVENT")
                    if HOLD_MARKER in e]
    assert len(booked) == 24
    assert sorted(markers) == sorted(booked), "each booking's hold exactly once"
    print(f"\n{len(booked)} holds; holds still pending at each of 5 kills: {pending_at_kill}; "
          "each hold upstream exactly once")
