"""Microsoft 365 / Outlook sources: msal for tokens, Microsoft Graph over aiohttp.

Each calendar is synced with ``calendarView/delta`` over a window of one day
back to the horizon: the first round lists the window page by page, the
deltaLink it ends with is stored verbatim and fetched next round for just the
changes. The window moves forward once a day, which starts a new delta round
over the new window (its items replace the calendar's). A calendar other than
the default one whose delta Graph refuses (the v1.0 reference documents delta
only on the default calendar's view) is listed in full each round instead.

Tokens: signed in with `fbproxy auth microsoft` (device code), msal keeps its
cache in a ``TokenVault`` (``token_cache_file``, 0600, with one server; the
shared database with several) and refreshes silently; with a client secret the
app reads one user's calendars on its own (client credentials). The cache is
read before each token request and written back whenever msal changed it, so
a refresh made by one instance is what the others start from. msal is
blocking, so it runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from time import monotonic
from typing import Any, TypeGuard
from urllib.parse import quote, urlsplit, urlunsplit

import aiohttp
import msal
import requests
from icalendar import Calendar, Event

from adapters.base import (
    HOLD_MARKER,
    UNREADABLE_ITEM,
    AccessDenied,
    AdapterError,
    AuthExpired,
    BadUpstreamData,
    Capabilities,
    ChangeSet,
    Hold,
    HoldRef,
    Item,
    SkippedItem,
    SyncState,
    TokenVault,
    UpstreamUnavailable,
    kind_of,
    page_entries,
)
from adapters.secrets_file import FileTokenVault, write_private

log = logging.getLogger("fbproxy.microsoft")

READ_SCOPES = ["Calendars.Read"]
READ, WRITE = "Calendars.Read", "Calendars.ReadWrite"  # what a request needs
WRITE_SCOPES = ["Calendars.ReadWrite"]
APP_SCOPES = ["https://graph.microsoft.com/.default"]
PAGE_SIZE = 100
# The most delta pages one calendar may take in one round (250,000 events at
# PAGE_SIZE): an upstream that never ends its pages fails the round instead.
MAX_PAGES = 2500
THROTTLE_RETRIES = 2  # honour Retry-After this often per request, then give up for the round
MAX_RETRY_AFTER = 30.0
# Holds carry this prefix in transactionId, so they are known when they sync back.
TRANSACTION_PREFIX = "fbproxy-"
# ... and the booking id in this single-value extended property of our own, which a retry
# looks up before it creates anything (Graph does not document what a create retried
# with the same transactionId answers).
BOOKING_PROPERTY = "String {5b0e8f4c-2d1a-4c7e-9f36-8a4d2e71c0b9} Name fbproxyBooking"
TEAMS = "teams"  # a hold location asking Graph for a Teams meeting
# What a cancelled hold's attendees read with Graph's cancellation message.
CANCEL_COMMENT = "This booking was cancelled."
_NOT_BUSY = {"free", "workingElsewhere"}
_RESYNC_CODES = {"syncStateNotFound", "resyncRequired", "syncStateInvalid"}
_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep  # tests swap it to not wait
# What Graph may answer a path it does not serve (a function not bound there).
_NO_SUCH_PATH = (400, 404, 405, 501)


class _DeltaRefused(Exception):
    """Graph refused calendarView/delta on a calendar other than the default one."""

    def __init__(self, status: int, payload: Any) -> None:
        super().__init__(f"{status} {_error(payload)}")


@dataclass(frozen=True)
class MicrosoftSettings:
    tenant: str
    client_id: str
    token_cache_file: Path
    client_secret: str | None = None
    user: str | None = None
    calendars: tuple[str, ...] = ()  # calendar ids; () = the default calendar
    hold_calendar: str | None = None
    graph_url: str = "https://graph.microsoft.com/v1.0"
    login_url: str = "https://login.microsoftonline.com"
    timeout_seconds: float = 30.0
    horizon_days: int = 120

    @property
    def resource(self) -> str:
        """Whose calendars: the signed-in account, or one user with app-only access."""
        return f"users/{quote(self.user, safe='@')}" if self.client_secret and self.user else "me"


def scopes_for(holds: bool) -> list[str]:
    return list(WRITE_SCOPES if holds else READ_SCOPES)


class LoopbackLogin(requests.Session):
    """msal's HTTP client when ``login_url`` points at a local server (tests only).

    msal insists on an https authority on Microsoft's host; this session keeps
    that authority and sends each request to ``login_url`` instead.
    """

    def __init__(self, login_url: str) -> None:
        super().__init__()
        self.trust_env = False
        self._target = urlsplit(login_url)

    def request(self, method: str | bytes, url: str | bytes, *args: Any,
                **kwargs: Any) -> requests.Response:
        target = url if isinstance(url, str) else url.decode()
        parts = urlsplit(target)
        if parts.hostname == "login.microsoftonline.com":
            target = urlunsplit((self._target.scheme, self._target.netloc, parts.path,
                                 parts.query, parts.fragment))
        verb = method if isinstance(method, str) else method.decode()
        return super().request(verb, target, *args, **kwargs)


def msal_app(settings: MicrosoftSettings,
             cache: msal.SerializableTokenCache) -> msal.ClientApplication:
    """The msal application for these settings (public, or confidential with a secret)."""
    authority = f"https://login.microsoftonline.com/{settings.tenant}"
    extra: dict[str, Any] = {}
    if urlsplit(settings.login_url).hostname != "login.microsoftonline.com":
        extra = {"http_client": LoopbackLogin(settings.login_url), "instance_discovery": False}
    if settings.client_secret:
        return msal.ConfidentialClientApplication(
            settings.client_id, client_credential=settings.client_secret, authority=authority,
            token_cache=cache, **extra)
    return msal.PublicClientApplication(settings.client_id, authority=authority,
                                        token_cache=cache, **extra)


def load_cache(path: Path) -> msal.SerializableTokenCache:
    cache = msal.SerializableTokenCache()
    if path.exists():
        cache.deserialize(path.read_text(encoding="utf-8"))
    return cache


def save_cache(path: Path, cache: msal.SerializableTokenCache) -> None:
    """Write the token cache 0600, atomically."""
    write_private(path, cache.serialize())


class MicrosoftAdapter:
    """Keeps the calendars of one Microsoft 365 account in sync, and writes holds there."""

    capabilities = Capabilities(incremental=True, push=True, holds=True)

    def __init__(self, name: str, settings: MicrosoftSettings, *, session: aiohttp.ClientSession,
                 executor: Executor | None, clock: Callable[[], datetime],
                 tokens: TokenVault | None = None, cpu: Executor | None = None) -> None:
        self.name = name
        self.settings = settings
        self._session = session
        self._executor = executor  # msal's blocking calls
        # Where events become iCalendar items (CPU work, off the event loop): the
        # server's expansion worker processes; None: the loop's default threads.
        self._cpu = cpu
        self._now = clock
        self._tokens: TokenVault = tokens or FileTokenVault(settings.token_cache_file)
        self._token: tuple[str, float] | None = None  # (access token, expires at)
        # One token request at a time: concurrent callers wait for it, then use its token.
        self._token_lock = asyncio.Lock()
        # The delegated scopes the signed-in account consented to (None: not known, or
        # app-only), to name the missing one when Graph answers 403.
        self._granted: frozenset[str] | None = None

    async def close(self) -> None:
        self._token = None

    # -- tokens ---------------------------------------------------------------------

    async def _access_token(self, *, force: bool = False) -> str:
        """A valid access token; ``force`` after Graph refused the cached one (401)."""
        loop = asyncio.get_running_loop()
        if not force and self._token is not None and self._token[1] > loop.time() + 300:
            return self._token[0]
        async with self._token_lock:
            if not force and self._token is not None and self._token[1] > loop.time() + 300:
                return self._token[0]  # fetched while this call waited
            # App-only tokens are cheap to get again; a forced one skips the cache.
            app_only = bool(self.settings.client_secret)
            cached = None if app_only and force else await self._read_cache()
            result, changed = await loop.run_in_executor(
                self._executor, self._acquire_blocking, force, cached)
            if changed is not None:
                await self._tokens.save(changed)
            if not result or "access_token" not in result:
                detail = (result or {}).get("error_description") or \
                    (result or {}).get("error") or "no usable token in the cache"
                raise self._reauth(str(detail).splitlines()[0])
            self._token = (str(result["access_token"]),
                           loop.time() + float(result.get("expires_in", 3600)))
            return self._token[0]

    async def _read_cache(self) -> str | None:
        try:
            return await self._tokens.load()
        except (OSError, ValueError) as exc:
            raise self._reauth(f"cannot read {self._tokens.where}: {exc}") from exc

    def _acquire_blocking(self, force: bool, cached: str | None,
                          ) -> tuple[Mapping[str, Any] | None, str | None]:
        """msal's answer, and the cache to store if msal changed it (else None)."""
        cache = msal.SerializableTokenCache()
        if cached:
            try:
                cache.deserialize(cached)
            except ValueError as exc:
                raise self._reauth(f"cannot read {self._tokens.where} "
                                   f"({type(exc).__name__})") from None
        app = msal_app(self.settings, cache)
        try:
            if isinstance(app, msal.ConfidentialClientApplication):
                result = app.acquire_token_for_client(scopes=APP_SCOPES)
            else:
                accounts = app.get_accounts()
                if not accounts:
                    raise self._reauth("not signed in yet")
                result = app.acquire_token_silent(_cached_scopes(cache), account=accounts[0],
                                                  force_refresh=force)
                self._granted = _granted_scopes(cache)
        except (requests.RequestException, OSError) as exc:
            raise UpstreamUnavailable(f"cannot reach Microsoft's sign-in: {exc}",
                                      source=self.name) from exc
        return result, cache.serialize() if cache.has_state_changed else None

    def _forbidden(self, payload: Any, need: str, what: str) -> AdapterError:
        """Graph's 403: the token is valid (an expired one is 401), but it may not do this.

        A sign-in that lacks the permission needs signing in again with it: that is
        AuthExpired naming the permission, as for Google's insufficientPermissions.
        An account that has it, or an app, is refused by the calendar's sharing or
        an access policy: AccessDenied, where signing in again would not help.
        """
        why = f"Graph refused access to {what} (403 {_error(payload)})"
        if self.settings.client_secret:
            return AccessDenied(
                f"{why}: the app needs the application permission {need} with admin consent "
                "in Entra ID, and an application access policy must not exclude "
                f"{self.settings.user or 'the user'}", source=self.name)
        granted = self._granted
        if granted is not None and not _covers(granted, need):
            have = ", ".join(sorted(granted)) or "none"
            return AuthExpired(
                f"{why}: the sign-in lacks the {need} permission (it has: {have}); sign in "
                f"again with `fbproxy auth microsoft --source {self.name}`, which asks for "
                f"{WRITE} when a booking page puts holds on this source", source=self.name)
        return AccessDenied(
            f"{why}: the account has the {need} permission, so the calendar is not its own "
            "or not shared with it (with write access for holds)", source=self.name)

    def _reauth(self, why: str) -> AuthExpired:
        self._token = None
        return AuthExpired(f"{why}; run `fbproxy auth microsoft --source {self.name}`",
                           source=self.name)

    # -- Graph ----------------------------------------------------------------------

    async def _graph(self, method: str, url: str, *, params: Mapping[str, str] | None = None,
                     body: Mapping[str, Any] | None = None, need: str = READ,
                     what: str = "the calendar") -> tuple[int, Any]:
        """One Graph request; 429/503 wait for Retry-After a few times; 401 -> re-auth;
        403 -> a permission problem on ``what``, which needs the ``need`` scope."""
        if not url.startswith(("http://", "https://")):
            url = f"{self.settings.graph_url}/{url}"
        refused = False
        # Waiting out a Retry-After must not hold the round past the source's timeout.
        deadline = monotonic() + self.settings.timeout_seconds
        for attempt in range(THROTTLE_RETRIES + 1):
            token = await self._access_token(force=refused)
            headers = {"Authorization": f"Bearer {token}",
                       "Prefer": f'odata.maxpagesize={PAGE_SIZE}, outlook.timezone="UTC"'}
            try:
                async with self._session.request(
                        method, url, params=params, json=body, headers=headers,
                        timeout=aiohttp.ClientTimeout(total=self.settings.timeout_seconds),
                        ) as response:
                    status = response.status
                    retry_after = response.headers.get("Retry-After", "")
                    unreadable = ""  # why a body could not be read at all
                    try:
                        text = await response.text()
                    except UnicodeDecodeError:
                        text, unreadable = "", "a body that is not text in its charset"
            except TimeoutError as exc:  # its message is empty
                raise UpstreamUnavailable(
                    f"cannot reach Microsoft Graph: timed out after "
                    f"{self.settings.timeout_seconds:g} s", source=self.name) from exc
            except aiohttp.ClientError as exc:
                raise UpstreamUnavailable(f"cannot reach Microsoft Graph: {exc}",
                                          source=self.name) from exc
            payload: Any = None
            if text:
                try:
                    payload = json.loads(text)
                except ValueError:
                    payload = None
                except RecursionError:
                    unreadable = "JSON nested too deeply"
            if status == 401:
                self._token = None
                if not refused:
                    refused = True
                    continue  # one freshly refreshed token, then it is the account's problem
                raise self._reauth(f"Graph refused the token: {_error(payload)}")
            if status == 403:
                raise self._forbidden(payload, need, what)
            if status in (429, 503) and attempt < THROTTLE_RETRIES:
                wait = min(_seconds(retry_after), MAX_RETRY_AFTER)
                if monotonic() + wait < deadline:
                    await _sleep(wait)
                    continue
            if status in (429, 500, 502, 503, 504):
                after = f" (Retry-After: {retry_after})" if retry_after else ""
                raise UpstreamUnavailable(f"Graph answered {status}: {_error(payload)}{after}",
                                          source=self.name)
            if unreadable:
                raise BadUpstreamData(f"Graph answered {status} with {unreadable}",
                                      source=self.name)
            return status, payload
        raise UpstreamUnavailable("Graph kept refusing the token", source=self.name)

    # -- sync -----------------------------------------------------------------------

    async def sync(self, state: SyncState) -> ChangeSet:
        previous = state.get("calendars", {})
        known: dict[str, Any] = dict(previous) if isinstance(previous, Mapping) else {}
        window = self._window()
        calendars: dict[str, Any] = {}
        upserted: list[Item] = []
        deleted: list[str] = []
        skipped: list[SkippedItem] = []
        full_scopes: list[str] = []
        requests_made = 0
        for calendar_id in self.settings.calendars or ("",):
            stored = known.get(calendar_id or "default")
            link = None
            # A link is only good for the same window and the same account/user.
            if isinstance(stored, Mapping) and stored.get("window_start") == window[0] \
                    and stored.get("resource") == self.settings.resource:
                link = stored.get("delta_link")
                if not _is_link(link, self.settings.graph_url):
                    link = None  # a state that is not ours (hand-edited, older): list again
            scope = _prefix(calendar_id)
            listing = isinstance(stored, Mapping) and stored.get("listing") is True \
                and stored.get("window_start") == window[0] \
                and stored.get("resource") == self.settings.resource
            items, next_link, made, full = await self._changes(calendar_id, window, link,
                                                                listing)
            requests_made += made
            if full:
                full_scopes.append(scope)
            if items:
                read = await asyncio.get_running_loop().run_in_executor(
                    self._cpu, read_events, scope, items)
                upserted += read[0]
                deleted += read[1]
                skipped += read[2]
            calendars[calendar_id or "default"] = {
                "delta_link": next_link, "listing": next_link is None,
                "window_start": window[0], "resource": self.settings.resource}
        unchanged = not upserted and not deleted and not full_scopes
        return ChangeSet(state={"calendars": calendars}, upserted=tuple(upserted),
                         deleted=tuple(deleted), skipped=tuple(skipped),
                         full_scopes=tuple(full_scopes), unchanged=unchanged,
                         requests=requests_made, fetched=len(upserted) + len(deleted))

    def _window(self) -> tuple[str, str]:
        """One day back to the horizon, on whole days: it moves once a day."""
        today = self._now().astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        start = today - timedelta(days=1)
        end = today + timedelta(days=self.settings.horizon_days + 1)
        return _iso(start), _iso(end)

    async def _changes(self, calendar_id: str, window: tuple[str, str], link: str | None,
                       listing: bool) -> tuple[list[Mapping[str, Any]], str | None, int, bool]:
        """One calendar's round: its items, the deltaLink for the next one (None when
        listed in full instead), the requests made, and whether the items are all of it."""
        if listing:  # delta was refused on this calendar earlier in this window
            items, made = await self._listing(calendar_id, window)
            return items, None, made, True
        try:
            result = await self._delta(calendar_id, window, link)
            if result is None:  # the delta state expired upstream: list the window again
                link = None
                result = await self._delta(calendar_id, window, None)
                assert result is not None
            return (*result, link is None)
        except _DeltaRefused as refused:
            # Documented for the default calendar only (v1.0 event: delta reference): a
            # full listing each round is slower but never misses a change.
            log.warning("source %s: Graph refused calendarView/delta on calendar %r (%s); "
                        "listing its window in full each round instead", self.name,
                        calendar_id, refused)
            items, made = await self._listing(calendar_id, window)
            return items, None, made + 1, True

    async def _listing(self, calendar_id: str, window: tuple[str, str],
                       ) -> tuple[list[Mapping[str, Any]], int]:
        """Every page of the calendar's calendarView over the window (no delta)."""
        url = f"{self.settings.resource}/calendars/{quote(calendar_id, safe='')}/calendarView"
        params: dict[str, str] | None = {"startDateTime": window[0], "endDateTime": window[1]}
        items: list[Mapping[str, Any]] = []
        seen_links = {url}
        for made in range(1, MAX_PAGES + 1):
            status, payload = await self._graph("GET", url, params=params,
                                                what=f"calendar {calendar_id!r}")
            if status == 404:
                raise BadUpstreamData(f"calendar {calendar_id!r} does not exist or is not "
                                      "shared with this account", source=self.name)
            if status != 200 or not isinstance(payload, Mapping):
                raise BadUpstreamData(f"calendarView of calendar {calendar_id!r} answered "
                                      f"{status}: {_error(payload)}", source=self.name)
            items += page_entries(payload, "value", "calendarView", self.name)
            params = None
            next_page = self._next_link(payload, seen_links, "calendarView")
            if next_page is None:
                return items, made
            url = next_page
        raise BadUpstreamData(f"calendarView of calendar {calendar_id!r} went on for more "
                              f"than {MAX_PAGES} pages", source=self.name)

    def _next_link(self, payload: Mapping[str, Any], seen: set[str], what: str) -> str | None:
        """A page's @odata.nextLink, if any, once it is known to lead somewhere new on Graph."""
        next_page = payload.get("@odata.nextLink")
        if next_page is None:
            return None
        if not _is_link(next_page, self.settings.graph_url):
            raise BadUpstreamData(f"a {what} page's @odata.nextLink is not a URL on "
                                  f"{self.settings.graph_url}: {_shown(next_page)}",
                                  source=self.name)
        if next_page in seen:
            raise BadUpstreamData(f"{what} answered an @odata.nextLink it had answered "
                                  "before: its pages would never end", source=self.name)
        seen.add(next_page)
        return next_page

    async def _delta(self, calendar_id: str, window: tuple[str, str], link: str | None,
                     ) -> tuple[list[Mapping[str, Any]], str, int] | None:
        """Every page of one delta round; None when the stored link is no longer valid."""
        base = f"{self.settings.resource}/calendars/{quote(calendar_id, safe='')}" \
            if calendar_id else self.settings.resource
        url: str = link or f"{base}/calendarView/delta"
        params = None if link else {"startDateTime": window[0], "endDateTime": window[1]}
        items: list[Mapping[str, Any]] = []
        made = 0
        seen_links = {url}
        while True:
            if made >= MAX_PAGES:
                raise BadUpstreamData(f"calendarView/delta of calendar "
                                      f"{calendar_id or 'default'!r} went on for more than "
                                      f"{MAX_PAGES} pages", source=self.name)
            status, payload = await self._graph("GET", url, params=params,
                                                what=f"calendar {calendar_id or 'default'!r}")
            made += 1
            if status == 410 or (status in (400, 404) and _code(payload) in _RESYNC_CODES):
                if link is None:
                    raise BadUpstreamData(f"Graph refused a fresh delta round: {status} "
                                          f"{_error(payload)}", source=self.name)
                return None
            if calendar_id and link is None and made == 1 and status in _NO_SUCH_PATH:
                raise _DeltaRefused(status, payload)  # _listing tells a missing calendar
            if status == 404:
                raise BadUpstreamData(f"calendar {calendar_id or 'default'!r} does not exist "
                                      "or is not shared with this account", source=self.name)
            if status != 200 or not isinstance(payload, Mapping):
                raise BadUpstreamData(f"calendarView/delta answered {status}: "
                                      f"{_error(payload)}", source=self.name)
            items += page_entries(payload, "value", "calendarView/delta", self.name)
            params = None
            next_page = self._next_link(payload, seen_links, "calendarView/delta")
            if next_page is not None:
                url = next_page
                continue
            delta = payload.get("@odata.deltaLink")
            if not _is_link(delta, self.settings.graph_url):
                raise BadUpstreamData(f"a delta round ended without a usable @odata.deltaLink "
                                      f"(a URL on {self.settings.graph_url}): {_shown(delta)}",
                                      source=self.name)
            return items, delta, made

    # -- push -----------------------------------------------------------------------

    max_channel = timedelta(minutes=4230)  # Graph's longest subscription on events

    async def watch(self, calendar_id: str, *, token: str, address: str,
                    ttl_seconds: int) -> tuple[str, str, int]:
        """A Graph subscription on the calendar's events (Graph checks ``address`` first)."""
        resource = f"{self.settings.resource}/calendars/{quote(calendar_id, safe='')}/events" \
            if calendar_id else f"{self.settings.resource}/events"
        expires = self._now().astimezone(UTC) + timedelta(seconds=ttl_seconds - 60)
        status, payload = await self._graph("POST", "subscriptions", body={
            "changeType": "created,updated,deleted", "notificationUrl": address,
            "resource": resource, "expirationDateTime": _iso(expires), "clientState": token})
        if status != 201 or not isinstance(payload, Mapping) or "id" not in payload:
            raise AdapterError(f"the subscription was refused ({status}): {_error(payload)}",
                               source=self.name)
        answered = str(payload.get("expirationDateTime") or _iso(expires))
        expiry = datetime.fromisoformat(answered.replace("Z", "+00:00").split(".")[0])
        if expiry.tzinfo is None:
            expiry = expiry.replace(tzinfo=UTC)
        return str(payload["id"]), resource, int(expiry.timestamp())

    async def stop_channel(self, channel_id: str, resource_id: str) -> None:
        status, payload = await self._graph("DELETE", f"subscriptions/{quote(channel_id)}")
        if status not in (200, 204, 404):
            raise AdapterError(f"deleting the subscription answered {status}: "
                               f"{_error(payload)}", source=self.name)

    # -- holds ----------------------------------------------------------------------

    async def write_hold(self, hold: Hold) -> HoldRef:
        calendar_id = hold.calendar or self.settings.hold_calendar
        resource = self.settings.resource
        # A write can reach Graph and lose its answer; this adapter cannot tell a first
        # try from that retry, so it always looks first (one GET per booking).
        existing = await self._find_hold(hold.booking_id)
        if existing is not None:
            return self._hold_ref(hold.booking_id, existing)
        url = f"{resource}/calendars/{quote(calendar_id, safe='')}/events" if calendar_id \
            else f"{resource}/events"
        body: dict[str, Any] = {
            "subject": hold.title,
            "body": {"contentType": "text", "content": hold.description},
            "start": {"dateTime": _graph_time(hold.start), "timeZone": "UTC"},
            "end": {"dateTime": _graph_time(hold.end), "timeZone": "UTC"},
            "showAs": _show_as(hold),
            # Documented only as letting Graph avoid redundant POSTs; the marker a hold
            # is known by when it syncs back (delta answers no extended properties).
            "transactionId": TRANSACTION_PREFIX + hold.booking_id,
            "singleValueExtendedProperties": [{"id": BOOKING_PROPERTY,
                                               "value": hold.booking_id}],
        }
        if hold.attendees:
            # "When an event is sent, the server sends invitations to all the attendees"
            # (https://learn.microsoft.com/en-us/graph/api/user-post-events): an event
            # with attendees is a meeting its organizer's mailbox invites them to.
            body["attendees"] = [{"emailAddress": {"address": a.email, "name": a.name},
                                  "type": "required"} for a in hold.attendees]
        if hold.location == TEAMS:
            body.update(isOnlineMeeting=True, onlineMeetingProvider="teamsForBusiness")
        elif hold.location:
            body["location"] = {"displayName": hold.location}
        status, payload = await self._graph("POST", url, body=body, need=WRITE,
                                            what=f"calendar {calendar_id or 'default'!r}")
        if status not in (200, 201) or not isinstance(payload, Mapping) or "id" not in payload:
            raise AdapterError(f"creating the hold answered {status}: {_error(payload)}",
                               source=self.name)
        return self._hold_ref(hold.booking_id, payload)

    def _hold_ref(self, booking_id: str, event: Mapping[str, Any]) -> HoldRef:
        join = ((event.get("onlineMeeting") or {}).get("joinUrl") or "")
        return HoldRef(booking_id, f"{self.settings.resource}/events/{event['id']}",
                       video_link=join if str(join).startswith("https://") else "")

    async def _find_hold(self, booking_id: str) -> Mapping[str, Any] | None:
        """The event an earlier try wrote for this booking, found by our extended property.

        /events with this $filter searches every calendar of the mailbox; the $expand
        brings the property back so its value can be compared exactly (the filter
        compares values case-insensitively).
        """
        quoted = booking_id.replace("'", "''")
        params = {
            "$filter": f"singleValueExtendedProperties/Any(ep: ep/id eq '{BOOKING_PROPERTY}' "
                       f"and ep/value eq '{quoted}')",
            "$expand": f"singleValueExtendedProperties($filter=id eq '{BOOKING_PROPERTY}')"}
        status, payload = await self._graph("GET", f"{self.settings.resource}/events",
                                            params=params, what="the hold's calendar")
        if status != 200 or not isinstance(payload, Mapping):
            raise AdapterError(f"looking for an earlier copy of the hold answered {status}: "
                               f"{_error(payload)}", source=self.name)
        for event in page_entries(payload, "value", "the hold lookup", self.name):
            properties = event.get("singleValueExtendedProperties") or []
            if "id" in event and isinstance(properties, list) and any(
                    isinstance(p, Mapping) and str(p.get("id")).lower() == BOOKING_PROPERTY.lower()
                    and p.get("value") == booking_id for p in properties):
                return event
        return None

    async def move_hold(self, ref: HoldRef, hold: Hold) -> HoldRef:
        """PATCH the hold's event in place: start, end, subject, showAs and (not for a
        Teams hold) the body. Graph keeps every property not sent, attendees and the
        online meeting included, and sends the attendees of an event it organizes the
        update itself; it answers 200 with the event
        (https://learn.microsoft.com/en-us/graph/api/event-update). A Teams hold's body
        is left alone: it holds the meeting blob, and a body sent without it "would
        disable meeting online" (same page). A hold gone upstream (404) is written anew,
        under a new event id."""
        body: dict[str, Any] = {
            "subject": hold.title,
            "start": {"dateTime": _graph_time(hold.start), "timeZone": "UTC"},
            "end": {"dateTime": _graph_time(hold.end), "timeZone": "UTC"},
            "showAs": _show_as(hold)}
        if hold.location != TEAMS:
            body["body"] = {"contentType": "text", "content": hold.description}
        status, payload = await self._graph("PATCH", ref.ref, body=body, need=WRITE,
                                            what="the hold")
        if status in (404, 410):
            return await self.write_hold(hold)
        if status != 200 or not isinstance(payload, Mapping) or "id" not in payload:
            raise AdapterError(f"moving the hold answered {status}: {_error(payload)}",
                               source=self.name)
        moved = self._hold_ref(hold.booking_id, payload)
        etag = payload.get("@odata.etag") or payload.get("changeKey")
        return replace(ref, etag=str(etag) if etag else None,
                       video_link=moved.video_link or ref.video_link)

    async def delete_hold(self, ref: HoldRef, *, notify: bool = False) -> None:
        """Remove the hold. With ``notify``, a hold that has attendees is cancelled
        (POST {event}/cancel with a comment): the organizer's mailbox sends them the
        cancellation and the event leaves the calendar; only the organizer may, which
        fbproxy is for the holds it wrote (https://learn.microsoft.com/en-us/graph/api/
        event-cancel). Otherwise it is deleted. Graph has no silent way to remove a
        meeting: "deleting the event on the organizer's calendar sends a cancellation
        message to the meeting attendees" (.../event-delete), so notify=False only
        leaves out the comment for a hold with attendees."""
        if notify and await self._has_attendees(ref):
            status, payload = await self._graph("POST", f"{ref.ref}/cancel", need=WRITE,
                                                body={"comment": CANCEL_COMMENT},
                                                what="the hold")
            if status not in (200, 202, 204, 404):
                raise AdapterError(f"cancelling the hold answered {status}: "
                                   f"{_error(payload)}", source=self.name)
            return
        status, payload = await self._graph("DELETE", ref.ref, need=WRITE, what="the hold")
        if status not in (200, 204, 404):  # 404: already gone
            raise AdapterError(f"deleting the hold answered {status}: {_error(payload)}",
                               source=self.name)

    async def _has_attendees(self, ref: HoldRef) -> bool:
        """Whether the hold's event names attendees (False when it is gone already)."""
        status, payload = await self._graph("GET", ref.ref, params={"$select": "attendees"},
                                            what="the hold")
        if status == 404:
            return False
        if status != 200 or not isinstance(payload, Mapping):
            raise AdapterError(f"reading the hold answered {status}: {_error(payload)}",
                               source=self.name)
        attendees = payload.get("attendees")
        return isinstance(attendees, list) and bool(attendees)


def _cached_scopes(cache: msal.SerializableTokenCache) -> list[str]:
    """The delegated scope the account consented to (read or read-write)."""
    for token in cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN):
        target = str(token.get("target", ""))
        if "calendars.readwrite" in target.lower():
            return list(WRITE_SCOPES)
    return list(READ_SCOPES)


def _granted_scopes(cache: msal.SerializableTokenCache) -> frozenset[str]:
    """The Graph permissions in the cached access tokens' targets (short names)."""
    found: set[str] = set()
    for token in cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN):
        for scope in str(token.get("target", "")).split():
            name = scope.rsplit("/", 1)[-1]
            if name.lower() not in ("openid", "profile", "offline_access", "email"):
                found.add(name)
    return frozenset(found)


def _covers(granted: frozenset[str], need: str) -> bool:
    """Whether the granted scopes include ``need`` (ReadWrite includes Read)."""
    lowered = {scope.lower() for scope in granted}
    return need.lower() in lowered or (need == READ and WRITE.lower() in lowered)


def read_events(scope: str, events: Sequence[Mapping[str, Any]],
                ) -> tuple[list[Item], list[str], list[SkippedItem]]:
    """Graph events as items (upserted), keys (deleted) and what could not be read."""
    upserted: list[Item] = []
    deleted: list[str] = []
    skipped: list[SkippedItem] = []
    for event in events:
        key = scope + str(event.get("id", ""))
        if "@removed" in event:
            deleted.append(key)
            continue
        try:
            item = _item(key, event)
        except UNREADABLE_ITEM as exc:
            skipped.append(SkippedItem(key, f"unreadable event: {exc}"))
            continue
        (upserted.append(item) if item is not None else deleted.append(key))
    return upserted, deleted, skipped


def _item(key: str, event: Mapping[str, Any]) -> Item | None:
    """The event as a minimal VEVENT, or None when it does not block time."""
    if event.get("isCancelled") or event.get("showAs") in _NOT_BUSY:
        return None
    if (event.get("responseStatus") or {}).get("response") == "declined":
        return None
    if event.get("type") == "seriesMaster":
        return None  # its occurrences come one by one
    start: date | datetime
    end: date | datetime
    if event.get("isAllDay"):
        # Floating dates: the server reads them in the source's time zone, as it
        # does for ICS and CalDAV all-day events.
        start, end = _all_day(event["start"]), _all_day(event["end"], closing=True)
    else:
        start, end = _instant(event["start"]), _instant(event["end"])
    if end <= start:
        return None
    calendar = Calendar()
    calendar.add("PRODID", "-//fbproxy//microsoft adapter//EN")
    calendar.add("VERSION", "2.0")
    vevent = Event()
    vevent.add("UID", key)
    vevent.add("DTSTAMP", datetime(2000, 1, 1, tzinfo=UTC))
    vevent.add("DTSTART", start)
    vevent.add("DTEND", end)
    vevent.add("STATUS", "TENTATIVE" if event.get("showAs") == "tentative" else "CONFIRMED")
    transaction = event.get("transactionId")
    if isinstance(transaction, str) and transaction.startswith(TRANSACTION_PREFIX):
        vevent.add(HOLD_MARKER, transaction.removeprefix(TRANSACTION_PREFIX))
    calendar.add_component(vevent)
    return Item(key=key, ical=calendar.to_ical().decode(), etag=event.get("changeKey"))


def _instant(value: Mapping[str, Any]) -> datetime:
    """Graph's {"dateTime": "2026-11-26T09:00:00.0000000", "timeZone": "UTC"}."""
    text = str(value["dateTime"])
    head, _, fraction = text.partition(".")
    moment = datetime.fromisoformat(head + ("." + fraction[:6] if fraction else ""))
    zone = str(value.get("timeZone") or "UTC")
    if moment.tzinfo is None:
        if zone != "UTC":
            raise ValueError(f"time zone {zone!r}: asked for UTC (outlook.timezone)")
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _all_day(value: Mapping[str, Any], *, closing: bool = False) -> date:
    """The day of an all-day event's start or (exclusive) end.

    Graph does not convert all-day events to ``outlook.timezone``: it answers their
    midnights as wall time, whatever zone the value is labelled with (see
    tests/fake_microsoft.py), so only the date part means anything. A closing time
    past midnight (never seen; all-day events are midnight to midnight) counts as
    the whole of its day.
    """
    text = str(value["dateTime"])
    moment = datetime.fromisoformat(text.partition(".")[0])
    day = moment.date()
    return day + timedelta(days=1) if closing and moment.time() != time() else day


def _show_as(hold: Hold) -> str:
    return "tentative" if hold.status == "TENTATIVE" else "busy"


def _graph_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _prefix(calendar_id: str) -> str:
    return f"{calendar_id or 'default'}/"


def _seconds(retry_after: str) -> float:
    try:
        return max(0.0, float(retry_after))
    except ValueError:
        return 5.0


def _is_link(value: object, graph_url: str) -> TypeGuard[str]:
    """A link Graph hands out (nextLink, deltaLink): an http(s) URL on Graph's own origin.

    The bearer token goes with every request to it, so a link to any other
    host would hand the token to whoever the answer names.
    """
    if not isinstance(value, str):
        return False
    try:
        link, graph = urlsplit(value), urlsplit(graph_url)
    except ValueError:  # "http://[": a broken IPv6 literal
        return False
    return link.scheme in ("https", "http") and bool(link.netloc) and \
        (link.scheme, link.netloc.lower()) == (graph.scheme, graph.netloc.lower())


def _shown(value: object) -> str:
    """An upstream link in a message: its length and type, never its text."""
    return f"a string of {len(value)} characters" if isinstance(value, str) else kind_of(value)


def _code(payload: Any) -> str:
    if isinstance(payload, Mapping) and isinstance(payload.get("error"), Mapping):
        return str(payload["error"].get("code", ""))
    return ""


def _error(payload: Any) -> str:
    if isinstance(payload, Mapping) and isinstance(payload.get("error"), Mapping):
        error = payload["error"]
        return f"{error.get('code', '')}: {error.get('message', '')}".strip(": ")
    return "no details"


def device_code_flow(settings: MicrosoftSettings, scopes: Sequence[str],
                     show: Callable[[str], None], cache: msal.SerializableTokenCache) -> str:
    """The device-code flow (blocking): show the message, wait; msal fills ``cache``.

    Returns the account signed in; the caller stores the cache where the
    source's adapter reads it (its ``TokenVault``).
    """
    app = msal_app(settings, cache)
    if not isinstance(app, msal.PublicClientApplication):
        raise AdapterError("with client_secret set, fbproxy signs in as the app itself; "
                           "there is nothing to authorize interactively")
    flow = app.initiate_device_flow(scopes=list(scopes))
    if "user_code" not in flow:
        raise AdapterError(f"Microsoft refused to start the sign-in: "
                           f"{flow.get('error_description') or flow.get('error')}")
    show(str(flow["message"]))
    result = app.acquire_token_by_device_flow(flow)
    if "access_token" not in result:
        raise AdapterError(f"sign-in failed: {result.get('error_description') or result}")
    claims = result.get("id_token_claims") or {}
    return str(claims.get("preferred_username") or "the account")


def device_code_sign_in(settings: MicrosoftSettings, scopes: Sequence[str],
                        show: Callable[[str], None]) -> str:
    """The device-code flow with the cache in ``token_cache_file``; the account signed in."""
    cache = load_cache(settings.token_cache_file)
    account = device_code_flow(settings, scopes, show, cache)
    save_cache(settings.token_cache_file, cache)
    return account
