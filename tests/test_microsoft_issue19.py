"""Microsoft 365 behaviours the Graph documentation settles (issue 19): all-day events,
idempotent holds by our own extended property, non-default calendars' delta path, and
403s that are not expired sign-ins. Against tests/fake_microsoft.py with the real msal."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from adapters import microsoft
from tests.conftest import NOW
from tests.fake_microsoft import FakeMicrosoft
from tests.test_microsoft_source import AUTH, raw_source, sign_in

BERLIN = ZoneInfo("Europe/Berlin")
DAY = (NOW + timedelta(days=2)).date()  # a day inside the synced window


def wall(day: Any, hour: int = 0) -> str:
    return datetime.combine(day, time(hour)).strftime("%Y-%m-%dT%H:%M:%S")


def utc(day: Any, zone: ZoneInfo) -> str:
    """Midnight of ``day`` in ``zone``, as the JSON API writes it (UTC)."""
    moment = datetime.combine(day, time(), zone).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


async def busy_blocks(client: Any) -> list[tuple[str, str, str]]:
    low, high = NOW.date(), (NOW + timedelta(days=6)).date()
    response = await client.get(f"/api/v1/freebusy?start={low}&end={high}", headers=AUTH)
    assert response.status == 200, await response.text()
    return [(b["start"], b["end"], b["status"]) for b in (await response.json())["busy"]]


@pytest.fixture
async def outlook(fake_microsoft: FakeMicrosoft, tmp_path: Path, make_config: Any,
                  serve: Any) -> Any:
    async def start(*, scopes: list[str] | None = None, pages: list[dict[str, Any]] = (),
                    **extra: Any) -> Any:
        await sign_in(fake_microsoft, tmp_path, scopes or microsoft.READ_SCOPES)
        config = make_config([raw_source(fake_microsoft, tmp_path, **extra)],
                             booking_pages=list(pages))
        return await serve(config)
    return start


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
