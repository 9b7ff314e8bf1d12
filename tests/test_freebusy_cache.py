"""Free/busy answers kept between changes (server/outputs/freebusy_cache.py): what the JSON
API and CalDAV free-busy-query send is what icalendar and json.dumps write for the data
as it is now, whoever asked before; the secret and the viewer's detail count every time."""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from server.booking.busy import merged_busy
from server.kit.clock import iso
from server.outputs.feeds import clip, render_freebusy
from server.outputs.freebusy_cache import FREEBUSY_ANSWERS
from tests.booking_world import HOSTS, build, guest
from tests.conftest import event, ics
from tests.test_shared_store import holder_of, settled, two

OWNER = "secret-of-alex-0123456789"
PARTNER = "subscriber-busy-only-0001"
SAM = "secret-of-sam-0123456789"
JSON_WINDOW = "start=2026-11-26T00:00:00Z&end=2026-11-28T00:00:00Z"
# Inside the served window (now - 1 day to now + 90 days), reaching past it, before it.
WINDOWS = [("20261126T000000Z", "20261128T000000Z"), ("20261126T093000Z", "20261127T091500Z"),
           ("20261120T000000Z", "20270601T000000Z"), ("20261001T000000Z", "20261101T000000Z")]
TENTATIVE = ("BEGIN:VEVENT\r\nUID:t1\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20261127T090000Z"
             "\r\nDTEND:20261127T100000Z\r\nSTATUS:TENTATIVE\r\nSUMMARY:Maybe\r\nEND:VEVENT\r\n")


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def free_busy_query(start: str, end: str) -> str:
    return ("<C:free-busy-query xmlns:C='urn:ietf:params:xml:ns:caldav'>"
            f"<C:time-range start='{start}' end='{end}'/></C:free-busy-query>")


async def report(client: Any, start: str, end: str, user: str = "alex",
                 password: str = OWNER) -> Any:
    return await client.request("REPORT", f"/caldav/calendars/{user}/busy/",
                                data=free_busy_query(start, end),
                                headers={**basic(user, password), "Depth": "1"})


async def report_body(client: Any, start: str, end: str) -> bytes:
    response = await report(client, start, end)
    assert response.status == 200, await response.text()
    return bytes(await response.read())


async def busy_json(client: Any, secret: str = OWNER, query: str = JSON_WINDOW) -> Any:
    response = await client.get(f"/api/v1/freebusy?{query}", headers=bearer(secret))
    assert response.status == 200, await response.text()
    return await response.json()


def ts(text: str) -> int:
    return int(datetime.strptime(text, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp())


async def expected_report(runtime: Any, start: str, end: str) -> bytes:
    """What render_freebusy, icalendar whole, writes for the store's data now."""
    calendar = runtime.config.calendar("alex")
    blocks = await merged_busy(runtime, calendar, ts(start), ts(end))
    return render_freebusy("alex", blocks, window_start=ts(start), window_end=ts(end),
                           stamp=runtime.clock.now(), refresh=None)


async def expected_busy(runtime: Any, start: str, end: str) -> list[dict[str, str]]:
    calendar = runtime.config.calendar("alex")
    blocks = await merged_busy(runtime, calendar, ts(start), ts(end))
    return [{"start": iso(b.start), "end": iso(b.end), "status": b.status}
            for b in clip(blocks, ts(start), ts(end))]


def touch(path: Path, text: str) -> None:
    path.write_text(text)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))


def with_partner(make_config: Any, sources: Any) -> Any:
    """booking_world's three calendars and page; alex has a subscriber who sees "busy"."""
    calendars = [{"name": h, "sources": [h], "secret": f"secret-of-{h}-0123456789",
                  **({"subscribers": [{"name": "partner", "detail": "busy",
                                       "secret": PARTNER}]} if h == "alex" else {})}
                 for h in HOSTS]
    page = {"slug": "intro", "title": "Intro call", "hosts": ["alex"], "duration": "30m",
            "timezone": "UTC", "minimum_notice": "1h", "max_days_ahead": 10,
            "hours": {d: ["09:00-12:00"] for d in ("mon", "tue", "wed", "thu", "fri")}}
    return make_config(sources, calendars, booking_pages=[page])


async def test_answers_are_icalendars_and_change_at_once(sources, make_config, serve, clock,
                                                         tmp_path: Path) -> None:
    client, runtime = await serve(with_partner(make_config, sources))
    await runtime.sync.run_all_once()

    async def check() -> None:
        for start, end in WINDOWS:
            assert await report_body(client, start, end) == \
                await expected_report(runtime, start, end)
            query = f"start={start[:4]}-{start[4:6]}-{start[6:8]}&end={end[:4]}-{end[4:6]}-" \
                    f"{end[6:8]}"
            answer = await busy_json(client, query=query)
            day = (f"{start[:8]}T000000Z", f"{end[:8]}T000000Z")
            assert answer["busy"] == await expected_busy(runtime, *day)

    await check()
    answers = client.app[FREEBUSY_ANSWERS]
    assert len(answers.reports) == len(WINDOWS) and len(answers.json) == len(WINDOWS)

    # A sync that changes the upstream: every answer at once.
    touch(tmp_path / "alex.ics", ics(event("a1", "20261126T090000Z", "20261126T093000Z"),
                                     event("a2", "20261127T140000Z", "20261127T150000Z")))
    await runtime.sync.run_all_once()
    await check()
    assert b"20261127T140000Z/20261127T150000Z" in await report_body(client, *WINDOWS[0])

    # A booking: the slot is busy in the next answer.
    assert (await client.post("/api/v1/pages/intro/bookings", json=guest())).status == 201
    await check()
    assert {"start": "2026-11-26T10:00:00Z", "end": "2026-11-26T10:30:00Z",
            "status": "busy"} in (await busy_json(client))["busy"]


async def test_each_answer_carries_the_moment_it_is_sent(sources, make_config, serve,
                                                         clock) -> None:
    client, runtime = await serve(with_partner(make_config, sources))
    await runtime.sync.run_all_once()
    first = await report_body(client, *WINDOWS[0])
    clock.set(clock.now() + timedelta(seconds=61, microseconds=500_000))
    second = await report_body(client, *WINDOWS[0])
    assert b"DTSTAMP:20261125T120000Z\r\n" in first
    assert b"DTSTAMP:20261125T120101Z\r\n" in second
    assert second == await expected_report(runtime, *WINDOWS[0])
    assert first.replace(b"T120000Z\r\nDTSTART", b"T120101Z\r\nDTSTART") == second
    json_first = await busy_json(client)
    clock.set(clock.now() + timedelta(seconds=5))
    json_second = await busy_json(client)
    assert json_first["generated"] == "2026-11-25T12:01:01Z"
    assert json_second["generated"] == "2026-11-25T12:01:06Z"
    assert [s["age_seconds"] + 5 for s in json_first["sources"]] == \
        [s["age_seconds"] for s in json_second["sources"]]


async def test_viewers_never_share_an_answer(sources, make_config, serve,
                                             tmp_path: Path) -> None:
    alex = tmp_path / "alex.ics"
    alex.write_text(alex.read_text().replace("END:VCALENDAR", TENTATIVE + "END:VCALENDAR"))
    client, runtime = await serve(with_partner(make_config, sources))
    await runtime.sync.run_all_once()
    for order in ([OWNER, PARTNER], [PARTNER, OWNER]):
        answers = {secret: (await busy_json(client, secret))["busy"] for secret in order}
        assert {"start": "2026-11-27T09:00:00Z", "end": "2026-11-27T10:00:00Z",
                "status": "tentative"} in answers[OWNER]
        assert {b["status"] for b in answers[PARTNER]} == {"busy"}
        assert len(answers[PARTNER]) == len(answers[OWNER])  # the tentative block, as busy
        client.app[FREEBUSY_ANSWERS].clear()

    # Another calendar's secret, a wrong one: refused, though the answer is kept.
    for secret in (SAM, "wrong-secret-0123456789"):
        response = await client.get(f"/api/v1/freebusy?calendar=alex&{JSON_WINDOW}",
                                    headers=bearer(secret))
        assert response.status == 401
    assert (await busy_json(client, SAM))["calendar"] == "sam"
    assert (await busy_json(client, SAM))["busy"] == []
    for user, password in (("alex", SAM), ("sam", OWNER), ("alex", "wrong-0123456789")):
        assert (await report(client, *WINDOWS[0], user=user, password=password)).status == 401
    sam = await client.request("REPORT", "/caldav/calendars/alex/busy/",
                               data=free_busy_query(*WINDOWS[0]),
                               headers={**basic("sam", SAM), "Depth": "1"})
    assert sam.status == 404, "sam's login sees no calendar of alex's"


async def test_a_reload_forgets_every_answer(tmp_path: Path, aiohttp_client, clock) -> None:
    from server.app import create_app
    from server.config.model import load_config
    from server.runtime import RUNTIME

    (tmp_path / "a.ics").write_text(ics(event("a", "20261126T090000Z", "20261126T100000Z")))
    (tmp_path / "b.ics").write_text(ics(event("b", "20261126T140000Z", "20261126T150000Z")))

    def write(sources: str) -> Path:
        path = tmp_path / "config.toml"
        path.write_text(f"""
[server]
database = "db/fbproxy.sqlite3"
admin_secret = "admin-admin-admin-0001"
[[sources]]
name = "a"
kind = "ics"
url = "a.ics"
[[sources]]
name = "b"
kind = "ics"
url = "b.ics"
[[calendars]]
name = "me"
sources = {sources}
secret = "owner-owner-owner-0001"
[[calendars]]
name = "other"
sources = ["b"]
secret = "another-secret-0000002"
""")
        return path

    app = create_app(load_config(write('["a"]')), clock=clock, start_sync=False)
    client = await aiohttp_client(app)
    await app[RUNTIME].sync.run_all_once()
    auth = basic("me", "owner-owner-owner-0001")
    body = free_busy_query(*WINDOWS[0])
    before = await (await client.request("REPORT", "/caldav/calendars/me/busy/", data=body,
                                          headers=auth)).read()
    json_before = (await busy_json(client, "owner-owner-owner-0001"))["busy"]
    assert b"20261126T140000Z" not in before and len(json_before) == 1

    # The calendar takes a source that synced long ago: no busy time changed in the store.
    write('["a", "b"]')
    reloaded = await client.post("/api/v1/reload",
                                 headers=bearer("admin-admin-admin-0001"))
    assert reloaded.status == 200, await reloaded.text()
    after = await (await client.request("REPORT", "/caldav/calendars/me/busy/", data=body,
                                         headers=auth)).read()
    assert b"FREEBUSY;FBTYPE=BUSY;VALUE=PERIOD:20261126T140000Z/20261126T150000Z" in after
    assert len((await busy_json(client, "owner-owner-owner-0001"))["busy"]) == 2


async def test_a_change_through_another_instance_shows_in_the_next_answer(
        postgres_url, sources, make_config, aiohttp_client, clock, tmp_path: Path) -> None:
    """PostgreSQL, two instances: the busy generation is read from the database on every
    request, so a booking or a sync made through one is in the other's next answer."""
    config = build(make_config, sources, server={"database": postgres_url, "lease_seconds": 5})
    instances = await two(config, aiohttp_client, clock)
    await settled(instances, list(HOSTS))
    holder = holder_of(instances, "alex")
    (asker, asker_runtime), (other, _) = instances[1 - holder], instances[holder]
    before = await report_body(asker, *WINDOWS[0])
    json_before = (await busy_json(asker))["busy"]
    assert before == await expected_report(asker_runtime, *WINDOWS[0])
    assert await report_body(asker, *WINDOWS[0]) == before, "kept"

    # Booked through the other instance.
    assert (await other.post("/api/v1/pages/intro/bookings", json=guest())).status == 201
    booked = await report_body(asker, *WINDOWS[0])
    assert b"20261126T100000Z/20261126T103000Z" in booked and booked != before
    assert booked == await expected_report(asker_runtime, *WINDOWS[0])
    assert (await busy_json(asker))["busy"] != json_before

    # Synced by the holder (the other instance).
    touch(tmp_path / "alex.ics", ics(event("a1", "20261126T090000Z", "20261126T093000Z"),
                                     event("a2", "20261127T140000Z", "20261127T150000Z")))
    await instances[holder][1].sync.run_all_once(["alex"])
    synced = await report_body(asker, *WINDOWS[0])
    assert b"20261127T140000Z/20261127T150000Z" in synced
    assert synced == await expected_report(asker_runtime, *WINDOWS[0])
    assert {"start": "2026-11-27T14:00:00Z", "end": "2026-11-27T15:00:00Z",
            "status": "busy"} in (await busy_json(asker))["busy"]
    for _, runtime in instances:
        await runtime.sync.stop()
