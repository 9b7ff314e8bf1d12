"""ICS sources: local files and http(s)/webcal URLs.

A feed has no sync token, so every changed feed is a full snapshot: it is
split into one item per UID (master and overrides together) and the server
re-expands only the items whose content changed. Unchanged feeds cost a stat
(files) or a conditional GET answered with 304 (URLs).
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import functools
import hashlib
import re
import ssl
import zoneinfo
from collections.abc import Iterable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

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
# Bounds for hostile feeds, far beyond anything a calendar app writes: parsing
# past them costs seconds of CPU and hundreds of MiB (the item is skipped).
MAX_NESTING = 8  # VCALENDAR > VEVENT > VALARM is 3
MAX_COMPONENTS_PER_ITEM = 2000  # a master and its RECURRENCE-ID overrides
MAX_ZONE_LINES = 2000  # a real VTIMEZONE has tens
# A longer content line (a giant DESCRIPTION or inline ATTACH) is dropped: busy
# time never needs it, and parsing it cost seconds and ~150 MiB at 20 MB.
MAX_LINE_CHARS = 256 * 1024
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class IcsSettings:
    url: str
    timeout_seconds: float = 30.0
    max_bytes: int = 20 * 1024 * 1024
    max_redirects: int = 5
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None

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
        self._ssl = ssl.create_default_context(cafile=settings.ca_file) \
            if settings.ca_file else True

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
                url, headers=headers, timeout=timeout, ssl=self._ssl,
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
        retry_after = retry_after_seconds(response.headers.get("Retry-After", ""))
        wish = f" (Retry-After: {retry_after:g} s)" if retry_after is not None else ""
        raise UpstreamUnavailable(f"HTTP {status} {response.reason or ''}".strip() + wish,
                                  source=self.name, retry_after=retry_after)

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

    This works on content lines, not on parsed objects: parsing is the costly
    part, and only items whose text changed are ever parsed (by expansion).
    Each item keeps its upstream lines verbatim, wrapped in a VCALENDAR with the
    feed's X-WR-TIMEZONE and the VTIMEZONEs it needs.

    A body that is not iCalendar at all (an HTML login page, an empty answer) or
    that was cut short must fail: reading it as "a calendar with fewer events"
    would erase busy blocks.
    """
    text = _decode(body).lstrip("\ufeff \t\r\n")
    if not text[:15].upper().startswith("BEGIN:VCALENDAR"):
        raise BadUpstreamData(f"not an iCalendar feed ({_describe(text)})")
    feed = _FeedParts()
    for component in _top_level_components(_unfold(text), feed):
        kind = component[0][6:].strip().upper()
        if kind == "VTIMEZONE":
            feed.zones[_property(component, "TZID") or ""] = component
        elif kind in ("VEVENT", "VFREEBUSY"):
            feed.groups.setdefault(_component_key(component), []).append(component)
    items: list[Item] = []
    for key, members in feed.groups.items():
        problem = feed.problem(members)
        if problem:
            feed.skipped.append(SkippedItem(key, problem))
        else:
            items.append(feed.item(key, members))
    return items, feed.skipped


def _safe(text: str, limit: int = 40) -> str:
    """Upstream text for an error message (it reaches the API and status page):
    letters, digits and spaces only, so it can carry no markup or content line."""
    return "'" + re.sub(r"[^A-Za-z0-9 ]", ".", text[:limit]) + "'"


def _describe(text: str) -> str:
    if not text:
        return "the body is empty"
    if text[:200].lower().lstrip().startswith(("<!doctype html", "<html")):
        return "an HTML page"
    return f"starts with {_safe(text)}"


def _decode(body: bytes) -> str:
    """UTF-8 (RFC 5545); a UTF-16 export (some Windows tools) is read by its BOM."""
    if body[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return body.decode("utf-16", errors="replace")
    return body.decode("utf-8", errors="replace")


@dataclass
class _FeedParts:
    zones: dict[str, list[str]] = field(default_factory=dict)
    groups: dict[str, list[list[str]]] = field(default_factory=dict)
    header: list[str] = field(default_factory=list)
    skipped: list[SkippedItem] = field(default_factory=list)

    def problem(self, members: list[list[str]]) -> str | None:
        """Why an item is too costly to read, or None."""
        if len(members) > MAX_COMPONENTS_PER_ITEM:
            return (f"{len(members)} components share this UID "
                    f"(more than {MAX_COMPONENTS_PER_ITEM})")
        for tzid in sorted({tz for member in members for tz in _tzids(member)}):
            zone = self.zones.get(tzid, ())
            if len(zone) > MAX_ZONE_LINES and tzid not in _iana_zones():
                return f"its VTIMEZONE {tzid[:60]!r} has {len(zone)} lines " \
                       f"(more than {MAX_ZONE_LINES})"
        return None

    def item(self, key: str, members: list[list[str]]) -> Item:
        lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//fbproxy//item//EN", *self.header]
        for tzid in sorted({tz for member in members for tz in _tzids(member)}):
            # A zone Python knows by name needs no definition: parsing one is
            # the slowest part of reading an item, and the IANA rules win anyway.
            if tzid in self.zones and tzid not in _iana_zones():
                lines += self.zones[tzid]
        for member in members:
            lines += member
        lines.append("END:VCALENDAR")
        return Item(key=key, ical="\r\n".join(lines) + "\r\n")


def _unfold(text: str) -> list[str]:
    """RFC 5545 §3.1: a line starting with a space or tab continues the previous one."""
    # Continuations are joined once per line: appending each to a growing
    # string was quadratic (a 20 MB folded DESCRIPTION never finished).
    lines: list[list[str]] = []
    for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if raw[:1] in (" ", "\t") and lines:
            lines[-1].append(raw[1:])
        elif raw:
            lines.append([raw])
    return ["".join(parts) for parts in lines]


def _top_level_components(lines: list[str], feed: _FeedParts) -> Iterable[list[str]]:
    """The lines of each component directly inside a VCALENDAR, nesting checked."""
    stack: list[str] = []
    current: list[str] = []
    too_deep = False
    for line in lines:
        if len(line) > MAX_LINE_CHARS:
            continue
        upper = line[:20].upper()
        if upper.startswith("BEGIN:"):
            stack.append(line[6:].strip().upper())
            if len(stack) == 1 and stack[0] != "VCALENDAR":
                raise BadUpstreamData(f"{_safe(line)} outside a VCALENDAR")
            if len(stack) > MAX_NESTING:
                # Nesting is still checked, but the component is not kept:
                # the parser's cost grows with the depth.
                too_deep = True
                continue
        elif upper.startswith("END:"):
            name = line[4:].strip().upper()
            if not stack or stack[-1] != name:
                open_name = stack[-1] if stack else "nothing"
                raise BadUpstreamData(f"END:{_safe(name)} does not close {_safe(open_name)}")
            stack.pop()
            if stack and len(stack) < MAX_NESTING:
                current.append(line)
            if len(stack) == 1:
                if too_deep:
                    feed.skipped.append(SkippedItem(
                        _component_key(current),
                        f"components nested more than {MAX_NESTING} deep"))
                else:
                    yield current
                current, too_deep = [], False
            continue
        if len(stack) > MAX_NESTING:
            continue
        if len(stack) >= 2:
            current.append(line)
        elif len(stack) == 1 and upper.startswith("X-WR-TIMEZONE"):
            feed.header = [line]
        elif not stack:
            raise BadUpstreamData(f"content after END:VCALENDAR: {_safe(line)}")
    if stack:
        raise BadUpstreamData(f"the feed is cut short: {_safe(stack[-1])} is never closed")


def _property(component: list[str], name: str) -> str | None:
    """The value of a property of the component itself (not of a nested VALARM)."""
    depth = 0
    for line in component[1:-1]:
        upper = line[:len(name) + 1].upper()
        if line[:6].upper() == "BEGIN:":
            depth += 1
        elif line[:4].upper() == "END:":
            depth -= 1
        elif depth == 0 and upper in (f"{name}:", f"{name};"):
            return line.partition(":")[2].strip()
    return None


def _component_key(component: list[str]) -> str:
    uid = _property(component, "UID")
    if uid and len(uid) <= MAX_KEY_LENGTH:
        return uid
    material = uid if uid else "\n".join(component)
    return "sha256-" + hashlib.sha256(material.encode()).hexdigest()


_TZID = re.compile(r';TZID=(?:"([^"]*)"|([^;:]*))', re.IGNORECASE)


def _tzids(component: list[str]) -> set[str]:
    return {quoted or plain for line in component for quoted, plain in _TZID.findall(line)}


@functools.cache
def _iana_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def retry_after_seconds(value: str) -> float | None:
    """Retry-After as seconds: a number, or an HTTP date (RFC 9110 §10.2.3)."""
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        return float(text)
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())
