"""Out-of-range input is a 400 with a reason, never a 500: durations and dates are bounded
where they are parsed (server/kit/durations.py), and a fuzz run throws arbitrary strings and
numbers at every query parameter and JSON field of the public routes.

The fuzz run drives a real server on a loopback port from plain blocking HTTP, so that
hypothesis can shrink a failure to the smallest request that causes it.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Iterator
from datetime import timedelta
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.app import create_app
from server.config.model import parse_config
from server.kit.clock import FixedClock
from server.kit.durations import MAX_DURATION, echo, parse_duration
from server.runtime import RUNTIME
from tests.booking_world import build, guest, started
from tests.conftest import NOW, event, ics
from tests.peers import free_port

SECRET = "s3cret-s3cret-s3cret-0001"
AUTH = {"Authorization": f"Bearer {SECRET}"}


# -- the findings, one by one ----------------------------------------------

GETS = [
    ("/api/v1/pages/intro/slots?duration=999999999999d", "longer than"),
    ("/api/v1/pages/intro/slots?duration=99999999999999999999999999999999999999", "duration"),
    ("/api/v1/pages/intro/slots?start=9999-12-31", "must lie between"),
    ("/api/v1/pages/intro/slots?start=0001-01-01", "must lie between"),
    ("/api/v1/pages/intro/slots?start=2026-11-26&end=9999-12-31", "must lie between"),
    ("/book/intro?duration=99999999999999d", None),
    ("/book/intro?day=9999-12-31", None),
    ("/book/intro?month=9999-12", None),
    ("/book/intro?month=0001-01", None),
]


@pytest.mark.parametrize(("path", "reason"), GETS)
async def test_out_of_range_queries_are_refused_with_a_reason(
        sources, make_config, serve, path: str, reason: str | None) -> None:
    client, _ = await started(make_config, sources, serve)
    response = await client.get(path)
    text = await response.text()
    assert "Traceback" not in text
    if reason is None:  # the form shows a notice and the default view instead
        assert response.status == 200, text
        assert "not offered" in text or "not one we understand" in text
    else:
        assert response.status == 400, text
        assert reason in (await response.json())["error"]


BODIES = [
    (guest(duration=10000000000000), "longer than"),
    (guest(duration=-30), "negative"),
    (guest(duration="999999999999d"), "longer than"),
    (guest(start="9999-12-31T23:59:59+00:00"), "must lie between"),
    (guest(start="0001-01-01T00:00:00+00:00"), "must lie between"),
    (guest(start="2026-11-26"), "is a date"),
]


@pytest.mark.parametrize(("body", "reason"), BODIES)
async def test_out_of_range_bookings_are_refused_with_a_reason(
        sources, make_config, serve, body: dict[str, Any], reason: str) -> None:
    client, _ = await started(make_config, sources, serve)
    response = await client.post("/api/v1/pages/intro/bookings", json=body)
    assert response.status == 400, await response.text()
    assert reason in (await response.json())["error"]


@pytest.mark.parametrize("query", ["start=9999-12-31T00:00:00%2B00:00",
                                   "end=9999-12-31", "start=0001-01-01",
                                   "start=2026-12-01&end=2200-01-02"])
async def test_out_of_range_freebusy_is_refused(tmp_path: Path, make_config, serve,
                                                query: str) -> None:
    (tmp_path / "me.ics").write_text(ics(event("a", "20261126T100000Z", "20261126T110000Z")))
    client, runtime = await serve(make_config([{"name": "me", "kind": "ics", "url": "me.ics"}]))
    await runtime.sync.run_all_once()
    response = await client.get(f"/api/v1/freebusy?{query}", headers=AUTH)
    assert response.status == 400, await response.text()
    assert "must lie between" in (await response.json())["error"]


def test_durations_are_bounded_where_they_are_parsed() -> None:
    assert parse_duration("3660d") == MAX_DURATION
    for text in ("3661d", "999999999999d", "9" * 30 + "w", "1" * 40 + "s"):
        with pytest.raises(ValueError):
            parse_duration(text)


def test_echoed_input_is_short_and_never_markup() -> None:
    said = echo("<script>alert(1)</script>\r\nX-Evil: 1" + "x" * 100)
    assert "<" not in said and ">" not in said and "\n" not in said and "\r" not in said
    assert len(said) <= 44


async def test_error_messages_do_not_echo_markup(tmp_path: Path, make_config, serve) -> None:
    (tmp_path / "me.ics").write_text(ics())
    client, runtime = await serve(make_config([{"name": "me", "kind": "ics", "url": "me.ics"}]))
    await runtime.sync.run_all_once()
    hostile = quote("<img src=x onerror=alert(1)>" + "A" * 500)
    response = await client.get(f"/api/v1/freebusy?start={hostile}", headers=AUTH)
    assert response.status == 400
    error = (await response.json())["error"]
    assert "<" not in error and len(error) < 200, error


# -- fuzz: arbitrary strings and numbers at every parameter and field ---------------

class RunningServer:
    """The real app on a loopback port, run by its own event loop in a thread."""

    def __init__(self, config: Any) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._app = create_app(config, clock=FixedClock(NOW), start_sync=False)
        self._runner = web.AppRunner(self._app)
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._run(self._start())

    async def _start(self) -> None:
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        await self._app[RUNTIME].sync.run_all_once()

    def stop(self) -> None:
        self._run(self._runner.cleanup())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def _run(self, work: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(work, self._loop).result(60)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    folder = tmp_path_factory.mktemp("bounds")
    (folder / "alex.ics").write_text(ics(event("a1", "20261126T090000Z", "20261126T093000Z")))
    for host in ("sam", "kim"):
        (folder / f"{host}.ics").write_text(ics())

    def make_config(sources: list[dict[str, Any]], calendars: list[dict[str, Any]], *,
                    booking_pages: list[dict[str, Any]]) -> Any:
        return parse_config({
            "server": {"database": "db/fbproxy.sqlite3", "timezone": "UTC",
                       "rate_limit_bookings": "off", "rate_limit_failed_bookings": "off",
                       "rate_limit_pages": "off", "rate_limit_secrets": "off"},
            "sources": sources, "calendars": calendars, "booking_pages": booking_pages,
        }, base_dir=folder)

    sources = [{"name": h, "kind": "ics", "url": f"{h}.ics"} for h in ("alex", "sam", "kim")]
    running = RunningServer(build(make_config, sources))
    running.start()
    yield running
    running.stop()


# Strings that come near the parsers' edges as well as arbitrary text.
DAYS = st.dates().map(lambda d: d.isoformat())
INSTANTS = st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat())
DURATIONS = st.builds(lambda n, unit: f"{n}{unit}", st.integers(min_value=0, max_value=10**40),
                      st.sampled_from("smhdw"))
NUMBERS = st.one_of(st.integers(min_value=-(10**40), max_value=10**40),
                    st.floats(allow_nan=True, allow_infinity=True))
STRINGS = st.one_of(st.text(max_size=60), DAYS, INSTANTS, DURATIONS,
                    NUMBERS.map(str), st.sampled_from(["9999-12", "0001-01", "2026-02",
                                                       "Europe/Berlin", "../../etc"]))
JSON_VALUES = st.one_of(STRINGS, NUMBERS, st.none(), st.booleans(),
                        st.lists(st.integers(), max_size=3), st.dictionaries(
                            st.text(max_size=8), st.text(max_size=8), max_size=3))
SLOT_PARAMS = ("start", "end", "tz", "duration")
FORM_PARAMS = ("tz", "duration", "month", "day", "start")
FREEBUSY_PARAMS = ("start", "end", "calendar")
BOOKING_FIELDS = ("start", "duration", "name", "email", "answers", "timezone")
FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])


def _no_5xx(response: requests.Response) -> None:
    assert response.status_code < 500, (response.request.method, response.request.url,
                                        response.request.body, response.text[:500])
    assert "Traceback" not in response.text


def _query(values: dict[str, str]) -> str:
    return "&".join(f"{quote(k)}={quote(v)}" for k, v in values.items())


@FUZZ
@given(st.dictionaries(st.sampled_from(SLOT_PARAMS), STRINGS, min_size=1))
def test_fuzz_slots_query(server: RunningServer, params: dict[str, str]) -> None:
    _no_5xx(requests.get(f"{server.base}/api/v1/pages/intro/slots?{_query(params)}",
                         timeout=30))


@FUZZ
@given(st.dictionaries(st.sampled_from(FORM_PARAMS), STRINGS, min_size=1))
def test_fuzz_booking_form_query(server: RunningServer, params: dict[str, str]) -> None:
    _no_5xx(requests.get(f"{server.base}/book/intro?{_query(params)}", timeout=30))


@FUZZ
@given(st.dictionaries(st.sampled_from(FREEBUSY_PARAMS), STRINGS, min_size=1))
def test_fuzz_freebusy_query(server: RunningServer, params: dict[str, str]) -> None:
    _no_5xx(requests.get(f"{server.base}/api/v1/freebusy?{_query(params)}",
                         headers={"Authorization": "Bearer secret-of-alex-0123456789"},
                         timeout=30))


@FUZZ
@given(st.dictionaries(st.sampled_from(BOOKING_FIELDS), JSON_VALUES, min_size=1))
def test_fuzz_booking_json(server: RunningServer, fields: dict[str, Any]) -> None:
    body = {**guest(start="2026-11-27T11:30:00Z", name="Fuzz"), **fields}
    try:
        data = json.dumps(body)
    except ValueError:  # NaN and infinity are not JSON; send them as Python writes them
        data = json.dumps(body, allow_nan=True)
    response = requests.post(f"{server.base}/api/v1/pages/intro/bookings", data=data,
                             headers={"Content-Type": "application/json"}, timeout=30)
    _no_5xx(response)
    if response.status_code == 201:  # a valid booking: free the slot for the next example
        cancel = response.json()["cancel_url"]
        path = re.sub(r"^https?://[^/]+", "", cancel)
        _no_5xx(requests.post(f"{server.base}{path}", timeout=30))


def _hidden(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]+)"', html)
    assert found, html[:500]
    return unescape(found.group(1))


@FUZZ
@given(st.dictionaries(st.sampled_from(FORM_PARAMS + ("name", "email")), STRINGS, min_size=1))
def test_fuzz_booking_form_post(server: RunningServer, fields: dict[str, str]) -> None:
    session = requests.Session()
    page = session.get(f"{server.base}/book/intro", params={
        "tz": "UTC", "day": "2026-11-27", "start": "2026-11-27T11:30:00+00:00"}, timeout=30)
    response = session.post(f"{server.base}/book/intro",
                            data={"csrf": _hidden(page.text, "csrf"), **fields},
                            headers={"Origin": server.base}, allow_redirects=False, timeout=30)
    _no_5xx(response)
    if response.status_code == 303:  # booked: cancel, so the next example finds the slot
        path, _, query = response.headers["Location"].partition("?")
        confirm = session.get(f"{server.base}{path}/cancel?{query}", timeout=30)
        cancelled = session.post(
            f"{server.base}{path}/cancel",
            data={"csrf": _hidden(confirm.text, "csrf"),
                  "secret": _hidden(confirm.text, "secret")},
            headers={"Origin": server.base}, allow_redirects=False, timeout=30)
        assert cancelled.status_code == 303, cancelled.text[:500]


def test_the_fuzzed_page_still_books(server: RunningServer) -> None:
    """After all the fuzzing the server is whole: a valid booking still succeeds."""
    start = (NOW + timedelta(days=2)).replace(hour=10, minute=30).strftime("%Y-%m-%dT%H:%M:%SZ")
    response = requests.post(f"{server.base}/api/v1/pages/intro/bookings",
                             json=guest(start=start), timeout=30)
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("path", ["/api/v1/pages/intro/bookings", "/hooks/microsoft"])
async def test_json_nested_too_deep_is_a_400(sources, make_config, serve, path: str) -> None:
    client, _ = await started(make_config, sources, serve)
    response = await client.post(path, data="[" * 60000,
                                 headers={"Content-Type": "application/json"})
    assert response.status == 400, await response.text()
    assert "not JSON" in await response.text()
