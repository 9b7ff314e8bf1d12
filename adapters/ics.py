"""ICS sources: local files and http(s)/webcal URLs.

A feed has no sync token, so every changed feed is a full snapshot: it is
split into one item per UID (master and overrides together) and the server
re-expands only the items whose content changed. Unchanged feeds cost a stat
(files) or a conditional GET answered with 304 (URLs).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import Iterable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import x_wr_timezone
from icalendar import Calendar, Component

from adapters.base import (
    AuthExpired,
    BadUpstreamData,
    Capabilities,
    ChangeSet,
    Item,
    SkippedItem,
    SyncState,
    UpstreamUnavailable,
)

USER_AGENT = "fbproxy/0.1 (+https://github.com/fbproxy/fbproxy)"
MAX_KEY_LENGTH = 200
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class IcsSettings:
    url: str
    timeout_seconds: float = 30.0
    max_bytes: int = 20 * 1024 * 1024
    max_redirects: int = 5
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def is_remote(self) -> bool:
        return urlsplit(self.url).scheme.lower() in ("http", "https", "webcal", "webcals")


def http_url(url: str) -> str:
    """webcal:// and webcals:// are https:// (feeds that publish webcal serve TLS)."""
    parts = urlsplit(url)
    if parts.scheme.lower() in ("webcal", "webcals"):
        return urlunsplit(("https", *parts[1:]))
    return url


class IcsAdapter:
    """Reads one ICS file or URL."""

    capabilities = Capabilities(incremental=False, push=False, holds=False)

    def __init__(self, name: str, settings: IcsSettings, *, session: aiohttp.ClientSession | None,
                 executor: Executor | None = None) -> None:
        self.name = name
        self.settings = settings
        self._session = session
        self._executor = executor

    async def sync(self, state: SyncState) -> ChangeSet:
        if self.settings.is_remote:
            body, validators = await self._fetch_url(state)
        else:
            body, validators = await self._read_file(state)
        if body is None:
            return ChangeSet(state={**state, **validators}, unchanged=True)
        digest = hashlib.sha256(body).hexdigest()
        new_state = {**validators, "sha256": digest}
        if digest == state.get("sha256"):
            return ChangeSet(state=new_state, unchanged=True, bytes_received=len(body))
        loop = asyncio.get_running_loop()
        try:
            items, skipped = await loop.run_in_executor(self._executor, split_feed, body)
        except BadUpstreamData as exc:
            exc.source = self.name
            raise
        return ChangeSet(state=new_state, upserted=tuple(items), full=True,
                         skipped=tuple(skipped), bytes_received=len(body))

    async def close(self) -> None:
        """The HTTP session is shared and owned by the app."""

    # -- local files ---------------------------------------------------------

    async def _read_file(self, state: SyncState) -> tuple[bytes | None, dict[str, Any]]:
        path = Path(self.settings.url)
        try:
            info = await asyncio.to_thread(path.stat)
        except OSError as exc:
            raise UpstreamUnavailable(f"cannot read {path}: {exc.strerror}",
                                      source=self.name) from exc
        validators: dict[str, Any] = {"mtime_ns": info.st_mtime_ns, "size": info.st_size}
        if state.get("mtime_ns") == info.st_mtime_ns and state.get("size") == info.st_size:
            return None, validators
        if info.st_size > self.settings.max_bytes:
            raise BadUpstreamData(f"{path} is {info.st_size} bytes, over max_bytes "
                                  f"({self.settings.max_bytes})", source=self.name)
        body = await asyncio.to_thread(_read_bounded, path, self.settings.max_bytes)
        if body is None:
            raise BadUpstreamData(f"{path} grew over max_bytes ({self.settings.max_bytes})",
                                  source=self.name)
        return body, validators

    # -- URLs --------------------------------------------------------------

    async def _fetch_url(self, state: SyncState) -> tuple[bytes | None, dict[str, Any]]:
        if self._session is None:
            raise UpstreamUnavailable("no HTTP session", source=self.name)
        url = http_url(self.settings.url)
        headers = {"Accept": "text/calendar, */*;q=0.1", "User-Agent": USER_AGENT}
        if isinstance(state.get("etag"), str):
            headers["If-None-Match"] = str(state["etag"])
        if isinstance(state.get("last_modified"), str):
            headers["If-Modified-Since"] = str(state["last_modified"])
        if self.settings.username:
            # aiohttp drops this header when a redirect leaves the origin.
            headers["Authorization"] = _basic_auth(self.settings.username,
                                                   self.settings.password or "")
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout_seconds)
        try:
            async with self._session.get(
                url, headers=headers, timeout=timeout,
                max_redirects=self.settings.max_redirects,
            ) as response:
                self._check_status(response)
                validators = _validators(response, state)
                if response.status == 304:
                    return None, validators
                body = await self._read_limited(response)
                return body, validators
        except aiohttp.TooManyRedirects as exc:
            raise UpstreamUnavailable(
                f"more than {self.settings.max_redirects} redirects", source=self.name) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            reason = str(exc) or type(exc).__name__
            raise UpstreamUnavailable(f"fetching {url} failed: {reason}",
                                      source=self.name) from exc

    def _check_status(self, response: aiohttp.ClientResponse) -> None:
        status = response.status
        if status in (200, 304):
            return
        if status in (401, 403):
            raise AuthExpired(f"HTTP {status}: the feed refused our credentials",
                              source=self.name)
        raise UpstreamUnavailable(f"HTTP {status} {response.reason or ''}".strip(),
                                  source=self.name)

    async def _read_limited(self, response: aiohttp.ClientResponse) -> bytes:
        limit = self.settings.max_bytes
        if response.content_length is not None and response.content_length > limit:
            raise BadUpstreamData(f"feed is {response.content_length} bytes, over max_bytes "
                                  f"({limit})", source=self.name)
        chunks: list[bytes] = []
        received = 0
        async for chunk in response.content.iter_chunked(_CHUNK):
            received += len(chunk)
            if received > limit:
                raise BadUpstreamData(f"feed is over max_bytes ({limit})", source=self.name)
            chunks.append(chunk)
        return b"".join(chunks)


def _basic_auth(username: str, password: str) -> str:
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


def _validators(response: aiohttp.ClientResponse, state: SyncState) -> dict[str, Any]:
    """Keep the old validators on a 304 that repeats none."""
    validators: dict[str, Any] = {}
    etag = response.headers.get("ETag") or state.get("etag")
    modified = response.headers.get("Last-Modified") or state.get("last_modified")
    if etag:
        validators["etag"] = etag
    if modified:
        validators["last_modified"] = modified
    return validators


def _read_bounded(path: Path, limit: int) -> bytes | None:
    with path.open("rb") as handle:
        body = handle.read(limit + 1)
    return None if len(body) > limit else body


def split_feed(body: bytes) -> tuple[list[Item], list[SkippedItem]]:
    """Split a feed into one item per UID; raise BadUpstreamData if it is no calendar.

    A body that is not iCalendar at all (an HTML login page, an empty answer)
    must fail: reading it as "a calendar with no events" would erase every
    busy block of the source.
    """
    text = body.decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")
    if not text[:15].upper().startswith("BEGIN:VCALENDAR"):
        raise BadUpstreamData(f"not an iCalendar feed (starts with {text[:40]!r})")
    try:
        calendars = Calendar.from_ical(text, multiple=True)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise BadUpstreamData(f"not valid iCalendar: {exc}") from exc
    if not calendars:
        raise BadUpstreamData("feed holds no VCALENDAR")
    groups: dict[str, list[Component]] = {}
    zones: dict[str, Component] = {}
    skipped: list[SkippedItem] = []
    for calendar in calendars:
        try:
            calendar = x_wr_timezone.to_standard(calendar)
        except (ValueError, KeyError, TypeError) as exc:
            skipped.append(SkippedItem("X-WR-TIMEZONE", f"ignored: {exc}"))
        for component in calendar.subcomponents:
            if component.name == "VTIMEZONE":
                zones[str(component.get("TZID", ""))] = component
            elif component.name in ("VEVENT", "VFREEBUSY"):
                groups.setdefault(_item_key(component), []).append(component)
    return [_item(key, members, zones) for key, members in groups.items()], skipped


def _item_key(component: Component) -> str:
    uid = str(component.get("UID", "")).strip()
    if uid and len(uid) <= MAX_KEY_LENGTH:
        return uid
    material = uid.encode() if uid else component.to_ical()
    return "sha256-" + hashlib.sha256(material).hexdigest()


def _item(key: str, members: list[Component], zones: dict[str, Component]) -> Item:
    calendar = Calendar()
    calendar.add("PRODID", "-//fbproxy//item//EN")
    calendar.add("VERSION", "2.0")
    for tzid in sorted(_referenced_zones(members)):
        if tzid in zones:
            calendar.add_component(zones[tzid])
    for member in members:
        calendar.add_component(member)
    return Item(key=key, ical=calendar.to_ical().decode("utf-8"))


def _referenced_zones(members: Iterable[Component]) -> set[str]:
    found: set[str] = set()
    for member in members:
        for _, value in member.property_items(recursive=True, sorted=False):
            params = getattr(value, "params", None)
            if params and "TZID" in params:
                found.add(str(params["TZID"]))
    return found

