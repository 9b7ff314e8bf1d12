"""Fuzzing Google, Graph and CalDAV payloads: bad data is skipped or an AdapterError.

The adapters turn each upstream event into an item and skip, with a reason,
one that raises KeyError, TypeError or ValueError. Any other exception would
fail the whole round, so hypothesis throws arbitrary JSON shapes at them.

Around the events, a whole answer (an events.list page, a Graph delta page, a
WebDAV multistatus) may be wrong too: then the round fails with an AdapterError
saying what was wrong, and never with a stray TypeError or an endless loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

import httplib2
import pytest
from caldav.response import DAVResponse
from googleapiclient.discovery import build
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from icalendar import Calendar
from lxml import etree

from adapters import caldav as caldav_adapter
from adapters import google, microsoft
from adapters.base import (
    UNREADABLE_ITEM,
    AdapterError,
    BadUpstreamData,
    ChangeSet,
    Item,
    SkippedItem,
)
from adapters.caldav import CaldavAdapter, CaldavSettings
from adapters.google import GoogleAdapter, GoogleSettings
from adapters.microsoft import MicrosoftAdapter, MicrosoftSettings
from adapters.microsoft import _item as graph_item

SKIPPED = UNREADABLE_ITEM
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) |
    st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=4),
    max_leaves=20)
TIMES = st.one_of(
    JSON,
    st.fixed_dictionaries({"dateTime": st.one_of(
        st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
        st.text(max_size=30))}, optional={"timeZone": st.one_of(
            st.text(max_size=20), st.sampled_from(["America", "Europe/", "../x", "a\x00"]))}),
    st.fixed_dictionaries({"date": st.one_of(st.dates().map(str), st.text(max_size=12))}))


def events(extra: dict[str, Any]) -> Any:
    return st.fixed_dictionaries({"id": st.text(max_size=20), "start": TIMES, "end": TIMES},
                                 optional=extra)


RECURRENCE_LINES = st.sampled_from([
    "RRULE:FREQ=WEEKLY;BYDAY=TU", "RRULE:FREQ=DAILY;UNTIL=20261231", "RRULE:FREQ=SECONDLY",
    "RRULE:FREQ=WEEKLY;UNTIL=20261231T000000Z", "RRULE:", "RRULE:FREQ=NOPE",
    "EXDATE;TZID=Europe/Berlin:20261201T100000", "EXDATE;VALUE=DATE:20261201",
    "RDATE:20261205T090000Z", "RDATE;VALUE=PERIOD:20261205T090000Z/PT1H", "EXDATE:garbage",
    "EXDATE;TZID=Nowhere/Else:20261201T100000", "X-OTHER:1", "no colon",
    "RRULE:FREQ=WEEKLY\r\nX:1"])
GOOGLE = events({"status": JSON | st.sampled_from(["confirmed", "tentative", "cancelled"]),
                 "transparency": JSON, "eventType": JSON, "attendees": JSON,
                 "extendedProperties": JSON, "etag": JSON,
                 "recurrence": st.one_of(st.lists(RECURRENCE_LINES | st.text(max_size=30),
                                                  max_size=3), JSON),
                 "recurringEventId": st.one_of(st.sampled_from(["e1", "s1"]), JSON),
                 "originalStartTime": TIMES})
GRAPH = events({"showAs": JSON | st.sampled_from(["busy", "free", "tentative", "oof"]),
                "isCancelled": JSON, "responseStatus": JSON, "type": JSON,
                "transactionId": JSON, "changeKey": JSON})


def check(item: Any) -> None:
    if item is None:
        return
    [event] = Calendar.from_ical(item.ical).walk("VEVENT")
    assert event.decoded("DTSTART") < event.decoded("DTEND")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          derandomize=True)
@given(GOOGLE)
def test_google_events_are_items_or_skipped(event: dict[str, Any]) -> None:
    adapter = GoogleAdapter("g", GoogleSettings(client_id="x", client_secret="y",
                                                token_file=Path("/nonexistent")))
    with contextlib.suppress(SKIPPED):  # what the adapter skips with a reason
        check(adapter.reader.item("primary/x", event, ZoneInfo("Europe/Berlin")))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          derandomize=True)
@given(GRAPH)
def test_graph_events_are_items_or_skipped(event: dict[str, Any]) -> None:
    with contextlib.suppress(SKIPPED):
        check(graph_item("default/x", event))


# -- whole pages and responses -----------------------------------------------------
#
# The tests above fuzz one event at a time. The ones below fuzz what surrounds
# the events: an events.list page, a Graph delta page, a WebDAV multistatus. They
# drive the adapters' real sync code with a fake upstream answering mutations of
# a valid answer. Allowed: a ChangeSet (JSON-shaped state, Item/SkippedItem
# entries) or an AdapterError; anything else escaping, or a round that keeps
# asking for pages, is a defect.

PAGE_FUZZ = settings(max_examples=300, deadline=None, derandomize=True,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
_DROP = object()  # a key the mutation removes


class Looping(Exception):  # noqa: N818 - not an error the adapters know: it must escape
    """The fake upstream was asked for more pages than any bounded round would ask."""


def mutated(valid: Mapping[str, Any], wrong: Mapping[str, st.SearchStrategy[Any]]) -> Any:
    """The valid object, each key kept, dropped or replaced; sometimes any JSON at all."""
    fields = {key: st.one_of(st.just(valid[key]) if key in valid else st.just(_DROP),
                             st.just(_DROP), wrong.get(key, JSON))
              for key in {*valid, *wrong}}
    return st.one_of(
        st.fixed_dictionaries(fields).map(
            lambda d: {k: v for k, v in d.items() if v is not _DROP}),
        JSON)


def check_changes(changes: Any) -> None:
    assert isinstance(changes, ChangeSet)
    assert all(isinstance(item, Item) for item in changes.upserted)
    assert all(isinstance(key, str) for key in changes.deleted)
    assert all(isinstance(skip, SkippedItem) for skip in changes.skipped)
    json.dumps(changes.state)  # stored as JSON


# -- Google events.list pages ------------------------------------------------------

VALID_GOOGLE = {"id": "e1", "start": {"dateTime": "2026-11-26T09:00:00Z"},
                "end": {"dateTime": "2026-11-26T10:00:00Z"}, "etag": '"1"'}
GOOGLE_PAGE = mutated(
    {"items": [VALID_GOOGLE], "nextSyncToken": "sync-2", "timeZone": "Europe/Berlin"},
    {"items": st.one_of(st.lists(GOOGLE, max_size=3), JSON),
     "nextPageToken": st.one_of(st.sampled_from(["p1", "p2", ""]), JSON),
     "nextSyncToken": st.one_of(st.text(max_size=8), JSON),
     "timeZone": st.one_of(st.sampled_from(["America", "Europe/", "../../etc/passwd", "",
                                            "a\x00b", "UTC", "/etc/localtime", "."]),
                           st.text(max_size=30), JSON)})
GOOGLE_STATE = st.one_of(
    st.just({}),
    st.just({"calendars": {"primary": {"sync_token": "sync-1", "time_zone": "UTC"}}}),
    st.fixed_dictionaries({"calendars": st.one_of(
        JSON, st.dictionaries(st.sampled_from(["primary", "other"]), JSON, max_size=2),
        st.fixed_dictionaries({"primary": st.fixed_dictionaries(
            {}, optional={"sync_token": JSON, "time_zone": JSON, "series": st.one_of(
                JSON, st.dictionaries(st.sampled_from(["e1", "s1"]), JSON, max_size=2),
                st.just({"s1": {"master": {"start": {"dateTime": "2026-11-26T09:00:00Z"},
                                           "end": {"dateTime": "2026-11-26T10:00:00Z"},
                                           "recurrence": ["RRULE:FREQ=DAILY"]},
                                "exceptions": {}}}))})}))}),
    st.dictionaries(st.text(max_size=10), JSON, max_size=3))


class FakeEvents:
    """events().list(**params).execute(num_retries=0): the next fuzzed page, then forever more."""

    def __init__(self, pages: list[Any], endless: str, limit: int) -> None:
        self.pages, self.endless, self.limit = pages, endless, limit
        self.calls: list[dict[str, Any]] = []

    def events(self) -> FakeEvents:
        return self

    def list(self, **params: Any) -> FakeEvents:
        self.calls.append(params)
        if len(self.calls) > self.limit:
            raise Looping(f"asked for {len(self.calls)} pages")
        return self

    def execute(self, num_retries: int = 0) -> Any:
        n = len(self.calls) - 1
        if n < len(self.pages):
            return self.pages[n]
        if self.endless == "fresh":  # a new page token on every page, never an end
            return {"items": [], "nextPageToken": f"endless-{n}"}
        return self.pages[-1]


@PAGE_FUZZ
@given(st.lists(GOOGLE_PAGE, min_size=1, max_size=4), st.sampled_from(["repeat", "fresh"]),
       GOOGLE_STATE)
def test_google_pages_are_changes_or_adapter_errors(pages: list[Any], endless: str,
                                                    state: dict[str, Any]) -> None:
    adapter = GoogleAdapter("g", GoogleSettings(client_id="x", client_secret="y",
                                                token_file=Path("/nonexistent")))
    fake = FakeEvents(pages, endless, limit=google.MAX_PAGES + 5)
    adapter._service = fake  # noqa: SLF001 - the seam: _api() hands out this object
    try:
        changes = adapter._sync_blocking(state)  # noqa: SLF001
    except AdapterError:
        return
    check_changes(changes)
    assert isinstance(changes.state["calendars"]["primary"]["sync_token"], str)  # type: ignore[index]


def test_google_repeating_page_token_stops() -> None:
    adapter = GoogleAdapter("g", GoogleSettings(client_id="x", client_secret="y",
                                                token_file=Path("/nonexistent")))
    fake = FakeEvents([{"items": [VALID_GOOGLE], "nextPageToken": "again"}], "repeat",
                      limit=google.MAX_PAGES + 5)
    adapter._service = fake  # noqa: SLF001
    with pytest.raises(BadUpstreamData, match="nextPageToken"):
        adapter._sync_blocking({})  # noqa: SLF001
    assert len(fake.calls) == 2


def test_google_endless_pages_stop() -> None:
    adapter = GoogleAdapter("g", GoogleSettings(client_id="x", client_secret="y",
                                                token_file=Path("/nonexistent")))
    fake = FakeEvents([], "fresh", limit=google.MAX_PAGES + 5)
    adapter._service = fake  # noqa: SLF001
    with pytest.raises(BadUpstreamData, match="pages"):
        adapter._sync_blocking({})  # noqa: SLF001
    assert len(fake.calls) == google.MAX_PAGES


# -- Microsoft Graph calendarView/delta pages --------------------------------------

GRAPH_BASE = "https://graph.example/v1.0"
NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)
VALID_GRAPH = {"id": "m1", "start": {"dateTime": "2026-11-26T09:00:00.0000000", "timeZone": "UTC"},
               "end": {"dateTime": "2026-11-26T10:00:00.0000000", "timeZone": "UTC"},
               "showAs": "busy", "changeKey": "k1"}
LINKS = st.one_of(st.sampled_from([f"{GRAPH_BASE}/me/calendarView/delta?$skiptoken=1",
                                   f"{GRAPH_BASE}/me/calendarView/delta?$skiptoken=2", "",
                                   "relative/delta", "ftp://elsewhere.example/x",
                                   "https://elsewhere.example/steal"]),
                  st.text(max_size=20), JSON)
GRAPH_PAGE = mutated(
    {"value": [VALID_GRAPH, {"id": "m2", "@removed": {"reason": "deleted"}}],
     "@odata.deltaLink": f"{GRAPH_BASE}/me/calendarView/delta?$deltatoken=2"},
    {"value": st.one_of(st.lists(GRAPH, max_size=3), JSON),
     "@odata.nextLink": LINKS, "@odata.deltaLink": LINKS,
     "error": st.one_of(st.fixed_dictionaries(
         {"code": st.sampled_from(["syncStateNotFound", "resyncRequired", "other"])}), JSON)})
GRAPH_ANSWER = st.tuples(st.one_of(st.just(200), st.sampled_from([201, 304, 400, 403, 404, 410])),
                         GRAPH_PAGE)


def graph_states(window_start: str) -> Any:
    stored = {"delta_link": f"{GRAPH_BASE}/me/calendarView/delta?$deltatoken=1",
              "window_start": window_start, "resource": "me"}
    return st.one_of(
        st.just({}), st.just({"calendars": {"default": stored}}),
        st.fixed_dictionaries({"calendars": st.one_of(JSON, st.fixed_dictionaries(
            {"default": st.one_of(JSON, mutated(stored, {"delta_link": LINKS}))}))}),
        st.dictionaries(st.text(max_size=10), JSON, max_size=3))


WINDOW_START = f"{(NOW - timedelta(days=1)):%Y-%m-%d}T00:00:00Z"


class FakeGraph:
    """The adapter's _graph: the next fuzzed (status, payload), then forever more."""

    def __init__(self, answers: list[tuple[int, Any]], endless: str, limit: int) -> None:
        self.answers, self.endless, self.limit = answers, endless, limit
        self.urls: list[str] = []

    async def __call__(self, method: str, url: str, *, params: Any = None,
                       body: Any = None, need: str = "", what: str = "") -> tuple[int, Any]:
        self.urls.append(url)
        n = len(self.urls) - 1
        if n >= self.limit:
            raise Looping(f"asked for {n + 1} pages")
        if n < len(self.answers):
            return self.answers[n]
        if self.endless == "fresh":
            return 200, {"value": [], "@odata.nextLink": f"{GRAPH_BASE}/next?n={n}"}
        return self.answers[-1]


def graph_adapter(fake: FakeGraph) -> MicrosoftAdapter:
    adapter = MicrosoftAdapter("m", MicrosoftSettings(
        tenant="t", client_id="c", token_cache_file=Path("/nonexistent"), graph_url=GRAPH_BASE),
        session=cast(Any, None), executor=None, clock=lambda: NOW)
    adapter._graph = fake  # type: ignore[method-assign]  # noqa: SLF001
    return adapter


@PAGE_FUZZ
@given(st.lists(GRAPH_ANSWER, min_size=1, max_size=4), st.sampled_from(["repeat", "fresh"]),
       graph_states(WINDOW_START))
def test_graph_pages_are_changes_or_adapter_errors(answers: list[tuple[int, Any]], endless: str,
                                                   state: dict[str, Any]) -> None:
    fake = FakeGraph(answers, endless, limit=microsoft.MAX_PAGES + 5)
    try:
        changes = asyncio.run(graph_adapter(fake).sync(state))
    except AdapterError:
        return
    check_changes(changes)
    link = changes.state["calendars"]["default"]["delta_link"]  # type: ignore[index]
    assert isinstance(link, str) and link.startswith(GRAPH_BASE.split("/v1.0")[0] + "/")
    assert all(isinstance(url, str) for url in fake.urls)
    # The token goes with every request: none may go to a host the answers named.
    assert not [url for url in fake.urls if "://" in url and
                not url.startswith(GRAPH_BASE.split("/v1.0")[0] + "/")], fake.urls


@pytest.mark.parametrize("link", ["https://elsewhere.example/steal",
                                  "http://graph.example/v1.0/me/calendarView/delta",
                                  "https://graph.example.evil.example/v1.0/x"])
@pytest.mark.parametrize("kind", ["@odata.nextLink", "@odata.deltaLink"])
def test_graph_links_to_another_origin_are_refused(link: str, kind: str) -> None:
    """A nextLink or deltaLink off Graph's origin would carry the bearer token elsewhere."""
    fake = FakeGraph([(200, {"value": [VALID_GRAPH], kind: link})], "repeat", limit=5)
    with pytest.raises(BadUpstreamData, match=kind.removeprefix("@odata.")) as raised:
        asyncio.run(graph_adapter(fake).sync({}))
    assert fake.urls == ["me/calendarView/delta"]  # relative to graph_url: the first only
    assert "elsewhere" not in str(raised.value) and "evil" not in str(raised.value)


def test_graph_repeating_next_link_stops() -> None:
    page = {"value": [VALID_GRAPH], "@odata.nextLink": f"{GRAPH_BASE}/again"}
    fake = FakeGraph([(200, page)], "repeat", limit=microsoft.MAX_PAGES + 5)
    with pytest.raises(BadUpstreamData, match="nextLink"):
        asyncio.run(graph_adapter(fake).sync({}))
    assert len(fake.urls) == 2


def test_graph_endless_pages_stop() -> None:
    fake = FakeGraph([], "fresh", limit=microsoft.MAX_PAGES + 5)
    with pytest.raises(BadUpstreamData, match="pages"):
        asyncio.run(graph_adapter(fake).sync({}))
    assert len(fake.urls) == microsoft.MAX_PAGES


# -- CalDAV multistatus bodies -----------------------------------------------------

DAV_HOME = "https://dav.example/cal/"
DAV_WORK = DAV_HOME + "work/"
_OK = "<d:status>HTTP/1.1 200 OK</d:status>"
_MS = ('<?xml version="1.0" encoding="utf-8"?><d:multistatus xmlns:d="DAV:" '
       'xmlns:c="urn:ietf:params:xml:ns:caldav" xmlns:cs="http://calendarserver.org/ns/">')
VEVENT = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//x//y//EN\r\nBEGIN:VEVENT\r\nUID:{uid}\r\n"
          "DTSTAMP:20261125T000000Z\r\nDTSTART:20261126T090000Z\r\nDTEND:20261126T100000Z\r\n"
          "END:VEVENT\r\nEND:VCALENDAR\r\n")
DAV_BODIES: dict[str, str] = {
    "discovery": (
        f"{_MS}<d:response><d:href>/</d:href><d:propstat><d:prop><d:resourcetype><d:collection/>"
        "</d:resourcetype><d:current-user-principal><d:href>/principals/me/</d:href>"
        "</d:current-user-principal><c:calendar-home-set><d:href>/cal/</d:href>"
        f"</c:calendar-home-set></d:prop>{_OK}</d:propstat></d:response></d:multistatus>"),
    "listing": (
        f"{_MS}<d:response><d:href>/cal/</d:href><d:propstat><d:prop><d:resourcetype>"
        f"<d:collection/></d:resourcetype></d:prop>{_OK}</d:propstat></d:response>"
        "<d:response><d:href>/cal/work/</d:href><d:propstat><d:prop><d:resourcetype>"
        "<d:collection/><c:calendar/></d:resourcetype><d:displayname>Work</d:displayname>"
        '<c:supported-calendar-component-set><c:comp name="VEVENT"/>'
        "</c:supported-calendar-component-set><d:sync-token>http://x/sync/2</d:sync-token>"
        f"<cs:getctag>2</cs:getctag></d:prop>{_OK}</d:propstat></d:response></d:multistatus>"),
    "sync": (
        f"{_MS}<d:response><d:href>/cal/work/a.ics</d:href><d:propstat><d:prop><d:getetag>"
        f'"1"</d:getetag></d:prop>{_OK}</d:propstat></d:response>'
        "<d:response><d:href>/cal/work/b.ics</d:href><d:propstat><d:prop><d:getetag>"
        f'"2"</d:getetag></d:prop>{_OK}</d:propstat></d:response>'
        "<d:response><d:href>/cal/work/gone.ics</d:href>"
        "<d:status>HTTP/1.1 404 Not Found</d:status></d:response>"
        "<d:sync-token>http://x/sync/2</d:sync-token></d:multistatus>"),
    "etags": (
        f"{_MS}<d:response><d:href>/cal/work/</d:href><d:propstat><d:prop><d:resourcetype>"
        f"<d:collection/></d:resourcetype></d:prop>{_OK}</d:propstat></d:response>"
        "<d:response><d:href>/cal/work/a.ics</d:href><d:propstat><d:prop><d:getetag>"
        f'"1"</d:getetag><d:resourcetype/></d:prop>{_OK}</d:propstat></d:response>'
        "</d:multistatus>"),
    "multiget": (
        f"{_MS}<d:response><d:href>/cal/work/a.ics</d:href><d:propstat><d:prop><d:getetag>"
        f'"1"</d:getetag><c:calendar-data>{VEVENT.format(uid="a")}</c:calendar-data></d:prop>'
        f"{_OK}</d:propstat></d:response><d:response><d:href>/cal/work/b.ics</d:href>"
        f'<d:propstat><d:prop><d:getetag>"2"</d:getetag><c:calendar-data>'
        f"{VEVENT.format(uid='b')}</c:calendar-data></d:prop>{_OK}</d:propstat></d:response>"
        "</d:multistatus>"),
}
# The RFC 6578 truncation marker: a 507 response for the collection itself.
TRUNCATED = ("<d:response><d:href>/cal/work/</d:href>"
             "<d:status>HTTP/1.1 507 Insufficient Storage</d:status></d:response>")
XML_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xD7FF), max_size=30)
GARBAGE_TEXT = st.one_of(
    XML_TEXT, st.sampled_from([
        "HTTP/1.1 404 Not Found", "HTTP/1.1 507 Insufficient Storage", "HTTP/1.1 500 Oops",
        "HTTP/1.1 200 OK", "", "http://[::1", "//[bad/x.ics", "/cal/work/", "../../x.ics",
        "BEGIN:VCALENDAR", "not iCalendar at all", "%zz%00.ics", "https://other.example/a.ics"]))
EDITS = st.lists(st.tuples(st.sampled_from(["drop", "dup", "text", "rename", "empty"]),
                           st.integers(0, 60), GARBAGE_TEXT), max_size=4)


def edit_xml(text: str, edits: list[tuple[str, int, str]]) -> bytes:
    """Apply element-level mutations: drop, duplicate, rewrite, rename or empty one element."""
    root = etree.fromstring(text.encode())
    for op, index, garbage in edits:
        nodes = list(root.iter(etree.Element))
        node = nodes[index % len(nodes)]
        parent = node.getparent()
        if op == "drop" and parent is not None:
            parent.remove(node)
        elif op == "dup" and parent is not None:
            parent.insert(parent.index(node), copy.deepcopy(node))
        elif op == "text":
            node.text = garbage
        elif op == "rename":
            node.tag = "{DAV:}" + ("response" if index % 2 else "href")
        elif op == "empty":
            node.clear()
    return bytes(etree.tostring(root, xml_declaration=True, encoding="utf-8"))


@st.composite
def dav_answer(draw: st.DrawFn, kind: str) -> tuple[int, str, bytes]:
    """(HTTP status, Content-Type, body): the valid answer of that kind, or a mutation of it.

    Most answers stay valid or nearly so, so that a round gets past discovery and the
    listing to the sync-collection and multiget parsing often enough.
    """
    text = DAV_BODIES[kind]
    if kind == "sync" and draw(st.booleans()):
        text = text.replace("<d:sync-token>", TRUNCATED + "<d:sync-token>", 1)
    how = draw(st.sampled_from(["valid", "valid", "edited", "edited", "edited", "broken"]))
    if how == "valid":
        return 207, "application/xml; charset=utf-8", text.encode()
    body = edit_xml(text, draw(EDITS))
    if how == "edited":
        return 207, "application/xml; charset=utf-8", body
    shape = draw(st.sampled_from(["xml", "truncated", "bytes", "deep", "empty"]))
    if shape == "truncated":
        body = body[:draw(st.integers(0, len(body) - 1))]
    elif shape == "bytes":
        body = draw(st.binary(max_size=60))
    elif shape == "deep":  # deeper than libxml2 takes without huge_tree
        depth = draw(st.sampled_from([50, 300, 3000]))
        body = body.replace(b"<d:response>", b"<d:response>" + b"<d:prop>" * depth, 1)
    elif shape == "empty":
        body = b""
    status = draw(st.sampled_from([207, 200, 400, 403, 404, 405, 412, 500]))
    content_type = draw(st.sampled_from(["application/xml; charset=utf-8", "text/plain", ""]))
    return status, content_type, body


class FakeHttpResponse:
    """What DAVResponse reads from the HTTP library's response."""

    def __init__(self, status: int, content_type: str, body: bytes) -> None:
        self.status_code = status
        self.headers = {"Content-Type": content_type} if content_type else {}
        self.content = body
        self.text = body.decode("utf-8", errors="replace")
        self.reason = "whatever"


class FakeDavClient:
    """DAVClient.request: the fuzzed answer for the request's kind, parsed by caldav itself."""

    def __init__(self, answers: Mapping[str, list[tuple[int, str, bytes]]], limit: int) -> None:
        self.answers, self.limit = answers, limit
        self.calls = 0
        self.seen: dict[str, int] = {}

    def request(self, url: str, method: str, body: str, headers: Mapping[str, str]) -> Any:
        self.calls += 1
        if self.calls > self.limit:
            raise Looping(f"asked for {self.calls} responses")
        kind = ("sync" if "sync-collection" in body else "multiget" if "multiget" in body
                else "listing" if "displayname" in body
                else "discovery" if "calendar-home-set" in body else "etags")
        n = self.seen.get(kind, 0)
        self.seen[kind] = n + 1
        answers = self.answers[kind]
        return DAVResponse(FakeHttpResponse(*answers[min(n, len(answers) - 1)]))

    def close(self) -> None:
        pass


DAV_STATE = st.one_of(
    st.just({}),
    st.just({"home": DAV_HOME, "single": False, "calendars": {}}),
    st.just({"home": DAV_HOME, "calendars": {DAV_WORK: {"name": "Work", "token": "http://x/sync/1",
                                                         "ctag": "1"}}}),
    st.just({"home": DAV_HOME, "calendars": {DAV_WORK: {"name": "Work", "ctag": "1",
                                                         "etags": {"/cal/work/a.ics": '"0"',
                                                                   "/cal/work/c.ics": '"3"'}}}}),
    st.fixed_dictionaries({"home": st.one_of(st.just(DAV_HOME), JSON),
                           "calendars": st.one_of(JSON, st.fixed_dictionaries({DAV_WORK: JSON}))},
                          optional={"single": JSON, "version_prop": JSON}))


@PAGE_FUZZ
@given(st.fixed_dictionaries({kind: st.lists(dav_answer(kind), min_size=1, max_size=3)
                              for kind in DAV_BODIES}), DAV_STATE)
def test_caldav_multistatus_is_changes_or_adapter_errors(
        answers: dict[str, list[tuple[int, str, bytes]]], state: dict[str, Any]) -> None:
    client = FakeDavClient(answers, limit=caldav_adapter.MAX_SYNC_PAGES + 50)
    adapter = CaldavAdapter("c", CaldavSettings(url=DAV_HOME),
                            client_factory=lambda: cast(Any, client))
    try:  # _guarded is what sync() runs in the worker thread
        changes = adapter._guarded(adapter._sync_blocking, state)  # noqa: SLF001
    except AdapterError:
        return
    check_changes(changes)


def test_caldav_endless_truncation_stops() -> None:
    truncated = DAV_BODIES["sync"].replace("<d:sync-token>", TRUNCATED + "<d:sync-token>", 1)
    answers = {kind: [(207, "application/xml", text.encode())] for kind, text in DAV_BODIES.items()}
    answers["sync"] = [(207, "application/xml", truncated.encode())]
    client = FakeDavClient(answers, limit=caldav_adapter.MAX_SYNC_PAGES + 50)
    adapter = CaldavAdapter("c", CaldavSettings(url=DAV_HOME),
                            client_factory=lambda: cast(Any, client))
    with pytest.raises(BadUpstreamData, match="sync-token"):
        adapter._guarded(adapter._sync_blocking, {"home": DAV_HOME})  # noqa: SLF001
    assert client.seen["sync"] == 2


def test_caldav_refused_continuation_token_is_bad_data() -> None:
    truncated = DAV_BODIES["sync"].replace("<d:sync-token>", TRUNCATED + "<d:sync-token>", 1)
    answers = {kind: [(207, "application/xml", text.encode())] for kind, text in DAV_BODIES.items()}
    answers["sync"] = [(207, "application/xml", truncated.encode()), (412, "", b"")]
    client = FakeDavClient(answers, limit=caldav_adapter.MAX_SYNC_PAGES + 50)
    adapter = CaldavAdapter("c", CaldavSettings(url=DAV_HOME),
                            client_factory=lambda: cast(Any, client))
    with pytest.raises(BadUpstreamData, match="sync-token"):
        adapter._guarded(adapter._sync_blocking, {"home": DAV_HOME})  # noqa: SLF001


# -- raw bodies, through the HTTP clients' own decoding ----------------------------
#
# Below the page: what the client libraries make of the bytes (googleapiclient
# decodes UTF-8 and JSON itself, aiohttp's text() decodes strictly).

DEEP_JSON = b"[" * 100_000 + b"]" * 100_000
ODD_BODIES = st.one_of(st.binary(max_size=40), st.sampled_from([
    b"", b"null", b"5", b'"text"', DEEP_JSON, b"\xff\xfe{}", b'{"items": [', b"<html>502</html>",
    b'{"error": {"code": "syncStateNotFound"}}', b'{"error": ' + DEEP_JSON + b"}"]))


class FakeGoogleHttp:
    """The httplib2.Http under googleapiclient: each request gets the next fuzzed answer."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, bytes]] = []
        self.calls = 0

    def request(self, uri: str, method: str = "GET", body: Any = None, headers: Any = None,
                redirections: int = 5, connection_type: Any = None) -> tuple[Any, bytes]:
        self.calls += 1
        if self.calls > google.MAX_PAGES + 5:
            raise Looping(f"asked for {self.calls} pages")
        status, content = self.answers[min(self.calls, len(self.answers)) - 1]
        return httplib2.Response({"status": str(status),
                                  "content-type": "application/json; charset=UTF-8"}), content


GOOGLE_BODY = st.tuples(
    st.one_of(st.just(200), st.sampled_from([400, 404, 410])),
    st.one_of(GOOGLE_PAGE.map(lambda page: json.dumps(page).encode()), ODD_BODIES))


@PAGE_FUZZ
@given(st.lists(GOOGLE_BODY, min_size=1, max_size=3), GOOGLE_STATE)
def test_google_bodies_are_changes_or_adapter_errors(answers: list[tuple[int, bytes]],
                                                     state: dict[str, Any]) -> None:
    http = FakeGoogleHttp()
    http.answers = answers
    adapter = GoogleAdapter("g", GoogleSettings(client_id="x", client_secret="y",
                                                token_file=Path("/nonexistent")))
    adapter._service = build("calendar", "v3", http=http,  # noqa: SLF001
                             static_discovery=True, cache_discovery=False)
    try:
        changes = adapter._sync_blocking(state)  # noqa: SLF001
    except AdapterError:
        return
    check_changes(changes)


class FakeGraphResponse:
    """An aiohttp response as _graph reads it (text() decodes strictly, like aiohttp's)."""

    def __init__(self, status: int, body: bytes) -> None:
        self.status, self.body = status, body
        self.headers: dict[str, str] = {"Content-Type": "application/json"}

    async def text(self) -> str:
        return self.body.decode("utf-8")  # aiohttp: charset of application/json, "strict"

    async def __aenter__(self) -> FakeGraphResponse:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


class FakeGraphSession:
    """The aiohttp.ClientSession under _graph: each request gets the next fuzzed answer."""

    def __init__(self, answers: list[tuple[int, bytes]]) -> None:
        self.answers = answers
        self.calls = 0

    def request(self, method: str, url: str, **kwargs: Any) -> FakeGraphResponse:
        self.calls += 1
        if self.calls > microsoft.MAX_PAGES + 5:
            raise Looping(f"asked for {self.calls} pages")
        return FakeGraphResponse(*self.answers[min(self.calls, len(self.answers)) - 1])


async def _token(*, force: bool = False) -> str:
    return "token"


GRAPH_BODY = st.tuples(
    st.one_of(st.just(200), st.sampled_from([400, 401, 404, 410, 500])),
    st.one_of(GRAPH_PAGE.map(lambda page: json.dumps(page).encode()), ODD_BODIES))


@PAGE_FUZZ
@given(st.lists(GRAPH_BODY, min_size=1, max_size=3), graph_states(WINDOW_START))
def test_graph_bodies_are_changes_or_adapter_errors(answers: list[tuple[int, bytes]],
                                                    state: dict[str, Any]) -> None:
    adapter = MicrosoftAdapter("m", MicrosoftSettings(
        tenant="t", client_id="c", token_cache_file=Path("/nonexistent"), graph_url=GRAPH_BASE),
        session=cast(Any, FakeGraphSession(answers)), executor=None, clock=lambda: NOW)
    adapter._access_token = _token  # type: ignore[method-assign]  # noqa: SLF001
    try:
        changes = asyncio.run(adapter.sync(state))
    except AdapterError:
        return
    check_changes(changes)
