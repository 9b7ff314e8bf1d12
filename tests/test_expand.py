"""Busy rules and recurrence expansion, through the production path.

Every test builds a small feed, splits it with ``split_feed`` (which applies
X-WR-TIMEZONE and groups components by UID) and expands each item with
``expand_item`` over a fixed window. No wall clock is involved.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import recurring_ical_events
from icalendar import Calendar, Event

from adapters.base import BadUpstreamData
from adapters.ics import split_feed
from server.store import STATUS_BUSY, STATUS_TENTATIVE, BusyRow
from server.sync import expand
from server.sync.expand import (
    MAX_INSTANCES_PER_ITEM,
    BadItem,
    ExpandContext,
    Expansion,
    busy_status,
    expand_item,
    to_utc,
)
from tests.corpus import corpus_files, corpus_id

BUSY = STATUS_BUSY
TENTATIVE = STATUS_TENTATIVE
WINDOW_START = datetime(2026, 3, 1, tzinfo=UTC)
WINDOW_END = datetime(2026, 12, 31, tzinfo=UTC)
OWNER = frozenset({"owner@example.com"})

# Outlook's export of Europe/Berlin under its Windows name.
W_EUROPE_VTIMEZONE = """BEGIN:VTIMEZONE
TZID:W. Europe Standard Time
BEGIN:STANDARD
DTSTART:16010101T030000
TZOFFSETFROM:+0200
TZOFFSETTO:+0100
RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=10
END:STANDARD
BEGIN:DAYLIGHT
DTSTART:16010101T020000
TZOFFSETFROM:+0100
TZOFFSETTO:+0200
RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=3
END:DAYLIGHT
END:VTIMEZONE"""

PACIFIC_VTIMEZONE = """BEGIN:VTIMEZONE
TZID:Pacific Standard Time
BEGIN:STANDARD
DTSTART:16010101T020000
TZOFFSETFROM:-0700
TZOFFSETTO:-0800
RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=1SU;BYMONTH=11
END:STANDARD
BEGIN:DAYLIGHT
DTSTART:16010101T020000
TZOFFSETFROM:-0800
TZOFFSETTO:-0700
RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=2SU;BYMONTH=3
END:DAYLIGHT
END:VTIMEZONE"""


# -- helpers -------------------------------------------------------------------


def vevent(*lines: str, uid: str | None = "event-1") -> str:
    """A VEVENT with a UID and DTSTAMP around the given content lines."""
    head = ["BEGIN:VEVENT"]
    if uid is not None:
        head.append(f"UID:{uid}")
    head.append("DTSTAMP:20260101T000000Z")
    return "\n".join([*head, *lines, "END:VEVENT"])


def vcalendar(*components: str, headers: Iterable[str] = ()) -> str:
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//fbproxy tests//expand//EN", *headers]
    for component in components:
        lines += component.strip().splitlines()
    lines.append("END:VCALENDAR")
    return "\r\n".join(line.strip() for line in lines) + "\r\n"


def feed(*components: str, headers: Iterable[str] = ()) -> bytes:
    return vcalendar(*components, headers=headers).encode()


def context(
    zone: str = "Europe/Berlin",
    owners: frozenset[str] = frozenset(),
    start: datetime = WINDOW_START,
    end: datetime = WINDOW_END,
) -> ExpandContext:
    return ExpandContext(ZoneInfo(zone), start, end, owners)


def expand_all(body: bytes, **kwargs: Any) -> dict[str, Expansion]:
    """Split the feed and expand every item: {item key: expansion}."""
    items, skipped = split_feed(body)
    assert skipped == []
    ctx = context(**kwargs)
    return {item.key: expand_item(item.ical, ctx) for item in items}


def expand_one(body: bytes, **kwargs: Any) -> Expansion:
    expansions = expand_all(body, **kwargs)
    assert len(expansions) == 1, sorted(expansions)
    return next(iter(expansions.values()))


def rows(body: bytes, **kwargs: Any) -> list[BusyRow]:
    return list(expand_one(body, **kwargs).instances)


def ts(text: str) -> int:
    """Unix seconds of a UTC time written '2026-03-05 08:00'."""
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


def row(start: str, end: str, status: str = BUSY) -> BusyRow:
    return BusyRow(ts(start), ts(end), status)


def one_hour(start: str, status: str = BUSY) -> BusyRow:
    begin = ts(start)
    return BusyRow(begin, begin + 3600, status)


BERLIN_MEETING = ("DTSTART;TZID=Europe/Berlin:20260310T090000",
                  "DTEND;TZID=Europe/Berlin:20260310T100000")
BERLIN_MEETING_UTC = row("2026-03-10 08:00", "2026-03-10 09:00")


# -- what counts as busy -----------------------------------------------------------


@pytest.mark.parametrize("extra", [
    (),
    ("TRANSP:OPAQUE", "STATUS:CONFIRMED"),
    ("STATUS:confirmed",),
])
def test_opaque_confirmed_event_is_busy(extra: tuple[str, ...]) -> None:
    expansion = expand_one(feed(vevent(*BERLIN_MEETING, *extra)))
    assert expansion.instances == (BERLIN_MEETING_UTC,)
    assert expansion.recurring is False
    assert expansion.truncated is False


def test_utc_event_is_busy_at_its_utc_time() -> None:
    body = feed(vevent("DTSTART:20260302T090000Z", "DTEND:20260302T100000Z"))
    # The source zone does not matter for UTC times.
    for zone in ("Europe/Berlin", "America/New_York", "UTC"):
        assert rows(body, zone=zone) == [row("2026-03-02 09:00", "2026-03-02 10:00")]


@pytest.mark.parametrize("transp", ["TRANSPARENT", "transparent"])
def test_transparent_event_blocks_nothing(transp: str) -> None:
    assert rows(feed(vevent(*BERLIN_MEETING, f"TRANSP:{transp}"))) == []


def test_transparent_wins_over_tentative() -> None:
    body = feed(vevent(*BERLIN_MEETING, "TRANSP:TRANSPARENT", "STATUS:TENTATIVE"))
    assert rows(body) == []


@pytest.mark.parametrize("status", ["CANCELLED", "cancelled"])
def test_cancelled_event_blocks_nothing(status: str) -> None:
    assert rows(feed(vevent(*BERLIN_MEETING, f"STATUS:{status}"))) == []


def test_cancelled_series_blocks_nothing() -> None:
    body = feed(vevent(*BERLIN_MEETING, "RRULE:FREQ=DAILY;COUNT=10", "STATUS:CANCELLED"))
    expansion = expand_one(body)
    assert expansion.instances == ()
    assert expansion.recurring is True


def test_tentative_status_is_tentative() -> None:
    body = feed(vevent(*BERLIN_MEETING, "STATUS:TENTATIVE"))
    assert rows(body) == [row("2026-03-10 08:00", "2026-03-10 09:00", TENTATIVE)]


def attendee(address: str, partstat: str | None) -> str:
    param = f";PARTSTAT={partstat}" if partstat else ""
    return f"ATTENDEE;CN=Someone;ROLE=REQ-PARTICIPANT{param}:{address}"


@pytest.mark.parametrize(("partstat", "expected"), [
    ("DECLINED", []),
    ("declined", []),
    ("TENTATIVE", [row("2026-03-10 08:00", "2026-03-10 09:00", TENTATIVE)]),
    ("ACCEPTED", [BERLIN_MEETING_UTC]),
    ("NEEDS-ACTION", [BERLIN_MEETING_UTC]),
    (None, [BERLIN_MEETING_UTC]),
])
@pytest.mark.parametrize("address", [
    "mailto:owner@example.com",
    "mailto:Owner@Example.COM",
    "MAILTO:OWNER@EXAMPLE.COM",
])
def test_owner_reply(partstat: str | None, expected: list[BusyRow], address: str) -> None:
    body = feed(vevent(
        *BERLIN_MEETING,
        "ORGANIZER:mailto:boss@example.com",
        attendee("mailto:boss@example.com", "ACCEPTED"),
        attendee(address, partstat),
    ))
    assert rows(body, owners=OWNER) == expected


def test_owner_declined_is_ignored_without_owner_emails() -> None:
    body = feed(vevent(*BERLIN_MEETING, attendee("mailto:owner@example.com", "DECLINED")))
    assert rows(body) == [BERLIN_MEETING_UTC]


def test_other_attendee_declined_is_still_busy() -> None:
    body = feed(vevent(
        *BERLIN_MEETING,
        attendee("mailto:colleague@example.com", "DECLINED"),
        attendee("mailto:owner@example.com", "ACCEPTED"),
    ))
    assert rows(body, owners=OWNER) == [BERLIN_MEETING_UTC]
    body = feed(vevent(*BERLIN_MEETING, attendee("mailto:colleague@example.com", "DECLINED")))
    assert rows(body, owners=OWNER) == [BERLIN_MEETING_UTC]


def test_owner_tentative_on_confirmed_event_is_tentative() -> None:
    body = feed(vevent(*BERLIN_MEETING, "STATUS:CONFIRMED",
                       attendee("mailto:owner@example.com", "TENTATIVE")))
    assert rows(body, owners=OWNER) == [row("2026-03-10 08:00", "2026-03-10 09:00", TENTATIVE)]


def test_owner_declines_one_occurrence() -> None:
    body = feed(
        vevent("DTSTART;TZID=Europe/Berlin:20260302T090000",
               "DTEND;TZID=Europe/Berlin:20260302T100000",
               "RRULE:FREQ=DAILY;COUNT=3",
               attendee("mailto:owner@example.com", "ACCEPTED")),
        vevent("RECURRENCE-ID;TZID=Europe/Berlin:20260303T090000",
               "DTSTART;TZID=Europe/Berlin:20260303T090000",
               "DTEND;TZID=Europe/Berlin:20260303T100000",
               attendee("mailto:owner@example.com", "DECLINED")),
    )
    assert rows(body, owners=OWNER) == [one_hour("2026-03-02 08:00"), one_hour("2026-03-04 08:00")]


# -- recurrence ------------------------------------------------------------------------


def test_weekly_rule_with_exdate() -> None:
    body = feed(vevent(
        "DTSTART;TZID=Europe/Berlin:20260305T090000",
        "DTEND;TZID=Europe/Berlin:20260305T100000",
        "RRULE:FREQ=WEEKLY;COUNT=4",
        "EXDATE;TZID=Europe/Berlin:20260312T090000",
    ))
    expansion = expand_one(body)
    assert expansion.recurring is True
    assert list(expansion.instances) == [
        one_hour("2026-03-05 08:00"),
        one_hour("2026-03-19 08:00"),
        one_hour("2026-03-26 08:00"),
    ]


def test_exdate_in_utc_removes_a_zoned_occurrence() -> None:
    body = feed(vevent(
        "DTSTART;TZID=Europe/Berlin:20260305T090000",
        "DTEND;TZID=Europe/Berlin:20260305T100000",
        "RRULE:FREQ=WEEKLY;COUNT=3",
        "EXDATE:20260312T080000Z",
    ))
    assert rows(body) == [one_hour("2026-03-05 08:00"), one_hour("2026-03-19 08:00")]


def test_override_moves_one_occurrence() -> None:
    body = feed(
        vevent("DTSTART;TZID=Europe/Berlin:20260305T090000",
               "DTEND;TZID=Europe/Berlin:20260305T100000",
               "RRULE:FREQ=WEEKLY;COUNT=3"),
        vevent("RECURRENCE-ID;TZID=Europe/Berlin:20260312T090000",
               "DTSTART;TZID=Europe/Berlin:20260313T140000",
               "DTEND;TZID=Europe/Berlin:20260313T153000"),
    )
    found = rows(body)
    assert found == [
        one_hour("2026-03-05 08:00"),
        row("2026-03-13 13:00", "2026-03-13 14:30"),
        one_hour("2026-03-19 08:00"),
    ]
    assert one_hour("2026-03-12 08:00") not in found


def test_override_with_other_status() -> None:
    """An override's own TRANSP/STATUS decide for its occurrence alone."""
    body = feed(
        vevent("DTSTART;TZID=Europe/Berlin:20260305T090000",
               "DTEND;TZID=Europe/Berlin:20260305T100000",
               "RRULE:FREQ=WEEKLY;COUNT=3"),
        vevent("RECURRENCE-ID;TZID=Europe/Berlin:20260312T090000",
               "DTSTART;TZID=Europe/Berlin:20260312T090000",
               "DTEND;TZID=Europe/Berlin:20260312T100000",
               "STATUS:TENTATIVE"),
        vevent("RECURRENCE-ID;TZID=Europe/Berlin:20260319T090000",
               "DTSTART;TZID=Europe/Berlin:20260319T090000",
               "DTEND;TZID=Europe/Berlin:20260319T100000",
               "TRANSP:TRANSPARENT"),
    )
    assert rows(body) == [one_hour("2026-03-05 08:00"), one_hour("2026-03-12 08:00", TENTATIVE)]


def test_override_cancels_one_occurrence() -> None:
    body = feed(
        vevent("DTSTART;TZID=Europe/Berlin:20260305T090000",
               "DTEND;TZID=Europe/Berlin:20260305T100000",
               "RRULE:FREQ=WEEKLY;COUNT=3"),
        vevent("RECURRENCE-ID;TZID=Europe/Berlin:20260312T090000",
               "DTSTART;TZID=Europe/Berlin:20260312T090000",
               "DTEND;TZID=Europe/Berlin:20260312T100000",
               "STATUS:CANCELLED"),
    )
    assert rows(body) == [one_hour("2026-03-05 08:00"), one_hour("2026-03-19 08:00")]


def test_override_listed_before_master() -> None:
    body = feed(
        vevent("RECURRENCE-ID:20260303T090000Z",
               "DTSTART:20260303T120000Z", "DTEND:20260303T130000Z"),
        vevent("DTSTART:20260302T090000Z", "DTEND:20260302T100000Z",
               "RRULE:FREQ=DAILY;COUNT=3"),
    )
    assert rows(body) == [
        one_hour("2026-03-02 09:00"),
        one_hour("2026-03-03 12:00"),
        one_hour("2026-03-04 09:00"),
    ]


def test_rdate_adds_occurrences() -> None:
    body = feed(vevent(
        "DTSTART:20260305T090000Z",
        "DTEND:20260305T100000Z",
        "RDATE:20260310T120000Z,20260320T150000Z",
    ))
    expansion = expand_one(body)
    assert expansion.recurring is True
    assert list(expansion.instances) == [
        one_hour("2026-03-05 09:00"),
        one_hour("2026-03-10 12:00"),
        one_hour("2026-03-20 15:00"),
    ]


def test_rdate_in_source_zone_and_rule_together() -> None:
    body = feed(vevent(
        "DTSTART;TZID=Europe/Berlin:20260302T090000",
        "DTEND;TZID=Europe/Berlin:20260302T100000",
        "RRULE:FREQ=WEEKLY;COUNT=2",
        "RDATE;TZID=Europe/Berlin:20260404T110000",
    ))
    assert rows(body) == [
        one_hour("2026-03-02 08:00"),
        one_hour("2026-03-09 08:00"),
        one_hour("2026-04-04 09:00"),  # 11:00 CEST
    ]


# -- all-day and floating ----------------------------------------------------------------


def test_all_day_event_is_midnight_to_midnight_in_source_zone() -> None:
    body = feed(vevent("DTSTART;VALUE=DATE:20260310", "DTEND;VALUE=DATE:20260311"))
    assert rows(body) == [row("2026-03-09 23:00", "2026-03-10 23:00")]
    assert rows(body, zone="America/New_York") == [row("2026-03-10 04:00", "2026-03-11 04:00")]
    assert rows(body, zone="UTC") == [row("2026-03-10 00:00", "2026-03-11 00:00")]


def test_all_day_event_without_end_lasts_one_day() -> None:
    body = feed(vevent("DTSTART;VALUE=DATE:20260310"))
    assert rows(body) == [row("2026-03-09 23:00", "2026-03-10 23:00")]


def test_multi_day_all_day_event() -> None:
    body = feed(vevent("DTSTART;VALUE=DATE:20260310", "DTEND;VALUE=DATE:20260313"))
    assert rows(body) == [row("2026-03-09 23:00", "2026-03-12 23:00")]


def test_all_day_event_across_spring_forward_is_one_hour_short() -> None:
    body = feed(vevent("DTSTART;VALUE=DATE:20260328", "DTEND;VALUE=DATE:20260330"))
    # Midnight CET on the 28th to midnight CEST on the 30th: 47 real hours.
    assert rows(body) == [row("2026-03-27 23:00", "2026-03-29 22:00")]


def test_recurring_all_day_with_exdate() -> None:
    body = feed(vevent(
        "DTSTART;VALUE=DATE:20260327",
        "DTEND;VALUE=DATE:20260328",
        "RRULE:FREQ=WEEKLY;COUNT=3",
        "EXDATE;VALUE=DATE:20260403",
    ))
    assert rows(body) == [
        row("2026-03-26 23:00", "2026-03-27 23:00"),
        row("2026-04-09 22:00", "2026-04-10 22:00"),
    ]


def test_floating_time_is_read_in_source_zone() -> None:
    body = feed(vevent("DTSTART:20260310T090000", "DTEND:20260310T100000"))
    assert rows(body) == [one_hour("2026-03-10 08:00")]
    # New York is already on daylight time on March 10 (EDT, -4).
    assert rows(body, zone="America/New_York") == [one_hour("2026-03-10 13:00")]
    assert rows(body, zone="Asia/Tokyo") == [one_hour("2026-03-10 00:00")]


def test_floating_series_follows_source_zone_dst() -> None:
    body = feed(vevent("DTSTART:20260326T090000", "DTEND:20260326T100000",
                       "RRULE:FREQ=WEEKLY;COUNT=2"))
    assert rows(body) == [one_hour("2026-03-26 08:00"), one_hour("2026-04-02 07:00")]


def test_floating_event_near_window_start_is_kept() -> None:
    """00:30 local on March 1 is still Feb 28 in UTC for a zone east of UTC."""
    body = feed(vevent("DTSTART:20260301T003000", "DTEND:20260301T020000"))
    assert rows(body) == [row("2026-02-28 23:30", "2026-03-01 01:00")]


# -- daylight saving time ----------------------------------------------------------------


def test_berlin_weekly_across_spring_transition() -> None:
    body = feed(vevent(
        "DTSTART;TZID=Europe/Berlin:20260319T090000",
        "DTEND;TZID=Europe/Berlin:20260319T100000",
        "RRULE:FREQ=WEEKLY;COUNT=3",
    ))
    # Summer time starts Sunday March 29 2026.
    assert rows(body, zone="UTC") == [
        one_hour("2026-03-19 08:00"),
        one_hour("2026-03-26 08:00"),
        one_hour("2026-04-02 07:00"),
    ]


def test_berlin_weekly_across_autumn_transition() -> None:
    body = feed(vevent(
        "DTSTART;TZID=Europe/Berlin:20261015T090000",
        "DTEND;TZID=Europe/Berlin:20261015T100000",
        "RRULE:FREQ=WEEKLY;COUNT=3",
    ))
    # Summer time ends Sunday October 25 2026.
    assert rows(body, zone="UTC") == [
        one_hour("2026-10-15 07:00"),
        one_hour("2026-10-22 07:00"),
        one_hour("2026-10-29 08:00"),
    ]


def test_new_york_weekly_across_both_transitions() -> None:
    body = feed(
        vevent("DTSTART;TZID=America/New_York:20260305T090000",
               "DTEND;TZID=America/New_York:20260305T100000",
               "RRULE:FREQ=WEEKLY;COUNT=2", uid="spring"),
        vevent("DTSTART;TZID=America/New_York:20261029T090000",
               "DTEND;TZID=America/New_York:20261029T100000",
               "RRULE:FREQ=WEEKLY;COUNT=2", uid="autumn"),
    )
    expansions = expand_all(body, zone="Europe/Berlin")
    # US daylight time: March 8 to November 1 2026.
    assert list(expansions["spring"].instances) == [
        one_hour("2026-03-05 14:00"),
        one_hour("2026-03-12 13:00"),
    ]
    assert list(expansions["autumn"].instances) == [
        one_hour("2026-10-29 13:00"),
        one_hour("2026-11-05 14:00"),
    ]


def test_event_inside_dst_gap() -> None:
    """02:00-03:00 does not exist in Berlin on March 29 2026; the RFC reads
    such times with the offset before the gap (+01:00)."""
    body = feed(vevent("DTSTART;TZID=Europe/Berlin:20260329T021500",
                       "DTEND;TZID=Europe/Berlin:20260329T024500"))
    assert rows(body) == [row("2026-03-29 01:15", "2026-03-29 01:45")]


def test_event_starting_in_dst_gap_keeps_its_length() -> None:
    body = feed(vevent("DTSTART;TZID=Europe/Berlin:20260329T023000",
                       "DTEND;TZID=Europe/Berlin:20260329T033000"))
    # Read literally both ends are 01:30Z; the block must not vanish.
    assert rows(body) == [row("2026-03-29 01:30", "2026-03-29 02:30")]


def test_event_starting_in_dst_gap_with_duration() -> None:
    body = feed(vevent("DTSTART;TZID=Europe/Berlin:20260329T023000", "DURATION:PT1H"))
    assert rows(body) == [row("2026-03-29 01:30", "2026-03-29 02:30")]


def test_floating_event_in_dst_gap() -> None:
    body = feed(vevent("DTSTART:20260329T023000", "DTEND:20260329T033000"))
    assert rows(body) == [row("2026-03-29 01:30", "2026-03-29 02:30")]


def test_daily_series_keeps_its_occurrence_in_dst_gap() -> None:
    body = feed(vevent("DTSTART;TZID=Europe/Berlin:20260328T023000",
                       "DTEND;TZID=Europe/Berlin:20260328T033000",
                       "RRULE:FREQ=DAILY;COUNT=3"))
    assert rows(body) == [
        one_hour("2026-03-28 01:30"),
        one_hour("2026-03-29 01:30"),
        one_hour("2026-03-30 00:30"),
    ]


def test_ambiguous_autumn_time_is_the_first_one() -> None:
    """02:30 happens twice on October 25 2026; RFC 5545 means the first (CEST)."""
    body = feed(vevent("DTSTART;TZID=Europe/Berlin:20261025T023000",
                       "DTEND;TZID=Europe/Berlin:20261025T040000"))
    assert rows(body) == [row("2026-10-25 00:30", "2026-10-25 03:00")]


# -- durations and empty events ---------------------------------------------------------


def test_duration_instead_of_dtend() -> None:
    body = feed(vevent("DTSTART;TZID=Europe/Berlin:20260310T090000", "DURATION:PT1H30M"))
    assert rows(body) == [row("2026-03-10 08:00", "2026-03-10 09:30")]


def test_duration_in_days_on_series() -> None:
    body = feed(vevent("DTSTART:20260302T220000Z", "DURATION:P1DT2H",
                       "RRULE:FREQ=WEEKLY;COUNT=2"))
    assert rows(body) == [
        row("2026-03-02 22:00", "2026-03-04 00:00"),
        row("2026-03-09 22:00", "2026-03-11 00:00"),
    ]


@pytest.mark.parametrize("end", [
    ("DTEND:20260302T090000Z",),
    ("DURATION:PT0S",),
    (),  # a DATE-TIME start without DTEND or DURATION has no length
])
def test_zero_length_event_blocks_nothing(end: tuple[str, ...]) -> None:
    assert rows(feed(vevent("DTSTART:20260302T090000Z", *end))) == []


def test_event_ending_before_it_starts_is_read_swapped() -> None:
    """recurring-ical-events swaps a DTEND before DTSTART: the hour still blocks."""
    body = feed(vevent("DTSTART:20260302T100000Z", "DTEND:20260302T090000Z"))
    assert rows(body) == [one_hour("2026-03-02 09:00")]


# -- time zone definitions from the feed ------------------------------------------------


def test_windows_tzid_with_vtimezone() -> None:
    body = feed(W_EUROPE_VTIMEZONE, vevent(
        "DTSTART;TZID=W. Europe Standard Time:20260319T090000",
        "DTEND;TZID=W. Europe Standard Time:20260319T100000",
        "RRULE:FREQ=WEEKLY;COUNT=3",
    ))
    assert rows(body, zone="UTC") == [
        one_hour("2026-03-19 08:00"),
        one_hour("2026-03-26 08:00"),
        one_hour("2026-04-02 07:00"),
    ]


def test_windows_tzid_pacific() -> None:
    body = feed(PACIFIC_VTIMEZONE, vevent(
        "DTSTART;TZID=Pacific Standard Time:20260305T090000",
        "DTEND;TZID=Pacific Standard Time:20260305T100000",
        "RRULE:FREQ=WEEKLY;COUNT=2",
    ))
    # US daylight time starts March 8: PST (-8) then PDT (-7).
    assert rows(body, zone="Europe/Berlin") == [
        one_hour("2026-03-05 17:00"),
        one_hour("2026-03-12 16:00"),
    ]


GOOGLE_HEADERS = ("CALSCALE:GREGORIAN", "METHOD:PUBLISH", "X-WR-CALNAME:Work",
                  "X-WR-TIMEZONE:Europe/Berlin")


def test_x_wr_timezone_reanchors_utc_times() -> None:
    """Google exports recurring events in UTC with the zone in X-WR-TIMEZONE:
    18:00 Berlin stays 18:00 local after the clocks change."""
    event = vevent("DTSTART:20260319T170000Z", "DTEND:20260319T180000Z",
                   "RRULE:FREQ=WEEKLY;COUNT=3")
    assert rows(feed(event, headers=GOOGLE_HEADERS), zone="UTC") == [
        one_hour("2026-03-19 17:00"),
        one_hour("2026-03-26 17:00"),
        one_hour("2026-04-02 16:00"),
    ]
    # Without the header the rule stays in UTC.
    assert rows(feed(event), zone="UTC") == [
        one_hour("2026-03-19 17:00"),
        one_hour("2026-03-26 17:00"),
        one_hour("2026-04-02 17:00"),
    ]


def test_x_wr_timezone_in_autumn_with_exdate() -> None:
    event = vevent("DTSTART:20261015T160000Z", "DTEND:20261015T170000Z",
                   "RRULE:FREQ=WEEKLY;UNTIL=20261106T000000Z",
                   "EXDATE:20261022T160000Z")
    assert rows(feed(event, headers=GOOGLE_HEADERS), zone="UTC") == [
        one_hour("2026-10-15 16:00"),
        one_hour("2026-10-29 17:00"),
        one_hour("2026-11-05 17:00"),
    ]


# -- VFREEBUSY -------------------------------------------------------------------------


def test_vfreebusy_periods() -> None:
    body = feed("\n".join([
        "BEGIN:VFREEBUSY",
        "UID:fb-1",
        "DTSTAMP:20260101T000000Z",
        "DTSTART:20260301T000000Z",
        "DTEND:20260401T000000Z",
        "FREEBUSY;FBTYPE=BUSY:20260302T090000Z/20260302T100000Z,20260303T090000Z/PT30M",
        "FREEBUSY;FBTYPE=BUSY-TENTATIVE:20260304T090000Z/20260304T100000Z",
        "FREEBUSY;FBTYPE=FREE:20260305T090000Z/20260305T100000Z",
        "FREEBUSY;FBTYPE=BUSY-UNAVAILABLE:20260306T090000Z/20260306T100000Z",
        "FREEBUSY:20260307T090000Z/20260307T100000Z",
        "FREEBUSY:20260201T090000Z/20260201T100000Z",
        "END:VFREEBUSY",
    ]))
    expansion = expand_one(body)
    assert expansion.recurring is False
    assert sorted(expansion.instances, key=lambda r: r.start) == [
        one_hour("2026-03-02 09:00"),
        row("2026-03-03 09:00", "2026-03-03 09:30"),
        one_hour("2026-03-04 09:00", TENTATIVE),
        one_hour("2026-03-06 09:00"),
        one_hour("2026-03-07 09:00"),
    ]


# -- limits and the window ---------------------------------------------------------------


def test_hourly_rule_is_capped() -> None:
    body = feed(vevent("DTSTART:20260301T000000Z", "DURATION:PT1M", "RRULE:FREQ=HOURLY"))
    expansion = expand_one(body)
    assert expansion.truncated is True
    assert expansion.recurring is True
    assert len(expansion.instances) == MAX_INSTANCES_PER_ITEM
    first, last = expansion.instances[0], expansion.instances[-1]
    assert first == BusyRow(ts("2026-03-01 00:00"), ts("2026-03-01 00:00") + 60, BUSY)
    assert last.start == first.start + 3600 * (MAX_INSTANCES_PER_ITEM - 1)


def test_transparent_dense_series_gives_nothing() -> None:
    body = feed(vevent("DTSTART:20200301T000000Z", "DURATION:PT1M", "RRULE:FREQ=HOURLY",
                       "TRANSP:TRANSPARENT"))
    expansion = expand_one(body)
    assert expansion.instances == () and expansion.truncated is False


@pytest.mark.parametrize("freq", ["SECONDLY", "MINUTELY"])
def test_sub_hourly_rules_are_refused(freq: str) -> None:
    body = feed(vevent("DTSTART:20260301T000000Z", "DURATION:PT1S", f"RRULE:FREQ={freq}"))
    with pytest.raises(BadItem, match="refused"):
        expand_one(body)


@pytest.mark.parametrize("prop", ["DTSTART:notadate", "DURATION:bogus"])
def test_unreadable_times_are_reported_not_dropped(prop: str) -> None:
    lines = ["DTSTART:20260301T100000Z", "DTEND:20260301T110000Z"]
    lines = [prop if line.split(":")[0] == prop.split(":")[0] else line for line in lines]
    if prop.startswith("DURATION"):
        lines = ["DTSTART:20260301T100000Z", prop]
    with pytest.raises(BadItem):
        expand_one(feed(vevent(*lines)))


def test_long_daily_series_within_cap_is_not_truncated() -> None:
    body = feed(vevent("DTSTART:20260220T090000Z", "DTEND:20260220T100000Z",
                       "RRULE:FREQ=DAILY"))
    expansion = expand_one(body)
    assert expansion.truncated is False
    # March 1 .. December 30: the window ends at midnight on December 31.
    assert len(expansion.instances) == 305
    assert expansion.instances[0] == one_hour("2026-03-01 09:00")
    assert expansion.instances[-1] == one_hour("2026-12-30 09:00")


def test_occurrences_before_window_start_are_dropped() -> None:
    body = feed(vevent("DTSTART:20260201T090000Z", "DTEND:20260201T100000Z",
                       "RRULE:FREQ=WEEKLY;COUNT=6"))
    # Feb 1, 8, 15, 22 are before the window; Mar 1 and 8 remain.
    assert rows(body) == [one_hour("2026-03-01 09:00"), one_hour("2026-03-08 09:00")]


def test_occurrence_overlapping_window_start_is_kept_whole() -> None:
    body = feed(vevent("DTSTART:20260226T233000Z", "DTEND:20260227T003000Z",
                       "RRULE:FREQ=DAILY;COUNT=4"))
    assert rows(body) == [
        row("2026-02-28 23:30", "2026-03-01 00:30"),
        row("2026-03-01 23:30", "2026-03-02 00:30"),
    ]


def test_event_ending_at_window_start_is_dropped() -> None:
    body = feed(vevent("DTSTART:20260228T230000Z", "DTEND:20260301T000000Z"))
    assert rows(body) == []


def test_recurring_expansion_stops_at_window_end() -> None:
    body = feed(vevent("DTSTART:20260302T090000Z", "DTEND:20260302T100000Z",
                       "RRULE:FREQ=WEEKLY"))
    end = datetime(2026, 3, 23, 9, 0, tzinfo=UTC)
    assert rows(body, end=end) == [
        one_hour("2026-03-02 09:00"),
        one_hour("2026-03-09 09:00"),
        one_hour("2026-03-16 09:00"),
    ]


@pytest.mark.parametrize("when", ["20270615T090000Z", "20400102T090000Z"])
def test_single_event_beyond_window_end_is_kept(when: str) -> None:
    body = feed(vevent(f"DTSTART:{when}", "DURATION:PT1H"))
    start = int(datetime.strptime(when, "%Y%m%dT%H%M%S%z").timestamp())
    expansion = expand_one(body)
    assert expansion.recurring is False
    assert list(expansion.instances) == [BusyRow(start, start + 3600, BUSY)]


def test_single_event_before_window_is_dropped() -> None:
    body = feed(vevent("DTSTART:20250615T090000Z", "DURATION:PT1H"))
    assert rows(body) == []


# -- unreadable items --------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "",
    "garbage",
    "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:x\r\nDTSTART:20260302T090000Z\r\n",
    "BEGIN:VCALENDAR\r\nBEGIN:VFREEBUSY\r\nUID:x\r\nFREEBUSY:garbage\r\n"
    "END:VFREEBUSY\r\nEND:VCALENDAR\r\n",
])
def test_malformed_item_is_bad_item(text: str) -> None:
    with pytest.raises(BadItem):
        expand_item(text, context())


def test_event_without_dtstart_is_bad_item() -> None:
    items, _ = split_feed(feed(vevent("DTEND:20260302T100000Z", "SUMMARY:No start")))
    assert len(items) == 1
    with pytest.raises(BadItem):
        expand_item(items[0].ical, context())


def test_bad_item_is_a_value_error() -> None:
    assert issubclass(BadItem, ValueError)


# -- split_feed ---------------------------------------------------------------------------


@pytest.mark.parametrize("body", [
    b"",
    b"   \r\n\t",
    b"<!DOCTYPE html><html><body>Please sign in</body></html>",
    b"<html><head><title>Login</title></head></html>",
    b'{"error": "unauthorized"}',
    b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\n",
])
def test_split_feed_rejects_non_calendar(body: bytes) -> None:
    with pytest.raises(BadUpstreamData):
        split_feed(body)


def test_split_feed_accepts_bom_and_empty_calendar() -> None:
    items, skipped = split_feed(b"\xef\xbb\xbf" + feed())
    assert (items, skipped) == ([], [])


def test_split_feed_groups_master_and_overrides_by_uid() -> None:
    body = feed(
        W_EUROPE_VTIMEZONE,
        PACIFIC_VTIMEZONE,
        vevent("DTSTART;TZID=W. Europe Standard Time:20260305T090000",
               "DTEND;TZID=W. Europe Standard Time:20260305T100000",
               "RRULE:FREQ=WEEKLY;COUNT=3", uid="series"),
        vevent("DTSTART:20260306T090000Z", "DTEND:20260306T100000Z", uid="single"),
        vevent("RECURRENCE-ID;TZID=W. Europe Standard Time:20260312T090000",
               "DTSTART;TZID=W. Europe Standard Time:20260312T110000",
               "DTEND;TZID=W. Europe Standard Time:20260312T120000", uid="series"),
    )
    items, skipped = split_feed(body)
    assert skipped == []
    by_key = {item.key: item for item in items}
    assert sorted(by_key) == ["series", "single"]

    series = Calendar.from_ical(by_key["series"].ical)
    events = series.walk("VEVENT")
    assert len(events) == 2
    assert sum("RECURRENCE-ID" in e for e in events) == 1
    # The referenced zone travels with the item; the unreferenced one does not.
    assert [str(z["TZID"]) for z in series.walk("VTIMEZONE")] == ["W. Europe Standard Time"]

    single = Calendar.from_ical(by_key["single"].ical)
    assert single.walk("VTIMEZONE") == []
    assert len(single.walk("VEVENT")) == 1

    assert list(expand_item(by_key["series"].ical, context(zone="UTC")).instances) == [
        one_hour("2026-03-05 08:00"),
        one_hour("2026-03-12 10:00"),
        one_hour("2026-03-19 08:00"),
    ]


def test_split_feed_groups_across_concatenated_calendars() -> None:
    body = feed(vevent("DTSTART:20260302T090000Z", "DTEND:20260302T100000Z",
                       "RRULE:FREQ=DAILY;COUNT=2", uid="u")) + feed(
        vevent("RECURRENCE-ID:20260303T090000Z", "DTSTART:20260303T090000Z",
               "DTEND:20260303T100000Z", "STATUS:CANCELLED", uid="u"))
    items, _ = split_feed(body)
    assert [item.key for item in items] == ["u"]
    assert list(expand_item(items[0].ical, context()).instances) == [
        one_hour("2026-03-02 09:00")
    ]


def test_item_without_uid_gets_stable_key() -> None:
    body = feed(
        vevent("DTSTART:20260302T090000Z", "DTEND:20260302T100000Z", uid=None),
        vevent("DTSTART:20260303T090000Z", "DTEND:20260303T100000Z", uid=None),
    )
    first, _ = split_feed(body)
    again, _ = split_feed(body)
    keys = [item.key for item in first]
    assert keys == [item.key for item in again]
    assert len(set(keys)) == 2
    assert all(key.startswith("sha256-") for key in keys)
    # Expansion works on them like on any other item.
    assert [list(expand_item(item.ical, context()).instances) for item in first] == [
        [one_hour("2026-03-02 09:00")],
        [one_hour("2026-03-03 09:00")],
    ]


def test_overlong_uid_is_hashed() -> None:
    long_uid = "x" * 500
    body = feed(vevent("DTSTART:20260302T090000Z", "DTEND:20260302T100000Z", uid=long_uid))
    (item,), _ = split_feed(body)
    assert item.key.startswith("sha256-")
    assert len(item.key) < 100
    (again,), _ = split_feed(body)
    assert again.key == item.key


# -- the helpers directly ----------------------------------------------------------------


def test_to_utc() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    assert to_utc(date(2026, 7, 1), berlin) == datetime(2026, 6, 30, 22, tzinfo=UTC)
    floating = datetime(2026, 1, 15, 9, 0, tzinfo=berlin).replace(tzinfo=None)
    assert to_utc(floating, berlin) == datetime(2026, 1, 15, 8, tzinfo=UTC)
    aware = datetime(2026, 1, 15, 9, 0, tzinfo=ZoneInfo("America/New_York"))
    assert to_utc(aware, berlin) == datetime(2026, 1, 15, 14, tzinfo=UTC)
    assert to_utc(aware, berlin).tzinfo is UTC


def test_busy_status_on_a_component() -> None:
    event = Event()
    assert busy_status(event, frozenset()) == BUSY
    event.add("STATUS", "TENTATIVE")
    assert busy_status(event, frozenset()) == TENTATIVE
    event.add("ATTENDEE", "mailto:Owner@example.com", parameters={"PARTSTAT": "DECLINED"})
    assert busy_status(event, OWNER) is None
    assert busy_status(event, frozenset()) == TENTATIVE


# -- each item read on its own ------------------------------------------------------


CUSTOM_ZONE = """BEGIN:VTIMEZONE
TZID:Custom/Plus5
BEGIN:STANDARD
DTSTART:19700101T000000
TZOFFSETFROM:+0500
TZOFFSETTO:+0500
END:STANDARD
END:VTIMEZONE"""


def test_an_item_is_read_alone_whatever_was_read_before() -> None:
    """icalendar keeps the first custom VTIMEZONE of a TZID process-wide: an item (of any
    source) naming that TZID without defining it must not borrow it."""
    names = feed(vevent("DTSTART;TZID=Custom/Plus5:20260610T090000",
                        "DTEND;TZID=Custom/Plus5:20260610T100000", uid="names-it"))
    defines = feed(CUSTOM_ZONE, vevent("DTSTART;TZID=Custom/Plus5:20260611T090000",
                                       "DTEND;TZID=Custom/Plus5:20260611T100000",
                                       uid="defines-it"))
    alone = rows(names, zone="UTC")
    assert alone == [one_hour("20260610T090000Z")], "an unknown TZID is floating"
    assert rows(defines, zone="UTC") == [one_hour("20260611T040000Z")], "09:00 at +05:00"
    assert rows(names, zone="UTC") == alone


# -- occurrences read in place -------------------------------------------------------


def _by_copies(calendar: Calendar, ctx: ExpandContext, limit: datetime) -> list[Any]:
    """The library's default reading: a copy of the VEVENT for each occurrence."""
    query = recurring_ical_events.of(calendar, skip_bad_series=True)
    return [(o, o.start, o.end) for o in query.between(ctx.window_start - expand._PAD,
                                                       limit + expand._PAD)]


def _corpus_items() -> list[tuple[str, str]]:
    bodies = [(path.name, path.read_bytes())
              for path in sorted((Path(__file__).parent / "data" / "hostile").glob("*.ics"))]
    bodies += [(corpus_id(path), path.read_bytes()) for path in corpus_files()]
    found = []
    for name, body in bodies:
        try:
            items, _ = split_feed(body)
        except BadUpstreamData:
            continue
        # Only these reach the library: a plain event is read directly.
        found += [(f"{name}:{item.key}", item.ical) for item in items
                  if any(word in item.ical for word in ("RRULE", "RDATE", "RECURRENCE-ID",
                                                         "EXDATE"))]
    return found


def _window(ical: str) -> ExpandContext:
    """The horizon from the item's first start (or the usual window when it has none)."""
    try:
        starts = [to_utc(e["DTSTART"].dt, ZoneInfo("UTC"))
                  for e in Calendar.from_ical(ical).walk("VEVENT") if "DTSTART" in e]
    except Exception:
        starts = []
    first = min(starts, default=WINDOW_START)
    if not datetime(1900, 1, 1, tzinfo=UTC) < first < datetime(9000, 1, 1, tzinfo=UTC):
        first = WINDOW_START  # the years 1 and 9999: no window of a horizon fits
    return context(start=first - timedelta(days=1), end=first + timedelta(days=120))


def test_occurrences_in_place_are_the_librarys_copies(monkeypatch: pytest.MonkeyPatch) -> None:
    """Occurrences are taken as (VEVENT, start, end) through recurring-ical-events'
    extension points instead of one copy of the VEVENT each: the same rows, statuses
    and reasons, for every item of the hostile files and the real-world corpus."""
    items = _corpus_items()
    assert len(items) > 200
    recurring = 0
    for name, ical in items:
        ctx = _window(ical)
        outcomes = []
        for how in (expand._expanded, _by_copies):
            monkeypatch.setattr(expand, "_expanded", how)
            try:
                outcomes.append(expand_item(ical, ctx))
            except BadItem as exc:
                outcomes.append(str(exc))
        assert outcomes[0] == outcomes[1], name
        recurring += isinstance(outcomes[0], Expansion) and outcomes[0].recurring
    assert recurring > 100, "the recurring items, where the two readings differ in cost"
