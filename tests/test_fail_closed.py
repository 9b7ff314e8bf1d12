"""Outputs fail closed (invariant 7): a calendar with a source that never synced, or with
``stale_policy = "fail"`` a stale one, answers 503 with Retry-After on every output that
shows its busy time, after the secret was checked; never an empty calendar."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import caldav
import pytest
from caldav.lib import error as dav_error

from server.config.model import parse_config
from server.errors import ConfigError
from server.kit.clock import FixedClock
from tests.conftest import NOW, event, ics
from tests.test_caldav_endpoint import run_vdirsyncer, vdirsyncer_config

SECRET = "s3cret-s3cret-s3cret-0001"
SUBSCRIBER = "subscriber-busy-only-0001"
BEARER = {"Authorization": f"Bearer {SECRET}"}
HOME = "/caldav/calendars/me/"
COLLECTION = f"{HOME}busy/"
WORK = ics(event("w1", "20261126T090000Z", "20261126T100000Z"),
           event("w2", "20261127T090000Z", "20261127T093000Z", "STATUS:TENTATIVE"))
DAV_NS = 'xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav" ' \
    'xmlns:CS="http://calendarserver.org/ns/"'


def basic(password: str = SECRET, user: str = "me") -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def propfind(*props: str) -> str:
    inner = "".join(f"<{p}/>" for p in props)
    return f'<?xml version="1.0"?><D:propfind {DAV_NS}><D:prop>{inner}</D:prop></D:propfind>'


ALLPROP = f'<?xml version="1.0"?><D:propfind {DAV_NS}><D:allprop/></D:propfind>'
PROPNAME = f'<?xml version="1.0"?><D:propfind {DAV_NS}><D:propname/></D:propfind>'
QUERY = (f'<?xml version="1.0"?><C:calendar-query {DAV_NS}><D:prop><D:getetag/></D:prop>'
         '<C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT"/>'
         "</C:comp-filter></C:filter></C:calendar-query>")
MULTIGET = (f'<?xml version="1.0"?><C:calendar-multiget {DAV_NS}><D:prop><D:getetag/>'
            f"</D:prop><D:href>{COLLECTION}x.ics</D:href></C:calendar-multiget>")
SYNC = (f'<?xml version="1.0"?><D:sync-collection {DAV_NS}><D:sync-token/>'
        "<D:sync-level>1</D:sync-level><D:prop><D:getetag/></D:prop></D:sync-collection>")
FREEBUSY = (f'<?xml version="1.0"?><C:free-busy-query {DAV_NS}><C:time-range '
            'start="20261126T000000Z" end="20261128T000000Z"/></C:free-busy-query>')

# (what, method, path, headers, body, depth): everything that shows the busy time.
BUSY_REQUESTS: list[tuple[str, str, str, dict[str, str], str, str]] = [
    ("busy.ics", "GET", f"/feeds/{SECRET}/busy.ics", {}, "", ""),
    ("busy.ics HEAD", "HEAD", f"/feeds/{SECRET}/busy.ics", {}, "", ""),
    ("freebusy.ics", "GET", f"/feeds/{SECRET}/freebusy.ics", {}, "", ""),
    ("subscriber's busy.ics", "GET", f"/feeds/{SUBSCRIBER}/busy.ics", {}, "", ""),
    ("API freebusy", "GET", "/api/v1/freebusy?calendar=me", BEARER, "", ""),
    ("API freebusy, window", "GET", "/api/v1/freebusy?start=2026-11-26&end=2026-11-28",
     BEARER, "", ""),
    ("CalDAV GET member", "GET", f"{COLLECTION}x.ics", basic(), "", ""),
    ("CalDAV PROPFIND getctag", "PROPFIND", COLLECTION, basic(), propfind("CS:getctag"), "0"),
    ("CalDAV PROPFIND sync-token", "PROPFIND", COLLECTION, basic(),
     propfind("D:displayname", "D:sync-token"), "0"),
    ("CalDAV PROPFIND getetag", "PROPFIND", COLLECTION, basic(), propfind("D:getetag"), "0"),
    ("CalDAV PROPFIND allprop", "PROPFIND", COLLECTION, basic(), ALLPROP, "0"),
    ("CalDAV PROPFIND propname", "PROPFIND", COLLECTION, basic(), PROPNAME, "0"),
    ("CalDAV PROPFIND members", "PROPFIND", COLLECTION, basic(),
     propfind("D:resourcetype"), "1"),
    ("CalDAV PROPFIND member", "PROPFIND", f"{COLLECTION}x.ics", basic(),
     propfind("D:resourcetype"), "0"),
    ("CalDAV PROPFIND home getctag", "PROPFIND", HOME, basic(),
     propfind("D:resourcetype", "CS:getctag"), "1"),
    ("CalDAV calendar-query", "REPORT", COLLECTION, basic(), QUERY, "1"),
    ("CalDAV calendar-multiget", "REPORT", COLLECTION, basic(), MULTIGET, "1"),
    ("CalDAV sync-collection", "REPORT", COLLECTION, basic(), SYNC, "0"),
    ("CalDAV free-busy-query", "REPORT", COLLECTION, basic(), FREEBUSY, "1"),
]
# Discovery: what a client asks before it knows there is a calendar; no busy time in it.
DISCOVERY: list[tuple[str, str, str, dict[str, str], str, str]] = [
    ("CalDAV OPTIONS", "OPTIONS", "/caldav/", {}, "", ""),
    ("CalDAV who am I", "PROPFIND", "/caldav/", basic(),
     propfind("D:current-user-principal"), "0"),
    ("CalDAV principal", "PROPFIND", "/caldav/principals/me/", basic(),
     propfind("C:calendar-home-set", "D:displayname"), "0"),
    ("CalDAV home listing", "PROPFIND", HOME, basic(),
     propfind("D:resourcetype", "D:displayname", "D:current-user-privilege-set",
              "C:supported-calendar-component-set"), "1"),
    ("CalDAV calendar itself", "PROPFIND", COLLECTION, basic(),
     propfind("D:resourcetype", "D:displayname", "C:supported-calendar-component-set"), "0"),
]

Request = Callable[[tuple[str, str, str, dict[str, str], str, str]], Awaitable[Any]]


def requester(client: Any) -> Request:
    async def send(spec: tuple[str, str, str, dict[str, str], str, str]) -> Any:
        _, method, path, headers, body, depth = spec
        extra = {"Depth": depth} if depth else {}
        return await client.request(method, path, headers={**headers, **extra},
                                    data=body or None)
    return send


@pytest.fixture
def work_file(tmp_path: Path) -> Path:
    path = tmp_path / "work.ics"
    path.write_text(WORK)
    return path


def one_calendar(make_config: Any, **calendar: Any) -> Any:
    return make_config(
        [{"name": "work", "kind": "ics", "url": "work.ics"}],
        [{"name": "me", "sources": ["work"], "secret": SECRET,
          "subscribers": [{"name": "partner", "secret": SUBSCRIBER, "detail": "busy"}],
          **calendar}])


async def assert_unserved(send: Request, *, retry_after: str, why: str) -> None:
    for spec in BUSY_REQUESTS:
        response = await send(spec)
        assert response.status == 503, (spec[0], response.status, await response.text())
        assert response.headers["Retry-After"] == retry_after, spec[0]
        if spec[1] != "HEAD":
            assert why in await response.text(), spec[0]
    for spec in DISCOVERY:
        response = await send(spec)
        assert response.status in (200, 207), (spec[0], response.status)


async def assert_served(send: Request) -> None:
    for spec in [*BUSY_REQUESTS, *DISCOVERY]:
        response = await send(spec)
        wanted = (404,) if spec[0] in ("CalDAV GET member", "CalDAV PROPFIND member") \
            else (200, 207)
        assert response.status in wanted, (spec[0], response.status, await response.text())


async def test_never_synced_calendar_is_503_everywhere_then_200_after_a_sync(
        work_file, make_config, serve) -> None:
    client, runtime = await serve(one_calendar(make_config))
    send = requester(client)
    # No round yet (the server just started): the first round is due at once.
    await assert_unserved(send, retry_after="10", why="source 'work' has never synced")
    api = await client.get("/api/v1/freebusy?calendar=me", headers=BEARER)
    assert (await api.json())["status"] == 503

    assert all(o.ok for o in await runtime.sync.run_all_once())
    await assert_served(send)
    feed = await client.get(f"/feeds/{SECRET}/busy.ics")
    assert b"BEGIN:VEVENT" in await feed.read()
    assert feed.headers["X-Fbproxy-Synced"] == "2026-11-25T12:00:00Z"
    assert feed.headers["X-Fbproxy-Stale"] == "0"


async def test_a_failing_first_sync_names_the_source_and_when_to_come_back(
        tmp_path, make_config, serve, clock: FixedClock) -> None:
    """A mistyped path: 503 until it is fixed; Retry-After follows the sync's backoff."""
    client, runtime = await serve(one_calendar(make_config))  # work.ics does not exist
    [outcome] = await runtime.sync.run_all_once()
    assert not outcome.ok
    # Failed once at NOW: the next round is 30 s (+20% jitter at most) later.
    why = "source 'work' has never synced (1 failed attempt(s) in a row)"
    await assert_unserved(requester(client), retry_after="36", why=why)
    clock.set(NOW + timedelta(seconds=30))
    response = await client.get(f"/feeds/{SECRET}/busy.ics")
    assert response.headers["Retry-After"] == "10"  # overdue or under way: the minimum
    await runtime.sync.run_all_once()
    await runtime.sync.run_all_once()
    response = await client.get(f"/feeds/{SECRET}/busy.ics")
    assert response.headers["Retry-After"] == "144"  # 3 failures at +30 s: 120 s (+20%) later

    (tmp_path / "work.ics").write_text(WORK)
    assert all(o.ok for o in await runtime.sync.run_all_once())
    await assert_served(requester(client))


async def test_an_html_login_page_at_start_leaks_nothing_into_the_503(
        tmp_path, make_config, serve) -> None:
    (tmp_path / "work.ics").write_text("<html><title>Sign in to Example Corp</title></html>")
    client, runtime = await serve(one_calendar(make_config))
    [outcome] = await runtime.sync.run_all_once()
    assert not outcome.ok and outcome.error and "HTML" in outcome.error
    for spec in BUSY_REQUESTS:
        response = await requester(client)(spec)
        assert response.status == 503
        assert "Example Corp" not in await response.text()


async def test_one_source_never_synced_is_enough(work_file, make_config, serve) -> None:
    config = make_config(
        [{"name": "work", "kind": "ics", "url": "work.ics"},
         {"name": "typo", "kind": "ics", "url": "wrok.ics"}],
        [{"name": "me", "sources": ["work", "typo"], "secret": SECRET},
         {"name": "work-only", "sources": ["work"], "secret": "owner-owner-owner-0001"}])
    client, runtime = await serve(config)
    outcomes = {o.source: o.ok for o in await runtime.sync.run_all_once()}
    assert outcomes == {"work": True, "typo": False}
    response = await client.get(f"/feeds/{SECRET}/busy.ics")
    assert response.status == 503
    text = await response.text()
    assert "'typo' has never synced" in text and "'work'" not in text
    api = await client.get("/api/v1/freebusy?calendar=me", headers=BEARER)
    assert api.status == 503 and "'typo'" in (await api.json())["error"]
    # The same synced source in another calendar serves as usual.
    other = await client.get("/feeds/owner-owner-owner-0001/busy.ics")
    assert other.status == 200 and b"BEGIN:VEVENT" in await other.read()


async def test_a_wrong_secret_is_still_404_or_401(make_config, serve) -> None:
    client, _ = await serve(one_calendar(make_config))  # never synced
    assert (await client.get("/feeds/not-the-secret-000001/busy.ics")).status == 404
    assert (await client.get("/feeds/not-the-secret-000001/freebusy.ics")).status == 404
    wrong_api = await client.get("/api/v1/freebusy?calendar=me",
                                 headers={"Authorization": "Bearer not-the-secret-000001"})
    assert wrong_api.status == 401
    other_calendar = await client.get("/api/v1/freebusy?calendar=someone", headers=BEARER)
    assert other_calendar.status == 401
    assert (await client.get("/api/v1/freebusy?calendar=me")).status == 401
    for method, body in (("PROPFIND", propfind("CS:getctag")), ("REPORT", SYNC),
                         ("GET", "")):
        path = COLLECTION if method != "GET" else f"{COLLECTION}x.ics"
        for headers in ({}, basic("not-the-secret-000001"), basic(user="someone")):
            response = await client.request(method, path, headers=headers, data=body or None)
            assert response.status == 401, (method, headers)
            assert "never synced" not in await response.text()


async def test_stale_policy_fail_refuses_a_stale_calendar_and_serve_flags_it(
        work_file, make_config, serve, clock: FixedClock) -> None:
    client, runtime = await serve(make_config(
        [{"name": "work", "kind": "ics", "url": "work.ics"}],
        [{"name": "me", "sources": ["work"], "secret": SECRET, "stale_policy": "fail",
          "subscribers": [{"name": "partner", "secret": SUBSCRIBER}]},
         {"name": "lenient", "sources": ["work"], "secret": "owner-owner-owner-0001"}]))
    assert all(o.ok for o in await runtime.sync.run_all_once())
    fresh = await client.get(f"/feeds/{SECRET}/busy.ics")
    assert fresh.status == 200 and fresh.headers["X-Fbproxy-Stale"] == "0"
    etag = fresh.headers["ETag"]
    token = await _sync_token(client)

    # stale_after defaults to 15 minutes (3 x the 5 minute poll).
    clock.set(NOW + timedelta(minutes=16))
    why = "source 'work' last synced 16m ago, past its stale_after of 15m"
    await assert_unserved(requester(client), retry_after="10", why=why)
    # Not even a 304 for the copy the client already has: that would also say "still true".
    cached = await client.get(f"/feeds/{SECRET}/busy.ics", headers={"If-None-Match": etag})
    assert cached.status == 503

    lenient = await client.get("/feeds/owner-owner-owner-0001/busy.ics")
    assert lenient.status == 200 and lenient.headers["X-Fbproxy-Stale"] == "1"
    assert lenient.headers["X-Fbproxy-Synced"] == "2026-11-25T12:00:00Z"
    api = await client.get("/api/v1/freebusy?calendar=lenient",
                           headers={"Authorization": "Bearer owner-owner-owner-0001"})
    assert api.status == 200 and (await api.json())["stale"] is True

    # It syncs again: served, and a CalDAV client's token from before still works.
    assert all(o.ok for o in await runtime.sync.run_all_once())
    await assert_served(requester(client))
    again = await client.request("REPORT", COLLECTION, headers={**basic(), "Depth": "0"},
                                 data=SYNC.replace("<D:sync-token/>",
                                                   f"<D:sync-token>{token}</D:sync-token>"))
    assert again.status == 207


async def _sync_token(client: Any) -> str:
    response = await client.request("PROPFIND", COLLECTION, data=propfind("D:sync-token"),
                                    headers={**basic(), "Depth": "0"})
    assert response.status == 207
    return (await response.text()).split("sync-token>")[1].split("<")[0]


async def test_the_caldav_library_gets_an_error_not_an_empty_calendar(
        work_file, make_config, serve) -> None:
    client, runtime = await serve(one_calendar(make_config))
    dav = caldav.DAVClient(url=str(client.make_url("/")), username="me", password=SECRET)

    def discover() -> Any:
        [calendar] = dav.principal().calendars()
        return calendar

    calendar = await asyncio.to_thread(discover)  # discovery works while not served
    attempts: dict[str, Callable[[], Any]] = {
        "events": calendar.events,
        "search": lambda: calendar.search(start=NOW, end=NOW + timedelta(days=7), event=True),
        "sync": lambda: list(calendar.objects_by_sync_token(load_objects=True)),
        "freebusy": lambda: calendar.freebusy_request(NOW, NOW + timedelta(days=7)),
    }
    for name, attempt in attempts.items():
        # caldav reads a 503 with Retry-After as "rate limited or service unavailable".
        with pytest.raises(dav_error.RateLimitError) as raised:
            await asyncio.to_thread(attempt)
        assert raised.value.retry_after == "10", name

    assert all(o.ok for o in await runtime.sync.run_all_once())
    events = await asyncio.to_thread(calendar.events)
    assert len(events) == 2


async def test_a_disabled_source_that_never_synced_waits_for_the_config(
        work_file, make_config, serve) -> None:
    client, _ = await serve(make_config(
        [{"name": "work", "kind": "ics", "url": "work.ics", "enabled": False}]))
    response = await client.get(f"/feeds/{SECRET}/busy.ics")
    assert response.status == 503 and response.headers["Retry-After"] == "3600"
    assert "'work' has never synced (it is disabled)" in await response.text()


def test_stale_policy_is_validated_naming_its_key(tmp_path: Path) -> None:
    raw = {"sources": [{"name": "work", "kind": "ics", "url": "work.ics"}],
           "calendars": [{"name": "me", "sources": ["work"], "stale_policy": "never"}]}
    with pytest.raises(ConfigError) as raised:
        parse_config(raw, base_dir=tmp_path)
    assert raised.value.problems == [
        'calendars[0].stale_policy: "never" is not valid; use "serve" or "fail"']
    raw["calendars"][0]["stale_policy"] = "fail"
    assert parse_config(raw, base_dir=tmp_path).calendars[0].stale_policy == "fail"
    del raw["calendars"][0]["stale_policy"]
    assert parse_config(raw, base_dir=tmp_path).calendars[0].stale_policy == "serve"


@pytest.mark.clock_sensitive  # vdirsyncer runs on the wall clock
async def test_vdirsyncer_keeps_its_copy_while_the_calendar_is_refused(
        work_file, make_config, serve, clock: FixedClock, tmp_path: Path) -> None:
    """An empty answer would delete every local item; a 503 must change nothing."""
    client, runtime = await serve(one_calendar(make_config, stale_policy="fail"))
    assert all(o.ok for o in await runtime.sync.run_all_once())
    config, local = vdirsyncer_config(tmp_path, client)
    assert (await run_vdirsyncer(config, "discover", stdin=b"y\n"))[0] == 0
    code, output = await run_vdirsyncer(config, "sync")
    assert code == 0 and output.count("Copying (uploading) item") == 2, output
    before = {f.name: f.read_bytes() for f in (local / "busy").glob("*.ics")}

    clock.set(NOW + timedelta(hours=1))  # past the 15 minute stale_after
    code, output = await run_vdirsyncer(config, "sync")
    assert code != 0 and "503" in output, output
    assert "Deleting" not in output
    assert {f.name: f.read_bytes() for f in (local / "busy").glob("*.ics")} == before
