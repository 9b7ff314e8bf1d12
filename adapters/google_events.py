"""A Google calendar's events.list answer turned into items: plain events one by one,
each series (master and exceptions) whole.

Pure: plain values in and out, no network. The adapter runs it on the executor
the server lends for CPU work (the expansion worker processes), as building
iCalendar text for thousands of events is CPU work like expanding it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from icalendar import Calendar, Event

from adapters.base import HOLD_MARKER, UNREADABLE_ITEM, ChangeSet, Item, SkippedItem
from adapters.google_series import (
    NOT_BUSY_TYPES,
    cancelled_exception,
    original_key,
    reduced,
    series_item,
)

# Where a hold's booking id travels (extendedProperties.private), so it is
# recognised when it comes back through sync.
BOOKING_PROPERTY = "fbproxyBooking"


@dataclass(frozen=True)
class Listed:
    """One calendar's listing: its pages, the series kept from the last round (None:
    a full listing) and what its state keeps besides."""

    calendar_id: str
    pages: Pages
    kept_series: Mapping[str, Any] | None


@dataclass(frozen=True)
class Listing:
    """A round's listings, the state they started from, and the requests they took."""

    calendars: tuple[Listed, ...]
    previous: Mapping[str, Any]
    calendar_ids: tuple[str, ...]
    requests: int


def read_listing(reader: EventReader, listing: Listing) -> ChangeSet:
    """The round's ChangeSet, and the new state (sync tokens and series) in it."""
    tokens: dict[str, Any] = dict(listing.previous)
    changes = Changes()
    for listed in listing.calendars:
        if listed.kept_series is None:
            changes.full_scopes.append(prefix(listed.calendar_id))
        series: dict[str, Any] = json.loads(json.dumps(listed.kept_series or {}))
        reader.read_events(listed.calendar_id, listed.pages, series, changes)
        tokens[listed.calendar_id] = {"sync_token": listed.pages.next_sync_token,
                                      "time_zone": listed.pages.time_zone, "series": series}
    # Calendars no longer configured are dropped from the state (and, being
    # full scopes never again, their items stay until the source is reset).
    tokens = {k: v for k, v in tokens.items() if k in listing.calendar_ids}
    upserted, deleted = changes.result()
    unchanged = not upserted and not deleted and not changes.full_scopes
    return ChangeSet(state={"calendars": tokens}, upserted=upserted,
                     deleted=deleted, skipped=tuple(changes.skipped),
                     full_scopes=tuple(changes.full_scopes), unchanged=unchanged,
                     requests=listing.requests, fetched=len(upserted) + len(deleted))


@dataclass(frozen=True)
class EventReader:
    """Reads events as the source's owner sees them (declined by one of them: free)."""

    owner_emails: Sequence[str] = ()

    def read_events(self, calendar_id: str, pages: Pages, series: dict[str, Any],
                    changes: Changes) -> None:
        """Turn one calendar's listing into items: plain events one by one, and each
        series whose master or exceptions changed rebuilt from ``series`` (the state)."""
        zone = zone_of(pages.time_zone)
        scope = prefix(calendar_id)
        touched: set[str] = set()
        exceptions: list[Mapping[str, Any]] = []
        for event in pages.items:  # masters and plain events first: pages have no order
            event_id = str(event.get("id", ""))
            if event.get("recurringEventId"):
                exceptions.append(event)
                continue
            try:
                if event.get("status") != "cancelled" and event.get("recurrence"):
                    old = series.get(event_id) or {}
                    series[event_id] = {"master": self.reduced_event(event),
                                        "exceptions": old.get("exceptions", {})}
                    touched.add(event_id)
                    continue
                series.pop(event_id, None)  # gone, or no longer recurring
                changes.put(scope + event_id, self.item(scope + event_id, event, zone))
            except UNREADABLE_ITEM as exc:
                changes.skip(scope + event_id, f"unreadable event: {exc}")
        for event in exceptions:
            master_id = str(event["recurringEventId"])
            key = scope + str(event.get("id", ""))
            try:
                if master_id not in series:
                    # An instance of a series this calendar does not show (an
                    # invitation to one occurrence): a single event of its own.
                    changes.put(key, self.item(key, event, zone))
                    continue
                record = cancelled_exception(event) if event.get("status") == "cancelled" \
                    else {**self.reduced_event(event),
                          "original": dict(event["originalStartTime"])}
                series[master_id]["exceptions"][original_key(record["original"])] = record
                touched.add(master_id)
            except UNREADABLE_ITEM as exc:
                changes.skip(key, f"unreadable exception of a recurring event: {exc}")
        for master_id in sorted(touched):
            key = scope + master_id
            entry = series[master_id]
            try:
                text = series_item(key, entry["master"], entry["exceptions"], zone)
            except UNREADABLE_ITEM as exc:
                changes.skip(key, f"unreadable recurring event: {exc}")
                continue
            changes.put(key, None if text is None else Item(key=key, ical=text))

    def reduced_event(self, event: Mapping[str, Any]) -> dict[str, Any]:
        private = (event.get("extendedProperties") or {}).get("private") or {}
        booking = private.get(BOOKING_PROPERTY) if isinstance(private, Mapping) else None
        return reduced(event, self.declined(event),
                       booking if isinstance(booking, str) else None)

    def item(self, key: str, event: Mapping[str, Any], zone: ZoneInfo) -> Item | None:
        """The event as a minimal VEVENT, or None when it does not (or no longer) block."""
        if event.get("status") == "cancelled" or event.get("eventType") in NOT_BUSY_TYPES:
            return None
        if self.declined(event):
            return None
        start = instant(event["start"], zone)
        end = instant(event["end"], zone)
        if end <= start:
            return None  # a reminder-like point in time takes no time
        calendar = Calendar()
        calendar.add("PRODID", "-//fbproxy//google adapter//EN")
        calendar.add("VERSION", "2.0")
        vevent = Event()
        vevent.add("UID", key)
        vevent.add("DTSTAMP", datetime(2000, 1, 1, tzinfo=UTC))  # stable: the hash stays put
        vevent.add("DTSTART", start)
        vevent.add("DTEND", end)
        vevent.add("STATUS", "TENTATIVE" if event.get("status") == "tentative" else "CONFIRMED")
        if event.get("transparency") == "transparent":
            vevent.add("TRANSP", "TRANSPARENT")
        private = (event.get("extendedProperties") or {}).get("private") or {}
        if isinstance(private, Mapping) and isinstance(private.get(BOOKING_PROPERTY), str):
            vevent.add(HOLD_MARKER, private[BOOKING_PROPERTY])
        calendar.add_component(vevent)
        return Item(key=key, ical=calendar.to_ical().decode(), etag=event.get("etag"))

    def declined(self, event: Mapping[str, Any]) -> bool:
        owners = set(self.owner_emails)
        for attendee in event.get("attendees") or ():
            if not isinstance(attendee, Mapping):
                continue
            mine = attendee.get("self") is True or str(attendee.get("email", "")).lower() in owners
            if mine and attendee.get("responseStatus") == "declined":
                return True
        return False


@dataclass
class Changes:
    """One round's results; the last word on a key wins (a master rebuilt after its
    exceptions, a plain event that became a series)."""

    items: dict[str, Item | None] = field(default_factory=dict)  # None: deleted
    skipped: list[SkippedItem] = field(default_factory=list)
    full_scopes: list[str] = field(default_factory=list)

    def put(self, key: str, item: Item | None) -> None:
        self.items[key] = item

    def skip(self, key: str, reason: str) -> None:
        self.skipped.append(SkippedItem(key, reason))

    def result(self) -> tuple[tuple[Item, ...], tuple[str, ...]]:
        return (tuple(i for i in self.items.values() if i is not None),
                tuple(k for k, i in self.items.items() if i is None))


@dataclass(frozen=True)
class Pages:
    items: list[Mapping[str, Any]]
    next_sync_token: str
    time_zone: str


def prefix(calendar_id: str) -> str:
    return f"{calendar_id}/"


def zone_of(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # OSError: a name that is a directory of the tz database ("America").
        return ZoneInfo("UTC")


def instant(value: Mapping[str, Any], zone: ZoneInfo) -> datetime:
    """A Google start/end: dateTime (with offset), or an all-day date in the calendar's zone."""
    if "dateTime" in value:
        moment = datetime.fromisoformat(str(value["dateTime"]).replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=zone_of(str(value.get("timeZone") or zone.key)))
        return moment.astimezone(UTC)
    day = date.fromisoformat(str(value["date"]))
    return datetime.combine(day, time(), zone).astimezone(UTC)
