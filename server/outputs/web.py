"""HTTP routes: subscribable feeds, the JSON API and health.

Handlers only parse, authorise and render; the data comes from server.booking.busy.
Every error is raised as RequestError and rendered once by the middleware.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta, tzinfo
from email.utils import formatdate
from time import perf_counter

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from server.booking.busy import (
    MAX_QUERY_SPAN,
    SourceFreshness,
    last_change,
    merged_busy,
    served_freshness,
    served_window,
)
from server.booking.holds import hold_fields
from server.config.model import CalendarConfig
from server.errors import (
    FieldErrors,
    RequestError,
    StoreError,
    StoreUnavailable,
    Wording,
    worded,
)
from server.kit import durations
from server.kit.clock import iso
from server.kit.metrics import CONTENT_TYPE
from server.outputs.bodies import json_body
from server.outputs.caldav_endpoint import setup_caldav
from server.outputs.feed_cache import FEED_RENDERS, FEEDS, CachedFeed, RenderedFeed
from server.outputs.feeds import EventBytes, render_busy_feed_reusing
from server.outputs.form import form_error, setup_form
from server.outputs.freebusy_cache import FREEBUSY_ANSWERS, JsonBusy, at_detail, json_busy
from server.outputs.freebusy_pieces import render_freebusy_reusing
from server.outputs.guard import wrong_secret
from server.outputs.manage import setup_manage
from server.outputs.pages_api import (
    api_cancel_booking,
    api_create_booking,
    api_page_slots,
    api_reschedule_booking,
)
from server.outputs.reload import api_reload
from server.outputs.status import authorize_admin, setup_status, state_metrics
from server.runtime import RUNTIME, Runtime, Viewer
from server.sync.push import HOOK_PATHS

log = logging.getLogger("fbproxy.web")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/", index)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/api/v1/reload", api_reload)
    app.router.add_post(HOOK_PATHS["google"], google_hook)
    app.router.add_post(HOOK_PATHS["microsoft"], microsoft_hook)
    app.router.add_get("/feeds/{secret}/busy.ics", busy_feed)
    app.router.add_get("/feeds/{secret}/freebusy.ics", freebusy_feed)
    app.router.add_get("/api/v1/freebusy", api_freebusy)
    app.router.add_get("/api/v1/pages/{slug}/slots", api_page_slots)
    app.router.add_post("/api/v1/pages/{slug}/bookings", api_create_booking)
    app.router.add_post("/api/v1/bookings/{booking_id}/cancel", api_cancel_booking)
    app.router.add_post("/api/v1/bookings/{booking_id}/reschedule", api_reschedule_booking)
    setup_form(app)
    setup_manage(app)
    setup_caldav(app)
    setup_status(app)


# -- middleware ---------------------------------------------------------------

@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Renders every error once: JSON under /api, plain text elsewhere; times each request."""
    started = perf_counter()
    response = await _handled(request, handler)
    if RUNTIME in request.app:
        resource = request.match_info.route.resource
        # The route's pattern, never the path: paths carry feed secrets.
        route = resource.canonical if resource is not None else "unmatched"
        request.app[RUNTIME].metrics.http_seconds.labels(
            route, request.method, str(response.status)).observe(perf_counter() - started)
    return response


async def _handled(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        # Refused before any handler runs, also on routes that never read a body.
        if (request.content_length or 0) > request.client_max_size:
            raise RequestError(413, worded("request bodies are limited to %(size)d KiB",
                                           size=request.client_max_size // 1024))
        response = await handler(request)
    except RequestError as exc:
        response = _error_response(request, exc.status, exc.reason, exc.headers,
                                   wording=exc.wording, errors=[
                                       {"field": problem.field, "error": problem.error.reason}
                                       for problem in exc.problems]
                                   if isinstance(exc, FieldErrors) else None)
    except StoreError as exc:  # e.g. the disk is full: refuse, nothing was changed
        log.error("serving %s %s: %s", request.method, redact(request.path), exc)
        # Where the database is (host, name) is the operator's business, not a guest's.
        reason = worded("the database is unavailable; please try again later") \
            if isinstance(exc, StoreUnavailable) else Wording(f"{exc}; please try again later")
        retry = "10" if isinstance(exc, StoreUnavailable) else "60"
        response = _error_response(request, 503, str(reason), {"Retry-After": retry},
                                   wording=reason)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = _error_response(request, exc.status, exc.reason, {})
    except Exception:
        log.exception("unhandled error serving %s %s", request.method, redact(request.path))
        internal = worded("internal error; see the server log")
        response = _error_response(request, 500, str(internal), {}, wording=internal)
    # Feed URLs hold secrets: never let a browser pass them on.
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response


def _error_response(request: web.Request, status: int, reason: str,
                    headers: dict[str, str], *, wording: Wording | None = None,
                    errors: list[dict[str, str]] | None = None) -> web.Response:
    """JSON (English: for developers) under /api, a page in the guest's language
    (``wording``, translated) for the booking pages, plain English text elsewhere.
    ``errors``: every wrong field of a request, as JSON's ``errors`` list."""
    if request.path.startswith("/api/"):
        body: dict[str, object] = {"error": reason, "status": status}
        if errors:
            body["errors"] = errors
        return web.json_response(body, status=status, headers=headers)
    if request.path.startswith(("/book/", "/booking/")):
        return form_error(request, status, wording or Wording(reason), headers)
    return web.Response(text=f"{status}: {reason}\n", status=status, headers=headers)


_SECRET_IN_PATH = re.compile(r"^/feeds/[^/]+/")


def redact(path: str) -> str:
    return _SECRET_IN_PATH.sub("/feeds/***/", path)


class RedactingAccessLogger(AbstractAccessLogger):
    """An access log line without the feed secret in it."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info('%s "%s %s" %s %s %.3fs', request.remote, request.method,
                         redact(request.path), response.status, response.body_length, time)

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


# -- small handlers -----------------------------------------------------------

async def index(request: web.Request) -> web.Response:
    return web.Response(text="fbproxy: a free/busy proxy. Feed URLs: run `fbproxy urls`.\n")


async def google_hook(request: web.Request) -> web.Response:
    """POST /hooks/google: Google says a watched calendar changed; wake its sync."""
    push = request.app[RUNTIME].push
    headers = request.headers
    if push is None or not await push.notified(
            headers.get("X-Goog-Channel-ID", ""), headers.get("X-Goog-Channel-Token", ""),
            headers.get("X-Goog-Resource-State", ""), headers.get("X-Goog-Resource-ID", "")):
        raise RequestError(404, "no such channel")
    return web.Response(status=200)


async def microsoft_hook(request: web.Request) -> web.Response:
    """POST /hooks/microsoft: Graph's validation handshake, or change notifications."""
    token = request.query.get("validationToken")
    if token is not None:
        # Graph checks the URL before a subscription: echo the token as plain text.
        if not token or len(token) > 1024:
            raise RequestError(400, "validationToken must be 1-1024 characters")
        return web.Response(text=token, content_type="text/plain")
    push = request.app[RUNTIME].push
    expected = "expected Graph's change notification JSON"
    body = await json_body(request, expected)
    notifications = body.get("value") if isinstance(body, dict) else None
    if not isinstance(notifications, list):
        raise RequestError(400, expected)
    known = 0
    for notification in notifications[:100]:
        if not isinstance(notification, dict) or push is None:
            continue
        known += await push.notified(str(notification.get("subscriptionId", "")),
                                     str(notification.get("clientState", "")), "updated", "")
    if not known:
        raise RequestError(404, "no such subscription")
    return web.Response(status=202)


async def metrics(request: web.Request) -> web.Response:
    """GET /metrics: Prometheus text format (the admin secret unless metrics_public)."""
    runtime = request.app[RUNTIME]
    if not runtime.config.server.metrics_public:
        await authorize_admin(request)
    body = runtime.metrics.render(await state_metrics(runtime))
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE,
                                            "Cache-Control": "no-store"})


async def healthz(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    await runtime.store.sources()
    return web.json_response({"status": "ok"})


# -- feeds ------------------------------------------------------------------

def _feed_viewer(request: web.Request) -> Viewer:
    viewer = request.app[RUNTIME].viewer_for_secret(request.match_info["secret"])
    if viewer is None:
        raise wrong_secret(request, RequestError(404, "no feed at this address"))
    return viewer


async def _hold_events(runtime: Runtime, calendar: CalendarConfig,
                       window: tuple[int, int]) -> list[tuple[str, int, int, str]]:
    """The titles of holds fbproxy wrote for this calendar (never an upstream title)."""
    events = []
    for booking in await runtime.store.bookings_holding(calendar.name, *window):
        page = runtime.config.booking_page(booking.page)
        if page is not None:
            title = hold_fields(page, booking, calendar.name)["title"]
            events.append((f"{booking.id}-hold@fbproxy", booking.start, booking.end, title))
    return events


def _refresh_interval(runtime: Runtime, calendar: CalendarConfig) -> timedelta:
    polls = [runtime.config.source(name).poll_interval for name in calendar.sources]
    return min(max(min(polls), timedelta(minutes=5)), timedelta(hours=1))


async def _feed(request: web.Request, kind: str) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    viewer = _feed_viewer(request)
    calendar = viewer.calendar
    # Before any cached body: a 304 or an old copy would also pass for checked free time.
    sources = await served_freshness(runtime, calendar)
    window = served_window(runtime)
    refresh = _refresh_interval(runtime, calendar)
    key = (await runtime.store.busy_generation(), window)
    last = request.app[FEEDS].get((calendar.name, kind, viewer.detail))
    if last is not None and last.key == key:
        cached = last.feed
    else:
        cached = await _single_render(request.app, runtime, viewer, kind, window, refresh, key)
    response = _conditional(request, cached, refresh)
    # How fresh the answer is: the oldest last success among the calendar's sources
    # (every one has synced, or served_freshness would have refused).
    oldest = min(s.last_success or 0 for s in sources)
    response.headers["X-Fbproxy-Synced"] = iso(oldest)
    response.headers["X-Fbproxy-Stale"] = "1" if any(s.stale for s in sources) else "0"
    return response


async def _single_render(app: web.Application, runtime: Runtime, viewer: Viewer, kind: str,
                         window: tuple[int, int], refresh: timedelta,
                         key: tuple[object, ...]) -> CachedFeed:
    """The feed for ``key``, rendered once however many requests wait for it.

    Any busy change anywhere moves the key; the body is rendered again only
    when this calendar's own blocks changed, and then off the event loop.
    """
    slot = (viewer.calendar.name, kind, viewer.detail)
    return await app[FEED_RENDERS].run(
        (*slot, *key), lambda: _render(app, runtime, viewer, kind, window, refresh, key))


async def _render(app: web.Application, runtime: Runtime, viewer: Viewer, kind: str,
                  window: tuple[int, int], refresh: timedelta,
                  key: tuple[object, ...]) -> CachedFeed:
    calendar = viewer.calendar
    changed = await last_change(runtime, calendar)
    blocks = tuple(at_detail(await merged_busy(runtime, calendar, *window), viewer.detail))
    holds = tuple(await _hold_events(runtime, calendar, window)) \
        if kind == "busy" and viewer.detail == "holds" else ()
    content = (blocks, holds, changed, window, refresh)
    slot = (calendar.name, kind, viewer.detail)
    previous = app[FEEDS].get(slot)
    if previous is not None and previous.content == content:
        app[FEEDS][slot] = replace(previous, key=key)
        return previous.feed
    stamp = datetime.fromtimestamp(changed or window[0], UTC)
    render: Callable[[], tuple[bytes, EventBytes]]
    if kind == "busy":
        render = functools.partial(render_busy_feed_reusing, calendar.name, blocks, stamp=stamp,
                                   refresh=refresh, holds=holds,
                                   previous=previous.events if previous else {})
    else:
        render = functools.partial(render_freebusy_reusing, calendar.name, blocks,
                                   window_start=window[0], window_end=window[1], stamp=stamp,
                                   refresh=refresh, previous=previous.events if previous else {})
    body, events = await asyncio.get_running_loop().run_in_executor(runtime.executor, render)
    cached = CachedFeed(body, f'"{hashlib.sha256(body).hexdigest()[:32]}"', changed)
    app[FEEDS][slot] = RenderedFeed(key, content, cached, events)
    return cached


def _conditional(request: web.Request, feed: CachedFeed, refresh: timedelta) -> web.Response:
    headers = {
        "ETag": feed.etag,
        "Cache-Control": f"private, max-age={int(refresh.total_seconds())}",
    }
    if feed.last_modified:
        headers["Last-Modified"] = formatdate(feed.last_modified, usegmt=True)
    if_none_match = request.headers.get("If-None-Match", "")
    if feed.etag in (tag.strip().removeprefix("W/") for tag in if_none_match.split(",")):
        return web.Response(status=304, headers=headers)
    return web.Response(body=feed.body, headers=headers,
                        content_type="text/calendar", charset="utf-8")


async def busy_feed(request: web.Request) -> web.StreamResponse:
    return await _feed(request, "busy")


async def freebusy_feed(request: web.Request) -> web.StreamResponse:
    return await _feed(request, "freebusy")


# -- JSON API ---------------------------------------------------------------

def _api_viewer(request: web.Request) -> Viewer:
    runtime = request.app[RUNTIME]
    challenge = {"WWW-Authenticate": 'Bearer realm="fbproxy"'}
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise RequestError(401, "send the calendar's secret as 'Authorization: Bearer <secret>'",
                           headers=challenge)
    viewer = runtime.viewer_for_secret(token.strip())
    name = request.query.get("calendar")
    if viewer is None or (name is not None and name != viewer.calendar.name):
        raise wrong_secret(request, RequestError(401, "this secret does not open that calendar",
                                                 headers=challenge))
    return viewer


def parse_instant(value: str, param: str, zone: tzinfo) -> datetime:
    """An ISO 8601 date-time with an offset, or a date (midnight in ``zone``)."""
    try:
        return durations.parse_instant(value, param, zone)
    except ValueError as exc:
        raise RequestError(400, str(exc)) from exc


async def api_freebusy(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    viewer = _api_viewer(request)
    calendar = viewer.calendar
    zone = runtime.config.server.zone
    now = runtime.clock.now()
    start = parse_instant(request.query["start"], "start", zone) \
        if "start" in request.query else now
    end = parse_instant(request.query["end"], "end", zone) \
        if "end" in request.query else start + timedelta(days=7)
    if end <= start:
        raise RequestError(400, "end must be after start")
    if end - start > MAX_QUERY_SPAN:
        raise RequestError(400, f"the window is longer than {MAX_QUERY_SPAN.days} days")
    start_ts, end_ts = int(start.timestamp()), int(end.timestamp())
    sources = await served_freshness(runtime, calendar)
    busy = await json_busy(runtime, request.app[FREEBUSY_ANSWERS], viewer, start_ts, end_ts)
    body = freebusy_json(busy, int(now.timestamp()), sources)
    return web.Response(body=body, content_type="application/json", charset="utf-8",
                        headers={"Cache-Control": "no-store"})


def freebusy_json(busy: JsonBusy, generated: int, sources: list[SourceFreshness]) -> bytes:
    """The API's answer, as ``json.dumps`` writes it: the busy time's parts as they were
    kept, and this request's ("generated", the sources' freshness)."""
    return b"".join((busy.head, b', "generated": ', _json_instant(generated),
                     b', "busy": ', busy.busy, b', "sources": ', _sources_json(tuple(sources)),
                     b"}"))


@functools.lru_cache(maxsize=16)
def _json_instant(ts: int) -> bytes:
    return json.dumps(iso(ts)).encode()


@functools.lru_cache(maxsize=64)
def _sources_json(sources: tuple[SourceFreshness, ...]) -> bytes:
    """The sources' freshness and the "stale" that follows them (the same all second long)."""
    return b"".join((json.dumps([s.as_json() for s in sources]).encode(), b', "stale": ',
                     b"true" if any(s.stale for s in sources) else b"false"))
