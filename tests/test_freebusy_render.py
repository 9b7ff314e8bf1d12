"""Every fast free/busy rendering path writes byte for byte what icalendar (or json.dumps)
writes whole: FREEBUSY lines from templates, the frame cut at its slots, the DTSTAMP
spliced in, answers sliced from a kept timeline, the feed reusing its last lines."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st
from icalendar import Calendar, vDatetime

from server.booking.availability import BUSY, TENTATIVE, BusyInterval, merge_rows
from server.booking.busy import SourceFreshness
from server.kit.clock import iso
from server.kit.durations import EARLIEST, LATEST
from server.outputs.feeds import clip, render_freebusy
from server.outputs.freebusy_cache import JsonBusy, RenderedTimeline, at_detail, json_block
from server.outputs.freebusy_pieces import (
    assemble,
    icalendar_period_lines,
    period_lines,
    render_freebusy_reusing,
    stamp_value,
)
from server.outputs.web import freebusy_json

FIRST, LAST = int(EARLIEST.timestamp()), int(LATEST.timestamp())
BASE = 1_795_000_000
statuses = st.sampled_from([BUSY, TENTATIVE])
# Anywhere a time-range may reach (clamped to 1900-2200), to the second.
anywhere = st.builds(lambda start, length, status: BusyInterval(start, start + length, status),
                     st.integers(FIRST, LAST - 1), st.integers(1, 10**8), statuses)
# Near each other, so that they overlap, touch and get clipped.
rows = st.lists(st.tuples(st.integers(0, 400), st.integers(1, 40), statuses), max_size=60)
names = st.one_of(st.sampled_from(["me", "alex", "a-very-long-calendar-name-" * 4]),
                  st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1,
                          max_size=90))  # wider than NAME_PATTERN allows
refreshes = st.sampled_from([None, timedelta(minutes=15), timedelta(hours=1)])
stamps = st.builds(lambda seconds, micro: datetime.fromtimestamp(seconds, UTC).replace(
    microsecond=micro), st.integers(FIRST, LAST - 1), st.integers(0, 999_999))


def timeline(raw: list[tuple[int, int, str]]) -> list[BusyInterval]:
    """A merged timeline, as the store and merge_rows make them."""
    return merge_rows((BASE + start * 600, BASE + (start + length) * 600, status)
                      for start, length, status in raw)


def window(spec: tuple[int, int, int, int]) -> tuple[int, int]:
    """On the blocks' 10-minute grid, or seconds off it (edges clipped, or just touching)."""
    start, length, start_off, end_off = spec
    return BASE + start * 300 + start_off, BASE + (start + length) * 300 + end_off


def at_edges(blocks: list[BusyInterval], specs: list[tuple[int, int, int, int]],
             ) -> list[tuple[int, int]]:
    """The windows of ``specs``, and windows that start or end right at blocks' edges."""
    found = [window(spec) for spec in specs]
    for block in blocks[:3]:
        found += [(block.end, block.end + 3600), (block.start - 3600, block.start),
                  (block.start, block.end), (block.start + 1, block.end - 1),
                  (block.end - 1, block.end + 1)]
    return [(start, end) for start, end in found if start < end]


windows = st.tuples(st.integers(-50, 800), st.integers(1, 800), st.sampled_from([-7, 0, 11]),
                    st.sampled_from([-11, 0, 7]))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(anywhere, max_size=30))
def test_period_lines_from_templates_are_icalendars(blocks: list[BusyInterval]) -> None:
    assert period_lines(blocks) == icalendar_period_lines(blocks)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(stamps)
def test_a_spliced_dtstamp_is_icalendars(stamp: datetime) -> None:
    assert stamp_value(stamp) == vDatetime(stamp.replace(microsecond=0)).to_ical()
    # Any zone: a DTSTAMP is written in UTC (RFC 5545 §3.8.7.2).
    assert stamp_value(stamp.astimezone(timezone(timedelta(hours=-9, minutes=-30)))) == \
        stamp_value(stamp)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(names, rows, rows, windows, refreshes, stamps, stamps)
def test_reusing_freebusy_render_is_byte_identical(
        name: str, first_rows: list[tuple[int, int, str]],
        second_rows: list[tuple[int, int, str]], spec: tuple[int, int, int, int],
        refresh: timedelta | None, first_stamp: datetime, second_stamp: datetime) -> None:
    """The freebusy.ics feed: a render, then the next one reusing its lines."""
    start_ts, end_ts = window(spec)
    first = timeline(first_rows)
    body, lines = render_freebusy_reusing(name, first, window_start=start_ts,
                                          window_end=end_ts, stamp=first_stamp,
                                          refresh=refresh, previous={})
    assert body == render_freebusy(name, first, window_start=start_ts, window_end=end_ts,
                                   stamp=first_stamp, refresh=refresh)
    second = timeline(first_rows[: len(first_rows) // 2] + second_rows)
    again, _ = render_freebusy_reusing(name, second, window_start=start_ts, window_end=end_ts,
                                       stamp=second_stamp, refresh=refresh, previous=lines)
    assert again == render_freebusy(name, second, window_start=start_ts, window_end=end_ts,
                                    stamp=second_stamp, refresh=refresh)
    Calendar.from_ical(again)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(names, rows, st.lists(windows, min_size=1, max_size=4), stamps, refreshes)
def test_windows_sliced_from_a_kept_timeline_are_byte_identical(
        name: str, raw: list[tuple[int, int, str]], specs: list[tuple[int, int, int, int]],
        stamp: datetime, refresh: timedelta | None) -> None:
    """The CalDAV free-busy-query path: the served window's lines kept, each window a
    slice with its edges clipped, put in the frame, stamped at the end."""
    blocks = timeline(raw)
    kept = RenderedTimeline.of(blocks, period_lines(blocks))
    for start_ts, end_ts in at_edges(blocks, specs):
        lines = kept.window(start_ts, end_ts, lambda b: period_lines([b])[0])
        body = assemble(name, refresh, start_ts, end_ts, lines)
        assert body.with_stamp(stamp) == render_freebusy(
            name, blocks, window_start=start_ts, window_end=end_ts, stamp=stamp,
            refresh=refresh)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(names, rows, st.lists(windows, min_size=1, max_size=4),
       st.sampled_from(["busy", "busy_tentative", "holds"]), st.integers(BASE, BASE + 10**7),
       st.lists(st.builds(SourceFreshness, st.text(max_size=20),
                          st.one_of(st.none(), st.integers(BASE - 10**6, BASE)),
                          st.one_of(st.none(), st.integers(0, 10**6)), st.booleans(),
                          st.booleans(), st.one_of(st.none(), st.text(max_size=40))),
                max_size=3))
def test_json_answers_sliced_from_a_kept_timeline_are_json_dumps(
        name: str, raw: list[tuple[int, int, str]], specs: list[tuple[int, int, int, int]],
        detail: str, generated: int, sources: list[SourceFreshness]) -> None:
    """The JSON API path: each block encoded once, a window a slice, the answer spliced."""
    blocks = at_detail(timeline(raw), detail)
    kept = RenderedTimeline.of(blocks, [json_block(b) for b in blocks])
    for start_ts, end_ts in at_edges(blocks, specs):
        pieces = kept.window(start_ts, end_ts, json_block)
        head = json.dumps({"calendar": name, "start": iso(start_ts), "end": iso(end_ts)})
        busy = JsonBusy(head.removesuffix("}").encode(), b"[" + b", ".join(pieces) + b"]")
        assert freebusy_json(busy, generated, sources) == json.dumps({
            "calendar": name, "start": iso(start_ts), "end": iso(end_ts),
            "generated": iso(generated),
            "busy": [{"start": iso(b.start), "end": iso(b.end), "status": b.status}
                     for b in clip(blocks, start_ts, end_ts)],
            "sources": [s.as_json() for s in sources],
            "stale": any(s.stale for s in sources),
        }).encode()


def test_a_freebusy_answer_without_periods_and_far_off_windows() -> None:
    stamp = datetime(2026, 11, 25, 12, 0, 1, 999_999, tzinfo=UTC)
    for start, end in ((FIRST, LAST), (FIRST, FIRST + 1), (LAST - 1, LAST)):
        assert assemble("me", None, start, end, []).with_stamp(stamp) == render_freebusy(
            "me", [], window_start=start, window_end=end, stamp=stamp, refresh=None)
