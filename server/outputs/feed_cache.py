"""The rendered-feed cache: owned here so the routes (web) and a config reload
(reload, which empties it) both reach it without importing each other."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from server.kit.single_flight import SingleFlight
from server.outputs.feeds import EventBytes

# Per feed (calendar, kind, detail): its last render (see RenderedFeed).
FEEDS: web.AppKey[dict[tuple[str, str, str], RenderedFeed]] = web.AppKey("feeds", dict)
# Renders in flight: requests missing the same feed at once share one.
FEED_RENDERS: web.AppKey[SingleFlight[tuple[object, ...], CachedFeed]] = web.AppKey(
    "feed_renders", SingleFlight)


@dataclass(frozen=True, slots=True)
class CachedFeed:
    body: bytes
    etag: str
    last_modified: int


@dataclass(frozen=True, slots=True)
class RenderedFeed:
    """A feed's last render: served while ``key`` (busy generation, window) holds; when it
    moves, the body is made again only if ``content`` (what went into it) changed, and
    then from ``events``, its VEVENTs as written."""

    key: tuple[object, ...]
    content: object
    feed: CachedFeed
    events: EventBytes
