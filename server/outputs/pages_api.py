"""Booking pages' public JSON API: the free slots a guest may pick from, book, move, cancel;
and a booking's addresses (its JSON, the guest's page and invitation), shared with the form.

Handlers only parse, guard and render; which slots are free is
server.booking.offer's answer, the booking itself server.booking.book's.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from server.booking.book import (
    book,
    cancel,
    cancel_reason,
    find_booking,
    parse_booking_request,
)
from server.booking.links import invite_path, manage_path
from server.booking.offer import offered_slots
from server.booking.reschedule import parse_move_request, reschedule
from server.config.model import BookingPageConfig
from server.errors import RequestError, worded
from server.kit.clock import iso
from server.kit.durations import echo, format_duration, parse_day, parse_duration
from server.kit.zones import available_zones
from server.outputs.bodies import json_body
from server.outputs.guard import booking_attempt, check_rate
from server.runtime import RUNTIME, Runtime
from server.store import BookingRecord

MAX_SLOTS_SPAN = timedelta(days=62)
DEFAULT_SLOTS_SPAN = timedelta(days=7)


def booking_json(booking: BookingRecord, base_url: str) -> dict[str, Any]:
    return {
        "id": booking.id,
        "page": booking.page,
        "host": booking.host,
        "start": iso(booking.start),
        "end": iso(booking.end),
        "status": booking.status,
        "sequence": booking.sequence,
        "cancel_reason": booking.cancel_reason or None,
        "cancelled_by": booking.cancelled_by or None,
        "timezone": booking.guest_timezone or None,
        "video_link": booking.video_link or None,
        "manage_url": base_url + manage_path(booking),
        "ics_url": base_url + invite_path(booking),
        "cancel_url": f"{base_url}/api/v1/bookings/{booking.id}/cancel?secret="
                      f"{booking.cancel_secret}",
        "reschedule_url": f"{base_url}/api/v1/bookings/{booking.id}/reschedule?secret="
                          f"{booking.cancel_secret}",
    }


def booking_page_of(request: web.Request, runtime: Runtime) -> BookingPageConfig:
    page = runtime.config.booking_page(request.match_info["slug"])
    if page is None:
        raise RequestError(404, worded("no booking page at this address"))
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
    async with booking_attempt(request):
        if request.content_type != "application/json":
            # Also keeps other sites' plain HTML forms from posting here.
            raise RequestError(415, "send the booking as Content-Type: application/json")
        body = await json_body(request)
        booking = await book(runtime, page, parse_booking_request(body, page))
    return web.json_response(booking_json(booking, runtime.config.server.base_url),
                             status=201, headers={"Cache-Control": "no-store"})


async def api_cancel_booking(request: web.Request) -> web.Response:
    """POST /api/v1/bookings/{id}/cancel?secret=…, optionally with {"reason": "…"}:
    frees the slot at once; the reason is stored and shown to the host."""
    runtime = request.app[RUNTIME]
    async with booking_attempt(request):
        reason = ""
        if request.can_read_body:
            body = await _json(request, "the cancellation")
            unknown = sorted(set(body) - {"reason"})
            if unknown:
                raise RequestError(400, f"unknown field(s): {', '.join(unknown)}")
            reason = cancel_reason(body.get("reason"))
        booking = await find_booking(runtime, request.match_info["booking_id"],
                                     request.query.get("secret", ""))
        cancelled = await cancel(runtime, booking, reason=reason)
    return web.json_response(booking_json(cancelled, runtime.config.server.base_url),
                             headers={"Cache-Control": "no-store"})


async def api_reschedule_booking(request: web.Request) -> web.Response:
    """POST /api/v1/bookings/{id}/reschedule?secret=… with {"start": …, "duration": …}:
    200 with the moved booking, 409 if the new time is taken or the booking cannot move."""
    runtime = request.app[RUNTIME]
    async with booking_attempt(request):
        body = await _json(request, "the new time")
        booking = await find_booking(runtime, request.match_info["booking_id"],
                                     request.query.get("secret", ""))
        page = runtime.config.booking_page(booking.page)
        if page is None:
            raise RequestError(409, "this booking's page is gone, so it cannot be moved")
        moved = await reschedule(runtime, booking, parse_move_request(body, page))
    return web.json_response(booking_json(moved, runtime.config.server.base_url),
                             headers={"Cache-Control": "no-store"})


async def _json(request: web.Request, what: str) -> dict[str, Any]:
    if request.content_type != "application/json":
        # Also keeps other sites' plain HTML forms from posting here.
        raise RequestError(415, f"send {what} as Content-Type: application/json")
    body = await json_body(request)
    if not isinstance(body, dict):
        raise RequestError(400, "send a JSON object")
    return body
