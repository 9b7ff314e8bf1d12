"""One stored iCalendar item → the busy instances it causes in a window.

This is CPU work (parsing, recurrence expansion): callers run it in worker
processes (server/sync/expander.py), once per changed item, and store the result.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

import icalendar
import recurring_ical_events
from icalendar import Calendar, Component
from recurring_ical_events import ComponentsWithName, EventAdapter

from adapters.base import HOLD_MARKER
from server.store import STATUS_BUSY, STATUS_TENTATIVE, BusyRow

# An item cannot make more busy rows than this in one window; a FREQ=SECONDLY
# rule from a hostile feed would otherwise fill the disk.
MAX_INSTANCES_PER_ITEM = 5000
# Non-recurring events are stored whatever their date (one row each), as the
# window moving on re-expands only recurring items: an event decades ahead must be
# stored when its item is read, or never. This only bounds the search.
SINGLE_EVENT_END = datetime(9000, 1, 1, tzinfo=UTC)
# Rules this fine-grained are never real meetings, and expanding them costs
# minutes of CPU before any cap applies: such items are refused.
REFUSED_FREQUENCIES = frozenset({"SECONDLY", "MINUTELY"})
# The library walks a rule from its DTSTART, so a dense rule that began long ago
# costs CPU and memory for every occurrence before the window (an hourly rule
# from 1900 took 4 s and 70 MiB): rules estimated to step more than this are refused.
MAX_RULE_STEPS = 250_000
_UTC_ZONE = ZoneInfo("UTC")
_PERIOD_DAYS = {"HOURLY": 1 / 24, "DAILY": 1, "WEEKLY": 7, "MONTHLY": 31, "YEARLY": 366}
# Properties whose unreadable value would silently drop or misplace busy time.
_TIME_PROPERTIES = frozenset({"DTSTART", "DTEND", "DURATION", "RRULE", "RDATE", "EXDATE",
                              "RECURRENCE-ID"})
# Copies of one UID without RECURRENCE-ID are expanded one by one (each with every
# override); past these bounds the rest are left out and reported. A hostile item of
# 1,000 copies and 1,000 overrides took 22 s.
MAX_SEPARATE_COPIES = 100
MAX_COPY_WORK = 20_000  # copies × (overrides + 1)
# An item's reasons for what was left out, listed one by one up to this many.
MAX_REASONS = 10
# Bump when expansion logic changes, so stored items are expanded again.
EXPANSION_VERSION = 5
# Floating times are compared by the library before we place them in a zone.
_PAD = timedelta(days=2)
# Held while an item is read: icalendar's cache of custom time zones is process-wide.
_ZONE_CACHE = threading.Lock()


class BadItem(ValueError):
    """The item cannot be read; it is skipped and reported, never fatal."""


@dataclass(frozen=True, slots=True)
class Expansion:
    instances: tuple[BusyRow, ...]
    recurring: bool
    truncated: bool = False
    # The booking id when this item is a hold fbproxy wrote (see HOLD_MARKER).
    hold_booking: str | None = None
    # Why parts of the item were left out (an unreadable copy of a VEVENT sharing its
    # UID with readable ones): the rest was read, and each is reported like a skip.
    skipped: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ExpandContext:
    """Everything expansion needs besides the item: the source's zone and owner."""

    zone: ZoneInfo
    window_start: datetime
    window_end: datetime
    owner_emails: frozenset[str] = frozenset()


def parse_item(ical: str) -> Calendar:
    try:
        return Calendar.from_ical(ical)
    except Exception as exc:  # the parser raises many kinds on hostile input
        raise BadItem(f"not valid iCalendar: {exc or type(exc).__name__}") from exc


def is_recurring(calendar: Calendar) -> bool:
    return any("RRULE" in c or "RDATE" in c for c in calendar.walk("VEVENT"))


def drop_unreadable(calendar: Calendar, window_end: datetime | None = None) -> list[str]:
    """Refuse VEVENTs whose times cannot be read, instead of dropping them silently.

    Components sharing a UID are checked one by one (merged exports and dumps of
    scheduling messages repeat a UID without RECURRENCE-ID): an unreadable one is
    taken out of ``calendar`` and named in the returned reasons, the others are
    read. BadItem when no VEVENT is left to read.
    """
    events = calendar.walk("VEVENT")
    budget = float(MAX_RULE_STEPS)  # for all the rules of the item together
    problems: list[tuple[int, Component, str]] = []
    for position, event in enumerate(events, 1):
        try:
            budget -= check_event(event, window_end, budget)
        except BadItem as exc:
            problems.append((position, event, str(exc)))
        except Exception as exc:  # the parser raises many kinds on hostile input
            problems.append((position, event, f"cannot read: {exc or type(exc).__name__}"))
    if not problems:
        return []
    if len(problems) == len(events):
        more = f" (and {len(events) - 1} more VEVENTs with this UID)" if len(events) > 1 else ""
        raise BadItem(problems[0][2] + more)
    doomed = {id(event) for _, event, _ in problems}
    for component in calendar.walk():
        component.subcomponents = [c for c in component.subcomponents if id(c) not in doomed]
    reasons = [f"{_describe(event, position, len(events))} is left out, the rest of this "
               f"UID is read: {problem}" for position, event, problem in problems]
    if len(reasons) > MAX_REASONS:
        reasons[MAX_REASONS:] = [f"{len(reasons) - MAX_REASONS} more VEVENTs with this UID "
                                 "are left out for such reasons"]
    return reasons


def check_event(event: Component, window_end: datetime | None,
                budget: float = MAX_RULE_STEPS) -> float:
    """Raise BadItem if the event's times cannot be read; else the steps its rules cost."""
    for name, problem in getattr(event, "errors", ()):
        if str(name).upper() in _TIME_PROPERTIES:
            raise BadItem(f"{name}: {problem}")
    if "DTSTART" not in event:
        raise BadItem("a VEVENT has no DTSTART")
    rules = _as_list(event.get("RRULE"))
    if rules and not any(rules):
        # An empty "RRULE:" (seen in a holiday feed) repeats nothing: the event is
        # its single instance, as recurring-ical-events reads it.
        del event["RRULE"]
    steps = 0.0
    for rule in rules:
        steps += check_rule(rule, event, window_end, budget - steps)
    return steps


def _describe(event: Component, position: int, count: int) -> str:
    """Which VEVENT of an item, for a reason a person reads: its place and what
    tells copies apart (upstream text, reduced to characters that carry no markup)."""
    parts = [f"{name} {_shown(event[name])}" for name in ("RECURRENCE-ID", "SEQUENCE",
                                                         "DTSTART") if name in event]
    return f"VEVENT {position} of {count}" + (f" ({', '.join(parts)})" if parts else "")


def _shown(value: Any) -> str:
    text = value.to_ical() if hasattr(value, "to_ical") else value
    text = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
    return re.sub(r"[^A-Za-z0-9:+-]", ".", text[:40])


def check_rule(rule: Any, event: Component, window_end: datetime | None,
               budget: float = MAX_RULE_STEPS) -> float:
    """Refuse rules whose expansion would be unbounded in practice; else their estimated
    steps up to ``window_end`` (0 when that cannot be told)."""
    if not rule:
        return 0.0
    frequencies = {str(f).upper() for f in _as_list(rule.get("FREQ"))}
    if not frequencies:
        raise BadItem("RRULE has no FREQ")
    if frequencies & REFUSED_FREQUENCIES:
        raise BadItem(f"FREQ={'/'.join(sorted(frequencies))} recurrence is refused "
                      "(more than one occurrence an hour)")
    intervals = [int(i) for i in _as_list(rule.get("INTERVAL"))] or [1]
    if min(intervals) < 1:
        # dateutil loops forever on INTERVAL=0.
        raise BadItem(f"RRULE INTERVAL={min(intervals)} is refused (must be 1 or more)")
    # Occurrences per period from the time-of-day parts, the day parts on top.
    per_time = _count(rule, "BYHOUR") * _count(rule, "BYMINUTE") * _count(rule, "BYSECOND")
    if "HOURLY" in frequencies:
        per_time = 24 * _count(rule, "BYMINUTE") * _count(rule, "BYSECOND")
    if per_time > 24:
        raise BadItem(f"RRULE makes {per_time} occurrences a day from BYHOUR/BYMINUTE/BYSECOND "
                      "(more than one occurrence an hour)")
    if window_end is None or not frequencies <= set(_PERIOD_DAYS):
        return 0.0
    start = _value(event, "DTSTART")
    until = [u for u in _as_list(rule.get("UNTIL")) if isinstance(u, date)]
    end = to_utc(min(until), _UTC_ZONE) if until else window_end
    span_days = (min(end, window_end) - to_utc(start, _UTC_ZONE)).total_seconds() / 86400
    period = max(_PERIOD_DAYS[f] for f in frequencies) * min(intervals)
    per_day = 1 if "HOURLY" in frequencies else per_time
    per_period = per_day * max(_count(rule, "BYDAY") * (5 if period > 7 else 1),
                               _count(rule, "BYMONTHDAY") * _count(rule, "BYMONTH"),
                               _count(rule, "BYYEARDAY"),
                               _count(rule, "BYWEEKNO") * 7 if "BYWEEKNO" in rule else 1)
    steps = span_days / period * per_period
    counts = [int(c) for c in _as_list(rule.get("COUNT"))]
    if counts:
        steps = min(steps, max(counts))
    if steps > budget:
        shared = "" if budget >= MAX_RULE_STEPS else \
            f"; with the other rules of this UID, more than {MAX_RULE_STEPS:,} in all"
        raise BadItem(f"RRULE would step through about {int(steps):,} occurrences from "
                      f"DTSTART {start} (more than {max(0, int(budget)):,}{shared})")
    return max(0.0, steps)


def _count(rule: Any, name: str) -> int:
    return max(1, len(_as_list(rule.get(name))))


def expand_item(ical: str, context: ExpandContext) -> Expansion:
    """The busy instances of one item; raises BadItem when it cannot be read.

    The item is read on its own: icalendar keeps every custom VTIMEZONE it parses
    in a process-wide cache, where the first one of a TZID wins for every later
    item naming that TZID, whichever source it comes from. That cache is emptied
    first, under a lock while threads expand (``expansion_workers = 0``).
    """
    with _ZONE_CACHE:
        icalendar.use_zoneinfo()  # type: ignore[no-untyped-call]  # a new, empty cache
        return _expand_item(ical, context)


def _expand_item(ical: str, context: ExpandContext) -> Expansion:
    calendar = parse_item(ical)
    skipped = drop_unreadable(calendar, context.window_end)
    recurring = is_recurring(calendar)
    limit = context.window_end if recurring else SINGLE_EVENT_END
    truncated = False
    try:
        # A set: copies of one event (merged exports) block the same time once.
        rows = sorted(set(_event_rows(calendar, context, limit, skipped)),
                      key=lambda r: (r.start, r.end, r.status))
        if len(rows) > MAX_INSTANCES_PER_ITEM:
            rows, truncated = rows[:MAX_INSTANCES_PER_ITEM], True
        rows.extend(_freebusy_rows(calendar, context))
    except BadItem:
        raise
    except Exception as exc:  # a library bug on hostile input must only skip this item
        raise BadItem(f"cannot expand: {exc or type(exc).__name__}") from exc
    marks = [str(e[HOLD_MARKER]) for e in calendar.walk("VEVENT") if HOLD_MARKER in e]
    return Expansion(instances=tuple(rows), recurring=recurring, truncated=truncated,
                     hold_booking=marks[0] if marks else None, skipped=tuple(skipped))


def _event_rows(calendar: Calendar, context: ExpandContext, limit: datetime,
                skipped: list[str]) -> Iterator[BusyRow]:
    window_start = int(context.window_start.timestamp())
    window_limit = int(limit.timestamp())
    for event, start, end in _occurrences(calendar, context, limit, skipped):
        status = busy_status(event, context.owner_emails)
        if status is None:
            continue
        start_ts = int(to_utc(start, context.zone).timestamp())
        end_ts = int(to_utc(end, context.zone).timestamp())
        if end_ts <= start_ts:
            # A start inside a DST gap (02:30 on the spring-forward day) is read
            # with the offset before the gap and can collapse a real event to
            # nothing: keep its wall-clock length from the real start instead.
            end_ts = start_ts + _wall_seconds(start, end)
        if end_ts <= start_ts or end_ts <= window_start or start_ts >= window_limit:
            continue
        yield BusyRow(start_ts, end_ts, status)


Occurrence = tuple[Component, date | datetime, date | datetime]


def _occurrences(calendar: Calendar, context: ExpandContext, limit: datetime,
                 skipped: list[str]) -> Iterable[Occurrence]:
    wr_zone = _wr_zone(calendar)
    events = _latest_revision(calendar.walk("VEVENT"))
    if not any("RRULE" in e or "RDATE" in e or "RECURRENCE-ID" in e or "EXDATE" in e
               for e in events):
        # Most items are one plain event: reading it directly skips the
        # library's per-occurrence copy, which was a third of expansion time.
        # (An EXDATE goes to the library: equal to DTSTART, it removes the event.)
        return [_single(event, context.zone, wr_zone) for event in events]
    if sum("RECURRENCE-ID" not in e for e in events) <= 1:
        return _expanded(calendar, context, limit)
    return _copies(calendar, events, context, limit, skipped)


def _latest_revision(events: list[Component]) -> list[Component]:
    """The VEVENTs that count when a UID has several without RECURRENCE-ID.

    A higher SEQUENCE is a later revision of the event (RFC 5545 §3.8.7.4; an
    edited copy kept beside the original, a REQUEST that moved a meeting): it
    replaces the earlier ones, as calendar apps and recurring-ical-events read
    them. Copies of the same revision (merged exports) all count.
    """
    masters = [e for e in events if "RECURRENCE-ID" not in e]
    if len(masters) <= 1:
        return events
    latest = max(_sequence(e) for e in masters)
    return [e for e in events if "RECURRENCE-ID" in e or _sequence(e) == latest]


def _sequence(event: Component) -> int:
    """SEQUENCE, 0 when absent (RFC 5545) or unreadable."""
    try:
        return int(str(event.get("SEQUENCE", 0)))
    except ValueError:
        return 0


def _copies(calendar: Calendar, events: list[Component], context: ExpandContext,
            limit: datetime, skipped: list[str]) -> list[Occurrence]:
    """Copies of a UID without RECURRENCE-ID, of one revision (merged exports): the
    library would keep only the last one. Each is expanded with the overrides, and
    what any copy makes blocks time; within bounds, as each copy costs a whole
    expansion."""
    masters = [e for e in events if "RECURRENCE-ID" not in e]
    overrides = [e for e in events if "RECURRENCE-ID" in e]
    others = [c for c in calendar.subcomponents if c.name != "VEVENT"]
    found: list[Occurrence] = []
    distinct: set[tuple[date | datetime, date | datetime]] = set()  # overrides recur per copy
    for done, master in enumerate(masters):
        why = _too_costly(done, len(overrides), len(distinct))
        if why:
            first = next(i for i, e in enumerate(events, 1) if e is master)
            skipped.append(f"{len(masters) - done} more VEVENTs with this UID and no "
                           f"RECURRENCE-ID, from VEVENT {first} of {len(events)}, are left "
                           f"out: {why}")
            break
        part = Calendar()
        part.update(calendar)  # the calendar's properties (X-WR-TIMEZONE)
        part.subcomponents = [*others, master, *overrides]
        occurrences = _expanded(part, context, limit)
        found += occurrences
        distinct.update((start, end) for _, start, end in occurrences)
    return found


def _too_costly(done: int, overrides: int, found: int) -> str | None:
    """Why no further copy of a UID is expanded, or None (the first always is)."""
    if done >= MAX_SEPARATE_COPIES:
        return f"more than {MAX_SEPARATE_COPIES} copies to expand one by one"
    if (done + 1) * (overrides + 1) > MAX_COPY_WORK:
        return f"each copy is expanded with the {overrides} overrides, and more would cost " \
               f"more than {MAX_COPY_WORK:,} readings of them"
    if found > MAX_INSTANCES_PER_ITEM:
        return f"the copies before make more than {MAX_INSTANCES_PER_ITEM:,} occurrences"
    return None


def _expanded(calendar: Calendar, context: ExpandContext,
              limit: datetime) -> list[Occurrence]:
    # between() is linear in the occurrences; after() re-walks the rule for
    # every page and turned a dense series quadratic (35 s for an hourly one).
    query = recurring_ical_events.of(calendar, skip_bad_series=True, components=[IN_PLACE])
    found = query.between(context.window_start - _PAD, limit + _PAD)
    return cast(list[Occurrence], found)  # what _InPlace.as_component returns


class _Event(EventAdapter):  # type: ignore[misc]  # the library has no type hints
    """The library's reading of a VEVENT, with the VEVENT itself at hand."""

    def __init__(self, component: Component) -> None:
        super().__init__(component)
        self.event = component


class _InPlace(recurring_ical_events.Occurrence):  # type: ignore[misc]
    """An occurrence as (its VEVENT, start, end): by default the library makes a copy
    of the VEVENT for each occurrence, which took 40 % of expanding a series.

    The VEVENT is the one the occurrence comes from (the master, or the override of
    that RECURRENCE-ID): what busy_status reads (STATUS, TRANSP, ATTENDEE) is on it.
    Built on the library's documented extension points (``of(components=...)`` with
    ``ComponentsWithName(adapter=..., occurrence=...)``, an Occurrence subclass with
    its own ``as_component``); tests/test_expand.py checks it against the copies.
    """

    def __init__(self, adapter: _Event, start: Any = None, end: Any = None,
                 sequence: int = -1) -> None:
        super().__init__(adapter, start, end, sequence)
        self.event = adapter.event

    def as_component(self, keep_recurrence_attributes: bool) -> Any:
        return (self.event, self.start, self.end)


IN_PLACE = ComponentsWithName("VEVENT", adapter=_Event, occurrence=_InPlace)


def _wr_zone(calendar: Calendar) -> ZoneInfo | None:
    """The zone X-WR-TIMEZONE gives floating times (Google and Apple exports), as
    recurring-ical-events applies it; an unknown one is removed, so that no path
    reads it and floating times stay in the source's zone."""
    value = calendar.get("X-WR-TIMEZONE")
    if value is None:
        return None
    try:
        return ZoneInfo(str(value))
    except (KeyError, ValueError, OSError):  # ZoneInfoNotFoundError is a KeyError
        del calendar["X-WR-TIMEZONE"]
        return None


def _single(event: Component, zone: ZoneInfo, wr_zone: ZoneInfo | None) -> Occurrence:
    """Start and end of a non-recurring event, with the library's rules for a missing end."""
    start: Any = _placed(_value(event, "DTSTART"), wr_zone)
    end: Any
    if "DTEND" in event:
        end = _placed(_value(event, "DTEND"), wr_zone)
    elif "DURATION" in event:
        duration = _value(event, "DURATION")
        if not isinstance(start, datetime) and (duration.seconds or duration.microseconds):
            # A date plus hours: date arithmetic would drop the hours (and the event
            # with them); like recurring-ical-events, it starts at midnight, floating.
            start = datetime.combine(start, time())
        end = start + duration
    else:
        # RFC 5545 §3.6.1: a date lasts one day; a date-time, no time at all.
        end = start if isinstance(start, datetime) else start + timedelta(days=1)
    if isinstance(start, datetime) != isinstance(end, datetime):
        raise BadItem("DTSTART and DTEND are not both dates or both date-times")
    # Like recurring-ical-events: an end before the start is read swapped.
    if to_utc(end, zone) < to_utc(start, zone):
        start, end = end, start
    return event, start, end


def _placed(value: Any, wr_zone: ZoneInfo | None) -> Any:
    """A floating date-time in the X-WR-TIMEZONE zone, if the calendar names one."""
    if wr_zone is not None and isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=wr_zone)
    return value


def _value(component: Component, name: str) -> Any:
    prop: Any = component[name]
    return prop.dt


def _wall_seconds(start: date | datetime, end: date | datetime) -> int:
    """The length as read on a wall clock, for two times in the same zone (else 0)."""
    if isinstance(start, datetime) and isinstance(end, datetime) and start.tzinfo == end.tzinfo:
        return int((end.replace(tzinfo=None) - start.replace(tzinfo=None)).total_seconds())
    return 0


def busy_status(event: Component, owner_emails: frozenset[str]) -> str | None:
    """DESIGN.md's rule: None when the event does not block time."""
    if str(event.get("TRANSP", "OPAQUE")).upper() == "TRANSPARENT":
        return None
    status = str(event.get("STATUS", "CONFIRMED")).upper()
    if status == "CANCELLED":
        return None
    owner_reply = _owner_partstat(event, owner_emails)
    if owner_reply == "DECLINED":
        return None
    if status == "TENTATIVE" or owner_reply == "TENTATIVE":
        return STATUS_TENTATIVE
    return STATUS_BUSY


def _owner_partstat(event: Component, owner_emails: frozenset[str]) -> str | None:
    if not owner_emails:
        return None
    for attendee in _as_list(event.get("ATTENDEE")):
        address = str(attendee).strip().lower().removeprefix("mailto:")
        if address in owner_emails:
            params = getattr(attendee, "params", {})
            return str(params.get("PARTSTAT", "NEEDS-ACTION")).upper()
    return None


def _freebusy_rows(calendar: Calendar, context: ExpandContext) -> Iterator[BusyRow]:
    """Published VFREEBUSY periods count too (some feeds only publish those)."""
    window_start = int(context.window_start.timestamp())
    for component in calendar.walk("VFREEBUSY"):
        for prop in _as_list(component.get("FREEBUSY")):
            fbtype = str(prop.params.get("FBTYPE", "BUSY")).upper()
            if fbtype == "FREE":
                continue
            status = STATUS_TENTATIVE if fbtype == "BUSY-TENTATIVE" else STATUS_BUSY
            for period in _periods(prop):
                start, end_or_duration = period
                end = start + end_or_duration if isinstance(end_or_duration,
                                                            timedelta) else end_or_duration
                start_ts = int(to_utc(start, context.zone).timestamp())
                end_ts = int(to_utc(end, context.zone).timestamp())
                if end_ts > start_ts and end_ts > window_start:
                    yield BusyRow(start_ts, end_ts, status)


def _periods(prop: Any) -> Iterable[tuple[datetime, datetime | timedelta]]:
    value = prop.dt if hasattr(prop, "dt") else prop
    if isinstance(value, tuple):
        return [value]
    return [p.dt if hasattr(p, "dt") else p for p in getattr(prop, "dts", [])]


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def to_utc(value: date | datetime, zone: ZoneInfo) -> datetime:
    """All-day dates and floating times are read in the source's zone."""
    if not isinstance(value, datetime):
        return datetime.combine(value, time(), zone).astimezone(UTC)
    if value.tzinfo is None:
        return value.replace(tzinfo=zone).astimezone(UTC)
    return value.astimezone(UTC)
