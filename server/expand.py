"""One stored iCalendar item → the busy instances it causes in a window.

This is CPU work (parsing, recurrence expansion): callers run it in a thread
executor, once per changed item, and store the result.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import recurring_ical_events
from icalendar import Calendar, Component

from adapters.base import HOLD_MARKER
from server.store import STATUS_BUSY, STATUS_TENTATIVE, BusyRow

# An item cannot make more busy rows than this in one window; a FREQ=SECONDLY
# rule from a hostile feed would otherwise fill the disk.
MAX_INSTANCES_PER_ITEM = 5000
# Non-recurring events are stored whatever their date (one row each); this only
# bounds the search.
SINGLE_EVENT_LIMIT = timedelta(days=365 * 30)
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
# Bump when expansion logic changes, so stored items are expanded again.
EXPANSION_VERSION = 3
# Floating times are compared by the library before we place them in a zone.
_PAD = timedelta(days=2)


class BadItem(ValueError):
    """The item cannot be read; it is skipped and reported, never fatal."""


@dataclass(frozen=True, slots=True)
class Expansion:
    instances: tuple[BusyRow, ...]
    recurring: bool
    truncated: bool = False
    # The booking id when this item is a hold fbproxy wrote (see HOLD_MARKER).
    hold_booking: str | None = None


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


def check_readable(calendar: Calendar, window_end: datetime | None = None) -> None:
    """Refuse items whose times cannot be read, instead of dropping them silently."""
    for event in calendar.walk("VEVENT"):
        for name, problem in getattr(event, "errors", ()):
            if str(name).upper() in _TIME_PROPERTIES:
                raise BadItem(f"{name}: {problem}")
        if "DTSTART" not in event:
            raise BadItem("a VEVENT has no DTSTART")
        for rule in _as_list(event.get("RRULE")):
            check_rule(rule, event, window_end)


def check_rule(rule: Any, event: Component, window_end: datetime | None) -> None:
    """Refuse rules whose expansion would be unbounded in practice."""
    frequencies = {str(f).upper() for f in _as_list(rule.get("FREQ"))}
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
        return
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
    if steps > MAX_RULE_STEPS:
        raise BadItem(f"RRULE would step through about {int(steps):,} occurrences from "
                      f"DTSTART {start} (more than {MAX_RULE_STEPS:,})")


def _count(rule: Any, name: str) -> int:
    return max(1, len(_as_list(rule.get(name))))


def expand_item(ical: str, context: ExpandContext) -> Expansion:
    """The busy instances of one item; raises BadItem when it cannot be read."""
    calendar = parse_item(ical)
    try:
        check_readable(calendar, context.window_end)
    except BadItem:
        raise
    except Exception as exc:
        raise BadItem(f"cannot read: {exc or type(exc).__name__}") from exc
    recurring = is_recurring(calendar)
    limit = context.window_end if recurring else context.window_start + SINGLE_EVENT_LIMIT
    truncated = False
    try:
        rows = sorted(_event_rows(calendar, context, limit), key=lambda r: (r.start, r.end))
        if len(rows) > MAX_INSTANCES_PER_ITEM:
            rows, truncated = rows[:MAX_INSTANCES_PER_ITEM], True
        rows.extend(_freebusy_rows(calendar, context))
    except BadItem:
        raise
    except Exception as exc:  # a library bug on hostile input must only skip this item
        raise BadItem(f"cannot expand: {exc or type(exc).__name__}") from exc
    marks = [str(e[HOLD_MARKER]) for e in calendar.walk("VEVENT") if HOLD_MARKER in e]
    return Expansion(instances=tuple(rows), recurring=recurring, truncated=truncated,
                     hold_booking=marks[0] if marks else None)


def _event_rows(calendar: Calendar, context: ExpandContext, limit: datetime) -> Iterator[BusyRow]:
    window_start = int(context.window_start.timestamp())
    window_limit = int(limit.timestamp())
    for event, start, end in _occurrences(calendar, context, limit):
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


def _occurrences(calendar: Calendar, context: ExpandContext,
                 limit: datetime) -> Iterable[Occurrence]:
    events = calendar.walk("VEVENT")
    if not any("RRULE" in e or "RDATE" in e or "RECURRENCE-ID" in e for e in events):
        # Most items are one plain event: reading it directly skips the
        # library's per-occurrence copy, which was a third of expansion time.
        return [_single(event, context.zone) for event in events]
    # between() is linear in the occurrences; after() re-walks the rule for
    # every page and turned a dense series quadratic (35 s for an hourly one).
    query = recurring_ical_events.of(calendar, skip_bad_series=True)
    return [(o, o.start, o.end) for o in query.between(context.window_start - _PAD, limit + _PAD)]


def _single(event: Component, zone: ZoneInfo) -> Occurrence:
    """Start and end of a non-recurring event, with the library's rules for a missing end."""
    start: Any = _value(event, "DTSTART")
    end: Any
    if "DTEND" in event:
        end = _value(event, "DTEND")
    elif "DURATION" in event:
        end = start + _value(event, "DURATION")
    else:
        # RFC 5545 §3.6.1: a date lasts one day; a date-time, no time at all.
        end = start if isinstance(start, datetime) else start + timedelta(days=1)
    if isinstance(start, datetime) != isinstance(end, datetime):
        raise BadItem("DTSTART and DTEND are not both dates or both date-times")
    # Like recurring-ical-events: an end before the start is read swapped.
    if to_utc(end, zone) < to_utc(start, zone):
        start, end = end, start
    return event, start, end


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
