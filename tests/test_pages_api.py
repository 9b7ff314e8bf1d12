"""GET /api/v1/pages/{slug}/slots: only truly free slots, fail closed on stale data."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import event, ics

# NOW is Wednesday 2026-11-25 12:00 UTC; Thursday the 26th is the first open day.
ALEX = ics(
    event("a1", "20261126T100000Z", "20261126T110000Z"),
    event("a2", "20261127T090000Z", "20261127T093000Z", "STATUS:TENTATIVE"),
)
SAM = ics(event("s1", "20261126T090000Z", "20261126T100000Z"))
ROOM = ics(event("r1", "20261126T113000Z", "20261126T120000Z"))


def page(**extra: Any) -> dict[str, Any]:
    return {"slug": "intro", "title": "Intro call", "hosts": ["alex"], "duration": "30m",
            "timezone": "UTC", "minimum_notice": "1h", "max_days_ahead": 10,
            "hours": {day: ["09:00-12:00"] for day in ("mon", "tue", "wed", "thu", "fri")},
            **extra}


@pytest.fixture
def calendars(tmp_path: Path) -> list[dict[str, Any]]:
    for name, text in (("alex", ALEX), ("sam", SAM), ("room", ROOM)):
        (tmp_path / f"{name}.ics").write_text(text)
    return [{"name": name, "kind": "ics", "url": f"{name}.ics"} for name in ("alex", "sam", "room")]


def build(make_config: Any, sources: list[dict[str, Any]], *pages: dict[str, Any]) -> Any:
    calendars = [{"name": name, "sources": [name], "secret": f"secret-of-{name}-0123456789"}
                 for name in ("alex", "sam", "room")]
    return make_config(sources, calendars, booking_pages=list(pages))


async def slots(client: Any, query: str = "start=2026-11-26&end=2026-11-28") -> list[str]:
    response = await client.get(f"/api/v1/pages/intro/slots?{query}")
    assert response.status == 200, await response.text()
    return [s["start"][11:16] + "@" + s["start"][8:10] for s in (await response.json())["slots"]]


async def test_slots_skip_busy_and_tentative_time(calendars, make_config, serve) -> None:
    client, runtime = await serve(build(make_config, calendars, page()))
    await runtime.sync.run_all_once()
    assert await slots(client) == [
        "09:00@26", "09:30@26", "11:00@26", "11:30@26",   # 10:00-11:00 busy
        "09:30@27", "10:00@27", "10:30@27", "11:00@27", "11:30@27",  # 09:00 tentative
    ]


async def test_buffers_resources_and_collective_hosts(calendars, make_config, serve) -> None:
    config = build(make_config, calendars, page(hosts=["alex", "sam"], resources=["room"],
                                                buffer_after="15m"))
    client, runtime = await serve(config)
    await runtime.sync.run_all_once()
    # sam busy 09-10, alex 10-11, room 11:30-12; 15 minutes after each slot must be free,
    # and 15 minutes after each busy block too (alex's tentative 09:00-09:30 on the 27th).
    assert await slots(client, "start=2026-11-26&end=2026-11-27") == []
    assert (await slots(client, "start=2026-11-27&end=2026-11-28"))[:2] == ["10:00@27", "10:30@27"]


async def test_round_robin_offers_a_slot_any_host_can_take(calendars, make_config,
                                                           serve) -> None:
    client, runtime = await serve(build(make_config, calendars,
                                        page(hosts=["alex", "sam"], mode="round_robin")))
    await runtime.sync.run_all_once()
    day = await slots(client, "start=2026-11-26&end=2026-11-27")
    assert day == ["09:00@26", "09:30@26", "10:00@26", "10:30@26", "11:00@26", "11:30@26"]


async def test_a_never_synced_or_stale_host_offers_nothing(calendars, make_config,
                                                           serve, clock) -> None:
    client, runtime = await serve(build(make_config, calendars, page()))
    assert await slots(client) == [], "before the first sync nothing is known to be free"
    await runtime.sync.run_all_once()
    assert await slots(client)
    clock.set(clock.now() + timedelta(hours=1))  # past stale_after (15m), no new sync
    assert await slots(client) == []
    feed = await client.get("/feeds/secret-of-alex-0123456789/busy.ics")
    assert feed.headers["X-Fbproxy-Stale"] == "1"
    assert feed.headers["X-Fbproxy-Synced"] == "2026-11-25T12:00:00Z"
    await runtime.sync.run_all_once()  # recovered: the slots come back
    assert await slots(client)


async def test_on_stale_last_known_keeps_offering_the_last_good_data(
        calendars, make_config, serve, clock) -> None:
    sources = [{**s, "on_stale": "last_known"} for s in calendars]
    client, runtime = await serve(build(make_config, sources, page()))
    await runtime.sync.run_all_once()
    fresh = await slots(client)
    clock.set(clock.now() + timedelta(hours=1))
    assert await slots(client) == fresh, "stale, but the owner chose the last known data"
    api = await (await client.get("/api/v1/freebusy?calendar=alex", headers={
        "Authorization": "Bearer secret-of-alex-0123456789"})).json()
    assert api["stale"] is True, "and every answer still says it is stale"


async def test_guest_time_zone_changes_only_the_display(calendars, make_config, serve) -> None:
    client, runtime = await serve(build(make_config, calendars, page()))
    await runtime.sync.run_all_once()
    response = await client.get("/api/v1/pages/intro/slots?start=2026-11-26&end=2026-11-27"
                                "&tz=America/New_York")
    body = await response.json()
    first = body["slots"][0]
    assert body["timezone"] == "America/New_York"
    assert first["start"] == "2026-11-26T09:00:00Z"
    assert first["local_start"] == "2026-11-26T04:00:00-05:00"


@pytest.mark.parametrize(("query", "status", "reason"), [
    ("tz=Mars/Base", 400, "IANA"),
    ("start=tomorrow", 400, "not a date"),
    ("start=2026-11-27&end=2026-11-26", 400, "after start"),
    ("start=2026-11-26&end=2027-03-01", 400, "at most 62 days"),
    ("duration=45m", 400, "not offered"),
    ("duration=soon", 400, "not a duration"),
])
async def test_bad_parameters(calendars, make_config, serve, query: str, status: int,
                              reason: str) -> None:
    client, _ = await serve(build(make_config, calendars, page()))
    response = await client.get(f"/api/v1/pages/intro/slots?{query}")
    assert response.status == status
    assert reason in (await response.json())["error"]


async def test_unknown_page_is_404(calendars, make_config, serve) -> None:
    client, _ = await serve(build(make_config, calendars, page()))
    response = await client.get("/api/v1/pages/nope/slots")
    assert response.status == 404


async def test_time_past_the_expanded_horizon_is_never_offered(tmp_path: Path, make_config,
                                                                serve) -> None:
    """Recurrences are expanded server.horizon_days ahead; a page reaching that far must
    not offer what lies beyond as free (it would be the daily stand-up, unexpanded)."""
    (tmp_path / "daily.ics").write_text(ics(event(
        "standup", "20261126T100000Z", "20261126T110000Z", "RRULE:FREQ=DAILY")))
    config = make_config(
        [{"name": "daily", "kind": "ics", "url": "daily.ics"}],
        [{"name": "alex", "sources": ["daily"], "secret": "secret-of-alex-0123456789"}],
        horizon_days=10, booking_pages=[page(
            max_days_ahead=10, minimum_notice="0s",
            hours={day: ["00:00-24:00"] for day in
                   ("mon", "tue", "wed", "thu", "fri", "sat", "sun")})])
    client, runtime = await serve(config)
    await runtime.sync.run_all_once()
    last_day = await slots(client, "start=2026-12-05&end=2026-12-06")
    # Known until 12:00 on the 5th (now + 10 days): the stand-up at 10:00 is busy,
    # everything from 12:00 on is unknown, so busy.
    assert last_day[0] == "00:00@05" and "10:00@05" not in last_day
    assert last_day[-1] == "11:30@05"
    response = await client.post("/api/v1/pages/intro/bookings", json={
        "start": "2026-12-05T13:00:00Z", "name": "Sam", "email": "sam@example.org"})
    assert response.status == 409
