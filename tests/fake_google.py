"""A local fake of Google Calendar API v3 and Google's OAuth endpoints, for tests.

``FakeGoogle`` is an aiohttp application on 127.0.0.1 (a free port) that speaks
Google's wire format, so the real google-api-python-client and google-auth
can be pointed at it::

    build("calendar", "v3", credentials=Credentials(token=fake.access_token),
          static_discovery=True, cache_discovery=False,
          client_options={"api_endpoint": fake.api_endpoint})

It runs on the test's own event loop: call blocking clients (googleapiclient,
google-auth, httplib2) through ``asyncio.to_thread``. The ``fake_google``
fixture starts one per test (registered in ``tests/conftest.py``).

Modelled on https://developers.google.com/calendar/api/v3/reference:

- A recurring event is stored as Google keeps it: a master with ``recurrence``
  (RRULE/RDATE/EXDATE lines) and exceptions, each an event with ``recurringEventId``
  and ``originalStartTime`` (``put_exception``/``cancel_occurrence``). events.list
  answers masters and exceptions as they are with ``singleEvents=false`` (cancelled
  exceptions included even without ``showDeleted``), and splits each series into its
  instances with ``singleEvents=true`` (expanded by recurring-ical-events; never-ending
  series up to ``timeMax`` or ``SINGLE_EVENTS_AHEAD``).
  https://developers.google.com/calendar/api/v3/reference/events/list
  https://developers.google.com/calendar/api/guides/recurringevents
- A cancelled event is kept. Listings show it (with ``showDeleted=true``, and
  always in an incremental sync) as a minimal item: ``kind``, ``etag``, ``id``,
  ``status`` (plus ``recurringEventId``/``originalStartTime`` for an instance).
- ``pageToken`` pages are a snapshot taken at the first page; the
  ``nextSyncToken`` on the last page covers changes made after that snapshot.
- Access tokens carry scopes; every API method checks them against the
  method's scopes in the discovery document (403 ``insufficientPermissions``).
- ``insert`` keeps ``conferenceData`` only with ``conferenceDataVersion=1``, as
  Google does. Creating a Meet conference is asynchronous: the insert answers
  ``createRequest.status.statusCode = "pending"`` without entry points, and the
  event turns ``success`` (entry points, ``hangoutLink``) or ``failure`` (none) a few
  reads later (``meet_pending_reads``, ``meet_outcome``).
- ``patch`` merges the body into the event (objects field by field, arrays replaced,
  null removes), restores a cancelled event whose status it sets, and bumps
  ``sequence``/``updated``/``etag`` like any change (so the next incremental listing
  has it). Insert keeps ``attendees`` (``responseStatus`` "needsAction"). Each insert,
  patch and delete records its ``sendUpdates`` value in ``send_updates``.
- freeBusy merges overlapping/adjacent busy periods and clips them to the range.
- Watch addresses must be https, except http on loopback (recorded in
  ``insecure_addresses``). The initial "sync" message Google sends after
  ``watch`` is not sent; ``notify(calendar_id, state="sync")`` sends one on demand.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import itertools
import json
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from email.utils import format_datetime
from importlib import resources
from typing import Any
from urllib.parse import urlencode, urlsplit
from zoneinfo import ZoneInfo

import aiohttp
import pytest
import recurring_ical_events
from aiohttp import web
from icalendar import Calendar as ICalendar
from icalendar import Event as IEvent
from icalendar.parser import Contentline
from icalendar.prop import vDDDLists, vRecur

from server.kit.clock import Clock, SystemClock
from tests.local_server import LocalServer

API = "/calendar/v3"
SCOPE_PREFIX = "https://www.googleapis.com/auth/"
EVENT_ID = re.compile(r"[a-v0-9]{5,1024}")
ROLES = ("freeBusyReader", "reader", "writer", "owner")
# Filters that Google refuses to combine with syncToken.
NOT_WITH_SYNC_TOKEN = ("timeMin", "timeMax", "q", "orderBy", "updatedMin", "iCalUID")
DEFAULT_TTL = 604800
# How far singleEvents=true splits a never-ending series when the request names no
# timeMax. Google documents no bound; the fake needs one.
SINGLE_EVENTS_AHEAD = timedelta(days=730)
SEND_UPDATES = ("all", "externalOnly", "none")  # events.insert/patch/delete sendUpdates
MEET_ICON = ("https://fonts.gstatic.com/s/i/productlogos/meet_2020q4/v6/"
             "web-512dp/logo_meet_2020q4_color_2x_web_512dp.png")
FAILURES = {  # status -> (domain, reason, message) of Google's error body
    400: ("global", "badRequest", "Bad Request"),
    403: ("usageLimits", "rateLimitExceeded", "Rate Limit Exceeded"),
    429: ("usageLimits", "rateLimitExceeded", "Rate Limit Exceeded"),
    500: ("global", "backendError", "Backend Error"),
    503: ("global", "backendError", "The service is currently unavailable."),
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _method_scopes() -> dict[str, frozenset[str]]:
    """Each API method's accepted scopes, from the discovery document in the wheel."""
    path = resources.files("googleapiclient") / "discovery_cache/documents/calendar.v3.json"
    document = json.loads(path.read_text())
    return {method["id"]: frozenset(method.get("scopes", ()))
            for resource in document["resources"].values()
            for method in resource.get("methods", {}).values()}


METHOD_SCOPES = _method_scopes()
ALL_SCOPES = tuple(sorted(set().union(*METHOD_SCOPES.values())))


class GoogleError(Exception):
    """An API error, answered in Google's JSON error shape."""

    def __init__(self, status: int, message: str, reason: str, domain: str = "global",
                 **detail: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message
        self.item = {"domain": domain, "reason": reason, "message": message, **detail}

    def response(self) -> web.Response:
        body = {"error": {"errors": [self.item], "code": self.status, "message": self.message}}
        headers = {}
        if self.status == 401:
            headers["WWW-Authenticate"] = (
                'Bearer realm="https://accounts.google.com/", error="invalid_token"')
        return web.json_response(body, status=self.status, headers=headers)


def not_found() -> GoogleError:
    return GoogleError(404, "Not Found", "notFound")


def invalid(message: str, **detail: str) -> GoogleError:
    return GoogleError(400, message, "invalid", **detail)


def rfc3339(moment: datetime) -> str:
    """Google's timestamp form: UTC with milliseconds, e.g. 2026-11-25T12:00:00.000Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + \
        f"{moment.astimezone(UTC).microsecond // 1000:03d}Z"


def parse_time(value: str, parameter: str) -> datetime:
    """A timeMin/timeMax value; Google requires an offset."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise GoogleError(400, "Bad Request", "badRequest") from None
    if moment.tzinfo is None:
        raise GoogleError(400, "Bad Request", "badRequest", location=parameter)
    return moment


def event_time(moment: dict[str, Any], zone: str) -> datetime | None:
    """An event's start/end as an aware datetime (all-day dates at midnight in `zone`)."""
    try:
        if "dateTime" in moment:
            value = datetime.fromisoformat(moment["dateTime"])
            if value.tzinfo is None:
                value = value.replace(tzinfo=ZoneInfo(moment.get("timeZone") or zone))
            return value
        if "date" in moment:
            return datetime.combine(date.fromisoformat(moment["date"]), time(), ZoneInfo(zone))
    except (ValueError, KeyError, TypeError):
        return None
    return None


def is_loopback(address: str) -> bool:
    return urlsplit(address).hostname in ("127.0.0.1", "localhost", "::1")


def random_id() -> str:
    """An id in Google's base32hex alphabet."""
    return secrets.token_hex(13)


@dataclass
class Calendar:
    id: str
    summary: str
    primary: bool
    access_role: str
    time_zone: str
    events: dict[str, dict[str, Any]] = field(default_factory=dict)  # cancelled ones too
    changed: dict[str, int] = field(default_factory=dict)  # event id -> change number
    updated: str = ""


@dataclass
class Grant:
    """One user consent: a refresh token and the access tokens issued under it."""

    refresh_token: str
    scopes: tuple[str, ...]
    revoked: bool = False


@dataclass
class AccessToken:
    grant: Grant
    scopes: frozenset[str]
    expired: bool = False


@dataclass
class Page:
    """The rest of a listing, handed out page by page."""

    calendar_id: str
    items: list[dict[str, Any]]
    seq: int  # the change number the listing was taken at


class FakeGoogle(LocalServer):
    """The fake's state, its test controls and its aiohttp application."""

    client_id = "fake-client-id"
    client_secret = "fake-client-secret"
    access_token = "fake-access-token"  # preset, valid without the token endpoint
    refresh_token = "fake-refresh-token"  # preset, grants every calendar scope

    def __init__(self, clock: Clock | None = None) -> None:
        # Google's time: event stamps and channel expiry. Tests pass the clock the
        # app under test reads, so "a day before a channel expires" is the same day
        # for both. Tokens carry only expires_in, which google-auth reads against
        # the wall clock itself.
        self.clock: Clock = clock or SystemClock()
        self.max_results = 2
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.token_requests: list[dict[str, str]] = []
        self.auth_requests: list[dict[str, str]] = []
        self.requested_scopes: list[str] = []  # scopes asked for at the last /auth
        self.issued_access_tokens: list[str] = []
        self.channels: dict[str, dict[str, Any]] = {}
        self.insecure_addresses: list[str] = []
        self.deny_consent = False
        # How many events.get of a new Meet hold still answer "pending", and how the
        # conference request then ends ("success" or "failure").
        self.meet_pending_reads = 1
        self.channel_lifetime: timedelta | None = None  # None: the ttl asked for
        self.meet_outcome = "success"
        # Each events.insert, patch and delete as (method, event id, its sendUpdates query
        # value or None when absent): whom Google would have emailed about it.
        self.send_updates: list[tuple[str, str, str | None]] = []
        self._pending_conferences: dict[tuple[str, str], int] = {}
        self._calendars: dict[str, Calendar] = {}
        self._seq = 0
        self._ids = itertools.count(1)
        self._sync_tokens: dict[str, tuple[str, int]] = {}
        self._expired_sync_tokens: set[str] = set()
        self._pages: dict[str, Page] = {}
        self._codes: dict[str, dict[str, str]] = {}
        self._grants: dict[str, Grant] = {}
        self._access: dict[str, AccessToken] = {}
        self._failures: list[int] = []
        preset = Grant(self.refresh_token, ALL_SCOPES)
        self._grants[preset.refresh_token] = preset
        self._access[self.access_token] = AccessToken(preset, frozenset(ALL_SCOPES))

    # -- lifecycle ------------------------------------------------------------

    @property
    def api_endpoint(self) -> str:
        return f"{self.base_url}{API}/"

    @property
    def token_uri(self) -> str:
        return f"{self.base_url}/token"

    @property
    def auth_uri(self) -> str:
        return f"{self.base_url}/auth"

    @property
    def revoke_uri(self) -> str:
        return f"{self.base_url}/revoke"

    def client_config(self) -> dict[str, Any]:
        """An "installed" client secrets document pointing at this fake."""
        return {"installed": {
            "client_id": self.client_id, "client_secret": self.client_secret,
            "auth_uri": self.auth_uri, "token_uri": self.token_uri,
            "redirect_uris": ["http://localhost", "http://127.0.0.1"]}}

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._api_middleware])
        p = f"{API}/calendars/{{calendarId}}/events"
        app.add_routes([
            web.get(f"{API}/users/me/calendarList", self._calendar_list),
            web.get(p, self._events_list),
            web.post(p, self._events_insert),
            web.post(f"{p}/watch", self._events_watch),
            web.get(f"{p}/{{eventId}}", self._events_get),
            web.patch(f"{p}/{{eventId}}", self._events_patch),
            web.delete(f"{p}/{{eventId}}", self._events_delete),
            web.post(f"{API}/channels/stop", self._channels_stop),
            web.post(f"{API}/freeBusy", self._free_busy),
            web.get("/auth", self._auth),
            web.post("/token", self._token),
            web.post("/revoke", self._revoke),
        ])
        return app

    # -- test controls --------------------------------------------------------

    def add_calendar(self, calendar_id: str, summary: str = "", *, primary: bool = False,
                     access_role: str = "owner", time_zone: str = "UTC") -> None:
        if access_role not in ROLES:
            raise ValueError(f"unknown access role {access_role!r}")
        self._calendars[calendar_id] = Calendar(
            calendar_id, summary or calendar_id, primary, access_role, time_zone,
            updated=rfc3339(self.clock.now()))

    def put_event(self, calendar_id: str, event: dict[str, Any]) -> dict[str, Any]:
        """Insert or replace an event by its id (one is made up if missing)."""
        calendar = self._calendars[calendar_id]
        stored = copy.deepcopy(event)
        event_id = str(stored.get("id") or random_id())
        old = calendar.events.get(event_id)
        now = rfc3339(self.clock.now())
        stored.update(kind="calendar#event", id=event_id, updated=now,
                      etag=self._touch(calendar, event_id))
        stored.setdefault("status", "confirmed")
        stored["created"] = old["created"] if old else stored.get("created", now)
        stored["sequence"] = max(int(stored.get("sequence", 0)),
                                 int(old["sequence"]) + 1 if old else 0)
        stored.setdefault("iCalUID", self._ical_uid(calendar, stored))
        eid = base64.urlsafe_b64encode(f"{event_id} {calendar.id}".encode()).decode().rstrip("=")
        stored["htmlLink"] = f"https://www.google.com/calendar/event?eid={eid}"
        stored.setdefault("creator", {"email": calendar.id, "self": True})
        stored.setdefault("organizer", {"email": calendar.id, "self": True})
        stored.setdefault("reminders", {"useDefault": True})
        stored.setdefault("eventType", "default")
        calendar.events[event_id] = stored
        return copy.deepcopy(stored)

    def put_exception(self, calendar_id: str, master_id: str, original: dict[str, Any],
                      **changes: Any) -> dict[str, Any]:
        """Change one occurrence of a series: an exception event, as Google keeps it.

        Its id is the instance id (``<master>_<original start>``); it keeps the master's
        fields unless ``changes`` overrides them (``start``/``end`` to move it).
        https://developers.google.com/calendar/api/guides/recurringevents (modifying instances)
        """
        calendar = self._calendar(calendar_id)
        master = calendar.events[master_id]
        event = {k: copy.deepcopy(v) for k, v in master.items()
                 if k not in ("recurrence", "id", "etag", "created", "updated", "sequence")}
        start, end = self._instance_times(calendar, master, original)
        event.update(id=self._instance_id(master_id, original), recurringEventId=master_id,
                     originalStartTime=dict(original), start=start, end=end)
        event.update(changes)
        existing = calendar.events.get(event["id"])
        if existing is not None:
            event["created"] = existing["created"]
        return self.put_event(calendar.id, event)

    def cancel_occurrence(self, calendar_id: str, master_id: str,
                          original: dict[str, Any]) -> None:
        """Delete one occurrence of a series: a cancelled exception."""
        event_id = self._instance_id(master_id, original)
        if event_id not in self._calendars[calendar_id].events:
            self.put_exception(calendar_id, master_id, original)
        self.cancel_event(calendar_id, event_id)

    def cancel_event(self, calendar_id: str, event_id: str) -> None:
        calendar = self._calendars[calendar_id]
        stored = calendar.events[event_id]
        stored.update(status="cancelled", updated=rfc3339(self.clock.now()),
                      etag=self._touch(calendar, event_id))

    def events(self, calendar_id: str) -> list[dict[str, Any]]:
        return [copy.deepcopy(e) for e in self._calendars[calendar_id].events.values()
                if e["status"] != "cancelled"]

    def expire_sync_tokens(self, calendar_id: str | None = None) -> None:
        for token, (owner, _) in self._sync_tokens.items():
            if calendar_id is None or owner == calendar_id:
                self._expired_sync_tokens.add(token)

    def revoke_refresh_tokens(self) -> None:
        """Every grant so far is revoked: its refresh and access tokens stop working."""
        for grant in self._grants.values():
            grant.revoked = True

    def expire_access_tokens(self) -> None:
        """Access tokens issued so far answer 401 (refresh tokens still work)."""
        for access in self._access.values():
            access.expired = True

    def grant(self, scopes: list[str]) -> tuple[str, str]:
        """A new consent with these scopes, without the browser: (access, refresh) token."""
        grant = Grant("1//" + secrets.token_urlsafe(24), tuple(scopes))
        self._grants[grant.refresh_token] = grant
        return self._issue_access(grant, grant.scopes), grant.refresh_token

    def fail_next(self, count: int, status: int = 503) -> None:
        self._failures.extend([status] * count)

    async def notify(self, calendar_id: str, *, state: str = "exists") -> list[int]:
        """POST a push notification to each live channel on the calendar.

        Returns each delivery's HTTP status (0 when the address did not answer).
        """
        calendar = self._calendar(calendar_id)
        now = self.clock.now()
        statuses: list[int] = []
        async with aiohttp.ClientSession(trust_env=False) as session:
            for channel in list(self.channels.values()):
                if channel["calendarId"] != calendar.id:
                    continue
                expiration = datetime.fromtimestamp(int(channel["expiration"]) / 1000, UTC)
                if expiration <= now:
                    del self.channels[channel["id"]]
                    continue
                if not is_loopback(channel["address"]):
                    raise ValueError(f"refusing to notify non-loopback {channel['address']}")
                channel["messageNumber"] += 1
                headers = {
                    "X-Goog-Channel-ID": channel["id"],
                    "X-Goog-Resource-ID": channel["resourceId"],
                    "X-Goog-Resource-URI": channel["resourceUri"],
                    "X-Goog-Resource-State": state,
                    "X-Goog-Message-Number": str(channel["messageNumber"]),
                    "X-Goog-Channel-Expiration": format_datetime(expiration, usegmt=True),
                }
                if channel.get("token") is not None:
                    headers["X-Goog-Channel-Token"] = channel["token"]
                try:
                    async with session.post(channel["address"], headers=headers,
                                            data=b"") as response:
                        statuses.append(response.status)
                except aiohttp.ClientError:
                    statuses.append(0)
        return statuses

    # -- state helpers --------------------------------------------------------

    def _calendar(self, calendar_id: str) -> Calendar:
        if calendar_id == "primary":
            for calendar in self._calendars.values():
                if calendar.primary:
                    return calendar
        calendar = self._calendars.get(calendar_id)
        if calendar is None:
            raise not_found()
        return calendar

    def _touch(self, calendar: Calendar, event_id: str) -> str:
        """Record a change to an event; return its new etag."""
        self._seq += 1
        calendar.changed[event_id] = self._seq
        calendar.updated = rfc3339(self.clock.now())
        return f'"3{self._seq:015d}"'

    def _ical_uid(self, calendar: Calendar, event: dict[str, Any]) -> str:
        master_id = event.get("recurringEventId")
        if master_id and master_id in calendar.events:
            return str(calendar.events[master_id]["iCalUID"])
        return f"{master_id or event['id']}@google.com"

    def _issue_access(self, grant: Grant, scopes: tuple[str, ...]) -> str:
        token = "ya29." + secrets.token_urlsafe(24)
        self._access[token] = AccessToken(grant, frozenset(scopes))
        self.issued_access_tokens.append(token)
        return token

    def _issue_sync_token(self, calendar_id: str, seq: int) -> str:
        token = base64.b64encode(f"C{next(self._ids)}:{seq}".encode()).decode()
        self._sync_tokens[token] = (calendar_id, seq)
        return token

    @staticmethod
    def _listed(event: dict[str, Any]) -> dict[str, Any]:
        """An event as a listing shows it: cancelled ones reduced to the minimum."""
        if event["status"] != "cancelled":
            return copy.deepcopy(event)
        keep = ("kind", "etag", "id", "status", "recurringEventId", "originalStartTime")
        return {k: copy.deepcopy(event[k]) for k in keep if k in event}

    # -- API ------------------------------------------------------------------

    @web.middleware
    async def _api_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(API + "/"):
            return await handler(request)
        self.requests.append((request.method, request.path, dict(request.query)))
        try:
            if self._failures:
                status = self._failures.pop(0)
                domain, reason, message = FAILURES.get(status, ("global", "error", "Error"))
                raise GoogleError(status, message, reason, domain)
            self._authorize(request)
            return await handler(request)
        except GoogleError as error:
            return error.response()

    def _authorize(self, request: web.Request) -> None:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            raise GoogleError(401, "Login Required.", "required",
                              locationType="header", location="Authorization")
        access = self._access.get(header.removeprefix("Bearer ").strip())
        if access is None or access.expired or access.grant.revoked:
            raise GoogleError(401, "Invalid Credentials", "authError",
                              locationType="header", location="Authorization")
        method = getattr(request.match_info.handler, "__name__", "")
        needed = METHOD_SCOPES.get(METHOD_IDS.get(method, ""), frozenset())
        if needed and not needed & {SCOPE_PREFIX + s.rsplit("/", 1)[-1] for s in access.scopes}:
            raise GoogleError(403, "Request had insufficient authentication scopes.",
                              "insufficientPermissions")

    async def _json_body(self, request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            raise GoogleError(400, "Parse Error", "parseError") from None
        if not isinstance(body, dict):
            raise GoogleError(400, "Parse Error", "parseError")
        return body

    @staticmethod
    def _require_writer(calendar: Calendar) -> None:
        if ROLES.index(calendar.access_role) < ROLES.index("writer"):
            raise GoogleError(403, "You need to have writer access to this calendar.",
                              "requiredAccessLevel")

    async def _calendar_list(self, request: web.Request) -> web.Response:
        least = request.query.get("minAccessRole", "freeBusyReader")
        if least not in ROLES:
            raise invalid("Invalid value for minAccessRole", location="minAccessRole")
        items = []
        for calendar in self._calendars.values():
            if ROLES.index(calendar.access_role) < ROLES.index(least):
                continue
            item: dict[str, Any] = {
                "kind": "calendar#calendarListEntry", "etag": f'"{calendar.updated}"',
                "id": calendar.id, "summary": calendar.summary, "timeZone": calendar.time_zone,
                "accessRole": calendar.access_role, "defaultReminders": [],
                "conferenceProperties": {"allowedConferenceSolutionTypes": ["hangoutsMeet"]}}
            if calendar.primary:
                item["primary"] = True
            items.append(item)
        return web.json_response({"kind": "calendar#calendarList",
                                  "etag": f'"p{self._seq}"', "items": items})

    async def _events_list(self, request: web.Request) -> web.Response:
        calendar = self._calendar(request.match_info["calendarId"])
        query = request.query
        page_token = query.get("pageToken")
        if page_token:
            page = self._pages.get(page_token)
            if page is None or page.calendar_id != calendar.id:
                raise invalid("Invalid page token value.", locationType="parameter",
                              location="pageToken")
            items, seq = page.items, page.seq
        else:
            items, seq = self._select(calendar, query), self._seq
        size = self.max_results
        if "maxResults" in query:
            try:
                size = min(int(query["maxResults"]), 2500)
            except ValueError:
                raise invalid("Invalid value for maxResults", location="maxResults") from None
            if size < 1:
                raise invalid("Invalid value for maxResults", location="maxResults")
        body: dict[str, Any] = {
            "kind": "calendar#events", "etag": f'"p{seq}"', "summary": calendar.summary,
            "description": "", "updated": calendar.updated,
            "timeZone": query.get("timeZone", calendar.time_zone),
            "accessRole": calendar.access_role, "defaultReminders": [], "items": items[:size]}
        if len(items) > size:
            token = secrets.token_urlsafe(18)
            self._pages[token] = Page(calendar.id, items[size:], seq)
            body["nextPageToken"] = token
        else:
            body["nextSyncToken"] = self._issue_sync_token(calendar.id, seq)
        return web.json_response(body)

    def _select(self, calendar: Calendar, query: Any) -> list[dict[str, Any]]:
        """The items of a first page: a full listing or the changes since a sync token."""
        single = query.get("singleEvents") == "true"
        if "syncToken" in query:
            clashes = [name for name in NOT_WITH_SYNC_TOKEN if name in query]
            if clashes:
                raise invalid(f"Sync token cannot be used with {clashes[0]}.",
                              locationType="parameter", location=clashes[0])
            since = self._sync_seq(calendar, query["syncToken"])
            changed = sorted((seq, event_id) for event_id, seq in calendar.changed.items()
                             if seq > since)
            found: list[dict[str, Any]] = []
            for _, event_id in changed:
                event = calendar.events[event_id]
                if single and "recurrence" in event and event["status"] != "cancelled":
                    # A changed series comes back split, like a full listing.
                    found += self._instances(calendar, event, None, None, show_deleted=True)
                else:
                    found.append(self._listed(event))
            return found
        show_deleted = query.get("showDeleted") == "true"
        low = parse_time(query["timeMin"], "timeMin") if "timeMin" in query else None
        high = parse_time(query["timeMax"], "timeMax") if "timeMax" in query else None
        if low and high and low >= high:
            raise GoogleError(400, "The specified time range is empty.", "timeRangeEmpty",
                              "calendar", locationType="parameter", location="timeMax")
        if query.get("orderBy") == "startTime" and query.get("singleEvents") != "true":
            raise invalid("The requested ordering is not available for the particular query.",
                          locationType="parameter", location="orderBy")
        chosen = []
        for event in self._candidates(calendar, low, high, single, show_deleted):
            if event["status"] == "cancelled" and not show_deleted and not (
                    event.get("recurringEventId") and not single):
                # "If showDeleted and singleEvents are both False, single instances of
                # deleted events (but not the underlying recurring events) will still
                # be included" (events.list reference).
                continue
            if "iCalUID" in query and event.get("iCalUID") != query["iCalUID"]:
                continue
            if "recurrence" in event:
                if (low or high) and not self._instances(calendar, event, low, high,
                                                         show_deleted=False):
                    continue  # no occurrence in the range
                chosen.append((event_time(event["start"], calendar.time_zone)
                               or datetime.min.replace(tzinfo=UTC), event))
                continue
            start = event_time(event.get("start", {}), calendar.time_zone)
            end = event_time(event.get("end", {}), calendar.time_zone) or start
            if low and end and end <= low or high and start and start >= high:
                continue
            chosen.append((start or datetime.min.replace(tzinfo=UTC), event))
        if query.get("orderBy") == "startTime":
            chosen.sort(key=lambda pair: pair[0])
        return [self._listed(event) for _, event in chosen]

    def _candidates(self, calendar: Calendar, low: datetime | None, high: datetime | None,
                    single: bool, show_deleted: bool) -> list[dict[str, Any]]:
        """The events a listing looks at: as stored, or each series split into instances."""
        if not single:
            return list(calendar.events.values())
        found = []
        for event in calendar.events.values():
            if event.get("recurringEventId") and event.get("recurringEventId") in \
                    calendar.events:
                continue  # an exception takes its place among its master's instances
            if "recurrence" in event and event["status"] != "cancelled":
                found += self._instances(calendar, event, low, high, show_deleted=show_deleted)
            elif "recurrence" not in event:
                found.append(event)
        return found

    def _instances(self, calendar: Calendar, master: dict[str, Any], low: datetime | None,
                   high: datetime | None, *, show_deleted: bool) -> list[dict[str, Any]]:
        """A series split into its instances, exceptions in place of the occurrences they
        change (cancelled ones only with ``show_deleted``), as singleEvents=true answers
        (events.instances, which answers the same for one series, is not served: the
        adapter does not call it). The rule is expanded by recurring-ical-events.
        https://developers.google.com/calendar/api/v3/reference/events/list (singleEvents)
        """
        start = event_time(master["start"], calendar.time_zone)
        end = event_time(master["end"], calendar.time_zone)
        if start is None or end is None:
            return []
        first = low or start
        last = high or self.clock.now() + SINGLE_EVENTS_AHEAD
        exceptions = {self._original_key(e["originalStartTime"], calendar): e
                      for e in calendar.events.values()
                      if e.get("recurringEventId") == master["id"]}
        found: list[dict[str, Any]] = []
        for occurrence in recurring_ical_events.of(self._rule_calendar(master, calendar)) \
                .between(first - (end - start), last):
            original = self._original(master, occurrence.start)
            exception = exceptions.pop(self._original_key(original, calendar), None)
            if exception is not None:
                if exception["status"] != "cancelled" or show_deleted:
                    found.append(self._listed(exception))
                continue
            instance = {k: copy.deepcopy(v) for k, v in master.items() if k != "recurrence"}
            times = self._instance_times(calendar, master, original)
            instance.update(id=self._instance_id(master["id"], original),
                            recurringEventId=master["id"], originalStartTime=original,
                            start=times[0], end=times[1])
            found.append(instance)
        # Exceptions moved into the range from an occurrence outside it.
        for exception in exceptions.values():
            moved = event_time(exception.get("start", {}), calendar.time_zone)
            if moved and first <= moved < last and (exception["status"] != "cancelled"
                                                    or show_deleted):
                found.append(self._listed(exception))
        return found

    @staticmethod
    def _rule_calendar(master: dict[str, Any], calendar: Calendar) -> ICalendar:
        """The master as iCalendar, built with icalendar (each recurrence line parsed)."""
        zone = ZoneInfo(master["start"].get("timeZone") or calendar.time_zone)
        vevent = IEvent()
        vevent.add("UID", master["id"])
        for name in ("start", "end"):
            value = master[name]
            if "date" in value:
                vevent.add(f"DT{name.upper()}", date.fromisoformat(value["date"]))
            else:
                moment = event_time(value, calendar.time_zone)
                assert moment is not None
                vevent.add(f"DT{name.upper()}", moment.astimezone(zone))
        for line in master["recurrence"]:
            prop, params, value = Contentline(line).parts()
            if prop.upper() == "RRULE":
                vevent.add("RRULE", vRecur.from_ical(value))
            elif prop.upper() in ("RDATE", "EXDATE"):
                vevent.add(prop.upper(), vDDDLists.from_ical(value, timezone=params.get("TZID")))
        wrapper = ICalendar()
        wrapper.add_component(vevent)
        return wrapper

    @staticmethod
    def _original(master: dict[str, Any], start: date | datetime) -> dict[str, str]:
        if not isinstance(start, datetime):
            return {"date": start.isoformat()}
        zone = master["start"].get("timeZone")
        original = {"dateTime": start.isoformat()}
        if zone:
            original["timeZone"] = zone
        return original

    @staticmethod
    def _original_key(original: dict[str, Any], calendar: Calendar) -> str:
        moment = event_time(original, calendar.time_zone)
        return original.get("date") or (moment.astimezone(UTC).isoformat() if moment else "")

    @staticmethod
    def _instance_id(master_id: str, original: dict[str, Any]) -> str:
        """Google's instance ids: the master's id, "_", the original start in UTC
        (``20261201T090000Z``) or its date (``20261201``) for all-day series."""
        if "date" in original:
            return f"{master_id}_{original['date'].replace('-', '')}"
        moment = datetime.fromisoformat(original["dateTime"])
        return f"{master_id}_{moment.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}"

    @staticmethod
    def _instance_times(calendar: Calendar, master: dict[str, Any],
                        original: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
        """An occurrence's start and end: the master's length from its original start."""
        if "date" in original:
            days = date.fromisoformat(master["end"]["date"]) - \
                date.fromisoformat(master["start"]["date"])
            first = date.fromisoformat(original["date"])
            return {"date": first.isoformat()}, {"date": (first + days).isoformat()}
        start = event_time(master["start"], calendar.time_zone)
        end = event_time(master["end"], calendar.time_zone)
        assert start is not None and end is not None
        moment = datetime.fromisoformat(original["dateTime"])
        zone = master["start"].get("timeZone")
        begin = {"dateTime": moment.isoformat()}
        finish = {"dateTime": (moment + (end - start)).isoformat()}
        if zone:
            begin["timeZone"] = finish["timeZone"] = zone
        return begin, finish

    def _sync_seq(self, calendar: Calendar, token: str) -> int:
        known = self._sync_tokens.get(token)
        if known is None or known[0] != calendar.id or token in self._expired_sync_tokens:
            raise GoogleError(410, "Sync token is no longer valid, a full sync is required.",
                              "fullSyncRequired", "calendar",
                              locationType="parameter", location="syncToken")
        return known[1]

    async def _events_get(self, request: web.Request) -> web.Response:
        calendar = self._calendar(request.match_info["calendarId"])
        event = calendar.events.get(request.match_info["eventId"])
        if event is None:
            raise not_found()
        self._advance_conference(calendar, event)
        return web.json_response(copy.deepcopy(event))

    def _advance_conference(self, calendar: Calendar, event: dict[str, Any]) -> None:
        """A pending conference request resolves after ``meet_pending_reads`` reads.

        conferenceData.createRequest.status.statusCode: "pending" (still being
        processed), "success" (entry points populated), "failure" (no entry points).
        https://developers.google.com/calendar/api/v3/reference/events (conferenceData)
        """
        key = (calendar.id, event["id"])
        if key not in self._pending_conferences:
            return
        if self._pending_conferences[key] > 0:
            self._pending_conferences[key] -= 1
            return
        del self._pending_conferences[key]
        create = event["conferenceData"]["createRequest"]
        if self.meet_outcome == "success":
            made = self._made_conference(create)
            event["conferenceData"] = made
            event["hangoutLink"] = made["entryPoints"][0]["uri"]
        else:
            event["conferenceData"] = {"createRequest": {
                **create, "status": {"statusCode": "failure"}}}
        event["etag"] = self._touch(calendar, event["id"])

    async def _events_delete(self, request: web.Request) -> web.Response:
        calendar = self._calendar(request.match_info["calendarId"])
        event_id = request.match_info["eventId"]
        event = calendar.events.get(event_id)
        if event is None:
            raise not_found()
        self._require_writer(calendar)
        if event["status"] == "cancelled":
            raise GoogleError(410, "Resource has been deleted", "deleted")
        self.send_updates.append(("delete", event_id, self._send_updates_asked(request)))
        self.cancel_event(calendar.id, event_id)
        return web.Response(status=204)

    @staticmethod
    def _send_updates_asked(request: web.Request) -> str | None:
        value = request.query.get("sendUpdates")
        if value is not None and value not in SEND_UPDATES:
            raise invalid(f"Invalid value for sendUpdates: {value}", location="sendUpdates")
        return value

    async def _events_patch(self, request: web.Request) -> web.Response:
        """events.patch: "The field values you specify replace the existing values. Fields
        that you don't specify in the request remain unchanged. Array fields, if
        specified, overwrite the existing arrays" (events/patch reference); nested objects
        are merged field by field and a null removes a field (the Performance Tips page's
        patch semantics). A cancelled (deleted) event can be patched: on its organizer's
        calendar it keeps its details so that it can be restored by setting its status
        (events resource, status). Like any change it bumps ``sequence``, ``updated`` and
        ``etag`` and comes back in the next incremental listing."""
        calendar = self._calendar(request.match_info["calendarId"])
        event_id = request.match_info["eventId"]
        event = calendar.events.get(event_id)
        if event is None:
            raise not_found()
        self._require_writer(calendar)
        body = await self._json_body(request)
        if body.get("id", event_id) != event_id:
            raise invalid("Invalid resource id value.")
        for server_owned in ("id", "kind", "etag", "htmlLink", "created", "updated",
                             "iCalUID", "hangoutLink", "creator", "sequence"):
            body.pop(server_owned, None)
        conference = body.pop("conferenceData", None)
        if conference is not None and request.query.get("conferenceDataVersion", "0") == "1":
            body["conferenceData"] = self._conference(conference)
        if "attendees" in body:
            body["attendees"] = self._attendees(body["attendees"])
        merged = merge_patch(event, body)
        self._check_times(merged)
        send_updates = self._send_updates_asked(request)
        stored = self.put_event(calendar.id, merged)
        self.send_updates.append(("patch", event_id, send_updates))
        if conference is not None and (stored.get("conferenceData") or {}).get(
                "createRequest", {}).get("status", {}).get("statusCode") == "pending":
            self._pending_conferences[(calendar.id, event_id)] = self.meet_pending_reads
        return web.json_response(stored)

    @staticmethod
    def _attendees(value: Any) -> list[dict[str, Any]]:
        """Attendees as Google keeps them: each needs an email; responseStatus starts as
        needsAction (events resource, attendees[])."""
        if not isinstance(value, list):
            raise invalid("Invalid attendees value.")
        kept = []
        for attendee in value:
            if not isinstance(attendee, dict) or not isinstance(attendee.get("email"), str) \
                    or "@" not in attendee["email"]:
                raise GoogleError(400, "Invalid attendee email.", "invalid")
            kept.append({**attendee, "responseStatus": attendee.get("responseStatus",
                                                                      "needsAction")})
        return kept

    async def _events_insert(self, request: web.Request) -> web.Response:
        calendar = self._calendar(request.match_info["calendarId"])
        self._require_writer(calendar)
        body = await self._json_body(request)
        for server_owned in ("kind", "etag", "htmlLink", "created", "updated", "iCalUID",
                             "hangoutLink", "creator"):
            body.pop(server_owned, None)
        if "id" in body:
            event_id = body["id"]
            if not isinstance(event_id, str) or not EVENT_ID.fullmatch(event_id):
                raise invalid("Invalid resource id value.")
            if event_id in calendar.events:
                raise GoogleError(409, "The requested identifier already exists.", "duplicate")
        self._check_times(body)
        if "attendees" in body:
            body["attendees"] = self._attendees(body["attendees"])
        send_updates = self._send_updates_asked(request)
        conference = body.pop("conferenceData", None)
        if conference and request.query.get("conferenceDataVersion", "0") == "1":
            body["conferenceData"] = self._conference(conference)
            for entry in body["conferenceData"].get("entryPoints", []):
                if entry.get("entryPointType") == "video":
                    body["hangoutLink"] = entry["uri"]
        stored = self.put_event(calendar.id, body)
        self.send_updates.append(("insert", stored["id"], send_updates))
        if (stored.get("conferenceData") or {}).get("createRequest"):
            # The insert answers "pending"; the conference is made afterwards.
            # https://developers.google.com/calendar/api/guides/create-events#conferencing
            self._pending_conferences[(calendar.id, stored["id"])] = self.meet_pending_reads
        return web.json_response(stored)

    @staticmethod
    def _check_times(body: dict[str, Any]) -> None:
        start, end = body.get("start"), body.get("end")
        if not isinstance(start, dict) or not ("date" in start or "dateTime" in start):
            raise GoogleError(400, "Missing start time.", "required")
        if not isinstance(end, dict) or not ("date" in end or "dateTime" in end):
            raise GoogleError(400, "Missing end time.", "required")
        if ("date" in start) != ("date" in end):
            raise invalid("Start and end times must either both be date or both be dateTime.")

    @staticmethod
    def _conference(conference: dict[str, Any]) -> dict[str, Any]:
        create = conference.get("createRequest")
        if not isinstance(create, dict):
            return conference  # an existing conference, kept as given
        kind = (create.get("conferenceSolutionKey") or {}).get("type")
        if kind != "hangoutsMeet":
            raise invalid("Invalid conference type value.")
        if not create.get("requestId"):
            raise invalid("Invalid conference create request.")
        return {"createRequest": {**create, "status": {"statusCode": "pending"}}}

    @staticmethod
    def _made_conference(create: dict[str, Any]) -> dict[str, Any]:
        letters = "abcdefghijklmnopqrstuvwxyz"
        code = "-".join("".join(secrets.choice(letters) for _ in range(n)) for n in (3, 4, 3))
        return {
            "createRequest": {**create, "status": {"statusCode": "success"}},
            "entryPoints": [{"entryPointType": "video", "uri": f"https://meet.google.com/{code}",
                             "label": f"meet.google.com/{code}"}],
            "conferenceSolution": {"key": {"type": "hangoutsMeet"}, "name": "Google Meet",
                                   "iconUri": MEET_ICON},
            "conferenceId": code,
        }

    async def _events_watch(self, request: web.Request) -> web.Response:
        calendar = self._calendar(request.match_info["calendarId"])
        body = await self._json_body(request)
        channel_id, address = body.get("id"), body.get("address")
        if not channel_id or not isinstance(channel_id, str):
            raise GoogleError(400, "Required", "required", location="id")
        if body.get("type") not in ("web_hook", "webhook"):
            raise invalid(f"Unknown channel type: {body.get('type')}")
        if not address or not isinstance(address, str):
            raise GoogleError(400, "Required", "required", location="address")
        if channel_id in self.channels:
            raise GoogleError(400, f"Channel id {channel_id} not unique", "channelIdNotUnique",
                              "push")
        if urlsplit(address).scheme != "https":
            if not (urlsplit(address).scheme == "http" and is_loopback(address)):
                raise GoogleError(400, f"WebHook callback must be HTTPS: {address}",
                                  "push.webhookUrlNotHttps", "global")
            self.insecure_addresses.append(address)
        # params.ttl: the channel's time to live in seconds, 604800 (a week) by default;
        # the answer's expiration is when Google stops sending, which the caller must
        # read rather than assume (``channel_lifetime`` answers a shorter one).
        # https://developers.google.com/calendar/api/v3/reference/events/watch
        # https://developers.google.com/calendar/api/guides/push (renewing channels)
        ttl = timedelta(seconds=int((body.get("params") or {}).get("ttl", DEFAULT_TTL)))
        if self.channel_lifetime is not None:
            ttl = min(ttl, self.channel_lifetime)
        expiration = int((self.clock.now() + ttl).timestamp() * 1000)
        response: dict[str, Any] = {
            "kind": "api#channel", "id": channel_id,
            "resourceId": hashlib.sha1(calendar.id.encode()).hexdigest()[:27],
            "resourceUri": f"{self.api_endpoint}calendars/{calendar.id}/events?alt=json",
            "expiration": str(expiration)}
        if body.get("token") is not None:
            response["token"] = body["token"]
        self.channels[channel_id] = {**response, "address": address, "type": body["type"],
                                     "params": body.get("params") or {},
                                     "calendarId": calendar.id, "messageNumber": 0}
        return web.json_response(response)

    async def _channels_stop(self, request: web.Request) -> web.Response:
        body = await self._json_body(request)
        channel = self.channels.get(str(body.get("id")))
        if channel is None or channel["resourceId"] != body.get("resourceId"):
            raise GoogleError(404, f"Channel '{body.get('id')}' not found for project "
                              "'fake-project'", "notFound")
        del self.channels[channel["id"]]
        return web.Response(status=204)

    async def _free_busy(self, request: web.Request) -> web.Response:
        body = await self._json_body(request)
        for name in ("timeMin", "timeMax"):
            if not isinstance(body.get(name), str):
                raise GoogleError(400, f"Missing {name} parameter.", "required", location=name)
        low, high = parse_time(body["timeMin"], "timeMin"), parse_time(body["timeMax"], "timeMax")
        if low >= high:
            raise GoogleError(400, "The specified time range is empty.", "timeRangeEmpty",
                              "calendar", locationType="parameter", location="timeMax")
        calendars: dict[str, Any] = {}
        for item in body.get("items") or []:
            wanted = str(item.get("id"))
            try:
                calendar = self._calendar(wanted)
            except GoogleError:
                calendars[wanted] = {"errors": [{"domain": "global", "reason": "notFound"}],
                                     "busy": []}
                continue
            calendars[wanted] = {"busy": self._busy(calendar, low, high)}
        return web.json_response({"kind": "calendar#freeBusy", "timeMin": rfc3339(low),
                                  "timeMax": rfc3339(high), "calendars": calendars})

    @staticmethod
    def _busy(calendar: Calendar, low: datetime, high: datetime) -> list[dict[str, str]]:
        spans: list[tuple[datetime, datetime]] = []
        for event in calendar.events.values():
            if event["status"] == "cancelled" or event.get("transparency") == "transparent":
                continue
            if any(a.get("self") and a.get("responseStatus") == "declined"
                   for a in event.get("attendees", [])):
                continue
            start = event_time(event.get("start", {}), calendar.time_zone)
            end = event_time(event.get("end", {}), calendar.time_zone)
            if start and end and start < high and end > low:
                spans.append((max(start, low), min(end, high)))
        merged: list[list[datetime]] = []
        for start, end in sorted(spans):
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        form = "%Y-%m-%dT%H:%M:%SZ"
        return [{"start": s.astimezone(UTC).strftime(form), "end": e.astimezone(UTC).strftime(form)}
                for s, e in merged]

    # -- OAuth ----------------------------------------------------------------

    async def _auth(self, request: web.Request) -> web.Response:
        """Installed-app consent, granted at once: 302 back to redirect_uri with a code."""
        query = dict(request.query)
        self.auth_requests.append(query)
        if query.get("client_id") != self.client_id:
            return web.Response(status=401, text="Error 401: invalid_client")
        redirect_uri = query.get("redirect_uri")
        if not redirect_uri or query.get("response_type") != "code":
            return web.Response(status=400, text="Error 400: invalid_request")
        self.requested_scopes = query.get("scope", "").split()
        answer = {"state": query["state"]} if "state" in query else {}
        if self.deny_consent:
            answer["error"] = "access_denied"
        else:
            code = "4/" + secrets.token_urlsafe(24)
            self._codes[code] = query
            answer.update(code=code, scope=" ".join(self.requested_scopes))
        separator = "&" if "?" in redirect_uri else "?"
        raise web.HTTPFound(f"{redirect_uri}{separator}{urlencode(answer)}")

    async def _token(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.token_requests.append(form)
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        basic = request.headers.get("Authorization", "")
        if basic.startswith("Basic "):
            client_id, _, client_secret = base64.b64decode(basic[6:]).decode().partition(":")
        if client_id != self.client_id or client_secret != self.client_secret:
            return oauth_error(401, "invalid_client", "Unauthorized")
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            return self._exchange_code(form)
        if grant_type == "refresh_token":
            return self._refresh(form)
        return oauth_error(400, "unsupported_grant_type", f"Invalid grant_type: {grant_type}")

    def _exchange_code(self, form: dict[str, str]) -> web.Response:
        asked = self._codes.pop(form.get("code", ""), None)
        if asked is None:
            return oauth_error(400, "invalid_grant", "Malformed auth code.")
        if form.get("redirect_uri") != asked["redirect_uri"]:
            return oauth_error(400, "redirect_uri_mismatch", "Bad Request")
        if "code_challenge" in asked:
            verifier = form.get("code_verifier", "")
            digest = hashlib.sha256(verifier.encode()).digest()
            expected = (base64.urlsafe_b64encode(digest).decode().rstrip("=")
                        if asked.get("code_challenge_method") == "S256" else verifier)
            if expected != asked["code_challenge"]:
                return oauth_error(400, "invalid_grant", "Invalid code verifier.")
        access, refresh = self.grant(asked.get("scope", "").split())
        grant = self._grants[refresh]
        return web.json_response({
            "access_token": access, "expires_in": 3599, "refresh_token": refresh,
            "scope": " ".join(grant.scopes), "token_type": "Bearer"})

    def _refresh(self, form: dict[str, str]) -> web.Response:
        grant = self._grants.get(form.get("refresh_token", ""))
        if grant is None or grant.revoked:
            return oauth_error(400, "invalid_grant", "Token has been expired or revoked.")
        scopes = tuple(form["scope"].split()) if form.get("scope") else grant.scopes
        if not set(scopes) <= set(grant.scopes):
            return oauth_error(400, "invalid_scope", "Bad Request")
        return web.json_response({
            "access_token": self._issue_access(grant, scopes), "expires_in": 3599,
            "scope": " ".join(scopes), "token_type": "Bearer"})

    async def _revoke(self, request: web.Request) -> web.Response:
        form = await request.post()
        token = str(request.query.get("token") or form.get("token") or "")
        grant = self._grants.get(token) or (self._access[token].grant
                                            if token in self._access else None)
        if grant is None or grant.revoked:
            return oauth_error(400, "invalid_token", "Token expired or revoked")
        grant.revoked = True
        return web.json_response({})


def merge_patch(stored: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """``stored`` with ``patch`` applied: objects merged field by field, anything else
    (arrays included) replaced, a null removing the field."""
    merged = copy.deepcopy(stored)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_patch(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def oauth_error(status: int, error: str, description: str) -> web.Response:
    return web.json_response({"error": error, "error_description": description}, status=status)


# Handler name -> API method id, for the scope check.
METHOD_IDS = {
    "_calendar_list": "calendar.calendarList.list",
    "_events_list": "calendar.events.list",
    "_events_get": "calendar.events.get",
    "_events_insert": "calendar.events.insert",
    "_events_patch": "calendar.events.patch",
    "_events_delete": "calendar.events.delete",
    "_events_watch": "calendar.events.watch",
    "_channels_stop": "calendar.channels.stop",
    "_free_busy": "calendar.freebusy.query",
}


@pytest.fixture
async def fake_google(clock: Clock) -> AsyncIterator[FakeGoogle]:
    """A started FakeGoogle on 127.0.0.1 on the test's clock, stopped after the test."""
    fake = FakeGoogle(clock)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.close()
