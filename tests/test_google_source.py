"""Google sources through the real google-api-python-client, against tests/fake_google.py."""

from __future__ import annotations

import asyncio
import os
import re
import stat
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from adapters.google import BOOKING_PROPERTY, READ_SCOPE, WRITE_SCOPE, hold_event_id, save_token
from tests.fake_google import FakeGoogle
from tests.mailbox import mail_table


@pytest.fixture
def expansion_workers() -> int:
    """This module's configs expand in worker processes (see tests/conftest.py)."""
    return 2


OWNER = "alex@example.org"
AUTH = {"Authorization": "Bearer s3cret-s3cret-s3cret-0001"}


def timed(event_id: str, start: str, end: str, **extra: Any) -> dict[str, Any]:
    return {"id": event_id, "summary": "Private title", "start": {"dateTime": start},
            "end": {"dateTime": end}, **extra}


def source(fake: FakeGoogle, tmp_path: Path, *, scopes: list[str] | None = None,
           **extra: Any) -> dict[str, Any]:
    """A google source authorized as if `fbproxy auth google` had run."""
    token_file = tmp_path / "google.token.json"
    granted = scopes or [WRITE_SCOPE]
    _access, refresh = fake.grant(granted)
    save_token(token_file, refresh, granted, fake.token_uri)
    return {"name": "g", "kind": "google", "client_id": fake.client_id,
            "client_secret": fake.client_secret, "token_file": str(token_file),
            "api_endpoint": fake.api_endpoint, "token_uri": fake.token_uri,
            "auth_uri": fake.auth_uri, "owner_emails": [OWNER], **extra}


async def busy(client: Any, day: str = "2026-11-26") -> list[tuple[str, str, str]]:
    response = await client.get(f"/api/v1/freebusy?start={day}&end=2026-11-30", headers=AUTH)
    assert response.status == 200, await response.text()
    blocks = (await response.json())["busy"]
    return [(b["start"][8:16], b["end"][11:16], b["status"]) for b in blocks]


@pytest.fixture
def google(fake_google: FakeGoogle) -> FakeGoogle:
    fake_google.add_calendar(OWNER, "Alex", primary=True)
    return fake_google


async def test_first_sync_maps_what_blocks_and_what_does_not(google, tmp_path, make_config,
                                                             serve, monkeypatch) -> None:
    monkeypatch.setattr("adapters.google.PAGE_SIZE", 2)  # seven events: four pages
    for event in (
        timed("busy1", "2026-11-26T09:00:00Z", "2026-11-26T10:00:00Z"),
        timed("tent1", "2026-11-26T11:00:00+01:00", "2026-11-26T12:00:00+01:00",
              status="tentative"),
        timed("free1", "2026-11-26T12:00:00Z", "2026-11-26T13:00:00Z", transparency="transparent"),
        timed("declined", "2026-11-26T14:00:00Z", "2026-11-26T15:00:00Z", attendees=[
            {"email": OWNER, "self": True, "responseStatus": "declined"}]),
        timed("where", "2026-11-26T15:00:00Z", "2026-11-26T16:00:00Z",
              eventType="workingLocation"),
        timed("ooo", "2026-11-27T08:00:00Z", "2026-11-27T09:00:00Z", eventType="outOfOffice"),
        {"id": "allday", "start": {"date": "2026-11-28"}, "end": {"date": "2026-11-29"}},
    ):
        google.put_event(OWNER, event)
    client, runtime = await serve(make_config([source(google, tmp_path)]))
    [outcome] = await runtime.sync.run_all_once()
    assert outcome.ok, outcome
    assert await busy(client) == [
        ("26T09:00", "10:00", "busy"), ("26T10:00", "11:00", "tentative"),
        ("27T08:00", "09:00", "busy"), ("28T00:00", "00:00", "busy")]  # all-day in UTC
    lists = [q for m, p, q in google.requests if p.endswith("/events") and m == "GET"]
    assert len(lists) == 4 and [("pageToken" in q) for q in lists] == [False, True, True, True]
    assert all(q.get("singleEvents") == "false" and "syncToken" not in q for q in lists)
    stored = await runtime.store.item_hashes(runtime.source_ids["g"])
    assert "primary/busy1" in stored
    feed = await (await client.get("/feeds/s3cret-s3cret-s3cret-0001/busy.ics")).text()
    assert "DTSTART:20261126T090000Z" in feed and "Private title" not in feed


async def test_incremental_rounds_send_only_the_sync_token(google, tmp_path, make_config,
                                                           serve) -> None:
    google.put_event(OWNER, timed("a", "2026-11-26T09:00:00Z", "2026-11-26T10:00:00Z"))
    google.put_event(OWNER, timed("b", "2026-11-26T11:00:00Z", "2026-11-26T12:00:00Z"))
    client, runtime = await serve(make_config([source(google, tmp_path)]))
    await runtime.sync.run_all_once()
    google.requests.clear()
    google.put_event(OWNER, timed("a", "2026-11-26T09:30:00Z", "2026-11-26T10:30:00Z"))
    google.cancel_event(OWNER, "b")
    google.put_event(OWNER, timed("c", "2026-11-27T09:00:00Z", "2026-11-27T09:30:00Z"))
    [outcome] = await runtime.sync.run_all_once()
    assert outcome.ok
    assert await busy(client) == [("26T09:30", "10:30", "busy"), ("27T09:00", "09:30", "busy")]
    [(_, _, query)] = google.requests
    assert "syncToken" in query and not {"timeMin", "timeMax"} & set(query)
    google.requests.clear()
    await runtime.sync.run_all_once()
    assert len(google.requests) == 1, "a round without changes is one request"


async def test_a_stale_sync_token_means_one_full_resync(google, tmp_path, make_config,
                                                        serve) -> None:
    google.put_event(OWNER, timed("a", "2026-11-26T09:00:00Z", "2026-11-26T10:00:00Z"))
    google.put_event(OWNER, timed("b", "2026-11-26T11:00:00Z", "2026-11-26T12:00:00Z"))
    client, runtime = await serve(make_config([source(google, tmp_path)]))
    await runtime.sync.run_all_once()
    google.cancel_event(OWNER, "b")
    google.expire_sync_tokens()
    google.requests.clear()
    [outcome] = await runtime.sync.run_all_once()
    assert outcome.ok, outcome
    statuses = [q.get("syncToken") is not None for _m, _p, q in google.requests]
    assert statuses == [True, False], "one 410, then one full listing"
    assert await busy(client) == [("26T09:00", "10:00", "busy")]


async def test_a_revoked_token_asks_for_reauthorization(google, tmp_path, make_config,
                                                        serve) -> None:
    google.put_event(OWNER, timed("a", "2026-11-26T09:00:00Z", "2026-11-26T10:00:00Z"))
    client, runtime = await serve(make_config([source(google, tmp_path)]))
    await runtime.sync.run_all_once()
    google.revoke_refresh_tokens()
    google.expire_access_tokens()
    [outcome] = await runtime.sync.run_all_once()
    assert not outcome.ok
    [record] = await runtime.store.sources()
    assert record.needs_reauth and "fbproxy auth google --source g" in (record.last_error or "")
    answer = await (await client.get("/api/v1/freebusy", headers=AUTH)).json()
    assert answer["sources"][0]["needs_reauth"] is True
    from server.outputs.status import admin_secret
    status = await (await client.get("/api/v1/status", headers={
        "Authorization": f"Bearer {await admin_secret(runtime)}"})).json()
    [google_source] = status["sources"]
    assert google_source["needs_reauth"] is True
    assert google_source["fix"].startswith("fbproxy auth google --config ")
    assert google_source["fix"].endswith("--source g")
    assert await busy(client) == [("26T09:00", "10:00", "busy")], "the last good data serves"


async def test_a_missing_scope_names_the_scope_and_asks_for_auth(google, tmp_path, make_config,
                                                                 serve) -> None:
    google.put_event(OWNER, timed("a", "2026-11-26T09:00:00Z", "2026-11-26T10:00:00Z"))
    other = "https://www.googleapis.com/auth/calendar.settings.readonly"
    client, runtime = await serve(make_config([source(google, tmp_path, scopes=[other])]))
    [outcome] = await runtime.sync.run_all_once()
    assert not outcome.ok
    [record] = await runtime.store.sources()
    assert record.needs_reauth, "a token without the scope: authorizing again grants it"
    assert READ_SCOPE in (record.last_error or "")
    assert "insufficientPermissions" in (record.last_error or "")
    assert "fbproxy auth google --source g" in (record.last_error or "")


async def test_holds_refused_by_scope_or_by_sharing_say_which(google, tmp_path, make_config,
                                                              serve, clock) -> None:
    from dataclasses import replace

    from adapters.base import AccessDenied, AuthExpired, Hold
    from adapters.google import GoogleAdapter

    client, runtime = await serve(make_config([source(google, tmp_path, scopes=[READ_SCOPE])]))
    [outcome] = await runtime.sync.run_all_once()
    assert outcome.ok, "reading works with the read-only scope"
    adapter = runtime.sync.syncers["g"].adapter
    assert isinstance(adapter, GoogleAdapter)
    now = clock.now()
    with pytest.raises(AuthExpired) as scope:
        await adapter.write_hold(Hold("b1", now, now + timedelta(minutes=30), "Hold", now))
    assert WRITE_SCOPE in str(scope.value) and "fbproxy auth google --source g" in str(scope.value)

    # A calendar shared read-only: the account may not write there, whatever the token.
    google.add_calendar("team@example.org", "Team", access_role="reader")
    save_token(tmp_path / "w.json", google.grant([WRITE_SCOPE])[1], [WRITE_SCOPE],
               google.token_uri)
    writer = GoogleAdapter("w", replace(adapter.settings, token_file=tmp_path / "w.json"))
    with pytest.raises(AccessDenied) as sharing:
        await writer.write_hold(Hold("b2", now, now + timedelta(minutes=30), "Hold", now,
                                     calendar="team@example.org"))
    message = str(sharing.value)
    assert "requiredAccessLevel" in message and "Make changes to events" in message
    assert "fbproxy auth" not in message, "a new token would be refused the same way"


async def test_a_5xx_storm_backs_off_and_recovers(google, tmp_path, make_config, serve,
                                                  monkeypatch) -> None:
    import googleapiclient.http

    waits: list[float] = []
    # The library's own retry backoff sleeps in its thread; record instead of waiting.
    monkeypatch.setattr(googleapiclient.http.time, "sleep", waits.append)
    google.put_event(OWNER, timed("a", "2026-11-26T09:00:00Z", "2026-11-26T10:00:00Z"))
    client, runtime = await serve(make_config([source(google, tmp_path)]))
    google.fail_next(20, 503)
    [outcome] = await runtime.sync.run_all_once()
    assert not outcome.ok and "503" in str(outcome.error)
    assert len(waits) == 3 and max(waits) <= 8, "three retries with jittered backoff"
    [record] = await runtime.store.sources()
    assert record.consecutive_failures == 1 and not record.needs_reauth
    google.fail_next(0)
    google._failures.clear()  # noqa: SLF001 - the storm is over
    [outcome] = await runtime.sync.run_all_once()
    assert outcome.ok
    assert await busy(client) == [("26T09:00", "10:00", "busy")]


def meet_page(**extra: Any) -> dict[str, Any]:
    return {"slug": "intro", "title": "Intro call", "hosts": ["me"], "duration": "30m",
            "timezone": "UTC", "minimum_notice": "1h",
            "hours": {d: ["09:00-12:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
            "hold_target": {"me": {"source": "g"}}, "video_link": "google-meet", **extra}


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The adapter's waits between re-reads of a pending Meet conference, recorded
    instead of slept."""
    recorded: list[float] = []
    monkeypatch.setattr("adapters.google.clock.sleep", recorded.append)
    return recorded


async def test_a_hold_lands_once_with_a_meet_link_and_cancel_removes_it(
        google, tmp_path, make_config, serve, waits) -> None:
    config = make_config([source(google, tmp_path)], booking_pages=[meet_page()])
    client, runtime = await serve(config)
    await runtime.sync.run_all_once()
    response = await client.post("/api/v1/pages/intro/bookings", json={
        "start": "2026-11-26T10:00:00Z", "name": "Sam", "email": "sam@example.org"})
    assert response.status == 201
    booking = await response.json()
    assert booking["video_link"] is None, "Google makes the link with the hold"
    google.meet_pending_reads = 1  # the insert and the first re-read answer "pending"
    assert await runtime.holds.run_once() == 1
    assert waits == [1.0, 2.0], "re-read with backoff until the conference is made"
    gets = [p for m, p, _q in google.requests if m == "GET" and "/events/" in p]
    assert len(gets) == 2
    [hold] = google.events(OWNER)
    assert hold["id"] == hold_event_id(booking["id"])
    assert hold["status"] == "tentative" and hold["transparency"] == "opaque"
    assert hold["extendedProperties"]["private"][BOOKING_PROPERTY] == booking["id"]
    link = hold["hangoutLink"]
    stored = await runtime.store.booking(booking["id"])
    assert stored is not None and stored.video_link == link
    page = await (await client.get(booking["manage_url"].split("8080", 1)[1])).text()
    assert link in page

    # A retry after a crash between the insert and "done": 409, still one event.
    await runtime.store.database.writer.execute(  # simulating the crash window
        "UPDATE hold_outbox SET state = 'pending' WHERE booking_id = ?", (booking["id"],))
    assert await runtime.holds.run_once() == 1
    assert len(google.events(OWNER)) == 1
    # Synced back, the hold is recognised and counted once (by the booking).
    await runtime.sync.run_all_once()
    assert await busy(client) == [("26T10:00", "10:30", "busy")]

    assert (await client.post(booking["cancel_url"].split("8080", 1)[1])).status == 200
    assert await runtime.holds.run_once() == 1
    assert google.events(OWNER) == []
    await runtime.sync.run_all_once()
    assert await busy(client) == []


async def test_a_meet_link_google_fails_to_make_is_reported_not_retried(
        google, tmp_path, make_config, serve, waits) -> None:
    google.meet_outcome = "failure"
    client, runtime = await serve(make_config([source(google, tmp_path)],
                                              booking_pages=[meet_page()]))
    await runtime.sync.run_all_once()
    response = await client.post("/api/v1/pages/intro/bookings", json={
        "start": "2026-11-26T10:00:00Z", "name": "Sam", "email": "sam@example.org"})
    booking = await response.json()
    assert await runtime.holds.run_once() == 1
    [hold] = google.events(OWNER)
    assert hold["conferenceData"]["createRequest"]["status"]["statusCode"] == "failure"
    stored = await runtime.store.booking(booking["id"])
    assert stored is not None and not stored.video_link
    assert await runtime.holds.run_once() == 0, "the hold is written: no second insert"
    from server.outputs.status import admin_secret
    status = await (await client.get("/api/v1/status", headers={
        "Authorization": f"Bearer {await admin_secret(runtime)}"})).json()
    [done] = [h for h in status["holds"] if h["action"] == "write"]
    assert done["state"] == "done" and "createRequest failure" in done["last_error"]
    page = await (await client.get(booking["manage_url"].split("8080", 1)[1])).text()
    assert "No video link could be made" in page and "createRequest failure" in page

    # Still pending after every re-read: the same, with that reason.
    google.meet_outcome, google.meet_pending_reads = "success", 100
    response = await client.post("/api/v1/pages/intro/bookings", json={
        "start": "2026-11-27T10:00:00Z", "name": "Kim", "email": "kim@example.org"})
    waits.clear()
    assert await runtime.holds.run_once() == 1
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0], "bounded: five re-reads, then it stops"
    late = await runtime.store.video_problem((await response.json())["id"])
    assert late is not None and "still creating" in late


async def test_auth_google_runs_the_consent_flow_and_stores_the_token(google, tmp_path,
                                                                       make_config) -> None:
    config_file = tmp_path / "config.toml"
    token_file = tmp_path / "state" / "g.token.json"
    config_file.write_text(f"""
[server]
database = "{tmp_path / 'db.sqlite3'}"
[[sources]]
name = "g"
kind = "google"
client_id = "{google.client_id}"
client_secret = "{google.client_secret}"
token_file = "{token_file}"
api_endpoint = "{google.api_endpoint}"
token_uri = "{google.token_uri}"
auth_uri = "{google.auth_uri}"
[[calendars]]
name = "me"
sources = ["g"]
""")
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("fbproxy")), "auth", "google", "--config",
        str(config_file), "--source", "g", "--no-browser",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "OAUTHLIB_INSECURE_TRANSPORT": "1"})  # the fake speaks http
    assert process.stdout is not None
    url = ""
    while not url:
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        assert line, "fbproxy auth ended without printing the consent address"
        url = next(iter(re.findall(r"http://127\.0\.0\.1:\d+/auth\?\S+", line)), "")
    # The user's browser says yes.
    async with aiohttp.ClientSession() as browser, browser.get(url) as answer:
        assert answer.status == 200
    output, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, output.decode()
    assert token_file.exists() and stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert google.requested_scopes == [READ_SCOPE], "no holds: read-only access"
    assert "refresh_token" in token_file.read_text()


async def test_push_notifications_wake_the_sync_and_channels_are_renewed(
        google, tmp_path, make_config, aiohttp_client, clock) -> None:
    from datetime import timedelta

    from server.app import create_app
    from server.runtime import RUNTIME
    from tests.peers import free_port

    port = free_port()
    config = make_config([source(google, tmp_path, push=True)],
                         base_url=f"http://127.0.0.1:{port}")
    app = create_app(config, clock=clock, start_sync=False)
    client = await aiohttp_client(app, server_kwargs={"port": port})
    runtime = app[RUNTIME]
    assert runtime.push is not None
    await runtime.push.ensure()
    [channel] = await runtime.store.channels()
    assert google.channels[channel.channel_id]["address"] == \
        f"http://127.0.0.1:{port}/hooks/google"

    runtime.sync.start()  # the real loops: a first round, then they wait for 2 minutes
    for _ in range(200):
        if (await runtime.store.sources())[0].last_success:
            break
        await asyncio.sleep(0.01)
    google.put_event(OWNER, timed("new", "2026-11-26T09:00:00Z", "2026-11-26T10:00:00Z"))
    assert await google.notify(OWNER) == [200]
    for _ in range(100):  # within a second, not at the next poll
        if await busy(client):
            break
        await asyncio.sleep(0.01)
    assert await busy(client) == [("26T09:00", "10:00", "busy")]

    forged = await client.post("/hooks/google", headers={
        "X-Goog-Channel-ID": channel.channel_id, "X-Goog-Channel-Token": "guess",
        "X-Goog-Resource-State": "exists"})
    assert forged.status == 404
    stray = await client.post("/hooks/google", headers={
        "X-Goog-Channel-ID": "old-run", "X-Goog-Resource-ID": "r", "X-Goog-Channel-Token": "t"})
    assert stray.status == 404

    clock.set(clock.now() + timedelta(days=6, hours=12))  # within a day of expiry
    await runtime.push.ensure()
    [renewed] = await runtime.store.channels()
    assert renewed.channel_id != channel.channel_id
    assert list(google.channels) == [renewed.channel_id], "the old channel was stopped"
    await runtime.sync.stop()
    await client.close()
    assert google.channels == {}, "shutting down stops the channels"


@pytest.mark.parametrize("lifetime", [None, timedelta(days=2)], ids=["asked", "shorter"])
async def test_push_channels_are_renewed_before_google_stops_them(
        google, tmp_path, make_config, aiohttp_client, clock, lifetime) -> None:
    """Three weeks of hourly checks (the push loop's pace): at every check a channel
    is live and stays live until the next one, whatever expiration Google answered."""
    from server.app import create_app
    from server.runtime import RUNTIME
    from server.sync.push import CHECK_EVERY
    from tests.peers import free_port

    google.channel_lifetime = lifetime
    port = free_port()
    app = create_app(make_config([source(google, tmp_path, push=True)],
                                 base_url=f"http://127.0.0.1:{port}"),
                     clock=clock, start_sync=False)
    client = await aiohttp_client(app, server_kwargs={"port": port})
    push = app[RUNTIME].push
    assert push is not None
    opened: set[str] = set()
    start = clock.now()
    while clock.now() < start + timedelta(weeks=3):
        await push.ensure()
        now_ms = clock.now().timestamp() * 1000
        [live] = google.channels.values()
        assert int(live["expiration"]) > now_ms + CHECK_EVERY.total_seconds() * 1000, \
            "the channel would lapse before the next check"
        opened.add(live["id"])
        clock.set(clock.now() + CHECK_EVERY)
    assert await google.notify(OWNER) == [200]
    # Renewed with a quarter of the life Google granted left: every 5.25 days for a
    # week-long channel, every 36 hours for one Google cut to 2 days.
    assert len(opened) == (4 if lifetime is None else 14), len(opened)
    await client.close()


@pytest.mark.parametrize(("extra", "problem"), [
    ({"client_id": None}, "client_id: is required"),
    ({"client_secret": None}, "client_secret: is required"),
    ({"push": True, "__base_url": "http://cal.example.org"}, "only notifies https"),
    ({"api_endpoint": "http://api.example.org/"}, "only a loopback address may use http"),
    ({"url": "https://calendar.google.com/"}, "url: unknown key"),
    ({"max_bytes": "1MiB"}, "max_bytes: unknown key"),
])
def test_google_config_errors_name_the_key(tmp_path: Path, extra: dict[str, Any],
                                           problem: str) -> None:
    from server.config.model import parse_config
    from server.errors import ConfigError

    raw = {"name": "g", "kind": "google", "client_id": "id", "client_secret": "secret"}
    raw.update({k: v for k, v in extra.items() if not k.startswith("__")})
    raw = {k: v for k, v in raw.items() if v is not None}
    server = {"base_url": extra["__base_url"]} if "__base_url" in extra else {}
    with pytest.raises(ConfigError) as caught:
        parse_config({"server": server, "sources": [raw]}, base_dir=tmp_path)
    assert any(problem in p for p in caught.value.problems), caught.value.problems


def test_google_client_file_and_defaults(tmp_path: Path) -> None:
    import json

    from server.config.model import parse_config

    client = tmp_path / "client.json"
    client.write_text(json.dumps({"installed": {"client_id": "abc.apps", "client_secret": "s"}}))
    client.chmod(0o600)
    config = parse_config({"server": {"database": "var/db.sqlite3"}, "sources": [
        {"name": "g", "kind": "google", "client_secret_file": str(client)}]}, base_dir=tmp_path)
    google = config.sources[0].google
    assert google is not None and google.client_id == "abc.apps"
    assert google.token_file == tmp_path / "var" / "google-g.token.json"
    assert config.sources[0].poll_interval.total_seconds() == 120
    client.chmod(0o644)
    from server.errors import ConfigError
    with pytest.raises(ConfigError, match="readable by others"):
        parse_config({"sources": [{"name": "g", "kind": "google",
                                   "client_secret_file": str(client)}]}, base_dir=tmp_path)


async def test_with_invite_via_provider_google_invites_the_guest(
        google, tmp_path, make_config, serve, mailbox) -> None:
    """sendUpdates=all with the guest as attendee on insert and delete; fbproxy sends
    no invitation of its own, only the host's notice."""
    page = meet_page(invite_via="provider")
    del page["video_link"]
    config = make_config([source(google, tmp_path)], booking_pages=[page],
                         mail=mail_table(mailbox))
    client, runtime = await serve(config)
    await runtime.sync.run_all_once()
    response = await client.post("/api/v1/pages/intro/bookings", json={
        "start": "2026-11-26T10:00:00Z", "name": "Sam Guest", "email": "sam@example.org"})
    booking = await response.json()
    assert await runtime.holds.run_once() == 1
    [hold] = google.events(OWNER)
    assert [a["email"] for a in hold["attendees"]] == ["sam@example.org"]
    assert google.send_updates[-1] == ("insert", hold["id"], "all")
    assert await runtime.mailer.run_once() == 1
    assert mailbox.to("sam@example.org") == [] and len(mailbox.messages) == 1

    # Rescheduled: the same event moves (Google tells the guest), never a second one.
    response = await client.post(booking["reschedule_url"].split("8080", 1)[1],
                                 json={"start": "2026-11-27T11:00:00Z"})
    assert response.status == 200, await response.text()
    assert await runtime.holds.run_once() == 1
    [moved] = google.events(OWNER)
    assert moved["id"] == hold["id"] and moved["start"]["dateTime"].startswith(
        "2026-11-27T11:00:00")
    assert [a["email"] for a in moved["attendees"]] == ["sam@example.org"]
    assert google.send_updates[-1] == ("patch", hold["id"], "all")
    assert await runtime.mailer.run_once() == 1  # the host's notice only
    assert mailbox.to("sam@example.org") == []

    assert (await client.post(booking["cancel_url"].split("8080", 1)[1])).status == 200
    assert await runtime.holds.run_once() == 1
    assert google.send_updates[-1] == ("delete", hold["id"], "all")
