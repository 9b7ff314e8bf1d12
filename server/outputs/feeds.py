"""iCalendar rendering of merged busy time, built with icalendar objects only.

Nothing from an upstream event reaches these functions: they see time ranges
and a status, so titles, attendees and descriptions cannot leak.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta

from icalendar import Calendar, Event, FreeBusy, vDuration, vText

from server.booking.availability import TENTATIVE, BusyInterval

PRODID = "-//fbproxy//fbproxy 0.1//EN"
_SUMMARY = {"busy": "Busy", "tentative": "Tentative"}


def _utc(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _calendar(name: str, refresh: timedelta | None) -> Calendar:
    """A VCALENDAR; with ``refresh`` it is a subscribable feed (METHOD, name, refresh)."""
    calendar = Calendar()
    calendar.add("PRODID", PRODID)
    calendar.add("VERSION", "2.0")
    calendar.add("CALSCALE", "GREGORIAN")
    if refresh is not None:
        calendar.add("METHOD", "PUBLISH")
        calendar.add("X-WR-CALNAME", name)
        # How often subscribers should come back (RFC 7986, and Outlook's spelling).
        calendar.add("REFRESH-INTERVAL", refresh, parameters={"VALUE": "DURATION"})
        calendar.add("X-PUBLISHED-TTL", vDuration(refresh))
    return calendar


def block_uid(calendar_name: str, block: BusyInterval) -> str:
    key = f"{calendar_name}|{block.start}|{block.end}|{block.status}".encode()
    return hashlib.sha256(key).hexdigest()[:32] + "@fbproxy"


# One VEVENT of a feed, as icalendar wrote it, by what it was made of.
EventBytes = dict[tuple[object, ...], bytes]
_END = b"END:VCALENDAR\r\n"


def render_busy_feed(calendar_name: str, blocks: Sequence[BusyInterval], *, stamp: datetime,
                     refresh: timedelta,
                     holds: Sequence[tuple[str, int, int, str]] = ()) -> bytes:
    """Busy blocks as opaque VEVENTs, for apps that subscribe to calendars.

    ``holds`` (uid, start, end, title) adds the holds fbproxy itself wrote, with
    their titles, for subscribers allowed to see them.
    """
    return render_busy_feed_reusing(calendar_name, blocks, stamp=stamp, refresh=refresh,
                                    holds=holds, previous={})[0]


def render_busy_feed_reusing(calendar_name: str, blocks: Sequence[BusyInterval], *,
                             stamp: datetime, refresh: timedelta,
                             holds: Sequence[tuple[str, int, int, str]],
                             previous: EventBytes) -> tuple[bytes, EventBytes]:
    """``render_busy_feed``, taking each unchanged VEVENT from the feed's last render.

    A booking or a moved event changes one VEVENT of hundreds, and icalendar
    spends about 0.15 ms on each: this keeps a re-render to the changed ones.
    The result is byte for byte what ``Calendar.to_ical`` writes for the
    whole calendar (a test checks), since that too is the calendar's own lines
    followed by each component's ``to_ical``. Also returns this render's
    VEVENTs, for the next one.
    """
    events: EventBytes = {}
    parts: list[bytes] = []

    def reuse(key: tuple[object, ...], make: Callable[[], Event]) -> None:
        event = events.get(key) or previous.get(key) or make().to_ical()
        events[key] = event
        parts.append(event)

    for block in blocks:
        uid = block_uid(calendar_name, block)
        reuse((uid, block.start, block.end, block.status, stamp),
              lambda: _block_event(uid, block, stamp))  # noqa: B023 (called at once)
    for uid, start, end, title in holds:
        reuse((uid, start, end, title, stamp),
              lambda: _hold_event(uid, start, end, title, stamp))  # noqa: B023
    head = bytes(_calendar(calendar_name, refresh).to_ical())
    if not head.endswith(_END):
        raise RuntimeError(f"icalendar ended a VCALENDAR with {head[-20:]!r}")
    return b"".join((head[:-len(_END)], *parts, _END)), events


def _hold_event(uid: str, start: int, end: int, title: str, stamp: datetime) -> Event:
    event = _block_event(uid, BusyInterval(start, end), stamp)
    event["SUMMARY"] = vText(title)
    return event


def render_block(uid: str, block: BusyInterval, *, stamp: datetime) -> bytes:
    """One busy block as its own VCALENDAR: a member of the CalDAV collection."""
    calendar = _calendar("", None)
    calendar.add_component(_block_event(uid, block, stamp))
    return bytes(calendar.to_ical())


def _block_event(uid: str, block: BusyInterval, stamp: datetime) -> Event:
    event = Event()
    event.add("UID", uid)
    event.add("DTSTAMP", stamp)
    event.add("DTSTART", _utc(block.start))
    event.add("DTEND", _utc(block.end))
    event.add("SUMMARY", _SUMMARY[block.status])
    event.add("TRANSP", "OPAQUE")
    event.add("STATUS", "TENTATIVE" if block.status == TENTATIVE else "CONFIRMED")
    event.add("CLASS", "PRIVATE")
    return event


def render_freebusy(calendar_name: str, blocks: Sequence[BusyInterval], *, window_start: int,
                    window_end: int, stamp: datetime, refresh: timedelta | None) -> bytes:
    """One VFREEBUSY covering the window; periods clipped to it (RFC 5545 §3.6.4).

    Without ``refresh`` it is an answer (CalDAV free-busy-query), not a feed.
    This is the whole icalendar tree, written at once: the reference that the
    pieces of ``freebusy_pieces`` (what the server sends) are checked against.
    """
    periods = [(_utc(b.start), _utc(b.end), b.status)
               for b in clip(blocks, window_start, window_end)]
    return bytes(freebusy_calendar(calendar_name, periods, start=_utc(window_start),
                                   end=_utc(window_end), stamp=stamp,
                                   refresh=refresh).to_ical())


def freebusy_uid(calendar_name: str) -> str:
    return f"freebusy-{hashlib.sha256(calendar_name.encode()).hexdigest()[:24]}@fbproxy"


def freebusy_calendar(calendar_name: str, periods: Iterable[tuple[datetime, datetime, str]], *,
                      start: datetime, end: datetime, stamp: datetime,
                      refresh: timedelta | None) -> Calendar:
    """The VCALENDAR of ``render_freebusy``: one VFREEBUSY with ``periods`` (start, end,
    status) in the given order."""
    calendar = _calendar(calendar_name, refresh)
    freebusy = FreeBusy()
    freebusy.add("UID", freebusy_uid(calendar_name))
    freebusy.add("DTSTAMP", stamp)
    freebusy.add("DTSTART", start)
    freebusy.add("DTEND", end)
    for period in periods:
        add_period(freebusy, *period)
    calendar.add_component(freebusy)
    return calendar


def add_period(freebusy: FreeBusy, start: datetime, end: datetime, status: str) -> None:
    """One FREEBUSY property: a busy period, typed (RFC 5545 §3.2.9)."""
    fbtype = "BUSY-TENTATIVE" if status == TENTATIVE else "BUSY"
    freebusy.add("FREEBUSY", [(start, end)], parameters={"FBTYPE": fbtype})


def clip(blocks: Sequence[BusyInterval], start: int, end: int) -> list[BusyInterval]:
    """The parts of ``blocks`` inside [start, end)."""
    return [
        BusyInterval(max(b.start, start), min(b.end, end), b.status)
        for b in blocks if b.end > start and b.start < end
    ]


