"""Feeds and the JSON API: secrets, merging, caching headers, nothing leaking."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from icalendar import Calendar

from tests.conftest import event, ics

SECRET = "s3cret-s3cret-s3cret-0001"
AUTH = {"Authorization": f"Bearer {SECRET}"}
HOSTILE_SUMMARY = (
    "Board meeting\\nATTENDEE:mailto:evil@example.org\\nX-INJECT:1 <script>alert(1)</script>"
)
WORK = ics(
    event("w1", "20261126T090000Z", "20261126T100000Z", f"SUMMARY:{HOSTILE_SUMMARY}",
          "DESCRIPTION:Salary talk with Bob", "LOCATION:Room 101",
          "ATTENDEE;CN=Bob:mailto:bob@example.org"),
    event("w2", "20261126T100000Z", "20261126T110000Z"),  # touches w1: one block
    event("w3", "20261126T130000Z", "20261126T140000Z", "STATUS:TENTATIVE"),
    event("w4", "20261126T150000Z", "20261126T160000Z", "TRANSP:TRANSPARENT"),
)
HOME = ics(
    event("h1", "20261126T103000Z", "20261126T120000Z"),  # overlaps the work block
    event("h2", "20261126T133000Z", "20261126T143000Z"),  # busy over part of tentative
)


@pytest.fixture
async def running(tmp_path: Path, make_config, serve) -> tuple[Any, Any]:
    (tmp_path / "work.ics").write_text(WORK)
    (tmp_path / "home.ics").write_text(HOME)
    config = make_config(
        [{"name": "work", "kind": "ics", "url": "work.ics"},
         {"name": "home", "kind": "ics", "url": "home.ics"}],
        [{"name": "me", "sources": ["work", "home"], "secret": SECRET},
         {"name": "home-only", "sources": ["home"], "secret": "another-secret-0000002"}])
    client, runtime = await serve(config)
    await runtime.sync.run_all_once()
    return client, runtime


async def test_busy_feed_merges_sources(running) -> None:
    client, _ = running
    response = await client.get(f"/feeds/{SECRET}/busy.ics")
    assert response.status == 200
    assert response.content_type == "text/calendar"
    calendar = Calendar.from_ical(await response.read())
    blocks = [(str(e["SUMMARY"]), e["DTSTART"].dt.isoformat(), e["DTEND"].dt.isoformat())
              for e in calendar.walk("VEVENT")]
    assert blocks == [
        ("Busy", "2026-11-26T09:00:00+00:00", "2026-11-26T12:00:00+00:00"),
        ("Tentative", "2026-11-26T13:00:00+00:00", "2026-11-26T13:30:00+00:00"),
        ("Busy", "2026-11-26T13:30:00+00:00", "2026-11-26T14:30:00+00:00"),
    ]
    uids = [str(e["UID"]) for e in calendar.walk("VEVENT")]
    assert len(set(uids)) == 3
    again = Calendar.from_ical(await (await client.get(f"/feeds/{SECRET}/busy.ics")).read())
    assert [str(e["UID"]) for e in again.walk("VEVENT")] == uids, "UIDs must be stable"


async def test_freebusy_feed_has_typed_periods(running) -> None:
    client, _ = running
    response = await client.get(f"/feeds/{SECRET}/freebusy.ics")
    assert response.status == 200
    calendar = Calendar.from_ical(await response.read())
    [freebusy] = calendar.walk("VFREEBUSY")
    periods = [(p.params["FBTYPE"], p.dt[0].isoformat(), p.dt[1].isoformat())
               for p in freebusy["FREEBUSY"]]
    assert periods == [
        ("BUSY", "2026-11-26T09:00:00+00:00", "2026-11-26T12:00:00+00:00"),
        ("BUSY-TENTATIVE", "2026-11-26T13:00:00+00:00", "2026-11-26T13:30:00+00:00"),
        ("BUSY", "2026-11-26T13:30:00+00:00", "2026-11-26T14:30:00+00:00"),
    ]


async def test_no_upstream_text_leaks_into_any_output(running) -> None:
    client, _ = running
    bodies = [
        await (await client.get(f"/feeds/{SECRET}/busy.ics")).text(),
        await (await client.get(f"/feeds/{SECRET}/freebusy.ics")).text(),
        await (await client.get("/api/v1/freebusy?calendar=me&start=2026-11-26&end=2026-11-27",
                                headers=AUTH)).text(),
    ]
    for body in bodies:
        for secret_text in ("Board", "evil", "INJECT", "script", "Salary", "Room 101", "bob",
                            "Secret meeting", "ATTENDEE"):
            assert secret_text not in body


async def test_each_calendar_sees_only_its_sources(running) -> None:
    client, _ = running
    response = await client.get("/feeds/another-secret-0000002/busy.ics")
    calendar = Calendar.from_ical(await response.read())
    assert [e["DTSTART"].dt.isoformat() for e in calendar.walk("VEVENT")] == [
        "2026-11-26T10:30:00+00:00", "2026-11-26T13:30:00+00:00"]


@pytest.mark.parametrize("path", ["busy.ics", "freebusy.ics"])
async def test_feeds_need_the_secret(running, path: str) -> None:
    client, _ = running
    for wrong in ("nope", SECRET[:-1], SECRET + "x", SECRET.upper(), "%00", "..%2f"):
        response = await client.get(f"/feeds/{wrong}/{path}")
        assert response.status == 404
        assert "BEGIN:VCALENDAR" not in await response.text()


async def test_feed_revalidation_with_etag(running) -> None:
    client, runtime = running
    first = await client.get(f"/feeds/{SECRET}/busy.ics")
    etag = first.headers["ETag"]
    assert "max-age=" in first.headers["Cache-Control"]
    assert first.headers["Last-Modified"].endswith("GMT")
    cached = await client.get(f"/feeds/{SECRET}/busy.ics", headers={"If-None-Match": etag})
    assert cached.status == 304 and await cached.read() == b""
    head = await client.head(f"/feeds/{SECRET}/busy.ics")
    assert head.status == 200 and head.headers["ETag"] == etag


async def test_api_freebusy_shape_and_clipping(running) -> None:
    client, _ = running
    response = await client.get(
        "/api/v1/freebusy?calendar=me&start=2026-11-26T10:00:00Z&end=2026-11-26T14:00:00%2B00:00",
        headers=AUTH)
    assert response.status == 200
    body = await response.json()
    assert body["calendar"] == "me"
    assert body["start"] == "2026-11-26T10:00:00Z" and body["end"] == "2026-11-26T14:00:00Z"
    assert body["busy"] == [
        {"start": "2026-11-26T10:00:00Z", "end": "2026-11-26T12:00:00Z", "status": "busy"},
        {"start": "2026-11-26T13:00:00Z", "end": "2026-11-26T13:30:00Z", "status": "tentative"},
        {"start": "2026-11-26T13:30:00Z", "end": "2026-11-26T14:00:00Z", "status": "busy"},
    ]
    names = [s["name"] for s in body["sources"]]
    assert names == ["work", "home"]
    assert all(s["last_success"] == "2026-11-25T12:00:00Z" and not s["stale"]
               for s in body["sources"])


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer wrong-secret-000000000"}, {"Authorization": SECRET},
    {"Authorization": "Basic " + SECRET}, {"Authorization": "Bearer another-secret-0000002"},
])
async def test_api_needs_the_calendars_secret(running, headers: dict[str, str]) -> None:
    client, _ = running
    response = await client.get("/api/v1/freebusy?calendar=me", headers=headers)
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "error" in await response.json()


@pytest.mark.parametrize(("query", "reason"), [
    ("start=yesterday", "ISO 8601"),
    ("start=2026-11-26T10:00:00", "time zone"),
    ("start=2026-11-27&end=2026-11-26", "after start"),
    ("start=2026-01-01&end=2028-01-01", "longer than"),
    ("start=2026-13-01", "ISO 8601"),
])
async def test_api_rejects_bad_parameters(running, query: str, reason: str) -> None:
    client, _ = running
    response = await client.get(f"/api/v1/freebusy?calendar=me&{query}", headers=AUTH)
    assert response.status == 400
    assert reason in (await response.json())["error"]


async def test_health_and_unknown_routes(running) -> None:
    client, _ = running
    assert (await (await client.get("/healthz")).json()) == {"status": "ok"}
    missing = await client.get("/api/v1/nothing")
    assert missing.status == 404 and "error" in await missing.json()


async def test_data_change_shows_in_feed_at_once(running, tmp_path: Path) -> None:
    client, runtime = running
    first = await client.get(f"/feeds/{SECRET}/busy.ics")
    etag = first.headers["ETag"]
    path = tmp_path / "home.ics"
    path.write_text(ics(event("h9", "20261127T080000Z", "20261127T090000Z")))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 5_000_000_000))
    await runtime.sync.run_all_once(["home"])
    second = await client.get(f"/feeds/{SECRET}/busy.ics", headers={"If-None-Match": etag})
    assert second.status == 200
    assert "20261127T080000Z" in await second.text()
