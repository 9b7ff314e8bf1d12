"""Hostile upstream data (issue 10): every file in tests/data/hostile/, and a few
generated at test time (too big to commit), goes through the real app next to a
good source. The round must finish in bounded time and memory, the bad item is
skipped (or bounded) with a reason naming it, the good events still show, and
nothing of the hostile text reaches any output.

Run with ``-s`` to see the time and memory figures (docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from icalendar import Calendar

from adapters.base import AdapterError
from adapters.ics import MAX_LINE_CHARS, split_feed
from server.sync.expand import MAX_INSTANCES_PER_ITEM, BadItem, ExpandContext, expand_item
from tests.conftest import NOW, event, ics


@pytest.fixture
def expansion_workers() -> int:
    """This module's configs expand in worker processes (see tests/conftest.py)."""
    return 2


HOSTILE = Path(__file__).parent / "data" / "hostile"
SECRET = "s3cret-s3cret-s3cret-0001"
# What must never come out of fbproxy, whatever went in.
MARKERS = ("X-EVIL", "x-evil", "<script", "onerror", "alert(", "passwd", "Olympus", "<img",
           "Secret meeting")
# The good event inside most hostile files, and the good second source.
IN_FILE = ("2026-11-26T10:00:00Z", "2026-11-26T11:00:00Z")
OTHER = ("2026-11-28T12:00:00Z", "2026-11-28T13:00:00Z")
GOOD_SOURCE = ics(event("other-good", "20261128T120000Z", "20261128T130000Z"))
MiB = 1024 * 1024

# file -> (what happens, key of the bad item (or its prefix), text the reason holds)
#   feed:    the whole feed is refused (the source fails, last_error says why)
#   skipped: the bad item is skipped and reported; the rest of the file syncs
#   bounded: the bad item is read, but normalised or bounded; it leaks nothing
EXPECT: dict[str, tuple[str, str, str]] = {
    "binary_garbage.ics": ("feed", "", "not an iCalendar feed"),
    "html_login_page.ics": ("feed", "", "an HTML page"),
    "empty.ics": ("feed", "", "the body is empty"),
    "only_begin_vcalendar.ics": ("feed", "", "cut short"),
    "cut_short.ics": ("feed", "", "cut short"),
    "mismatched_end.ics": ("feed", "", "does not close"),
    # A balanced calendar followed by text is no truncation: the stray VEVENT is named.
    "content_after_end.ics": ("skipped", "bad-after", "a 'VEVENT' outside any VCALENDAR"),
    "missing_dtstart.ics": ("skipped", "bad-no-dtstart", "no DTSTART"),
    "rrule_secondly_unbounded.ics": ("skipped", "bad-secondly", "FREQ=SECONDLY"),
    "rrule_minutely_unbounded.ics": ("skipped", "bad-minutely", "FREQ=MINUTELY"),
    "rrule_hourly_since_1900.ics": ("skipped", "bad-hourly-1900", "would step through"),
    "rrule_byminute_bysecond_flood.ics": ("skipped", "bad-by-flood", "86400 occurrences a day"),
    "rrule_interval_zero.ics": ("skipped", "bad-interval0", "INTERVAL=0"),
    "rrule_garbage.ics": ("skipped", "bad-rrule-garbage", "RRULE"),
    "invalid_month.ics": ("skipped", "bad-month", "DTSTART"),
    "invalid_dates_misc.ics": ("skipped", "bad-feb30", "DTSTART"),
    "mixed_date_datetime.ics": ("skipped", "bad-mixed", "not both dates"),
    "null_bytes.ics": ("skipped", "bad-null", "DTSTART"),
    "lowercase_and_params.ics": ("skipped", "bad-lower", "DTSTART"),
    "vfreebusy_garbage.ics": ("skipped", "bad-fb", "not valid iCalendar"),
    "vtimezone_bogus.ics": ("skipped", "bad-vtz", "not valid iCalendar"),
    "deeply_nested.ics": ("skipped", "bad-nested", "nested more than"),
    "injection_literal_lines.ics": ("skipped", "sha256-", "no DTSTART"),
    "broken_folding.ics": ("bounded", "bad-fold", "continuation lines joined"),
    "dtend_before_dtstart.ics": ("bounded", "bad-reversed", "start and end read swapped"),
    "negative_duration.ics": ("bounded", "bad-negdur", "read swapped"),
    "zero_duration.ics": ("bounded", "bad-zerodur", "no instance (zero length)"),
    "year_9999.ics": ("bounded", "bad-9999", "outside the window: no instance"),
    "duplicate_uids.ics": ("bounded", "bad-dup", "one item, 50 instances"),
    "duplicate_uid_of_good.ics": ("bounded", "good-in-file", "one item with both events"),
    "injection_text_fields.ics": ("bounded", "bad-inject", "text never output"),
    "injection_in_uid.ics": ("bounded", "evil", "UID never output"),
    "tzid_injection.ics": ("bounded", "bad-tzid-inject", "unknown TZID read as floating"),
    "unknown_tzid.ics": ("bounded", "bad-tzid", "unknown TZID read as floating"),
    "bogus_x_wr_timezone.ics": ("bounded", "bad-wr", "bad X-WR-TIMEZONE ignored"),
    "bare_cr_and_lf.ics": ("bounded", "bad-cr", "CR, LF and CRLF all end a line"),
    "long_uid.ics": ("bounded", "sha256-", "key hashed"),
    "recurrence_id_orphans.ics": ("bounded", "bad-orphan", "overrides without master"),
    "rdate_exdate_flood.ics": ("bounded", "bad-rdate", "1,440 RDATEs less 720 EXDATEs"),
    "rrule_count_huge.ics": ("bounded", "bad-count", "expanded in the window only"),
    "rrule_yearly_byday_flood.ics": ("bounded", "bad-yearly-flood", "hourly, in the window"),
    "rrule_until_before_start.ics": ("bounded", "bad-until", "no instance"),
    "utf16.ics": ("bounded", "utf16-event", "decoded by its BOM"),
}


def _wrap(*components: str) -> bytes:
    good = ("BEGIN:VEVENT\r\nUID:good-in-file\r\nDTSTAMP:20260101T000000Z\r\n"
            "DTSTART:20261126T100000Z\r\nDTEND:20261126T110000Z\r\nEND:VEVENT\r\n")
    return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//hostile//EN\r\n" + "".join(components)
            + good + "END:VCALENDAR\r\n").encode()


def _vevent(uid: str, *lines: str) -> str:
    return "".join(f"{line}\r\n" for line in ("BEGIN:VEVENT", f"UID:{uid}", *lines, "END:VEVENT"))


def huge_event() -> bytes:
    """One event with a 20 MB folded DESCRIPTION (just under max_bytes)."""
    text = "X-EVIL:1 <script>" * (20_000_000 // 17)
    folded = "\r\n ".join(text[i:i + 74] for i in range(0, len(text), 74))
    return _wrap(_vevent("bad-huge", "DTSTART:20261127T090000Z", "DTEND:20261127T100000Z",
                         "DESCRIPTION:" + folded))


def huge_vtimezone() -> bytes:
    rules = "".join(f"BEGIN:DAYLIGHT\r\nDTSTART:{year}0329T020000\r\nTZOFFSETFROM:+0100\r\n"
                    "TZOFFSETTO:+0200\r\nTZNAME:X-EVIL\r\nEND:DAYLIGHT\r\n"
                    for year in range(1000, 9000))
    zone = f"BEGIN:VTIMEZONE\r\nTZID:Huge/Zone\r\n{rules}END:VTIMEZONE\r\n"
    return _wrap(zone, _vevent("bad-hugetz", "DTSTART;TZID=Huge/Zone:20261127T090000",
                               "DTEND;TZID=Huge/Zone:20261127T100000"))


def deep_nesting() -> bytes:
    return _wrap(_vevent("bad-deep", "DTSTART:20261127T090000Z", "DTEND:20261127T100000Z",
                         *["BEGIN:X-NEST"] * 100_000, *["END:X-NEST"] * 100_000))


def duplicate_uid_flood() -> bytes:
    return _wrap(*[_vevent("bad-same", f"DTSTART:20261127T{i % 24:02d}0000Z", "DURATION:PT1M")
                   for i in range(50_000)])


def over_max_bytes() -> bytes:
    return _wrap(_vevent("bad-big", "DTSTART:20261127T090000Z", "DTEND:20261127T100000Z",
                         "DESCRIPTION:" + "x" * 200, *["X-PAD:" + "y" * 70] * 300_000))


GENERATED: dict[str, tuple[Callable[[], bytes], tuple[str, str, str]]] = {
    "generated: 20 MB single event": (huge_event, ("bounded", "bad-huge",
                                                   "over-long line dropped")),
    "generated: huge VTIMEZONE (8,000 rules)": (huge_vtimezone, ("skipped", "bad-hugetz",
                                                                 "VTIMEZONE")),
    "generated: 100,000-deep nesting": (deep_nesting, ("skipped", "bad-deep",
                                                       "nested more than")),
    "generated: 50,000 VEVENTs with one UID": (duplicate_uid_flood, ("skipped", "bad-same",
                                                                     "share this UID")),
    "generated: 25 MB feed (over max_bytes)": (over_max_bytes, ("feed", "", "over max_bytes")),
}
# The worst cases, whose memory growth is measured.
MEASURED = {"rrule_hourly_since_1900.ics", "rrule_byminute_bysecond_flood.ics",
            "rrule_count_huge.ics", "rrule_yearly_byday_flood.ics", *GENERATED}


@contextmanager
def peak_rss() -> Iterator[dict[str, float]]:
    """Samples this process's RSS while the block runs; yields growth in MiB (peak - before)."""
    process = psutil.Process()
    before = process.memory_info().rss
    figures = {"peak": float(before)}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            figures["peak"] = max(figures["peak"], process.memory_info().rss)
            done.wait(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield figures
    finally:
        done.set()
        sampler.join()
        figures["growth_mib"] = (max(figures["peak"], process.memory_info().rss) - before) / MiB


async def _sync_hostile(name: str, body: bytes, expect: tuple[str, str, str], tmp_path: Path,
                        make_config: Callable[..., Any], serve: Callable[..., Any]) -> None:
    what, key, reason = expect
    hostile, good = tmp_path / "hostile.ics", tmp_path / "good.ics"
    # The source synced once before it turned hostile: a calendar with a source that
    # never synced is not served at all (test_fail_closed), so only after a first
    # good round can its hostile rounds be seen (not) reaching the outputs.
    hostile.write_text(ics(), newline="")
    good.write_text(GOOD_SOURCE, newline="")
    client, runtime = await serve(make_config([
        {"name": "hostile", "kind": "ics", "url": str(hostile)},
        {"name": "good", "kind": "ics", "url": str(good)},
    ]))
    assert all(o.ok for o in await runtime.sync.run_all_once())
    primed = hostile.stat().st_mtime_ns
    hostile.write_bytes(body)
    os.utime(hostile, ns=(primed, primed + 1_000_000_000))  # seen as changed, whatever size
    started = time.perf_counter()
    with peak_rss() as memory:
        outcomes = {o.source: o for o in
                    await asyncio.wait_for(runtime.sync.run_all_once(), timeout=30)}
    seconds = time.perf_counter() - started
    print(f"\nHOSTILE | {name} | {len(body):,} B | {what} | {seconds:.2f} s | "
          f"{memory['growth_mib']:.0f} MiB")
    assert seconds < 15, f"{name}: the round took {seconds:.1f} s"
    if name in MEASURED:
        assert memory["growth_mib"] < 300, f"{name}: RSS grew {memory['growth_mib']:.0f} MiB"
    assert outcomes["good"].ok

    bad = outcomes["hostile"]
    if what == "feed":
        assert not bad.ok and bad.error and reason in bad.error, bad
    else:
        assert bad.ok, bad.error
        reasons = [s.reason for s in bad.skipped if s.key.startswith(key)]
        if what == "skipped":
            assert any(reason in r for r in reasons), (bad.skipped, reason)
        else:
            assert not reasons, reasons

    texts = {}
    api = await client.get("/api/v1/freebusy?calendar=me&start=2026-11-20&end=2027-03-01",
                           headers={"Authorization": f"Bearer {SECRET}"})
    assert api.status == 200
    texts["api"] = await api.text()
    for feed in ("busy.ics", "freebusy.ics"):
        response = await client.get(f"/feeds/{SECRET}/{feed}")
        assert response.status == 200
        texts[feed] = await response.text()
        calendar = Calendar.from_ical(texts[feed])
        for component in calendar.walk("VEVENT"):
            assert component["DTSTART"].dt < component["DTEND"].dt
    for where, text in texts.items():
        for marker in MARKERS:
            assert marker not in text, f"{name}: {marker!r} leaked into {where}"

    body_json = await api.json()
    busy = [(b["start"], b["end"]) for b in body_json["busy"]]
    assert all(start < end for start, end in busy)
    wanted = [OTHER] if what == "feed" else [IN_FILE, OTHER]
    for start, end in wanted:
        assert any(s <= start and end <= e for s, e in busy), (name, start, busy)
    if what == "feed":
        [source] = [s for s in body_json["sources"] if s["name"] == "hostile"]
        assert reason in (source["last_error"] or "")


@pytest.mark.parametrize("name", sorted(EXPECT))
async def test_hostile_file(name: str, tmp_path: Path, make_config: Callable[..., Any],
                            serve: Callable[..., Any]) -> None:
    body = (HOSTILE / name).read_bytes()
    await _sync_hostile(name, body, EXPECT[name], tmp_path, make_config, serve)


@pytest.mark.parametrize("name", list(GENERATED))
async def test_generated_hostile_feed(name: str, tmp_path: Path,
                                      make_config: Callable[..., Any],
                                      serve: Callable[..., Any]) -> None:
    build, expect = GENERATED[name]
    await _sync_hostile(name, build(), expect, tmp_path, make_config, serve)


def test_every_committed_file_has_an_expectation() -> None:
    files = {p.name for p in HOSTILE.glob("*.ics")}
    assert files == set(EXPECT)
    assert len(files) >= 30
    assert all(p.stat().st_size < 64 * 1024 for p in HOSTILE.glob("*.ics"))


# -- regressions for the defects found (direct calls, no HTTP) ------------------------------

CONTEXT = ExpandContext(zone=ZoneInfo("UTC"), window_start=NOW - timedelta(days=30),
                        window_end=NOW + timedelta(days=90))


def _expand_all(body: bytes) -> tuple[dict[str, int], dict[str, str]]:
    items, skipped = split_feed(body)
    counts: dict[str, int] = {}
    reasons = {s.key: s.reason for s in skipped}
    for item in items:
        try:
            counts[item.key] = len(expand_item(item.ical, CONTEXT).instances)
        except BadItem as exc:
            reasons[item.key] = str(exc)
    return counts, reasons


def test_folded_20mb_line_unfolds_in_linear_time() -> None:
    started = time.perf_counter()
    counts, _ = _expand_all(huge_event())
    assert time.perf_counter() - started < 5
    assert counts == {"bad-huge": 1, "good-in-file": 1}


def test_long_lines_are_dropped_but_short_ones_kept() -> None:
    body = _wrap(_vevent("u", "DTSTART:20261127T090000Z", "DTEND:20261127T100000Z",
                         "ATTACH:" + "a" * (MAX_LINE_CHARS + 1), "LOCATION:kept"))
    items, _ = split_feed(body)
    [item] = [i for i in items if i.key == "u"]
    assert "ATTACH" not in item.ical and "LOCATION:kept" in item.ical


@pytest.mark.parametrize("rule", [
    "FREQ=DAILY;INTERVAL=0",
    "FREQ=DAILY;BYMINUTE=0,15,30,45;BYHOUR=8,9,10,11,12,13,14,15",
    "FREQ=HOURLY;BYSECOND=0,30",
])
def test_rules_that_never_end_expanding_are_refused(rule: str) -> None:
    body = _wrap(_vevent("r", "DTSTART:20261125T000000Z", "DURATION:PT1M", f"RRULE:{rule}"))
    started = time.perf_counter()
    counts, reasons = _expand_all(body)
    assert time.perf_counter() - started < 2
    assert "r" in reasons and "r" not in counts


def test_dense_rule_from_long_ago_is_refused_but_ordinary_old_rules_expand() -> None:
    body = _wrap(
        _vevent("hourly-0001", "DTSTART:00010101T000000Z", "DURATION:PT1M", "RRULE:FREQ=HOURLY"),
        _vevent("daily-1990", "DTSTART:19900101T090000Z", "DURATION:PT1H", "RRULE:FREQ=DAILY"),
        _vevent("yearly-1900", "DTSTART;VALUE=DATE:19001201", "RRULE:FREQ=YEARLY"),
        _vevent("hourly-recent", "DTSTART:20261101T000000Z", "DURATION:PT5M",
                "RRULE:FREQ=HOURLY"),
        _vevent("daily-4-times", "DTSTART:20261101T080000Z", "DURATION:PT5M",
                "RRULE:FREQ=DAILY;BYHOUR=8,12,16,20"),
    )
    counts, reasons = _expand_all(body)
    assert "would step through" in reasons["hourly-0001"]
    assert counts["daily-1990"] == 120 and counts["yearly-1900"] == 1
    assert 0 < counts["hourly-recent"] <= MAX_INSTANCES_PER_ITEM
    assert counts["daily-4-times"] > 400


def test_costly_shapes_are_skipped_by_the_splitter_with_the_item_named() -> None:
    for body, key, reason in [(huge_vtimezone(), "bad-hugetz", "VTIMEZONE"),
                              (deep_nesting(), "bad-deep", "nested more than 8 deep"),
                              (duplicate_uid_flood(), "bad-same", "share this UID")]:
        started = time.perf_counter()
        counts, reasons = _expand_all(body)
        assert time.perf_counter() - started < 5
        assert reason in reasons[key] and counts == {"good-in-file": 1}


def test_utf16_feed_is_read_by_its_bom() -> None:
    for codec in ("utf-16-le", "utf-16-be"):
        body = ("\ufeff" + ics(event("u16", "20261127T090000Z", "20261127T100000Z"))).encode(codec)
        counts, _ = _expand_all(body)
        assert counts == {"u16": 1}


def test_feed_errors_never_echo_markup_or_content_lines() -> None:
    for body in (b"<html><script>alert(1)</script>X-EVIL:1",
                 b"BEGIN:VCALENDAR\r\nEND:X-EVIL<script>\r\n",
                 b"BEGIN:VCALENDAR\r\nBEGIN:X-EVIL<script>\r\nEND:VCALENDAR\r\n",
                 b"<script>X-EVIL:1"):
        with pytest.raises(AdapterError) as caught:
            split_feed(body)
        assert "<" not in str(caught.value) and "X-EVIL" not in str(caught.value)


# -- fuzzing ------------------------------------------------------------------------------

SEED = ics(
    event("plain", "20261126T100000Z", "20261126T110000Z", "DESCRIPTION:folded line th",
          " at goes on"),
    event("series", "20261123T090000Z", "20261123T093000Z", "RRULE:FREQ=WEEKLY;COUNT=20",
          "EXDATE:20261130T090000Z", "BEGIN:VALARM", "ACTION:DISPLAY", "TRIGGER:-PT5M",
          "END:VALARM"),
    "UID:series\nDTSTAMP:20260101T000000Z\nRECURRENCE-ID:20261207T090000Z\n"
    "DTSTART:20261207T140000Z\nDTEND:20261207T150000Z",
    "UID:zoned\nDTSTAMP:20260101T000000Z\nDTSTART;TZID=Europe/Berlin:20261201T090000\n"
    "DURATION:PT45M\nRRULE:FREQ=DAILY;UNTIL=20261215T000000Z;BYDAY=MO,WE,FR",
    "UID:allday\nDTSTAMP:20260101T000000Z\nDTSTART;VALUE=DATE:20261203\n"
    "DTEND;VALUE=DATE:20261205\nTRANSP:OPAQUE",
    extra="X-WR-TIMEZONE:Europe/Berlin",
).encode()

_mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(1, 255)),
    st.tuples(st.just("insert"), st.integers(0, 10**6),
              st.sampled_from([b"\r\n", b"\r\n ", b":", b";", b"\x00", b"\xff\xfe", b"=",
                               b"BEGIN:VEVENT\r\n", b"END:VEVENT\r\n", b"RRULE:FREQ=HOURLY\r\n",
                               b"RRULE:FREQ=DAILY;INTERVAL=0\r\n", b"DURATION:-P1D\r\n",
                               b"TZID=Nowhere", b"99991231T235959Z", b"\xc3", b"9"])),
    st.tuples(st.just("delete_line"), st.integers(0, 10**6), st.just(b"")),
    st.tuples(st.just("duplicate_line"), st.integers(0, 10**6), st.just(b"")),
    st.tuples(st.just("truncate"), st.integers(0, 10**6), st.just(b"")),
)


def _mutate(body: bytes, mutations: list[tuple[str, int, Any]]) -> bytes:
    for kind, where, extra in mutations:
        if kind in ("delete_line", "duplicate_line"):
            lines = body.split(b"\r\n")
            index = where % len(lines)
            lines[index:index + 1] = [] if kind == "delete_line" else [lines[index]] * 2
            body = b"\r\n".join(lines)
            continue
        at = where % (len(body) + 1)
        if kind == "flip" and body:
            at = min(at, len(body) - 1)
            body = body[:at] + bytes([body[at] ^ extra]) + body[at + 1:]
        elif kind == "insert":
            body = body[:at] + extra + body[at:]
        elif kind == "truncate":
            body = body[:at]
    return body


@settings(max_examples=250, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_mutation, min_size=1, max_size=6))
def test_fuzzed_feeds_only_raise_our_own_errors(mutations: list[tuple[str, int, Any]]) -> None:
    body = _mutate(SEED, mutations)
    try:
        items, _ = split_feed(body)
    except AdapterError:
        return
    for item in items:
        try:
            expansion = expand_item(item.ical, CONTEXT)
        except BadItem:
            continue
        assert len(expansion.instances) <= MAX_INSTANCES_PER_ITEM
        for row in expansion.instances:
            assert row.start < row.end, (item.key, row)
            assert datetime.fromtimestamp(row.end, UTC) > CONTEXT.window_start
