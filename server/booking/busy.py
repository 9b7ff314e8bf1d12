"""Queries for a merged calendar: its busy timeline and how fresh its sources are."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from server.booking.availability import BUSY, BusyInterval, merge_rows, overlapping
from server.config.model import BookingPageConfig, CalendarConfig, SourceConfig
from server.errors import RequestError, worded
from server.kit.clock import iso
from server.kit.durations import format_duration
from server.store import SourceRecord
from server.sync.loop import retry_delay

if TYPE_CHECKING:  # the shared parts: built above this layer, passed in
    from server.runtime import Runtime, Timeline

# The longest window one free/busy question may ask (JSON API, CalDAV free-busy-query):
# the answer is computed on the event loop.
MAX_QUERY_SPAN = timedelta(days=366)

SERVED_PAST = timedelta(days=1)
# Bounds of Retry-After on a calendar that is not served: sooner is pointless (no
# poll is shorter), and later than an hour would outlast a fix made by hand.
RETRY_AFTER_MIN = 10
RETRY_AFTER_MAX = 3600


@dataclass(frozen=True, slots=True)
class SourceFreshness:
    name: str
    last_success: int | None
    age_seconds: int | None
    stale: bool
    needs_reauth: bool
    last_error: str | None

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "last_success": iso(self.last_success) if self.last_success else None,
            "age_seconds": self.age_seconds,
            "stale": self.stale,
            "needs_reauth": self.needs_reauth,
            "last_error": self.last_error,
        }


async def merged_busy(runtime: Runtime, calendar: CalendarConfig, start: int,
                      end: int) -> list[BusyInterval]:
    """The calendar's merged busy blocks overlapping [start, end).

    The synced instances of the whole served window are merged once per
    instance generation and cached, so repeated queries (feeds, the API,
    slots) cost a bisect, not a read of every instance; after a change, only
    the changed sources' share is brought up to date (timelines.py). Bookings,
    which change far more often, are kept apart (cached per booking
    generation), so a booking leaves every instance timeline warm; the two are
    merged once per pair of versions (see ``_timeline``).
    """
    window = served_window(runtime)
    if window[0] <= start and end <= window[1]:
        return overlapping(await _timeline(runtime, calendar, window), start, end)
    rows = await runtime.store.busy_rows(runtime.ids_of(calendar.sources), start, end,
                                        calendars=(calendar.name,))
    return merge_rows(rows)


def served_window(runtime: Runtime) -> tuple[int, int]:
    """What feeds serve: from a day ago to the horizon, on whole hours.

    Whole hours keep a feed's body, and so its ETag, stable between changes.
    """
    hour = runtime.clock.now().replace(minute=0, second=0, microsecond=0)
    start = hour - SERVED_PAST
    end = hour + timedelta(days=runtime.config.server.horizon_days)
    return int(start.timestamp()), int(end.timestamp())


async def _timeline(runtime: Runtime, calendar: CalendarConfig, window: tuple[int, int],
                    ) -> list[BusyInterval]:
    """The window's merged busy blocks: instances and bookings, each cached apart, and
    the two merged once per pair of versions (not once per query: a slot query after
    each booking merged the whole window again).

    A change to instances costs the changed sources' share only (see
    timelines.py); bookings are few, read and merged whole.
    """
    ids = runtime.ids_of(calendar.sources)
    instances_key = (await runtime.store.instance_generation(), window)
    instances = await _cached_timeline(
        runtime, runtime.timelines, "instances", calendar.name, instances_key,
        lambda: runtime.source_timelines.merged(runtime.store, ids, window))
    bookings_key = (await runtime.store.booking_generation(), window)
    bookings = await _cached_timeline(
        runtime, runtime.booking_timelines, "bookings", calendar.name, bookings_key,
        lambda: _merged(runtime.store.busy_rows((), *window, calendars=(calendar.name,))))
    if not bookings:
        return instances

    async def both() -> list[BusyInterval]:
        return merge_rows((b.start, b.end, b.status) for b in (*instances, *bookings))

    return await _cached_timeline(runtime, runtime.combined_timelines, "combined",
                                  calendar.name, (instances_key, bookings_key), both)


async def _merged(rows: Awaitable[list[tuple[int, int, str]]]) -> list[BusyInterval]:
    return merge_rows(await rows)


async def _cached_timeline(runtime: Runtime, cache: dict[str, Timeline], what: str, name: str,
                           key: tuple[object, ...],
                           compute: Callable[[], Awaitable[list[BusyInterval]]],
                           ) -> list[BusyInterval]:
    """``compute``'s blocks, kept in ``cache`` while ``key`` holds; computed once per key
    however many requests miss it together."""
    cached = cache.get(name)
    if cached is not None and cached[0] == key:
        return cached[1]

    async def load() -> list[BusyInterval]:
        merged = await compute()
        cache[name] = (key, merged)
        return merged

    return await runtime.timeline_loads.run((what, name, key), load)


async def freshness(runtime: Runtime, calendar: CalendarConfig, *,
                    max_age: float = 0.0) -> list[SourceFreshness]:
    """Each source's last success and whether it is past its ``stale_after``."""
    now = int(runtime.clock.now().timestamp())
    records = {r.name: r for r in await runtime.store.sources(max_age=max_age)}
    return [source_freshness(runtime, records.get(name), name, now) for name in calendar.sources]


async def served_freshness(runtime: Runtime, calendar: CalendarConfig, *,
                           max_age: float = 1.0) -> list[SourceFreshness]:
    """The calendar's sources' freshness, or a 503 when its busy time must not be shown.

    A source that never synced would make its share of the calendar look free,
    so the calendar is not served at all (invariant 7); with ``stale_policy =
    "fail"`` neither is it once a source is past its ``stale_after``. Call it
    only after the caller's secret was checked: the reason names sources.
    ``max_age`` is as for ``freshness``.
    """
    sources = await freshness(runtime, calendar, max_age=max_age)
    if not _blocking(calendar, sources):
        return sources
    # Records only move forward, so a cached read can only be too pessimistic:
    # confirm with a fresh one before refusing (a round may just have finished).
    now = int(runtime.clock.now().timestamp())
    records = {r.name: r for r in await runtime.store.sources()}
    sources = [source_freshness(runtime, records.get(name), name, now)
               for name in calendar.sources]
    blocking = _blocking(calendar, sources)
    if not blocking:
        return sources
    wait = max(_next_round_in(runtime.config.source(s.name), records.get(s.name), now)
               for s in blocking)
    retry = min(max(round(wait), RETRY_AFTER_MIN), RETRY_AFTER_MAX)
    reasons = "; ".join(_why(runtime.config.source(s.name), s, records.get(s.name))
                        for s in blocking)
    raise RequestError(503, f"calendar {calendar.name!r} is not served until its sources "
                       f"have synced: {reasons}; retry in {retry} s",
                       headers={"Retry-After": str(retry)},
                       guest=worded("the free times cannot be shown until the calendars have "
                                    "synced; please try again in %(seconds)d s",
                                    seconds=retry))


def _blocking(calendar: CalendarConfig, sources: list[SourceFreshness]) -> list[SourceFreshness]:
    """The sources that keep the calendar from being served."""
    return [s for s in sources
            if s.last_success is None or (calendar.stale_policy == "fail" and s.stale)]


def _why(source: SourceConfig, fresh: SourceFreshness, record: SourceRecord | None) -> str:
    failures = record.consecutive_failures if record else 0
    failing = f" ({failures} failed attempt(s) in a row)" if failures else ""
    if fresh.last_success is None:
        idle = "" if source.enabled else " (it is disabled)"
        return f"source {source.name!r} has never synced{idle}{failing}"
    age = format_duration(timedelta(seconds=fresh.age_seconds or 0))
    return (f"source {source.name!r} last synced {age} ago, past its stale_after of "
            f"{format_duration(source.stale_after)}{failing}")


class _LongestJitter(random.Random):
    """retry_delay's latest moment: a client told to retry then finds the round done."""

    def uniform(self, a: float, b: float) -> float:
        return max(a, b)


def _next_round_in(source: SourceConfig, record: SourceRecord | None, now: int) -> float:
    """Seconds until ``source``'s next sync round is due (0: now or already running)."""
    if not source.enabled:
        return float(RETRY_AFTER_MAX)  # nothing changes until the config does
    if record is None or record.last_attempt is None:
        return 0.0  # the first round is under way
    delay = retry_delay(record.consecutive_failures, source.poll_interval, _LongestJitter())
    return record.last_attempt + delay - now


async def known_until(runtime: Runtime, names: Iterable[str]) -> dict[str, int]:
    """Per calendar, the instant up to which its busy time is known; after it, it is busy.

    That is the earliest end of its sources' expanded windows (recurrences are
    only expanded that far ahead), and 0 — nothing known — for a calendar with
    a never synced source, a stale one (unless it says ``on_stale =
    "last_known"``), or no calendar of that name. Availability fails closed on
    everything past it (invariants 1 and 4).
    """
    now = int(runtime.clock.now().timestamp())
    # A second-old read (dropped by every write here) only errs towards less known:
    # windows only grow and successes only move forward.
    records = {r.name: r for r in await runtime.store.sources(max_age=1.0)}
    known: dict[str, int] = {}
    for name in names:
        calendar = runtime.config.calendar(name)
        until = 0
        if calendar is not None and not any(
                source_freshness(runtime, records.get(source), source, now).stale
                and runtime.config.source(source).on_stale == "busy"
                for source in calendar.sources):
            ends = [records[s].window_end for s in calendar.sources if s in records]
            until = min((end for end in ends if end is not None), default=0)
            if any(end is None for end in ends) or len(ends) < len(calendar.sources):
                until = 0
        known[name] = until
    return known


def unknown_busy(known: int, span: tuple[int, int]) -> list[BusyInterval]:
    """The part of ``span`` past ``known``, as one busy block (or nothing)."""
    start = max(known, span[0])
    return [BusyInterval(start, span[1], BUSY)] if start < span[1] else []


async def hosts_busy(runtime: Runtime, page: BookingPageConfig, span: tuple[int, int],
                     known: dict[str, int],
                     read: Callable[[CalendarConfig], Awaitable[list[BusyInterval]]],
                     ) -> dict[str, list[BusyInterval]]:
    """Each host's busy time in ``span`` with the page's resources' added, busy throughout
    past what is known of a calendar; ``read`` gives a calendar's busy time in ``span``
    (the cached timelines for offering slots, the booking transaction for booking)."""
    async def calendar_busy(name: str) -> list[BusyInterval]:
        calendar = runtime.config.calendar(name)
        unknown = unknown_busy(known[name], span)
        if calendar is None or (unknown and unknown[0].start <= span[0]):
            return unknown
        return [*await read(calendar), *unknown]

    shared: list[BusyInterval] = []
    for resource in page.resources:
        shared += await calendar_busy(resource)
    return {host: [*await calendar_busy(host), *shared] for host in page.hosts}


def source_freshness(runtime: Runtime, record: SourceRecord | None, name: str,
                      now: int) -> SourceFreshness:
    source = runtime.config.source(name)
    last = record.last_success if record else None
    age = now - last if last is not None else None
    return SourceFreshness(
        name=name, last_success=last, age_seconds=age,
        stale=age is None or age > source.stale_after.total_seconds(),
        needs_reauth=bool(record and record.needs_reauth),
        last_error=record.last_error if record else None)


async def last_change(runtime: Runtime, calendar: CalendarConfig) -> int:
    """When the calendar's data last changed (feeds' DTSTAMP and Last-Modified)."""
    records = await runtime.store.sources()
    changes = [r.last_change for r in records if r.name in calendar.sources and r.last_change]
    return max(changes, default=0)
