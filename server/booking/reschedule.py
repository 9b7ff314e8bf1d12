"""Moving a booking to another of its page's slots, in one transaction.

The new time is checked exactly as a booking is (the page's slots, notice,
horizon, buffers, daily limit, every host's and resource's busy time after a
fresh round of their sources), except that the booking's own time counts as
free: a guest may move by half an hour into a slot that overlaps their own.
Then one store transaction re-checks, moves the booking and its blocks (never
both times held, never neither), moves its SEQUENCE on, and queues the hold
changes and the messages; from the commit on, the old time is free everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from server.booking.book import (
    _assign,
    _bookings_per_day,
    _duration,
    _recheck,
    _start,
    booking_takers,
    busy_reader,
    page_rules,
)
from server.booking.busy import hosts_busy, known_until
from server.booking.holds import hold_fields
from server.booking.mail_plan import moved_mail
from server.booking.slots import Rules, Slot, buffered_span, candidate_slots
from server.config.model import BookingPageConfig
from server.errors import RequestError, SlotTaken, worded
from server.store import BookingRecord, BookingTransaction, HoldPlan

if TYPE_CHECKING:  # the shared parts: built above this layer, passed in
    from server.runtime import Runtime

TAKEN = worded("that time was just taken; please pick another")


@dataclass(frozen=True, slots=True)
class MoveRequest:
    start: datetime
    duration: timedelta | None = None  # None: the booking's own length


def parse_move_request(body: object, page: BookingPageConfig) -> MoveRequest:
    """The guest's JSON ({"start": ..., "duration": ...}), checked as a booking's is."""
    if not isinstance(body, dict):
        raise RequestError(400, "send a JSON object")
    unknown = sorted(set(body) - {"start", "duration"})
    if unknown:
        raise RequestError(400, f"unknown field(s): {', '.join(unknown)}")
    duration = body.get("duration")
    return MoveRequest(_start(body.get("start")),
                       None if duration is None else _duration(duration, page))


def movable(booking: BookingRecord, now: int) -> None:
    """409 unless the booking can still move: confirmed, and not started."""
    if booking.status != "confirmed":
        raise RequestError(409, worded("this booking is cancelled and cannot be moved; "
                                  "please book a new time"))
    if booking.start <= now:
        raise RequestError(409, worded("this booking has already started and cannot be "
                                         "moved"))


def page_to_move(runtime: Runtime, booking: BookingRecord) -> BookingPageConfig:
    """The booking's page, whose slots it moves to; 409 when it is gone from the config."""
    page = runtime.config.booking_page(booking.page)
    if page is None:
        raise RequestError(409, worded("this booking's page is gone, so it cannot be moved"))
    return page


async def reschedule(runtime: Runtime, booking: BookingRecord,
                     request: MoveRequest) -> BookingRecord:
    """Move the booking or raise 409/422; counted in the metrics by result."""
    page = page_to_move(runtime, booking)
    try:
        moved = await _reschedule(runtime, page, booking, request)
    except RequestError as exc:
        result = "move_taken" if exc.status == 409 else "move_invalid"
        runtime.metrics.bookings.labels(page.slug, result).inc()
        raise
    runtime.metrics.bookings.labels(page.slug, "rescheduled").inc()
    return moved


async def _reschedule(runtime: Runtime, page: BookingPageConfig, booking: BookingRecord,
                      request: MoveRequest) -> BookingRecord:
    now = runtime.clock.now()
    movable(booking, int(now.timestamp()))
    duration = request.duration or timedelta(seconds=booking.end - booking.start)
    if duration not in page.durations:
        raise RequestError(422, worded("this booking's length is no longer offered; choose a "
                                         "duration"))
    rules = page_rules(page, duration)
    slot = Slot(int(request.start.timestamp()), int((request.start + duration).timestamp()))
    if (slot.start, slot.end) == (booking.start, booking.end):
        return booking  # already there: nothing moves, nobody is told
    if slot not in candidate_slots(rules, now, request.start, request.start + duration):
        raise RequestError(422, worded("that time is not one of this page's slots (outside "
                                       "hours, off the grid, too soon or too far ahead)"))
    await _recheck(runtime, page)
    known = await known_until(runtime, (*page.hosts, *page.resources))
    try:
        moved = await runtime.store.book(_move_body(runtime, page, rules, booking.id, slot,
                                                    known, now))
    except SlotTaken:  # the database's guarantee, had the check missed a booking
        raise RequestError(409, TAKEN) from None
    runtime.wake_outboxes()
    return moved


def _move_body(runtime: Runtime, page: BookingPageConfig, rules: Rules, booking_id: str,
               slot: Slot, known: dict[str, int], now: datetime,
               ) -> Callable[[BookingTransaction], Coroutine[Any, Any, BookingRecord]]:
    """The re-check and the move, one transaction run in one go (awaits only ``tx``)."""
    span = buffered_span(rules, slot.start, slot.end)
    stamp = int(now.timestamp())

    async def move(tx: BookingTransaction) -> BookingRecord:
        current = await tx.booking(booking_id)
        if current is None:
            raise RequestError(404, worded("no booking with this id and secret"))
        movable(current, stamp)

        busy_by_host = await hosts_busy(runtime, page, span, known,
                                        busy_reader(runtime, tx, span, booking_id))
        counts = {host: await _bookings_per_day(tx, rules, host, slot, booking_id)
                  for host in page.hosts}
        try:
            host = await _assign(page, rules, tx, slot, busy_by_host, counts, now,
                                 keep=current.host)
        except RequestError as exc:
            raise RequestError(409, TAKEN) from exc
        takers = booking_takers(page, host)
        moved = replace(current, host=host, start=slot.start, end=slot.end,
                        sequence=current.sequence + 1)
        if not await tx.move(moved, [(name, slot.start, slot.end) for name in takers],
                             sequence=current.sequence):
            raise RequestError(409, worded("this booking changed meanwhile; reload and try "
                                             "again"))
        config = runtime.config
        if config.mail is not None:
            await tx.requeue_mail(moved, moved_mail(config, page, moved, stamp), now=stamp,
                                  per_address_per_day=config.mail.max_per_address_per_day)
        await tx.move_holds(booking_id, {
            taker: HoldPlan(target.source, target.calendar, hold_fields(page, moved, taker))
            for taker in takers if (target := page.hold_target.get(taker)) is not None},
            stamp)
        return moved

    return move
