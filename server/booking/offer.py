"""The slots a booking page offers: free after every busy calendar, booking and rule.

Busy time comes from the merged calendars of the page's hosts and resources,
rules from the page's config, the arithmetic from server.booking.slots. A host
whose calendar has a stale source fails closed: none of its time is offered.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from server.booking.availability import BusyInterval, merge_rows
from server.booking.book import bookings_per_day, page_rules
from server.booking.busy import hosts_busy, known_until, merged_busy
from server.booking.slots import (
    Slot,
    buffered_span,
    candidate_slots,
    collective_slots,
    round_robin_slots,
)
from server.config.model import BookingPageConfig, CalendarConfig

if TYPE_CHECKING:
    from server.runtime import Runtime


async def offered_slots(runtime: Runtime, page: BookingPageConfig, duration: timedelta,
                        start: datetime, end: datetime, *,
                        exclude_booking: str = "") -> list[Slot]:
    """The slots of [start, end) free after every busy calendar, booking and rule.

    ``exclude_booking``: a booking whose own time counts as free (its guest is
    choosing a new time for it); read past the cached timelines.
    """
    rules = page_rules(page, duration)
    candidates = candidate_slots(rules, runtime.clock.now(), start, end)
    if not candidates:
        return []
    span = buffered_span(rules, candidates[0].start, candidates[-1].end)
    known = await known_until(runtime, (*page.hosts, *page.resources))
    async def without_booking(calendar: CalendarConfig) -> list[BusyInterval]:
        return merge_rows(await runtime.store.busy_rows(
            runtime.ids_of(calendar.sources), *span, calendars=(calendar.name,),
            exclude_booking=exclude_booking))

    busy_by_host = await hosts_busy(
        runtime, page, span, known, without_booking if exclude_booking else
        lambda calendar: merged_busy(runtime, calendar, *span))
    counts = {}
    if rules.daily_limit is not None:
        # A day's margin either side: local days do not line up with the span.
        counts = {host: bookings_per_day(rules, await runtime.store.booking_starts(
            host, span[0] - 86400, span[1] + 86400, exclude_booking=exclude_booking))
            for host in page.hosts}
    if page.mode == "round_robin":
        offered = round_robin_slots(candidates, busy_by_host, rules, counts)
        return [slot for slot, _hosts in offered]
    return collective_slots(candidates, busy_by_host, rules, counts)


# Where the nearest free times are looked for, around a time just taken.
NEAREST_BEFORE = timedelta(days=3)
NEAREST_AFTER = timedelta(days=14)


async def nearest_slots(runtime: Runtime, page: BookingPageConfig, duration: timedelta,
                        wanted: datetime, *, count: int = 4,
                        exclude_booking: str = "") -> list[Slot]:
    """Up to ``count`` free slots nearest to ``wanted`` (a time just taken, or no longer
    free), in order: those of its own day (in ``wanted``'s zone) first, then the
    nearest of the days around it."""
    slots = await offered_slots(runtime, page, duration, wanted - NEAREST_BEFORE,
                                wanted + NEAREST_AFTER, exclude_booking=exclude_booking)
    zone = wanted.tzinfo
    day = wanted.date()
    at = wanted.timestamp()

    def distance(slot: Slot) -> tuple[bool, float]:
        local = datetime.fromtimestamp(slot.start, zone)
        return local.date() != day, abs(slot.start - at)

    return sorted(sorted(slots, key=distance)[:count])
