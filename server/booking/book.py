"""Booking a slot: validate the guest's request, then check and book in one transaction.

The slot is checked again inside the store's write transaction (BEGIN
IMMEDIATE), against every busy instance, every booking and every rule, so two
guests can never get the same host at the same time — even across processes.
From the commit on, the booked time is busy in every output.
"""

from __future__ import annotations

import asyncio
import hmac
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

from server.booking.availability import BusyInterval
from server.booking.busy import hosts_busy, known_until
from server.booking.holds import hold_fields
from server.booking.mail_plan import booked_mail, cancelled_mail
from server.booking.slots import (
    HostStats,
    Rules,
    Slot,
    buffered_span,
    candidate_slots,
    choose_host,
    collective_slots,
    local_date,
    round_robin_slots,
)
from server.config.mail import plain_address
from server.config.model import BookingPageConfig, CalendarConfig
from server.config.pages import MADE_UPSTREAM
from server.errors import FieldErrors, FieldProblem, RequestError, SlotTaken, worded
from server.kit.durations import (
    duration_from_minutes,
    echo,
    format_duration,
    parse_duration,
    parse_instant,
)
from server.kit.i18n import LANGUAGES, supported
from server.kit.zones import available_zones, canonical_zone
from server.store import BookingRecord, BookingTransaction

if TYPE_CHECKING:  # the shared parts: built above this layer, passed in
    from server.runtime import Runtime

MAX_NAME = 200
MAX_EMAIL = 254
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_BUT_NEWLINE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")
FAIRNESS_PERIOD = timedelta(days=30)
# A re-check round another booking started this shortly before counts for this
# one too: under load, bookings share rounds instead of queueing one each.
RECHECK_SLACK = timedelta(seconds=1)
T = TypeVar("T")


def page_rules(page: BookingPageConfig, duration: timedelta) -> Rules:
    """The slot engine's rules for one of a page's durations."""
    return Rules(
        zone=page.zone, weekly_hours=page.weekly_hours, date_overrides=page.date_overrides,
        duration=duration, step=page.slot_step, buffer_before=page.buffer_before,
        buffer_after=page.buffer_after, minimum_notice=page.minimum_notice,
        max_days_ahead=page.max_days_ahead, daily_limit=page.daily_limit,
        tentative_blocks=page.tentative_blocks)


@dataclass(frozen=True, slots=True)
class BookingRequest:
    start: datetime
    duration: timedelta
    name: str
    email: str
    answers: Mapping[str, str]
    timezone: str = ""  # the guest's, for showing them times; "" when not given
    language: str = ""  # the guest's (en, de, …), for their pages and mail; "" when not given


def parse_booking_request(body: object, page: BookingPageConfig) -> BookingRequest:
    """The guest's JSON, checked field by field; anything odd is a 400/422 with a reason.

    Every field is checked, not only up to the first wrong one: several wrong fields
    raise one ``FieldErrors`` holding each (the form shows them all at once); its
    status and reason are the first field's, in the order below, as before."""
    if not isinstance(body, dict):
        raise RequestError(400, "send a JSON object")
    unknown = sorted(set(body) - {"start", "duration", "name", "email", "answers", "timezone",
                                  "language"})
    if unknown:
        raise RequestError(400, f"unknown field(s): {', '.join(unknown)}")
    problems: list[FieldProblem] = []

    def checked(field: str, check: Callable[[], T]) -> T | None:
        try:
            return check()
        except FieldErrors as exc:
            problems.extend(exc.problems)
        except RequestError as exc:
            problems.append(FieldProblem(field, exc))
        return None

    start = checked("start", lambda: _start(body.get("start")))
    duration = checked("duration", lambda: _duration(body.get("duration"), page))
    name = checked("name", lambda: _name(body.get("name")))
    email = checked("email", lambda: _email(body.get("email")))
    answers = checked("answers", lambda: _answers(body.get("answers", {}), page))
    timezone = checked("timezone", lambda: _timezone(body.get("timezone")))
    language = checked("language", lambda: _language(body.get("language")))
    if problems:
        raise FieldErrors(problems)
    assert start is not None and duration is not None and name is not None
    assert email is not None and answers is not None and timezone is not None
    assert language is not None
    return BookingRequest(start=start, duration=duration, name=name, email=email,
                          answers=answers, timezone=timezone, language=language)


def _start(value: object) -> datetime:
    if not isinstance(value, str):
        raise RequestError(400, "start must be an ISO 8601 date-time string")
    if len(value.strip()) == 10:
        raise RequestError(400, f"start={echo(value)} is a date; send a date-time with a time "
                           "zone, e.g. 2026-12-01T09:00:00Z")
    try:
        return parse_instant(value, "start", UTC)
    except ValueError as exc:
        raise RequestError(400, str(exc)) from exc


def _duration(value: object, page: BookingPageConfig) -> timedelta:
    """Minutes (30) or a duration like the slots API's ("30m", "1h")."""
    if value is None:
        return page.durations[0]
    wrong = RequestError(400, "duration must be minutes (30) or like \"30m\"")
    try:
        if isinstance(value, int) and not isinstance(value, bool):
            duration = duration_from_minutes(value)
        elif isinstance(value, str) and len(value) <= 20:
            duration = parse_duration(value)
        else:
            raise wrong
    except ValueError as exc:
        raise RequestError(400, f"{wrong.reason}: {exc}") from exc
    if duration not in page.durations:
        offered = ", ".join(format_duration(d) for d in page.durations)
        raise RequestError(422, f"duration {echo(value)} is not offered; choose one of "
                           f"{offered}")
    return duration


def _name(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise RequestError(422, "name is required", guest=worded("Please enter your name"))
    if len(value) > MAX_NAME or _CONTROL.search(value):
        raise RequestError(422, f"name must be one line of at most {MAX_NAME} characters",
                           guest=worded("Please keep your name to one line of at most "
                                        "%(limit)d characters", limit=MAX_NAME))
    return value.strip()


def _email(value: object) -> str:
    # One plain address, the same check the mail uses (an address the booking takes
    # is one fbproxy can put in a To header): no display name, comments or quotes.
    if not isinstance(value, str) or len(value) > MAX_EMAIL or not plain_address(value):
        missing = not isinstance(value, str) or not value.strip()
        raise RequestError(
            422, "email must be an e-mail address like sam@example.org",
            guest=worded("Please enter your email address, like sam@example.org") if missing
            else worded("Please check your email address; write it like sam@example.org"))
    return value


def _timezone(value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > 64 or value not in available_zones():
        raise RequestError(422, "timezone must be an IANA time zone such as Europe/Berlin")
    return canonical_zone(value)  # an old alias (Asia/Calcutta) as its zone (Asia/Kolkata)


def _language(value: object) -> str:
    if value is None:
        return ""
    code = supported(value)
    if not code:
        raise RequestError(422, f"language must be one of {', '.join(LANGUAGES)}")
    return code


def _answers(value: object, page: BookingPageConfig) -> dict[str, str]:
    """The answers; each wrong one is a ``FieldProblem`` of ``answers.<name>``."""
    if not isinstance(value, dict):
        raise RequestError(400, "answers must be an object")
    questions = {q.name: q for q in page.questions}
    unknown = sorted(set(value) - set(questions))
    if unknown:
        raise RequestError(422, f"no question named {', '.join(unknown)}")
    answers: dict[str, str] = {}
    problems: list[FieldProblem] = []
    for name, question in questions.items():
        field = f"answers.{name}"
        answer = value.get(name, "")
        if not isinstance(answer, str):
            problems.append(FieldProblem(field, RequestError(422, f"{field} must be text")))
            continue
        answer = answer.replace("\r\n", "\n").strip()
        textarea = question.kind == "textarea"
        control = _CONTROL_BUT_NEWLINE if textarea else _CONTROL
        wrong = f"{field} must be at most {question.max_length} characters of plain text"
        if len(answer) > question.max_length:
            problems.append(FieldProblem(field, RequestError(422, wrong, guest=worded(
                "Please keep this to at most %(limit)d characters",
                limit=question.max_length)), summary=worded(
                "Please keep “%(label)s” to at most %(limit)d characters",
                label=question.label, limit=question.max_length)))
        elif control.search(answer):
            problems.append(FieldProblem(field, RequestError(422, wrong, guest=worded(
                "Please use plain text here") if textarea else worded(
                "Please write this on one line")), summary=worded(
                "Please write “%(label)s” as plain text", label=question.label)))
        elif question.required and not answer:
            problems.append(FieldProblem(field, RequestError(
                422, f"{field} is required",
                guest=worded("Please answer “%(label)s”", label=question.label))))
        elif answer:
            answers[name] = answer
    if problems:
        raise FieldErrors(problems)
    return answers


async def book(runtime: Runtime, page: BookingPageConfig,
               request: BookingRequest) -> BookingRecord:
    """Book the slot or raise 409/422; counted in the metrics by result."""
    try:
        booking = await _book(runtime, page, request)
    except RequestError as exc:
        result = "taken" if exc.status == 409 else "invalid"
        runtime.metrics.bookings.labels(page.slug, result).inc()
        raise
    runtime.metrics.bookings.labels(page.slug, "booked").inc()
    return booking


async def _book(runtime: Runtime, page: BookingPageConfig,
                request: BookingRequest) -> BookingRecord:
    """The check and the insert, in one transaction."""
    rules = page_rules(page, request.duration)
    now = runtime.clock.now()
    slot = Slot(int(request.start.timestamp()),
                int((request.start + request.duration).timestamp()))
    if slot not in candidate_slots(rules, now, request.start, request.start + request.duration):
        raise RequestError(422, worded("that time is not one of this page's slots (outside "
                                       "hours, off the grid, too soon or too far ahead)"))
    await _recheck(runtime, page)
    known = await known_until(runtime, (*page.hosts, *page.resources))
    span = buffered_span(rules, slot.start, slot.end)
    try:
        return await _check_and_insert(runtime, page, rules, slot, span, known, request, now)
    except SlotTaken:  # the database's guarantee, had the check above missed a booking
        raise RequestError(409, worded("that slot was just taken; please pick another")) from None


async def _check_and_insert(runtime: Runtime, page: BookingPageConfig, rules: Rules,
                            slot: Slot, span: tuple[int, int], known: dict[str, int],
                            request: BookingRequest, now: datetime) -> BookingRecord:
    async def check_and_insert(tx: BookingTransaction) -> BookingRecord:
        # Runs in one go in the store's writer (a thread, on SQLite): it awaits
        # only ``tx``, and reads nothing here that another task changes.
        busy_by_host = await hosts_busy(runtime, page, span, known,
                                        busy_reader(runtime, tx, span))
        counts = {host: await _bookings_per_day(tx, rules, host, slot) for host in page.hosts}
        host = await _assign(page, rules, tx, slot, busy_by_host, counts, now)
        takers = booking_takers(page, host)
        booking = BookingRecord(
            id=new_booking_id(), page=page.slug, host=host, start=slot.start, end=slot.end,
            guest_name=request.name, guest_email=request.email, answers=dict(request.answers),
            cancel_secret=secrets.token_urlsafe(24), status="confirmed",
            created=int(now.timestamp()), guest_timezone=request.timezone,
            guest_language=request.language, host_secret=secrets.token_urlsafe(24))
        booking = replace(booking, video_link=video_link(page, booking.id))
        await tx.insert(booking, [(name, slot.start, slot.end) for name in takers])
        config = runtime.config
        if config.mail is not None:
            await tx.queue_mail(booking, booked_mail(config, page, booking, booking.created),
                                now=booking.created,
                                per_address_per_day=config.mail.max_per_address_per_day)
        for taker in takers:
            target = page.hold_target.get(taker)
            if target is not None:
                await tx.queue_hold(booking.id, taker, source=target.source,
                                    calendar=target.calendar,
                                    hold=hold_fields(page, booking, taker), now=booking.created)
        return booking

    booking = await runtime.store.book(check_and_insert)
    runtime.wake_outboxes()
    return booking


def booking_takers(page: BookingPageConfig, host: str) -> tuple[str, ...]:
    """The calendars a booking with ``host`` takes time from: every host of a
    collective page (or the one assigned), and every resource."""
    hosts = page.hosts if page.mode == "collective" else (host,)
    return (*hosts, *page.resources)


def busy_reader(runtime: Runtime, tx: BookingTransaction, span: tuple[int, int],
                exclude_booking: str = "",
                ) -> Callable[[CalendarConfig], Awaitable[list[BusyInterval]]]:
    """A calendar's busy time in ``span`` as the transaction sees it (instances and
    bookings; ``exclude_booking``'s own blocks left out, for its reschedule)."""
    async def read(calendar: CalendarConfig) -> list[BusyInterval]:
        rows = await tx.busy_rows(runtime.ids_of(calendar.sources), [calendar.name], *span,
                                  exclude_booking=exclude_booking)
        return [BusyInterval(start, end, status) for start, end, status in rows]

    return read


async def _recheck(runtime: Runtime, page: BookingPageConfig) -> None:
    """Sync the page's sources once more, so an event added upstream a moment ago counts.

    Bounded by ``recheck_timeout``; concurrent bookings share each source's round.
    With ``recheck = "required"`` a round that fails or runs late refuses the booking.
    """
    if page.recheck == "off":
        return
    since = time.perf_counter() - RECHECK_SLACK.total_seconds()
    names = {source for name in (*page.hosts, *page.resources)
             if (calendar := runtime.config.calendar(name)) is not None
             for source in calendar.sources}
    syncers = [runtime.sync.syncers[name] for name in sorted(names)
               if name in runtime.sync.syncers]
    unsure = RequestError(503, worded("could not confirm with the calendars in time that "
                                      "this slot is still free; please try again"),
                          headers={"Retry-After": "5"})
    try:
        outcomes = await asyncio.wait_for(
            asyncio.gather(*(syncer.fresh_round(since) for syncer in syncers)),
            page.recheck_timeout.total_seconds())
    except TimeoutError:
        if page.recheck == "required":
            raise unsure from None
        return
    if page.recheck == "required" and not all(outcome.ok for outcome in outcomes):
        raise unsure


async def _assign(page: BookingPageConfig, rules: Rules, tx: BookingTransaction, slot: Slot,
                  busy_by_host: Mapping[str, list[BusyInterval]],
                  counts: Mapping[str, Mapping[date, int]], now: datetime, *,
                  keep: str = "") -> str:
    """The host of the slot (409 if nobody is free): round robin keeps ``keep`` (a moved
    booking's host) if they are free, else chooses fairly."""
    taken = RequestError(409, worded("that slot was just taken; please pick another"))
    if page.mode == "collective":
        if not collective_slots([slot], busy_by_host, rules, counts):
            raise taken
        return page.hosts[0]
    offered = round_robin_slots([slot], busy_by_host, rules, counts)
    if not offered:
        raise taken
    if keep in offered[0][1]:
        return keep
    if len(offered[0][1]) == 1:  # nobody to be fair to
        return next(iter(offered[0][1]))
    since = int((now - FAIRNESS_PERIOD).timestamp())
    stats = await tx.host_stats(list(offered[0][1]), since)
    return choose_host(offered[0][1], {
        host: HostStats(bookings_in_period=count, last_booked=last)
        for host, (count, last) in stats.items()})


async def _bookings_per_day(tx: BookingTransaction, rules: Rules, host: str,
                            slot: Slot, exclude_booking: str = "") -> dict[date, int]:
    if rules.daily_limit is None:
        return {}
    starts = await tx.booking_starts(host, slot.start - 2 * 86400, slot.start + 2 * 86400,
                                     exclude_booking=exclude_booking)
    return bookings_per_day(rules, starts)


def bookings_per_day(rules: Rules, starts: list[int]) -> dict[date, int]:
    """Bookings per local date of the page, the way the daily limit counts them."""
    counts: dict[date, int] = {}
    for start in starts:
        day = local_date(rules, start)
        counts[day] = counts.get(day, 0) + 1
    return counts


def video_link(page: BookingPageConfig, booking_id: str) -> str:
    """One meeting room per booking, shared by the guest and every host's hold."""
    if not page.video_link or page.video_link in MADE_UPSTREAM:
        return ""  # the hold's upstream makes the link (Meet, Teams; see HoldWorker)
    return page.video_link.format(random=secrets.token_hex(8), booking_id=booking_id)


def new_booking_id() -> str:
    """Random and URL-safe; the hold's UID upstream is derived from it."""
    return "bk_" + secrets.token_hex(12)


async def find_booking(runtime: Runtime, booking_id: str, secret: str) -> BookingRecord:
    """The booking if ``secret`` is its secret; 404 alike for a wrong id or secret."""
    booking = await runtime.store.booking(booking_id) if len(booking_id) <= 64 else None
    if booking is None or not hmac.compare_digest(booking.cancel_secret.encode(),
                                                  secret.encode()):
        raise RequestError(404, worded("no booking with this id and secret"))
    return booking


async def find_host_booking(runtime: Runtime, booking_id: str, secret: str) -> BookingRecord:
    """The booking if ``secret`` is its host secret; 404 alike for a wrong id or secret
    (and for bookings made before hosts had one)."""
    booking = await runtime.store.booking(booking_id) if len(booking_id) <= 64 else None
    if booking is None or not booking.host_secret or not hmac.compare_digest(
            booking.host_secret.encode(), secret.encode()):
        raise RequestError(404, worded("no booking with this id and secret"))
    return booking


MAX_REASON = 1000


def cancel_reason(value: object) -> str:
    """The optional reason given with a cancellation: plain text, line breaks allowed."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RequestError(422, worded("reason must be text"))
    reason = value.replace("\r\n", "\n").strip()
    if len(reason) > MAX_REASON or _CONTROL_BUT_NEWLINE.search(reason):
        raise RequestError(422, worded("reason must be at most %(limit)d characters of plain text",
                                          limit=MAX_REASON))
    return reason


async def cancel(runtime: Runtime, booking: BookingRecord, *, reason: str = "",
                 by: str = "guest") -> BookingRecord:
    """Free the booking's time at once; the holds upstream are removed by the worker,
    the guest and hosts told by the mailer (``by``: "guest" or "host").

    Cancelling twice is harmless; a booking that has started can no longer be
    cancelled (its hold stays in the host's calendar as a record).
    """
    now = int(runtime.clock.now().timestamp())
    if booking.status == "confirmed":
        if booking.start <= now:
            raise RequestError(409, worded("this booking has already started and cannot be "
                                                  "cancelled"))
        config = runtime.config
        page = config.booking_page(booking.page)
        mail = cancelled_mail(config, page, booking, now) if page is not None else ()
        await runtime.store.cancel_booking(
            booking.id, now=now, reason=reason, by=by, mail=mail,
            mail_limit=config.mail.max_per_address_per_day if config.mail else 0)
        runtime.metrics.bookings.labels(booking.page, "cancelled").inc()
        runtime.wake_outboxes()
    cancelled = await runtime.store.booking(booking.id)
    assert cancelled is not None
    return cancelled
