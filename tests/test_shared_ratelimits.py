"""Booking rate limits shared by every instance on one PostgreSQL database.

The store's token buckets (server/store/ratelimits.py) on both backends, their
atomicity under concurrent takes from two Store objects, and two servers on one
database refusing a guest together.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from server.config.database import PostgresUrl
from server.kit.ratelimit import PRUNE_EVERY, Rate, RateLimiter, SharedRateLimiter
from server.outputs.guard import rate_limiters, renewed_limiters
from server.store import Store
from tests.booking_world import build, guest


async def test_store_buckets_count_like_the_memory_limiter(store) -> None:
    burst, per_second = 3.0, 1 / 60  # 3 per 3 minutes
    assert [await store.take_rate_token("bookings:a", burst, per_second, 0) for _ in range(3)] \
        == [0, 0, 0]
    assert await store.take_rate_token("bookings:a", burst, per_second, 0) == pytest.approx(60)
    assert await store.take_rate_token("bookings:b", burst, per_second, 0) == 0, "apart"
    assert await store.take_rate_token("bookings:a", burst, per_second, 59) > 0
    assert await store.take_rate_token("bookings:a", burst, per_second, 121) == 0
    await store.refund_rate_token("bookings:a", burst, per_second, 121)
    await store.refund_rate_token("bookings:a", burst, per_second, 900)
    await store.refund_rate_token("bookings:a", burst, per_second, 900)  # full: no more
    assert [await store.take_rate_token("bookings:a", burst, per_second, 900)
            for _ in range(4)] == [0, 0, 0, pytest.approx(60)]
    # Pruning: buckets idle since before a period are full again and go; of the rest,
    # only the most recently counted are kept.
    for n, when in enumerate((1000, 1100, 1200)):
        await store.take_rate_token(f"failed_bookings:{n}", burst, per_second, when)
    assert await store.prune_rate_buckets("bookings:", idle_since=1000, keep=100) == 2
    assert await store.prune_rate_buckets("failed_bookings:", idle_since=0, keep=2) == 1
    assert await store.take_rate_token("failed_bookings:2", burst, per_second, 1200) == 0
    assert await store.take_rate_token("failed_bookings:2", burst, per_second, 1200) == 0
    assert await store.take_rate_token("failed_bookings:2", burst, per_second, 1200) > 0, \
        "kept: the third token of three"


@pytest.mark.postgres
async def test_concurrent_takes_on_two_stores_never_exceed_the_burst(postgres_url) -> None:
    stores = [await Store.open(PostgresUrl(postgres_url)) for _ in range(2)]
    try:
        waits = await asyncio.gather(*(
            stores[n % 2].take_rate_token("bookings:guest", 5, 1 / 720, 100.0)
            for n in range(30)))
    finally:
        for opened in stores:
            await opened.close()
    assert sorted(waits)[:6] == [0, 0, 0, 0, 0, pytest.approx(720)]


@pytest.mark.postgres
async def test_a_guest_limited_on_one_instance_is_limited_on_the_other(
        sources, make_config, serve, postgres_url) -> None:
    hours = {d: ["00:00-24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    config = build(make_config, sources, hours=hours, duration="30m", server={
        "rate_limit_bookings": "2/1h", "rate_limit_failed_bookings": "3/1h",
        "rate_limit_pages": "1/1h", "trusted_proxies": ["127.0.0.0/8"]})
    config = replace(config, server=replace(config.server, database=PostgresUrl(postgres_url)))
    (client_a, first), (client_b, second) = await serve(config), await serve(config)
    for runtime in (first, second):
        await runtime.sync.run_all_once()

    async def book(client: Any, guest_address: str, start: str, **fields: Any) -> Any:
        return await client.post("/api/v1/pages/intro/bookings", json=guest(start=start, **fields),
                                 headers={"X-Forwarded-For": guest_address})

    assert (await book(client_a, "192.0.2.1", "2026-11-26T10:00:00Z")).status == 201
    assert (await book(client_a, "192.0.2.1", "2026-11-26T11:00:00Z")).status == 201
    refused = await book(client_b, "192.0.2.1", "2026-11-26T12:00:00Z")
    assert refused.status == 429 and refused.headers["Retry-After"] == "1800"
    assert "too many bookings from your address (2/1h)" in (await refused.json())["error"]
    assert (await book(client_b, "192.0.2.2", "2026-11-26T12:00:00Z")).status == 201, \
        "another guest is not affected"

    # Failed attempts are counted together too ...
    statuses = [(await book(client, "192.0.2.3", "2026-11-26T13:00:00Z", email="x")).status
                for client in (client_a, client_b, client_a, client_b)]
    assert statuses == [422, 422, 422, 429]

    # ... while page loads are counted per instance (guard.py says why).
    async def page(client: Any) -> int:
        return (await client.get("/book/intro", headers={"X-Forwarded-For": "192.0.2.4"})).status

    assert [await page(client_a), await page(client_a), await page(client_b)] == [200, 429, 200]


async def test_a_shared_limiter_prunes_buckets_full_again(store) -> None:
    limiter = SharedRateLimiter("bookings", Rate(2, timedelta(hours=1)), store)
    assert [await limiter.take(client, 0) for client in ("a", "a", "b")] == [0, 0, 0]
    assert await limiter.take("a", 0) == pytest.approx(1800)
    await limiter.refund("a", 10)
    assert await limiter.take("a", 10) == 0, "the refund gave one back"

    async def buckets() -> list[str]:
        rows = await store.database.reads.fetchall("SELECT key FROM rate_buckets ORDER BY key")
        return [str(row[0]) for row in rows]

    assert await buckets() == ["bookings:a", "bookings:b"]
    # An hour later both are full again: the next take (past PRUNE_EVERY) drops them.
    assert await limiter.take("c", 3600 + PRUNE_EVERY) == 0
    assert await buckets() == ["bookings:c"]


async def test_a_reload_keeps_the_booking_limits_in_the_store(store, make_config) -> None:
    config = make_config([], calendars=[], rate_limit_bookings="2/1h",
                         rate_limit_pages="5/1m")
    before = rate_limiters(config, store)
    assert isinstance(before["bookings"], SharedRateLimiter)
    assert isinstance(before["pages"], RateLimiter), "pages are counted per instance"
    before["pages"].take("guest", 0)
    assert [await before["bookings"].take("guest", 0) for _ in range(2)] == [0, 0]
    reloaded = make_config([], calendars=[], rate_limit_bookings="1/1h",
                           rate_limit_pages="5/1m")
    after = renewed_limiters(before, rate_limiters(reloaded, store))
    assert after["bookings"].rate == Rate(1, timedelta(hours=1))
    assert await after["bookings"].take("guest", 0) == pytest.approx(3600), \
        "the takes before the reload count, at the new rate"
    assert after["pages"].take("guest", 0) == 0 and after["pages"] is not before["pages"]
    assert [after["pages"].take("guest", 0) > 0 for _ in range(4)] == [False] * 3 + [True], \
        "five a minute: the one taken before the reload still counts"
