"""The booking form's month view (pure): weeks, local days and labels."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.booking.slots import Slot
from server.booking.wording import day_label, duration_label
from server.outputs.calendar_view import (
    add_months,
    month_span,
    month_weeks,
    parse_month,
    pick_day,
    slots_by_day,
)

ZONES = st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo",
                         "Pacific/Kiritimati", "Pacific/Pago_Pago", "Australia/Lord_Howe",
                         "America/Sao_Paulo"])


def test_parse_and_step_months() -> None:
    assert parse_month("2026-12") == date(2026, 12, 1)
    for bad in ("2026-13", "2026-1", "26-12", "2026/12", "", "2026-12-01"):
        with pytest.raises(ValueError):
            parse_month(bad)
    assert add_months(date(2026, 12, 1), 1) == date(2027, 1, 1)
    assert add_months(date(2026, 1, 1), -1) == date(2025, 12, 1)


@given(st.integers(1, 9998), st.integers(1, 12))
def test_month_weeks_cover_the_month_once_monday_first(year: int, month: int) -> None:
    first = date(year, month, 1)
    weeks = month_weeks(first, {first: 3}, today=first, selected=first)
    days = [cell.day for week in weeks for cell in week]
    assert all(len(week) == 7 and week[0].day.weekday() == 0 for week in weeks)
    inside = [cell for week in weeks for cell in week if cell.in_month]
    assert [c.day for c in inside] == [first + timedelta(days=i) for i in range(len(inside))]
    assert inside[-1].day.month == month and (inside[-1].day + timedelta(days=1)).month != month
    assert len(days) == len(set(days)) and inside[0].open_slots == 3 and inside[0].selected


@given(st.lists(st.integers(1_790_000_000, 1_800_000_000), max_size=40), ZONES)
def test_slots_fall_on_the_guests_local_day(starts: list[int], zone_name: str) -> None:
    zone = ZoneInfo(zone_name)
    slots = [Slot(start, start + 1800) for start in set(starts)]
    days = slots_by_day(slots, zone)
    assert sorted(v.slot for views in days.values() for v in views) == sorted(slots)
    for day, views in days.items():
        for view in views:
            local = datetime.fromtimestamp(view.slot.start, UTC).astimezone(zone)
            assert local.date() == day and view.label == local.strftime("%H:%M")
            assert datetime.fromisoformat(view.start).timestamp() == view.slot.start


def test_month_span_is_local_midnight_to_midnight() -> None:
    start, end = month_span(date(2026, 3, 1), ZoneInfo("Europe/Berlin"))
    assert start.isoformat() == "2026-03-01T00:00:00+01:00"
    assert end.isoformat() == "2026-04-01T00:00:00+02:00"


def test_labels_and_day_choice() -> None:
    assert day_label(date(2026, 11, 26)) == "Thursday, 26 November 2026"
    assert [duration_label(timedelta(minutes=m)) for m in (15, 60, 90)] == [
        "15 min", "1 hr", "1 hr 30 min"]
    days = [date(2026, 12, 2), date(2026, 12, 3)]
    assert pick_day(days, date(2026, 12, 3)) == date(2026, 12, 3)
    assert pick_day(days, date(2026, 12, 9)) == date(2026, 12, 2)
    assert pick_day([], None) is None
