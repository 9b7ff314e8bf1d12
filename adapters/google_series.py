"""Google recurring series as one iCalendar item: the master's rule and its exceptions.

events.list with ``singleEvents=False`` answers a series as its master (``recurrence``:
RRULE/RDATE/EXDATE lines) plus one event per exception (``recurringEventId`` and
``originalStartTime``; a cancelled one carries little more than those). Expanding them
here instead of asking Google to split them keeps a never-ending series one item that
the bounded expansion (server/sync/expand.py) reads like any CalDAV or ICS series.
https://developers.google.com/calendar/api/guides/recurringevents
https://developers.google.com/calendar/api/v3/reference/events/list (singleEvents, showDeleted)

The sync state keeps each series in a reduced form (times, status, transparency,
whether the owner declined, the hold marker; never a title), so an exception that
changes alone rebuilds its series without asking Google again.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from icalendar import Calendar, Event
from icalendar.parser import Contentline
from icalendar.prop import vDDDLists, vRecur

from adapters.base import HOLD_MARKER

# Event types that never make anyone busy.
NOT_BUSY_TYPES = frozenset({"workingLocation", "birthday"})
_RECURRENCE_NAMES = frozenset({"RRULE", "RDATE", "EXDATE"})
_STAMP = datetime(2000, 1, 1, tzinfo=UTC)  # stable: the item's hash stays put


def zone_named(name: object, fallback: ZoneInfo) -> ZoneInfo:
    if not isinstance(name, str) or not name:
        return fallback
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return fallback


def reduced(event: Mapping[str, Any], declined: bool, booking: str | None) -> dict[str, Any]:
    """What the series item needs of a master or an exception, JSON-shaped."""
    record: dict[str, Any] = {"start": dict(event["start"]), "end": dict(event["end"]),
                              "status": str(event.get("status", "confirmed")),
                              "transparency": str(event.get("transparency", "opaque")),
                              "declined": declined,
                              "not_busy_type": event.get("eventType") in NOT_BUSY_TYPES}
    if event.get("recurrence") is not None:
        record["recurrence"] = [str(line) for line in event["recurrence"]]
    if booking:
        record["booking"] = booking
    return record


def cancelled_exception(event: Mapping[str, Any]) -> dict[str, Any]:
    return {"original": dict(event["originalStartTime"]), "cancelled": True}


def original_key(original: Mapping[str, Any]) -> str:
    """One exception per original start: the key it is kept under in the state."""
    value = original.get("dateTime") or original.get("date")
    if not isinstance(value, str):
        raise ValueError("an exception without originalStartTime")
    return value


def series_item(key: str, master: Mapping[str, Any], exceptions: Mapping[str, Any],
                zone: ZoneInfo) -> str | None:
    """The series as iCalendar text, or None when none of it can block time.

    ``zone`` is the calendar's: all-day dates become midnights there, as single
    all-day events do, and a start without its own zone is read there.
    """
    if master.get("not_busy_type"):
        return None
    here = zone_named(master["start"].get("timeZone"), zone)
    start, end = moment(master["start"], here, zone), moment(master["end"], here, zone)
    all_day = "date" in master["start"]
    vevent = _vevent(key, master, start, max(start, end))
    if master.get("declined"):
        # The owner declined the series: its occurrences do not block, but an
        # exception they accepted still does (it carries its own status).
        vevent["STATUS"] = "CANCELLED"
    for line in master.get("recurrence") or ():
        _add_recurrence(vevent, str(line), here, zone, all_day, start)
    if "RRULE" not in vevent and "RDATE" not in vevent:
        raise ValueError("a recurring event without RRULE or RDATE")
    overrides: list[Event] = []
    for record in exceptions.values():
        recurrence_id = moment(record["original"], here, zone)
        if record.get("cancelled") or record.get("declined") or record.get("not_busy_type") \
                or record.get("status") == "cancelled":
            vevent.add("EXDATE", recurrence_id)
            continue
        other_start = moment(record["start"], here, zone)
        override = _vevent(key, record, other_start,
                           max(other_start, moment(record["end"], here, zone)))
        override.add("RECURRENCE-ID", recurrence_id)
        overrides.append(override)
    calendar = Calendar()
    calendar.add("PRODID", "-//fbproxy//google adapter//EN")
    calendar.add("VERSION", "2.0")
    calendar.add_component(vevent)
    for override in overrides:
        calendar.add_component(override)
    calendar.add_missing_timezones()
    return str(calendar.to_ical().decode())


def _vevent(key: str, record: Mapping[str, Any], start: datetime, end: datetime) -> Event:
    vevent = Event()
    vevent.add("UID", key)
    vevent.add("DTSTAMP", _STAMP)
    vevent.add("DTSTART", start)
    vevent.add("DTEND", end)
    vevent.add("STATUS", "TENTATIVE" if record.get("status") == "tentative" else "CONFIRMED")
    if record.get("transparency") == "transparent":
        vevent.add("TRANSP", "TRANSPARENT")
    if record.get("booking"):
        vevent.add(HOLD_MARKER, str(record["booking"]))
    return vevent


def moment(value: Mapping[str, Any], here: ZoneInfo, calendar_zone: ZoneInfo) -> datetime:
    """A Google start/end/originalStartTime as an aware time in the series' zone.

    All-day dates are midnight in the calendar's zone, kept as date-times so that
    the rule, its exceptions and single all-day events agree on where a day begins.
    """
    if "dateTime" in value:
        parsed = datetime.fromisoformat(str(value["dateTime"]).replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=zone_named(value.get("timeZone"), here))
        return parsed.astimezone(here)
    day = date.fromisoformat(str(value["date"]))
    return datetime.combine(day, time(), calendar_zone)


def _add_recurrence(vevent: Event, line: str, here: ZoneInfo, calendar_zone: ZoneInfo,
                    all_day: bool, start: datetime) -> None:
    """One of the master's recurrence lines, read by icalendar's own parsers."""
    if "\r" in line or "\n" in line:
        raise ValueError("a recurrence line spanning several lines")
    name, params, value = Contentline(line).parts()  # type: ignore[no-untyped-call]
    name = name.upper()
    if name not in _RECURRENCE_NAMES:
        return  # EXRULE is deprecated (RFC 5545) and Google does not write it
    if name == "RRULE":
        rule = vRecur.from_ical(value)
        if "UNTIL" in rule:
            rule["UNTIL"] = [_until(u, here, calendar_zone) for u in rule["UNTIL"]]
        vevent.add("RRULE", rule)
        return
    values = vDDDLists.from_ical(value, timezone=params.get("TZID"))  # type: ignore[no-untyped-call]
    placed = [_placed(v, here, calendar_zone, all_day, start) for v in values
              if not isinstance(v, tuple)]  # an RDATE period: Google writes none
    if placed:
        vevent.add(name, placed)


def _until(value: date | datetime, here: ZoneInfo, calendar_zone: ZoneInfo) -> datetime:
    """UNTIL in UTC: the rule's DTSTART is now a date-time, and RFC 5545 then wants UTC.
    A date UNTIL (all-day series) includes its whole day."""
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=here)
        return aware.astimezone(UTC)
    end_of_day = datetime.combine(value + timedelta(days=1), time(), calendar_zone)
    return (end_of_day - timedelta(seconds=1)).astimezone(UTC)


def _placed(value: date | datetime, here: ZoneInfo, calendar_zone: ZoneInfo, all_day: bool,
            start: datetime) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=here)
    if all_day:
        return datetime.combine(value, time(), calendar_zone)
    # A date in a timed series names the occurrence of that day.
    return datetime.combine(value, start.timetz().replace(tzinfo=None), here)
