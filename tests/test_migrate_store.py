"""`fbproxy migrate-store`: a SQLite installation copied into PostgreSQL, nothing lost.

The first test builds the installation through the real app (a Radicale source,
an ICS file, a booking whose hold is still pending, a CalDAV client keeping its
sync token), copies it while the app runs, and serves the same config from
PostgreSQL. The others fill every table by hand and check the copy's guards.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiosqlite
import asyncpg
import caldav
import pytest
from icalendar import Calendar as ICalendar

from adapters.caldav import HOLD_MARKER
from server.cli import main
from server.config.database import PostgresUrl
from server.config.model import Config
from server.outputs.status import admin_secret
from server.runtime import subscriber_key
from server.store import MIGRATIONS, Store
from server.store.schema import statements
from server.store.transfer import NOT_COPIED, TransferError, migrate_store
from tests.conftest import event, ics
from tests.peers import Peer

pytestmark = pytest.mark.postgres

REPO = Path(__file__).resolve().parents[1]
SECRET = "s3cret-s3cret-s3cret-0001"
SLOT = "2026-11-26T10:00:00Z"


# -- reading both sides ---------------------------------------------------------

Tables = dict[str, list[tuple[Any, ...]]]


def _sorted(rows: Any) -> list[tuple[Any, ...]]:
    return sorted((tuple(row) for row in rows), key=repr)


async def sqlite_tables(path: Path) -> Tables:
    async with aiosqlite.connect(path) as db:
        names = [r[0] for r in await db.execute_fetchall(
            "SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {n: _sorted(await db.execute_fetchall(f"SELECT * FROM {n}")) for n in names}


async def postgres_tables(url: str, names: Any) -> Tables:
    connection = await asyncpg.connect(url)
    try:
        return {n: _sorted(await connection.fetch(f"SELECT * FROM {n}")) for n in names}
    finally:
        await connection.close()


async def pg(url: str, sql: str) -> Any:
    connection = await asyncpg.connect(url)
    try:
        return await connection.fetch(sql)
    finally:
        await connection.close()


async def assert_target_empty(url: str, names: Any) -> None:
    """As a fresh schema: no rows but the counters, at zero."""
    tables = await postgres_tables(url, names)
    assert {n: rows for n, rows in tables.items() if n != "meta" and rows} == {}
    assert {value for _, value in tables["meta"]} == {0}


# -- the real installation ------------------------------------------------------

STANDUP = "\r\n".join([
    "BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//t//EN", "BEGIN:VEVENT", "UID:standup",
    "DTSTAMP:20260101T000000Z", "DTSTART:20261126T090000Z", "DTEND:20261126T093000Z",
    "SUMMARY:Standup", "END:VEVENT", "END:VCALENDAR", ""])
LATE = STANDUP.replace("UID:standup", "UID:late").replace(
    "20261126T090000Z", "20261127T090000Z").replace("20261126T093000Z", "20261127T100000Z")


def installation(make_config: Any, peer: Peer) -> Config:
    tls = {"ca_file": peer.ca_file} if peer.ca_file else {}
    sources = [{"name": "dav", "kind": "caldav", "url": peer.base_url,
                "username": peer.username, "password": peer.password,
                "calendars": ["Work"], **tls},
               {"name": "personal", "kind": "ics", "url": "personal.ics"}]
    # The subscriber's secret is generated, so it lives only in the database.
    calendars = [{"name": "me", "sources": ["dav", "personal"], "secret": SECRET,
                  "subscribers": [{"name": "partner", "detail": "busy"}]}]
    page = {"slug": "intro", "title": "Intro call", "hosts": ["me"], "duration": "30m",
            "timezone": "UTC", "minimum_notice": "1h",
            "hours": {d: ["09:00-12:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
            "hold_target": {"me": {"source": "dav", "calendar": "Work"}}}
    return make_config(sources, calendars, booking_pages=[page])


def dav_calendar(client: Any) -> Any:
    dav = caldav.DAVClient(url=str(client.make_url("/")), username="me", password=SECRET)
    return dav.principal().calendars()[0]


def holds(peer: Peer, calendar: Any) -> list[Any]:
    found = []
    for href in peer.hrefs(calendar):
        body = peer.request("GET", href, expect=(200,)).text
        found += [e for e in ICalendar.from_ical(body).walk("VEVENT") if HOLD_MARKER in e]
    return found


async def outputs(client: Any, runtime: Any) -> dict[str, Any]:
    """What subscribers and guests see, by every address."""
    partner = runtime.calendar_secrets[subscriber_key("me", "partner")]
    seen: dict[str, Any] = {"secrets": dict(runtime.calendar_secrets),
                            "admin": await admin_secret(runtime)}
    for name, path in [("busy", f"/feeds/{SECRET}/busy.ics"),
                       ("freebusy", f"/feeds/{SECRET}/freebusy.ics"),
                       ("partner", f"/feeds/{partner}/busy.ics")]:
        response = await client.get(path)
        assert response.status == 200, name
        seen[name] = await response.read()
    slots = await (await client.get(
        "/api/v1/pages/intro/slots?start=2026-11-26&end=2026-11-27")).json()
    seen["slots"] = [s["start"] for s in slots["slots"]]
    return seen


async def test_a_running_installation_moves_to_postgresql_and_carries_on(
        radicale_peer: Peer, make_config: Any, serve: Any, tmp_path: Path,
        postgres_url: str) -> None:
    peer = radicale_peer
    work = peer.make_calendar("Work")
    peer.put_event(work, "standup.ics", STANDUP)
    (tmp_path / "personal.ics").write_text(ics(event("dentist", "20261126T110000Z",
                                                     "20261126T113000Z")))
    config = installation(make_config, peer)
    client, runtime = await serve(config)
    assert all(r.ok for r in await runtime.sync.run_all_once())
    booked = await client.post("/api/v1/pages/intro/bookings", json={
        "start": SLOT, "name": "Sam", "email": "sam@example.org"})
    assert booked.status == 201, await booked.text()
    booking = await booked.json()
    # A CalDAV client syncs, sees the dentist move, and keeps its newest token.
    calendar = await asyncio.to_thread(dav_calendar, client)
    first = await asyncio.to_thread(lambda: calendar.objects_by_sync_token(load_objects=True))
    assert len(list(first)) == 3  # standup, the booking, the dentist
    (tmp_path / "personal.ics").write_text(ics(event("dentist", "20261126T113000Z",
                                                     "20261126T120000Z")))
    assert all(r.ok for r in await runtime.sync.run_all_once())
    moved = await asyncio.to_thread(lambda: calendar.objects_by_sync_token(
        sync_token=first.sync_token, load_objects=True))
    # (deleted members are listed too, without data)
    assert len([o for o in moved if o.data]) == 1 and len(moved.deleted_urls) == 1
    token = moved.sync_token
    before = await outputs(client, runtime)
    assert SLOT not in before["slots"]
    assert await runtime.store.hold_summary() == [("write", "pending", 1, None)]

    # Copied while the app still runs on the file.
    report = await migrate_store(config, PostgresUrl(postgres_url))
    assert not report.changed_during_copy
    assert report.rows["bookings"] == 1 and report.rows["hold_outbox"] == 1
    assert report.rows["dav_members"] == 4  # three members and the dentist's old block
    assert f":{urlsplit(postgres_url).password}@" not in report.target
    source = await sqlite_tables(config.server.database)
    copied = {n: rows for n, rows in source.items() if n not in NOT_COPIED}
    assert await postgres_tables(postgres_url, copied) == copied
    await client.close()

    store = await Store.open(PostgresUrl(postgres_url))
    try:
        client, runtime = await serve(config, store=store)
        after = await outputs(client, runtime)
        assert after == before, "feeds, secrets and slots are byte for byte the same"
        assert await runtime.store.hold_summary() == [("write", "pending", 1, None)]

        # Upstream changes; the CalDAV client's old token gets exactly that change.
        peer.put_event(work, "late.ics", LATE)
        assert all(r.ok for r in await runtime.sync.run_all_once())
        calendar = await asyncio.to_thread(dav_calendar, client)
        changes = await asyncio.to_thread(lambda: calendar.objects_by_sync_token(
            sync_token=token, load_objects=True, disable_fallback=True))
        assert [str(o.icalendar_component["DTSTART"].dt) for o in changes] == [
            "2026-11-27 09:00:00+00:00"], "only the change, not the four members"
        assert not changes.deleted_urls

        # The pending hold is delivered from PostgreSQL, once.
        assert await runtime.holds.run_once() == 1
        [hold] = holds(peer, work)
        assert str(hold[HOLD_MARKER]) == booking["id"]
        assert await runtime.store.hold_summary() == [("write", "done", 1, None)]
        assert SLOT not in (await outputs(client, runtime))["slots"]
    finally:
        await store.close()


# -- every table, by hand -------------------------------------------------------

FILLED: dict[str, list[str]] = {
    "sources": [
        "(1, 'work', 'caldav', '{\"sync_token\": \"t-1\"}', 10, 11, 12, NULL, 0, 0, 2, 5000, "
        "3600, 250, 9)",
        "(7, 'broken', 'ics', '{}', 20, NULL, NULL, 'HTTP 500', 3, 1, 0, NULL, 0, NULL, 0)"],
    "items": ["(3, 1, 'a', 'BEGIN:VCALENDAR' || char(0) || 'Zoë ✓', 'h-a', '\"e-a\"', 0)",
              "(9, 1, 'b', 'BEGIN:VCALENDAR', 'h-b', NULL, 1)"],
    "instances": ["(1, 'a', 100, 200, 'busy')", "(1, 'b', 300, 400, 'tentative')",
                  "(1, 'b', 9000000000, 9000003600, 'busy')"],
    "calendar_secrets": ["('me', 'generated-secret', 5)", "(':admin', 'admin-gen', 6)"],
    "bookings": [
        "('bk-1', 'intro', 'me', 1000, 1800, 'Zoë', 'z@example.org', '{\"topic\": \"✓\"}', "
        "'cancel-1', 'confirmed', 900, NULL, 'https://meet.example/x', 'Europe/Berlin', 2, "
        "'', '', 'host-1', 'de')",
        "('bk-2', 'intro', 'me', 2000, 2800, 'Kim', 'k@example.org', '{}', 'cancel-2', "
        "'cancelled', 901, 950, '', '', 1, 'Ill, sorry — ✓', 'guest', '', '')"],
    "booking_blocks": ["('bk-1', 'me', 1000, 1800)", "('bk-1', 'room', 900, 1900)"],
    "hold_outbox": [
        "('bk-1', 'me', 'write', 'work', 'Work', '{\"title\": \"x\"}', 'pending', 2, 1100, "
        "'HTTP 503', NULL, NULL, NULL, 0)",
        "('bk-2', 'me', 'write', 'work', NULL, '{}', 'done', 1, 960, NULL, 'ref-2', '\"e2\"', "
        "NULL, 0)",
        "('bk-2', 'me', 'delete', 'work', NULL, '{}', 'pending', 0, 970, NULL, NULL, NULL, "
        "'instance-a', 1234)",
        "('bk-1', 'me', 'move', 'work', NULL, '{}', 'pending', 0, 980, NULL, NULL, NULL, "
        "NULL, 0)"],
    "mail_outbox": [
        "(5, 'bk-1', 'invite', 'guest', 'z@example.org', 0, '', 'sent', 1, 900, 900, 901, "
        "NULL, NULL, 0)",
        "(9, 'bk-1', 'reminder', 'guest', 'z@example.org', 2, '24h', 'pending', 2, 990, 900, "
        "NULL, 'SMTP 451', 'instance-a', 995)"],
    "dav_collections": ["('me', 'lineage-XYZ', 42, 5)"],
    "dav_members": ["('me', 'u1', 100, 200, 'busy', 50, 40, NULL, NULL)",
                    "('me', 'u0', 100, 150, 'busy', 40, 10, 60, 42)"],
    "push_channels": ["('ch-1', 'work', 'primary', 'res-1', 'tok-1', 99999, 50)"],
    "alert_state": ["('source:work', 'failing', 70)"],
    "alert_outbox": ["(4, 'ops', '{\"text\": \"a\"}', 'sent', 1, 80, NULL, NULL, 0)",
                     "(11, 'ops', '{\"text\": \"b\"}', 'pending', 3, 90, 'timeout', NULL, 0)"],
    "source_leases": ["('work', 'host-a:123', 3, 99999)"],
    "tokens": ["('google:work', 'encrypted-blob', 77)"],
    "rate_buckets": ["('bookings|127.0.0.1', 2.5, 1234.75)"],
}
COUNTERS = {"busy_generation": 17, "booking_generation": 4, "dav_seq": 42}


async def filled_installation(config: Config) -> Path:
    """A SQLite store with rows in every table, edge values included."""
    path = config.server.database
    await (await Store.open(path)).close()
    with sqlite3.connect(path) as db:
        for table, rows in FILLED.items():
            db.execute(f"INSERT INTO {table} VALUES {', '.join(rows)}")
        for key, value in COUNTERS.items():
            db.execute("UPDATE meta SET value = ? WHERE key = ?", (value, key))
    return path


@pytest.fixture
def config(make_config: Any) -> Config:
    return make_config([{"name": "work", "kind": "ics", "url": "work.ics"}])


async def test_every_table_is_copied_exactly_and_ids_continue_after_it(
        config: Config, postgres_url: str) -> None:
    path = await filled_installation(config)
    source = await sqlite_tables(path)
    assert [n for n, rows in source.items() if not rows] == [], \
        "a table this test does not fill: add rows for it to FILLED"

    report = await migrate_store(config, PostgresUrl(postgres_url), batch_rows=2)
    assert report.rows == {n: len(rows) for n, rows in source.items() if n not in NOT_COPIED}
    assert list(report.rows)[:3] == ["sources", "items", "instances"]  # parents first
    assert report.nul_replaced == 1 and not report.changed_during_copy
    assert report.upgraded_from is None
    target = await postgres_tables(postgres_url, source)
    assert target["source_leases"] == []
    expected = {**source, "source_leases": []}
    expected["items"] = [tuple(v.replace("\x00", "\ufffd") if isinstance(v, str) else v
                               for v in row) for row in source["items"]]
    assert target == expected

    store = await Store.open(PostgresUrl(postgres_url))
    try:
        assert await store.ensure_source("new", "ics") == 8
        [(item_id, alert_id)] = await pg(postgres_url, """
            SELECT nextval(pg_get_serial_sequence('items', 'id')),
                   nextval(pg_get_serial_sequence('alert_outbox', 'id'))""")
        assert (item_id, alert_id) == (10, 12)
    finally:
        await store.close()


async def test_a_target_holding_data_is_refused_and_left_alone(
        config: Config, postgres_url: str) -> None:
    await filled_installation(config)
    store = await Store.open(PostgresUrl(postgres_url))
    try:
        await store.ensure_source("elsewhere", "ics")
        await store.calendar_secret("me", now=1)
    finally:
        await store.close()
    with pytest.raises(TransferError, match=r"already holds data \(tables sources, "
                                            r"calendar_secrets\).*empty database"):
        await migrate_store(config, PostgresUrl(postgres_url))
    assert [tuple(r) for r in await pg(postgres_url, "SELECT name FROM sources")] == [
        ("elsewhere",)]


@pytest.mark.parametrize(("side", "change", "named"), [
    ("postgresql", "ALTER TABLE bookings ADD COLUMN notes TEXT",
     "bookings.notes: a column of PostgreSQL that the SQLite file lacks"),
    ("sqlite", "ALTER TABLE items ADD COLUMN color TEXT",
     "items.color: a column of the SQLite file that PostgreSQL lacks"),
    ("sqlite", "CREATE TABLE later (x INTEGER)",
     "table later is in the SQLite file, not in PostgreSQL"),
])
async def test_a_column_or_table_on_one_side_only_is_an_error(
        config: Config, postgres_url: str, side: str, change: str, named: str) -> None:
    path = await filled_installation(config)
    await (await Store.open(PostgresUrl(postgres_url))).close()
    if side == "postgresql":
        await pg(postgres_url, change)
    else:
        with sqlite3.connect(path) as db:
            db.execute(change)
    with pytest.raises(TransferError, match="the schemas differ") as raised:
        await migrate_store(config, PostgresUrl(postgres_url))
    assert named in str(raised.value)
    await assert_target_empty(postgres_url, FILLED.keys() | {"meta"})


async def test_a_failure_in_the_middle_leaves_the_target_empty(
        config: Config, postgres_url: str) -> None:
    path = await filled_installation(config)
    # SQLite keeps what it cannot convert: a text in an integer column, which
    # PostgreSQL refuses once the tables before it are already copied.
    with sqlite3.connect(path) as db:
        db.execute("UPDATE alert_outbox SET next_attempt = 'soon' WHERE id = 11")
    done: list[str] = []

    async def progress(table: str, rows: int, total: int) -> None:
        done.append(table)

    with pytest.raises(TransferError) as raised:
        await migrate_store(config, PostgresUrl(postgres_url), progress=progress)
    assert str(raised.value) == (
        "copying alert_outbox, rows 1-2: alert_outbox.next_attempt holds 'soon' (str), which "
        "PostgreSQL's bigint column cannot take; nothing was copied")
    assert {"sources", "items", "instances", "bookings", "dav_members"} <= set(done)
    await assert_target_empty(postgres_url, FILLED.keys() | {"meta"})


async def test_a_write_during_the_copy_is_not_half_copied_and_is_reported(
        config: Config, postgres_url: str) -> None:
    path = await filled_installation(config)
    source = await sqlite_tables(path)

    async def meanwhile(table: str, rows: int, total: int) -> None:
        # A running fbproxy books and syncs while the first table is copied.
        if table == "sources" and rows == 1:
            with sqlite3.connect(path) as db:
                db.execute("INSERT INTO bookings VALUES ('bk-3', 'intro', 'me', 5000, 5800, "
                           "'Al', 'a@example.org', '{}', 'c3', 'confirmed', 990, NULL, '', '', 0, "
                           "'', '', '', 'fr')")
                db.execute("INSERT INTO booking_blocks VALUES ('bk-3', 'me', 5000, 5800)")
                db.execute("DELETE FROM instances WHERE item_key = 'b'")
                db.execute("UPDATE meta SET value = value + 1")

    report = await migrate_store(config, PostgresUrl(postgres_url), batch_rows=1,
                                 progress=meanwhile)
    assert report.changed_during_copy
    target = await postgres_tables(postgres_url, source)
    assert target["bookings"] == source["bookings"], "the snapshot, not the later write"
    assert target["instances"] == source["instances"]
    assert target["meta"] == source["meta"]


async def test_an_older_file_is_migrated_first_a_newer_missing_or_broken_one_refused(
        config: Config, postgres_url: str) -> None:
    path = config.server.database
    with pytest.raises(TransferError, match="cannot open the SQLite database"):
        await migrate_store(config, PostgresUrl(postgres_url))
    assert not path.exists(), "never creates the file it was to copy"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a database, " * 512)
    with pytest.raises(TransferError, match="reading the SQLite database .*not a database"):
        await migrate_store(config, PostgresUrl(postgres_url))

    path.unlink()
    with sqlite3.connect(path) as db:
        for script in MIGRATIONS[:12]:
            for statement in statements(script):
                db.execute(statement)
        db.execute("INSERT INTO sources (id, name, kind) VALUES (5, 'old', 'ics')")
        db.execute("PRAGMA user_version = 12")
    report = await migrate_store(config, PostgresUrl(postgres_url))
    assert report.upgraded_from == 12 and report.rows["sources"] == 1
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS),)
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(TransferError, match="schema version 99, newer"):
        await migrate_store(config, PostgresUrl(postgres_url))


# -- the command ------------------------------------------------------------------

CONFIG_TOML = """
[server]
database = "db/fbproxy.sqlite3"
timezone = "UTC"

[[sources]]
name = "work"
kind = "ics"
url = "work.ics"

[[calendars]]
name = "me"
sources = ["work"]
"""


async def test_the_command_copies_prints_the_next_steps_and_refuses_a_second_time(
        config: Config, postgres_url: str, tmp_path: Path) -> None:
    await filled_installation(config)
    (tmp_path / "config.toml").write_text(CONFIG_TOML)
    (tmp_path / "target-url").write_text(postgres_url + "\n")
    env = {**os.environ, "FBPROXY_TARGET": postgres_url,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           "PYTHONWARNINGS": "ignore::FutureWarning:google.api_core._python_version_support"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(Path(sys.executable).with_name("fbproxy")), "migrate-store", "--config",
             "config.toml", *args], cwd=tmp_path, env=env, capture_output=True, text=True,
            timeout=120, check=False)

    done = await asyncio.to_thread(run, "--to-env", "FBPROXY_TARGET")
    assert done.returncode == 0, done.stderr
    out, password = done.stdout, f":{urlsplit(postgres_url).password}@"
    assert "into postgresql://fbproxy:***@" in out and password not in out + done.stderr
    assert "\n  bookings                   2\n" in out
    assert "\n  source_leases              -  not copied: leases belong" in out
    assert 'database = "postgresql://…"' in out and "as a backup" in out
    assert "NUL" in out and "WARNING" not in out

    again = await asyncio.to_thread(run, "--to-file", "target-url")
    assert again.returncode == 1
    assert "already holds data" in again.stderr and password not in again.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--to", "mysql://x/y"], "--to: not a postgresql:// URL"),
    (["--to-env", "FBPROXY_TEST_UNSET"], "the environment variable is not set"),
    (["--to-file", "missing"], "--to-file missing: No such file or directory"),
])
def test_the_command_names_a_target_it_cannot_use(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        args: list[str], message: str) -> None:
    (tmp_path / "config.toml").write_text(CONFIG_TOML)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FBPROXY_TEST_UNSET", raising=False)
    assert main(["migrate-store", "--config", "config.toml", *args]) == 2
    assert message in capsys.readouterr().err



async def test_token_files_move_into_the_database_encrypted(
        make_config: Any, tmp_path: Path, postgres_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from server.kit.secretbox import SecretBox
    from server.sync.tokens import StoreTokenVault, open_token_vaults
    from tests.test_tokens import KEY_NEW, google_raw, on_postgres

    token = '{"refresh_token": "1//moved-refresh-token", "scopes": []}'
    (tmp_path / "g.token.json").write_text(token)
    sources = [google_raw(token_file="g.token.json"), {"name": "work", "kind": "ics",
                                                       "url": "work.ics"}]
    (tmp_path / "work.ics").write_text(ics())
    without_key = make_config(sources)
    store = await Store.open(without_key.server.database)  # the installation to copy
    await store.close()
    with pytest.raises(TransferError, match="secrets_key_env"):
        await migrate_store(without_key, PostgresUrl(postgres_url))
    assert await pg(postgres_url, "SELECT to_regclass('sources')") == [(None,)], \
        "refused before the target was touched"

    monkeypatch.setenv("FBPROXY_TEST_KEYS", KEY_NEW)
    config = make_config(sources, secrets_key_env="FBPROXY_TEST_KEYS")
    report = await migrate_store(config, PostgresUrl(postgres_url))
    assert report.tokens == ("google:g",)
    [(stored,)] = await pg(postgres_url, "SELECT value FROM tokens WHERE name = 'google:g'")
    assert "moved-refresh-token" not in stored
    assert SecretBox.from_text(KEY_NEW).decrypt(stored) == token
    # What fbproxy on PostgreSQL reads for the source: the file's token.
    moved = on_postgres(config, postgres_url, KEY_NEW)
    async with open_token_vaults(moved) as vaults:
        vault = vaults.for_source(moved.source("g"))
        assert isinstance(vault, StoreTokenVault) and await vault.load() == token
