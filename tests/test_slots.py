"""The slot engine: hand examples, then properties against a brute-force oracle.

The oracle never turns a wall-clock time into an instant.  It reads the clock
every five minutes (UTC instant → local time, the direction that has no gaps
or folds), takes every instant whose reading lies on a range's step grid and
is shown for the first time, and keeps it when the clock reads a time inside
that range for the whole slot; freeness checks every busy interval directly.
Hours, steps, durations and zone offsets sit on a 15-minute grid and clock
changes on a 5-minute one, so readings every five minutes see every slot start
and every change; busy time, ``now`` and the window may fall on any second or
microsecond and are compared exactly.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.booking.availability import BUSY, TENTATIVE, BusyInterval
from server.booking.slots import (
    HostStats,
    Rules,
    Slot,
    candidate_slots,
    choose_host,
    collective_slots,
    free_slots,
    local_date,
    round_robin_slots,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
MONDAY = date(2024, 6, 3)
TUESDAY = MONDAY + timedelta(days=1)
SUNDAY = MONDAY - timedelta(days=1)
EARLY = datetime(2024, 1, 1, tzinfo=UTC)
NINE_TO_FIVE = ((time(9), time(17)),)
NO_TIME = timedelta(0)


def minutes(count: int) -> timedelta:
    return timedelta(minutes=count)


BASE_RULES = Rules(
    zone=BERLIN,
    weekly_hours={weekday: NINE_TO_FIVE for weekday in range(5)},
    date_overrides={},
    duration=minutes(30),
    step=minutes(30),
    buffer_before=NO_TIME,
    buffer_after=NO_TIME,
    minimum_notice=NO_TIME,
    max_days_ahead=400,
    daily_limit=None,
)
EVERY_DAY = replace(BASE_RULES, weekly_hours={weekday: NINE_TO_FIVE for weekday in range(7)})


def local(day: date, hour: int, minute: int = 0, zone: ZoneInfo = BERLIN) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=zone)


def stamp(day: date, hour: int, minute: int = 0, zone: ZoneInfo = BERLIN) -> int:
    return int(local(day, hour, minute, zone).timestamp())


def day_slots(rules: Rules, day: date, now: datetime = EARLY) -> list[Slot]:
    """The slots starting on one local date."""
    window = candidate_slots(
        rules, now, local(day, 0, 0, rules.zone), local(day, 23, 59, rules.zone)
    )
    return [slot for slot in window if local_date(rules, slot.start) == day]


def clocks(slots: Sequence[Slot], zone: ZoneInfo = BERLIN) -> list[str]:
    return [datetime.fromtimestamp(slot.start, zone).strftime("%H:%M") for slot in slots]


def half_hours(first: str, last: str) -> list[str]:
    """Clock times from ``first`` to ``last`` in 30-minute steps."""
    start = datetime.strptime(first, "%H:%M").replace(tzinfo=UTC)
    stop = datetime.strptime(last, "%H:%M").replace(tzinfo=UTC)
    return [
        (start + minutes(30 * k)).strftime("%H:%M")
        for k in range((stop - start) // minutes(30) + 1)
    ]


def blocked(day: date, first: str, last: str, status: str = BUSY) -> BusyInterval:
    (h1, m1), (h2, m2) = (map(int, first.split(":")), map(int, last.split(":")))
    return BusyInterval(stamp(day, h1, m1), stamp(day, h2, m2), status)


# -- the grid of one day ------------------------------------------------------------


def test_plain_weekday() -> None:
    slots = day_slots(BASE_RULES, MONDAY)
    assert clocks(slots) == half_hours("09:00", "16:30")
    assert all(slot.end - slot.start == 1800 for slot in slots)
    assert day_slots(BASE_RULES, SUNDAY) == []  # no hours on Sunday


def test_step_shorter_than_duration() -> None:
    rules = replace(BASE_RULES, duration=minutes(60), step=minutes(15))
    slots = day_slots(rules, MONDAY)
    assert len(slots) == 29
    assert clocks(slots)[0] == "09:00" and clocks(slots)[-1] == "16:00"


def test_several_ranges_each_on_its_own_grid() -> None:
    hours = ((time(13, 15), time(15)), (time(9), time(12)))  # any order
    rules = replace(BASE_RULES, weekly_hours={0: hours}, duration=minutes(45))
    assert clocks(day_slots(rules, MONDAY)) == [
        *["09:00", "09:30", "10:00", "10:30", "11:00"],
        *["13:15", "13:45", "14:15"],
    ]


def test_touching_ranges_stay_separate() -> None:
    hours = ((time(9), time(10)), (time(10), time(11)))
    rules = replace(BASE_RULES, weekly_hours={0: hours}, duration=minutes(60))
    assert clocks(day_slots(rules, MONDAY)) == ["09:00", "10:00"]


def test_range_up_to_midnight_and_whole_day() -> None:
    late = replace(BASE_RULES, weekly_hours={0: ((time(22), time(0)),), 1: ((time(0), time(2)),)})
    assert clocks(day_slots(late, MONDAY)) == ["22:00", "22:30", "23:00", "23:30"]
    assert day_slots(late, MONDAY)[-1].end == stamp(TUESDAY, 0)
    hourly = replace(late, duration=minutes(60), step=minutes(60))
    # No slot runs from Monday's range into Tuesday's.
    assert clocks(day_slots(hourly, MONDAY)) == ["22:00", "23:00"]
    assert clocks(day_slots(hourly, TUESDAY)) == ["00:00", "01:00"]
    whole = replace(hourly, weekly_hours={0: ((time(0), time(0)),)})
    assert len(day_slots(whole, MONDAY)) == 24


def test_date_override_replaces_the_weekday() -> None:
    rules = replace(BASE_RULES, date_overrides={MONDAY: ((time(14), time(15)),)})
    assert clocks(day_slots(rules, MONDAY)) == ["14:00", "14:30"]
    assert len(day_slots(rules, MONDAY + timedelta(days=7))) == 16


def test_closed_date_and_opened_date() -> None:
    rules = replace(BASE_RULES, date_overrides={MONDAY: (), SUNDAY: ((time(10), time(11)),)})
    assert day_slots(rules, MONDAY) == []
    assert clocks(day_slots(rules, SUNDAY)) == ["10:00", "10:30"]


# -- notice, horizon, window ----------------------------------------------------------


def test_minimum_notice() -> None:
    rules = replace(BASE_RULES, minimum_notice=minutes(60))
    assert clocks(day_slots(rules, MONDAY, now=local(MONDAY, 10, 10)))[0] == "11:30"
    # At or after: a slot exactly at now + notice is offered ...
    assert clocks(day_slots(rules, MONDAY, now=local(MONDAY, 10)))[0] == "11:00"
    # ... one a microsecond short of it is not.
    just_after = local(MONDAY, 10) + timedelta(microseconds=1)
    assert clocks(day_slots(rules, MONDAY, now=just_after))[0] == "11:30"


def test_max_days_ahead_counts_local_days() -> None:
    week = (local(MONDAY, 0), local(MONDAY + timedelta(days=7), 0))
    today_only = replace(EVERY_DAY, max_days_ahead=0)
    slots = candidate_slots(today_only, local(MONDAY, 16), *week)
    assert clocks(slots) == ["16:00", "16:30"]
    three_days = replace(EVERY_DAY, max_days_ahead=2)
    slots = candidate_slots(three_days, local(MONDAY, 8), *week)
    assert {local_date(three_days, s.start) for s in slots} == {
        MONDAY,
        TUESDAY,
        MONDAY + timedelta(days=2),
    }
    assert len(slots) == 48
    # 23:30 UTC on Monday is already Tuesday in Berlin: "today" is Tuesday.
    slots = candidate_slots(today_only, datetime(2024, 6, 3, 23, 30, tzinfo=UTC), *week)
    assert {local_date(today_only, s.start) for s in slots} == {TUESDAY}


def test_window_keeps_slots_overlapping_it() -> None:
    slots = candidate_slots(BASE_RULES, EARLY, local(MONDAY, 10, 15), local(MONDAY, 11))
    assert clocks(slots) == ["10:00", "10:30"]
    assert candidate_slots(BASE_RULES, EARLY, local(MONDAY, 11), local(MONDAY, 11)) == []


def test_time_zone_of_the_inputs_does_not_matter() -> None:
    """The guest's zone only changes display: the same instants give the same slots."""
    now, start, end = local(MONDAY, 8), local(MONDAY, 0), local(MONDAY + timedelta(days=3), 0)
    expected = candidate_slots(BASE_RULES, now, start, end)
    for name in ("UTC", "Asia/Tokyo", "America/Los_Angeles", "Australia/Lord_Howe"):
        zone = ZoneInfo(name)
        moved = (now.astimezone(zone), start.astimezone(zone), end.astimezone(zone))
        assert candidate_slots(BASE_RULES, *moved) == expected


def test_naive_datetimes_are_refused() -> None:
    naive = datetime(2024, 6, 3, 9)  # noqa: DTZ001 - the point of the test
    with pytest.raises(ValueError, match="now must be an aware datetime"):
        candidate_slots(BASE_RULES, naive, EARLY, EARLY)
    with pytest.raises(ValueError, match="end must be an aware datetime"):
        candidate_slots(BASE_RULES, EARLY, EARLY, naive)


# -- daylight saving time ---------------------------------------------------------------

DST_DAYS = [
    pytest.param(BERLIN, date(2024, 3, 31), id="berlin-spring"),
    pytest.param(BERLIN, date(2024, 10, 27), id="berlin-autumn"),
    pytest.param(NEW_YORK, date(2024, 3, 10), id="new-york-spring"),
    pytest.param(NEW_YORK, date(2024, 11, 3), id="new-york-autumn"),
]
SPRING_DAYS = [p for p in DST_DAYS if "spring" in str(p.id)]
AUTUMN_DAYS = [p for p in DST_DAYS if "autumn" in str(p.id)]


@pytest.mark.parametrize(("zone", "day"), DST_DAYS)
def test_working_day_keeps_its_slots_on_dst_days(zone: ZoneInfo, day: date) -> None:
    rules = replace(EVERY_DAY, zone=zone)
    slots = day_slots(rules, day)
    assert clocks(slots, zone) == half_hours("09:00", "16:30")
    assert clocks(slots, zone) == clocks(day_slots(rules, day - timedelta(days=7)), zone)
    assert all(slot.end - slot.start == 1800 for slot in slots)


@pytest.mark.parametrize(("zone", "day"), SPRING_DAYS)
def test_night_range_loses_the_skipped_hour(zone: ZoneInfo, day: date) -> None:
    rules = replace(EVERY_DAY, zone=zone, weekly_hours={day.weekday(): ((time(0), time(6)),)})
    assert len(day_slots(rules, day - timedelta(days=7))) == 12
    slots = day_slots(rules, day)
    assert len(slots) == 10
    assert set(half_hours("00:00", "05:30")) - set(clocks(slots, zone)) == {"02:00", "02:30"}


@pytest.mark.parametrize(("zone", "day"), AUTUMN_DAYS)
def test_night_range_offers_the_repeated_hour_once(zone: ZoneInfo, day: date) -> None:
    rules = replace(EVERY_DAY, zone=zone, weekly_hours={day.weekday(): ((time(0), time(6)),)})
    slots = day_slots(rules, day)
    assert clocks(slots, zone) == half_hours("00:00", "05:30")
    # Each start is the first time the clock shows it (fold=0).
    assert all(datetime.fromtimestamp(slot.start, zone).fold == 0 for slot in slots)


def test_slot_across_the_jump_keeps_its_absolute_length() -> None:
    spring = date(2024, 3, 31)
    rules = replace(
        EVERY_DAY, weekly_hours={6: ((time(1), time(4)),)}, duration=minutes(60), step=minutes(60)
    )
    slots = day_slots(rules, spring)
    assert clocks(slots) == ["01:00", "03:00"]  # 02:00 never happens
    assert slots[0].end == stamp(spring, 3)  # 01:00 CET + 1 h is 03:00 CEST


def test_range_ending_in_the_skipped_hour() -> None:
    spring = date(2024, 3, 31)
    hours = {6: ((time(1), time(2, 30)),)}
    rules = replace(EVERY_DAY, weekly_hours=hours, duration=minutes(60))
    # 01:30 + 1 h would run until 03:30 on the clock, past the range's 02:30.
    assert clocks(day_slots(rules, spring)) == ["01:00"]


def test_range_starting_in_the_repeated_hour() -> None:
    autumn = date(2024, 10, 27)
    hours = {6: ((time(2, 30), time(4)),)}
    short = replace(EVERY_DAY, weekly_hours=hours, duration=minutes(30))
    assert clocks(day_slots(short, autumn)) == ["02:30", "03:00", "03:30"]
    # An hour from the first 02:30 would pass 02:00–02:30 a second time,
    # before the range opens; the later starts are fine.
    long = replace(short, duration=minutes(60))
    assert clocks(day_slots(long, autumn)) == ["03:00"]


# -- busy time ------------------------------------------------------------------------


def test_busy_time_and_buffers() -> None:
    every = day_slots(BASE_RULES, MONDAY)
    busy = [blocked(MONDAY, "12:00", "13:00")]
    free = free_slots(every, busy, BASE_RULES)
    assert sorted(set(clocks(every)) - set(clocks(free))) == ["12:00", "12:30"]
    # A buffer is kept on both sides: after the busy block as well as before the
    # slot (13:00 needs 15 minutes free before it), and before the busy block as
    # well as after the slot (11:30 ends at 12:00 when the block begins).
    around = ["11:30", "12:00", "12:30", "13:00"]
    before = replace(BASE_RULES, buffer_before=minutes(15))
    assert sorted(set(clocks(every)) - set(clocks(free_slots(every, busy, before)))) == around
    after = replace(BASE_RULES, buffer_after=minutes(15))
    assert sorted(set(clocks(every)) - set(clocks(free_slots(every, busy, after)))) == around
    exact = replace(BASE_RULES, buffer_before=minutes(30), buffer_after=minutes(30))
    free = free_slots(every, busy, exact)  # half-open: touching a buffer is fine
    assert sorted(set(clocks(every)) - set(clocks(free))) == around
    wider = replace(BASE_RULES, buffer_after=minutes(31))
    free = free_slots(every, busy, wider)
    assert sorted(set(clocks(every)) - set(clocks(free))) == ["11:00", *around, "13:30"]


def test_busy_given_in_any_order_and_overlapping() -> None:
    every = day_slots(BASE_RULES, MONDAY)
    busy = [
        blocked(MONDAY, "15:00", "15:10"),
        blocked(MONDAY, "09:00", "10:00"),
        blocked(MONDAY, "09:30", "10:05"),
        BusyInterval(stamp(MONDAY, 16), stamp(MONDAY, 16)),  # empty: blocks nothing
    ]
    free = free_slots(every, busy, BASE_RULES)
    assert sorted(set(clocks(every)) - set(clocks(free))) == ["09:00", "09:30", "10:00", "15:00"]


def test_tentative_blocks_unless_told_otherwise() -> None:
    every = day_slots(BASE_RULES, MONDAY)
    busy = [blocked(MONDAY, "12:00", "13:00", TENTATIVE), blocked(MONDAY, "15:00", "15:30")]
    assert len(free_slots(every, busy, BASE_RULES)) == 13
    relaxed = replace(BASE_RULES, tentative_blocks=False)
    assert clocks(every) == sorted(clocks(free_slots(every, busy, relaxed)) + ["15:00"])
    # A status nobody knows fails closed.
    odd = [blocked(MONDAY, "12:00", "13:00", "out-of-office")]
    assert len(free_slots(every, odd, relaxed)) == 14


def test_daily_limit() -> None:
    rules = replace(BASE_RULES, daily_limit=2)
    every = day_slots(rules, MONDAY) + day_slots(rules, TUESDAY)
    full = free_slots(every, [], rules, bookings_per_day={MONDAY: 2})
    assert {local_date(rules, s.start) for s in full} == {TUESDAY}
    assert free_slots(every, [], rules, bookings_per_day={MONDAY: 1}) == every
    unlimited = replace(rules, daily_limit=None)
    assert free_slots(every, [], unlimited, bookings_per_day={MONDAY: 99}) == every


def test_daily_limit_counts_the_local_day() -> None:
    rules = replace(
        EVERY_DAY, zone=NEW_YORK, weekly_hours={0: ((time(21), time(22)),)}, daily_limit=1
    )
    slots = day_slots(rules, MONDAY)  # 21:00 in New York is already Tuesday in UTC
    assert datetime.fromtimestamp(slots[0].start, UTC).date() == TUESDAY
    assert free_slots(slots, [], rules, bookings_per_day={MONDAY: 1}) == []
    assert free_slots(slots, [], rules, bookings_per_day={TUESDAY: 1}) == slots


# -- several hosts ----------------------------------------------------------------------


def test_collective_and_round_robin() -> None:
    every = day_slots(BASE_RULES, MONDAY)
    busy = {"bo": [blocked(MONDAY, "12:00", "16:00")], "ana": [blocked(MONDAY, "09:00", "12:00")]}
    both = collective_slots(every, busy, BASE_RULES, {})
    assert clocks(both) == ["16:00", "16:30"]
    offered = round_robin_slots(every, busy, BASE_RULES, {})
    hosts = {
        clock: names
        for clock, (_, names) in zip(clocks([s for s, _ in offered]), offered, strict=True)
    }
    assert hosts["09:00"] == ("bo",) and hosts["12:00"] == ("ana",)
    assert hosts["16:30"] == ("ana", "bo")  # sorted by name
    assert len(offered) == 16


def test_collective_respects_each_hosts_daily_limit() -> None:
    rules = replace(BASE_RULES, daily_limit=1)
    every = day_slots(rules, MONDAY)
    busy: dict[str, list[BusyInterval]] = {"ana": [], "bo": []}
    assert collective_slots(every, busy, rules, {"bo": {MONDAY: 1}}) == []
    offered = round_robin_slots(every, busy, rules, {"bo": {MONDAY: 1}})
    assert {names for _, names in offered} == {("ana",)}


def test_no_hosts() -> None:
    every = day_slots(BASE_RULES, MONDAY)
    with pytest.raises(ValueError, match="at least one host"):
        collective_slots(every, {}, BASE_RULES, {})
    assert round_robin_slots(every, {}, BASE_RULES, {}) == []


def test_choose_host_order() -> None:
    assert choose_host(["ana", "bo"], {"ana": HostStats(2, 100), "bo": HostStats(1, 200)}) == "bo"
    assert choose_host(["ana", "bo"], {"ana": HostStats(1, 200), "bo": HostStats(1, 100)}) == "bo"
    assert choose_host(["bo", "ana"], {"ana": HostStats(1, None), "bo": HostStats(1, 0)}) == "ana"
    assert choose_host(["bo", "ana"], {"ana": HostStats(1, 5), "bo": HostStats(1, 5)}) == "ana"
    assert choose_host(["ana", "cy"], {"ana": HostStats(1, None)}) == "cy"  # no stats: never booked
    with pytest.raises(ValueError, match="no free host"):
        choose_host([], {})


# -- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"duration": NO_TIME}, "duration must be positive"),
        ({"step": -minutes(5)}, "step must be positive"),
        ({"duration": timedelta(seconds=1.5)}, "whole number of seconds"),
        ({"buffer_before": -minutes(1)}, "buffer_before must be zero or more"),
        ({"minimum_notice": -minutes(1)}, "minimum_notice must be zero or more"),
        ({"max_days_ahead": -1}, "max_days_ahead must be 0 or more"),
        ({"daily_limit": 0}, "daily_limit must be at least 1"),
        ({"weekly_hours": {0: ((time(17), time(9)),)}}, r"Monday\]: range 17:00–09:00 ends before"),
        ({"weekly_hours": {2: ((time(9), time(9)),)}}, "Wednesday.*ends before it starts"),
        (
            {"weekly_hours": {0: ((time(9), time(12)), (time(11), time(13)))}},
            "ranges ending 12:00 and 11:00–13:00 overlap",
        ),
        ({"weekly_hours": {0: ((time(9), time(0)), (time(23), time(0)))}}, "overlap"),
        ({"weekly_hours": {7: NINE_TO_FIVE}}, "7 is not a weekday"),
        ({"weekly_hours": {0: ((time(9, tzinfo=UTC), time(12)),)}}, "plain wall-clock time"),
        ({"date_overrides": {MONDAY: ((time(12), time(11)),)}}, r"date_overrides\[2024-06-03\]"),
    ],
)
def test_rules_refuse_nonsense(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        replace(BASE_RULES, **changes)  # type: ignore[arg-type]


def test_rules_report_every_problem_at_once() -> None:
    with pytest.raises(ValueError, match="duration must be positive.*daily_limit"):
        replace(BASE_RULES, duration=NO_TIME, daily_limit=0)


def test_rules_are_read_only_copies() -> None:
    hours = {0: NINE_TO_FIVE}
    rules = replace(BASE_RULES, weekly_hours=hours)
    hours[1] = NINE_TO_FIVE
    assert 1 not in rules.weekly_hours
    with pytest.raises(TypeError):
        rules.weekly_hours[1] = NINE_TO_FIVE  # type: ignore[index]


# -- the oracle -----------------------------------------------------------------------------

FIVE_MINUTES = 300
DAY_SECONDS = 86400
EPOCH_DAY = date(1970, 1, 1)


@functools.cache
def readings_of_utc_day(zone_name: str, day_number: int) -> tuple[int, ...]:
    """What a clock in the zone reads (as seconds) every five minutes of one UTC day."""
    zone = ZoneInfo(zone_name)
    first = day_number * DAY_SECONDS
    return tuple(
        int(datetime.fromtimestamp(t, zone).replace(tzinfo=UTC).timestamp())
        for t in range(first, first + DAY_SECONDS, FIVE_MINUTES)
    )


@dataclass(frozen=True)
class WallClock:
    """The zone's clock readings every five minutes from the instant ``first``."""

    first: int
    readings: tuple[int, ...]

    @classmethod
    def around(cls, rules: Rules, now: datetime) -> WallClock:
        """Readings from a day before ``now`` to well past the horizon."""
        today = int(now.timestamp()) // DAY_SECONDS
        days = range(today - 1, today + rules.max_days_ahead + 4)
        readings = tuple(r for day in days for r in readings_of_utc_day(rules.zone.key, day))
        return cls((today - 1) * DAY_SECONDS, readings)

    def index(self, instant: int) -> int:
        assert instant % FIVE_MINUTES == 0
        return (instant - self.first) // FIVE_MINUTES

    def reads_within(self, start: int, end: int, low: int, high: int) -> bool:
        first = self.index(start)
        return all(low <= r < high for r in self.readings[first : self.index(end)])


def hours_on(rules: Rules, day: date) -> Sequence[tuple[int, int]]:
    """A date's ranges as clock readings (seconds), found without the code under test."""
    ranges = rules.date_overrides.get(day, rules.weekly_hours.get(day.weekday(), ()))
    midnight = (day - EPOCH_DAY).days * DAY_SECONDS

    def seconds(moment: time) -> int:
        return moment.hour * 3600 + moment.minute * 60 + moment.second

    return [
        (midnight + seconds(a), midnight + (DAY_SECONDS if b == time(0) else seconds(b)))
        for a, b in ranges
    ]


def oracle_candidates(rules: Rules, now: datetime, start: datetime, end: datetime) -> set[Slot]:
    """Every instant the clock shows a new time on a range's grid, kept if the rules allow."""
    clock = WallClock.around(rules, now)
    last_day = now.astimezone(rules.zone).date() + timedelta(days=rules.max_days_ahead)
    last_day_number = (last_day - EPOCH_DAY).days
    duration, step = rules.duration // timedelta(seconds=1), rules.step // timedelta(seconds=1)
    hours = functools.cache(lambda number: hours_on(rules, EPOCH_DAY + timedelta(days=number)))
    shown: set[int] = set()
    found: set[Slot] = set()
    for index, reading in enumerate(clock.readings):
        if reading in shown:  # shown a second time (autumn): not a start
            continue
        shown.add(reading)
        if reading // DAY_SECONDS > last_day_number:
            continue
        instant = clock.first + index * FIVE_MINUTES
        for low, high in hours(reading // DAY_SECONDS):
            on_grid = low <= reading < high and (reading - low) % step == 0
            if on_grid and clock.reads_within(instant, instant + duration, low, high):
                found.add(Slot(instant, instant + duration))
    return {slot for slot in found if timely(slot, rules, now, start, end)}


def timely(slot: Slot, rules: Rules, now: datetime, start: datetime, end: datetime) -> bool:
    """After the notice and overlapping the window, compared as exact datetimes."""
    begins, ends = (datetime.fromtimestamp(t, UTC) for t in (slot.start, slot.end))
    return begins >= now + rules.minimum_notice and begins < end and ends > start


def blocks(interval: BusyInterval, slot: Slot, rules: Rules) -> bool:
    if interval.end <= interval.start:
        return False
    if interval.status == TENTATIVE and not rules.tentative_blocks:
        return False
    # Both buffers hold on both sides: the slot keeps buffer_before before it and
    # buffer_after after it, and so does the busy block on the other side.
    before = rules.buffer_before // timedelta(seconds=1)
    after = rules.buffer_after // timedelta(seconds=1)
    slot_keeps = interval.start < slot.end + after and slot.start - before < interval.end
    block_keeps = interval.start < slot.end + before and slot.start - after < interval.end
    return slot_keeps or block_keeps


def oracle_free(
    slots: set[Slot], busy: Sequence[BusyInterval], rules: Rules, bookings: Mapping[date, int]
) -> set[Slot]:
    def under_limit(slot: Slot) -> bool:
        day = datetime.fromtimestamp(slot.start, rules.zone).date()
        return rules.daily_limit is None or bookings.get(day, 0) < rules.daily_limit

    return {s for s in slots if under_limit(s) and not any(blocks(b, s, rules) for b in busy)}


# -- generated cases --------------------------------------------------------------------------

# Each zone with days near its transitions: Lord Howe shifts by half an hour,
# São Paulo (2018/19) jumped at midnight, so a day started at 01:00 or twice.
ZONE_DAYS = {
    "UTC": [date(2024, 6, 3)],
    "Asia/Kolkata": [date(2024, 6, 3)],
    "Europe/Berlin": [date(2024, 3, 31), date(2024, 10, 27)],
    "America/New_York": [date(2024, 3, 10), date(2024, 11, 3)],
    "Australia/Lord_Howe": [date(2024, 4, 7), date(2024, 10, 6)],
    "America/Sao_Paulo": [date(2018, 11, 4), date(2019, 2, 17)],
}
HOSTS = ("ana", "bo", "cy")
QUARTER = minutes(15)


@dataclass(frozen=True)
class Case:
    rules: Rules
    now: datetime
    start: datetime
    end: datetime
    busy_by_host: dict[str, list[BusyInterval]]
    bookings_by_host: dict[str, dict[date, int]]


def quarter_time(count: int) -> time:
    return time(0) if count == 96 else time(count // 4, count % 4 * 15)


@st.composite
def day_hours(draw: st.DrawFn) -> tuple[tuple[time, time], ...]:
    """One or two ranges on a 15-minute grid, often from the small hours where clocks change."""
    ranges: list[tuple[time, time]] = []
    cursor = draw(st.integers(0, 12) | st.integers(0, 95))
    for _ in range(draw(st.integers(1, 2))):
        if cursor >= 96:
            break
        end = 96 if draw(st.integers(0, 4)) == 0 else cursor + draw(st.integers(1, 96 - cursor))
        ranges.append((quarter_time(cursor), quarter_time(end)))
        cursor = end + draw(st.integers(0, 24))  # 0: touching ranges
    return tuple(ranges)


# An override opens other hours two times in three and closes the date otherwise.
some_hours = st.one_of(day_hours(), day_hours(), st.just(()))
five_minutes = st.builds(minutes, st.integers(0, 12).map(lambda n: 5 * n))


@st.composite
def night_hours(draw: st.DrawFn) -> tuple[tuple[time, time], ...]:
    """Hours across the small hours and up to midnight, where clocks change."""
    early = draw(st.integers(0, 10))
    late = draw(st.integers(80, 95))
    ranges = [(quarter_time(early), quarter_time(draw(st.integers(early + 1, 40))))]
    return (*ranges, (quarter_time(late), time(0))) if draw(st.booleans()) else tuple(ranges)


@st.composite
def rules_near(draw: st.DrawFn, zone_name: str, day: date) -> Rules:
    """Random rules; half of them open the night around ``day``'s clock change."""
    near_days = [day + timedelta(days=k) for k in range(-3, 6)]
    # Two patterns of hours shared out over the week; the rest of the days closed.
    patterns = (draw(day_hours()), draw(day_hours()), ())
    week = draw(st.lists(st.sampled_from(patterns), min_size=7, max_size=7))
    overrides = draw(st.dictionaries(st.sampled_from(near_days), some_hours, max_size=2))
    if draw(st.booleans()):
        overrides[day - timedelta(days=draw(st.integers(0, 1)))] = draw(night_hours())
    return Rules(
        zone=ZoneInfo(zone_name),
        weekly_hours={weekday: hours for weekday, hours in enumerate(week) if hours},
        date_overrides=overrides,
        duration=QUARTER * draw(st.integers(1, 4) | st.integers(1, 12)),
        step=QUARTER * draw(st.integers(1, 8)),
        buffer_before=draw(five_minutes),
        buffer_after=draw(five_minutes),
        minimum_notice=minutes(5) * draw(st.just(0) | st.integers(0, 24) | st.integers(0, 300)),
        max_days_ahead=draw(st.sampled_from([0, 1, 2, 3, 4, 4])),
        daily_limit=draw(st.none() | st.integers(1, 3)),
        tentative_blocks=draw(st.booleans()),
    )


def busy_near(now: datetime) -> st.SearchStrategy[list[BusyInterval]]:
    """Busy time over the next days, mostly on the five-minute grid so that it
    touches slots and buffers exactly, sometimes a few seconds off it."""
    origin = int(now.timestamp()) // FIVE_MINUTES * FIVE_MINUTES
    jitter = st.sampled_from([0, 0, 0, 0, 1, -1, 137])

    def interval(start: int, length: int, shift: int, tentative: bool) -> BusyInterval:
        begins = origin + start * FIVE_MINUTES + shift
        return BusyInterval(
            begins, begins + length * FIVE_MINUTES, TENTATIVE if tentative else BUSY
        )

    parts = st.tuples(st.integers(-72, 1152), st.integers(0, 72), jitter, st.booleans())
    return st.lists(parts.map(lambda p: interval(*p)), max_size=10)


@st.composite
def cases(draw: st.DrawFn, host_count: int = 1) -> Case:
    """Any rules, a ``now`` shortly before a zone's clock change, any window."""
    zone_name = draw(st.sampled_from(sorted(ZONE_DAYS)))
    day = draw(st.sampled_from(ZONE_DAYS[zone_name]))
    midnight = datetime.combine(day, time(0), tzinfo=UTC)
    # Times often on the slot grid or a microsecond off it, where rounding shows.
    seconds = st.sampled_from([0, 0, 0, 900, 1800]) | st.integers(0, 3599)
    micro = st.sampled_from([0, 1, 999_999])
    now = midnight + timedelta(
        hours=-draw(st.sampled_from(range(49))), seconds=draw(seconds), microseconds=draw(micro)
    )
    start = now.replace(minute=0, second=0, microsecond=0) + timedelta(
        hours=draw(st.sampled_from(range(-24, 25))), seconds=draw(seconds), microseconds=draw(micro)
    )
    end = start + timedelta(
        days=draw(st.sampled_from(range(5))), seconds=draw(st.integers(1, DAY_SECONDS))
    )
    return draw(with_busy_time(draw(rules_near(zone_name, day)), now, start, end, host_count))


@st.composite
def transition_cases(draw: st.DrawFn) -> Case:
    """Open nights around a clock change and a window across it, every time."""
    zone_name = draw(
        st.sampled_from([name for name in sorted(ZONE_DAYS) if len(ZONE_DAYS[name]) > 1])
    )
    day = draw(st.sampled_from(ZONE_DAYS[zone_name]))
    nights = {day - timedelta(days=1): draw(night_hours()), day: draw(night_hours())}
    rules = replace(
        draw(rules_near(zone_name, day)),
        date_overrides=nights,
        minimum_notice=draw(five_minutes),
        max_days_ahead=4,
    )
    now = datetime.combine(day - timedelta(days=2), time(12), tzinfo=UTC)
    return draw(with_busy_time(rules, now, now, now + timedelta(days=4), 1))


@st.composite
def with_busy_time(
    draw: st.DrawFn, rules: Rules, now: datetime, start: datetime, end: datetime, host_count: int
) -> Case:
    """A case with busy time and bookings for each host."""
    hosts = HOSTS[:host_count]
    today = now.date()
    days = [today + timedelta(days=k) for k in range(-1, 7)]
    bookings = st.dictionaries(st.sampled_from(days), st.integers(0, 3), max_size=6)
    return Case(
        rules,
        now,
        start,
        end,
        busy_by_host={host: draw(busy_near(now)) for host in hosts},
        bookings_by_host={host: draw(bookings) for host in hosts},
    )


def candidates_of(case: Case) -> list[Slot]:
    return candidate_slots(case.rules, case.now, case.start, case.end)


def oracle_free_by_host(case: Case) -> dict[str, set[Slot]]:
    every = oracle_candidates(case.rules, case.now, case.start, case.end)
    return {
        host: oracle_free(every, busy, case.rules, case.bookings_by_host[host])
        for host, busy in case.busy_by_host.items()
    }


# -- properties ----------------------------------------------------------------------------------


def single_host(case: Case) -> tuple[Sequence[BusyInterval], Mapping[date, int], list[Slot]]:
    """The busy time and bookings of a one-host case, and the slots offered."""
    (busy,), (bookings,) = case.busy_by_host.values(), case.bookings_by_host.values()
    offered = free_slots(candidates_of(case), busy, case.rules, bookings_per_day=bookings)
    return busy, bookings, offered


def assert_obeys_every_rule(case: Case) -> None:
    """Each offered slot checked against each rule directly."""
    busy, bookings, offered = single_host(case)
    rules = case.rules
    assert offered == sorted(set(offered))
    clock = WallClock.around(rules, case.now)
    last_day = case.now.astimezone(rules.zone).date() + timedelta(days=rules.max_days_ahead)
    for slot in offered:
        begins, ends = (datetime.fromtimestamp(t, UTC) for t in (slot.start, slot.end))
        shown = datetime.fromtimestamp(slot.start, rules.zone)
        assert ends - begins == rules.duration
        assert begins >= case.now + rules.minimum_notice, "before the notice"
        assert shown.date() <= last_day, "past the horizon"
        assert begins < case.end and ends > case.start, "outside the window"
        assert shown.fold == 0, "starts the second time the clock shows its time"
        reading = clock.readings[clock.index(slot.start)]
        assert any(
            (reading - low) % (rules.step // timedelta(seconds=1)) == 0
            and clock.reads_within(slot.start, slot.end, low, high)
            for low, high in hours_on(rules, shown.date())
        ), "off the grid or outside the hours"
        assert not [b for b in busy if blocks(b, slot, rules)], "overlaps busy time"
        if rules.daily_limit is not None:
            assert bookings.get(shown.date(), 0) < rules.daily_limit, "over the daily limit"


def assert_offers_every_free_slot(case: Case) -> None:
    """The oracle's free slots, no more and no fewer."""
    _, _, offered = single_host(case)
    (expected,) = oracle_free_by_host(case).values()
    assert sorted(expected - set(offered)) == [], "free slots not offered"
    assert sorted(set(offered) - expected) == [], "slots offered the oracle refuses"


@settings(max_examples=120, deadline=None)
@given(cases())
def test_offered_slots_obey_every_rule(case: Case) -> None:
    assert_obeys_every_rule(case)


@settings(max_examples=120, deadline=None)
@given(cases())
def test_every_free_aligned_slot_is_offered(case: Case) -> None:
    assert_offers_every_free_slot(case)


@settings(max_examples=80, deadline=None)
@given(transition_cases())
def test_nights_around_clock_changes(case: Case) -> None:
    assert_obeys_every_rule(case)
    assert_offers_every_free_slot(case)


@settings(max_examples=50, deadline=None)
@given(cases(host_count=3))
def test_collective_slots_are_free_for_every_host(case: Case) -> None:
    candidates = candidates_of(case)
    both = collective_slots(candidates, case.busy_by_host, case.rules, case.bookings_by_host)
    for host, busy in case.busy_by_host.items():
        bookings = case.bookings_by_host[host]
        assert set(both) <= set(free_slots(candidates, busy, case.rules, bookings_per_day=bookings))
    expected = set.intersection(*oracle_free_by_host(case).values())
    assert set(both) == expected


@settings(max_examples=50, deadline=None)
@given(cases(host_count=3))
def test_round_robin_is_the_union_with_the_free_hosts(case: Case) -> None:
    offered = round_robin_slots(
        candidates_of(case), case.busy_by_host, case.rules, case.bookings_by_host
    )
    free_by_host = oracle_free_by_host(case)
    expected = {
        slot: tuple(host for host in sorted(free_by_host) if slot in free_by_host[host])
        for slot in set.union(*free_by_host.values())
    }
    assert dict(offered) == expected
    assert [slot for slot, _ in offered] == sorted(expected)


stats = st.builds(HostStats, st.integers(0, 3), st.none() | st.integers(0, 5))


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.sampled_from("abcdef"), min_size=1, unique=True),
    st.dictionaries(st.sampled_from("abcdefg"), stats),
)
def test_choose_host_is_fair_and_deterministic(
    hosts: list[str], by_host: dict[str, HostStats]
) -> None:
    chosen = choose_host(hosts, by_host)
    assert chosen in hosts
    never = HostStats(0, None)

    def better(a: str, b: str) -> bool:
        """Whether host a comes before host b in the stated order."""
        x, y = by_host.get(a, never), by_host.get(b, never)
        if x.bookings_in_period != y.bookings_in_period:
            return x.bookings_in_period < y.bookings_in_period
        if x.last_booked != y.last_booked:
            if x.last_booked is None or y.last_booked is None:
                return x.last_booked is None
            return x.last_booked < y.last_booked
        return a < b

    assert not [other for other in hosts if better(other, chosen)]
    assert choose_host(list(reversed(hosts)), by_host) == chosen
    assert choose_host(sorted(hosts), by_host) == chosen
