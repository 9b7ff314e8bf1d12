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
import logging
import ssl
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
    SyncState,
    UpstreamUnavailable,
)
from adapters.ics_feed import (
    MAX_LINE_CHARS,
    FeedContents,
    read_feed,
    split_feed,
)

# The splitter lives in adapters.ics_feed (pure text work); these names stay here too.
__all__ = ["MAX_LINE_CHARS", "FeedContents", "IcsAdapter", "IcsSettings", "http_url",
           "read_feed", "retry_after_seconds", "split_feed"]

log = logging.getLogger("fbproxy.ics")

USER_AGENT = "fbproxy/0.1 (+https://github.com/fbproxy/fbproxy)"
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
    """Reads one ICS file or URL.

    ``executor`` is where a changed feed is split into items (CPU work, pure text):
    the server hands its expansion worker processes, so a big feed's splitting
    never holds the event loop's GIL; None is the event loop's default thread pool.
    """

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
        known = state.get("sha256")
        if self.settings.is_remote:
            body, validators = await self._fetch_url(state)
            if body is None:
                return ChangeSet(state={**state, **validators}, unchanged=True)
            job = functools.partial(_split_body, body, known)
        else:
            validators, changed = await self._stat_file(state)
            if not changed:
                return ChangeSet(state={**state, **validators}, unchanged=True)
            job = functools.partial(_split_file, Path(self.settings.url),
                                    self.settings.max_bytes, known)
        loop = asyncio.get_running_loop()
        try:
            digest, size, contents = await loop.run_in_executor(self._executor, job)
        except BadUpstreamData as exc:
            exc.source = self.name
            raise
        except OSError as exc:
            raise UpstreamUnavailable(f"cannot read {self.settings.url}: {exc.strerror}",
                                      source=self.name) from exc
        if size > self.settings.max_bytes:
            raise BadUpstreamData(f"{self.settings.url} grew over max_bytes "
                                  f"({self.settings.max_bytes})", source=self.name)
        new_state = {**validators, "sha256": digest}
        if contents is None:
            return ChangeSet(state=new_state, unchanged=True, bytes_received=size)
        self._report(contents)
        return ChangeSet(state=new_state, upserted=tuple(contents.items), full=True,
                         skipped=tuple(contents.skipped), bytes_received=size)

    def _report(self, contents: FeedContents) -> None:
        """What the feed held besides events, once per changed feed (skipped items
        are logged by the sync round with the rest)."""
        for warning in contents.warnings:
            log.warning("source %s: %s", self.name, warning)
        if contents.ignored:
            kinds = ", ".join(f"{count} {kind}" for kind, count in sorted(contents.ignored.items()))
            log.info("source %s: ignored %s (not busy time)", self.name, kinds)

    async def close(self) -> None:
        """The HTTP session is shared and owned by the app."""

    # -- local files ---------------------------------------------------------

    async def _stat_file(self, state: SyncState) -> tuple[dict[str, Any], bool]:
        """The file's validators, and whether they differ from the stored state's."""
        path = Path(self.settings.url)
        try:
            info = await asyncio.to_thread(path.stat)
        except OSError as exc:
            raise UpstreamUnavailable(f"cannot read {path}: {exc.strerror}",
                                      source=self.name) from exc
        validators: dict[str, Any] = {"mtime_ns": info.st_mtime_ns, "size": info.st_size}
        if state.get("mtime_ns") == info.st_mtime_ns and state.get("size") == info.st_size:
            return validators, False
        if info.st_size > self.settings.max_bytes:
            raise BadUpstreamData(f"{path} is {info.st_size} bytes, over max_bytes "
                                  f"({self.settings.max_bytes})", source=self.name)
        return validators, True

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


def _split_body(body: bytes, known: object) -> tuple[str, int, FeedContents | None]:
    """The feed's digest, size and items; no items when the digest is ``known``."""
    digest = hashlib.sha256(body).hexdigest()
    return digest, len(body), None if digest == known else read_feed(body)


def _split_file(path: Path, limit: int, known: object) -> tuple[str, int, FeedContents | None]:
    """``_split_body`` of a file, read where it is split (the executor's worker): only
    the feeds being split are in memory, not every changed one waiting for a worker
    (ten feeds changing together held ten). Over ``limit`` bytes: no digest or items."""
    with path.open("rb") as handle:
        body = handle.read(limit + 1)
    if len(body) > limit:
        return "", len(body), None
    return _split_body(body, known)


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
