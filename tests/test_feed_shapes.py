"""Real-world feed shapes (issue 17): each has a minimal reproduction and the busy
intervals it must give, through ``split_feed`` + ``expand_item`` over a fixed window,
and a few end to end through an ICS file source and the sync round.

The pure tests use fixed dates (expansion takes its window explicitly); the end-to-end
ones place their events relative to the suite's clock (``tests.conftest.NOW``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import server.sync.expand
from adapters.base import BadUpstreamData
from adapters.ics import read_feed, split_feed
from server.sync.expand import BadItem, ExpandContext, Expansion, expand_item
from tests.conftest import NOW
from tests.corpus import lost_vevents

BERLIN = ExpandContext(ZoneInfo("Europe/Berlin"), datetime(2026, 3, 1, tzinfo=UTC),
                       datetime(2026, 12, 31, tzinfo=UTC))
SECRET = "s3cret-s3cret-s3cret-0001"
Interval = tuple[str, str]


def vevent(uid: str, *lines: str) -> list[str]:
    return ["BEGIN:VEVENT", f"UID:{uid}", "DTSTAMP:20260101T000000Z", *lines, "END:VEVENT"]


def calendar(*lines: str | list[str], headers: tuple[str, ...] = ()) -> str:
    flat = [line for part in lines for line in ([part] if isinstance(part, str) else part)]
    return "\r\n".join(["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//fbproxy tests//shapes//EN",
                        *headers, *flat, "END:VCALENDAR"]) + "\r\n"


def _utc(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")


def expansions(body: str | bytes) -> dict[str, Expansion]:
    items, skipped = split_feed(body.encode() if isinstance(body, str) else body)
    assert skipped == []
    return {item.key: expand_item(item.ical, BERLIN) for item in items}


def busy(body: str | bytes) -> dict[str, list[Interval]]:
    """{item key: [(start, end) in UTC]} for a feed in a Europe/Berlin source."""
    return {key: [(_utc(r.start), _utc(r.end)) for r in expansion.instances]
            for key, expansion in expansions(body).items()}


# -- 1. X-WR-TIMEZONE on plain (non-recurring) floating events ------------------------------

NEW_YORK = ("X-WR-TIMEZONE:America/New_York",)


def test_x_wr_timezone_places_floating_times_of_single_and_recurring_events() -> None:
    body = calendar(vevent("single", "DTSTART:20260310T090000", "DTEND:20260310T100000"),
                    vevent("series", "DTSTART:20260310T090000", "DTEND:20260310T100000",
                           "RRULE:FREQ=DAILY;COUNT=2"),
                    vevent("utc", "DTSTART:20260310T090000Z", "DTEND:20260310T100000Z"),
                    vevent("all-day", "DTSTART;VALUE=DATE:20260312"),
                    headers=NEW_YORK)
    assert busy(body) == {
        # 09:00 in New York (EDT since 8 March), not in the source's Berlin.
        "single": [("2026-03-10 13:00", "2026-03-10 14:00")],
        "series": [("2026-03-10 13:00", "2026-03-10 14:00"),
                   ("2026-03-11 13:00", "2026-03-11 14:00")],
        "utc": [("2026-03-10 09:00", "2026-03-10 10:00")],
        # Dates are the source's days on both paths (the library leaves them alone).
        "all-day": [("2026-03-11 23:00", "2026-03-12 23:00")],
    }


def test_unknown_x_wr_timezone_is_ignored_on_both_paths_and_reported() -> None:
    body = calendar(vevent("single", "DTSTART:20260310T090000", "DTEND:20260310T100000"),
                    vevent("series", "DTSTART:20260310T090000", "DTEND:20260310T100000",
                           "RRULE:FREQ=DAILY;COUNT=1"),
                    headers=("X-WR-TIMEZONE:Eastern Standard Time",))
    # Read in the source's zone; the series used to be skipped by x-wr-timezone's error.
    assert busy(body) == {"single": [("2026-03-10 08:00", "2026-03-10 09:00")],
                          "series": [("2026-03-10 08:00", "2026-03-10 09:00")]}
    assert read_feed(body.encode()).warnings == [
        "X-WR-TIMEZONE 'Eastern Standard Time' (line 4) is no time zone fbproxy knows: "
        "ignored, floating times are read in the source's zone"]
    # An item stored with it before is read the same way.
    stored = calendar(vevent("old", "DTSTART:20260310T090000", "DTEND:20260310T100000",
                             "RRULE:FREQ=DAILY;COUNT=1"), headers=("X-WR-TIMEZONE:Nowhere/X",))
    assert [(_utc(r.start), _utc(r.end)) for r in expand_item(stored, BERLIN).instances] == [
        ("2026-03-10 08:00", "2026-03-10 09:00")]


# -- 2. An empty RRULE ---------------------------------------------------------------------


def test_empty_rrule_is_no_recurrence() -> None:
    body = calendar(vevent("holiday", "DTSTART;VALUE=DATE:20260310", "RRULE:"),
                    vevent("timed", "DTSTART:20260311T090000Z", "DURATION:PT1H", "RRULE:"))
    found = expansions(body)
    assert {key: [(_utc(r.start), _utc(r.end)) for r in e.instances]
            for key, e in found.items()} == {
        "holiday": [("2026-03-09 23:00", "2026-03-10 23:00")],
        "timed": [("2026-03-11 09:00", "2026-03-11 10:00")],
    }
    assert not any(e.recurring for e in found.values())


def test_rrule_without_freq_is_refused_by_name() -> None:
    (item,), _ = split_feed(calendar(vevent("x", "DTSTART:20260311T090000Z",
                                            "RRULE:COUNT=3")).encode())
    with pytest.raises(BadItem, match="RRULE has no FREQ"):
        expand_item(item.ical, BERLIN)


# -- 3. Text after END:VCALENDAR, concatenated calendars ------------------------------------

ONE = vevent("one", "DTSTART:20260310T090000Z", "DTEND:20260310T100000Z")
TWO = vevent("two", "DTSTART:20260311T090000Z", "DTEND:20260311T100000Z")


def test_text_after_the_calendar_is_ignored_with_one_warning() -> None:
    body = calendar(ONE) + "X-COMMENT:Cached from https://example.org/cal.ics\r\n\r\nmore\r\n"
    contents = read_feed(body.encode())
    assert [item.key for item in contents.items] == ["one"] and contents.skipped == []
    assert contents.warnings == ["ignored 2 line(s) outside any VCALENDAR, from line 11"]
    assert busy(body) == {"one": [("2026-03-10 09:00", "2026-03-10 10:00")]}


def test_concatenated_calendars_are_all_read() -> None:
    body = calendar(ONE, headers=NEW_YORK) + calendar(TWO)
    contents = read_feed(body.encode())
    assert [item.key for item in contents.items] == ["one", "two"]
    assert contents.warnings == []
    # Each calendar's X-WR-TIMEZONE stays with its own events.
    assert "X-WR-TIMEZONE" in contents.items[0].ical
    assert "X-WR-TIMEZONE" not in contents.items[1].ical


def test_a_second_calendar_cut_short_refuses_the_feed() -> None:
    body = calendar(ONE) + "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:two\r\n"
    with pytest.raises(BadUpstreamData, match="cut short: 'VEVENT' opened at line 12"):
        split_feed(body.encode())


def test_an_event_outside_any_calendar_is_skipped_by_name() -> None:
    body = calendar(ONE) + "\r\n".join(TWO) + "\r\n"
    items, skipped = split_feed(body.encode())
    assert [item.key for item in items] == ["one"]
    assert [(s.key, s.reason) for s in skipped] == [
        ("two", "a 'VEVENT' outside any VCALENDAR (line 11)")]


# -- 4. EXDATE on a non-recurring event -----------------------------------------------------


def test_exdate_equal_to_dtstart_removes_the_only_instance() -> None:
    body = calendar(
        vevent("gone", "DTSTART:20260310T090000Z", "DTEND:20260310T100000Z",
               "EXDATE:20260310T090000Z"),
        # The same instant written in another zone is the same instance.
        vevent("gone-zoned", "DTSTART;TZID=Europe/Berlin:20260310T100000", "DURATION:PT1H",
               "EXDATE:20260310T090000Z"),
        vevent("gone-all-day", "DTSTART;VALUE=DATE:20260312", "EXDATE;VALUE=DATE:20260312"),
        vevent("kept", "DTSTART:20260311T090000Z", "DTEND:20260311T100000Z",
               "EXDATE:20260318T090000Z"))
    assert busy(body) == {"gone": [], "gone-zoned": [], "gone-all-day": [],
                          "kept": [("2026-03-11 09:00", "2026-03-11 10:00")]}


# -- 5. VEVENTs sharing a UID without RECURRENCE-ID ------------------------------------------

SERIES = vevent("shared", "DTSTART:20260310T090000Z", "DTEND:20260310T100000Z",
                "RRULE:FREQ=DAILY;COUNT=2")
SINGLE = vevent("shared", "DTSTART:20260410T090000Z", "DTEND:20260410T100000Z")
SHARED_BUSY = [("2026-03-10 09:00", "2026-03-10 10:00"), ("2026-03-11 09:00", "2026-03-11 10:00"),
               ("2026-04-10 09:00", "2026-04-10 10:00")]


@pytest.mark.parametrize("order", ["series first", "single first"])
def test_every_copy_of_a_uid_blocks_time_whether_or_not_one_recurs(order: str) -> None:
    copies = (SERIES, SINGLE) if order == "series first" else (SINGLE, SERIES)
    assert busy(calendar(*copies)) == {"shared": SHARED_BUSY}


def test_copies_with_an_override_and_identical_copies() -> None:
    moved = vevent("shared", "RECURRENCE-ID:20260311T090000Z", "DTSTART:20260311T150000Z",
                   "DTEND:20260311T160000Z")
    assert busy(calendar(SERIES, SINGLE, moved, SINGLE)) == {"shared": [
        ("2026-03-10 09:00", "2026-03-10 10:00"), ("2026-03-11 15:00", "2026-03-11 16:00"),
        ("2026-04-10 09:00", "2026-04-10 10:00")]}
    # Two plain copies at different times (a merged export) both block, as before.
    other = vevent("shared", "DTSTART:20260412T090000Z", "DTEND:20260412T100000Z")
    assert busy(calendar(SINGLE, other)) == {"shared": [
        ("2026-04-10 09:00", "2026-04-10 10:00"), ("2026-04-12 09:00", "2026-04-12 10:00")]}


def test_an_unreadable_copy_is_skipped_by_name_and_the_others_read() -> None:
    reply = vevent("shared", "SEQUENCE:2", "ATTENDEE;PARTSTAT=ACCEPTED:mailto:a@example.org")
    broken = vevent("shared", "DTSTART:2026-04-12 <b>", "DTEND:20260412T100000Z")
    [expansion] = expansions(calendar(SERIES, reply, SINGLE, broken)).values()
    assert [(_utc(r.start), _utc(r.end)) for r in expansion.instances] == SHARED_BUSY
    assert len(expansion.skipped) == 2
    first, second = expansion.skipped
    assert first.startswith("VEVENT 2 of 4 (SEQUENCE 2) is left out, the rest of this UID is "
                            "read: a VEVENT has no DTSTART")
    assert second.startswith("VEVENT 4 of 4 (DTSTART 2026-04-12..b.) is left out")
    assert "<" not in second.split(":")[0]


def test_a_uid_whose_only_copies_are_unreadable_is_skipped_whole() -> None:
    reply = vevent("shared", "SEQUENCE:2")
    (item,), _ = split_feed(calendar(reply, reply).encode())
    with pytest.raises(BadItem, match=r"no DTSTART \(and 1 more VEVENTs with this UID\)"):
        expand_item(item.ical, BERLIN)


def test_copies_share_one_budget_of_rule_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server.sync.expand, "MAX_RULE_STEPS", 1000)
    # Each daily rule from mid-2025 steps ~580 times up to the window's end; two do not fit.
    daily = vevent("dense", "DTSTART:20250601T090000Z", "DURATION:PT1H", "RRULE:FREQ=DAILY")
    later = vevent("dense", "DTSTART:20250601T100000Z", "DURATION:PT1H", "RRULE:FREQ=DAILY")
    [expansion] = expansions(calendar(daily, later)).values()
    assert len(expansion.instances) == 305  # the first copy, 1 March to 30 December
    [reason] = expansion.skipped
    assert reason.startswith("VEVENT 2 of 2 (DTSTART 20250601T100000Z) is left out")
    assert "with the other rules of this UID, more than 1,000 in all" in reason


def test_many_copies_with_many_overrides_are_bounded_and_reported() -> None:
    """Each copy is a whole expansion with every override: a hostile item of 1,000
    copies and 1,000 overrides took 22 s before the bounds."""
    copies = [vevent("many", f"DTSTART:20260302T{i % 24:02d}{i // 24:02d}00Z", "DURATION:PT5M",
                     "RRULE:FREQ=WEEKLY") for i in range(400)]
    overrides = [vevent("many", f"RECURRENCE-ID:20260309T{i % 24:02d}{i // 24:02d}00Z",
                        f"DTSTART:20260310T{i % 24:02d}{i // 24:02d}00Z", "DURATION:PT5M")
                 for i in range(400)]
    # The bound is on work (copies x overrides read), shown by the reason below; no
    # wall-clock limit here, which a loaded machine would break (bench/ measures time).
    [expansion] = expansions(calendar(*copies, *overrides)).values()
    [reason] = expansion.skipped
    assert reason == ("351 more VEVENTs with this UID and no RECURRENCE-ID, from VEVENT 50 of "
                      "800, are left out: each copy is expanded with the 400 overrides, and "
                      "more would cost more than 20,000 readings of them")
    assert len(expansion.instances) > 49 * 40


# -- 6. An all-day start with a duration in hours ---------------------------------------------


def test_date_with_hours_duration_blocks_from_midnight_in_the_source_zone() -> None:
    body = calendar(
        vevent("single", "DTSTART;VALUE=DATE:20260310", "DURATION:PT1H"),
        vevent("series", "DTSTART;VALUE=DATE:20260310", "DURATION:PT1H",
               "RRULE:FREQ=DAILY;COUNT=2"),
        vevent("day-and-hour", "DTSTART;VALUE=DATE:20260312", "DURATION:P1DT1H"),
        vevent("whole-days", "DTSTART;VALUE=DATE:20260314", "DURATION:P2D"))
    # The recurring path (recurring-ical-events) reads it so; the plain one now agrees.
    assert busy(body) == {
        "single": [("2026-03-09 23:00", "2026-03-10 00:00")],
        "series": [("2026-03-09 23:00", "2026-03-10 00:00"),
                   ("2026-03-10 23:00", "2026-03-11 00:00")],
        "day-and-hour": [("2026-03-11 23:00", "2026-03-13 00:00")],
        "whole-days": [("2026-03-13 23:00", "2026-03-15 23:00")],
    }


# -- 7. A mismatched END line -----------------------------------------------------------------


def test_mismatched_end_names_the_physical_line_and_the_open_component() -> None:
    folded = vevent("one", "DTSTART:20260310T090000Z", "DTEND:20260310T100000Z",
                    "DESCRIPTION:a long", " description folded", " over three lines")
    body = "\r\n" + calendar(folded).replace("END:VCALENDAR", "END:VCALENDARD")
    with pytest.raises(BadUpstreamData) as caught:
        split_feed(body.encode())
    # Physical lines of the body as received: the blank first line and folds count.
    assert str(caught.value) == \
        "line 14: END:'VCALENDARD' does not close 'VCALENDAR' (opened at line 2)"


# -- 8. Nested calendars and components that are not busy time --------------------------------


def test_a_calendar_nested_in_a_calendar_is_read_with_a_warning() -> None:
    inner = ["BEGIN:VCALENDAR", "VERSION:2.0", *TWO, "END:VCALENDAR"]
    body = calendar(ONE, inner, headers=NEW_YORK)
    contents = read_feed(body.encode())
    assert contents.warnings == [
        "read 1 VCALENDAR(s) nested inside another as part of it, from line 11"]
    assert busy(body) == {"one": [("2026-03-10 09:00", "2026-03-10 10:00")],
                          "two": [("2026-03-11 09:00", "2026-03-11 10:00")]}
    # The inner calendar's floating times take the outer X-WR-TIMEZONE unless it has its own.
    floating = ["BEGIN:VCALENDAR", *vevent("f", "DTSTART:20260312T090000", "DURATION:PT1H"),
                "END:VCALENDAR"]
    own = ["BEGIN:VCALENDAR", "X-WR-TIMEZONE:Asia/Tokyo",
           *vevent("t", "DTSTART:20260312T090000", "DURATION:PT1H"), "END:VCALENDAR"]
    assert busy(calendar(floating, own, headers=NEW_YORK)) == {
        "f": [("2026-03-12 13:00", "2026-03-12 14:00")],
        "t": [("2026-03-12 00:00", "2026-03-12 01:00")]}


def test_components_that_are_not_busy_time_are_counted_and_a_wrapped_vevent_is_named() -> None:
    body = calendar(
        ONE,
        ["BEGIN:VTODO", "UID:todo", "DTSTART:20260310T090000Z", "END:VTODO"],
        ["BEGIN:VJOURNAL", "UID:journal", "END:VJOURNAL"],
        ["BEGIN:VAVAILABILITY", "UID:avail", "BEGIN:AVAILABLE", "UID:a1",
         "DTSTART:20260310T090000Z", "DTEND:20260310T170000Z", "END:AVAILABLE",
         "END:VAVAILABILITY"],
        ["BEGIN:X-WRAPPER", *TWO, "END:X-WRAPPER"])
    contents = read_feed(body.encode())
    assert [item.key for item in contents.items] == ["one"]
    assert contents.ignored == {"VTODO": 1, "VJOURNAL": 1, "VAVAILABILITY": 1}
    [skipped] = contents.skipped
    assert skipped.reason == "a VEVENT (UID 'two') inside a 'X.WRAPPER' (line 25) is not read"
    assert lost_vevents(body.encode()) == ""


@pytest.mark.parametrize("shape", [
    calendar(ONE) + "X-COMMENT:Cached\r\n" + "\r\n".join(TWO) + "\r\n",
    calendar(ONE, ["BEGIN:VCALENDAR", *TWO, "END:VCALENDAR"]),
    calendar(["BEGIN:X-WRAPPER", *TWO, "END:X-WRAPPER"], SERIES, SINGLE),
    calendar(vevent("outer", "DTSTART:20260310T090000Z", *TWO)),
    calendar(["BEGIN:VEVENT", "DTSTART:20260310T090000Z", "END:VEVENT"]),
], ids=["after the end", "nested calendar", "wrapper and copies", "vevent in vevent", "no uid"])
def test_every_vevent_is_in_an_item_or_skipped(shape: str) -> None:
    assert lost_vevents(shape.encode()) == ""


def test_the_vevent_census_sees_what_a_splitter_would_drop() -> None:
    body = calendar(ONE, ["BEGIN:VCALENDAR", *TWO, "END:VCALENDAR"]).encode()

    def drops_the_nested_calendar(body: bytes) -> tuple[list[Any], list[Any]]:
        items, skipped = split_feed(body)
        return [item for item in items if item.key != "two"], skipped

    assert lost_vevents(body, split=drops_the_nested_calendar) == "1 VEVENT(s) lost: ['two']"


# -- end to end: an ICS file source through the sync round -----------------------------------


def _day(offset: int) -> str:
    return (NOW + timedelta(days=offset)).strftime("%Y%m%d")


def _iso(offset: int, hour: int) -> str:
    return (NOW + timedelta(days=offset)).replace(hour=hour, minute=0, second=0, microsecond=0) \
        .strftime("%Y-%m-%dT%H:%M:%SZ")


async def _busy_api(client: Any) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    start, end = NOW.date(), (NOW + timedelta(days=7)).date()
    response = await client.get(f"/api/v1/freebusy?calendar=me&start={start}&end={end}",
                                headers={"Authorization": f"Bearer {SECRET}"})
    assert response.status == 200, await response.text()
    body = await response.json()
    return ([(b["start"], b["end"]) for b in body["busy"]],
            {s["name"]: s for s in body["sources"]})


def _rewrite(path: Path, text: str) -> None:
    """A new version of the file the next round sees (a later mtime, whatever the size)."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text, newline="")
    os.utime(path, ns=(before + 2_000_000_000, before + 2_000_000_000))


@pytest.fixture
def source_file(tmp_path: Path, make_config: Callable[..., Any],
                serve: Callable[..., Any]) -> Callable[..., Any]:
    """Start the app on one ICS file source in Europe/Berlin; returns (path, client, runtime)."""

    async def start(text: str) -> tuple[Path, Any, Any]:
        path = tmp_path / "feed.ics"
        _rewrite(path, text)
        client, runtime = await serve(make_config([{"name": "feed", "kind": "ics",
                                                    "url": str(path),
                                                    "timezone": "Europe/Berlin"}]))
        return path, client, runtime

    return start


async def test_round_reads_google_shapes_and_warns_once(
        source_file: Callable[..., Any], caplog: pytest.LogCaptureFixture) -> None:
    text = calendar(
        vevent("floating", f"DTSTART:{_day(1)}T090000", f"DTEND:{_day(1)}T100000"),
        vevent("exdated", f"DTSTART:{_day(2)}T090000Z", f"DTEND:{_day(2)}T100000Z",
               f"EXDATE:{_day(2)}T090000Z"),
        vevent("holiday", f"DTSTART;VALUE=DATE:{_day(3)}", "DURATION:PT1H", "RRULE:"),
        headers=("X-WR-TIMEZONE:America/New_York",),
    ) + "X-COMMENT:Cached from https://example.org/basic.ics\r\n"
    caplog.set_level(logging.INFO, logger="fbproxy")
    _, client, runtime = await source_file(text)
    [outcome] = await runtime.sync.run_all_once()
    assert outcome.ok and outcome.skipped == ()
    intervals, _ = await _busy_api(client)
    new_york = ZoneInfo("America/New_York")
    nine = (NOW + timedelta(days=1)).astimezone(new_york).replace(hour=9, minute=0, second=0,
                                                                   microsecond=0)
    berlin_midnight = datetime.combine((NOW + timedelta(days=3)).date(), datetime.min.time(),
                                       ZoneInfo("Europe/Berlin"))
    assert intervals == [
        (_z(nine), _z(nine + timedelta(hours=1))),
        (_z(berlin_midnight), _z(berlin_midnight + timedelta(hours=1))),
    ]
    warnings = [r for r in caplog.records if r.name == "fbproxy.ics"]
    assert [r.getMessage() for r in warnings] == [
        "source feed: ignored 1 line(s) outside any VCALENDAR, from line 26"]
    [again] = await runtime.sync.run_all_once()
    assert again.unchanged
    assert len([r for r in caplog.records if r.name == "fbproxy.ics"]) == 1, "once per round"


def _z(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_unreadable_copy_is_in_the_rounds_skipped_list(
        source_file: Callable[..., Any]) -> None:
    good = vevent("shared", f"DTSTART:{_day(1)}T090000Z", f"DTEND:{_day(1)}T100000Z")
    reply = vevent("shared", "SEQUENCE:3", "ATTENDEE;PARTSTAT=DECLINED:mailto:x@example.org")
    _, client, runtime = await source_file(calendar(reply, good))
    [outcome] = await runtime.sync.run_all_once()
    assert outcome.ok
    assert [(s.key, s.reason.split(":")[0]) for s in outcome.skipped] == [
        ("shared", "VEVENT 1 of 2 (SEQUENCE 3) is left out, the rest of this UID is read")]
    intervals, _ = await _busy_api(client)
    assert intervals == [(_iso(1, 9), _iso(1, 10))]


async def test_broken_end_line_refuses_the_feed_and_the_last_good_data_serves(
        source_file: Callable[..., Any]) -> None:
    good = calendar(vevent("a", f"DTSTART:{_day(1)}T090000Z", f"DTEND:{_day(1)}T100000Z"))
    path, client, runtime = await source_file(good)
    [first] = await runtime.sync.run_all_once()
    assert first.ok
    before, _ = await _busy_api(client)
    assert before == [(_iso(1, 9), _iso(1, 10))]

    broken = calendar(vevent("a", f"DTSTART:{_day(2)}T090000Z", f"DTEND:{_day(2)}T100000Z"))
    _rewrite(path, broken.replace("END:VCALENDAR", "END:VCALENDARD"))
    [refused] = await runtime.sync.run_all_once()
    message = "line 10: END:'VCALENDARD' does not close 'VCALENDAR' (opened at line 1)"
    assert not refused.ok and message in (refused.error or "")
    after, sources = await _busy_api(client)
    assert after == before, "the last good data keeps serving"
    assert message in (sources["feed"]["last_error"] or "")
    [record] = await runtime.store.sources()
    assert record.consecutive_failures == 1 and message in (record.last_error or "")


async def test_nested_calendar_blocks_time_end_to_end(
        source_file: Callable[..., Any], caplog: pytest.LogCaptureFixture) -> None:
    inner = ["BEGIN:VCALENDAR", "VERSION:2.0",
             *vevent("inner", f"DTSTART:{_day(1)}T090000Z", f"DTEND:{_day(1)}T100000Z"),
             "END:VCALENDAR"]
    _, client, runtime = await source_file(calendar(inner))
    [outcome] = await runtime.sync.run_all_once()
    assert outcome.ok and outcome.items == 1
    intervals, _ = await _busy_api(client)
    assert intervals == [(_iso(1, 9), _iso(1, 10))]
    assert any("nested inside another" in r.getMessage() and r.levelno == logging.WARNING
               for r in caplog.records if r.name == "fbproxy.ics")
