"""The guest's booking form: /book/{slug}; /booking/{id} to see, move or cancel a booking.

Server-rendered (aiohttp-jinja2, autoescaped) and usable without JavaScript:
every choice is a link or a form, so the page works on any browser and with
any assistive technology; book.js only detects the time zone and saves
clicks. The page shows free slots and nothing else of a host's calendar.

Every page reads in one language (``server/kit/i18n.py``: the ``lang=`` the guest
picked, kept in every link and form of the flow; their booking's; the page's
``language``; their ``Accept-Language``; English), its texts from the catalogues
and its dates from Babel.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import aiohttp_jinja2
import jinja2
from aiohttp import web
from multidict import MultiDictProxy

from server.booking.book import (
    book,
    cancel,
    cancel_reason,
    find_booking,
    parse_booking_request,
)
from server.booking.invitation import guest_calendar
from server.booking.links import invite_path, manage_path
from server.booking.messages import guest_event, shown_zone
from server.booking.offer import nearest_slots, offered_slots
from server.booking.reschedule import movable, page_to_move, parse_move_request, reschedule
from server.booking.wording import day_label, duration_label, weekday_names, when_label
from server.config.model import BookingPageConfig
from server.config.pages import MADE_UPSTREAM
from server.errors import FieldErrors, FieldProblem, RequestError, Wording, worded
from server.kit.durations import format_duration, parse_day, parse_duration
from server.kit.i18n import (
    LANGUAGES,
    choose,
    i18n_environment,
    supported,
    template_callables,
    translate,
)
from server.kit.zones import available_zones, canonical_zone, zone_choices
from server.outputs.branding import (
    hosts_shown,
    location_shown,
    page_headers,
    setup_branding,
    theme_href,
)
from server.outputs.calendar_view import (
    add_months,
    month_label,
    month_of,
    month_span,
    month_weeks,
    parse_month,
    pick_day,
    slots_by_day,
)
from server.outputs.guard import (
    CSRF_FIELD,
    booking_attempt,
    check_csrf,
    check_rate,
    csrf_token,
    set_csrf_cookie,
)
from server.outputs.pages_api import booking_page_of
from server.runtime import RUNTIME, Runtime
from server.store import BookingRecord

STATIC_DIR = Path(__file__).with_name("static")
STATIC_FILES: web.AppKey[dict[str, StaticFile]] = web.AppKey("static_files", dict)
# Inline script and style are never needed, so none may run (XSS defence in depth);
# a booking page's own policy (branding.page_headers) adds its pictures and framers.
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; "
                           "img-src 'self'; form-action 'self'; base-uri 'none'; "
                           "frame-ancestors 'none'")
# How many months past an empty one the form looks for the first open day.
_LOOKAHEAD_MONTHS = 3


@dataclass(frozen=True, slots=True)
class StaticFile:
    body: bytes
    content_type: str
    version: str


def setup_form(app: web.Application) -> None:
    """Templates, static files and the form's routes."""
    env = aiohttp_jinja2.setup(
        app, loader=jinja2.PackageLoader("server.outputs", "templates"),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    i18n_environment(env)
    env.globals["static_url"] = lambda name: f"/static/{name}?v={app[STATIC_FILES][name].version}"
    kinds = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}
    app[STATIC_FILES] = {
        path.name: StaticFile(path.read_bytes(), kinds[path.suffix],
                              hashlib.sha256(path.read_bytes()).hexdigest()[:12])
        for path in sorted(STATIC_DIR.iterdir()) if path.suffix in kinds}
    app.router.add_get("/static/{name}", static_file)
    app.router.add_get("/book/{slug}", booking_form)
    app.router.add_post("/book/{slug}", submit_booking)
    app.router.add_get("/booking/{booking_id}", booking_status)
    app.router.add_post("/booking/{booking_id}/cancel", cancel_booking)
    app.router.add_get("/booking/{booking_id}/reschedule", reschedule_form)
    app.router.add_post("/booking/{booking_id}/reschedule", submit_reschedule)
    app.router.add_get("/booking/{booking_id}/invite.ics", booking_invite)
    setup_branding(app)


async def static_file(request: web.Request) -> web.Response:
    found = request.app[STATIC_FILES].get(request.match_info["name"])
    if found is None:
        raise RequestError(404, worded("no such file"))
    # The URL carries the content hash (?v=), so it can be cached for good.
    return web.Response(body=found.body, content_type=found.content_type, charset="utf-8",
                        headers={"Cache-Control": "public, max-age=31536000, immutable"})


# -- the form -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Choices:
    """What the guest has picked so far (from the query or the posted form)."""

    zone: ZoneInfo
    duration: timedelta
    month: date | None
    day: date | None
    start: str  # the ISO start of the chosen slot, or ""
    zone_detected: bool  # False when the guest chose the zone (JS must not change it)
    embed: bool = False  # ?embed=1: shown in another site's <iframe>, without page chrome


def _choices(page: BookingPageConfig, values: MultiDictProxy[Any] | Any,
             notices: list[Wording]) -> Choices:
    """The guest's choices; a bad one falls back to the default and says so."""
    zone_name = _text(values, "tz")
    zone = page.zone
    if zone_name and zone_name in available_zones():
        zone = ZoneInfo(canonical_zone(zone_name))  # an old alias: its canonical zone
    elif zone_name:
        notices.append(worded("“%(zone)s” is not a time zone we know; showing times in "
                              "%(page_zone)s.", zone=zone_name[:64], page_zone=page.timezone))
    duration = page.durations[0]
    if _text(values, "duration"):
        try:
            duration = parse_duration(_text(values, "duration"))
        except ValueError:
            duration = timedelta(0)
        if duration not in page.durations:
            notices.append(worded("That length is not offered here; showing the first one that "
                                  "is."))
            duration = page.durations[0]
    month = day = None
    try:
        month = parse_month(_text(values, "month")) if _text(values, "month") else None
        day = parse_day(_text(values, "day"), "day") if _text(values, "day") else None
    except ValueError:
        notices.append(worded("That date is not one we understand; showing the first open "
                              "day."))
    start = _text(values, "start")
    wanted = _instant(start)
    if wanted is not None:  # a time picked among others' days (the nearest free times)
        month, day = None, wanted.astimezone(zone).date()
    return Choices(zone=zone, duration=duration, month=month, day=day, start=start,
                   zone_detected=not zone_name, embed=embedded(values))


def _instant(text: str) -> datetime | None:
    """A chosen slot's start (ISO, with its offset), or None."""
    try:
        instant = datetime.fromisoformat(text) if text else None
    except ValueError:
        return None
    return instant if instant is not None and instant.tzinfo is not None else None


def embedded(values: Any) -> bool:
    """Whether the page is asked for inside an <iframe> (``embed=1``)."""
    return _text(values, "embed") == "1"


def with_embed(path: str, embed: bool) -> str:
    """``path`` (which has a query already) keeping ``embed=1``."""
    return f"{path}&embed=1" if embed else path


def _text(values: Any, name: str, limit: int = 100) -> str:
    value = values.get(name, "")
    return value.strip()[:limit] if isinstance(value, str) else ""


# -- languages ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Language:
    """The language a page is shown in, and the one the guest picked (kept in links)."""

    code: str
    asked: str  # "" unless the guest picked one with lang=


def page_language(request: web.Request, values: Any = None, *,
                  booking: BookingRecord | None = None,
                  page: BookingPageConfig | None = None) -> Language:
    """The page's language: ``lang=`` in the query (forms that post carry it in their
    action) or in ``values``, the booking's, the page's, the browser's
    ``Accept-Language``, English."""
    asked = supported(request.query.get("lang", "")) or (
        supported(values.get("lang", "")) if values is not None else "")
    code = choose(asked=asked, booking=booking.guest_language if booking else "",
                  page=page.language if page else "",
                  accept_language=request.headers.get("Accept-Language", ""))
    return Language(code, asked)


def keep_language(url: str, language: Language) -> str:
    """``url`` with the guest's ``lang=``, if they picked one."""
    if not language.asked:
        return url
    return f"{url}{'&' if '?' in url else '?'}{urlencode({'lang': language.asked})}"


def render_page(template: str, request: web.Request, context: dict[str, Any],
                language: Language, *, status: int = 200,
                lang_url: Any = None) -> web.Response:
    """``template`` in ``language``, with the switch to the others: ``lang_url(code)``
    (by default this GET's address with ``lang=code``; none after a POST)."""
    if lang_url is None and request.method == "GET":
        def lang_url(code: str) -> str:
            return str(request.rel_url.update_query(lang=code))
    response = aiohttp_jinja2.render_template(template, request, {
        **context, **template_callables(language.code), "lang": language.code,
        "lang_asked": language.asked, "languages": LANGUAGES, "lang_url": lang_url},
        status=status)
    response.headers["Content-Language"] = language.code
    response.headers["Vary"] = "Accept-Language"
    return response


async def booking_form(request: web.Request) -> web.Response:
    """GET /book/{slug}: the month, the chosen day's slots and, once one is picked, the form."""
    runtime = request.app[RUNTIME]
    page = booking_page_of(request, runtime)
    check_rate(request, "pages")
    notices: list[Wording] = []
    choices = _choices(page, request.query, notices)
    return await _render_form(request, runtime, page, choices, notices=notices,
                              language=page_language(request, page=page))


async def submit_booking(request: web.Request) -> web.Response:
    """POST /book/{slug}: book, then send the guest to their booking's page."""
    runtime = request.app[RUNTIME]
    page = booking_page_of(request, runtime)
    form = await request.post()
    check_csrf(request, _text(form, CSRF_FIELD), embedded=embedded(form))
    notices: list[Wording] = []
    choices = _choices(page, form, notices)
    language = page_language(request, form, page=page)
    fields = {"name": form.get("name", ""), "email": form.get("email", ""),
              "answers": {q.name: form.get(f"answer.{q.name}", "") for q in page.questions}}
    try:
        # Its 429 is a RequestError too, re-raised below (the "please wait" page).
        async with booking_attempt(request):
            booking = await book(runtime, page, parse_booking_request({
                "start": choices.start, "duration": int(choices.duration.total_seconds() // 60),
                "timezone": choices.zone.key, "language": language.code, **fields}, page))
    except RequestError as exc:
        if exc.status not in (400, 409, 422):
            raise
        # The form again, the guest's input kept: every problem next to its field, the
        # nearest free times if theirs was taken.
        return await _render_form(request, runtime, page, choices, notices=notices,
                                  failed=exc, values=fields, language=language)
    raise web.HTTPSeeOther(with_embed(manage_path(booking), choices.embed))


async def _render_form(request: web.Request, runtime: Runtime, page: BookingPageConfig,
                       choices: Choices, *, notices: list[Wording], language: Language,
                       failed: RequestError | None = None,
                       values: dict[str, Any] | None = None,
                       move: BookingRecord | None = None) -> web.Response:
    """The form; with ``move``, the same for a booking's guest choosing its new time
    (its own time counts as free for them). ``failed``: why the posted form (its
    fields in ``values``) did not book or move, shown with the form again."""
    zone = choices.zone
    exclude = move.id if move is not None else ""
    now = runtime.clock.now()
    today = now.astimezone(zone).date()
    first_month = month_of(today)
    last_day = (now.astimezone(page.zone) + timedelta(days=page.max_days_ahead + 1)
                ).astimezone(zone).date()
    last_month = month_of(last_day)
    month = choices.month
    if month is None and choices.day is not None:
        month = month_of(choices.day)
    if month is None or not first_month <= month <= last_month:
        month = first_month
        explicit = False
    else:
        explicit = True
    code = language.code
    days = slots_by_day(await offered_slots(runtime, page, choices.duration,
                                            *month_span(month, zone), exclude_booking=exclude),
                        zone, code)
    # An empty current month: move on to the first month with an open day.
    tries = 0
    while not days and not explicit and month < last_month and tries < _LOOKAHEAD_MONTHS:
        month, tries = add_months(month, 1), tries + 1
        days = slots_by_day(await offered_slots(runtime, page, choices.duration,
                                                *month_span(month, zone),
                                                exclude_booking=exclude), zone, code)
    day = pick_day(sorted(days), choices.day)
    day_slots = days.get(day, []) if day else []
    taken = failed is not None and failed.status == 409
    chosen = next((s for s in day_slots if choices.start and s.start == choices.start), None) \
        if not taken else None
    if choices.start and chosen is None and failed is None:
        notices.append(worded("That time is no longer free; please pick another."))
    problems = _problems(failed, page, language.code)
    alternatives: list[tuple[str, str]] | None = None
    if failed is not None and chosen is None:
        # Their time went (or never was one): the nearest free ones, to pick in the form.
        wanted = _instant(choices.start)
        alternatives = [
            (datetime.fromtimestamp(slot.start, zone).isoformat(),
             when_label(slot.start, slot.end, zone, code))
            for slot in await nearest_slots(
                runtime, page, choices.duration,
                (wanted or now).astimezone(zone), exclude_booking=exclude)]
        words = _time_problem(taken=taken, chosen=wanted is not None,
                              alternatives=bool(alternatives))
        problems.time = translate(code, words.msgid, words.params)
    elif failed is not None and problems.time:
        problems.general.append(problems.time)  # about a time that is still free after all
        problems.time = ""

    def link(**changes: Any) -> str:
        query = {"secret": move.cancel_secret if move else None, "tz": zone.key,
                 "duration": format_duration(choices.duration),
                 "month": month.strftime("%Y-%m"), "day": day.isoformat() if day else None,
                 "embed": "1" if choices.embed else None,
                 "lang": language.asked or None}
        query.update(changes)
        return "?" + urlencode({k: v for k, v in query.items() if v is not None})

    token = csrf_token(request)
    context = {
        "page": page, "zone": zone.key, "zones": zone_choices(now, first=zone.key),
        **page_look(request, page, choices.embed),
        "weekdays": weekday_names(code),
        "zone_detected": choices.zone_detected and request.method == "GET",
        "duration": format_duration(choices.duration),
        "durations": [(format_duration(d), duration_label(d, code)) for d in page.durations],
        "duration_label": duration_label(choices.duration, code),
        "month": month, "month_label": month_label(month, code),
        "month_value": month.strftime("%Y-%m"),
        "previous_month": link(month=add_months(month, -1).strftime("%Y-%m"), day=None)
        if month > first_month else None,
        "next_month": link(month=add_months(month, 1).strftime("%Y-%m"), day=None)
        if month < last_month else None,
        "weeks": month_weeks(month, {d: len(s) for d, s in days.items()}, today=today,
                             selected=day),
        "day": day, "day_label": day_label(day, code) if day else "",
        "slots": day_slots, "chosen": chosen,
        "chosen_label": when_label(chosen.slot.start, chosen.slot.end, zone, code)
        if chosen else "",
        "link": link, "day_label_of": lambda d: day_label(d, code),
        "problems": problems, "alternatives": alternatives,
        "notices": [translate(code, n.msgid, n.params) for n in notices],
        "values": values or {},
        "csrf": token, "csrf_field": CSRF_FIELD, "move": move,
        "form_action": keep_language(f"/booking/{move.id}/reschedule" if move
                                     else f"/book/{page.slug}", language),
        "current_label": when_label(move.start, move.end, zone, code) if move else "",
        "keep_url": keep_language(f"/booking/{move.id}?{urlencode({'secret': move.cancel_secret})}",
                                  language) if move else "",
        "page_url": keep_language(f"/book/{page.slug}", language),
    }
    response = render_page("book.html", request, context, language,
                           status=failed.status if failed is not None else 200,
                           lang_url=lambda code: link(lang=code))
    set_csrf_cookie(request, response, token)
    return _page_response(response, page_headers(request.app[RUNTIME].config, page,
                                                 embed=choices.embed))


@dataclass(slots=True)
class Problems:
    """What was wrong with a posted form, translated: each field's message by the id of
    its input, what the summary at the top lists (its link, its words), and about the
    chosen time and about nothing in particular."""

    fields: dict[str, str]
    listed: list[tuple[str, str]]  # (the field's id, words) in the fields' order
    time: str = ""
    general: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.fields or self.time or self.general)

    @property
    def count(self) -> int:
        return len(self.listed) + len(self.general) + (1 if self.time else 0)


_TAKEN = worded("That time was just booked — here are the nearest free times")
_GONE = worded("That time is no longer free — here are the nearest free times")
_NONE_CHOSEN = worded("Please choose a time — here are the nearest free ones")
_NONE_NEAR = worded("That time is no longer free, nor any near it; please pick another day "
                    "in the calendar")


def _time_problem(*, taken: bool, chosen: bool, alternatives: bool) -> Wording:
    """What the form says of the guest's time when it cannot be booked (``taken`` by
    someone else meanwhile; ``chosen``: there was a time at all)."""
    if not alternatives:
        return _NONE_NEAR
    if taken:
        return _TAKEN
    return _GONE if chosen else _NONE_CHOSEN


def _problems(failed: RequestError | None, page: BookingPageConfig, code: str) -> Problems:
    """``failed``'s problems sorted by where they are shown (``Problems``)."""
    problems = Problems(fields={}, listed=[])
    if failed is None:
        return problems
    # What book() or reschedule() refuse once the fields are right is about the time.
    found = failed.problems if isinstance(failed, FieldErrors) else [
        FieldProblem("start", failed)]
    by_field = {problem.field: problem for problem in found}
    ids = {"name": "name", "email": "email",
           **{f"answers.{q.name}": f"answer-{q.name}" for q in page.questions}}
    for name, element in ids.items():  # in the form's order
        if (problem := by_field.get(name)) is not None:
            words = problem.error.wording
            problems.fields[element] = translate(code, words.msgid, words.params)
            problems.listed.append((element, translate(code, problem.listed.msgid,
                                                       problem.listed.params)))
    for problem in found:
        if problem.field in ids:
            continue
        words = problem.error.wording
        text = translate(code, words.msgid, words.params)
        if problem.field in ("start", "duration"):
            problems.time = problems.time or text
        else:
            problems.general.append(text)
    return problems


def page_look(request: web.Request, page: BookingPageConfig | None, embed: bool,
              assigned: str = "") -> dict[str, Any]:
    """What a page of ``page`` shows besides its own content: the hosts, the location,
    the logo, the accent colour (a stylesheet), and whether it is embedded."""
    if page is None:
        return {"hosts": (), "team": False, "location": None, "logo": "", "theme": "",
                "page_zone": "", "embed": embed}
    hosts = hosts_shown(request.app[RUNTIME].config, page, assigned)
    return {"hosts": hosts, "team": not hosts, "location": location_shown(page),
            "logo": page.look.logo.href if page.look.logo else "", "theme": theme_href(page),
            "page_zone": page.timezone, "embed": embed}


def _page_response(response: web.Response,
                   headers: dict[str, str] | None = None) -> web.Response:
    response.headers.update(headers or {"Content-Security-Policy": CONTENT_SECURITY_POLICY,
                                        "X-Frame-Options": "DENY"})
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Robots-Tag"] = "noindex"
    response.enable_compression()
    return response


# The error page's heading per status (English msgids, translated when shown).
_ERROR_TITLES = {403: worded("Please try again"), 404: worded("Not found"),
                 409: worded("Already taken"), 413: worded("Too much text"),
                 429: worded("Please wait a moment")}


def form_error(request: web.Request, status: int, reason: Wording,
               headers: dict[str, str]) -> web.Response:
    """An error as a page a guest can read, in their language, with the way back."""
    slug = request.match_info.get("slug", "")
    language = page_language(request, page=request.app[RUNTIME].config.booking_page(slug)
                             if slug and RUNTIME in request.app else None)
    back = keep_language(f"/book/{slug}", language) \
        if request.path.startswith("/book/") and status != 404 else None
    title = _ERROR_TITLES.get(status, worded("Something is wrong"))
    response = render_page("error.html", request, {
        "status": status, "title": translate(language.code, title.msgid),
        "reason": translate(language.code, reason.msgid, reason.params), "back": back},
        language, status=status)
    response.headers.update(headers)
    return _page_response(response)


# -- a booked slot ------------------------------------------------------------------


async def _booking_from(request: web.Request, secret: str) -> BookingRecord:
    return await find_booking(request.app[RUNTIME], request.match_info["booking_id"], secret)


async def booking_status(request: web.Request) -> web.Response:
    """GET /booking/{id}?secret=…: the guest's booking; safe to open, prefetch or share."""
    check_rate(request, "pages")
    runtime = request.app[RUNTIME]
    booking = await _booking_from(request, request.query.get("secret", ""))
    page = runtime.config.booking_page(booking.page)
    language = page_language(request, booking=booking, page=page)
    zone = shown_zone(page, booking, to_guest=True)
    now = int(runtime.clock.now().timestamp())
    token = csrf_token(request)
    base = runtime.config.server.base_url
    meet_pending = page is not None and page.video_link in MADE_UPSTREAM \
        and not booking.video_link
    embed = embedded(request.query)
    assigned = booking.host if page is not None and page.mode == "round_robin" else ""
    response = render_page("booking.html", request, {
        "booking": booking, "title": page.title if page else booking.page,
        "page_url": keep_language(f"/book/{booking.page}", language) if page else None,
        "when": when_label(booking.start, booking.end, zone, language.code),
        "duration_label": duration_label(timedelta(seconds=booking.end - booking.start),
                                         language.code),
        "show_host": page is not None and len(page.hosts) > 1 and page.mode == "round_robin",
        "cancelled": booking.status == "cancelled", "started": booking.start <= now,
        "meet_pending": meet_pending,
        # Why the link the upstream was asked to make never came (hold worker).
        "video_problem": await runtime.store.video_problem(booking.id) if meet_pending else None,
        "manage_url": base + manage_path(booking), "invite_url": invite_path(booking),
        "csrf": token, "csrf_field": CSRF_FIELD,
        **page_look(request, page, embed, assigned),
    }, language)
    set_csrf_cookie(request, response, token)
    return _page_response(response, page_headers(runtime.config, page, embed=embed))


async def cancel_booking(request: web.Request) -> web.Response:
    """POST /booking/{id}/cancel (secret and an optional reason in the form, sent from
    the confirmation page): frees the slot at once."""
    form = await request.post()
    check_csrf(request, _text(form, CSRF_FIELD), embedded=embedded(form))
    async with booking_attempt(request):
        reason = cancel_reason(form.get("reason", ""))
        booking = await _booking_from(request, _text(form, "secret"))
        await cancel(request.app[RUNTIME], booking, reason=reason)
    # Outside: a redirect is no failure.
    raise web.HTTPSeeOther(with_embed(
        keep_language(manage_path(booking), page_language(request, form)), embedded(form)))


async def _movable_booking(request: web.Request, secret: str,
                           ) -> tuple[BookingRecord, BookingPageConfig]:
    runtime = request.app[RUNTIME]
    booking = await _booking_from(request, secret)
    page = page_to_move(runtime, booking)
    movable(booking, int(runtime.clock.now().timestamp()))
    return booking, page


def _move_choices(page: BookingPageConfig, booking: BookingRecord, values: Any,
                  notices: list[Wording]) -> Choices:
    """The guest's choices; by default their booking's zone, length and day."""
    defaults = {"tz": booking.guest_timezone,
                "duration": format_duration(timedelta(seconds=booking.end - booking.start))}
    merged = {**{k: v for k, v in defaults.items() if v}, **{
        k: values.get(k) for k in ("tz", "duration", "month", "day", "start", "embed")
        if isinstance(values.get(k), str) and values.get(k)}}
    choices = _choices(page, merged, notices)
    if not choices.day and not choices.month:
        zone = choices.zone
        booked_day = datetime.fromtimestamp(booking.start, UTC).astimezone(zone).date()
        choices = Choices(zone=zone, duration=choices.duration, month=None, day=booked_day,
                          start=choices.start, zone_detected=choices.zone_detected,
                          embed=choices.embed)
    return choices


async def reschedule_form(request: web.Request) -> web.Response:
    """GET /booking/{id}/reschedule?secret=…: the page's free times to move the booking to."""
    check_rate(request, "pages")
    booking, page = await _movable_booking(request, request.query.get("secret", ""))
    notices: list[Wording] = []
    choices = _move_choices(page, booking, request.query, notices)
    return await _render_form(request, request.app[RUNTIME], page, choices, notices=notices,
                              move=booking,
                              language=page_language(request, booking=booking, page=page))


async def submit_reschedule(request: web.Request) -> web.Response:
    """POST /booking/{id}/reschedule: move the booking, then back to its page."""
    runtime = request.app[RUNTIME]
    form = await request.post()
    check_csrf(request, _text(form, CSRF_FIELD), embedded=embedded(form))
    notices: list[Wording] = []
    found: tuple[BookingRecord, BookingPageConfig, Choices] | None = None
    try:
        # Its 429 is a RequestError too, re-raised below (the "please wait" page).
        async with booking_attempt(request):
            booking, page = await _movable_booking(request, _text(form, "secret"))
            choices = _move_choices(page, booking, form, notices)
            found = booking, page, choices
            moved = await reschedule(runtime, booking, parse_move_request({
                "start": choices.start,
                "duration": int(choices.duration.total_seconds() // 60)}, page))
    except RequestError as exc:
        if found is None or exc.status not in (400, 409, 422):
            raise  # no such booking, or it cannot move: the error page says why
        booking, page, choices = found
        fresh = await runtime.store.booking(booking.id)
        if fresh is None or fresh.status != "confirmed":
            raise
        return await _render_form(request, runtime, page, choices, notices=notices,
                                  failed=exc, move=fresh,
                                  language=page_language(request, form, booking=fresh,
                                                         page=page))
    raise web.HTTPSeeOther(with_embed(
        keep_language(manage_path(moved), page_language(request, form)), embedded(form)))


async def booking_invite(request: web.Request) -> web.Response:
    """GET /booking/{id}/invite.ics?secret=…: the guest's copy for their calendar."""
    check_rate(request, "pages")
    runtime = request.app[RUNTIME]
    booking = await _booking_from(request, request.query.get("secret", ""))
    page = runtime.config.booking_page(booking.page)
    body = guest_calendar(guest_event(runtime.config, page, booking), "PUBLISH",
                          datetime.fromtimestamp(booking.created, UTC))
    return web.Response(body=body, content_type="text/calendar", charset="utf-8", headers={
        "Content-Disposition": f'attachment; filename="{booking.page}.ics"',
        "Cache-Control": "no-store"})
