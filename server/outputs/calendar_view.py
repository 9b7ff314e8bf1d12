"""The booking form's month view: days, weeks and slot times in the guest's zone (pure).

Slots are absolute instants; a guest in Tokyo and one in New York see the same
slots on different local days and at different local times. Everything here
turns instants into what one guest reads, and nothing else; names of months
and weekdays and the times come from ``server/booking/wording.py`` (Babel, CLDR).
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

from server.booking.slots import Slot
from server.booking.wording import local, time_label
from server.booking.wording import month_label as month_label
from server.kit.durations import check_instant, echo
from server.kit.i18n import DEFAULT


@dataclass(frozen=True, slots=True)
class DayCell:
    day: date
    in_month: bool
    open_slots: int
    selected: bool
    today: bool


@dataclass(frozen=True, slots=True)
class SlotView:
    slot: Slot
    start: str  # ISO 8601 with the guest's offset: what the form sends back
    label: str  # "09:30"


def parse_month(text: str) -> date:
    """``"2026-12"`` → 2026-12-01; ValueError otherwise."""
    year, sep, month = text.partition("-")
    if not sep or len(year) != 4 or len(month) != 2 or not (year + month).isdigit():
        raise ValueError(f"{echo(text)} is not a month like 2026-12")
    first = date(int(year), int(month), 1)
    # Months around it are shown too: the bound keeps them inside datetime's range.
    check_instant(datetime.combine(first, time(), UTC), "month")
    return first


def month_of(day: date) -> date:
    return day.replace(day=1)


def add_months(month: date, count: int) -> date:
    index = month.year * 12 + month.month - 1 + count
    return date(index // 12, index % 12 + 1, 1)


def slots_by_day(slots: Iterable[Slot], zone: ZoneInfo,
                 language: str = DEFAULT) -> dict[date, list[SlotView]]:
    """Slots grouped by the guest's local date of their start, in order; each
    labelled with its local time as ``language`` writes it."""
    days: dict[date, list[SlotView]] = {}
    for slot in sorted(slots):
        start = local(slot.start, zone)
        days.setdefault(start.date(), []).append(
            SlotView(slot, start.isoformat(), time_label(start, language)))
    return days


def month_weeks(month: date, open_slots: Mapping[date, int], *, today: date,
                selected: date | None) -> list[list[DayCell]]:
    """Monday-first weeks covering ``month``; days of other months are marked."""
    weeks = calendar.Calendar(firstweekday=0).monthdatescalendar(month.year, month.month)
    return [[DayCell(day=day, in_month=day.month == month.month,
                     open_slots=open_slots.get(day, 0) if day.month == month.month else 0,
                     selected=day == selected, today=day == today)
             for day in week] for week in weeks]


def month_span(month: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The month's first and the next month's first midnight in ``zone``."""
    return (datetime.combine(month, datetime.min.time(), zone),
            datetime.combine(add_months(month, 1), datetime.min.time(), zone))


def pick_day(days: Sequence[date], wanted: date | None) -> date | None:
    """The wanted day if it has slots, else the first day that has."""
    if wanted is not None and wanted in days:
        return wanted
    return days[0] if days else None

