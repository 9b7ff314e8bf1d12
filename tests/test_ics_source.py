"""ICS sources end to end: a real local HTTP server and real files, through the sync loop."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from adapters.base import BadUpstreamData, UpstreamUnavailable
from adapters.ics import IcsAdapter, IcsSettings, http_url
from tests.conftest import event, ics

GOOD = ics(
    event("a", "20261126T100000Z", "20261126T110000Z"),
    event("b", "20261127T100000Z", "20261127T120000Z"),
)
CHANGED = ics(
    event("a", "20261126T100000Z", "20261126T110000Z"),
    event("b", "20261127T140000Z", "20261127T150000Z"),
    event("c", "20261128T090000Z", "20261128T093000Z"),
)


@pytest.fixture
def expansion_workers() -> int:
    """This module's configs expand in worker processes (see tests/conftest.py)."""
    return 2


@dataclass
class FeedServer:
    """A feed host whose answers the test controls; counts what it was asked."""

    body: bytes = GOOD.encode()
    status: int = 200
    use_etag: bool = True
    chunked: bool = False
    credentials: tuple[str, str] | None = None
    requests: list[dict[str, str]] = field(default_factory=list)
    full_responses: int = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(dict(request.headers))
        if self.credentials and not self._authorized(request):
            return web.Response(status=401, headers={"WWW-Authenticate": "Basic"})
        if self.status != 200:
            return web.Response(status=self.status)
        etag = '"' + hashlib.sha256(self.body).hexdigest()[:16] + '"'
        if self.use_etag and request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        self.full_responses += 1
        headers = {"ETag": etag} if self.use_etag else {}
        if not self.chunked:
            return web.Response(body=self.body, headers=headers, content_type="text/calendar")
        response = web.StreamResponse(headers=headers)
        response.enable_chunked_encoding()
        await response.prepare(request)
        for offset in range(0, len(self.body), 65536):
            await response.write(self.body[offset:offset + 65536])
        await response.write_eof()
        return response

    def _authorized(self, request: web.Request) -> bool:
        assert self.credentials is not None
        expected = base64.b64encode(":".join(self.credentials).encode()).decode()
        return request.headers.get("Authorization") == f"Basic {expected}"


@pytest.fixture
async def feed(aiohttp_server: Callable[..., Any]) -> tuple[FeedServer, str]:
    server_state = FeedServer()
    app = web.Application()
    app.router.add_get("/cal.ics", server_state.handle)
    app.router.add_get("/hop/{n}", _redirect_chain)
    server = await aiohttp_server(app)
    return server_state, str(server.make_url("/cal.ics"))


async def _redirect_chain(request: web.Request) -> web.Response:
    raise web.HTTPFound(f"/hop/{int(request.match_info['n']) + 1}")


async def _busy(client: Any, start: str = "2026-11-25", end: str = "2026-12-01") -> list[Any]:
    response = await client.get(
        f"/api/v1/freebusy?calendar=me&start={start}&end={end}",
        headers={"Authorization": "Bearer s3cret-s3cret-s3cret-0001"})
    assert response.status == 200, await response.text()
    body = await response.json()
    return [(b["start"], b["end"], b["status"]) for b in body["busy"]]


async def test_url_source_syncs_and_revalidates_with_304(feed, make_config, serve) -> None:
    state, url = feed
    client, runtime = await serve(make_config([{"name": "f", "kind": "ics", "url": url}]))
    [first] = await runtime.sync.run_all_once()
    assert first.ok and first.expanded == 2
    assert await _busy(client) == [
        ("2026-11-26T10:00:00Z", "2026-11-26T11:00:00Z", "busy"),
        ("2026-11-27T10:00:00Z", "2026-11-27T12:00:00Z", "busy"),
    ]
    [second] = await runtime.sync.run_all_once()
    assert second.ok and second.unchanged
    assert "If-None-Match" in state.requests[-1]
    assert state.full_responses == 1, "a 304 round must not download the feed again"

    state.body = CHANGED.encode()
    [third] = await runtime.sync.run_all_once()
    assert third.ok and not third.unchanged
    assert third.expanded == 2, "only the changed and the new item are re-expanded"
    assert await _busy(client) == [
        ("2026-11-26T10:00:00Z", "2026-11-26T11:00:00Z", "busy"),
        ("2026-11-27T14:00:00Z", "2026-11-27T15:00:00Z", "busy"),
        ("2026-11-28T09:00:00Z", "2026-11-28T09:30:00Z", "busy"),
    ]


async def test_same_body_without_validators_costs_no_parsing(feed, make_config, serve) -> None:
    state, url = feed
    state.use_etag = False
    _, runtime = await serve(make_config([{"name": "f", "kind": "ics", "url": url}]))
    await runtime.sync.run_all_once()
    [again] = await runtime.sync.run_all_once()
    assert again.ok and again.unchanged and again.expanded == 0


async def test_malformed_feed_keeps_last_good_data_then_recovers(feed, make_config, serve) -> None:
    state, url = feed
    client, runtime = await serve(make_config([{"name": "f", "kind": "ics", "url": url}]))
    await runtime.sync.run_all_once()
    good = await _busy(client)
    for broken in (b"<html><body>Please log in</body></html>", b"", b"BEGIN:VCALENDAR\r\n\x00\x01"):
        state.body = broken
        [outcome] = await runtime.sync.run_all_once()
        assert not outcome.ok
        assert await _busy(client) == good, f"bad body {broken[:20]!r} must not erase data"
    record = (await runtime.store.sources())[0]
    assert record.consecutive_failures == 3 and record.last_error
    state.body = CHANGED.encode()
    [recovered] = await runtime.sync.run_all_once()
    assert recovered.ok
    assert len(await _busy(client)) == 3
    assert (await runtime.store.sources())[0].last_error is None


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_feed_over_max_bytes_is_refused(feed, make_config, serve, chunked: bool) -> None:
    state, url = feed
    config = make_config([{"name": "f", "kind": "ics", "url": url, "max_bytes": "10KiB"}])
    client, runtime = await serve(config)
    await runtime.sync.run_all_once()
    good = await _busy(client)
    state.body = ics(*[event(f"x{i}", "20261201T100000Z", "20261201T110000Z")
                       for i in range(200)]).encode()
    state.chunked = chunked
    assert len(state.body) > 10 * 1024
    [outcome] = await runtime.sync.run_all_once()
    assert not outcome.ok and "max_bytes" in (outcome.error or "")
    assert await _busy(client) == good


async def test_http_errors_and_auth(feed, make_config, serve) -> None:
    state, url = feed
    config = make_config([{"name": "f", "kind": "ics", "url": url, "username": "alex",
                           "password": "right-password"}])
    _, runtime = await serve(config)
    state.credentials = ("alex", "right-password")
    [ok] = await runtime.sync.run_all_once()
    assert ok.ok
    state.credentials = ("alex", "changed-password")
    [refused] = await runtime.sync.run_all_once()
    assert not refused.ok
    record = (await runtime.store.sources())[0]
    assert record.needs_reauth and "credentials" in (record.last_error or "")
    state.credentials = None
    state.status = 503
    [unavailable] = await runtime.sync.run_all_once()
    assert not unavailable.ok and "503" in (unavailable.error or "")
    assert not (await runtime.store.sources())[0].needs_reauth


async def test_redirect_loops_are_cut(feed, make_config, serve) -> None:
    _, url = feed
    looping = url.replace("/cal.ics", "/hop/0")
    _, runtime = await serve(make_config([{"name": "f", "kind": "ics", "url": looping}]))
    [outcome] = await runtime.sync.run_all_once()
    assert not outcome.ok and "redirects" in (outcome.error or "")


async def test_unreachable_source_does_not_stop_the_others(tmp_path, make_config, serve) -> None:
    good_file = tmp_path / "good.ics"
    good_file.write_text(GOOD)
    config = make_config([
        {"name": "down", "kind": "ics", "url": "http://127.0.0.1:9/never.ics", "timeout": "2s"},
        {"name": "good", "kind": "ics", "url": str(good_file)},
    ], [{"name": "me", "sources": ["good"], "secret": "s3cret-s3cret-s3cret-0001"},
        {"name": "both", "sources": ["down", "good"], "secret": "owner-owner-owner-0001"}],
        admin_secret="admin-admin-admin-0001")
    client, runtime = await serve(config)
    outcomes = {o.source: o for o in await runtime.sync.run_all_once()}
    assert not outcomes["down"].ok and outcomes["good"].ok
    assert len(await _busy(client)) == 2
    # A calendar that merges the source that never synced is refused, not shown as free.
    response = await client.get("/api/v1/freebusy?calendar=both",
                                headers={"Authorization": "Bearer owner-owner-owner-0001"})
    assert response.status == 503 and response.headers["Retry-After"].isdigit()
    assert "'down' has never synced" in (await response.json())["error"]
    status = await client.get("/api/v1/status",
                              headers={"Authorization": "Bearer admin-admin-admin-0001"})
    sources = {s["name"]: s for s in (await status.json())["sources"]}
    assert sources["down"]["stale"] is True and sources["down"]["last_success"] is None
    assert sources["good"]["stale"] is False


async def test_local_file_is_reread_only_when_it_changes(tmp_path, make_config, serve) -> None:
    path = tmp_path / "cal.ics"
    path.write_text(GOOD)
    client, runtime = await serve(make_config([{"name": "f", "kind": "ics", "url": "cal.ics"}]))
    [first] = await runtime.sync.run_all_once()
    assert first.ok and first.expanded == 2
    [second] = await runtime.sync.run_all_once()
    assert second.unchanged and second.bytes_received == 0
    path.write_text(CHANGED)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    [third] = await runtime.sync.run_all_once()
    assert third.ok and third.expanded == 2 and len(await _busy(client)) == 3
    path.unlink()
    [gone] = await runtime.sync.run_all_once()
    assert not gone.ok and len(await _busy(client)) == 3


async def test_file_url_and_deleted_events(tmp_path: Path, make_config, serve) -> None:
    path = tmp_path / "cal.ics"
    path.write_text(CHANGED)
    client, runtime = await serve(
        make_config([{"name": "f", "kind": "ics", "url": path.as_uri()}]))
    await runtime.sync.run_all_once()
    assert len(await _busy(client)) == 3
    path.write_text(ics(event("a", "20261126T100000Z", "20261126T110000Z")))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 2_000_000_000))
    [outcome] = await runtime.sync.run_all_once()
    assert outcome.deleted == 2
    assert await _busy(client) == [("2026-11-26T10:00:00Z", "2026-11-26T11:00:00Z", "busy")]


def test_webcal_means_https() -> None:
    assert http_url("webcal://example.org/a.ics") == "https://example.org/a.ics"
    assert http_url("webcals://example.org/a.ics?x=1") == "https://example.org/a.ics?x=1"
    assert http_url("http://example.org/a.ics") == "http://example.org/a.ics"


async def test_truncated_feed_is_refused_and_one_bad_event_is_skipped(feed, make_config,
                                                                       serve) -> None:
    state, url = feed
    client, runtime = await serve(make_config([{"name": "f", "kind": "ics", "url": url}]))
    await runtime.sync.run_all_once()
    good = await _busy(client)
    state.body = CHANGED.encode()[: len(CHANGED) // 2]  # a download cut short
    [cut] = await runtime.sync.run_all_once()
    assert not cut.ok and "cut short" in (cut.error or "")
    assert await _busy(client) == good
    state.body = ics(
        event("a", "20261126T100000Z", "20261126T110000Z"),
        "UID:broken\nDTSTAMP:20260101T000000Z\nDTSTART:garbage\nSUMMARY:x",
        event("c", "20261128T090000Z", "20261128T093000Z"),
    ).encode()
    [partial] = await runtime.sync.run_all_once()
    assert partial.ok and [s.key for s in partial.skipped] == ["broken"]
    assert await _busy(client) == [
        ("2026-11-26T10:00:00Z", "2026-11-26T11:00:00Z", "busy"),
        ("2026-11-28T09:00:00Z", "2026-11-28T09:30:00Z", "busy"),
    ]


async def test_retry_after_of_a_feed_is_honoured(make_config, serve, aiohttp_server) -> None:
    from aiohttp import web

    async def busy_feed(request: web.Request) -> web.Response:
        return web.Response(status=503, headers={"Retry-After": "3600"})

    app = web.Application()
    app.router.add_get("/cal.ics", busy_feed)
    server = await aiohttp_server(app)
    config = make_config([{"name": "feed", "kind": "ics", "url": str(server.make_url("/cal.ics")),
                           "poll_interval": "1m"}])
    _client, runtime = await serve(config)
    [outcome] = await runtime.sync.run_all_once()
    assert not outcome.ok and "Retry-After: 3600 s" in (outcome.error or "")
    syncer = runtime.sync.syncers["feed"]
    assert syncer.next_delay() >= 3600, "the feed asked for an hour; backoff alone says ~30 s"


async def test_a_file_changing_between_its_stat_and_its_read(tmp_path: Path,
                                                             monkeypatch: Any) -> None:
    """The file is read where it is split; what that read finds decides, not the stat."""
    path = tmp_path / "f.ics"
    adapter = IcsAdapter("f", IcsSettings(url=str(path), max_bytes=64), session=None)

    async def looks_changed(state: Any) -> tuple[dict[str, Any], bool]:
        return {"mtime_ns": 1, "size": 1}, True

    monkeypatch.setattr(adapter, "_stat_file", looks_changed)
    with pytest.raises(UpstreamUnavailable, match="cannot read"):
        await adapter.sync({})  # gone by then
    path.write_text(GOOD)
    with pytest.raises(BadUpstreamData, match="grew over max_bytes"):
        await adapter.sync({})
