"""The status page and API: behind the admin secret, what an operator needs, in Chromium."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path

from playwright.async_api import Browser

from server.kit.clock import FixedClock
from tests.booking_world import guest, started
from tests.browser import watch_console

ADMIN = "admin-admin-admin-0001"


def basic(password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"me:{password}".encode()).decode()}


async def test_the_status_needs_the_admin_secret(sources, make_config, serve) -> None:
    client, _ = await started(make_config, sources, serve)
    denied = await client.get("/status")
    assert denied.status == 401 and denied.headers["WWW-Authenticate"].startswith("Basic")
    assert (await client.get("/api/v1/status", headers={"Authorization": "Bearer nope"})
            ).status == 401
    secret = await client.get("/api/v1/status", headers=basic("s3cret-s3cret-s3cret-0001"))
    assert secret.status == 401, "a calendar's secret does not open the status"


async def test_the_report_shows_sources_holds_and_bookings(sources, make_config, serve,
                                                           tmp_path: Path) -> None:
    client, runtime = await started(make_config, sources, serve, server={"admin_secret": ADMIN})
    assert (await client.post("/api/v1/pages/intro/bookings", json=guest())).status == 201
    await runtime.store.record_failure(runtime.source_ids["sam"], error="HTTP 401",
                                       now=int(runtime.clock.now().timestamp()),
                                       needs_reauth=True)
    response = await client.get("/api/v1/status", headers={"Authorization": f"Bearer {ADMIN}"})
    assert response.status == 200
    report = await response.json()
    alex, sam, _kim = report["sources"]
    assert alex["items"] == 1 and alex["instances"] == 1 and alex["last_sync_seconds"] >= 0
    assert not alex["stale"] and alex["fix"] is None
    assert sam["needs_reauth"] and "check this source's credentials" in sam["fix"]
    assert report["booking_pages"] == [{"slug": "intro", "title": "Intro call", "upcoming": 1,
                                        "past": 0, "cancelled": 0, "confirmed": 1, "total": 1}]
    assert report["ok"] is False


async def test_the_page_draws_the_heatmap_in_chromium(browser: Browser, artifacts: Path,
                                                      sources, make_config, serve) -> None:
    client, runtime = await started(make_config, sources, serve, server={"admin_secret": ADMIN})
    assert (await client.post("/api/v1/pages/intro/bookings", json=guest())).status == 201
    html = await (await client.get("/status", headers=basic(ADMIN))).text()
    assert "needs attention" not in html and "2026-11-26 10:00 · busy 30 min" in html
    assert "built-in method" not in html and '<td class="num">1</td>' in html
    for name, size in (("desktop", {"width": 1280, "height": 900}),
                       ("phone", {"width": 390, "height": 844})):
        context = await browser.new_context(viewport=size, http_credentials={
            "username": "admin", "password": ADMIN})
        page = await context.new_page()
        errors = watch_console(page)
        await page.goto(str(client.make_url("/status")))
        assert await page.locator("figure.heatmap svg rect").count() == 3 * 28 * 24
        await page.screenshot(path=str(artifacts / f"status-{name}.png"), full_page=True)
        assert errors == []
        await context.close()


async def test_booking_counts_add_up(sources, make_config, serve, clock: FixedClock) -> None:
    """Every booking made lands in exactly one of upcoming, past and cancelled."""
    client, _ = await started(make_config, sources, serve, server={"admin_secret": ADMIN})
    first = await (await client.post("/api/v1/pages/intro/bookings", json=guest(
        start="2026-11-26T10:00:00Z"))).json()
    second = await (await client.post("/api/v1/pages/intro/bookings", json=guest(
        start="2026-11-26T11:00:00Z"))).json()
    assert first["id"] != second["id"]
    cancel = second["cancel_url"].split("127.0.0.1:8080", 1)[1]
    assert (await client.post(cancel)).status == 200

    async def counts() -> dict[str, int]:
        response = await client.get("/api/v1/status",
                                    headers={"Authorization": f"Bearer {ADMIN}"})
        [page] = (await response.json())["booking_pages"]
        return {k: page[k] for k in ("upcoming", "past", "cancelled", "confirmed", "total")}

    assert await counts() == {"upcoming": 1, "past": 0, "cancelled": 1, "confirmed": 1,
                              "total": 2}
    clock.set(datetime(2026, 11, 26, 10, 15, tzinfo=UTC))  # the first one has started
    assert await counts() == {"upcoming": 0, "past": 1, "cancelled": 1, "confirmed": 1,
                              "total": 2}
    html = await (await client.get("/status", headers=basic(ADMIN))).text()
    assert "Booked (all)" not in html
    assert ('<td class="num">0</td><td class="num">1</td><td class="num">1</td>'
            '<td class="num">2</td>') in html, "upcoming, past, cancelled, made"


async def test_the_page_shows_times_in_the_server_zone(sources, make_config, serve) -> None:
    """The clock reads 2026-11-25 12:00 UTC: 13:00 in Berlin."""
    client, _ = await started(make_config, sources, serve, server={
        "admin_secret": ADMIN, "timezone": "Europe/Berlin"})
    assert (await client.post("/api/v1/pages/intro/bookings", json=guest())).status == 201
    report = await (await client.get("/api/v1/status",
                                     headers={"Authorization": f"Bearer {ADMIN}"})).json()
    assert report["sources"][0]["last_success"] == "2026-11-25T12:00:00Z", "the API stays UTC"
    html = await (await client.get("/status", headers=basic(ADMIN))).text()
    assert "times in Europe/Berlin" in html and "Last success (Europe/Berlin)" in html
    assert "<td>2026-11-25 13:00</td>" in html
    assert "2026-11-25T12:00:00Z" not in html
