"""Abuse: guessing secrets, oversized bodies, header floods, traversal, slow clients."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.booking_world import started

OWNER = "secret-of-alex-0123456789"


async def test_guessing_secrets_is_rate_limited_per_client(sources, make_config,
                                                           serve) -> None:
    client, _ = await started(make_config, sources, serve,
                              server={"rate_limit_secrets": "30/10m"})
    statuses = [(await client.get(f"/feeds/guess-{i:04d}-xxxxxxxxxxxxxxx/busy.ics")).status
                for i in range(1000)]
    assert statuses[:30] == [404] * 30 and set(statuses[30:]) == {429}
    api = await client.get("/api/v1/freebusy", headers={"Authorization": "Bearer guess"})
    assert api.status == 429 and "Retry-After" in api.headers
    right = await client.get(f"/feeds/{OWNER}/busy.ics")
    assert right.status == 200, "the right secret still works for the same client"


ROUTES = [("POST", "/api/v1/pages/intro/bookings"), ("POST", "/book/intro"),
          ("POST", "/booking/bk_x/cancel"), ("POST", "/api/v1/bookings/bk_x/cancel"),
          ("POST", "/api/v1/reload"), ("POST", "/hooks/google"), ("POST", "/hooks/microsoft"),
          ("PROPFIND", "/caldav/"), ("REPORT", "/caldav/calendars/alex/busy/"),
          ("GET", f"/feeds/{OWNER}/busy.ics"), ("GET", "/status"), ("PUT", "/caldav/x")]


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_bodies_over_the_limit_get_413_everywhere(sources, make_config, serve,
                                                        method: str, path: str) -> None:
    client, _ = await started(make_config, sources, serve)
    response = await client.request(method, path, data=b"x" * 1_000_000,
                                    headers={"Content-Type": "application/json"})
    assert response.status == 413, await response.text()


async def test_header_floods_are_refused(sources, make_config, serve) -> None:
    client, _ = await started(make_config, sources, serve)
    huge = await client.get(f"/feeds/{OWNER}/busy.ics", headers={"X-Flood": "a" * 100_000})
    assert huge.status in (400, 431)
    many = {f"X-Flood-{i}": "a" * 200 for i in range(500)}
    flooded = await client.get(f"/feeds/{OWNER}/busy.ics", headers=many)
    assert flooded.status in (400, 431)
    assert (await client.get(f"/feeds/{OWNER}/busy.ics")).status == 200


@pytest.mark.parametrize("path", [
    "/feeds/../../etc/passwd/busy.ics", "/feeds/%2e%2e%2fetc%2fpasswd/busy.ics",
    "/book/..%2F..%2Fetc%2Fpasswd", "/static/..%2Fconfig.py", "/static/%2e%2e/app.py",
    "/caldav/calendars/alex/busy/..%2F..%2Fsecret.ics", "/booking/..%2F..%2Fetc",
    "/api/v1/pages/..%2F..%2Fintro/slots",
])
async def test_path_traversal_finds_nothing(sources, make_config, serve, path: str) -> None:
    client, _ = await started(make_config, sources, serve)
    response = await client.get(path, headers={"Authorization": "Basic YWxleDpub3Bl"})
    assert response.status in (401, 404), (path, response.status)
    assert "root:" not in await response.text()


async def test_slow_clients_do_not_starve_others(sources, make_config, serve) -> None:
    client, _ = await started(make_config, sources, serve)
    host, port = client.host, client.port
    idle: list[Any] = []
    for i in range(300):  # connections that send half a request and then nothing
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(f"GET /feeds/{OWNER}/busy.ics HTTP/1.1\r\nHost: x\r\nX-Slow-{i}: ".encode())
        await writer.drain()
        idle.append(writer)
    loop = asyncio.get_running_loop()
    started_at = loop.time()
    response = await client.get(f"/feeds/{OWNER}/busy.ics")
    elapsed = loop.time() - started_at
    assert response.status == 200 and elapsed < 1.0, elapsed
    print(f"\n300 idle connections open; a normal request took {elapsed * 1000:.1f} ms")
    for writer in idle:
        writer.close()


async def test_trickling_clients_do_not_starve_others(sources, make_config, serve) -> None:
    """Clients sending a byte every 20 ms (headers, or a booking body) while others are served."""
    client, _ = await started(make_config, sources, serve)
    host, port = client.host, client.port
    stop = asyncio.Event()

    async def trickle(first: bytes, drip: bytes) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(first)
            while not stop.is_set():
                writer.write(drip)
                await writer.drain()
                await asyncio.sleep(0.02)
        except ConnectionError:
            pass  # the server may close a client it finds abusive; that is fine too
        finally:
            writer.close()

    header_drips = [trickle(f"GET /feeds/{OWNER}/busy.ics HTTP/1.1\r\nHost: x\r\n".encode(),
                            b"X-Trickle-" + str(i).encode() + b": a\r\n") for i in range(100)]
    body_drips = [trickle(b"POST /api/v1/pages/intro/bookings HTTP/1.1\r\nHost: x\r\n"
                          b"Content-Type: application/json\r\nContent-Length: 60000\r\n\r\n{",
                          b" ") for _ in range(20)]
    tricklers = [asyncio.ensure_future(drip) for drip in (*header_drips, *body_drips)]
    await asyncio.sleep(0.3)  # all of them are connected and dripping
    loop = asyncio.get_running_loop()
    took = []
    for path in [f"/feeds/{OWNER}/busy.ics", "/api/v1/pages/intro/slots?start=2026-11-26"
                 "&end=2026-11-27"] * 5:
        started_at = loop.time()
        response = await client.get(path)
        took.append(loop.time() - started_at)
        assert response.status == 200, (path, response.status)
    stop.set()
    await asyncio.gather(*tricklers)
    took.sort()
    print(f"\n120 trickling connections; 10 normal requests: median {took[5] * 1000:.1f} ms, "
          f"slowest {took[-1] * 1000:.1f} ms")
    assert took[-1] < 1.0, took


async def test_a_request_never_finished_is_dropped_after_the_keepalive(
        sources, make_config, clock) -> None:
    """`fbproxy serve` passes keepalive_timeout (75 s); aiohttp arms it when a connection opens,
    so a client that never completes its request holds the socket that long at most. Shown
    here with 0.5 s."""
    from aiohttp import web

    from server.app import create_app
    from server.cli import KEEPALIVE_SECONDS

    assert KEEPALIVE_SECONDS == 75.0
    runner = web.AppRunner(create_app(make_config(sources), clock=clock, start_sync=False),
                           keepalive_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        host, port = runner.addresses[0][:2]
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(f"GET /feeds/{OWNER}/busy.ics HTTP/1.1\r\nHost: x\r\nX-Slow: ".encode())
        await writer.drain()
        loop = asyncio.get_running_loop()
        started_at = loop.time()
        assert await asyncio.wait_for(reader.read(), 10) == b"", "closed without an answer"
        assert 0.4 < loop.time() - started_at < 8
        writer.close()
    finally:
        await runner.cleanup()
