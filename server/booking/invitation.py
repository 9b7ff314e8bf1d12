"""The guest's copy of a booking as iCalendar: an iTIP REQUEST or CANCEL (RFC 5546),
or the PUBLISH of the .ics download; one UID for all of them, so the guest's
calendar keeps one event and moves or removes it (pure: no I/O).

icalendar writes every value: a guest's or host's text cannot add a property,
and addresses are checked plain before they become ``mailto:`` URIs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from icalendar import Calendar, Event, vCalAddress, vText

PRODID = "-//fbproxy//fbproxy 0.1//EN"
METHODS = ("REQUEST", "CANCEL", "PUBLISH")


@dataclass(frozen=True, slots=True)
class GuestEvent:
    """What the guest's copy of a booking says (times are UTC seconds)."""

    booking_id: str
    title: str
    start: int
    end: int
    created: int
    sequence: int
    cancelled: bool
    organizer_name: str
    organizer_email: str
    guest_name: str
    guest_email: str
    location: str  # the video link, or ""
    description: str
    manage_url: str


def guest_uid(booking_id: str) -> str:
    """The guest's event's UID (the .ics download has used it since the first release)."""
    return f"{booking_id}-guest@fbproxy"


def _utc(timestamp: int) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


def _address(name: str, email: str, **params: str) -> vCalAddress:
    address = vCalAddress(f"mailto:{email}")
    if name:
        address.params["CN"] = vText(name)
    for key, value in params.items():
        address.params[key] = value
    return address


def guest_calendar(event: GuestEvent, method: str, stamp: datetime) -> bytes:
    """The VCALENDAR of ``method`` for this booking (``stamp``: DTSTAMP, now)."""
    if method not in METHODS:
        raise ValueError(f"method {method!r}")
    calendar = Calendar()
    calendar.add("PRODID", PRODID)
    calendar.add("VERSION", "2.0")
    calendar.add("METHOD", method)
    vevent = Event()
    vevent.add("UID", guest_uid(event.booking_id))
    vevent.add("DTSTAMP", stamp.astimezone(UTC))
    vevent.add("CREATED", _utc(event.created))
    vevent.add("DTSTART", _utc(event.start))
    vevent.add("DTEND", _utc(event.end))
    vevent.add("SEQUENCE", event.sequence)
    vevent.add("SUMMARY", event.title)
    if event.location:
        vevent.add("LOCATION", event.location)
    vevent.add("DESCRIPTION", event.description)
    vevent.add("URL", event.manage_url)
    if method != "PUBLISH" and event.organizer_email:
        # iTIP: the organizer sends, the attendee has accepted by booking.
        vevent.add("ORGANIZER", _address(event.organizer_name, event.organizer_email))
        vevent.add("ATTENDEE", _address(
            event.guest_name, event.guest_email, ROLE="REQ-PARTICIPANT",
            PARTSTAT="ACCEPTED", CUTYPE="INDIVIDUAL", RSVP="FALSE"))
    cancelled = event.cancelled or method == "CANCEL"
    vevent.add("STATUS", "CANCELLED" if cancelled else "CONFIRMED")
    vevent.add("TRANSP", "OPAQUE")
    calendar.add_component(vevent)
    return bytes(calendar.to_ical())
