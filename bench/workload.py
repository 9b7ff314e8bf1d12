"""Realistic calendar data for the benchmarks: one generator, two output forms.

``generate`` builds calendar objects (one UID each: a single event, or a
recurring series with its RECURRENCE-ID overrides) with ``icalendar``, laid
out around an anchor time; every choice comes from one ``random.Random``
seeded with the caller's key, so the same key gives the same objects.

- ``write_calendar_file``: all objects in one ICS file (bench_core.py's
  sources), VTIMEZONEs added with ``add_missing_timezones``.
- ``write_object_files``: one ``<hex>.ics`` file per UID, each carrying the
  VTIMEZONEs it uses (bench_caldav.py writes them into Radicale's storage).

The mix: ~85 % single events at business hours (in the calendar's zone, some
in other zones, UTC or floating; ~5 % all-day, mostly TRANSPARENT), ~15 %
recurring series (weekly, daily, monthly; open-ended, UNTIL or COUNT) of which
~30 % have EXDATEs and ~25 % have 1-3 overrides, all computed with dateutil
so they hit real occurrences; some TENTATIVE, TRANSPARENT and CANCELLED, and
the usual descriptions, attendees and so on.
"""

from __future__ import annotations

import os
import random
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from dateutil.rrule import rrulestr  # type: ignore[import-untyped]
from icalendar import Calendar, Component, Event, Timezone, vCalAddress, vText

# The data window around the anchor, in days.
PAST_DAYS = 30
FUTURE_DAYS = 120
SUMMARIES = ("1:1", "Team sync", "Design review", "Customer call", "Interview", "Lunch",
             "Planning", "Retro", "Focus time", "Dentist", "Board prep", "Standup",
             "Offsite prep", "Budget review", "Hiring panel", "Architecture forum")
WORDS = ("agenda", "notes", "dial-in", "please", "review", "the", "document", "before",
         "meeting", "link", "room", "project", "quarterly", "status", "update", "budget")
WEEKDAYS = ("MO", "TU", "WE", "TH", "FR")


@dataclass
class Stats:
    """What was generated (and, once written, how many bytes and where)."""

    anchor: datetime
    zone: str  # the calendar's own zone
    items: int = 0  # UIDs, i.e. calendar objects
    vevents: int = 0
    series: int = 0
    overrides: int = 0
    exdates: int = 0
    all_day: int = 0
    transparent: int = 0
    cancelled: int = 0
    tentative: int = 0
    floating: int = 0
    bytes: int = 0
    path: str = ""  # write_calendar_file: the file
    # The first busy (CONFIRMED, OPAQUE), zoned single event a week or more after
    # the anchor: the one a "one event changed" round moves.
    touched_uid: str = ""
    touched_name: str = ""


@dataclass
class CalendarObject:
    uid: str
    name: str  # file name when stored one object per file
    events: list[Event] = field(default_factory=list)


@dataclass
class Workload:
    objects: list[CalendarObject]
    stats: Stats

    def find(self, uid: str) -> CalendarObject:
        return next(o for o in self.objects if o.uid == uid)


class _Gen:
    """Builds the objects; every choice comes from ``rng``."""

    def __init__(self, key: str, anchor: datetime, zone: str, other_zones: Sequence[str],
                 summaries: Sequence[str], export: bool) -> None:
        self.rng = random.Random(key)
        self.anchor = anchor
        self.home = ZoneInfo(zone)
        self.other_zones = tuple(other_zones)
        self.summaries = tuple(summaries)
        self.export = export
        self.stamp = anchor - timedelta(days=2)
        self.stats = Stats(anchor=anchor, zone=zone)

    # -- helpers -------------------------------------------------------------

    def uid(self) -> tuple[str, str]:
        value = uuid.UUID(int=self.rng.getrandbits(128), version=4)
        return f"{value}@bench.example", f"{value.hex}.ics"

    def pick_zone(self) -> ZoneInfo | None:
        """Mostly the calendar's own zone; some other zones, UTC and floating."""
        roll = self.rng.random()
        if roll < 0.75:
            return self.home
        if roll < 0.95:
            return ZoneInfo(self.rng.choice(self.other_zones))
        if roll < 0.98:
            return ZoneInfo("UTC")
        return None  # floating: read in the source's zone

    def business_start(self, day: date, zone: ZoneInfo | None) -> datetime:
        minutes = self.rng.randrange(8 * 60, 17 * 60 + 31, 15)
        naive = datetime.combine(day, dtime(minutes // 60, minutes % 60))
        return naive if zone is None else naive.replace(tzinfo=zone)

    def duration(self) -> timedelta:
        return timedelta(minutes=self.rng.choice((15, 25, 30, 30, 30, 45, 50, 60, 60, 90, 120)))

    def weekday_near(self, lo: int, hi: int) -> date:
        base = self.anchor.astimezone(self.home).date()
        day = base
        for _ in range(20):
            day = base + timedelta(days=self.rng.randint(lo, hi))
            if day.weekday() < 5 or self.rng.random() < 0.05:
                break
        return day

    def decorate(self, event: Event, summary: str) -> None:
        """The parts a real object carries that never matter for busy time."""
        rng = self.rng
        event.add("DTSTAMP", self.stamp)
        event.add("CREATED", self.stamp - timedelta(days=rng.randint(1, 400)))
        event.add("LAST-MODIFIED", self.stamp - timedelta(days=rng.randint(0, 30)))
        event.add("SUMMARY", summary)
        if rng.random() < 0.4:
            words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(15, 60)))
            event.add("DESCRIPTION", vText(words.capitalize() + ".\nhttps://meet.example/"
                                           + uuid.UUID(int=rng.getrandbits(128)).hex[:12]))
        if rng.random() < 0.3:
            event.add("LOCATION", f"Room {rng.randint(1, 40)}, Building {rng.choice('ABCD')}")
        if rng.random() < 0.35:
            organizer = vCalAddress(f"mailto:org{rng.randint(1, 50)}@bench.example")
            organizer.params["CN"] = vText(f"Organizer {rng.randint(1, 50)}")
            event.add("ORGANIZER", organizer)
            for n in range(rng.randint(1, 6)):
                attendee = vCalAddress(f"mailto:guest{n}-{rng.randint(1, 999)}@bench.example")
                attendee.params["PARTSTAT"] = rng.choice(
                    ("ACCEPTED", "ACCEPTED", "TENTATIVE", "NEEDS-ACTION", "DECLINED"))
                if self.export:
                    attendee.params["ROLE"] = "REQ-PARTICIPANT"
                event.add("ATTENDEE", attendee)
        if self.export and rng.random() < 0.1:
            event.add("CLASS", "PRIVATE")
        event.add("SEQUENCE", rng.randint(0, 3))

    def flags(self, event: Event, *, transp_p: float, cancel_p: float, tent_p: float) -> None:
        """STATUS and TRANSP; an export often leaves out the default values."""
        rng = self.rng
        roll = rng.random()
        if roll < cancel_p:
            event.add("STATUS", "CANCELLED")
            self.stats.cancelled += 1
        elif roll < cancel_p + tent_p:
            event.add("STATUS", "TENTATIVE")
            self.stats.tentative += 1
        elif not self.export or rng.random() < 0.7:
            event.add("STATUS", "CONFIRMED")
        if rng.random() < transp_p:
            event.add("TRANSP", "TRANSPARENT")
            self.stats.transparent += 1
        elif not self.export or rng.random() < 0.5:
            event.add("TRANSP", "OPAQUE")

    # -- single events ---------------------------------------------------------

    def single(self) -> CalendarObject:
        rng = self.rng
        uid, name = self.uid()
        event = Event()
        event.add("UID", uid)
        if rng.random() < 0.05:  # all-day, often several days, often "free" (holiday, OOO)
            day = self.weekday_near(-PAST_DAYS, FUTURE_DAYS)
            event.add("DTSTART", day)
            event.add("DTEND", day + timedelta(days=rng.choice((1, 1, 1, 2, 3, 5))))
            self.stats.all_day += 1
            self.decorate(event, rng.choice(("Out of office", "Holiday", "Conference")))
            self.flags(event, transp_p=0.8, cancel_p=0.02, tent_p=0.05)
        else:
            zone = self.pick_zone()
            self.stats.floating += zone is None
            start = self.business_start(self.weekday_near(-PAST_DAYS, FUTURE_DAYS), zone)
            event.add("DTSTART", start)
            event.add("DTEND", start + self.duration())
            self.decorate(event, rng.choice(self.summaries))
            self.flags(event, transp_p=0.06, cancel_p=0.03, tent_p=0.07)
            if not self.stats.touched_uid and zone is not None \
                    and start > self.anchor + timedelta(days=7) \
                    and event.get("STATUS", "CONFIRMED") == "CONFIRMED" \
                    and event.get("TRANSP", "OPAQUE") == "OPAQUE":
                # A busy event a week out: moving it shows in the busy time.
                self.stats.touched_uid, self.stats.touched_name = uid, name
        return CalendarObject(uid, name, [event])

    # -- recurring series ------------------------------------------------------

    def series(self, room: int) -> CalendarObject:
        """A series and up to ``room`` overrides."""
        rng = self.rng
        uid, name = self.uid()
        all_day = rng.random() < 0.08
        kind = rng.choices(("WEEKLY", "DAILY", "MONTHLY"), (0.6, 0.2, 0.2))[0]
        if all_day and kind == "DAILY":  # a daily all-day series would be a whole calendar
            kind = "WEEKLY"
        zone = self.home if rng.random() < 0.8 else ZoneInfo(rng.choice(self.other_zones))
        first_day = self.anchor.astimezone(zone).date() + timedelta(days=rng.randint(-300, 60))
        rule: dict[str, Any] = {"FREQ": kind}
        if kind == "WEEKLY":
            if rng.random() < 0.2:
                rule["INTERVAL"] = 2
            days = sorted(rng.sample(range(5), rng.choice((1, 1, 1, 2, 3))))
            first_day += timedelta(days=(days[0] - first_day.weekday()) % 7)
            rule["BYDAY"] = [WEEKDAYS[d] for d in days]
        elif kind == "DAILY":
            if rng.random() < 0.7:
                rule["BYDAY"] = list(WEEKDAYS)
                while first_day.weekday() >= 5:
                    first_day += timedelta(days=1)
        elif rng.random() < 0.5:
            rule["BYMONTHDAY"] = [min(first_day.day, 28)]
            first_day = first_day.replace(day=rule["BYMONTHDAY"][0])
        else:
            rule["BYDAY"] = [f"{rng.choice((1, 2, 3, -1))}{rng.choice(WEEKDAYS)}"]
        end_roll = rng.random()
        if end_roll < 0.35:
            # Never before the first occurrence: Radicale refuses such objects.
            until_day = max(self.anchor.date() + timedelta(days=rng.randint(-10, 200)),
                            first_day + timedelta(days=7))
            rule["UNTIL"] = until_day if all_day else datetime.combine(
                until_day, dtime(23, 59, 59), UTC)
        elif end_roll < 0.55 or (kind == "DAILY" and "BYDAY" not in rule):
            rule["COUNT"] = rng.randint(5, 80)
        start: date | datetime
        end: date | datetime
        if all_day:
            start, end = first_day, first_day + timedelta(days=1)
        else:
            start = self.business_start(first_day, zone)
            end = start + self.duration()

        master = Event()
        master.add("UID", uid)
        master.add("DTSTART", start)
        master.add("DTEND", end)
        master.add("RRULE", rule)
        self.decorate(master, "Weekly WFH" if all_day else rng.choice(self.summaries))
        self.flags(master, transp_p=0.8 if all_day else 0.05, cancel_p=0.02, tent_p=0.05)
        occurrences = self.occurrences(master, start, all_day)
        exdates: list[Any] = []
        if occurrences and rng.random() < 0.3:
            exdates = sorted(rng.sample(occurrences, min(len(occurrences), rng.randint(1, 4))))
            master.add("EXDATE", exdates)
            self.stats.exdates += len(exdates)
        events = [master]
        candidates = [o for o in occurrences if o not in exdates]
        if candidates and rng.random() < 0.25:
            length: timedelta = end - start  # both dates, or both datetimes
            count = min(len(candidates), rng.randint(1, 3), room)
            for original in sorted(rng.sample(candidates, count)):
                events.append(self.override(uid, original, length, all_day))
        self.stats.series += 1
        self.stats.overrides += len(events) - 1
        self.stats.all_day += all_day
        return CalendarObject(uid, name, events)

    def occurrences(self, master: Event, start: date | datetime, all_day: bool) -> list[Any]:
        """Occurrences inside the data window, read with dateutil (an independent reader)."""
        raw = master["RRULE"].to_ical()
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        lo = self.anchor - timedelta(days=PAST_DAYS)
        hi = self.anchor + timedelta(days=FUTURE_DAYS)
        if all_day:
            assert not isinstance(start, datetime)
            found = rrulestr(text, dtstart=datetime.combine(start, dtime())).between(
                lo.replace(tzinfo=None), hi.replace(tzinfo=None), inc=True)
            return [d.date() for d in found]
        assert isinstance(start, datetime)
        return list(rrulestr(text, dtstart=start).between(lo, hi, inc=True))

    def override(self, uid: str, original: Any, length: timedelta, all_day: bool) -> Event:
        rng = self.rng
        event = Event()
        event.add("UID", uid)
        event.add("RECURRENCE-ID", original)
        shift = timedelta(days=1) if all_day else timedelta(
            minutes=rng.choice((-120, -60, -30, 30, 60, 90, 24 * 60)))
        event.add("DTSTART", original + shift)
        event.add("DTEND", original + shift + length)
        self.decorate(event, "Moved: " + rng.choice(self.summaries))
        self.flags(event, transp_p=0.03, cancel_p=0.2, tent_p=0.1)
        return event


def generate(key: str, anchor: datetime, zone: str, other_zones: Sequence[str], *,
             vevents: int | None = None, objects: int | None = None,
             summaries: Sequence[str] = SUMMARIES, export: bool = False) -> Workload:
    """Calendar objects laid out around ``anchor`` (PAST_DAYS back, FUTURE_DAYS ahead).

    ``key`` seeds the generator: the same key and arguments give the same objects.
    ``zone`` is the calendar's own zone; ``other_zones`` are picked for some events.
    The size is given either as ``vevents`` (VEVENTs in all, overrides included)
    or as ``objects`` (UIDs). ``export`` makes the events look like an exported
    feed (STATUS and TRANSP often left at their defaults, attendees with ROLE,
    some CLASS:PRIVATE) rather than like objects a CalDAV client stored
    (STATUS and TRANSP always written).
    """
    if (vevents is None) == (objects is None):
        raise ValueError("give either vevents or objects")
    gen = _Gen(key, anchor, zone, other_zones, summaries, export)
    out: list[CalendarObject] = []
    left = vevents if vevents is not None else objects
    assert left is not None
    while left > 0:
        # Overrides count against a VEVENT budget, not against an object count.
        room = left - 1 if vevents is not None else sys.maxsize
        obj = gen.series(room) if gen.rng.random() < 0.15 else gen.single()
        out.append(obj)
        gen.stats.items += 1
        gen.stats.vevents += len(obj.events)
        left -= len(obj.events) if vevents is not None else 1
    return Workload(out, gen.stats)


def move_event(event: Component, delta: timedelta, modified: datetime) -> None:
    """Move ``event`` by ``delta``, bump its SEQUENCE and set LAST-MODIFIED."""
    start, end = event.decoded("DTSTART"), event.decoded("DTEND")
    sequence = int(event.get("SEQUENCE", 0)) + 1
    for key in ("DTSTART", "DTEND", "SEQUENCE", "LAST-MODIFIED"):
        event.pop(key, None)
    event.add("DTSTART", start + delta)
    event.add("DTEND", end + delta)
    event.add("SEQUENCE", sequence)
    event.add("LAST-MODIFIED", modified)


# ---------------------------------------------------------------------------
# Output forms
# ---------------------------------------------------------------------------

def write_calendar_file(path: Path, work: Workload, name: str) -> None:
    """All objects in one ICS file named ``name`` (X-WR-CALNAME).

    Replaces the file atomically and makes sure a rewrite shows as a new mtime.
    Sets ``path``, ``bytes`` and ``vevents`` (counted in the file) of the stats.
    """
    calendar = Calendar()
    calendar.add("PRODID", "-//fbproxy bench//generated//EN")
    calendar.add("VERSION", "2.0")
    calendar.add("CALSCALE", "GREGORIAN")
    calendar.add("X-WR-CALNAME", name)
    for obj in work.objects:
        for event in obj.events:
            calendar.add_component(event)
    year = work.stats.anchor.year
    calendar.add_missing_timezones(first_date=date(year - 1, 1, 1),
                                   last_date=date(year + 1, 12, 31))
    body = calendar.to_ical()
    old = path.stat().st_mtime_ns if path.exists() else None
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(body)
    os.replace(tmp, path)
    if old is not None and path.stat().st_mtime_ns <= old + 1_000_000_000:
        # Coarse file-system clocks: make sure the rewrite is visible as a new mtime.
        os.utime(path, ns=(old + 2_000_000_000, old + 2_000_000_000))
    work.stats.path = str(path)
    work.stats.bytes = len(body)
    work.stats.vevents = body.count(b"BEGIN:VEVENT")  # what is really in the file


def write_object_files(folder: Path, work: Workload) -> None:
    """One ``<name>`` file per object in ``folder``, each with the VTIMEZONEs it uses.

    Adds the bytes written to the stats.
    """
    anchor = work.stats.anchor.date()
    first, last = anchor - timedelta(days=400), anchor + timedelta(days=400)
    timezones: dict[str, Timezone] = {}
    for obj in work.objects:
        calendar = Calendar()
        calendar.add("PRODID", "-//fbproxy bench//caldav//EN")
        calendar.add("VERSION", "2.0")
        zones = {str(p.params["TZID"]) for e in obj.events for key in ("DTSTART", "DTEND")
                 for p in [e.get(key)] if p is not None and "TZID" in p.params}
        for zone in sorted(zones):
            if zone not in timezones:
                timezones[zone] = Timezone.from_tzinfo(ZoneInfo(zone), zone, first, last)
            calendar.add_component(timezones[zone])
        for event in obj.events:
            calendar.add_component(event)
        body = calendar.to_ical()
        (folder / obj.name).write_bytes(body)
        work.stats.bytes += len(body)
