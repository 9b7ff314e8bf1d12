"""Microsoft 365 behaviours the Graph documentation settles (issue 19): all-day events,
idempotent holds by our own extended property, non-default calendars' delta path, and
403s that are not expired sign-ins. Against tests/fake_microsoft.py with the real msal."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from adapters import microsoft
from adapters.base import AccessDenied, AuthExpired, Hold, UpstreamUnavailable
from tests import test_microsoft_source
from tests.conftest import NOW
from tests.fake_microsoft import FakeMicrosoft
from tests.test_microsoft_source import AUTH, sign_in, teams_page

outlook = test_microsoft_source.outlook  # the same fixture: an app with one Outlook source

BERLIN = ZoneInfo("Europe/Berlin")
DAY = (NOW + timedelta(days=2)).date()  # a day inside the synced window


def wall(day: Any, hour: int = 0) -> str:
    return datetime.combine(day, time(hour)).strftime("%Y-%m-%dT%H:%M:%S")


def utc(day: Any, zone: ZoneInfo) -> str:
    """Midnight of ``day`` in ``zone``, as the JSON API writes it (UTC)."""
    moment = datetime.combine(day, time(), zone).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def hold(booking_id: str) -> Hold:
    start = datetime.combine(DAY, time(10), UTC)
    return Hold(booking_id, start, start + timedelta(minutes=30), "Intro call", NOW)


async def busy_blocks(client: Any) -> list[tuple[str, str, str]]:
    low, high = NOW.date(), (NOW + timedelta(days=6)).date()
    response = await client.get(f"/api/v1/freebusy?start={low}&end={high}", headers=AUTH)
    assert response.status == 200, await response.text()
    return [(b["start"], b["end"], b["status"]) for b in (await response.json())["busy"]]


# -- item 3: all-day events -----------------------------------------------------------


async def test_an_all_day_event_blocks_the_whole_local_day(fake_microsoft, outlook) -> None:
    """Graph answers the day's midnights labelled UTC; the day is Berlin's, not UTC's."""
    fake_microsoft.put_event({
        "id": "day-off", "subject": "Day off", "isAllDay": True, "showAs": "oof",
        "start": {"dateTime": wall(DAY), "timeZone": "W. Europe Standard Time"},
        "end": {"dateTime": wall(DAY + timedelta(days=1)), "timeZone": "W. Europe Standard Time"},
    })
    fake_microsoft.put_event({
        "id": "meeting", "subject": "Timed", "showAs": "busy",
        "start": {"dateTime": wall(DAY + timedelta(days=1), 9), "timeZone": "UTC"},
        "end": {"dateTime": wall(DAY + timedelta(days=1), 10), "timeZone": "UTC"}})
    client, runtime = await outlook(timezone="Europe/Berlin")
    [outcome] = await runtime.sync.run_all_once()
    assert outcome.ok, outcome
    # 00:00-24:00 Berlin (23:00Z-23:00Z in winter); the timed event stays in UTC.
    next_day = DAY + timedelta(days=1)
    assert await busy_blocks(client) == [
        (utc(DAY, BERLIN), utc(next_day, BERLIN), "busy"),
        (f"{next_day}T09:00:00Z", f"{next_day}T10:00:00Z", "busy")]


@pytest.fixture
async def direct(fake_microsoft: FakeMicrosoft, tmp_path: Path, clock: Any) -> Any:
    """The adapter itself, signed in with the given scopes (no server around it)."""
    sessions: list[aiohttp.ClientSession] = []

    async def build(scopes: list[str], **extra: Any) -> microsoft.MicrosoftAdapter:
        await sign_in(fake_microsoft, tmp_path, scopes)
        session = aiohttp.ClientSession(trust_env=False)
        sessions.append(session)
        settings = microsoft.MicrosoftSettings(
            tenant=fake_microsoft.tenant, client_id=fake_microsoft.client_id,
            token_cache_file=tmp_path / "o.tokens.json", graph_url=fake_microsoft.graph_url,
            login_url=fake_microsoft.login_url, **extra)
        return microsoft.MicrosoftAdapter("o", settings, session=session, executor=None,
                                          clock=clock.now)
    yield build
    for session in sessions:
        await session.close()


# -- item 6: 403 is a permission problem, 401 an expired sign-in -------------------------


async def test_a_403_names_the_missing_scope_or_blames_the_sharing(
        fake_microsoft, direct) -> None:
    writer = await direct(microsoft.READ_SCOPES)
    fake_microsoft.throttle_next(1, status=403)  # Graph refuses the calendar itself
    with pytest.raises(AccessDenied) as refused:
        await writer.sync({})
    assert "403" in str(refused.value) and "calendar 'default'" in str(refused.value)
    assert "has the Calendars.Read permission" in str(refused.value)

    await writer.sync({})  # reading works with Calendars.Read
    # A missing permission is fixed by signing in again with it: that is AuthExpired,
    # naming the permission (as Google's insufficientPermissions).
    with pytest.raises(AuthExpired) as lacking:
        await writer.write_hold(hold("b-1"))
    assert "lacks the Calendars.ReadWrite permission (it has: Calendars.Read" in \
        str(lacking.value)
    assert fake_microsoft.events() == []


async def test_a_403_with_the_scope_granted_blames_the_calendar(fake_microsoft, direct) -> None:
    fake_microsoft.add_calendar("cal-shared", "Boss", can_edit=False)
    writer = await direct(microsoft.WRITE_SCOPES, hold_calendar="cal-shared")
    with pytest.raises(AccessDenied) as caught:
        await writer.write_hold(hold("b-1"))
    assert "'cal-shared'" in str(caught.value) and "not shared with it" in str(caught.value)


async def test_an_expired_sign_in_is_still_auth_expired(fake_microsoft, direct) -> None:
    adapter = await direct(microsoft.READ_SCOPES)
    await adapter.sync({})
    fake_microsoft.revoke_refresh_tokens()
    fake_microsoft.expire_access_tokens()
    with pytest.raises(AuthExpired, match="fbproxy auth microsoft --source o"):
        await adapter.sync({})


# -- item 4: a hold is written once, by our own lookup -----------------------------------


async def test_a_hold_retried_after_a_lost_answer_leaves_one_event(fake_microsoft,
                                                                   direct) -> None:
    assert not fake_microsoft.dedupe_transactions, "Graph does not promise to dedupe"
    adapter = await direct(microsoft.WRITE_SCOPES)
    fake_microsoft.drop_next_responses(1, "POST")
    with pytest.raises(UpstreamUnavailable):
        await adapter.write_hold(hold("b-1"))
    [(method, _path)] = fake_microsoft.dropped
    assert method == "POST" and len(fake_microsoft.events()) == 1, "the create went through"
    ref = await adapter.write_hold(hold("b-1"))  # the retry
    [event] = fake_microsoft.events()
    assert ref.ref.endswith("/events/" + event["id"])
    assert event["singleValueExtendedProperties"] == [
        {"id": microsoft.BOOKING_PROPERTY, "value": "b-1"}]
    assert event["transactionId"] == "fbproxy-b-1"
    # A booking whose id differs only in case is another booking.
    await adapter.write_hold(hold("B-1"))
    assert len(fake_microsoft.events()) == 2
    await adapter.write_hold(hold("B-1"))
    assert len(fake_microsoft.events()) == 2


async def test_the_lookup_spans_calendars_and_a_deleted_hold_is_written_again(
        fake_microsoft, direct) -> None:
    fake_microsoft.add_calendar("cal-holds", "Holds")
    adapter = await direct(microsoft.WRITE_SCOPES, hold_calendar="cal-holds")
    first = await adapter.write_hold(hold("b-2"))
    assert await adapter.write_hold(hold("b-2")) == first
    assert [e["id"] for e in fake_microsoft.events("cal-holds")] == \
        [first.ref.rsplit("/", 1)[1]]
    await adapter.delete_hold(first)
    again = await adapter.write_hold(hold("b-2"))  # a new booking cycle: a new event
    assert again != first and len(fake_microsoft.events()) == 1


async def test_the_outbox_retry_after_a_lost_answer_lands_one_hold(
        fake_microsoft, outlook, clock) -> None:
    client, runtime = await outlook(scopes=microsoft.WRITE_SCOPES, pages=[teams_page()])
    await runtime.sync.run_all_once()
    start = datetime.combine(DAY, time(10), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    response = await client.post("/api/v1/pages/intro/bookings", json={
        "start": start, "name": "Sam", "email": "sam@example.org"})
    assert response.status == 201, await response.text()
    booking = await response.json()
    fake_microsoft.drop_next_responses(1, "POST")
    assert await runtime.holds.run_once() == 0, "the answer was lost: not delivered"
    assert len(fake_microsoft.events()) == 1
    clock.set(NOW + timedelta(hours=1))  # past the retry's backoff
    assert await runtime.holds.run_once() == 1
    [event] = fake_microsoft.events()
    stored = await runtime.store.booking(booking["id"])
    assert stored is not None and stored.video_link == event["onlineMeeting"]["joinUrl"]
    await runtime.sync.run_all_once()
    assert [(s, e) for s, e, _ in await busy_blocks(client)] == [
        (start, start.replace("T10:00", "T10:30"))]


# -- item 5: a non-default calendar whose delta Graph refuses ----------------------------


def timed(event_id: str, day: Any, hour: int) -> dict[str, Any]:
    return {"id": event_id, "subject": "Private", "showAs": "busy",
            "start": {"dateTime": wall(day, hour), "timeZone": "UTC"},
            "end": {"dateTime": wall(day, hour + 1), "timeZone": "UTC"}}


def hours(blocks: list[tuple[str, str, str]]) -> list[str]:
    return [start[11:16] for start, _end, _status in blocks]


async def test_a_calendar_without_delta_is_listed_in_full_each_round(
        fake_microsoft, outlook, monkeypatch, caplog) -> None:
    monkeypatch.setattr(microsoft, "PAGE_SIZE", 2)  # the listing pages too
    fake = fake_microsoft
    fake.add_calendar("cal-team", "Team")
    fake.delta_on_calendars = False
    for n in range(3):
        fake.put_event(timed(f"t{n}", DAY, 9 + 2 * n), "cal-team")
    client, runtime = await outlook(calendars=["cal-team"])
    [outcome] = await runtime.sync.run_all_once()
    assert outcome.ok, outcome
    assert hours(await busy_blocks(client)) == ["09:00", "11:00", "13:00"]
    paths = [p.rsplit("/", 2)[-2:] for _m, p, _q in fake.requests if "calendarView" in p]
    assert paths == [["calendarView", "delta"], ["cal-team", "calendarView"],
                     ["cal-team", "calendarView"]], "delta refused, then two listing pages"
    assert any("Graph refused calendarView/delta on calendar 'cal-team'" in r.getMessage()
               for r in caplog.records)

    fake.requests.clear()
    fake.delete_event("t1")
    fake.put_event(timed("t3", DAY, 15), "cal-team")
    [outcome] = await runtime.sync.run_all_once()
    assert outcome.ok, outcome
    assert not any(p.endswith("/delta") for _m, p, _q in fake.requests), \
        "within the window's day, the refused delta is not asked again"
    assert hours(await busy_blocks(client)) == ["09:00", "13:00", "15:00"], \
        "a full listing notices the deletion"


async def test_a_missing_calendar_is_named(fake_microsoft, outlook) -> None:
    fake_microsoft.delta_on_calendars = False
    _client, runtime = await outlook(calendars=["cal-gone"])
    [outcome] = await runtime.sync.run_all_once()
    assert not outcome.ok and "calendar 'cal-gone' does not exist" in str(outcome.error)


async def test_a_calendar_with_delta_keeps_using_it(fake_microsoft, outlook) -> None:
    fake_microsoft.add_calendar("cal-team", "Team")
    fake_microsoft.put_event(timed("t0", DAY, 9), "cal-team")
    client, runtime = await outlook(calendars=["cal-team"])
    for _ in range(2):
        [outcome] = await runtime.sync.run_all_once()
        assert outcome.ok, outcome
    assert all(p.endswith("/calendars/cal-team/calendarView/delta")
               for _m, p, _q in fake_microsoft.requests if "calendarView" in p)
    assert hours(await busy_blocks(client)) == ["09:00"]
