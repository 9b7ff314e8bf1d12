"""Per-client rate limits: the bucket arithmetic, client keys, and 429s over HTTP."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.ratelimit import Rate, RateLimiter, client_key, parse_rate
from tests.booking_world import build, guest


def test_parse_rate() -> None:
    assert parse_rate("10/1h") == Rate(10, timedelta(hours=1))
    assert parse_rate(" 120 / 1m ") == Rate(120, timedelta(minutes=1))
    assert parse_rate("off") is None
    for bad in ("10", "ten/1h", "0/1h", "5/0s", 5, "5/1 fortnight"):
        with pytest.raises(ValueError):
            parse_rate(bad)


def test_a_burst_then_an_even_refill() -> None:
    limiter = RateLimiter(Rate(3, timedelta(minutes=3)))
    assert [limiter.take("a", 0) for _ in range(3)] == [0, 0, 0]
    assert limiter.take("a", 0) == pytest.approx(60)
    assert limiter.take("b", 0) == 0, "clients are counted apart"
    assert limiter.take("a", 59) > 0
    assert limiter.take("a", 121) == 0  # one token back per minute


def test_client_keys_group_an_ipv6_slash_64() -> None:
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:ffff::9")
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7" == client_key("192.0.2.7")
    assert client_key("not an address") == "not an address"


def test_old_clients_are_forgotten() -> None:
    limiter = RateLimiter(Rate(1, timedelta(hours=1)), max_clients=2)
    for client in ("a", "b", "c"):
        limiter.take(client, 0)
    assert limiter.take("a", 0) == 0, "a was dropped, so it starts afresh"


@given(st.lists(st.tuples(st.sampled_from("ab"), st.integers(0, 600)), max_size=60),
       st.integers(1, 5), st.integers(1, 300))
def test_never_more_than_the_rate_allows(requests: list[tuple[str, int]], count: int,
                                         period: int) -> None:
    limiter = RateLimiter(Rate(count, timedelta(seconds=period)))
    granted: dict[str, list[int]] = {"a": [], "b": []}
    for client, now in sorted(requests, key=lambda r: r[1]):
        if limiter.take(client, now) == 0:
            granted[client].append(now)
    for times in granted.values():
        # In any window of length w, at most count + w * rate requests get through.
        for i, first in enumerate(times):
            for j in range(i, len(times)):
                window = times[j] - first
                assert j - i + 1 <= count + window * count / period + 1e-9


async def started(make_config: Any, sources: Any, serve: Any, **server: Any) -> Any:
    config = build(make_config, sources)
    config = make_config(
        [{"name": s.name, "kind": "ics", "url": s.url} for s in config.sources],
        [{"name": c.name, "sources": list(c.sources), "secret": str(c.secret)}
         for c in config.calendars],
        booking_pages=[{"slug": "intro", "title": "Intro", "hosts": ["alex"], "duration": "30m",
                        "timezone": "UTC", "minimum_notice": "1h", "max_days_ahead": 10}],
        **server)
    client, runtime = await serve(config)
    await runtime.sync.run_all_once()
    return client, runtime


async def test_too_many_bookings_get_429_with_retry_after(sources, make_config, serve,
                                                          clock) -> None:
    client, runtime = await started(make_config, sources, serve, rate_limit_bookings="2/1h")
    statuses = [(await client.post("/api/v1/pages/intro/bookings", json=guest(
        start=f"2026-11-26T1{i}:00:00Z"))).status for i in range(3)]
    assert statuses == [201, 201, 429]
    limited = await client.post("/api/v1/pages/intro/bookings",
                                json=guest(start="2026-11-26T13:00:00Z"))
    assert limited.status == 429 and limited.headers["Retry-After"] == "1800"
    assert "too many bookings" in (await limited.json())["error"]
    await client.get("/book/intro")
    csrf = client.session.cookie_jar.filter_cookies(client.make_url("/"))["fbproxy_csrf"]
    form = await client.post("/book/intro", data={"csrf": csrf.value})
    assert form.status == 429, "the form counts against the same limit"
    assert "Please wait a moment" in await form.text()
    clock.set(clock.now() + timedelta(minutes=30))
    await runtime.sync.run_all_once()  # (the fixed clock jumped past stale_after)
    again = await client.post("/api/v1/pages/intro/bookings",
                              json=guest(start="2026-11-26T13:00:00Z"))
    assert again.status == 201


async def test_page_loads_are_limited_too(sources, make_config, serve) -> None:
    client, _ = await started(make_config, sources, serve, rate_limit_pages="3/1m")
    statuses = [(await client.get("/book/intro")).status for _ in range(3)]
    statuses.append((await client.get("/api/v1/pages/intro/slots")).status)
    assert statuses == [200, 200, 200, 429]
    page = await client.get("/book/intro")
    assert page.status == 429 and "Please wait" in await page.text()


async def test_forwarded_for_counts_only_behind_a_trusted_proxy(sources, make_config,
                                                                serve) -> None:
    client, _ = await started(make_config, sources, serve, rate_limit_pages="1/1h")

    async def status(forwarded: str) -> int:
        response = await client.get("/book/intro", headers={"X-Forwarded-For": forwarded})
        return response.status

    assert [await status("192.0.2.1"), await status("192.0.2.2")] == [200, 429], \
        "an untrusted peer cannot pick its address"

    client, _ = await started(make_config, sources, serve, rate_limit_pages="1/1h",
                              trusted_proxies=["127.0.0.0/8"])
    assert [await status("192.0.2.1"), await status("192.0.2.2")] == [200, 200]
    assert await status("192.0.2.1") == 429
    # A client's own "X-Forwarded-For: <victim>" is to the left of its real address.
    assert await status("192.0.2.9, 192.0.2.1") == 429
    assert await status("192.0.2.1, 192.0.2.3") == 200
