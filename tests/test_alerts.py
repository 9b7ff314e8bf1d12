"""Alerts: once per state change, signed webhooks, e-mail through a real SMTP server."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from datetime import timedelta
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller

from tests.conftest import event, ics
from tests.peers import free_port

KEY = "webhook-signing-key-0001"


@pytest.fixture
def feed(tmp_path: Path) -> Path:
    path = tmp_path / "work.ics"
    path.write_text(ics(event("w1", "20261126T090000Z", "20261126T100000Z")))
    return path


async def test_a_signed_webhook_once_per_state_change(feed, serve, clock,
                                                      aiohttp_server) -> None:
    received: list[tuple[dict[str, Any], str]] = []

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        expected = "sha256=" + hmac.new(KEY.encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(request.headers["X-Fbproxy-Signature"], expected)
        received.append((json.loads(body), request.headers["X-Fbproxy-Event"]))
        return web.Response(status=204)

    receiver = web.Application()
    receiver.router.add_post("/hook", hook)
    server = await aiohttp_server(receiver)
    config = alert_config(feed, "w.sqlite3", [{
        "name": "ops", "kind": "webhook", "url": str(server.make_url("/hook")), "secret": KEY,
        "after": "5m"}])
    _client, runtime = await serve(config)
    alerts = runtime.alerts
    assert alerts is not None
    await runtime.sync.run_all_once()
    assert await alerts.evaluate() == 0, "a healthy source is no news"

    feed.unlink()  # the source starts failing
    await runtime.sync.run_all_once()
    assert await alerts.evaluate() == 0, "not yet failing for longer than `after`"
    clock.set(clock.now() + timedelta(minutes=6))
    await runtime.sync.run_all_once()
    assert await alerts.evaluate() == 1
    assert await alerts.evaluate() == 0, "once per change, not once per look"
    assert await alerts.deliver() == 1
    [(payload, kind)] = received
    assert kind == "source_failing" and payload["source"] == "work"
    assert "No such file" in payload["error"] or "cannot" in payload["error"]

    feed.write_text(ics())  # recovered
    await runtime.sync.run_all_once()
    assert await alerts.evaluate() == 1 and await alerts.deliver() == 1
    assert [k for _p, k in received] == ["source_failing", "source_recovered"]


def alert_config(feed: Path, db_name: str, alerts: list[dict[str, Any]]) -> Any:
    from server.config.model import parse_config

    return parse_config({
        "server": {"database": str(feed.parent / "db" / db_name), "timezone": "UTC"},
        "sources": [{"name": "work", "kind": "ics", "url": str(feed), "poll_interval": "1m"}],
        "calendars": [{"name": "me", "sources": ["work"],
                       "secret": "s3cret-s3cret-s3cret-0001"}],
        "alerts": alerts}, base_dir=feed.parent)


async def needs_reauth(serve: Any, config: Any, clock: Any) -> Any:
    """The app up, one good round, then the source marked as needing re-authorization."""
    _client, runtime = await serve(config)
    assert runtime.alerts is not None
    await runtime.sync.run_all_once()
    await runtime.store.record_failure(runtime.source_ids["work"], error="HTTP 401",
                                       now=int(clock.now().timestamp()), needs_reauth=True)
    return runtime


class Inbox:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append(envelope.content)
        return "250 OK"


async def test_an_email_alert_reaches_a_real_smtp_server(feed, serve, clock) -> None:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        runtime = await needs_reauth(serve, alert_config(feed, "a.sqlite3", [{
            "name": "mail", "kind": "email", "smtp_host": "127.0.0.1", "smtp_port": port,
            "starttls": False, "from": "fbproxy@example.org", "to": ["ops@example.org"],
            "events": ["source_needs_reauth"]}]), clock)
        assert await runtime.alerts.evaluate() == 1
        assert await runtime.alerts.deliver() == 1
        for _ in range(100):
            if inbox.messages:
                break
            await asyncio.sleep(0.01)
        [raw] = inbox.messages
        mail = message_from_bytes(raw)
        assert mail["To"] == "ops@example.org"
        assert "needs re-authorization" in mail["Subject"]
    finally:
        controller.stop()


async def test_an_unreachable_receiver_is_retried_later(feed, serve, clock) -> None:
    runtime = await needs_reauth(serve, alert_config(feed, "b.sqlite3", [{
        "name": "ops", "kind": "webhook", "url": f"http://127.0.0.1:{free_port()}/gone"}]),
        clock)
    assert await runtime.alerts.evaluate() == 1
    assert await runtime.alerts.deliver() == 0
    assert await runtime.store.due_alerts(int(clock.now().timestamp())) == [], "backing off"
    later = int((clock.now() + timedelta(hours=1)).timestamp())
    [message] = await runtime.store.due_alerts(later)
    assert message.attempts == 1
