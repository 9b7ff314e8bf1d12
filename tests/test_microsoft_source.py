"""Microsoft 365 sources with the real msal and the adapter's Graph calls, against
tests/fake_microsoft.py (identity platform and Graph on loopback)."""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from adapters import microsoft
from tests.conftest import NOW
from tests.fake_microsoft import FakeMicrosoft
from tests.mailbox import mail_table


@pytest.fixture
def expansion_workers() -> int:
    """This module's configs expand in worker processes (see tests/conftest.py)."""
    return 2


AUTH = {"Authorization": "Bearer s3cret-s3cret-s3cret-0001"}


def graph_event(event_id: str, start: str, end: str, **extra: Any) -> dict[str, Any]:
    return {"id": event_id, "subject": "Private subject", "showAs": "busy",
            "start": {"dateTime": start, "timeZone": "UTC"},
            "end": {"dateTime": end, "timeZone": "UTC"}, **extra}


def raw_source(fake: FakeMicrosoft, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {"name": "o", "kind": "microsoft", "tenant": fake.tenant, "client_id": fake.client_id,
            "token_cache_file": str(tmp_path / "o.tokens.json"), "graph_url": fake.graph_url,
            "login_url": fake.login_url, **extra}


async def sign_in(fake: FakeMicrosoft, tmp_path: Path, scopes: list[str]) -> None:
    """What `fbproxy auth microsoft` does, with the user approving at once."""
    settings = microsoft.MicrosoftSettings(
        tenant=fake.tenant, client_id=fake.client_id,
        token_cache_file=tmp_path / "o.tokens.json", login_url=fake.login_url)
    await asyncio.to_thread(microsoft.device_code_sign_in, settings, scopes,
                            lambda _message: fake.approve_device_code())


async def busy(client: Any) -> list[tuple[str, str, str]]:
    response = await client.get("/api/v1/freebusy?start=2026-11-26&end=2026-11-30",
                                headers=AUTH)
    assert response.status == 200, await response.text()
    return [(b["start"][8:16], b["end"][11:16], b["status"])
            for b in (await response.json())["busy"]]


@pytest.fixture
async def outlook(fake_microsoft: FakeMicrosoft, tmp_path: Path, make_config: Any,
                  serve: Any) -> Any:
    async def start(*, scopes: list[str] | None = None, pages: list[dict[str, Any]] = (),
                    mail: dict[str, Any] | None = None, **extra: Any) -> Any:
        await sign_in(fake_microsoft, tmp_path, scopes or microsoft.READ_SCOPES)
        config = make_config([raw_source(fake_microsoft, tmp_path, **extra)],
                             booking_pages=list(pages), mail=mail)
        return await serve(config)
    return start


async def test_first_and_incremental_delta_rounds(fake_microsoft, outlook, monkeypatch) -> None:
    monkeypatch.setattr(microsoft, "PAGE_SIZE", 2)
    fake = fake_microsoft
    for event in (
        graph_event("busy1", "2026-11-26T09:00:00", "2026-11-26T10:00:00"),
        graph_event("tent", "2026-11-26T10:00:00", "2026-11-26T11:00:00", showAs="tentative"),
        graph_event("free", "2026-11-26T12:00:00", "2026-11-26T13:00:00", showAs="free"),
        graph_event("else", "2026-11-26T13:00:00", "2026-11-26T14:00:00",
                    showAs="workingElsewhere"),
        graph_event("no", "2026-11-26T14:00:00", "2026-11-26T15:00:00",
                    responseStatus={"response": "declined", "time": "2026-11-20T10:00:00Z"}),
        graph_event("gone", "2026-11-26T15:00:00", "2026-11-26T16:00:00", isCancelled=True),
        graph_event("ooo", "2026-11-27T08:00:00", "2026-11-27T09:00:00", showAs="oof"),
    ):
        fake.put_event(event)
    client, runtime = await outlook()
    [outcome] = await runtime.sync.run_all_once()
    assert outcome.ok, outcome
    assert await busy(client) == [("26T09:00", "10:00", "busy"),
                                  ("26T10:00", "11:00", "tentative"),
                                  ("27T08:00", "09:00", "busy")]
    rounds = [q for m, p, q in fake.requests if p.endswith("/calendarView/delta")]
    assert rounds[0]["startDateTime"] == "2026-11-24T00:00:00Z" and len(rounds) == 4
    feed = await (await client.get("/feeds/s3cret-s3cret-s3cret-0001/busy.ics")).text()
    assert "Private subject" not in feed

    fake.requests.clear()
    fake.put_event(graph_event("busy1", "2026-11-26T09:30:00", "2026-11-26T10:30:00"))
    fake.delete_event("ooo")
    [outcome] = await runtime.sync.run_all_once()
    assert outcome.ok, outcome
    # busy1 moved over half of the tentative block; ooo is gone.
    assert await busy(client) == [("26T09:30", "10:30", "busy"),
                                  ("26T10:30", "11:00", "tentative")]
    assert fake.requests and not any("startDateTime" in q for _m, _p, q in fake.requests), \
        "the incremental round fetched the stored deltaLink, not the window again"
    fake.requests.clear()
    await runtime.sync.run_all_once()
    assert len(fake.requests) == 1, "a round without changes is one request"


async def test_expired_delta_state_and_the_daily_window(fake_microsoft, outlook, clock) -> None:
    fake = fake_microsoft
    fake.put_event(graph_event("a", "2026-11-26T09:00:00", "2026-11-26T10:00:00"))
    fake.put_event(graph_event("b", "2026-11-26T11:00:00", "2026-11-26T12:00:00"))
    client, runtime = await outlook()
    await runtime.sync.run_all_once()
    fake.delete_event("b")
    fake.expire_delta_tokens()
    fake.requests.clear()
    [outcome] = await runtime.sync.run_all_once()
    assert outcome.ok, outcome
    assert [("startDateTime" in q) for _m, _p, q in fake.requests] == [False, True]
    assert await busy(client) == [("26T09:00", "10:00", "busy")]

    clock.set(NOW + timedelta(days=1))  # a new day: the window moves on
    fake.requests.clear()
    [outcome] = await runtime.sync.run_all_once()
    assert outcome.ok, outcome
    [(_m, _p, query)] = fake.requests
    assert query["startDateTime"] == "2026-11-25T00:00:00Z"


async def test_a_revoked_sign_in_asks_for_it_again(fake_microsoft, outlook) -> None:
    fake = fake_microsoft
    fake.put_event(graph_event("a", "2026-11-26T09:00:00", "2026-11-26T10:00:00"))
    client, runtime = await outlook()
    await runtime.sync.run_all_once()
    fake.revoke_refresh_tokens()
    fake.expire_access_tokens()
    [outcome] = await runtime.sync.run_all_once()
    assert not outcome.ok
    [record] = await runtime.store.sources()
    assert record.needs_reauth
    assert "fbproxy auth microsoft --source o" in (record.last_error or "")
    assert await busy(client) == [("26T09:00", "10:00", "busy")], "the last good data serves"


async def test_throttling_waits_for_retry_after(fake_microsoft, outlook, monkeypatch) -> None:
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(microsoft, "_sleep", record)
    fake_microsoft.put_event(graph_event("a", "2026-11-26T09:00:00", "2026-11-26T10:00:00"))
    client, runtime = await outlook()
    fake_microsoft.throttle_next(2, retry_after=7)
    [outcome] = await runtime.sync.run_all_once()
    assert outcome.ok, outcome
    assert waits == [7.0, 7.0]
    fake_microsoft.throttle_next(5, status=503, retry_after=3)
    [outcome] = await runtime.sync.run_all_once()
    assert not outcome.ok and "503" in str(outcome.error)


def teams_page() -> dict[str, Any]:
    return {"slug": "intro", "title": "Intro call", "hosts": ["me"], "duration": "30m",
            "timezone": "UTC", "minimum_notice": "1h",
            "hours": {d: ["09:00-12:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
            "hold_target": {"me": {"source": "o"}}, "video_link": "teams"}


async def test_a_hold_lands_once_with_a_teams_link(fake_microsoft, outlook) -> None:
    fake = fake_microsoft
    client, runtime = await outlook(scopes=microsoft.WRITE_SCOPES, pages=[teams_page()])
    await runtime.sync.run_all_once()
    response = await client.post("/api/v1/pages/intro/bookings", json={
        "start": "2026-11-26T10:00:00Z", "name": "Sam", "email": "sam@example.org"})
    assert response.status == 201
    booking = await response.json()
    assert await runtime.holds.run_once() == 1
    [hold] = fake.events()
    assert hold["transactionId"] == "fbproxy-" + booking["id"]
    assert hold["showAs"] == "tentative" and hold["isOnlineMeeting"] is True
    link = hold["onlineMeeting"]["joinUrl"]
    stored = await runtime.store.booking(booking["id"])
    assert stored is not None and stored.video_link == link

    await runtime.store.database.writer.execute(  # simulating the crash window
        "UPDATE hold_outbox SET state = 'pending' WHERE booking_id = ?", (booking["id"],))
    assert await runtime.holds.run_once() == 1
    assert len(fake.events()) == 1, "the lookup by our extended property found the first"
    await runtime.sync.run_all_once()
    assert await busy(client) == [("26T10:00", "10:30", "busy")]

    assert (await client.post(booking["cancel_url"].split("8080", 1)[1])).status == 200
    assert await runtime.holds.run_once() == 1
    assert fake.events() == []


async def test_push_subscription_handshake_and_notifications(
        fake_microsoft, tmp_path, make_config, aiohttp_client, clock) -> None:
    from server.app import create_app
    from server.runtime import RUNTIME
    from tests.peers import free_port

    fake = fake_microsoft
    await sign_in(fake, tmp_path, microsoft.READ_SCOPES)
    port = free_port()
    config = make_config([raw_source(fake, tmp_path, push=True)],
                         base_url=f"http://127.0.0.1:{port}")
    app = create_app(config, clock=clock, start_sync=False)
    client = await aiohttp_client(app, server_kwargs={"port": port})
    runtime = app[RUNTIME]
    assert runtime.push is not None
    await runtime.push.ensure()  # Graph validates /hooks/microsoft before it says yes
    [channel] = await runtime.store.channels()
    assert fake.subscriptions[channel.channel_id]["notificationUrl"] == \
        f"http://127.0.0.1:{port}/hooks/microsoft"

    runtime.sync.start()
    for _ in range(200):
        if (await runtime.store.sources())[0].last_success:
            break
        await asyncio.sleep(0.01)
    fake.put_event(graph_event("new", "2026-11-26T09:00:00", "2026-11-26T10:00:00"))
    assert await fake.notify() == [202]
    for _ in range(100):  # within a second
        if await busy(client):
            break
        await asyncio.sleep(0.01)
    assert await busy(client) == [("26T09:00", "10:00", "busy")]
    forged = await client.post("/hooks/microsoft", json={"value": [
        {"subscriptionId": channel.channel_id, "clientState": "guess"}]})
    assert forged.status == 404
    await runtime.sync.stop()
    await client.close()
    assert fake.subscriptions == {}, "shutting down deletes the subscription"


async def test_auth_microsoft_prints_the_code_and_stores_the_cache(fake_microsoft,
                                                                  tmp_path) -> None:
    fake = fake_microsoft
    cache = tmp_path / "state" / "o.tokens.json"
    config_file = tmp_path / "config.toml"
    config_file.write_text(f"""
[server]
database = "{tmp_path / 'db.sqlite3'}"
[[sources]]
name = "o"
kind = "microsoft"
tenant = "{fake.tenant}"
client_id = "{fake.client_id}"
token_cache_file = "{cache}"
graph_url = "{fake.graph_url}"
login_url = "{fake.login_url}"
[[calendars]]
name = "me"
sources = ["o"]
""")
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("fbproxy")), "auth", "microsoft", "--config",
        str(config_file), "--source", "o", stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, env=dict(os.environ))
    assert process.stdout is not None
    # Lines before it are possible: from 2027-10 google-api-core warns on import that
    # it no longer supports Python 3.11 (a FutureWarning on stderr).
    line = ""
    while "microsoft.com/devicelogin" not in line:
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        assert line, "fbproxy auth ended without printing the device code"
    assert "code" in line
    fake.approve_device_code()  # the user enters the code and signs in
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, line + output.decode()
    assert "signed in as alex@contoso.example" in output.decode()
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600 and "RefreshToken" in cache.read_text()


async def test_silent_refresh_and_app_only_access(fake_microsoft, outlook, tmp_path,
                                                  make_config, serve) -> None:
    fake = fake_microsoft
    fake.put_event(graph_event("a", "2026-11-26T09:00:00", "2026-11-26T10:00:00"))
    client, runtime = await outlook()
    await runtime.sync.run_all_once()
    fake.expire_access_tokens()  # the refresh token still works: msal renews quietly
    fake.put_event(graph_event("b", "2026-11-26T11:00:00", "2026-11-26T12:00:00"))
    [outcome] = await runtime.sync.run_all_once()
    assert outcome.ok, outcome
    assert len(await busy(client)) == 2

    # App-only: the app's own secret, one user's calendars, nobody signs in.
    app_only = raw_source(fake, tmp_path / "app", client_secret=fake.client_secret,
                          user=fake.user_principal_name)
    client, runtime = await serve(make_config([app_only]))
    [outcome] = await runtime.sync.run_all_once()
    assert outcome.ok, outcome
    assert len(await busy(client)) == 2
    assert any(p.startswith("/v1.0/users/") for _m, p, _q in fake.requests)


async def test_with_invite_via_provider_microsoft_invites_the_guest(
        fake_microsoft, outlook, mailbox) -> None:
    """The hold carries the guest as an attendee (Graph sends the invitation) and
    fbproxy sends none of its own; the host is still told; cancelling cancels the
    meeting, which tells the guest."""
    fake = fake_microsoft
    page = {**teams_page(), "video_link": None, "invite_via": "provider"}
    del page["video_link"]
    client, runtime = await outlook(scopes=microsoft.WRITE_SCOPES, pages=[page],
                                    mail=mail_table(mailbox))
    await runtime.sync.run_all_once()
    response = await client.post("/api/v1/pages/intro/bookings", json={
        "start": "2026-11-26T10:00:00Z", "name": "Sam Guest", "email": "sam@example.org"})
    booking = await response.json()
    assert await runtime.holds.run_once() == 1
    [hold] = fake.events()
    assert hold["attendees"][0]["emailAddress"] == {"address": "sam@example.org",
                                                    "name": "Sam Guest"}
    assert ("request", hold["id"]) in {(k, e) for k, e, _a, _c in fake.meeting_messages}
    assert await runtime.mailer.run_once() == 1
    assert mailbox.to("sam@example.org") == []
    [notice] = mailbox.messages
    assert notice.message["Subject"].startswith("New booking")

    # Rescheduled: the same event is PATCHed (Graph sends the guest the update).
    response = await client.post(booking["reschedule_url"].split("8080", 1)[1],
                                 json={"start": "2026-11-27T11:00:00Z"})
    assert response.status == 200, await response.text()
    assert await runtime.holds.run_once() == 1
    [moved] = fake.events()
    assert moved["id"] == hold["id"] and moved["start"]["dateTime"].startswith(
        "2026-11-27T11:00:00")
    assert [e for e, _body in fake.patches] == [hold["id"]]
    assert ("update", hold["id"]) in {(k, e) for k, e, _a, _c in fake.meeting_messages}
    assert await runtime.mailer.run_once() == 1
    assert mailbox.to("sam@example.org") == []

    assert (await client.post(booking["cancel_url"].split("8080", 1)[1])).status == 200
    assert await runtime.holds.run_once() == 1
    assert [e for e, _comment in fake.cancels] == [hold["id"]]
    assert fake.events() == []
    assert await runtime.mailer.run_once() == 1  # the host's notice; no CANCEL from us
    assert mailbox.to("sam@example.org") == []
