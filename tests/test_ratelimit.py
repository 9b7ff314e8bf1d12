"""Per-client rate limits: the bucket arithmetic, client keys, and 429s over HTTP."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.kit.ratelimit import Rate, RateLimiter, client_key, parse_rate
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


def test_a_refund_gives_back_one_token_up_to_the_burst() -> None:
    limiter = RateLimiter(Rate(2, timedelta(minutes=2)))
    assert [limiter.take("a", 0), limiter.take("a", 0)] == [0, 0]
    limiter.refund("a", 0)
    assert limiter.take("a", 0) == 0 and limiter.take("a", 0) > 0
    limiter.refund("a", 600)
    limiter.refund("a", 600)  # already full again: nothing past the burst
    assert [limiter.take("a", 600) for _ in range(3)][2] == pytest.approx(60)


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


# -- bookings: successes and failures count apart --------------------------------------------

FIRST_SLOT = datetime(2026, 11, 26, 10, tzinfo=UTC)
OPEN_ALL_DAY = {day: ["00:00-24:00"] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}


async def booking_server(make_config: Any, sources: Any, serve: Any, *, bookings: str = "10/1h",
                         failed: str = "30/1h") -> Any:
    """The intro page, open around the clock, behind the given booking limits."""
    config = build(make_config, sources, hours=OPEN_ALL_DAY, duration="30m",
                   server={"rate_limit_bookings": bookings,
                           "rate_limit_failed_bookings": failed})
    client, runtime = await serve(config)
    await runtime.sync.run_all_once()
    return client


def slot(n: int) -> str:
    """The n-th free half hour from Thursday 10:00 UTC (alex is busy 09:00-09:30)."""
    return (FIRST_SLOT + n * timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%SZ")


async def book_api(client: Any, **fields: Any) -> Any:
    return await client.post("/api/v1/pages/intro/bookings", json=guest(**fields))


async def test_failed_attempts_do_not_use_up_bookings(sources, make_config, serve) -> None:
    client = await booking_server(make_config, sources, serve)
    typos = [(await book_api(client, start=slot(0), email="sam@example")).status
             for _ in range(20)]
    assert typos == [422] * 20
    assert (await book_api(client, start=slot(0))).status == 201
    taken = await book_api(client, start=slot(0))
    assert taken.status == 409, "a slot taken is a failed attempt, not a booking"
    # Through the form: 20 mistakes, then the guest's booking goes through.
    await client.get("/book/intro")
    csrf = client.session.cookie_jar.filter_cookies(client.make_url("/"))["fbproxy_csrf"].value
    form = {"csrf": csrf, "start": slot(1), "duration": "30m", "tz": "UTC", "name": "Sam",
            "email": "sam@"}
    statuses = [(await client.post("/book/intro", data=form, allow_redirects=False)).status
                for _ in range(8)]
    assert statuses == [422] * 8, "29 failed attempts in all: under the 30 allowed"
    done = await client.post("/book/intro", data={**form, "email": "sam@example.org"},
                             allow_redirects=False)
    assert done.status == 303, await done.text()


async def test_the_eleventh_booking_in_an_hour_gets_429(sources, make_config, serve) -> None:
    client = await booking_server(make_config, sources, serve)
    assert [(await book_api(client, start=slot(n))).status for n in range(10)] == [201] * 10
    limited = await book_api(client, start=slot(10))
    assert limited.status == 429 and limited.headers["Retry-After"] == "360"
    assert "too many bookings from your address (10/1h)" in (await limited.json())["error"]
    assert (await book_api(client, start=slot(10), email="x")).status == 429, \
        "over the limit nothing is tried, not even a failing attempt"


async def test_failed_attempts_have_their_own_limit(sources, make_config, serve) -> None:
    client = await booking_server(make_config, sources, serve)
    statuses = [(await book_api(client, start=slot(0), name="")).status for _ in range(31)]
    assert statuses == [422] * 30 + [429]
    limited = await book_api(client, start=slot(0))
    assert limited.status == 429 and limited.headers["Retry-After"] == "120", \
        "past it even a valid booking waits: the limit is checked before the work"
    assert "too many failed booking attempts" in (await limited.json())["error"]


async def test_wrong_cancellations_count_as_failed_attempts(sources, make_config, serve) -> None:
    client = await booking_server(make_config, sources, serve, bookings="2/1h", failed="3/1h")
    made = await (await book_api(client, start=slot(0))).json()
    cancel = f"/api/v1/bookings/{made['id']}/cancel"
    wrong = [(await client.post(f"{cancel}?secret=wrong")).status for _ in range(3)]
    assert wrong == [404] * 3
    limited = await client.post(f"{cancel}?secret=wrong")
    assert limited.status == 429, "3 failed: no more"
    assert "too many failed booking attempts" in (await limited.json())["error"]


async def test_a_cancellation_counts_as_a_booking(sources, make_config, serve) -> None:
    client = await booking_server(make_config, sources, serve, bookings="2/1h", failed="3/1h")
    made = await (await book_api(client, start=slot(0))).json()
    cancel_url = made["cancel_url"].removeprefix("http://127.0.0.1:8080")
    assert (await client.post(cancel_url)).status == 200
    assert (await book_api(client, start=slot(1))).status == 429, \
        "a booking and a cancellation: the 2 allowed"


async def test_a_burst_of_concurrent_bookings_is_held_to_the_limit(sources, make_config,
                                                                   serve) -> None:
    client = await booking_server(make_config, sources, serve)
    valid = await asyncio.gather(*(book_api(client, start=slot(n)) for n in range(20)))
    assert sorted(r.status for r in valid) == [201] * 10 + [429] * 10


async def test_a_burst_of_concurrent_failures_is_held_to_their_limit(sources, make_config,
                                                                     serve) -> None:
    """40 at once for one slot: one books it; the others fail only after the database
    said so, so each must have been counted before it began."""
    client = await booking_server(make_config, sources, serve)
    burst = await asyncio.gather(*(book_api(client, start=slot(0)) for _ in range(40)))
    statuses = [r.status for r in burst]
    assert statuses.count(201) == 1 and set(statuses) <= {201, 409, 429}
    assert statuses.count(409) <= 30 and statuses.count(429) >= 10
    # Each failure gave back its booking token: nine bookings are left.
    assert [(await book_api(client, start=slot(n))).status for n in range(1, 11)] == \
        [201] * 9 + [429]
