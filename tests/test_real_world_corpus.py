"""Every .ics file shipped in the icalendar and recurring-ical-events sdists, through
the ICS file source and the JSON API, against a straightforward reference reading.

For each file the clock is placed at its first event (on the hour) and the API's
busy time over the served window — a day back, HORIZON_DAYS ahead — is compared
with ``recurring_ical_events.of(cal).between(...)`` of the same file (TRANSPARENT
and CANCELLED free, TENTATIVE tentative, floating times and dates in the source's
zone, published VFREEBUSY periods busy), merged the way the API merges.

Each file ends in one class: it agrees; the reference cannot read it (listed, not
failed); the product refuses it (justified when the reference cannot read it
either); or it differs. A difference or an unjustified refusal fails unless
KNOWN lists it with its reason, and a KNOWN entry that no longer happens fails
too, so the list stays true. Besides, every VEVENT in the bytes must end up in a
stored item or in the round's skipped list.

The counts are written to test-artifacts/corpus.json and printed with ``-s``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from icalendar import Calendar

from adapters.base import SkippedItem
from adapters.ics import split_feed
from server.booking.availability import BusyInterval
from server.kit.clock import FixedClock
from server.sync.loop import SyncOutcome
from tests.conftest import NOW, REPO
from tests.corpus import (
    Reference,
    ReferenceError_,
    anchors,
    corpus_files,
    corpus_id,
    intervals,
    lost_vevents,
    reference_busy,
    reference_calendar,
)

ZONE = ZoneInfo("Pacific/Auckland")
HORIZON_DAYS = 28
SECRET = "s3cret-s3cret-s3cret-0001"


@dataclass(frozen=True)
class Known:
    """A difference we know of: what happens and why."""

    kind: str  # "differs", "refuses" (the reference reads it) or "invariant"
    reason: str
    # Which of the eight feed shapes being fixed in adapters/ics.py and
    # server/sync/expand.py causes it (1-8), or None for a difference that remains.
    shape: int | None = None


# Shapes: 1 X-WR-TIMEZONE on non-recurring floating events, 2 empty RRULE:,
# 3 text after END:VCALENDAR, 4 EXDATE on a non-recurring event, 5 several VEVENTs
# sharing a UID without RECURRENCE-ID, 6 all-day DTSTART with DURATION:PT1H,
# 7 a mismatched END: line, 8 a VCALENDAR nested inside the VCALENDAR.
_ICALENDAR = "icalendar-7.3.2/"
_RIE = "recurring_ical_events-3.8.2/recurring_ical_events/test/calendars/"
KNOWN: dict[str, Known] = {
    # Two VEVENTs share a UID, neither has a RECURRENCE-ID and both are of the same
    # revision (no SEQUENCE): the product blocks what either makes (issue 17, shape
    # 5: copies in merged exports all count); recurring-ical-events keeps only one
    # and drops the 28 March ride. A reading of the reference, not a product bug.
    _ICALENDAR + "docs/tutorials/example.ics": Known(
        "differs", "same UID and revision, no RECURRENCE-ID: the reference keeps one copy", 5),
    # END:VCALENDARD closes the VCALENDAR: the feed is refused whole; icalendar
    # reads the misspelt END line as the end of the calendar.
    _ICALENDAR + "src/icalendar/tests/calendars/timezone_same_start_and_offset.ics": Known(
        "refuses", "a misspelt END:VCALENDARD refuses the whole feed", 7),
    # END:VTOOD closes each VTODO: the feed is refused whole. (The same file has
    # all-day DTSTARTs with DURATION:PT1H, shape 6, which may show once it is read.)
    # Refusing a feed whose components do not balance is kept on purpose (issue 17,
    # shape 7): the error names the line, and the last good data keeps serving.
    _RIE + "issue_201_test_matrix.ics": Known(
        "refuses", "a misspelt END:VTOOD refuses the whole feed", 7),
}

RESULTS: dict[str, dict[str, Any]] = {}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Collecting downloads the pinned sdists once (cached in .cache/corpus/); a
    # failed download is a collection error, never a skip.
    if "corpus_file" in metafunc.fixturenames:
        files = corpus_files()
        metafunc.parametrize("corpus_file", files, ids=[corpus_id(f) for f in files])


@dataclass
class Verdict:
    kind: str  # "agrees", "differs", "refuses", "refused-justly", "reference-cannot-read"
    detail: str = ""
    invariant: str = ""  # the VEVENTs that ended up nowhere, if any
    empty: bool = False  # agrees on no busy time at all in the window
    lenient: str = ""  # why the reference needed skip_bad_series=True


async def test_corpus_file(corpus_file: Path, make_config: Callable[..., Any],
                           serve: Callable[..., Any], clock: FixedClock) -> None:
    name = corpus_id(corpus_file)
    body, calendar, problem = _read(corpus_file)
    span = timedelta(days=HORIZON_DAYS)
    places = anchors(calendar, ZONE, span - timedelta(days=1)) if calendar is not None else []
    clock.set(_on_the_hour(places[0] if places else NOW))
    config = make_config([{"name": "f", "kind": "ics", "url": str(corpus_file),
                           "timezone": ZONE.key}], horizon_days=HORIZON_DAYS)
    client, runtime = await serve(config)
    [outcome] = await runtime.sync.run_all_once()
    verdict = Verdict("agrees", empty=True)
    for turn, place in enumerate(places or [NOW]):
        if turn:
            # The feed is unchanged; the round moves the expansion window on.
            clock.set(_on_the_hour(place))
            [later] = await runtime.sync.run_all_once()
            assert later.ok and later.unchanged, later
        window = (clock.now() - timedelta(days=1), clock.now() + span)
        reference: Reference | None = None
        if calendar is not None:
            try:
                reference = reference_busy(calendar, ZONE, *window)
            except ReferenceError_ as exc:
                problem = str(exc)
        verdict = await _verdict(client, outcome, reference, window)
        if verdict.kind != "agrees":
            break
    if outcome.ok:
        verdict.invariant = lost_vevents(body, outcome.skipped)
    RESULTS[name] = {"kind": verdict.kind, "detail": verdict.detail, "reference": problem,
                     "empty": verdict.empty, "lenient": verdict.lenient,
                     "invariant": verdict.invariant, "windows": [str(p) for p in places],
                     "skipped": [f"{x.key[:60]}: {x.reason}" for x in outcome.skipped]}
    _judge(name, verdict)


def _on_the_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


async def _verdict(client: Any, outcome: SyncOutcome, reference: Reference | None,
                   window: tuple[datetime, datetime]) -> Verdict:
    if not outcome.ok:
        return Verdict("refused-justly" if reference is None else "refuses", outcome.error or "")
    if reference is None:
        return Verdict("reference-cannot-read")
    served = await _api_busy(client, *window)
    verdict = _compare(served, reference.blocks, outcome.skipped)
    verdict.lenient = reference.lenient
    verdict.detail = verdict.detail and f"window from {_iso(window[0])}: {verdict.detail}"
    return verdict


def _read(path: Path) -> tuple[bytes, Calendar | None, str]:
    """The bytes, and the reference's calendar or why it cannot read them."""
    body = path.read_bytes()
    try:
        return body, reference_calendar(body), ""
    except ReferenceError_ as exc:
        return body, None, str(exc)


async def _api_busy(client: Any, start: datetime, end: datetime) -> list[BusyInterval]:
    response = await client.get(
        "/api/v1/freebusy", params={"calendar": "me", "start": _iso(start), "end": _iso(end)},
        headers={"Authorization": f"Bearer {SECRET}"})
    assert response.status == 200, await response.text()
    return [BusyInterval(_ts(b["start"]), _ts(b["end"]), b["status"])
            for b in (await response.json())["busy"]]


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ts(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp())


def _compare(served: list[BusyInterval], reference: list[BusyInterval],
             skipped: tuple[Any, ...]) -> Verdict:
    if served == reference:
        return Verdict("agrees", empty=not served)
    only_served = [b for b in served if b not in reference]
    only_reference = [b for b in reference if b not in served]
    detail = (f"only in the API: {intervals(only_served)[:5]}; "
              f"only in the reference: {intervals(only_reference)[:5]}")
    if skipped:
        detail += f"; skipped: {[(s.key[:40], s.reason) for s in skipped][:5]}"
    return Verdict("differs", detail)


def _judge(name: str, verdict: Verdict) -> None:
    known = KNOWN.get(name)
    if verdict.invariant:
        assert known is not None and known.kind == "invariant", \
            f"{name}: a VEVENT is neither stored nor skipped: {verdict.invariant}"
        return
    if verdict.kind in ("agrees", "refused-justly", "reference-cannot-read"):
        assert known is None, f"{name} is listed in KNOWN ({known}) but now {verdict.kind}: " \
                              "remove the entry"
        return
    assert known is not None, f"{name}: a new difference ({verdict.kind}): {verdict.detail}"
    assert known.kind == verdict.kind, f"{name}: expected {known.kind}, got {verdict.kind}: " \
                                       f"{verdict.detail}"


def test_corpus_counts() -> None:
    """Writes the counts of the per-file runs above (run after them, in file order)."""
    counts = Counter(r["kind"] for r in RESULTS.values())
    counts["agrees, both without busy time"] = sum(1 for r in RESULTS.values() if r["empty"])
    counts["reference needed skip_bad_series"] = sum(1 for r in RESULTS.values() if r["lenient"])
    counts["agrees though the product skipped items"] = sum(
        1 for r in RESULTS.values() if r["kind"] == "agrees" and r["skipped"])
    invariant = sorted(name for name, r in RESULTS.items() if r["invariant"])
    report = {"files": len(RESULTS), "counts": dict(sorted(counts.items())),
              "invariant_failures": invariant, "results": RESULTS}
    out = REPO / "test-artifacts" / "corpus.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=1, sort_keys=True))
    print(f"\nreal-world corpus: {len(RESULTS)} files, {dict(counts)}, "
          f"{len(invariant)} with lost VEVENTs")


def test_lost_vevent_check_sees_a_dropped_vevent() -> None:
    """The invariant check itself: a VEVENT that no item carries and no skip names is
    reported, one that a skip names is not."""
    body = (b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:kept\r\nDTSTART:20260101T100000Z\r\n"
            b"END:VEVENT\r\nBEGIN:VEVENT\r\nUID:lost\r\nDTSTART:20260101T120000Z\r\n"
            b"END:VEVENT\r\nEND:VCALENDAR\r\n")

    def drop_lost(data: bytes) -> tuple[list[Any], list[Any]]:
        items, skipped = split_feed(data)
        return [i for i in items if i.key != "lost"], skipped

    assert lost_vevents(body, ()) == ""
    assert lost_vevents(body, (), split=drop_lost) == "1 VEVENT(s) lost: ['lost']"
    assert lost_vevents(body, (SkippedItem("lost", "why"),), split=drop_lost) == ""


async def test_window_move_reports_a_series_it_can_no_longer_expand(
        tmp_path: Path, make_config: Callable[..., Any], serve: Callable[..., Any],
        clock: FixedClock) -> None:
    """The invariant once the window moves on: an hourly series from 2000 is read in
    2026 (about 236,000 steps) but refused in 2030 (over MAX_RULE_STEPS). It must then
    be busy or be named in a skipped list, not go quiet."""
    (tmp_path / "hourly.ics").write_text(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\nUID:hourly\r\n"
        "DTSTAMP:20000101T000000Z\r\nDTSTART:20000101T000000Z\r\nDURATION:PT30M\r\n"
        "RRULE:FREQ=HOURLY\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
    client, runtime = await serve(make_config(
        [{"name": "f", "kind": "ics", "url": "hourly.ics"}], horizon_days=HORIZON_DAYS))
    [first] = await runtime.sync.run_all_once()
    assert first.ok and not first.skipped
    clock.set(datetime(2030, 1, 1, tzinfo=UTC))
    [moved] = await runtime.sync.run_all_once()
    busy = await _api_busy(client, clock.now(), clock.now() + timedelta(days=1))
    assert busy or [s.key for s in moved.skipped] == ["hourly"]
