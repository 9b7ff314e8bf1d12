"""Booking pages: the free slots a guest may pick from (public JSON API).

Busy time comes from the merged calendars of the page's hosts and resources,
rules from the page's config, the arithmetic from server.slots. A host whose
calendar has a stale source fails closed: none of its time is offered.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from aiohttp import web

from server.bodies import json_body
from server.booking import (
    book,
    booking_json,
    bookings_per_day,
    cancel,
    find_booking,
    page_rules,
    parse_booking_request,
)
from server.busy import hosts_busy, known_until, merged_busy
from server.clock import iso
from server.config import BookingPageConfig
from server.durations import echo, format_duration, parse_day, parse_duration
from server.errors import RequestError
from server.guard import booking_attempt, check_rate
from server.runtime import RUNTIME, Runtime
from server.slots import Slot, buffered_span, candidate_slots, collective_slots, round_robin_slots
from server.zones import available_zones

MAX_SLOTS_SPAN = timedelta(days=62)
DEFAULT_SLOTS_SPAN = timedelta(days=7)


async def offered_slots(runtime: Runtime, page: BookingPageConfig, duration: timedelta,
                        start: datetime, end: datetime) -> list[Slot]:
    """The slots of [start, end) free after every busy calendar, booking and rule."""
    rules = page_rules(page, duration)
    candidates = candidate_slots(rules, runtime.clock.now(), start, end)
    if not candidates:
        return []
    span = buffered_span(rules, candidates[0].start, candidates[-1].end)
    known = await known_until(runtime, (*page.hosts, *page.resources))
    busy_by_host = await hosts_busy(runtime, page, span, known,
                                    lambda calendar: merged_busy(runtime, calendar, *span))
    counts = {}
    if rules.daily_limit is not None:
        # A day's margin either side: local days do not line up with the span.
        counts = {host: bookings_per_day(rules, await runtime.store.booking_starts(
            host, span[0] - 86400, span[1] + 86400)) for host in page.hosts}
    if page.mode == "round_robin":
        offered = round_robin_slots(candidates, busy_by_host, rules, counts)
        return [slot for slot, _hosts in offered]
    return collective_slots(candidates, busy_by_host, rules, counts)


def booking_page_of(request: web.Request, runtime: Runtime) -> BookingPageConfig:
    page = runtime.config.booking_page(request.match_info["slug"])
    if page is None:
        raise RequestError(404, "no booking page at this address")
    return page


def _guest_zone(request: web.Request, page: BookingPageConfig) -> ZoneInfo:
    name = request.query.get("tz", page.timezone)
    if name not in available_zones():
        raise RequestError(400, f"tz={name[:64]!r} is not an IANA time zone; use e.g. "
                           "Europe/Berlin")
    return ZoneInfo(name)


def _duration(request: web.Request, page: BookingPageConfig) -> timedelta:
    if "duration" not in request.query:
        return page.durations[0]
    text = request.query["duration"]
    try:
        duration = parse_duration(text if not text.isdigit() else f"{text}m")
    except ValueError as exc:
        raise RequestError(400, str(exc)) from exc
    if duration not in page.durations:
        offered = ", ".join(format_duration(d) for d in page.durations)
        raise RequestError(400, f"duration={echo(text)} is not offered here; choose one of "
                           f"{offered}")
    return duration


def _day(request: web.Request, name: str, default: date) -> date:
    if name not in request.query:
        return default
    try:
        return parse_day(request.query[name], name)
    except ValueError as exc:
        raise RequestError(400, str(exc)) from exc


async def api_page_slots(request: web.Request) -> web.Response:
    """GET /api/v1/pages/{slug}/slots?start=DATE&end=DATE&tz=IANA&duration=30m"""
    runtime = request.app[RUNTIME]
    page = booking_page_of(request, runtime)
    check_rate(request, "pages")
    zone = _guest_zone(request, page)
    duration = _duration(request, page)
    today = runtime.clock.now().astimezone(zone).date()
    first = _day(request, "start", today)
    last = _day(request, "end", first + DEFAULT_SLOTS_SPAN)
    if last <= first:
        raise RequestError(400, "end must be after start")
    if last - first > MAX_SLOTS_SPAN:
        raise RequestError(400, f"ask for at most {MAX_SLOTS_SPAN.days} days at a time")
    start = datetime.combine(first, time(), zone)
    end = datetime.combine(last, time(), zone)
    slots = await offered_slots(runtime, page, duration, start, end)
    return web.json_response({
        "page": page.slug,
        "title": page.title,
        "timezone": zone.key,
        "duration": format_duration(duration),
        "durations": [format_duration(d) for d in page.durations],
        "start": iso(int(start.timestamp())),
        "end": iso(int(end.timestamp())),
        "slots": [{
            "start": iso(slot.start),
            "end": iso(slot.end),
            "local_start": datetime.fromtimestamp(slot.start, UTC).astimezone(zone).isoformat(),
        } for slot in slots],
    }, headers={"Cache-Control": "no-store"})


async def api_create_booking(request: web.Request) -> web.Response:
    """POST /api/v1/pages/{slug}/bookings: 201 with the booking, or 409 if just taken."""
    runtime = request.app[RUNTIME]
    page = booking_page_of(request, runtime)
    with booking_attempt(request):
        if request.content_type != "application/json":
            # Also keeps other sites' plain HTML forms from posting here.
            raise RequestError(415, "send the booking as Content-Type: application/json")
        body = await json_body(request)
        booking = await book(runtime, page, parse_booking_request(body, page))
    return web.json_response(booking_json(booking, runtime.config.server.base_url),
                             status=201, headers={"Cache-Control": "no-store"})


async def api_cancel_booking(request: web.Request) -> web.Response:
    """POST /api/v1/bookings/{id}/cancel?secret=…: frees the slot at once."""
    runtime = request.app[RUNTIME]
    with booking_attempt(request):
        booking = await find_booking(runtime, request.match_info["booking_id"],
                                     request.query.get("secret", ""))
        cancelled = await cancel(runtime, booking)
    return web.json_response(booking_json(cancelled, runtime.config.server.base_url),
                             headers={"Cache-Control": "no-store"})
