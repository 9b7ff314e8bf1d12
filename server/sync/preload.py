"""What the expansion workers' fork server loads once, before it forks any of them.

Each task runs in a new worker forked from the fork server
(``server/kit/processes.py``), and a worker inherits what the fork server has
done: importing this module loads the code the workers run, and reads one small
feed through it, which fills the caches every worker would otherwise fill again
on its first item (the IANA zone list, read from disk by both the feed splitter
and icalendar: tens of milliseconds). Only the fork server imports this module.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from adapters.ics_feed import read_feed
from server.sync.expand import ExpandContext
from server.sync.expander import expand_batch

_SAMPLE = b"""BEGIN:VCALENDAR\r
VERSION:2.0\r
PRODID:-//fbproxy//preload//EN\r
X-WR-TIMEZONE:Europe/Berlin\r
BEGIN:VTIMEZONE\r
TZID:fbproxy-preload\r
BEGIN:STANDARD\r
DTSTART:19700101T000000\r
TZOFFSETFROM:+0100\r
TZOFFSETTO:+0100\r
END:STANDARD\r
END:VTIMEZONE\r
BEGIN:VEVENT\r
UID:preload\r
DTSTAMP:20260101T000000Z\r
DTSTART;TZID=fbproxy-preload:20260105T090000\r
DTEND;TZID=fbproxy-preload:20260105T100000\r
RRULE:FREQ=WEEKLY;COUNT=3\r
END:VEVENT\r
END:VCALENDAR\r
"""


def warm() -> None:
    """Read the sample feed as a round would: split it, expand its item."""
    context = ExpandContext(zone=ZoneInfo("UTC"), window_start=datetime(2026, 1, 1, tzinfo=UTC),
                            window_end=datetime(2026, 2, 1, tzinfo=UTC))
    expand_batch([(item.key, item.ical) for item in read_feed(_SAMPLE).items], context)


warm()
