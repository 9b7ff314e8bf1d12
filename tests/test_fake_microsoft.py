"""The Microsoft fake, driven by the real msal and by aiohttp for Graph.

The fake runs on the test's event loop and msal blocks (requests), so every
msal call goes through ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import aiohttp
import msal
import pytest
from aiohttp import web

from tests.conftest import NOW
from tests.fake_microsoft import FakeMicrosoft

T = TypeVar("T")
CAL_RW = "https://graph.microsoft.com/Calendars.ReadWrite"
CAL_R = "https://graph.microsoft.com/Calendars.Read"
WINDOW = {"startDateTime": "2026-11-23T00:00:00Z", "endDateTime": "2026-11-30T00:00:00Z"}


async def run(call: Callable[[], T]) -> T:
    return await asyncio.to_thread(call)


def public_app(fake: FakeMicrosoft, cache: msal.TokenCache | None = None) -> Any:
    return msal.PublicClientApplication(
        fake.client_id, authority=f"https://login.microsoftonline.com/{fake.tenant}",
        instance_discovery=False, http_client=fake.http_client(), token_cache=cache)


def timed(event_id: str, start: str, end: str, **extra: Any) -> dict[str, Any]:
    return {"id": event_id, "subject": f"Event {event_id}",
            "start": {"dateTime": start, "timeZone": "UTC"},
            "end": {"dateTime": end, "timeZone": "UTC"}, **extra}


async def sign_in(fake: FakeMicrosoft, app: Any, scopes: list[str]) -> dict[str, Any]:
    """Device code flow, polled by hand: one pending poll, the user signs in, one more."""
    flow = await run(lambda: app.initiate_device_flow(scopes=scopes))
    once = {"exit_condition": lambda flow: True}
    pending = await run(lambda: app.acquire_token_by_device_flow(flow, **once))
    assert pending["error"] == "authorization_pending"
    fake.approve_device_code(flow["user_code"])
    result: dict[str, Any] = await run(lambda: app.acquire_token_by_device_flow(flow, **once))
    return result


class Graph:
    """A tiny Graph client: JSON in, (status, body, headers) out."""

    def __init__(self, session: aiohttp.ClientSession, fake: FakeMicrosoft, token: str) -> None:
        self.session, self.fake, self.token = session, fake, token

    async def call(self, method: str, url: str, *, json: Any = None,
                   headers: dict[str, str] | None = None,
                   params: dict[str, str] | None = None) -> tuple[int, Any, Any]:
        url = url if url.startswith("http") else self.fake.graph_url + url
        all_headers = {"Authorization": f"Bearer {self.token}", **(headers or {})}
        async with self.session.request(method, url, json=json, headers=all_headers,
                                        params=params) as response:
            body = await response.json() if response.content_length != 0 and \
                response.content_type == "application/json" else None
            return response.status, body, response.headers

    async def delta_round(self, url: str, *, params: dict[str, str] | None = None,
                          headers: dict[str, str] | None = None,
                          ) -> tuple[list[list[dict[str, Any]]], str]:
        """Every page of a delta round: the pages' items and the final deltaLink."""
        pages = []
        while True:
            status, body, _ = await self.call("GET", url, params=params, headers=headers)
            assert status == 200, body
            pages.append(body["value"])
            params = None
            if "@odata.deltaLink" in body:
                assert "@odata.nextLink" not in body
                return pages, body["@odata.deltaLink"]
            url = body["@odata.nextLink"]


@pytest.fixture
async def graph(fake_microsoft: FakeMicrosoft) -> Any:
    async with aiohttp.ClientSession(trust_env=False) as session:
        yield Graph(session, fake_microsoft, fake_microsoft.access_token)


# -- identity, with the real msal ---------------------------------------------


async def test_device_code_sign_in(fake_microsoft: FakeMicrosoft) -> None:
    app = await run(lambda: public_app(fake_microsoft))
    flow = await run(lambda: app.initiate_device_flow(scopes=[CAL_RW]))
    assert flow["verification_uri"] == "https://microsoft.com/devicelogin"
    assert flow["user_code"] in flow["message"]
    once = {"exit_condition": lambda flow: True}
    pending = await run(lambda: app.acquire_token_by_device_flow(flow, **once))
    assert pending["error"] == "authorization_pending" and 70016 in pending["error_codes"]
    fake_microsoft.approve_device_code(flow["user_code"])
    result = await run(lambda: app.acquire_token_by_device_flow(flow, **once))
    assert result["token_type"] == "Bearer" and result["access_token"]
    claims = result["id_token_claims"]
    assert claims["preferred_username"] == fake_microsoft.user_principal_name
    assert claims["oid"] == fake_microsoft.user_id and claims["tid"] == fake_microsoft.tenant
    accounts = await run(app.get_accounts)
    assert [a["username"] for a in accounts] == [fake_microsoft.user_principal_name]
    assert accounts[0]["home_account_id"] == f"{fake_microsoft.user_id}.{fake_microsoft.tenant}"
    assert CAL_RW in fake_microsoft.requested_scopes[0]
    again = await run(lambda: app.acquire_token_by_device_flow(flow, **once))
    assert again["error"] == "invalid_grant"  # a device code is redeemed once


async def test_device_code_polling_waits_for_the_user(fake_microsoft: FakeMicrosoft) -> None:
    app = await run(lambda: public_app(fake_microsoft))
    flow = await run(lambda: app.initiate_device_flow(scopes=[CAL_RW]))
    polling = asyncio.ensure_future(run(lambda: app.acquire_token_by_device_flow(flow)))
    for _ in range(250):  # until msal's first poll has been answered "pending"
        if any(r.get("device_code") for r in fake_microsoft.token_requests):
            break
        await asyncio.sleep(0.02)
    fake_microsoft.approve_device_code()
    result = await asyncio.wait_for(polling, 10)
    assert "access_token" in result
    polls = [r for r in fake_microsoft.token_requests if r.get("device_code")]
    assert len(polls) >= 2


async def test_declined_sign_in(fake_microsoft: FakeMicrosoft) -> None:
    app = await run(lambda: public_app(fake_microsoft))
    flow = await run(lambda: app.initiate_device_flow(scopes=[CAL_RW]))
    fake_microsoft.decline_device_code(flow["user_code"])
    result = await run(lambda: app.acquire_token_by_device_flow(flow))
    assert result["error"] == "authorization_declined"


async def test_token_cache_round_trip_and_silent(fake_microsoft: FakeMicrosoft,
                                                 graph: Graph) -> None:
    cache = msal.SerializableTokenCache()
    app = await run(lambda: public_app(fake_microsoft, cache))
    first = await sign_in(fake_microsoft, app, [CAL_RW])
    assert cache.has_state_changed
    saved = cache.serialize()

    restored = msal.SerializableTokenCache()
    restored.deserialize(saved)
    app2 = await run(lambda: public_app(fake_microsoft, restored))
    account = (await run(app2.get_accounts))[0]
    posts = len(fake_microsoft.token_requests)
    cached = await run(lambda: app2.acquire_token_silent([CAL_RW], account=account))
    assert cached["access_token"] == first["access_token"]
    assert len(fake_microsoft.token_requests) == posts  # served from the cache

    fresh = await run(lambda: app2.acquire_token_silent([CAL_RW], account=account,
                                                        force_refresh=True))
    assert fresh["access_token"] != first["access_token"]
    assert fake_microsoft.token_requests[-1]["grant_type"] == "refresh_token"
    graph.token = fresh["access_token"]
    status, body, _ = await graph.call("GET", "/me/calendars")
    assert status == 200 and body["value"][0]["id"] == "cal-default"


async def test_revoked_refresh_token(fake_microsoft: FakeMicrosoft, graph: Graph) -> None:
    app = await run(lambda: public_app(fake_microsoft))
    signed = await sign_in(fake_microsoft, app, [CAL_RW])
    account = (await run(app.get_accounts))[0]
    fake_microsoft.revoke_refresh_tokens()
    result = await run(lambda: app.acquire_token_silent_with_error(
        [CAL_RW], account=account, force_refresh=True))
    assert result["error"] == "invalid_grant" and 50173 in result["error_codes"]
    assert result["error_description"].startswith("AADSTS50173:")
    graph.token = signed["access_token"]
    status, body, headers = await graph.call("GET", "/me/calendars")
    assert status == 401 and body["error"]["code"] == "InvalidAuthenticationToken"
    assert headers["WWW-Authenticate"].startswith("Bearer")


async def test_expired_access_token_refreshes(fake_microsoft: FakeMicrosoft,
                                              graph: Graph) -> None:
    app = await run(lambda: public_app(fake_microsoft))
    signed = await sign_in(fake_microsoft, app, [CAL_RW])
    fake_microsoft.expire_access_tokens()
    graph.token = signed["access_token"]
    status, body, _ = await graph.call("GET", "/me/calendars")
    assert status == 401 and "expired" in body["error"]["message"]
    account = (await run(app.get_accounts))[0]
    fresh = await run(lambda: app.acquire_token_silent([CAL_RW], account=account,
                                                       force_refresh=True))
    graph.token = fresh["access_token"]
    assert (await graph.call("GET", "/me/calendars"))[0] == 200


async def test_client_credentials(fake_microsoft: FakeMicrosoft, graph: Graph) -> None:
    def confidential(secret: str) -> Any:
        return msal.ConfidentialClientApplication(
            fake_microsoft.client_id, client_credential=secret,
            authority=f"https://login.microsoftonline.com/{fake_microsoft.tenant}",
            instance_discovery=False, http_client=fake_microsoft.http_client())

    app = await run(lambda: confidential(fake_microsoft.client_secret))
    result = await run(lambda: app.acquire_token_for_client(
        ["https://graph.microsoft.com/.default"]))
    assert result["token_type"] == "Bearer"
    graph.token = result["access_token"]
    status, body, _ = await graph.call(
        "GET", f"/users/{fake_microsoft.user_principal_name}/calendars")
    assert status == 200 and body["value"]
    status, body, _ = await graph.call("GET", "/me/calendars")
    assert status == 400 and "delegated" in body["error"]["message"]
    status, body, _ = await graph.call("GET", "/users/someone@else.example/calendars")
    assert status == 404 and body["error"]["code"] == "ErrorInvalidUser"

    wrong = await run(lambda: confidential("not-the-secret"))
    refused = await run(lambda: wrong.acquire_token_for_client(
        ["https://graph.microsoft.com/.default"]))
    assert refused["error"] == "invalid_client"


async def test_read_scope_cannot_write(fake_microsoft: FakeMicrosoft, graph: Graph) -> None:
    app = await run(lambda: public_app(fake_microsoft))
    signed = await sign_in(fake_microsoft, app, [CAL_R])
    graph.token = signed["access_token"]
    status, _, _ = await graph.call("GET", "/me/calendarView/delta", params=WINDOW)
    assert status == 200
    event = timed("x", "2026-11-26T09:00:00", "2026-11-26T10:00:00")
    status, body, _ = await graph.call("POST", "/me/events", json=event)
    assert status == 403 and body["error"]["code"] == "ErrorAccessDenied"


async def test_graph_requires_a_token(fake_microsoft: FakeMicrosoft, graph: Graph) -> None:
    graph.token = ""
    status, body, _ = await graph.call("GET", "/me/calendars")
    assert status == 401 and body["error"]["code"] == "InvalidAuthenticationToken"
    graph.token = "made-up"
    assert (await graph.call("GET", "/me/calendars"))[0] == 401
    assert fake_microsoft.requests[-1] == ("GET", "/v1.0/me/calendars", {})


# -- Graph: calendars and delta -----------------------------------------------


async def test_calendar_list(fake_microsoft: FakeMicrosoft, graph: Graph) -> None:
    fake_microsoft.add_calendar("cal-team", "Team")
    status, body, _ = await graph.call("GET", "/me/calendars")
    assert status == 200
    by_id = {c["id"]: c for c in body["value"]}
    assert by_id["cal-default"]["isDefaultCalendar"] is True
    assert by_id["cal-default"]["name"] == "Calendar" and by_id["cal-team"]["canEdit"] is True
    assert by_id["cal-team"]["isDefaultCalendar"] is False


async def test_delta_pages_and_increments(fake_microsoft: FakeMicrosoft, graph: Graph) -> None:
    for n in range(5):
        fake_microsoft.put_event(timed(f"ev{n}", f"2026-11-2{4 + n // 2}T0{n}:00:00",
                                       f"2026-11-2{4 + n // 2}T0{n}:30:00"))
    fake_microsoft.put_event(timed("outside", "2026-12-05T09:00:00", "2026-12-05T10:00:00"))

    pages, delta_link = await graph.delta_round("/me/calendarView/delta", params=WINDOW)
    assert [len(p) for p in pages] == [2, 2, 1]  # default page size 2
    first = [e["id"] for p in pages for e in p]
    assert first == [f"ev{n}" for n in range(5)]
    assert delta_link.startswith(f"{fake_microsoft.graph_url}/me/calendarView/delta?$deltatoken=")
    event = pages[0][0]
    assert event["start"] == {"dateTime": "2026-11-24T00:00:00.0000000", "timeZone": "UTC"}
    assert event["@odata.type"] == "#microsoft.graph.event"
    assert event["@odata.etag"] == f'W/"{event["changeKey"]}"'
    assert event["showAs"] == "busy" and event["type"] == "singleInstance"
    skip_urls = [p for m, p, q in fake_microsoft.requests if "$skiptoken" in q]
    assert skip_urls == ["/v1.0/me/calendarView/delta"] * 2

    fake_microsoft.put_event(timed("ev1", "2026-11-24T01:00:00", "2026-11-24T03:00:00",
                                   showAs="tentative"))
    fake_microsoft.delete_event("ev2")
    fake_microsoft.put_event(timed("ev3", "2026-12-10T09:00:00", "2026-12-10T10:00:00"))
    fake_microsoft.put_event(timed("new", "2026-11-27T09:00:00", "2026-11-27T10:00:00"))
    fake_microsoft.put_event(timed("late", "2026-12-11T09:00:00", "2026-12-11T10:00:00"))
    pages, delta_link2 = await graph.delta_round(delta_link)
    changes = {e["id"]: e for p in pages for e in p}
    assert set(changes) == {"ev1", "ev2", "ev3", "new"}
    assert changes["ev1"]["showAs"] == "tentative"
    assert changes["ev2"] == {"@odata.type": "#microsoft.graph.event", "id": "ev2",
                              "@removed": {"reason": "deleted"}}
    assert changes["ev3"]["@removed"] == {"reason": "deleted"}  # left the window
    assert "@removed" not in changes["new"]

    pages, _ = await graph.delta_round(delta_link2)
    assert pages == [[]]
    again, _ = await graph.delta_round(delta_link)  # an old deltaLink still answers
    assert {e["id"] for p in again for e in p} == set(changes)


async def test_delta_preferences(fake_microsoft: FakeMicrosoft, graph: Graph) -> None:
    for n in range(3):
        fake_microsoft.put_event(timed(f"ev{n}", f"2026-11-2{4 + n}T09:00:00",
                                       f"2026-11-2{4 + n}T10:00:00"))
    fake_microsoft.put_event({"id": "day", "subject": "Holiday", "isAllDay": True,
                              "start": {"dateTime": "2026-11-26T00:00:00",
                                        "timeZone": "Europe/Berlin"},
                              "end": {"dateTime": "2026-11-27T00:00:00",
                                      "timeZone": "Europe/Berlin"}})
    prefer = 'odata.maxpagesize=10, outlook.timezone="Pacific Standard Time"'
    status, body, headers = await graph.call("GET", "/me/calendarView/delta", params=WINDOW,
                                             headers={"Prefer": prefer})
    assert status == 200 and len(body["value"]) == 4 and "@odata.deltaLink" in body
    assert 'outlook.timezone="Pacific Standard Time"' in headers["Preference-Applied"]
    by_id = {e["id"]: e for e in body["value"]}
    assert by_id["ev0"]["start"] == {"dateTime": "2026-11-24T01:00:00.0000000",
                                     "timeZone": "Pacific Standard Time"}
    assert by_id["day"]["start"]["dateTime"] == "2026-11-26T00:00:00.0000000"


async def test_delta_per_calendar_and_user_paths(fake_microsoft: FakeMicrosoft,
                                                 graph: Graph) -> None:
    fake_microsoft.add_calendar("cal-team", "Team")
    fake_microsoft.put_event(timed("mine", "2026-11-24T09:00:00", "2026-11-24T10:00:00"))
    fake_microsoft.put_event(timed("team", "2026-11-24T09:00:00", "2026-11-24T10:00:00"),
                             "cal-team")
    upn = fake_microsoft.user_principal_name
    pages, _ = await graph.delta_round(f"/users/{upn}/calendars/cal-team/calendarView/delta",
                                       params=WINDOW)
    assert [e["id"] for p in pages for e in p] == ["team"]
    pages, _ = await graph.delta_round(f"/users/{fake_microsoft.user_id}/calendarView/delta",
                                       params=WINDOW)
    assert [e["id"] for p in pages for e in p] == ["mine"]
    assert {e["id"] for e in fake_microsoft.events("cal-team")} == {"team"}


async def test_delta_needs_a_window(graph: Graph) -> None:
    status, body, _ = await graph.call("GET", "/me/calendarView/delta")
    assert status == 400 and "StartDateTime" in body["error"]["message"]


async def test_expired_delta_token_is_gone(fake_microsoft: FakeMicrosoft, graph: Graph) -> None:
    for n in range(3):
        fake_microsoft.put_event(timed(f"ev{n}", f"2026-11-2{4 + n}T09:00:00",
                                       f"2026-11-2{4 + n}T10:00:00"))
    status, body, _ = await graph.call("GET", "/me/calendarView/delta", params=WINDOW)
    next_link = body["@odata.nextLink"]
    _, delta_link = await graph.delta_round(next_link)
    fake_microsoft.expire_delta_tokens()
    for link in (delta_link, next_link):
        status, body, _ = await graph.call("GET", link)
        assert status == 410 and body["error"]["code"] == "syncStateNotFound"
    pages, _ = await graph.delta_round("/me/calendarView/delta", params=WINDOW)
    assert sum(len(p) for p in pages) == 3  # a new full round works


# -- Graph: events ------------------------------------------------------------


async def test_create_dedupes_by_transaction_id_only_when_asked(fake_microsoft: FakeMicrosoft,
                                                                 graph: Graph) -> None:
    again = timed("t", "2026-11-26T07:00:00", "2026-11-26T08:00:00", transactionId="tx-0")
    del again["id"]
    for _ in range(2):  # by default, as documented: nothing promised, two events
        assert (await graph.call("POST", "/me/events", json=again))[0] == 201
    assert len(fake_microsoft.events()) == 2
    for event in fake_microsoft.events():
        fake_microsoft.delete_event(event["id"])
    fake_microsoft.dedupe_transactions = True
    hold = timed("ignored", "2026-11-26T09:00:00", "2026-11-26T10:00:00",
                 transactionId="fbproxy-hold-1", isOnlineMeeting=True,
                 onlineMeetingProvider="teamsForBusiness")
    del hold["id"]
    status, first, _ = await graph.call("POST", "/me/calendars/cal-default/events", json=hold)
    assert status == 201 and first["transactionId"] == "fbproxy-hold-1"
    assert first["onlineMeeting"]["joinUrl"].startswith(
        "https://teams.microsoft.com/l/meetup-join/")
    assert first["isOnlineMeeting"] is True and first["subject"] == "Event ignored"
    status, second, _ = await graph.call("POST", "/me/events", json=hold)
    assert status == 201 and second["id"] == first["id"]
    assert [e["id"] for e in fake_microsoft.events()] == [first["id"]]

    plain = timed("x", "2026-11-26T11:00:00", "2026-11-26T12:00:00")
    status, other, _ = await graph.call("POST", "/me/events", json=plain)
    assert status == 201 and other["id"] != "x" and other["onlineMeeting"] is None
    status, got, _ = await graph.call("GET", f"/me/events/{first['id']}")
    assert status == 200 and got["changeKey"] == first["changeKey"]


async def test_extended_properties_filter_and_expand(fake_microsoft: FakeMicrosoft,
                                                     graph: Graph) -> None:
    prop = "String {66f5a359-4659-4830-9070-00047ec6ac6e} Name Color"
    fake_microsoft.add_calendar("cal-other", "Other")
    for name, color in (("a", "Green"), ("b", "Blue")):
        body = timed(name, "2026-11-26T09:00:00", "2026-11-26T10:00:00",
                     singleValueExtendedProperties=[{"id": prop, "value": color}])
        del body["id"]
        status, created, _ = await graph.call("POST", "/me/calendars/cal-other/events"
                                              if name == "b" else "/me/events", json=body)
        assert status == 201 and "singleValueExtendedProperties" not in created
    query = {"$filter": f"singleValueExtendedProperties/Any(ep: ep/id eq '{prop}' and "
                        "ep/value eq 'blue')"}
    status, body, _ = await graph.call("GET", "/me/events", params=query)
    [found] = body["value"]  # the value compares case-insensitively, across calendars
    assert status == 200 and found["subject"] == "Event b"
    assert "singleValueExtendedProperties" not in found
    query["$expand"] = f"singleValueExtendedProperties($filter=id eq '{prop}')"
    status, body, _ = await graph.call("GET", "/me/events", params=query)
    assert body["value"][0]["singleValueExtendedProperties"] == [{"id": prop, "value": "Blue"}]
    other = query["$filter"].replace("Name Color", "Name color")  # the name is case-sensitive
    status, body, _ = await graph.call("GET", "/me/events", params={"$filter": other})
    assert status == 200 and body["value"] == []
    status, body, _ = await graph.call("GET", "/me/events", params={"$filter": "subject eq 'x'"})
    assert status == 400
    bad = timed("c", "2026-11-26T09:00:00", "2026-11-26T10:00:00",
                singleValueExtendedProperties=[{"id": "Color", "value": "x"}])
    assert (await graph.call("POST", "/me/events", json=bad))[0] == 400


async def test_a_dropped_answer_still_commits(fake_microsoft: FakeMicrosoft,
                                              graph: Graph) -> None:
    body = timed("d", "2026-11-26T09:00:00", "2026-11-26T10:00:00")
    fake_microsoft.drop_next_responses(1, "POST")
    with pytest.raises(aiohttp.ClientError):
        await graph.call("POST", "/me/events", json=body)
    assert len(fake_microsoft.events()) == 1 and fake_microsoft.dropped[0][0] == "POST"
    assert (await graph.call("POST", "/me/events", json=body))[0] == 201  # one drop only


async def test_calendar_view_lists_any_calendar_and_delta_there_can_be_off(
        fake_microsoft: FakeMicrosoft, graph: Graph) -> None:
    fake_microsoft.add_calendar("cal-team", "Team")
    for n in range(3):
        fake_microsoft.put_event(timed(f"t{n}", f"2026-11-26T0{n + 1}:00:00",
                                       f"2026-11-26T0{n + 2}:00:00"), "cal-team")
    ids, url, params = [], "/me/calendars/cal-team/calendarView", dict(WINDOW)
    while url:
        status, body, _ = await graph.call("GET", url, params=params)
        assert status == 200 and "@odata.deltaLink" not in body
        ids += [e["id"] for e in body["value"]]
        url, params = body.get("@odata.nextLink"), None
    assert ids == ["t0", "t1", "t2"]
    delta = "/me/calendars/cal-team/calendarView/delta"
    assert (await graph.call("GET", delta, params=WINDOW))[0] == 200
    fake_microsoft.delta_on_calendars = False
    status, body, _ = await graph.call("GET", delta, params=WINDOW)
    assert status == 400 and "segment 'delta'" in body["error"]["message"]
    assert (await graph.call("GET", "/me/calendarView/delta", params=WINDOW))[0] == 200
    status, _, _ = await graph.call("GET", "/me/calendars/nope/calendarView", params=WINDOW)
    assert status == 404


async def test_create_checks_the_body(graph: Graph) -> None:
    status, body, _ = await graph.call("POST", "/me/events", json={"subject": "no times"})
    assert status == 400
    bad = timed("x", "2026-11-26T11:00:00", "2026-11-26T12:00:00", showAs="away")
    status, body, _ = await graph.call("POST", "/me/events", json=bad)
    assert status == 400 and body["error"]["code"] == "RequestBodyRead"


async def test_delete_event(fake_microsoft: FakeMicrosoft, graph: Graph) -> None:
    fake_microsoft.put_event(timed("gone", "2026-11-26T09:00:00", "2026-11-26T10:00:00"))
    status, _, _ = await graph.call("DELETE", "/me/events/gone")
    assert status == 204 and fake_microsoft.events() == []
    status, body, _ = await graph.call("DELETE", "/me/events/gone")
    assert status == 404 and body["error"]["code"] == "ErrorItemNotFound"


async def test_patch_and_cancel_with_attendees(fake_microsoft: FakeMicrosoft,
                                               graph: Graph) -> None:
    guest = {"emailAddress": {"address": "sam@example.org", "name": "Sam"}}
    meeting = {k: v for k, v in timed("x", "2026-11-26T09:00:00", "2026-11-26T10:00:00")
               .items() if k != "id"}
    status, created, _ = await graph.call("POST", "/me/events", json={
        **meeting, "attendees": [guest], "isOnlineMeeting": True})
    assert status == 201 and created["attendees"][0]["type"] == "required"
    assert created["attendees"][0]["status"]["response"] == "none"
    join = created["onlineMeeting"]["joinUrl"]
    assert join in created["body"]["content"], "the meeting blob is in the body"
    _, delta_link = await graph.delta_round("/me/calendarView/delta", params=WINDOW)
    event_id = created["id"]

    moved = {"start": {"dateTime": "2026-11-27T09:00:00", "timeZone": "UTC"},
             "end": {"dateTime": "2026-11-27T10:00:00", "timeZone": "UTC"},
             "subject": "Moved", "id": "ignored"}
    status, patched, _ = await graph.call("PATCH", f"/me/events/{event_id}", json=moved)
    assert status == 200 and patched["id"] == event_id and patched["subject"] == "Moved"
    assert patched["changeKey"] != created["changeKey"]
    assert patched["attendees"] == created["attendees"]
    assert patched["onlineMeeting"] == created["onlineMeeting"]
    assert fake_microsoft.patches == [(event_id, moved)]
    pages, delta_link = await graph.delta_round(delta_link)
    [changed] = [e for p in pages for e in p]
    assert changed["start"]["dateTime"].startswith("2026-11-27T09:00:00")

    # A body without the meeting blob turns the online meeting off (event-update's note).
    status, patched, _ = await graph.call("PATCH", f"/me/events/{event_id}", json={
        "body": {"contentType": "text", "content": "new text"}})
    assert status == 200 and patched["isOnlineMeeting"] is False

    status, _, _ = await graph.call("PATCH", "/me/events/missing", json=moved)
    assert status == 404
    status, body, _ = await graph.call("PATCH", f"/me/events/{event_id}",
                                       json={"attendees": [{"emailAddress": {}}]})
    assert status == 400

    status, body, _ = await graph.call("POST", f"/me/events/{event_id}/cancel",
                                       json={"comment": "Sorry"})
    assert status == 202 and body is None
    assert fake_microsoft.events() == [] and fake_microsoft.cancels == [(event_id, "Sorry")]
    assert [m[0] for m in fake_microsoft.meeting_messages] == \
        ["request", "update", "update", "cancellation"]
    assert fake_microsoft.meeting_messages[-1] == (
        "cancellation", event_id, ("sam@example.org",), "Sorry")
    pages, _ = await graph.delta_round(delta_link)
    assert [e.get("@removed") for p in pages for e in p] == [{"reason": "deleted"}]
    status, _, _ = await graph.call("POST", f"/me/events/{event_id}/cancel", json={})
    assert status == 404

    # Only the organizer may cancel.
    fake_microsoft.put_event(timed("invited", "2026-11-26T09:00:00", "2026-11-26T10:00:00",
                                   isOrganizer=False, attendees=[guest]))
    status, body, _ = await graph.call("POST", "/me/events/invited/cancel", json={})
    assert status == 400 and "organizer" in body["error"]["message"]


async def test_throttling(fake_microsoft: FakeMicrosoft, graph: Graph) -> None:
    fake_microsoft.throttle_next(2, retry_after=3)
    for _ in range(2):
        status, body, headers = await graph.call("GET", "/me/calendars")
        assert status == 429 and headers["Retry-After"] == "3"
        assert body["error"]["code"] == "TooManyRequests"
    assert (await graph.call("GET", "/me/calendars"))[0] == 200
    fake_microsoft.throttle_next(1, status=503)
    status, body, _ = await graph.call("GET", "/me/calendars")
    assert status == 503 and body["error"]["code"] == "ServiceUnavailable"


# -- Graph: subscriptions -----------------------------------------------------


class Receiver:
    """A notification endpoint: echoes validation tokens, keeps notifications."""

    def __init__(self) -> None:
        self.notifications: list[dict[str, Any]] = []
        self.mode = "echo"  # or "wrong", "slow"

    async def handle(self, request: web.Request) -> web.Response:
        token = request.query.get("validationToken")
        if token is None:
            self.notifications.append(await request.json())
            return web.Response(status=202)
        if self.mode == "slow":
            await asyncio.sleep(1)
        if self.mode == "wrong":
            return web.Response(text="nope", content_type="text/plain")
        return web.Response(text=token, content_type="text/plain")


@pytest.fixture
async def receiver(aiohttp_server: Any) -> tuple[Receiver, str]:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/hooks/microsoft", receiver.handle)
    server = await aiohttp_server(app)
    return receiver, str(server.make_url("/hooks/microsoft"))


def subscription(url: str, minutes: int = 60, **extra: Any) -> dict[str, Any]:
    # The fake's clock is the `clock` fixture, which stands at NOW.
    expiry = (NOW + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"changeType": "created,updated,deleted", "notificationUrl": url,
            "resource": "me/events", "expirationDateTime": expiry,
            "clientState": "s3cret", **extra}


async def test_subscription_handshake_and_notify(fake_microsoft: FakeMicrosoft, graph: Graph,
                                                 receiver: tuple[Receiver, str]) -> None:
    hooks, url = receiver
    status, sub, _ = await graph.call("POST", "/subscriptions", json=subscription(url))
    assert status == 201 and sub["resource"] == "me/events"
    assert sub["id"] in fake_microsoft.subscriptions
    (validated, token, answered), = fake_microsoft.validation_requests
    assert validated == url and answered == 200 and token
    assert fake_microsoft.insecure_addresses == [url]

    fake_microsoft.put_event(timed("ev", "2026-11-26T09:00:00", "2026-11-26T10:00:00"))
    assert await fake_microsoft.notify() == [202]
    (note,), = [n["value"] for n in hooks.notifications]
    assert note["subscriptionId"] == sub["id"] and note["clientState"] == "s3cret"
    assert note["changeType"] == "updated" and note["tenantId"] == fake_microsoft.tenant
    assert note["resource"] == f"Users/{fake_microsoft.user_id}/Events/ev"
    assert note["resourceData"]["id"] == "ev"
    assert note["resourceData"]["@odata.type"] == "#Microsoft.Graph.Event"
    assert note["subscriptionExpirationDateTime"] == sub["expirationDateTime"]

    later = subscription(url, minutes=600)["expirationDateTime"]
    status, renewed, _ = await graph.call("PATCH", f"/subscriptions/{sub['id']}",
                                          json={"expirationDateTime": later})
    assert status == 200 and renewed["expirationDateTime"].startswith(later[:19])
    assert len(fake_microsoft.validation_requests) == 1  # renewal is not re-validated

    status, _, _ = await graph.call("DELETE", f"/subscriptions/{sub['id']}")
    assert status == 204 and fake_microsoft.subscriptions == {}
    assert await fake_microsoft.notify("ev") == []
    status, _, _ = await graph.call("PATCH", f"/subscriptions/{sub['id']}",
                                    json={"expirationDateTime": later})
    assert status == 404


async def test_subscription_covers_its_resource(fake_microsoft: FakeMicrosoft, graph: Graph,
                                                receiver: tuple[Receiver, str]) -> None:
    hooks, url = receiver
    fake_microsoft.add_calendar("cal-team", "Team")
    body = subscription(url, resource="me/calendars/cal-team/events", changeType="deleted")
    assert (await graph.call("POST", "/subscriptions", json=body))[0] == 201
    fake_microsoft.put_event(timed("mine", "2026-11-26T09:00:00", "2026-11-26T10:00:00"))
    fake_microsoft.put_event(timed("team", "2026-11-26T09:00:00", "2026-11-26T10:00:00"),
                             "cal-team")
    assert await fake_microsoft.notify("mine", "deleted") == []
    assert await fake_microsoft.notify("team", "updated") == []
    fake_microsoft.delete_event("team")
    assert await fake_microsoft.notify("team", "deleted") == [202]


async def test_subscription_validation_failures(fake_microsoft: FakeMicrosoft, graph: Graph,
                                                receiver: tuple[Receiver, str]) -> None:
    hooks, url = receiver
    hooks.mode = "wrong"
    status, body, _ = await graph.call("POST", "/subscriptions", json=subscription(url))
    assert status == 400 and body["error"]["code"] == "ValidationError"
    hooks.mode = "slow"
    fake_microsoft.validation_timeout = 0.2
    status, body, _ = await graph.call("POST", "/subscriptions", json=subscription(url))
    assert status == 400 and body["error"]["code"] == "ValidationError"
    hooks.mode = "echo"
    status, body, _ = await graph.call("POST", "/subscriptions",
                                       json=subscription(url, minutes=20000))
    assert status == 400 and "10080" in body["error"]["message"]
    status, body, _ = await graph.call("POST", "/subscriptions",
                                       json=subscription(url, resource="me/messages"))
    assert status == 400
    assert fake_microsoft.subscriptions == {}
