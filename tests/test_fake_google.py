"""The Google fake, driven by the real google-api-python-client and google-auth.

The fake runs on the test's event loop and the clients block (httplib2,
requests), so every client call goes through ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import json
import threading
import webbrowser
from collections.abc import Callable
from typing import Any, TypeVar

import aiohttp
import pytest
import requests
from aiohttp import web
from google.auth.exceptions import RefreshError
from google.auth.transport.requests import Request
from google.oauth2.credentials import Credentials
from google_auth_oauthlib.flow import InstalledAppFlow
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from tests.fake_google import FakeGoogle

T = TypeVar("T")
CAL = "me@example.org"
READONLY = "https://www.googleapis.com/auth/calendar.events.readonly"


def api(fake: FakeGoogle, credentials: Credentials | None = None) -> Any:
    return build("calendar", "v3", credentials=credentials or Credentials(token=fake.access_token),
                 static_discovery=True, cache_discovery=False,
                 client_options={"api_endpoint": fake.api_endpoint})


async def run(call: Callable[[], T]) -> T:
    return await asyncio.to_thread(call)


def timed(event_id: str, start: str, end: str, **extra: Any) -> dict[str, Any]:
    return {"id": event_id, "summary": f"Event {event_id}", "start": {"dateTime": start},
            "end": {"dateTime": end}, **extra}


def error_body(error: HttpError) -> dict[str, Any]:
    return dict(json.loads(error.content)["error"])


def list_all(service: Any, **params: Any) -> tuple[list[list[dict[str, Any]]], str]:
    """Every page of events.list: the pages' items and the final nextSyncToken."""
    pages, page_token = [], None
    while True:
        response = service.events().list(calendarId=CAL, pageToken=page_token,
                                          **params).execute()
        pages.append(response["items"])
        page_token = response.get("nextPageToken")
        if page_token is None:
            return pages, response["nextSyncToken"]
        assert "nextSyncToken" not in response


@pytest.fixture
def fake(fake_google: FakeGoogle) -> FakeGoogle:
    fake_google.add_calendar(CAL, "Me", primary=True)
    for n in range(5):
        fake_google.put_event(CAL, timed(f"ev{n}aaaa", f"2026-11-2{n}T10:00:00Z",
                                         f"2026-11-2{n}T11:00:00Z"))
    return fake_google


async def test_calendar_list(fake: FakeGoogle) -> None:
    fake.add_calendar("team@group.calendar.google.com", "Team", access_role="reader")
    response = await run(api(fake).calendarList().list().execute)
    assert response["kind"] == "calendar#calendarList"
    by_id = {item["id"]: item for item in response["items"]}
    assert by_id[CAL]["primary"] is True and by_id[CAL]["accessRole"] == "owner"
    team = by_id["team@group.calendar.google.com"]
    assert (team["summary"], team["accessRole"], team["timeZone"]) == ("Team", "reader", "UTC")
    assert "primary" not in team
    assert fake.requests[-1][:2] == ("GET", "/calendar/v3/users/me/calendarList")


async def test_paging_and_sync_token(fake: FakeGoogle) -> None:
    pages, sync_token = await run(lambda: list_all(api(fake), singleEvents=True))
    assert [len(page) for page in pages] == [2, 2, 1]
    assert sync_token
    items = [item for page in pages for item in page]
    assert [item["id"] for item in items] == [f"ev{n}aaaa" for n in range(5)]
    first = items[0]
    assert first["kind"] == "calendar#event" and first["status"] == "confirmed"
    assert first["iCalUID"] == "ev0aaaa@google.com" and first["etag"].startswith('"')
    assert first["htmlLink"].startswith("https://www.google.com/calendar/event?eid=")
    # A client-chosen maxResults is honoured.
    response = await run(api(fake).events().list(calendarId="primary", maxResults=10).execute)
    assert len(response["items"]) == 5 and "nextPageToken" not in response
    assert response["kind"] == "calendar#events" and response["accessRole"] == "owner"
    # Time filtering: overlap with [timeMin, timeMax).
    response = await run(api(fake).events().list(
        calendarId=CAL, timeMin="2026-11-21T10:30:00Z", timeMax="2026-11-23T10:00:00+00:00",
        maxResults=10).execute)
    assert [item["id"] for item in response["items"]] == ["ev1aaaa", "ev2aaaa"]


async def test_incremental_sync_after_put_and_cancel(fake: FakeGoogle) -> None:
    _, token = await run(lambda: list_all(api(fake)))
    fake.put_event(CAL, timed("ev1aaaa", "2026-11-21T12:00:00Z", "2026-11-21T13:00:00Z"))
    added = fake.put_event(CAL, timed("newbbbb", "2026-11-27T09:00:00Z", "2026-11-27T10:00:00Z"))
    assert added["sequence"] == 0
    fake.cancel_event(CAL, "ev3aaaa")
    pages, next_token = await run(lambda: list_all(api(fake), syncToken=token))
    items = [item for page in pages for item in page]
    assert [item["id"] for item in items] == ["ev1aaaa", "newbbbb", "ev3aaaa"]
    assert items[0]["sequence"] == 1 and items[0]["start"]["dateTime"] == "2026-11-21T12:00:00Z"
    assert set(items[2]) == {"kind", "etag", "id", "status"}
    assert items[2]["status"] == "cancelled"
    # Nothing changed since: an empty page with a fresh token.
    pages, _ = await run(lambda: list_all(api(fake), syncToken=next_token))
    assert pages == [[]]
    # A full listing hides the cancelled event unless showDeleted.
    assert "ev3aaaa" not in [e["id"] for e in fake.events(CAL)]
    full, _ = await run(lambda: list_all(api(fake), maxResults=50))
    assert "ev3aaaa" not in [item["id"] for item in full[0]]
    full, _ = await run(lambda: list_all(api(fake), maxResults=50, showDeleted=True))
    assert "ev3aaaa" in [item["id"] for item in full[0]]


async def test_sync_token_errors(fake: FakeGoogle) -> None:
    _, token = await run(lambda: list_all(api(fake)))
    with pytest.raises(HttpError) as caught:
        await run(api(fake).events().list(calendarId=CAL, syncToken=token,
                                          timeMin="2026-11-01T00:00:00Z").execute)
    assert caught.value.resp.status == 400
    fake.expire_sync_tokens(CAL)
    with pytest.raises(HttpError) as caught:
        await run(api(fake).events().list(calendarId=CAL, syncToken=token).execute)
    assert caught.value.resp.status == 410
    body = error_body(caught.value)
    assert body["code"] == 410
    assert body["message"] == "Sync token is no longer valid, a full sync is required."
    assert body["errors"][0]["reason"] == "fullSyncRequired"
    # A full sync gives a token that works again.
    _, token = await run(lambda: list_all(api(fake)))
    pages, _ = await run(lambda: list_all(api(fake), syncToken=token))
    assert pages == [[]]
    with pytest.raises(HttpError) as caught:
        await run(api(fake).events().list(calendarId="nobody@example.org").execute)
    assert caught.value.resp.status == 404


async def test_insert_get_delete(fake: FakeGoogle) -> None:
    service = api(fake)
    body = timed("hold0001", "2026-11-28T10:00:00Z", "2026-11-28T11:00:00Z")
    created = await run(service.events().insert(calendarId=CAL, body=body,
                                                sendUpdates="none").execute)
    assert created["id"] == "hold0001" and created["status"] == "confirmed"
    assert fake.requests[-1][2]["sendUpdates"] == "none"
    with pytest.raises(HttpError) as caught:
        await run(service.events().insert(calendarId=CAL, body=body).execute)
    assert caught.value.resp.status == 409
    assert error_body(caught.value)["errors"][0] == {
        "domain": "global", "reason": "duplicate",
        "message": "The requested identifier already exists."}
    for bad_id in ("HOLD0001", "hold", "holdwxyz"):
        with pytest.raises(HttpError) as caught:
            await run(service.events().insert(calendarId=CAL, body={**body, "id": bad_id})
                      .execute)
        assert caught.value.resp.status == 400
    generated = await run(service.events().insert(calendarId=CAL, body={
        "start": {"date": "2026-11-29"}, "end": {"date": "2026-11-30"}}).execute)
    assert len(generated["id"]) >= 5
    got = await run(service.events().get(calendarId=CAL, eventId="hold0001").execute)
    assert got == created
    assert await run(service.events().delete(calendarId=CAL, eventId="hold0001").execute) == ""
    for event_id, status in (("hold0001", 410), ("missing00", 404)):
        with pytest.raises(HttpError) as caught:
            await run(service.events().delete(calendarId=CAL, eventId=event_id).execute)
        assert caught.value.resp.status == status
    # Even a cancelled event's id stays taken.
    with pytest.raises(HttpError) as caught:
        await run(service.events().insert(calendarId=CAL, body=body).execute)
    assert caught.value.resp.status == 409


async def test_patch_merges_records_send_updates_and_shows_in_sync(fake: FakeGoogle) -> None:
    service = api(fake)
    _, token = await run(lambda: list_all(api(fake)))
    body = timed("hold0002", "2026-11-28T10:00:00Z", "2026-11-28T11:00:00Z",
                 description="notes", location="Room 1",
                 attendees=[{"email": "sam@example.org", "displayName": "Sam"}],
                 extendedProperties={"private": {"a": "1", "b": "2"}})
    created = await run(service.events().insert(calendarId=CAL, body=body,
                                                sendUpdates="all").execute)
    assert created["attendees"] == [{"email": "sam@example.org", "displayName": "Sam",
                                     "responseStatus": "needsAction"}]
    patched = await run(service.events().patch(
        calendarId=CAL, eventId="hold0002", sendUpdates="none", body={
            "start": {"dateTime": "2026-11-29T10:00:00Z"},
            "end": {"dateTime": "2026-11-29T11:00:00Z"},
            "location": None, "extendedProperties": {"private": {"b": "3"}},
            "attendees": [{"email": "kim@example.org"}]}).execute)
    assert patched["id"] == "hold0002" and patched["summary"] == created["summary"]
    assert patched["description"] == "notes" and "location" not in patched
    assert patched["extendedProperties"] == {"private": {"a": "1", "b": "3"}}, "merged"
    assert [a["email"] for a in patched["attendees"]] == ["kim@example.org"], "replaced"
    assert patched["sequence"] == created["sequence"] + 1
    assert patched["etag"] != created["etag"] and patched["updated"] >= created["updated"]
    assert patched["created"] == created["created"]
    pages, _ = await run(lambda: list_all(api(fake), syncToken=token))
    [changed] = [item for page in pages for item in page]
    assert changed["start"]["dateTime"] == "2026-11-29T10:00:00Z"
    await run(service.events().delete(calendarId=CAL, eventId="hold0002").execute)
    assert fake.send_updates == [("insert", "hold0002", "all"), ("patch", "hold0002", "none"),
                                 ("delete", "hold0002", None)]
    # A cancelled event keeps its details on the organizer's calendar: a patch that sets
    # its status restores it.
    restored = await run(service.events().patch(calendarId=CAL, eventId="hold0002",
                                                body={"status": "tentative"}).execute)
    assert restored["status"] == "tentative" and restored["description"] == "notes"
    for event_id, patch, status in (("missing00", {"summary": "x"}, 404),
                                    ("hold0002", {"start": None}, 400),
                                    ("hold0002", {"attendees": [{"displayName": "x"}]}, 400)):
        with pytest.raises(HttpError) as caught:
            await run(service.events().patch(calendarId=CAL, eventId=event_id,
                                             body=patch).execute)
        assert caught.value.resp.status == status


async def test_conference_data(fake: FakeGoogle) -> None:
    request = {"createRequest": {"requestId": "req-1",
                                 "conferenceSolutionKey": {"type": "hangoutsMeet"}}}
    body = timed("meet0001", "2026-11-28T10:00:00Z", "2026-11-28T11:00:00Z",
                 conferenceData=request)
    created = await run(api(fake).events().insert(calendarId=CAL, body=body,
                                                  conferenceDataVersion=1).execute)
    pending = created["conferenceData"]
    assert pending["createRequest"]["status"] == {"statusCode": "pending"}, \
        "conference creation is asynchronous"
    assert "entryPoints" not in pending and "hangoutLink" not in created
    again = await run(api(fake).events().get(calendarId=CAL, eventId="meet0001").execute)
    assert again["conferenceData"]["createRequest"]["status"]["statusCode"] == "pending"
    created = await run(api(fake).events().get(calendarId=CAL, eventId="meet0001").execute)
    conference = created["conferenceData"]
    assert conference["createRequest"]["status"] == {"statusCode": "success"}
    assert conference["createRequest"]["requestId"] == "req-1"
    assert conference["conferenceSolution"]["key"] == {"type": "hangoutsMeet"}
    video = conference["entryPoints"][0]
    assert video["entryPointType"] == "video"
    assert video["uri"].startswith("https://meet.google.com/")
    assert created["hangoutLink"] == video["uri"]
    assert video["uri"].endswith(conference["conferenceId"])
    # Without conferenceDataVersion=1 Google drops conferenceData.
    plain = await run(api(fake).events().insert(
        calendarId=CAL, body={**body, "id": "meet0002"}).execute)
    assert "conferenceData" not in plain and "hangoutLink" not in plain

    fake.meet_outcome, fake.meet_pending_reads = "failure", 0
    body = {**body, "id": "meet0003"}
    await run(api(fake).events().insert(calendarId=CAL, body=body,
                                        conferenceDataVersion=1).execute)
    failed = await run(api(fake).events().get(calendarId=CAL, eventId="meet0003").execute)
    assert failed["conferenceData"]["createRequest"]["status"]["statusCode"] == "failure"
    assert "entryPoints" not in failed["conferenceData"] and "hangoutLink" not in failed


async def test_refresh_then_invalid_grant_after_revoke(fake: FakeGoogle) -> None:
    def credentials() -> Credentials:
        return Credentials(token=None, refresh_token=fake.refresh_token,
                           token_uri=fake.token_uri, client_id=fake.client_id,
                           client_secret=fake.client_secret)

    creds = credentials()
    await run(lambda: creds.refresh(Request()))
    assert creds.token in fake.issued_access_tokens and creds.expiry is not None
    assert fake.token_requests[-1]["grant_type"] == "refresh_token"
    # Credentials without a token refresh on their own inside the client.
    response = await run(api(fake, credentials()).calendarList().list().execute)
    assert response["items"]
    fake.revoke_refresh_tokens()
    with pytest.raises(RefreshError, match="invalid_grant"):
        await run(lambda: credentials().refresh(Request()))
    async with aiohttp.ClientSession() as session:
        for token in (creds.token, fake.access_token):
            async with session.get(f"{fake.api_endpoint}users/me/calendarList",
                                   headers={"Authorization": f"Bearer {token}"}) as answer:
                assert answer.status == 401
                body = await answer.json()
        assert body["error"]["errors"][0]["reason"] == "authError"


async def test_expired_access_token_is_refreshed_by_the_client(fake: FakeGoogle) -> None:
    creds = Credentials(token=fake.access_token, refresh_token=fake.refresh_token,
                        token_uri=fake.token_uri, client_id=fake.client_id,
                        client_secret=fake.client_secret)
    fake.expire_access_tokens()
    response = await run(api(fake, creds).calendarList().list().execute)
    assert response["items"] and creds.token in fake.issued_access_tokens
    assert [status for status, _, _ in fake.requests] == ["GET", "GET"]  # 401, then retried


async def test_scopes_are_enforced(fake: FakeGoogle) -> None:
    access, _ = fake.grant([READONLY])
    service = api(fake, Credentials(token=access))
    assert len((await run(service.events().list(calendarId=CAL).execute))["items"]) == 2
    for call in (service.calendarList().list(),
                 service.events().insert(calendarId=CAL, body=timed(
                     "nope0001", "2026-11-28T10:00:00Z", "2026-11-28T11:00:00Z"))):
        with pytest.raises(HttpError) as caught:
            await run(call.execute)
        assert caught.value.resp.status == 403
        assert error_body(caught.value)["errors"][0]["reason"] == "insufficientPermissions"


async def test_installed_app_flow(fake: FakeGoogle, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")

    class Browser:
        def open(self, url: str, *args: Any, **kwargs: Any) -> bool:
            # The flow serves its redirect only after open() returns.
            threading.Thread(target=requests.get, args=(url,), kwargs={"timeout": 10},
                             daemon=True).start()
            return True

    monkeypatch.setattr(webbrowser, "get", lambda *args, **kwargs: Browser())
    flow = InstalledAppFlow.from_client_config(fake.client_config(), scopes=[READONLY])
    creds = await run(lambda: flow.run_local_server(host="127.0.0.1", port=0,
                                                    open_browser=True, timeout_seconds=10))
    assert fake.requested_scopes == [READONLY]
    assert fake.auth_requests[-1]["code_challenge_method"] == "S256"
    assert creds.refresh_token and creds.token in fake.issued_access_tokens
    response = await run(api(fake, creds).events().list(calendarId=CAL).execute)
    assert response["items"]


async def test_fail_next(fake: FakeGoogle) -> None:
    fake.fail_next(1, 503)
    with pytest.raises(HttpError) as caught:
        await run(api(fake).calendarList().list().execute)
    assert caught.value.resp.status == 503
    assert error_body(caught.value)["errors"][0]["reason"] == "backendError"
    assert (await run(api(fake).calendarList().list().execute))["items"]


async def test_free_busy(fake_google: FakeGoogle) -> None:
    fake = fake_google
    fake.add_calendar(CAL, primary=True)
    fake.put_event(CAL, timed("aaaaa1", "2026-11-26T09:00:00Z", "2026-11-26T10:00:00Z"))
    fake.put_event(CAL, timed("aaaaa2", "2026-11-26T09:30:00Z", "2026-11-26T10:30:00Z"))
    fake.put_event(CAL, timed("aaaaa3", "2026-11-26T12:00:00+01:00", "2026-11-26T14:00:00Z",
                              transparency="transparent"))
    fake.put_event(CAL, timed("aaaaa4", "2026-11-26T15:00:00Z", "2026-11-26T16:00:00Z",
                              attendees=[{"email": CAL, "self": True,
                                          "responseStatus": "declined"}]))
    fake.put_event(CAL, timed("aaaaa5", "2026-11-26T17:00:00Z", "2026-11-26T18:00:00Z"))
    fake.cancel_event(CAL, "aaaaa5")
    fake.put_event(CAL, timed("aaaaa6", "2026-11-26T19:00:00Z", "2026-11-27T08:00:00Z"))
    body = {"timeMin": "2026-11-26T00:00:00Z", "timeMax": "2026-11-27T00:00:00Z",
            "items": [{"id": CAL}, {"id": "other@example.org"}]}
    response = await run(api(fake).freebusy().query(body=body).execute)
    assert response["kind"] == "calendar#freeBusy"
    assert response["calendars"][CAL] == {"busy": [
        {"start": "2026-11-26T09:00:00Z", "end": "2026-11-26T10:30:00Z"},
        {"start": "2026-11-26T19:00:00Z", "end": "2026-11-27T00:00:00Z"}]}
    assert response["calendars"]["other@example.org"]["errors"][0]["reason"] == "notFound"


async def test_watch_notify_and_stop(fake: FakeGoogle, aiohttp_server: Any) -> None:
    received: list[dict[str, str]] = []

    async def receive(request: web.Request) -> web.Response:
        received.append(dict(request.headers))
        return web.Response(status=200)

    receiver = web.Application()
    receiver.router.add_post("/push", receive)
    server = await aiohttp_server(receiver)
    address = str(server.make_url("/push"))
    body = {"id": "chan-1", "type": "web_hook", "address": address, "token": "tok",
            "params": {"ttl": "3600"}}
    channel = await run(api(fake).events().watch(calendarId=CAL, body=body).execute)
    assert channel["kind"] == "api#channel" and channel["id"] == "chan-1"
    assert channel["token"] == "tok" and int(channel["expiration"]) > 0
    assert fake.insecure_addresses == [address] and "chan-1" in fake.channels
    with pytest.raises(HttpError) as caught:  # channel ids are unique
        await run(api(fake).events().watch(calendarId=CAL, body=body).execute)
    assert caught.value.resp.status == 400

    assert await fake.notify(CAL) == [200]
    assert await fake.notify(CAL) == [200]
    headers = received[-1]
    assert headers["X-Goog-Channel-ID"] == "chan-1"
    assert headers["X-Goog-Channel-Token"] == "tok"
    assert headers["X-Goog-Resource-ID"] == channel["resourceId"]
    assert headers["X-Goog-Resource-URI"] == channel["resourceUri"]
    assert headers["X-Goog-Resource-State"] == "exists"
    assert [h["X-Goog-Message-Number"] for h in received] == ["1", "2"]
    assert headers["X-Goog-Channel-Expiration"].endswith(" GMT")

    stop = {"id": "chan-1", "resourceId": channel["resourceId"]}
    assert await run(api(fake).channels().stop(body=stop).execute) == ""
    assert await fake.notify(CAL) == []
    with pytest.raises(HttpError) as caught:
        await run(api(fake).channels().stop(body=stop).execute)
    assert caught.value.resp.status == 404


async def test_cancelled_instance_keeps_its_series(fake_google: FakeGoogle) -> None:
    cal = "en.usa#holiday@group.v.calendar.google.com"
    fake_google.add_calendar(cal, "Holidays", access_role="reader")
    master = fake_google.put_event(cal, timed("series01", "2026-11-23T10:00:00Z",
                                              "2026-11-23T11:00:00Z",
                                              recurrence=["RRULE:FREQ=DAILY;COUNT=3"]))
    instance = fake_google.put_event(cal, timed(
        "series01_20261124T100000Z", "2026-11-24T10:00:00Z", "2026-11-24T11:00:00Z",
        recurringEventId="series01", originalStartTime={"dateTime": "2026-11-24T10:00:00Z"}))
    assert instance["iCalUID"] == master["iCalUID"]
    fake_google.cancel_event(cal, instance["id"])
    response = await run(api(fake_google).events().list(calendarId=cal, showDeleted=True,
                                                       maxResults=5).execute)
    cancelled = response["items"][1]
    assert cancelled["status"] == "cancelled" and cancelled["recurringEventId"] == "series01"
    assert cancelled["originalStartTime"] == {"dateTime": "2026-11-24T10:00:00Z"}
    with pytest.raises(HttpError) as caught:  # a reader cannot write
        await run(api(fake_google).events().delete(calendarId=cal, eventId="series01").execute)
    assert caught.value.resp.status == 403


async def test_series_come_as_master_and_exceptions_or_split_into_instances(
        fake_google: FakeGoogle) -> None:
    fake_google.add_calendar(CAL, primary=True, time_zone="Europe/Berlin")
    start = {"dateTime": "2026-12-01T10:00:00+01:00", "timeZone": "Europe/Berlin"}
    fake_google.put_event(CAL, {
        "id": "series1", "start": start,
        "end": {"dateTime": "2026-12-01T11:00:00+01:00", "timeZone": "Europe/Berlin"},
        "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=4", "EXDATE;TZID=Europe/Berlin:20261222T100000"]})
    second = {"dateTime": "2026-12-08T10:00:00+01:00", "timeZone": "Europe/Berlin"}
    fake_google.put_exception(CAL, "series1", second, start={
        "dateTime": "2026-12-09T15:00:00+01:00"}, end={"dateTime": "2026-12-09T16:00:00+01:00"})
    fake_google.cancel_occurrence(CAL, "series1", {
        "dateTime": "2026-12-15T10:00:00+01:00", "timeZone": "Europe/Berlin"})
    service = api(fake_google)
    as_series = await run(lambda: service.events().list(
        calendarId=CAL, singleEvents=False, maxResults=50).execute())
    by_id = {e["id"]: e for e in as_series["items"]}
    assert set(by_id) == {"series1", "series1_20261208T090000Z", "series1_20261215T090000Z"}
    assert by_id["series1"]["recurrence"][0] == "RRULE:FREQ=WEEKLY;COUNT=4"
    cancelled = by_id["series1_20261215T090000Z"]
    assert cancelled["status"] == "cancelled" and "start" not in cancelled, \
        "a cancelled exception is listed without showDeleted, reduced to its ids"
    assert cancelled["originalStartTime"]["dateTime"] == "2026-12-15T10:00:00+01:00"

    split = await run(lambda: service.events().list(
        calendarId=CAL, singleEvents=True, orderBy="startTime", maxResults=50).execute())
    assert [(e["id"], e["start"]["dateTime"][:16]) for e in split["items"]] == [
        ("series1_20261201T090000Z", "2026-12-01T10:00"),
        ("series1_20261208T090000Z", "2026-12-09T15:00")]  # 15th cancelled, 22nd EXDATE
    assert all(e["recurringEventId"] == "series1" and "recurrence" not in e
               for e in split["items"])
    deleted = await run(lambda: service.events().list(
        calendarId=CAL, singleEvents=True, showDeleted=True, maxResults=50).execute())
    assert {e["id"] for e in deleted["items"]} == {
        "series1_20261201T090000Z", "series1_20261208T090000Z", "series1_20261215T090000Z"}
