"""A booked slot's other pages: the guest's cancellation, asked for once more with an
optional reason, and the host's own page (from their notice) to see and cancel it.

Server-rendered like the form (templates/, strict CSP, no JavaScript needed);
every change is a form post with its CSRF token, counted as a booking attempt.
"""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from aiohttp import web

from server.booking.book import MAX_REASON, cancel, cancel_reason, find_host_booking
from server.booking.links import host_path, manage_path
from server.booking.messages import shown_zone
from server.booking.wording import duration_label, when_label
from server.outputs.branding import page_headers
from server.outputs.form import (
    Language,
    _booking_from,
    _page_response,
    _text,
    embedded,
    keep_language,
    page_language,
    page_look,
    render_page,
    with_embed,
)
from server.outputs.guard import (
    CSRF_FIELD,
    booking_attempt,
    check_csrf,
    check_rate,
    csrf_token,
    set_csrf_cookie,
)
from server.runtime import RUNTIME
from server.store import BookingRecord


def setup_manage(app: web.Application) -> None:
    app.router.add_get("/booking/{booking_id}/cancel", confirm_cancel)
    app.router.add_get("/booking/{booking_id}/host", host_booking)
    app.router.add_post("/booking/{booking_id}/host/cancel", host_cancel)


def _render(request: web.Request, template: str, context: dict[str, object],
            language: Language, headers: dict[str, str] | None = None) -> web.Response:
    token = csrf_token(request)
    response = render_page(template, request, {
        **context, "csrf": token, "csrf_field": CSRF_FIELD, "max_reason": MAX_REASON},
        language)
    set_csrf_cookie(request, response, token)
    return _page_response(response, headers)


def _title_and_zone(request: web.Request, booking: BookingRecord,
                    guest: bool) -> tuple[str, ZoneInfo]:
    page = request.app[RUNTIME].config.booking_page(booking.page)
    return (page.title if page else booking.page), shown_zone(page, booking, to_guest=guest)


async def confirm_cancel(request: web.Request) -> web.Response:
    """GET /booking/{id}/cancel?secret=…: are you sure? (the reason is optional)."""
    check_rate(request, "pages")
    booking = await _booking_from(request, request.query.get("secret", ""))
    if booking.status != "confirmed":
        raise web.HTTPSeeOther(manage_path(booking))  # nothing to confirm
    title, zone = _title_and_zone(request, booking, guest=True)
    page = request.app[RUNTIME].config.booking_page(booking.page)
    embed = embedded(request.query)
    language = page_language(request, booking=booking, page=page)
    return _render(request, "cancel.html", {
        "booking": booking, "title": title,
        "when": when_label(booking.start, booking.end, zone, language.code),
        "host_view": False, "action": keep_language(f"/booking/{booking.id}/cancel", language),
        "secret": booking.cancel_secret,
        "back": with_embed(keep_language(manage_path(booking), language), embed),
        **page_look(request, page, embed)},
        language, page_headers(request.app[RUNTIME].config, page, embed=embed))


async def host_booking(request: web.Request) -> web.Response:
    """GET /booking/{id}/host?secret=…: the booking as its host sees it, with a cancel form."""
    check_rate(request, "pages")
    runtime = request.app[RUNTIME]
    booking = await find_host_booking(runtime, request.match_info["booking_id"],
                                      request.query.get("secret", ""))
    page = runtime.config.booking_page(booking.page)
    labels = {q.name: q.label for q in page.questions} if page else {}
    title, zone = _title_and_zone(request, booking, guest=False)
    # The host's page is the host's: never in the guest's language, only in theirs.
    language = page_language(request, page=page)
    return _render(request, "host.html", {
        "booking": booking, "title": title,
        "when": when_label(booking.start, booking.end, zone, language.code),
        "duration_label": duration_label(timedelta(seconds=booking.end - booking.start),
                                         language.code),
        "answers": [(labels.get(name, name), answer) for name, answer in booking.answers.items()],
        "cancelled": booking.status == "cancelled",
        "action": keep_language(f"/booking/{booking.id}/host/cancel", language),
        "started": booking.start <= int(runtime.clock.now().timestamp())}, language)


async def host_cancel(request: web.Request) -> web.Response:
    """POST /booking/{id}/host/cancel (host secret and reason in the form): the host
    cancels; the guest is told, with the reason."""
    runtime = request.app[RUNTIME]
    form = await request.post()
    check_csrf(request, _text(form, CSRF_FIELD))
    async with booking_attempt(request):
        reason = cancel_reason(form.get("reason", ""))
        booking = await find_host_booking(runtime, request.match_info["booking_id"],
                                          _text(form, "secret"))
        await cancel(runtime, booking, reason=reason, by="host")
    raise web.HTTPSeeOther(keep_language(host_path(booking), page_language(request, form)))
