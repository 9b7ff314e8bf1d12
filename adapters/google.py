"""Google Calendar sources: events.list with sync tokens, and holds as inserted events.

The client library is blocking (httplib2), so every call runs in a worker
thread, one at a time per source: httplib2 is not thread-safe, and Google
rate-limits per user anyway. Each calendar is its own stream with its own
``nextSyncToken``; a 410 on a stale token resyncs that calendar in full.

Events become minimal iCalendar items: times, status, transparency and the
hold marker. Titles, descriptions and attendees are never stored.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import threading
import time as clock
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import google_auth_httplib2
import httplib2
from google.auth.exceptions import RefreshError, TransportError
from google.oauth2.credentials import Credentials
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from adapters.base import (
    AccessDenied,
    AdapterError,
    AuthExpired,
    BadUpstreamData,
    Capabilities,
    ChangeSet,
    Hold,
    HoldRef,
    SyncState,
    TokenVault,
    UpstreamUnavailable,
    kind_of,
    page_entries,
)
from adapters.google_events import (
    BOOKING_PROPERTY,
    EventReader,
    Listed,
    Listing,
    Pages,
    read_listing,
)
from adapters.secrets_file import FileTokenVault, write_private

READ_SCOPE = "https://www.googleapis.com/auth/calendar.events.readonly"
WRITE_SCOPE = "https://www.googleapis.com/auth/calendar.events"
PAGE_SIZE = 250
# The most events.list pages one calendar may take in one round (250,000 events at
# PAGE_SIZE): an upstream that never ends its pages fails the round instead.
MAX_PAGES = 1000
# 403 reasons that mean "slow down" (https://developers.google.com/calendar/api/guides/errors),
# and those that mean the token lacks a scope; any other 403 is a refusal to this account.
QUOTA_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded", "dailyLimitExceeded",
                           "quotaExceeded", "calendarUsageLimitsExceeded"})
SCOPE_REASONS = frozenset({"insufficientPermissions", "ACCESS_TOKEN_SCOPE_INSUFFICIENT"})
RETRIES = 3  # retries of one request for 5xx, 429 and dropped connections
# The first wait between retries (doubling) when the answer names no Retry-After.
RETRY_BASE = 0.25
# Waits (seconds) between re-reads of a hold whose Meet conference Google is still
# making: about half a minute in all, in the hold worker, never in a guest's request.
MEET_WAITS = (1.0, 2.0, 4.0, 8.0, 16.0)

T = TypeVar("T")


@dataclass(frozen=True)
class GoogleSettings:
    client_id: str
    client_secret: str
    token_file: Path
    calendars: tuple[str, ...] = ()  # calendar ids; () = the primary calendar
    hold_calendar: str | None = None
    timeout_seconds: float = 30.0
    api_endpoint: str = "https://www.googleapis.com/calendar/v3/"
    token_uri: str = "https://oauth2.googleapis.com/token"
    owner_emails: tuple[str, ...] = ()

    @property
    def calendar_ids(self) -> tuple[str, ...]:
        return self.calendars or ("primary",)


def scopes_for(holds: bool) -> list[str]:
    """The narrowest scope that does the job: read events, or read and write them."""
    return [WRITE_SCOPE] if holds else [READ_SCOPE]


def token_document(refresh_token: str, scopes: Sequence[str], token_uri: str) -> str:
    """What is kept of an authorization: the refresh token, its scopes and where it is used."""
    return json.dumps({"refresh_token": refresh_token, "scopes": list(scopes),
                       "token_uri": token_uri,
                       "saved": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")})


def save_token(token_file: Path, refresh_token: str, scopes: Sequence[str],
               token_uri: str) -> None:
    """Write the refresh token 0600, atomically (a half-written file is never read)."""
    write_private(token_file, token_document(refresh_token, scopes, token_uri))


def hold_event_id(booking_id: str) -> str:
    """The hold's Google event id: base32hex of the booking id, so a retry is a 409."""
    return base64.b32hexencode(booking_id.encode()).decode().lower().rstrip("=")


class GoogleAdapter:
    """Keeps the calendars of one Google account in sync, and writes holds there."""

    capabilities = Capabilities(incremental=True, push=True, holds=True)

    def __init__(self, name: str, settings: GoogleSettings, *,
                 executor: Executor | None = None,
                 http_factory: Callable[[], httplib2.Http] | None = None,
                 tokens: TokenVault | None = None, cpu: Executor | None = None) -> None:
        self.name = name
        self.settings = settings
        self._executor = executor  # the client library's blocking calls
        # Where events become iCalendar items (CPU work, off the event loop): the
        # server's expansion worker processes; None: the loop's default threads.
        self._cpu = cpu
        self.reader = EventReader(settings.owner_emails)
        self._http_factory = http_factory or (
            lambda: httplib2.Http(timeout=int(settings.timeout_seconds)))
        self._tokens: TokenVault = tokens or FileTokenVault(settings.token_file)
        self._service: Any = None
        self._credentials: Credentials | None = None
        # The stored token text the service was (or is about to be) built from, the
        # credentials read from it, and its refresh token (the credentials' own may
        # change: google-auth refreshes them in place).
        self._token_text: str | None = None
        self._loaded: Credentials | None = None
        self._stored_refresh_token = ""
        self._lock = threading.Lock()

    async def close(self) -> None:
        self._service = None

    async def _run(self, blocking: Callable[[], T]) -> T:
        """Run ``blocking`` in a worker thread, with the stored token read first."""
        try:
            return await self._run_once(blocking)
        except AuthExpired:
            # Refused: if another instance or `fbproxy auth` stored a new token since
            # this one was read, try once more with it before asking a human.
            if not await self._token_replaced():
                raise
            self._service = None
            return await self._run_once(blocking)

    async def _run_once(self, blocking: Callable[[], T]) -> T:
        if self._service is None:
            await self._read_token()

        def locked() -> T:
            with self._lock:
                return blocking()
        result = await asyncio.get_running_loop().run_in_executor(self._executor, locked)
        await self._keep_new_refresh_token()
        return result

    # -- connection ---------------------------------------------------------------

    def _api(self) -> Any:
        if self._service is None:
            credentials = self._loaded
            if credentials is None:  # _run_once reads the token before any call
                raise AuthExpired("the token was not read", source=self.name)
            http = google_auth_httplib2.AuthorizedHttp(credentials, http=self._http_factory())
            self._service = build("calendar", "v3", http=http, static_discovery=True,
                                  cache_discovery=False,
                                  client_options={"api_endpoint": self.settings.api_endpoint})
            self._credentials = credentials
        return self._service

    async def _read_token(self) -> None:
        """Read the stored token (a file, or the shared database) for the next connection."""
        where = self._tokens.where
        try:
            text = await self._tokens.load()
        except (OSError, ValueError) as exc:
            raise AuthExpired(f"cannot read {where}: {exc}; run `fbproxy auth google "
                              f"--source {self.name}` again", source=self.name) from exc
        if text is None:
            raise AuthExpired(f"not authorized yet: run `fbproxy auth google --source "
                              f"{self.name}`", source=self.name)
        try:
            document = json.loads(text)
            refresh_token = str(document["refresh_token"])
            scopes = [str(s) for s in document.get("scopes", [])]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            # Only the exception's type: its text could quote the token.
            raise AuthExpired(f"cannot read {where} ({type(exc).__name__}); run `fbproxy "
                              f"auth google --source {self.name}` again",
                              source=self.name) from None
        self._loaded = Credentials(  # type: ignore[no-untyped-call]
            token=None, refresh_token=refresh_token, token_uri=self.settings.token_uri,
            client_id=self.settings.client_id, client_secret=self.settings.client_secret,
            scopes=scopes)
        self._token_text, self._stored_refresh_token = text, refresh_token
        self._credentials = None  # the old service's, never to be stored back

    async def _token_replaced(self) -> bool:
        """Whether the stored token is no longer the one this adapter read."""
        try:
            text = await self._tokens.load()
        except (AdapterError, OSError, ValueError):
            return False
        return text is not None and text != self._token_text

    async def _keep_new_refresh_token(self) -> None:
        """Store the refresh token Google handed out in place of the old one, if it did.

        Google usually keeps a refresh token for good and refreshes only access
        tokens (each instance its own); should it rotate one, the other
        instances must get the new one before the old one stops working.
        """
        credentials = self._credentials
        if credentials is None or not credentials.refresh_token or \
                credentials.refresh_token == self._stored_refresh_token:
            return
        refresh_token = str(credentials.refresh_token)
        text = token_document(refresh_token, credentials.scopes or [], self.settings.token_uri)
        await self._tokens.save(text)
        self._token_text, self._stored_refresh_token = text, refresh_token

    def _execute(self, request: Any) -> Any:
        """Run one API request, retrying transient failures within the source's timeout.

        The library's own ``num_retries`` is not used: it sleeps up to 2, 4, 8 s
        between tries, ignores Retry-After and retries timeouts, so one request
        to a hanging Google took over four times the timeout. Here a retry
        happens only when its wait (Retry-After, or a short backoff) still ends
        before the timeout has passed since the first try.
        """
        deadline = clock.monotonic() + self.settings.timeout_seconds
        for attempt in range(RETRIES + 1):
            try:
                return self._execute_once(request)
            except UpstreamUnavailable as exc:
                wait = _retry_wait(exc.__cause__, attempt)
                if attempt == RETRIES or wait is None or clock.monotonic() + wait >= deadline:
                    after = _retry_after(exc.__cause__)
                    if after is not None:
                        exc.message = f"{exc.message} (Retry-After: {after:g} s)"
                        exc.args = (exc.message,)
                    raise
                clock.sleep(wait)
        raise AssertionError("unreachable")

    def _execute_once(self, request: Any) -> Any:
        """Run one API request once, turning library errors into adapter errors."""
        try:
            return request.execute(num_retries=0)
        except RefreshError as exc:
            self._service = None  # read the token again next time (after `auth`)
            raise AuthExpired(f"Google refused the refresh token ({exc}); run `fbproxy auth "
                              f"google --source {self.name}`", source=self.name) from exc
        except HttpError as exc:
            status = int(exc.resp.status)
            if status == 401:
                self._service = None
                raise AuthExpired(f"Google refused the credentials: {_reason(exc)}; run "
                                  f"`fbproxy auth google --source {self.name}`",
                                  source=self.name) from exc
            if status in (429, 500, 502, 503, 504) or (status == 403 and _reason(exc) in
                                                          QUOTA_REASONS):
                raise UpstreamUnavailable(f"Google answered {status}: {_reason(exc)}",
                                          source=self.name) from exc
            raise
        except (TransportError, httplib2.HttpLib2Error, OSError, TimeoutError) as exc:
            raise UpstreamUnavailable(f"cannot reach Google: {exc}", source=self.name) from exc
        except http.client.HTTPException as exc:
            # A body cut short (IncompleteRead) or a garbled status line.
            raise UpstreamUnavailable(f"Google's answer was cut short or garbled: "
                                      f"{type(exc).__name__}: {exc!r}",
                                      source=self.name) from exc
        except (UnicodeDecodeError, RecursionError) as exc:
            # The library decodes the body as UTF-8 JSON itself; a body that is not
            # UTF-8, or JSON nested deeper than Python recurses, fails there.
            what = "not UTF-8" if isinstance(exc, UnicodeDecodeError) else \
                "JSON nested too deeply"
            raise BadUpstreamData(f"Google answered a body that cannot be read: {what}",
                                  source=self.name) from exc

    # -- sync -----------------------------------------------------------------------

    async def sync(self, state: SyncState) -> ChangeSet:
        listing = await self._run(lambda: self._list_all(state))
        # Building the items is CPU work: on the executor for that (worker processes).
        changes: ChangeSet = await asyncio.get_running_loop().run_in_executor(
            self._cpu, read_listing, self.reader, listing)
        return changes

    def _sync_blocking(self, state: SyncState) -> ChangeSet:
        """A whole round in the calling thread: listed, then read."""
        return read_listing(self.reader, self._list_all(state))

    def _list_all(self, state: SyncState) -> Listing:
        """Every calendar's changes since the state's tokens (in full where it has none)."""
        api = self._api()
        previous = state.get("calendars", {})
        tokens: dict[str, Any] = dict(previous) if isinstance(previous, Mapping) else {}
        listed: list[Listed] = []
        requests = 0
        for calendar_id in self.settings.calendar_ids:
            known = tokens.get(calendar_id)
            token = known.get("sync_token") if isinstance(known, Mapping) else None
            if not isinstance(token, str) or not token or not isinstance(known, Mapping) \
                    or not isinstance(known.get("series"), Mapping):
                # A state that is not ours (hand-edited), or one from before series were
                # read as series: its token belongs to a listing of single instances,
                # whose items a full sync replaces.
                token = None
            try:
                pages, requests_made = self._list(api, calendar_id, token)
            except HttpError as exc:
                if int(exc.resp.status) != 410 or token is None:
                    raise self._unexpected(exc, calendar_id) from exc
                # The token expired upstream: this calendar syncs again in full.
                try:
                    pages, requests_made = self._list(api, calendar_id, None)
                except HttpError as again:
                    raise self._unexpected(again, calendar_id) from again
                token = None
            requests += requests_made
            kept = known.get("series") if token is not None and isinstance(known, Mapping) \
                else None
            listed.append(Listed(calendar_id, pages, kept))
        return Listing(tuple(listed), tokens, self.settings.calendar_ids, requests)

    def _list(self, api: Any, calendar_id: str, token: str | None) -> tuple[Pages, int]:
        items: list[Mapping[str, Any]] = []
        page_token: str | None = None
        seen_page_tokens: set[str] = set()
        requests = 0
        time_zone = "UTC"
        while True:
            if requests >= MAX_PAGES:
                raise BadUpstreamData(f"events.list of calendar {calendar_id!r} went on for "
                                      f"more than {MAX_PAGES} pages", source=self.name)
            # Series come as series (master + exceptions), expanded here within the
            # horizon: singleEvents=True would have Google split every never-ending
            # series into occurrences, unbounded, as time bounds are refused with a token.
            params: dict[str, Any] = {"calendarId": calendar_id, "singleEvents": False,
                                      "showDeleted": token is not None, "maxResults": PAGE_SIZE}
            if token is not None:
                params["syncToken"] = token  # alone: time bounds are refused with it
            if page_token is not None:
                params["pageToken"] = page_token
            response = self._execute(api.events().list(**params))
            requests += 1
            if not isinstance(response, Mapping):
                raise BadUpstreamData("events.list did not answer an object", source=self.name)
            items += page_entries(response, "items", "events.list", self.name)
            zone_name = response.get("timeZone")
            if isinstance(zone_name, str) and zone_name:
                time_zone = zone_name
            next_page = response.get("nextPageToken")
            if next_page is None or next_page == "":
                next_token = response.get("nextSyncToken")
                if not isinstance(next_token, str):
                    raise BadUpstreamData("the last events.list page had no nextSyncToken",
                                          source=self.name)
                return Pages(items, next_token, time_zone), requests
            if not isinstance(next_page, str):
                raise BadUpstreamData(f"events.list answered a nextPageToken that is not a "
                                      f"string but {kind_of(next_page)}", source=self.name)
            if next_page in seen_page_tokens:
                raise BadUpstreamData(f"events.list of calendar {calendar_id!r} answered a "
                                      "nextPageToken it had answered before: its pages would "
                                      "never end", source=self.name)
            seen_page_tokens.add(next_page)
            page_token = next_page

    def _unexpected(self, exc: HttpError, calendar_id: str,
                    scope: str = READ_SCOPE) -> AdapterError:
        """What an error answer means for this source; ``scope`` is the one the failed
        request needs (reading events, or writing holds)."""
        status, reason = int(exc.resp.status), _reason(exc)
        if status == 404:
            return BadUpstreamData(f"calendar {calendar_id!r} does not exist or is not shared "
                                   "with this account", source=self.name)
        if status == 403 and reason in SCOPE_REASONS:
            # The token works but was granted without this scope (consent given for
            # read-only, or a box left unticked): authorizing again, granting it, helps.
            return AuthExpired(f"the authorization lacks the scope {scope} ({reason}); run "
                               f"`fbproxy auth google --source {self.name}` and grant it",
                               source=self.name)
        if status == 403:
            # forbidden, requiredAccessLevel, forbiddenForNonOrganizer...: the account
            # itself may not do this; a new token would be refused the same way.
            # https://developers.google.com/calendar/api/guides/errors
            fix = "share it with this account with \"Make changes to events\"" \
                if scope == WRITE_SCOPE else "share it with this account"
            what = "write holds to" if scope == WRITE_SCOPE else "read"
            return AccessDenied(f"this account may not {what} calendar {calendar_id!r} "
                                f"({reason}): {fix}, or choose another calendar",
                                source=self.name)
        return UpstreamUnavailable(f"Google answered {status}: {reason}", source=self.name)

    # -- holds --------------------------------------------------------------------

    async def write_hold(self, hold: Hold) -> HoldRef:
        ref: HoldRef = await self._run(lambda: self._write_hold_blocking(hold))
        return ref

    def _write_hold_blocking(self, hold: Hold) -> HoldRef:
        api = self._api()
        calendar_id = hold.calendar or self.settings.hold_calendar or "primary"
        event_id = hold_event_id(hold.booking_id)
        body: dict[str, Any] = {
            "id": event_id, "summary": hold.title, "description": hold.description,
            "start": {"dateTime": _rfc3339(hold.start)}, "end": {"dateTime": _rfc3339(hold.end)},
            "status": _status(hold),
            "transparency": "opaque",
            "extendedProperties": {"private": {BOOKING_PROPERTY: hold.booking_id}},
        }
        if hold.attendees:
            # Google invites them itself, with sendUpdates=all below (the guest's name and
            # address go into the JSON body; the client library encodes them).
            body["attendees"] = [{"email": a.email, "displayName": a.name}
                                 for a in hold.attendees]
        meet = hold.location == GOOGLE_MEET
        if meet:
            body["conferenceData"] = {"createRequest": {
                "requestId": event_id, "conferenceSolutionKey": {"type": "hangoutsMeet"}}}
        elif hold.location:
            body["location"] = hold.location
        try:
            created = self._execute(api.events().insert(
                calendarId=calendar_id, body=body, conferenceDataVersion=1 if meet else 0,
                sendUpdates=_send_updates(bool(hold.attendees))))
        except HttpError as exc:
            if int(exc.resp.status) != 409:
                raise self._unexpected(exc, calendar_id, WRITE_SCOPE) from exc
            # Already there: an earlier attempt landed before a crash or timeout.
            created = self._execute(api.events().get(calendarId=calendar_id, eventId=event_id))
        ref = HoldRef(hold.booking_id, f"{calendar_id}/{event_id}")
        if not meet:
            return ref
        created = self._await_conference(api, calendar_id, event_id, created)
        link = meet_link(created)
        return replace(ref, video_link=link, video_problem="" if link else _meet_problem(created))

    def _await_conference(self, api: Any, calendar_id: str, event_id: str,
                          event: Mapping[str, Any]) -> Mapping[str, Any]:
        """The hold once Google has made (or failed to make) its Meet conference.

        Creating a conference is asynchronous: the insert may answer statusCode
        "pending" and no entry points; re-read with backoff until "success" or
        "failure", a bounded number of times.
        https://developers.google.com/calendar/api/guides/create-events#conferencing
        """
        for wait in MEET_WAITS:
            if _conference_status(event) != "pending":
                return event
            clock.sleep(wait)
            try:
                event = self._execute(api.events().get(calendarId=calendar_id,
                                                       eventId=event_id))
            except HttpError as exc:
                raise self._unexpected(exc, calendar_id, WRITE_SCOPE) from exc
            if not isinstance(event, Mapping):
                raise BadUpstreamData("events.get did not answer an object", source=self.name)
        return event

    async def move_hold(self, ref: HoldRef, hold: Hold) -> HoldRef:
        moved: HoldRef = await self._run(lambda: self._move_hold_blocking(ref, hold))
        return moved

    def _move_hold_blocking(self, ref: HoldRef, hold: Hold) -> HoldRef:
        """events.patch of the hold's own event: fields sent replace the stored ones, all
        others (the Meet conference, the attendees and their answers, our extended
        property) stay (https://developers.google.com/calendar/api/v3/reference/events/
        patch). A hold deleted upstream is only "cancelled" on its organizer's calendar
        and keeps its details "so that they can be restored (undeleted)" (events resource,
        status): the patch, which sets the status, restores it under the same id. One
        Google no longer has at all (404, 410) is written anew."""
        api = self._api()
        calendar_id, _, event_id = ref.ref.rpartition("/")
        body = {"summary": hold.title, "description": hold.description,
                "start": {"dateTime": _rfc3339(hold.start)},
                "end": {"dateTime": _rfc3339(hold.end)}, "status": _status(hold)}
        try:
            # conferenceDataVersion=1: the client keeps the event's conference data (the
            # body names none, so the conference is left as it is).
            moved = self._execute(api.events().patch(
                calendarId=calendar_id, eventId=event_id, body=body, conferenceDataVersion=1,
                sendUpdates=_send_updates(bool(hold.attendees))))
        except HttpError as exc:
            if int(exc.resp.status) not in (404, 410):
                raise self._unexpected(exc, calendar_id, WRITE_SCOPE) from exc
            return self._write_hold_blocking(replace(hold, calendar=calendar_id))
        if not isinstance(moved, Mapping):
            raise BadUpstreamData("events.patch did not answer an object", source=self.name)
        etag = moved.get("etag")
        return replace(ref, etag=etag if isinstance(etag, str) else None,
                       video_link=meet_link(moved) or ref.video_link)

    async def delete_hold(self, ref: HoldRef, *, notify: bool = False) -> None:
        """Delete the hold; ``notify`` has Google send its attendees the cancellation."""
        await self._run(lambda: self._delete_hold_blocking(ref, notify))

    def _delete_hold_blocking(self, ref: HoldRef, notify: bool = False) -> None:
        calendar_id, _, event_id = ref.ref.rpartition("/")
        try:
            self._execute(self._api().events().delete(calendarId=calendar_id, eventId=event_id,
                                                      sendUpdates=_send_updates(notify)))
        except HttpError as exc:
            if int(exc.resp.status) not in (404, 410):  # already gone
                raise self._unexpected(exc, calendar_id, WRITE_SCOPE) from exc

    # -- push -----------------------------------------------------------------------

    max_channel = timedelta(days=7)  # Google's longest watch on events

    async def watch(self, calendar_id: str, *, token: str, address: str,
                    ttl_seconds: int) -> tuple[str, str, int]:
        """Ask Google to notify ``address`` of changes: (channel id, resource id, expiry)."""
        channel_id = str(uuid.uuid4())

        def blocking() -> tuple[str, str, int]:
            body = {"id": channel_id, "type": "web_hook", "address": address, "token": token,
                    "params": {"ttl": str(ttl_seconds)}}
            try:
                channel = self._execute(self._api().events().watch(calendarId=calendar_id,
                                                                   body=body))
            except HttpError as exc:
                raise self._unexpected(exc, calendar_id) from exc
            try:
                return channel_id, str(channel["resourceId"]), int(channel["expiration"]) // 1000
            except (KeyError, TypeError, ValueError) as exc:
                raise BadUpstreamData(f"events.watch answered without resourceId/expiration: "
                                      f"{exc}", source=self.name) from exc
        return await self._run(blocking)

    async def stop_channel(self, channel_id: str, resource_id: str) -> None:
        """Stop a channel; one Google no longer knows (404) is stopped already."""
        def blocking() -> None:
            try:
                self._execute(self._api().channels().stop(
                    body={"id": channel_id, "resourceId": resource_id}))
            except HttpError as exc:
                if int(exc.resp.status) != 404:
                    raise self._unexpected(exc, "channels") from exc
        await self._run(blocking)


# A hold whose location is this gets a Google Meet link made by Google.
GOOGLE_MEET = "google-meet"


def _conference_status(event: Mapping[str, Any]) -> str:
    """conferenceData.createRequest.status.statusCode: pending, success or failure."""
    data = event.get("conferenceData")
    create = data.get("createRequest") if isinstance(data, Mapping) else None
    status = create.get("status") if isinstance(create, Mapping) else None
    code = status.get("statusCode") if isinstance(status, Mapping) else None
    return code if isinstance(code, str) else ""


def _meet_problem(event: Mapping[str, Any]) -> str:
    status = _conference_status(event)
    if status == "failure":
        return "Google could not create the Google Meet conference (createRequest failure)"
    if status == "pending":
        return (f"Google was still creating the Google Meet conference after "
                f"{len(MEET_WAITS)} checks over {sum(MEET_WAITS):g} s")
    return "Google answered without a Google Meet link"


def meet_link(event: Mapping[str, Any]) -> str:
    """The video link Google made for an event, if any."""
    link = event.get("hangoutLink")
    if isinstance(link, str) and link.startswith("https://"):
        return link
    for entry in (event.get("conferenceData") or {}).get("entryPoints") or ():
        if isinstance(entry, Mapping) and entry.get("entryPointType") == "video":
            uri = entry.get("uri")
            if isinstance(uri, str) and uri.startswith("https://"):
                return uri
    return ""


def _status(hold: Hold) -> str:
    return "tentative" if hold.status == "TENTATIVE" else "confirmed"


def _send_updates(notify: bool) -> str:
    """sendUpdates: "all" has Google email the guests (the hold's attendees) about the
    insert, change or deletion; "none" sends nothing, as for a hold without guests."""
    return "all" if notify else "none"


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _retry_after(cause: BaseException | None) -> float | None:
    """The Retry-After of a refused request, in seconds (None: absent or a date)."""
    if not isinstance(cause, HttpError):
        return None
    try:
        return max(0.0, float(cause.resp.get("retry-after", "")))
    except (TypeError, ValueError):
        return None


def _retry_wait(cause: BaseException | None, attempt: int) -> float | None:
    """How long to wait before trying again, or None when a retry cannot help.

    A timeout has used the whole budget already, and a certificate error stays.
    """
    if isinstance(cause, HttpError):
        after = _retry_after(cause)
        return after if after is not None else RETRY_BASE * 2.0 ** attempt
    if isinstance(cause, (ConnectionError, httplib2.HttpLib2Error, http.client.HTTPException)) \
            and not isinstance(cause, TimeoutError):
        return RETRY_BASE * 2.0 ** attempt
    return None


def _reason(exc: HttpError) -> str:
    try:
        error = json.loads(exc.content.decode())["error"]
        errors = error.get("errors") or [{}]
        return str(errors[0].get("reason") or error.get("message") or exc.resp.status)
    except (ValueError, KeyError, TypeError, AttributeError, IndexError):
        return str(exc.resp.status)

