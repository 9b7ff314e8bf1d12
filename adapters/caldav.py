"""CalDAV sources: discovery, RFC 6578 sync-collection, ctag/etag fallback, holds.

The python ``caldav`` library's ``DAVClient`` carries the HTTP (sessions, auth
negotiation); the WebDAV requests themselves are built here so that a round
costs exactly what it must: one PROPFIND of the calendar home when nothing
changed, plus one sync-collection REPORT and batched calendar-multigets for
each calendar that did. The client is blocking, so every round runs in the
thread executor.

State (JSON, stored by the server)::

    {"home": <url of the calendar home, or of the one configured calendar>,
     "single": bool,
     "calendars": {<calendar url>: {"name": ..., "token": ..., "ctag": ...,
                                    "etags": {href: etag}  # only without sync-collection
                                    }}}
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote, urljoin, urlsplit

from caldav.davclient import DAVClient
from caldav.lib import error as dav_error
from icalendar import Calendar, Event
from lxml import etree

from adapters.base import (
    HOLD_MARKER,
    UNREADABLE_ITEM,
    AuthExpired,
    BadUpstreamData,
    Capabilities,
    ChangeSet,
    Hold,
    HoldRef,
    Item,
    SkippedItem,
    SyncState,
    UpstreamUnavailable,
)

log = logging.getLogger("fbproxy.caldav")

DAV = "DAV:"
CALDAV = "urn:ietf:params:xml:ns:caldav"
CS = "http://calendarserver.org/ns/"
NS = {"d": DAV, "c": CALDAV, "cs": CS}
MULTIGET_BATCH = 500
MAX_SYNC_PAGES = 1000
MOVE_TRIES = 3  # reads and writes of a hold another client keeps changing meanwhile

_PROPFIND_DISCOVERY = b"""<?xml version="1.0" encoding="utf-8"?>
<d:propfind xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">
  <d:prop><d:resourcetype/><d:current-user-principal/><c:calendar-home-set/></d:prop>
</d:propfind>"""


def _propfind_calendars(version_props: Iterable[str]) -> bytes:
    """The listing PROPFIND, asking only for the version property the server has.

    Radicale computes each of sync-token and getctag by reading every item, so
    asking for both doubles the cost of a round with no change.
    """
    props = "".join(f"<{p}/>" for p in version_props)
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<d:propfind xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav" '
        'xmlns:cs="http://calendarserver.org/ns/"><d:prop><d:resourcetype/><d:displayname/>'
        f"<c:supported-calendar-component-set/>{props}</d:prop></d:propfind>"
    ).encode()


_VERSION_PROPS = {"sync-token": ("d:sync-token",), "getctag": ("cs:getctag",)}
_ALL_VERSION_PROPS = ("d:sync-token", "cs:getctag")
_PROPFIND_ETAGS = b"""<?xml version="1.0" encoding="utf-8"?>
<d:propfind xmlns:d="DAV:"><d:prop><d:getetag/><d:resourcetype/></d:prop></d:propfind>"""


def _sync_collection_body(token: str | None) -> bytes:
    root = etree.Element(f"{{{DAV}}}sync-collection", nsmap={"d": DAV})
    etree.SubElement(root, f"{{{DAV}}}sync-token").text = token or ""
    etree.SubElement(root, f"{{{DAV}}}sync-level").text = "1"
    prop = etree.SubElement(root, f"{{{DAV}}}prop")
    etree.SubElement(prop, f"{{{DAV}}}getetag")
    return bytes(etree.tostring(root, xml_declaration=True, encoding="utf-8"))


def _multiget_body(hrefs: Iterable[str]) -> bytes:
    root = etree.Element(f"{{{CALDAV}}}calendar-multiget", nsmap={"d": DAV, "c": CALDAV})
    prop = etree.SubElement(root, f"{{{DAV}}}prop")
    etree.SubElement(prop, f"{{{DAV}}}getetag")
    etree.SubElement(prop, f"{{{CALDAV}}}calendar-data")
    for href in hrefs:
        etree.SubElement(root, f"{{{DAV}}}href").text = href
    return bytes(etree.tostring(root, xml_declaration=True, encoding="utf-8"))


@dataclass(frozen=True)
class CaldavSettings:
    url: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    calendars: tuple[str, ...] = ()
    hold_calendar: str | None = None
    timeout_seconds: float = 30.0
    ca_file: str | None = None


@dataclass(frozen=True, slots=True)
class RemoteCalendar:
    url: str
    name: str
    token: str | None
    ctag: str | None
    supports_events: bool = True


@dataclass
class _Round:
    """What one sync round has gathered so far."""

    upserted: list[Item] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    full_scopes: list[str] = field(default_factory=list)
    skipped: list[SkippedItem] = field(default_factory=list)
    requests: int = 0
    bytes_received: int = 0


class _InvalidToken(Exception):
    pass


class _NoSyncCollection(Exception):
    pass


class _BadHref(Exception):
    """The server named a resource with an href that is no URL (``http://[``)."""


class CaldavAdapter:
    """Keeps the calendars of one CalDAV account in sync."""

    capabilities = Capabilities(incremental=True, push=False, holds=True)

    def __init__(self, name: str, settings: CaldavSettings, *, executor: Executor | None = None,
                 client_factory: Callable[[], DAVClient] | None = None) -> None:
        self.name = name
        self.settings = settings
        self._executor = executor
        self._client_factory = client_factory or self._new_client
        self._client: DAVClient | None = None
        # DAVClient is not thread-safe; a sync and a hold write may overlap.
        self._lock = threading.Lock()

    def _new_client(self) -> DAVClient:
        return DAVClient(
            url=self.settings.url, username=self.settings.username,
            password=self.settings.password, timeout=int(self.settings.timeout_seconds),
            ssl_verify_cert=self.settings.ca_file or True, enable_rfc6764=False)

    async def sync(self, state: SyncState) -> ChangeSet:
        changes: ChangeSet = await self._run(self._sync_blocking, state)
        return changes

    async def write_hold(self, hold: Hold) -> HoldRef:
        ref: HoldRef = await self._run(self._write_hold_blocking, hold)
        return ref

    async def move_hold(self, ref: HoldRef, hold: Hold) -> HoldRef:
        moved: HoldRef = await self._run(self._move_hold_blocking, (ref, hold))
        return moved

    async def delete_hold(self, ref: HoldRef, *, notify: bool = False) -> None:
        # notify: nothing to ask of a CalDAV server; fbproxy itself sends the guest
        # the iMIP cancellation for CalDAV targets.
        await self._run(self._delete_hold_blocking, ref)

    async def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    async def _run(self, func: Callable[[Any], Any], arg: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._guarded, func, arg)

    def _guarded(self, func: Callable[[Any], Any], arg: Any) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._client_factory()
            try:
                return func(arg)
            except dav_error.AuthorizationError as exc:
                status = getattr(exc, "status", "401/403")
                raise AuthExpired(f"the server refused our credentials (HTTP {status})",
                                  source=self.name) from exc
            except dav_error.RateLimitError as exc:
                raise UpstreamUnavailable(_rate_limited(exc), source=self.name) from exc
            except _BadHref as exc:
                raise BadUpstreamData(f"the server answered an href that is not a URL: {exc}",
                                      source=self.name) from exc
            except (dav_error.DAVError, OSError, etree.XMLSyntaxError) as exc:
                raise UpstreamUnavailable(f"{type(exc).__name__}: {exc}",
                                          source=self.name) from exc
            except Exception as exc:
                if _is_network_error(exc):
                    raise UpstreamUnavailable(f"cannot reach the server: {exc}",
                                              source=self.name) from exc
                raise

    # -- HTTP ------------------------------------------------------------------

    def _request(self, work: _Round | None, url: str, method: str, body: bytes = b"",
                 depth: str | None = None, headers: Mapping[str, str] | None = None,
                 ) -> Any:
        assert self._client is not None
        all_headers = {"Content-Type": 'application/xml; charset="utf-8"'} if body else {}
        if depth is not None:
            all_headers["Depth"] = depth
        all_headers.update(headers or {})
        response = self._client.request(url, method, body.decode("utf-8"), all_headers)
        if work is not None:
            work.requests += 1
            work.bytes_received += _response_size(response)
        if response.status >= 500:
            raise UpstreamUnavailable(f"{method} {url}: HTTP {response.status}", source=self.name)
        return response

    def _multistatus(self, response: Any, what: str) -> Iterator[Any]:
        if response.status not in (207, 200) or response.tree is None:
            raise BadUpstreamData(f"{what}: expected a multistatus, got HTTP {response.status}",
                                  source=self.name)
        yield from response.tree.iter(f"{{{DAV}}}response")

    # -- discovery -------------------------------------------------------------

    def _discover(self, work: _Round) -> tuple[str, bool]:
        """The calendar home (or the single configured calendar) and which it is."""
        url = self.settings.url
        for _ in range(4):  # configured URL → (well-known) → principal → home
            response = self._request(work, url, "PROPFIND", _PROPFIND_DISCOVERY, depth="0")
            if response.status in (404, 405) and urlsplit(url).path in ("", "/"):
                url = urljoin(url, "/.well-known/caldav")
                continue
            props = self._first_props(response, "discovery")
            if props.find("d:resourcetype/c:calendar", NS) is not None:
                return url, True
            home = props.find("c:calendar-home-set/d:href", NS)
            if home is not None and home.text:
                return _join(url, home.text.strip()), False
            principal = props.find("d:current-user-principal/d:href", NS)
            if principal is None or not principal.text:
                break
            next_url = _join(url, principal.text.strip())
            if next_url == url:
                break
            url = next_url
        raise BadUpstreamData(f"no CalDAV calendar home found from {self.settings.url}",
                              source=self.name)

    def _first_props(self, response: Any, what: str) -> Any:
        for node in self._multistatus(response, what):
            props = _ok_props(node, missing_status_ok=True)
            if props is not None:
                return props
        return etree.Element("prop")

    def _list_calendars(self, work: _Round, home: str, single: bool,
                        version: str | None = None) -> list[RemoteCalendar]:
        body = _propfind_calendars(_VERSION_PROPS.get(version or "", _ALL_VERSION_PROPS))
        response = self._request(work, home, "PROPFIND", body, depth="0" if single else "1")
        found = []
        for node in self._multistatus(response, "listing calendars"):
            href = node.findtext("d:href", "", NS).strip()
            props = _ok_props(node)
            if props is None or props.find("d:resourcetype/c:calendar", NS) is None:
                continue
            components = [c.get("name", "").upper() for c in
                          props.findall("c:supported-calendar-component-set/c:comp", NS)]
            url = _collection_url(_join(home, href))
            found.append(RemoteCalendar(
                url=url, name=(props.findtext("d:displayname", "", NS) or "").strip(),
                token=(props.findtext("d:sync-token", "", NS) or "").strip() or None,
                ctag=(props.findtext("cs:getctag", "", NS) or "").strip() or None,
                supports_events=not components or "VEVENT" in components))
        return [c for c in found if c.supports_events and self._wanted(c, single)]

    def _wanted(self, calendar: RemoteCalendar, single: bool) -> bool:
        if single or not self.settings.calendars:
            return True
        path = urlsplit(calendar.url).path
        for wanted in self.settings.calendars:
            if wanted == calendar.name or wanted in (calendar.url, calendar.url.rstrip("/")):
                return True
            wanted_path = urlsplit(wanted).path if "://" in wanted else wanted
            if _collection_url(wanted_path) == path:
                return True
        return False

    # -- the sync round --------------------------------------------------------

    def _sync_blocking(self, state: SyncState) -> ChangeSet:
        work = _Round()
        previous = state.get("calendars") if isinstance(state.get("calendars"), dict) else {}
        assert isinstance(previous, dict)
        home = state.get("home")
        single = bool(state.get("single"))
        if not isinstance(home, str):
            home, single = self._discover(work)
        version = state.get("version_prop")
        calendars = self._list_calendars(work, home, single,
                                         version if isinstance(version, str) else None)
        new_calendars: dict[str, Any] = {}
        for calendar in calendars:
            old = previous.get(calendar.url)
            new_calendars[calendar.url] = self._sync_calendar(
                work, calendar, old if isinstance(old, dict) else None)
        for gone in set(previous) - set(new_calendars):
            log.info("source %s: calendar %s is gone upstream", self.name, gone)
            # A key that is no URL was never stored by us (a hand-edited state): skip it.
            with contextlib.suppress(_BadHref):
                work.full_scopes.append(_member_key(gone, gone))
        new_state = {"home": home, "single": single, "calendars": new_calendars,
                     "version_prop": _version_prop(calendars)}
        changed = bool(work.upserted or work.deleted or work.full_scopes)
        return ChangeSet(
            state=new_state, upserted=tuple(work.upserted), deleted=tuple(work.deleted),
            full_scopes=tuple(work.full_scopes), skipped=tuple(work.skipped),
            unchanged=not changed, requests=work.requests, bytes_received=work.bytes_received,
            fetched=len(work.upserted))

    def _sync_calendar(self, work: _Round, calendar: RemoteCalendar,
                       old: dict[str, Any] | None) -> dict[str, Any]:
        """Bring one calendar up to date; returns its new state entry."""
        if old is not None and _same_version(old, calendar):
            return {**old, "name": calendar.name}
        entry: dict[str, Any] = {"name": calendar.name, "ctag": calendar.ctag}
        if old is not None and isinstance(old.get("etags"), dict):
            entry["etags"] = self._sync_by_etags(work, calendar, old["etags"])
            return entry
        if old is not None and old.get("token"):
            try:
                entry["token"] = self._sync_collection(work, calendar, str(old["token"]))
                return entry
            except (_InvalidToken, _NoSyncCollection):
                log.warning("source %s: the sync token of %s was rejected; resyncing it in full",
                            self.name, calendar.url)
        work.full_scopes.append(_member_key(calendar.url, calendar.url))
        try:
            entry["token"] = self._sync_collection(work, calendar, None)
        except _NoSyncCollection:
            log.info("source %s: %s has no sync-collection; comparing etags instead",
                     self.name, calendar.url)
            entry["etags"] = self._sync_by_etags(work, calendar, None)
        return entry

    def _sync_collection(self, work: _Round, calendar: RemoteCalendar,
                         token: str | None) -> str | None:
        """RFC 6578: changed hrefs since ``token`` (all when None); returns the new token."""
        changed: dict[str, str | None] = {}
        truncated = False
        first_token = token
        for _ in range(MAX_SYNC_PAGES):
            try:
                response = self._request(work, calendar.url, "REPORT",
                                         _sync_collection_body(token), depth="1")
            except dav_error.AuthorizationError as exc:
                # The library raises 403 itself; with this precondition it means "resync".
                if any("valid-sync-token" in p for p in exc.preconditions):
                    raise self._refused_token(calendar, first_token) from exc
                raise
            if token is not None and response.status in (400, 403, 404, 409, 410, 412):
                # 403 + DAV:valid-sync-token is the RFC; Xandikos answers 412.
                raise self._refused_token(calendar, first_token)
            if response.status in (400, 403, 405, 415, 501) or response.tree is None:
                raise _NoSyncCollection()
            truncated = False
            for node in self._multistatus(response, "sync-collection"):
                href = node.findtext("d:href", "", NS).strip()
                status = node.findtext("d:status", "", NS)
                path = _member_key(calendar.url, href)
                if not href or _collection_url(path) == _member_key(calendar.url, calendar.url):
                    truncated = truncated or " 507 " in f"{status} "
                    continue
                if " 404 " in f"{status} ":
                    changed[path] = None
                else:
                    changed[path] = _ok_text(node, "d:getetag")
            next_token = response.tree.findtext("d:sync-token", None, NS) or token
            if not truncated:
                token = next_token
                break
            if next_token == token:
                # Asking again with the same token would get the same truncated answer.
                raise BadUpstreamData(f"sync-collection of {calendar.url} was truncated (507) "
                                      "without a new sync-token to continue from",
                                      source=self.name)
            token = next_token
        if truncated:
            raise BadUpstreamData(f"sync-collection of {calendar.url} was still truncated after "
                                  f"{MAX_SYNC_PAGES} pages", source=self.name)
        self._apply_changes(work, calendar, changed)
        return token

    def _refused_token(self, calendar: RemoteCalendar, first_token: str | None) -> Exception:
        """A refused sync token: the stored one resyncs in full, but refusing the token of
        its own truncated answer in a full listing (first_token None) would do so forever."""
        if first_token is not None:
            return _InvalidToken()
        return BadUpstreamData(f"sync-collection of {calendar.url} refused the sync-token of "
                               "its own truncated answer", source=self.name)

    def _sync_by_etags(self, work: _Round, calendar: RemoteCalendar,
                       known: Mapping[str, str] | None) -> dict[str, str]:
        """Servers without sync-collection: compare every member's etag."""
        response = self._request(work, calendar.url, "PROPFIND", _PROPFIND_ETAGS, depth="1")
        current: dict[str, str] = {}
        for node in self._multistatus(response, "listing etags"):
            href = _member_key(calendar.url, node.findtext("d:href", "", NS).strip())
            props = _ok_props(node)
            if props is None or _collection_url(href) == _member_key(calendar.url, calendar.url):
                continue
            if props.find("d:resourcetype/d:collection", NS) is None:
                current[href] = (props.findtext("d:getetag", "", NS) or "").strip()
        changes: dict[str, str | None] = {
            href: etag for href, etag in current.items() if (known or {}).get(href) != etag}
        changes.update({href: None for href in set(known or {}) - set(current)})
        self._apply_changes(work, calendar, changes)
        return current

    def _apply_changes(self, work: _Round, calendar: RemoteCalendar,
                       changes: Mapping[str, str | None]) -> None:
        work.deleted.extend(href for href, etag in changes.items() if etag is None)
        wanted = [href for href, etag in changes.items() if etag is not None]
        for start in range(0, len(wanted), MULTIGET_BATCH):
            batch = wanted[start:start + MULTIGET_BATCH]
            self._multiget(work, calendar, batch)

    def _multiget(self, work: _Round, calendar: RemoteCalendar, hrefs: list[str]) -> None:
        response = self._request(work, calendar.url, "REPORT", _multiget_body(hrefs), depth="1")
        returned: set[str] = set()
        for node in self._multistatus(response, "calendar-multiget"):
            href = _member_key(calendar.url, node.findtext("d:href", "", NS).strip())
            returned.add(href)
            data = _ok_text(node, "c:calendar-data")
            if data is None:
                status = node.findtext("d:status", "", NS)
                if " 404 " in f"{status} ":
                    work.deleted.append(href)
                else:
                    work.skipped.append(SkippedItem(href, f"no calendar data ({status.strip()})"))
                continue
            work.upserted.append(Item(key=href, ical=data, etag=_ok_text(node, "d:getetag")))
        for missing in set(hrefs) - returned:
            work.skipped.append(SkippedItem(missing, "not returned by calendar-multiget"))

    # -- holds ---------------------------------------------------------------

    def _hold_calendar_url(self, wanted: str | None) -> str:
        wanted = wanted or self.settings.hold_calendar
        if not wanted:
            raise BadUpstreamData("no hold_calendar is configured for this source",
                                  source=self.name)
        if "://" in wanted:
            return _collection_url(wanted)
        work = _Round()
        home, single = self._discover(work)
        for calendar in self._list_calendars(work, home, single):
            if wanted in (calendar.name, urlsplit(calendar.url).path,
                          urlsplit(calendar.url).path.rstrip("/")):
                return calendar.url
        raise BadUpstreamData(f"hold_calendar {wanted!r} was not found on the server",
                              source=self.name)

    def _write_hold_blocking(self, hold: Hold) -> HoldRef:
        uid = hold_uid(hold.booking_id)
        url = urljoin(self._hold_calendar_url(hold.calendar), quote(uid) + ".ics")
        response = self._request(None, url, "PUT", render_hold(hold).encode("utf-8"),
                                 headers={"If-None-Match": "*",
                                          "Content-Type": "text/calendar; charset=utf-8"})
        if response.status in (200, 201, 204, 412):
            # 412: a retry after a crash; the hold is already there.
            return HoldRef(booking_id=hold.booking_id, ref=url,
                           etag=response.headers.get("ETag"))
        raise UpstreamUnavailable(f"writing hold {uid}: HTTP {response.status}",
                                  source=self.name)

    def _move_hold_blocking(self, args: tuple[HoldRef, Hold]) -> HoldRef:
        """The hold's resource changed in place to what ``hold`` says, under its href.

        GET, change with icalendar, PUT with If-Match: a 412 means another client
        changed it in between, so it is read and changed again (MOVE_TRIES in all).
        A resource that is gone is written anew at the same href (If-None-Match: *).
        An event that already says what the hold says is left alone, so a repeated
        move changes nothing (not even SEQUENCE).
        """
        ref, hold = args
        for _ in range(MOVE_TRIES):
            response = self._request(None, ref.ref, "GET")
            if response.status in (404, 410):
                headers = {"If-None-Match": "*"}
                body = render_hold(hold, sequence=1)
            elif response.status == 200:
                etag = response.headers.get("ETag")
                changed = moved_hold(_text(response), hold)
                if changed is None:  # already moved (a retry): nothing to write
                    return replace(ref, etag=etag or ref.etag)
                body, headers = changed, {"If-Match": etag} if etag else {}
            else:
                raise UpstreamUnavailable(f"reading hold {ref.ref}: HTTP {response.status}",
                                          source=self.name)
            headers["Content-Type"] = "text/calendar; charset=utf-8"
            put = self._request(None, ref.ref, "PUT", body.encode("utf-8"), headers=headers)
            if put.status in (200, 201, 204):
                return replace(ref, etag=put.headers.get("ETag"))
            if put.status not in (412, 409):
                raise UpstreamUnavailable(f"moving hold {ref.ref}: HTTP {put.status}",
                                          source=self.name)
            log.info("source %s: hold %s changed upstream while it was moved; reading it "
                     "again", self.name, ref.ref)
        raise UpstreamUnavailable(f"moving hold {ref.ref}: it kept changing upstream "
                                  f"({MOVE_TRIES} tries)", source=self.name)

    def _delete_hold_blocking(self, ref: HoldRef) -> None:
        headers = {"If-Match": ref.etag} if ref.etag else {}
        response = self._request(None, ref.ref, "DELETE", headers=headers)
        if response.status == 412:
            # Changed upstream since we wrote it (a client touched it): still ours to remove.
            response = self._request(None, ref.ref, "DELETE")
        if response.status not in (200, 204, 404, 410):
            raise UpstreamUnavailable(f"deleting hold {ref.ref}: HTTP {response.status}",
                                      source=self.name)


def hold_uid(booking_id: str) -> str:
    """Derived from the booking id, so a retried write finds the first one."""
    safe = "".join(ch for ch in booking_id if ch.isalnum() or ch in "-_")
    return f"fbproxy-hold-{safe}"


def render_hold(hold: Hold, *, sequence: int = 0) -> str:
    """The hold as an iCalendar object. Its attendees are left out on purpose: for a
    CalDAV target fbproxy sends the guest its own iMIP invitation (a server that
    schedules would send a second one for an ATTENDEE)."""
    calendar = Calendar()
    calendar.add("PRODID", "-//fbproxy//hold//EN")
    calendar.add("VERSION", "2.0")
    event = Event()
    event.add("UID", hold_uid(hold.booking_id))
    event.add("DTSTAMP", hold.created)
    event.add("DTSTART", hold.start)
    event.add("DTEND", hold.end)
    event.add("SUMMARY", hold.title)
    event.add("STATUS", hold.status)
    event.add("TRANSP", "OPAQUE")
    if sequence:
        event.add("SEQUENCE", sequence)
    if hold.description:
        event.add("DESCRIPTION", hold.description)
    if hold.location:
        event.add("LOCATION", hold.location)
    if hold.url:
        event.add("URL", hold.url)
    event.add(HOLD_MARKER, hold.booking_id)
    calendar.add_component(event)
    return str(calendar.to_ical().decode("utf-8"))


def moved_hold(text: str, hold: Hold) -> str | None:
    """The stored hold ``text`` changed to what ``hold`` says, SEQUENCE one higher; None
    when it says that already. UID, marker and anything else stored (a location or
    link the hold does not name, a client's alarm) are kept. A resource that cannot be
    read as an event becomes the hold as rendered anew."""
    try:
        calendar = Calendar.from_ical(text)
        event = next(e for e in calendar.walk("VEVENT") if "RECURRENCE-ID" not in e)
    except (*UNREADABLE_ITEM, IndexError, StopIteration):
        return render_hold(hold, sequence=1)
    wanted: dict[str, Any] = {"DTSTART": hold.start, "DTEND": hold.end, "SUMMARY": hold.title,
                              "STATUS": hold.status, "DESCRIPTION": hold.description}
    if hold.location:
        wanted["LOCATION"] = hold.location
    if hold.url:
        wanted["URL"] = hold.url
    if all(_same_value(event, name, value) for name, value in wanted.items()):
        return None
    try:
        sequence = int(event.get("SEQUENCE", 0)) + 1
    except (TypeError, ValueError):
        sequence = 1
    for name, value in [*wanted.items(), ("SEQUENCE", sequence),
                        ("DTSTAMP", datetime.now(UTC))]:
        event.pop(name, None)
        if value != "":
            event.add(name, value)
    event.pop("DURATION", None)  # DTEND says it now; both would be invalid
    return str(calendar.to_ical().decode("utf-8"))


def _same_value(event: Any, name: str, value: Any) -> bool:
    if name not in event:
        return bool(value == "")
    if isinstance(value, datetime):
        stored = getattr(event[name], "dt", None)
        return isinstance(stored, datetime) and stored.tzinfo is not None and \
            bool(stored == value)
    return bool(str(event[name]) == value)


def _text(response: Any) -> str:
    """A GET's iCalendar body as received (caldav keeps a body that is not XML as
    ``_raw_body``; ``raw`` is its text with line endings normalised)."""
    body = getattr(response, "_raw_body", b"")
    if isinstance(body, bytes) and body:
        return body.decode("utf-8", errors="replace")
    return str(response.raw or "")


def _version_prop(calendars: list[RemoteCalendar]) -> str | None:
    """Which single property tells this server's calendars apart from their last state."""
    if calendars and all(c.token for c in calendars):
        return "sync-token"
    if calendars and all(c.ctag for c in calendars):
        return "getctag"
    return None


def _same_version(old: Mapping[str, Any], calendar: RemoteCalendar) -> bool:
    if calendar.token and old.get("token"):
        return bool(old.get("token") == calendar.token)
    if calendar.ctag and old.get("ctag"):
        return bool(old.get("ctag") == calendar.ctag)
    return False


def _ok_props(node: Any, *, missing_status_ok: bool = False) -> Any:
    """The <prop> of a response's 200 propstat (discovery also takes one without a status)."""
    for propstat in node.findall("d:propstat", NS):
        status = propstat.findtext("d:status", "", NS)
        if " 200 " in f"{status} " or (missing_status_ok and not status):
            prop = propstat.find("d:prop", NS)
            if prop is not None:
                return prop
    return None


def _ok_text(node: Any, path: str) -> str | None:
    props = _ok_props(node)
    if props is None:
        return None
    element = props.find(path, NS)
    return element.text if element is not None and element.text else None


def _member_key(base: str, href: str) -> str:
    """One spelling per resource: the path, percent-encoded the same way every time."""
    path = urlsplit(_join(base, href)).path  # split once already: cannot fail again
    return quote(unquote(path), safe="/@:+~!$&'()*,;=")


def _join(base: str, href: str) -> str:
    """``href`` resolved against ``base``; _BadHref when it is not a URL."""
    try:
        return urljoin(base, href)
    except ValueError as exc:  # "http://[": a broken IPv6 literal
        raise _BadHref(f"{href[:120]!r}: {exc}") from exc


def _collection_url(url: str) -> str:
    return url if url.endswith("/") else url + "/"


def _response_size(response: Any) -> int:
    try:
        return int(response.headers.get("Content-Length", 0))
    except (TypeError, ValueError):
        return 0


def _rate_limited(exc: dav_error.RateLimitError) -> str:
    """The refusal with its status and Retry-After (the library raises it for 429 and 503)."""
    status = getattr(exc, "status", None)
    message = f"rate limited by the server (HTTP {status})" if status else \
        "rate limited by the server"
    seconds = getattr(exc, "retry_after_seconds", None)
    if seconds is not None:
        message += f", Retry-After: {seconds:g} s"
    elif getattr(exc, "retry_after", None):
        message += f", Retry-After: {exc.retry_after}"
    return message


def _is_network_error(exc: Exception) -> bool:
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {"ConnectionError", "Timeout", "ReadTimeout", "ConnectTimeout",
                         "RequestException", "TimeoutError"})
