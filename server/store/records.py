"""The records the store hands out and takes in, and their rows' columns."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

STATUS_BUSY = "busy"
STATUS_TENTATIVE = "tentative"


@dataclass(frozen=True, slots=True)
class BusyRow:
    start: int
    end: int
    status: str


@dataclass(frozen=True, slots=True)
class StoredItem:
    """An item ready to store, with the busy instances expanded from it."""

    key: str
    ical: str
    content_hash: str
    etag: str | None
    recurring: bool
    instances: tuple[BusyRow, ...]
    # Not stored: which booking this item is the upstream hold of, if any.
    hold_booking: str | None = None


@dataclass(frozen=True, slots=True)
class SourceRecord:
    id: int
    name: str
    kind: str
    state: dict[str, Any]
    last_attempt: int | None
    last_success: int | None
    last_change: int | None
    last_error: str | None
    consecutive_failures: int
    needs_reauth: bool
    item_count: int
    window_end: int | None


_SOURCE_COLUMNS = (
    "id, name, kind, state, last_attempt, last_success, last_change, last_error, "
    "consecutive_failures, needs_reauth, item_count, window_end"
)


def _source_record(row: Sequence[Any]) -> SourceRecord:
    return SourceRecord(
        id=row[0], name=row[1], kind=row[2], state=json.loads(row[3]), last_attempt=row[4],
        last_success=row[5], last_change=row[6], last_error=row[7],
        consecutive_failures=row[8], needs_reauth=bool(row[9]), item_count=row[10],
        window_end=row[11],
    )


@dataclass(frozen=True, slots=True)
class BookingRecord:
    id: str
    page: str
    host: str
    start: int
    end: int
    guest_name: str
    guest_email: str
    answers: dict[str, str]
    cancel_secret: str
    status: str
    created: int
    video_link: str = ""
    guest_timezone: str = ""
    # The iCalendar SEQUENCE of the guest's copy: moved by each reschedule and by
    # cancelling, so their calendar updates the one event it has.
    sequence: int = 0
    cancel_reason: str = ""
    cancelled_by: str = ""  # "guest" | "host" once cancelled
    # The host's own link to this booking (to cancel it); "" for bookings made before it.
    host_secret: str = ""
    # The language the guest booked in (en, de, …): their pages and mail use it; "" when
    # not known (bookings made before it, or through the JSON API without one).
    guest_language: str = ""


@dataclass(frozen=True, slots=True)
class BookingCounts:
    """One page's bookings, each counted once: upcoming + past + cancelled = total made."""

    upcoming: int = 0  # confirmed, starting now or later
    past: int = 0  # confirmed, started before now
    cancelled: int = 0

    @property
    def confirmed(self) -> int:
        return self.upcoming + self.past

    @property
    def total(self) -> int:
        return self.upcoming + self.past + self.cancelled


_BOOKING_COLUMNS = ("id, page, host, start_ts, end_ts, guest_name, guest_email, answers, "
                    "cancel_secret, status, created, video_link, guest_timezone, sequence, "
                    "cancel_reason, cancelled_by, host_secret, guest_language")


def _booking_record(row: Sequence[Any]) -> BookingRecord:
    return BookingRecord(
        id=row[0], page=row[1], host=row[2], start=row[3], end=row[4], guest_name=row[5],
        guest_email=row[6], answers=json.loads(row[7]), cancel_secret=row[8], status=row[9],
        created=row[10], video_link=row[11], guest_timezone=row[12], sequence=row[13],
        cancel_reason=row[14], cancelled_by=row[15], host_secret=row[16],
        guest_language=row[17])


@dataclass(frozen=True, slots=True)
class OutboxRow:
    booking_id: str
    host: str
    action: str
    source: str
    calendar: str | None
    hold: str
    attempts: int


@dataclass(frozen=True, slots=True)
class PendingHold:
    booking_id: str
    host: str
    action: str
    source: str
    attempts: int
    next_attempt: int
    last_error: str | None


_OUTBOX_COLUMNS = "booking_id, host, action, source, calendar, hold, attempts"
