"""Bookable slots: working hours, notice, horizon, buffers and host choice (pure, no I/O).

Rules speak local wall-clock time (a host works 09:00–17:00 in Berlin); slots
are absolute, half-open [start, end) in integer Unix seconds, like every busy
interval.  Local time is turned into instants here and nowhere else, so the
rest of the program never sees a naive datetime.  The guest's time zone plays
no part: it only changes how the same instants are displayed.

Daylight saving time (zoneinfo, PEP 495):

* A slot starts at every ``step`` from the local start of each open range.
  A start the clock never shows (the hour skipped in spring) is skipped; one
  it shows twice (the hour repeated in autumn) means the first time (fold=0).
* A slot ends ``duration`` later in absolute time: 30 minutes are 30 minutes
  even across a transition.
* A slot lies inside a range when the clock reads a time within the range
  throughout the slot.  So a 09:00–17:00 day keeps its slots on transition
  days, a night range across the skipped hour loses that hour, and a slot never
  runs into time the hours do not cover (invariant 1).
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from operator import attrgetter
from types import MappingProxyType
from zoneinfo import ZoneInfo

from server.booking.availability import TENTATIVE, BusyInterval, union

TimeRange = tuple[time, time]
DayHours = tuple[TimeRange, ...]

#: As a range's end, ``time(0)`` means midnight at the *end* of the day (24:00).
MIDNIGHT = time(0)
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)
_DAY = timedelta(days=1)
_NO_BOOKINGS: Mapping[date, int] = MappingProxyType({})


# -- rules ----------------------------------------------------------------------


@dataclass(frozen=True)
class Rules:
    """When a booking page offers slots, in the page's own time zone.

    ``weekly_hours`` maps a weekday (0 = Monday) to its open ranges; a missing
    weekday is closed.  ``date_overrides`` replaces the weekday's ranges on one
    local date; an empty tuple closes that date.  A range ``(start, end)`` is
    wall-clock time on its own date; ``end == time(0)`` means midnight at the end
    of the day, so ``(time(22), time(0))`` is 22:00–24:00 and
    ``(time(0), time(0))`` the whole day.  Ranges of one day must not overlap;
    touching ranges stay separate (a slot never spans two), so write one range
    to offer slots across the seam.

    ``daily_limit`` caps bookings per host per local day (None: no cap).
    Busy intervals marked tentative block slots unless ``tentative_blocks`` is
    off.  Every duration is a whole number of seconds, like the slots.
    """

    zone: ZoneInfo
    weekly_hours: Mapping[int, DayHours]
    date_overrides: Mapping[date, DayHours]
    duration: timedelta
    step: timedelta
    buffer_before: timedelta
    buffer_after: timedelta
    minimum_notice: timedelta
    max_days_ahead: int
    daily_limit: int | None
    tentative_blocks: bool = True

    def __post_init__(self) -> None:
        """Reject impossible rules at once, every problem in one message."""
        problems = [*_scalar_problems(self), *_hours_problems(self)]
        if problems:
            raise ValueError("invalid booking rules: " + "; ".join(problems))
        # Sorted, read-only copies: nobody can change the rules after checking.
        weekly = {day: _sorted(ranges) for day, ranges in self.weekly_hours.items()}
        overrides = {day: _sorted(ranges) for day, ranges in self.date_overrides.items()}
        object.__setattr__(self, "weekly_hours", MappingProxyType(weekly))
        object.__setattr__(self, "date_overrides", MappingProxyType(overrides))

    @property
    def gap(self) -> timedelta:
        """The free time kept on each side of a booking.

        A new booking keeps ``buffer_before`` before it and ``buffer_after``
        after it, and so does every booking and busy block around it: the busy
        block before a new slot keeps its ``buffer_after`` as well as the slot
        its ``buffer_before``.  Both hold exactly when the larger one does.
        """
        return max(self.buffer_before, self.buffer_after)

    def hours_on(self, day: date) -> DayHours:
        """The open ranges of a local date: its override, else its weekday's hours."""
        if day in self.date_overrides:
            return self.date_overrides[day]
        return self.weekly_hours.get(day.weekday(), ())


def _scalar_problems(rules: Rules) -> Iterator[str]:
    if not isinstance(rules.zone, ZoneInfo):
        yield f"zone must be a zoneinfo.ZoneInfo, not {rules.zone!r}"
    for name in ("duration", "step"):
        yield from _span_problems(name, getattr(rules, name), minimum=_SECOND)
    for name in ("buffer_before", "buffer_after", "minimum_notice"):
        yield from _span_problems(name, getattr(rules, name), minimum=timedelta(0))
    if rules.max_days_ahead < 0:
        yield f"max_days_ahead must be 0 or more, not {rules.max_days_ahead}"
    if rules.daily_limit is not None and rules.daily_limit < 1:
        yield f"daily_limit must be at least 1 (None means no limit), not {rules.daily_limit}"


def _span_problems(name: str, value: timedelta, *, minimum: timedelta) -> Iterator[str]:
    if value < minimum:
        yield f"{name} must be {'positive' if minimum else 'zero or more'}, not {value}"
    elif value % _SECOND:
        yield f"{name} must be a whole number of seconds, not {value}"


def _hours_problems(rules: Rules) -> Iterator[str]:
    for weekday, ranges in rules.weekly_hours.items():
        if weekday not in range(7):
            yield f"weekly_hours key {weekday!r} is not a weekday (0 = Monday … 6 = Sunday)"
        else:
            yield from _ranges_problems(f"weekly_hours[{WEEKDAYS[weekday]}]", ranges)
    for day, ranges in rules.date_overrides.items():
        if isinstance(day, datetime) or not isinstance(day, date):
            yield f"date_overrides key {day!r} must be a date"
        else:
            yield from _ranges_problems(f"date_overrides[{day.isoformat()}]", ranges)


def _ranges_problems(label: str, ranges: DayHours) -> Iterator[str]:
    for start, end in ranges:
        for moment in (start, end):
            if moment.tzinfo is not None or moment.microsecond:
                yield f"{label}: {moment} must be a plain wall-clock time in whole seconds"
        if _end_seconds(end) <= _start_seconds(start):
            yield f"{label}: range {start:%H:%M}–{end:%H:%M} ends before it starts"
    ordered = _sorted(ranges)
    for (_, end), (start, next_end) in zip(ordered, ordered[1:], strict=False):
        if _end_seconds(end) > _start_seconds(start):
            yield f"{label}: ranges ending {end:%H:%M} and {start:%H:%M}–{next_end:%H:%M} overlap"


def _sorted(ranges: Iterable[TimeRange]) -> DayHours:
    return tuple(sorted(((start, end) for start, end in ranges), key=lambda r: r[0]))


def _start_seconds(moment: time) -> int:
    return moment.hour * 3600 + moment.minute * 60 + moment.second


def _end_seconds(moment: time) -> int:
    return 86400 if moment == MIDNIGHT else _start_seconds(moment)


# -- slots ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, order=True)
class Slot:
    """A bookable span, half-open [start, end) in Unix seconds."""

    start: int
    end: int


def candidate_slots(rules: Rules, now: datetime, start: datetime, end: datetime) -> list[Slot]:
    """Every slot the rules allow that overlaps [start, end), sorted by start.

    Allowed means: on the step grid of an open range of its local date, wholly
    inside that range, starting at or after ``now + minimum_notice``, on a local
    date at most ``max_days_ahead`` days after now's.  Busy time is not looked
    at here (see ``free_slots``).
    """
    for name, moment in (("now", now), ("start", start), ("end", end)):
        if moment.utcoffset() is None:
            raise ValueError(f"{name} must be an aware datetime, not {moment!r}")
    earliest = _ceil_seconds(now + rules.minimum_notice)
    first = max(earliest, _floor_seconds(start) - _seconds(rules.duration) + 1)
    last = _ceil_seconds(end) - 1
    if first > last:
        return []
    last_day = now.astimezone(rules.zone).date() + timedelta(days=rules.max_days_ahead)
    # A day early in case the clocks went back over midnight (São Paulo, 2019).
    day, final_day = local_date(rules, first) - _DAY, min(local_date(rules, last), last_day)
    slots: list[Slot] = []
    while day <= final_day:
        for hours in rules.hours_on(day):
            some = _range_slots(rules.zone, day, hours, rules.duration, rules.step)
            if some and first <= some[0].start and some[-1].start <= last:
                slots += some  # the whole range: most days of a window
            else:
                slots += (s for s in some if first <= s.start <= last)
        day += _DAY
    slots.sort(key=_START_END)  # in C: a dataclass's own ordering runs in Python
    return slots


_START_END = attrgetter("start", "end")


@functools.lru_cache(maxsize=8192)
def _range_slots(zone: ZoneInfo, day: date, hours: TimeRange, duration: timedelta,
                 step: timedelta) -> tuple[Slot, ...]:
    """The slots of one open range on one local date, before notice and window.

    Pure, and asked for again by every slot query whose window covers the day:
    remembered (8,192 ranges: a year of daily hours for about twenty pages)."""
    wall, end_wall = datetime.combine(day, hours[0]), datetime.combine(day, hours[1])
    if hours[1] == MIDNIGHT:
        end_wall += _DAY
    low, high = _wall_seconds(wall), _wall_seconds(end_wall)
    seconds = _seconds(duration)
    slots: list[Slot] = []
    while wall < end_wall:
        start = _existing(wall, zone)
        if start is not None and _reads_within(start, start + seconds, low, high, zone):
            slots.append(Slot(start, start + seconds))
        wall += step
    return tuple(slots)


def local_date(rules: Rules, instant: int) -> date:
    """The local date an instant falls on: the day a slot or booking counts against."""
    return datetime.fromtimestamp(instant, rules.zone).date()


# -- wall clock and instants --------------------------------------------------------


def _existing(wall: datetime, zone: ZoneInfo) -> int | None:
    """The first instant the clock shows ``wall``, or None if it never does.

    PEP 495 reads a naive time with the offset from before (fold=0) and after
    (fold=1) a transition.  In the repeated hour fold=0 is the earlier instant;
    in the skipped hour it is the later one, which is how a gap is recognised.
    """
    first = _floor_seconds(wall.replace(tzinfo=zone, fold=0))
    second = _floor_seconds(wall.replace(tzinfo=zone, fold=1))
    return None if first > second else first


def _reads_within(start: int, end: int, low: int, high: int, zone: ZoneInfo) -> bool:
    """Whether the clock reads a time in [low, high) (wall seconds) throughout [start, end).

    Within a piece of steady UTC offset the reading rises with time, so its
    ends decide; a slot holds at most one transition (they are months apart).
    """
    for piece_start, piece_end, offset in _steady_pieces(start, end, zone):
        if piece_start + offset < low or piece_end + offset > high:
            return False
    return True


def _steady_pieces(start: int, end: int, zone: ZoneInfo) -> list[tuple[int, int, int]]:
    """[start, end) cut where the UTC offset changes, each piece with its offset."""
    first, last = _offset_seconds(start, zone), _offset_seconds(end - 1, zone)
    if first == last:
        return [(start, end, first)]
    jump = _jump(start, end - 1, zone)
    return [(start, jump, first), (jump, end, last)]


def _jump(before: int, after: int, zone: ZoneInfo) -> int:
    """The first second after ``before`` with a different UTC offset (bisection)."""
    offset = _offset_seconds(before, zone)
    while after - before > 1:
        middle = (before + after) // 2
        if _offset_seconds(middle, zone) == offset:
            before = middle
        else:
            after = middle
    return after


def _offset_seconds(instant: int, zone: ZoneInfo) -> int:
    return _wall_seconds(datetime.fromtimestamp(instant, zone)) - instant


def _wall_seconds(wall: datetime) -> int:
    """A wall-clock reading as seconds, comparable across days (zone ignored)."""
    return _floor_seconds(wall.replace(tzinfo=UTC))


def _floor_seconds(moment: datetime) -> int:
    return (moment - _EPOCH) // _SECOND


def _ceil_seconds(moment: datetime) -> int:
    return -((_EPOCH - moment) // _SECOND)


def _seconds(span: timedelta) -> int:
    return span // _SECOND


# -- busy time ------------------------------------------------------------------


def free_slots(
    candidates: Iterable[Slot],
    busy: Sequence[BusyInterval],
    rules: Rules,
    *,
    bookings_per_day: Mapping[date, int] = _NO_BOOKINGS,
) -> list[Slot]:
    """The candidates one host can take, in their given order.

    A slot is free when [start − gap, end + gap) overlaps no blocking interval
    (``Rules.gap``: a buffer is kept after busy time as well as after the slot)
    and its local date has fewer than ``daily_limit`` bookings.  Existing
    bookings must be among ``busy`` as well: the count only enforces the cap.
    Tentative time blocks when ``rules.tentative_blocks``; any other status
    always does, so an unknown status fails closed.  The busy time is merged
    once and each slot bisected into it: O((n + m) log m).
    """
    spans = union((b.start, b.end) for b in busy if rules.tentative_blocks or b.status != TENTATIVE)
    ends = [span_end for _, span_end in spans]
    return [
        slot
        for slot in candidates
        if _clear(spans, ends, *buffered_span(rules, slot.start, slot.end))
        and _under_limit(rules, slot, bookings_per_day)
    ]


def buffered_span(rules: Rules, start: int, end: int) -> tuple[int, int]:
    """[start, end) widened by the gap: all the busy time that can keep a slot in it from
    being free."""
    gap = _seconds(rules.gap)
    return start - gap, end + gap


def _clear(spans: list[tuple[int, int]], ends: list[int], start: int, end: int) -> bool:
    """Whether [start, end) misses every span of a sorted, disjoint list."""
    index = bisect.bisect_right(ends, start)
    return index == len(spans) or spans[index][0] >= end


def _under_limit(rules: Rules, slot: Slot, bookings_per_day: Mapping[date, int]) -> bool:
    if rules.daily_limit is None or not bookings_per_day:
        return True
    return bookings_per_day.get(local_date(rules, slot.start), 0) < rules.daily_limit


def collective_slots(
    candidates: Iterable[Slot],
    busy_by_host: Mapping[str, Sequence[BusyInterval]],
    rules: Rules,
    bookings_by_host: Mapping[str, Mapping[date, int]],
) -> list[Slot]:
    """The candidates every host can take (a collective page needs them all).

    No hosts is an error rather than "everything is free": a page nobody
    attends must not offer slots.
    """
    if not busy_by_host:
        raise ValueError("a collective page needs at least one host")
    slots = list(candidates)
    for host, busy in busy_by_host.items():
        bookings = bookings_by_host.get(host, _NO_BOOKINGS)
        slots = free_slots(slots, busy, rules, bookings_per_day=bookings)
    return slots


def round_robin_slots(
    candidates: Iterable[Slot],
    busy_by_host: Mapping[str, Sequence[BusyInterval]],
    rules: Rules,
    bookings_by_host: Mapping[str, Mapping[date, int]],
) -> list[tuple[Slot, tuple[str, ...]]]:
    """The candidates at least one host can take, each with those hosts by name."""
    slots = list(candidates)
    free_by_host: dict[str, set[Slot]] = {}
    for host, busy in sorted(busy_by_host.items()):
        bookings = bookings_by_host.get(host, _NO_BOOKINGS)
        free_by_host[host] = set(free_slots(slots, busy, rules, bookings_per_day=bookings))
    offered: list[tuple[Slot, tuple[str, ...]]] = []
    for slot in slots:
        hosts = tuple(host for host, free in free_by_host.items() if slot in free)
        if hosts:
            offered.append((slot, hosts))
    return offered


# -- round robin choice -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HostStats:
    """What fairness looks at: bookings in the period and the latest one's start."""

    bookings_in_period: int
    last_booked: int | None


NEVER_BOOKED = HostStats(bookings_in_period=0, last_booked=None)


def choose_host(free_hosts: Iterable[str], stats: Mapping[str, HostStats]) -> str:
    """The host a round-robin booking goes to; the same inputs always give the same host.

    Fewest bookings in the period first, then least recently booked (never
    booked before any booking), then name.  A host without stats has never
    been booked.
    """
    hosts = list(free_hosts)
    if not hosts:
        raise ValueError("no free host to choose from")
    return min(hosts, key=lambda host: _fairness(host, stats.get(host, NEVER_BOOKED)))


def _fairness(host: str, stats: HostStats) -> tuple[int, bool, int, str]:
    booked = stats.last_booked is not None
    return (stats.bookings_in_period, booked, stats.last_booked or 0, host)
