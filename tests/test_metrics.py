"""GET /metrics: Prometheus text that parses, counters that move, the secret it needs."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.booking_world import guest, started
from tests.test_google_source import OWNER, meet_page, source

ADMIN = {"Authorization": "Bearer admin-admin-admin-0001"}


async def scrape(client: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await client.get("/metrics", headers=ADMIN)
    assert response.status == 200 and response.content_type == "text/plain"
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(await response.text())
            for sample in family.samples}


async def test_metrics_parse_and_move(sources, make_config, serve) -> None:
    client, runtime = await started(make_config, sources, serve,
                                    server={"admin_secret": "admin-admin-admin-0001"})
    assert (await client.get("/metrics")).status == 401
    before = await scrape(client)
    assert before[("fbproxy_sync_rounds_total", (("result", "ok"), ("source", "alex")))] == 1
    assert before[("fbproxy_source_items", (("kind", "ics"), ("source", "alex")))] == 1
    assert before[("fbproxy_source_stale", (("kind", "ics"), ("source", "alex")))] == 0
    await runtime.sync.run_all_once()
    assert (await client.post("/api/v1/pages/intro/bookings", json=guest())).status == 201
    assert (await client.post("/api/v1/pages/intro/bookings", json=guest())).status == 409
    after = await scrape(client)
    # One round here, and the live re-checks before each booking (shared when at once).
    assert after[("fbproxy_sync_rounds_total",
                  (("result", "unchanged"), ("source", "alex")))] >= 2
    assert after[("fbproxy_bookings_total", (("page", "intro"), ("result", "booked")))] == 1
    assert after[("fbproxy_bookings_total", (("page", "intro"), ("result", "taken")))] == 1
    route = (("method", "POST"), ("route", "/api/v1/pages/{slug}/bookings"), ("status", "201"))
    assert after[("fbproxy_http_request_duration_seconds_count", route)] == 1
    assert not any("s3cret" in str(labels) for _name, labels in after), "no secrets in labels"


async def test_hold_deliveries_and_the_outbox_depth(fake_google, tmp_path, make_config,
                                                    serve) -> None:
    fake_google.add_calendar(OWNER, "Alex", primary=True)
    config = make_config([source(fake_google, tmp_path)], booking_pages=[meet_page()],
                         metrics_public=True)
    client, runtime = await serve(config)
    await runtime.sync.run_all_once()
    assert (await client.post("/api/v1/pages/intro/bookings", json={
        "start": "2026-11-26T10:00:00Z", "name": "Sam", "email": "sam@example.org"})).status == 201
    pending = await client.get("/metrics")  # metrics_public: no secret needed
    assert "fbproxy_hold_outbox_pending{action=\"write\"} 1.0" in await pending.text()
    fake_google.fail_next(1, 400)
    await runtime.holds.run_once()
    runtime.clock.set(runtime.clock.now().replace(hour=13))  # past the retry's backoff
    await runtime.sync.run_all_once()
    await runtime.holds.run_once()
    text = await (await client.get("/metrics")).text()
    assert 'fbproxy_hold_deliveries_total{action="write",result="failed"} 1.0' in text
    assert 'fbproxy_hold_deliveries_total{action="write",result="delivered"} 1.0' in text
