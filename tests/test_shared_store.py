"""Two instances in one test process, one real PostgreSQL: who syncs, who is asked.

The instances share the database and nothing else (each its own store, pool,
leases and loops); only the test's clock is common. A booking's re-check on the
instance that does not hold a source waits for the holder's round; push
channels are opened once, by the holder; a notification reaching the other
instance wakes the holder. (postgres_url comes first in each test's arguments:
its database is dropped after the apps have closed.)
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from server.app import create_app
from server.outputs.status import admin_secret
from server.runtime import RUNTIME, Runtime
from tests.booking_world import SLOT, build, guest
from tests.conftest import event, ics
from tests.peers import free_port
from tests.test_google_source import OWNER, busy, google, source, timed  # noqa: F401

pytestmark = pytest.mark.postgres


async def until(condition: Callable[[], Any], what: str) -> None:
    """Wait for the background loops (real tasks, not the test's clock) to get there."""
    for _ in range(400):
        if await condition():
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"never: {what}")


async def two(config: Any, aiohttp_client: Any, clock: Any,
              ports: tuple[int, int] | None = None) -> list[tuple[Any, Runtime]]:
    started = []
    for n in range(2):
        app = create_app(config, clock=clock, start_sync=True)
        kwargs = {"server_kwargs": {"port": ports[n]}} if ports else {}
        client = await aiohttp_client(app, **kwargs)
        started.append((client, app[RUNTIME]))
    return started


def holder_of(instances: list[tuple[Any, Runtime]], source: str) -> int:
    [index] = [n for n, (_, runtime) in enumerate(instances)
               if runtime.sync.leases is not None and source in runtime.sync.leases._held]  # noqa: SLF001
    return index


async def settled(instances: list[tuple[Any, Runtime]], sources: list[str]) -> None:
    """Every source held by exactly one instance, and synced."""
    async def check() -> bool:
        held = [name for _, runtime in instances if runtime.sync.leases is not None
                for name in runtime.sync.leases._held]  # noqa: SLF001
        records = await instances[0][1].store.sources()
        return sorted(held) == sorted(sources) and all(r.last_success for r in records)
    await until(check, "every source held once and synced")


async def test_a_recheck_on_the_other_instance_waits_for_the_holders_round(
        postgres_url, sources, make_config, aiohttp_client, clock, tmp_path: Path) -> None:
    config = build(make_config, sources, recheck="required", recheck_timeout="10s",
                   server={"database": postgres_url, "lease_seconds": 5})
    instances = await two(config, aiohttp_client, clock)
    await settled(instances, ["alex", "kim", "sam"])
    other = 1 - holder_of(instances, "alex")
    client, runtime = instances[other]
    assert SLOT in [s["start"] for s in (await (await client.get(
        "/api/v1/pages/intro/slots?start=2026-11-26&end=2026-11-27")).json())["slots"]]

    # An event lands upstream a moment before a guest books through the instance
    # that does not sync alex: its re-check asks the holder, whose round sees it.
    path = tmp_path / "alex.ics"
    path.write_text(ics(event("a1", "20261126T090000Z", "20261126T093000Z"),
                        event("a2", "20261126T100000Z", "20261126T103000Z")))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
    clock.set(clock.now() + timedelta(seconds=2))
    response = await client.post("/api/v1/pages/intro/bookings", json=guest())
    assert response.status == 409, await response.text()
    record = next(r for r in await runtime.store.sources() if r.name == "alex")
    assert record.last_attempt == int(clock.now().timestamp()), "the holder ran the round"

    # Either instance's status says which instance syncs what.
    secret = await admin_secret(runtime)
    report = await (await client.get("/api/v1/status", headers={
        "Authorization": f"Bearer {secret}"})).json()
    holder = instances[1 - other][1].sync.leases
    assert holder is not None and report["instance"] == runtime.sync.leases.holder  # type: ignore[union-attr]
    assert {s["name"]: s["synced_by"] for s in report["sources"]}["alex"] == holder.holder
    for _, each in instances:
        await each.sync.stop()


async def test_push_channels_are_opened_once_and_any_instance_takes_notifications(
        postgres_url, google, tmp_path, make_config, aiohttp_client, clock,  # noqa: F811
        monkeypatch) -> None:
    from server.sync.tokens import open_token_vaults
    from tests.test_tokens import KEY_NEW

    monkeypatch.setenv("FBPROXY_TEST_KEYS", KEY_NEW)
    ports = (free_port(), free_port())
    raw = source(google, tmp_path, push=True)
    token = Path(raw["token_file"]).read_text()  # noqa: ASYNC240 - a test's small file
    config = make_config([raw], database=postgres_url, secrets_key_env="FBPROXY_TEST_KEYS",
                         lease_seconds=5, base_url=f"http://127.0.0.1:{ports[0]}")
    # With PostgreSQL the token is kept in the database: `fbproxy auth` puts it there.
    async with open_token_vaults(config) as vaults:
        vault = vaults.for_source(config.source("g"))
        assert vault is not None
        await vault.save(token)
    instances = await two(config, aiohttp_client, clock, ports)
    await settled(instances, ["g"])
    await until(lambda: _channels(instances), "a channel")
    for _, runtime in instances:  # each checks its channels once more
        assert runtime.push is not None
        await runtime.push.ensure()
    watches = [p for m, p, _ in google.requests if p.endswith("/watch")]
    assert len(watches) == 1, "one channel for both instances"
    [channel] = await instances[0][1].store.channels()

    # The notification reaches the instance that does not sync g: the holder syncs.
    other = 1 - holder_of(instances, "g")
    google.put_event(OWNER, timed("new", "2026-11-26T09:00:00Z", "2026-11-26T10:00:00Z"))
    response = await instances[other][0].post("/hooks/google", headers={
        "X-Goog-Channel-ID": channel.channel_id, "X-Goog-Channel-Token": channel.token,
        "X-Goog-Resource-ID": channel.resource_id, "X-Goog-Resource-State": "exists"})
    assert response.status == 200

    async def seen() -> bool:
        return await busy(instances[other][0]) == [("26T09:00", "10:00", "busy")]
    await until(seen, "the holder's round after the notification")
    for _, runtime in instances:
        await runtime.sync.stop()


async def _channels(instances: list[tuple[Any, Runtime]]) -> bool:
    return bool(await instances[0][1].store.channels())


async def test_round_robin_and_daily_limits_hold_across_instances(
        postgres_url, sources, make_config, aiohttp_client, clock) -> None:
    """The page's rules are checked in the booking transaction, which every instance's
    takes one at a time: fairness and limits see the other instance's bookings."""
    from tests.booking_world import HOSTS

    config = build(make_config, sources, hosts=list(HOSTS), mode="round_robin", daily_limit=1,
                   server={"database": postgres_url})
    clients = []
    for _ in range(2):
        app = create_app(config, clock=clock, start_sync=False)
        clients.append(await aiohttp_client(app))
    await app[RUNTIME].sync.run_all_once()
    slot = "2026-11-26T09:00:00Z"  # alex is busy then: only sam and kim can take it
    responses = await asyncio.gather(*(
        clients[n % 2].post("/api/v1/pages/intro/bookings", json=guest(start=slot,
                                                                      name=f"G{n}"))
        for n in range(6)))
    assert sorted(r.status for r in responses) == [201, 201, 409, 409, 409, 409]
    assert sorted([(await r.json())["host"] for r in responses if r.status == 201]) == [
        "kim", "sam"]
    # Each host's one booking that day used its limit: alex alone is left, once.
    responses = await asyncio.gather(*(
        clients[n % 2].post("/api/v1/pages/intro/bookings",
                            json=guest(start="2026-11-26T11:00:00Z", name=f"H{n}"))
        for n in range(4)))
    assert sorted(r.status for r in responses) == [201, 409, 409, 409]
    assert [(await r.json())["host"] for r in responses if r.status == 201] == ["alex"]
