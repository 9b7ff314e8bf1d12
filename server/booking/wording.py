"""Dates, times and durations as a guest reads them, in English (pure).

Shared by the booking pages and the mail, so a time reads the same in both.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def local(instant: int, zone: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(instant, UTC).astimezone(zone)


def day_label(day: date) -> str:
    """``Thursday, 26 November 2026``"""
    return f"{WEEKDAYS[day.weekday()]}, {day.day} {MONTHS[day.month - 1]} {day.year}"


def duration_label(duration: timedelta) -> str:
    """``30 min``, ``1 h``, ``1 h 30 min``"""
    minutes = int(duration.total_seconds() // 60)
    hours, minutes = divmod(minutes, 60)
    parts = ([f"{hours} h"] if hours else []) + ([f"{minutes} min"] if minutes else [])
    return " ".join(parts) or "0 min"


def when_label(start: int, end: int, zone: ZoneInfo) -> str:
    """``Thursday, 26 November 2026, 09:00–09:30 (Europe/Berlin)``"""
    first, last = local(start, zone), local(end, zone)
    return f"{day_label(first.date())}, {first:%H:%M}–{last:%H:%M} ({zone.key})"
