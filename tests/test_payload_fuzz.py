"""Fuzzing Google and Graph event payloads: a bad event is skipped, nothing else escapes.

The adapters turn each upstream event into an item and skip, with a reason,
one that raises KeyError, TypeError or ValueError. Any other exception would
fail the whole round, so hypothesis throws arbitrary JSON shapes at them.
"""

from __future__ import annotations

import contextlib
from datetime import UTC
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from icalendar import Calendar

from adapters.base import UNREADABLE_ITEM
from adapters.google import GoogleAdapter, GoogleSettings
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
        st.text(max_size=30))}, optional={"timeZone": st.text(max_size=20)}),
    st.fixed_dictionaries({"date": st.one_of(st.dates().map(str), st.text(max_size=12))}))


def events(extra: dict[str, Any]) -> Any:
    return st.fixed_dictionaries({"id": st.text(max_size=20), "start": TIMES, "end": TIMES},
                                 optional=extra)


GOOGLE = events({"status": JSON | st.sampled_from(["confirmed", "tentative", "cancelled"]),
                 "transparency": JSON, "eventType": JSON, "attendees": JSON,
                 "extendedProperties": JSON, "etag": JSON})
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
        check(adapter._item("primary/x", event, ZoneInfo("Europe/Berlin")))  # noqa: SLF001


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          derandomize=True)
@given(GRAPH)
def test_graph_events_are_items_or_skipped(event: dict[str, Any]) -> None:
    with contextlib.suppress(SKIPPED):
        check(graph_item("default/x", event))
