"""A booking world shared by the booking tests: three hosts' ICS files and a page.

Registered as a pytest plugin (see conftest), so its ``sources`` fixture needs
no import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import event, ics

HOSTS = ("alex", "sam", "kim")
SLOT = "2026-11-26T10:00:00Z"  # Thursday; NOW is Wednesday 12:00 UTC


@pytest.fixture
def sources(tmp_path: Path) -> list[dict[str, Any]]:
    (tmp_path / "alex.ics").write_text(ics(event("a1", "20261126T090000Z", "20261126T093000Z")))
    for host in HOSTS[1:]:
        (tmp_path / f"{host}.ics").write_text(ics())
    return [{"name": host, "kind": "ics", "url": f"{host}.ics"} for host in HOSTS]


def build(make_config: Any, sources: list[dict[str, Any]], *,
          server: dict[str, Any] | None = None, mail: dict[str, Any] | None = None,
          alerts: list[dict[str, Any]] | None = None,
          calendars: dict[str, dict[str, Any]] | None = None, **page: Any) -> Any:
    """The world's config; ``calendars`` adds keys to a host's calendar (``avatar``)."""
    extras = calendars or {}
    tables = [{"name": h, "sources": [h], "secret": f"secret-of-{h}-0123456789",
               "email": f"{h}@hosts.example.org", **extras.get(h, {})} for h in HOSTS]
    booking_page = {
        "slug": "intro", "title": "Intro call", "hosts": ["alex"], "duration": ["30m", "60m"],
        "timezone": "UTC", "minimum_notice": "1h", "max_days_ahead": 10,
        "hours": {d: ["09:00-12:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
        "questions": [{"name": "topic", "label": "Topic", "kind": "textarea"}], **page}
    extra: dict[str, Any] = {key: value for key, value in (("mail", mail), ("alerts", alerts))
                             if value is not None}
    return make_config(sources, tables, booking_pages=[booking_page], **extra,
                       **(server or {}))


def guest(start: str = SLOT, **extra: Any) -> dict[str, Any]:
    return {"start": start, "name": "Sam Guest", "email": "sam@example.org", **extra}


async def offered(client: Any) -> list[str]:
    response = await client.get("/api/v1/pages/intro/slots?start=2026-11-26&end=2026-11-27")
    return [s["start"] for s in (await response.json())["slots"]]


async def started(make_config: Any, sources: Any, serve: Any, *,
                  server: dict[str, Any] | None = None, mail: dict[str, Any] | None = None,
                  calendars: dict[str, dict[str, Any]] | None = None, **page: Any) -> Any:
    client, runtime = await serve(build(make_config, sources, server=server, mail=mail,
                                        calendars=calendars, **page))
    await runtime.sync.run_all_once()
    return client, runtime


