"""Three `fbproxy serve` processes on one real PostgreSQL: one booking per slot, failover.

The real console script, three times, each on its own port, sharing one
database: a race for one slot across all three, the slot gone from every
instance the moment one answers 201, an instance killed (SIGKILL) with its
bookings intact and its sources taken over within the lease time, and holds
written to real Radicale exactly once across killed instances.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import shutil
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from tests.peers import free_port

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.clock_sensitive]

REPO = Path(__file__).resolve().parents[1]
FBPROXY = str(Path(sys.executable).with_name("fbproxy"))
# The console script runs this checkout's code (as in tests/test_crashes.py).
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(
    filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
LEASE_SECONDS = 5


@dataclass
class Instance:
    port: int
    folder: Path
    process: asyncio.subprocess.Process | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.folder / f"fbproxy-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def example_config(folder: Path, database_url: str, port: int) -> Path:
    """The shipped example config, with the database and address changed (and the
    server trusting the test as its reverse proxy, so guests have their own address)."""
    text = (REPO / "config.example.toml").read_text()
    text = re.sub(r'(?m)^listen = .*$', f'listen = "127.0.0.1:{port}"', text)
    text = re.sub(r'(?m)^base_url = .*$', f'base_url = "http://127.0.0.1:{port}"', text)
    text = re.sub(r'(?m)^database = .*$',
                  f'database = "{database_url}"\nlease_seconds = {LEASE_SECONDS}\n'
                  f'instance_name = "i{port}"\ntrusted_proxies = ["127.0.0.1/32"]', text)
    path = folder / f"config-{port}.toml"
    path.write_text(text)
    return path


async def start(instance: Instance, config: Path, session: aiohttp.ClientSession) -> None:
    with instance.log.open("ab") as log:
        instance.process = await asyncio.create_subprocess_exec(
            FBPROXY, "serve", "--config", str(config), cwd=instance.folder, env=ENV,
            stdout=log, stderr=log)
    for _ in range(600):
        try:
            async with session.get(f"{instance.url}/healthz") as health:
                if health.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        if instance.process.returncode is not None:
            break
        await asyncio.sleep(0.05)
    raise AssertionError(f"fbproxy on {instance.port} did not start:\n"
                         + instance.log.read_text()[-3000:])


async def stop(instance: Instance, sig: int = signal.SIGTERM) -> None:
    if instance.process is not None and instance.process.returncode is None:
        instance.process.send_signal(sig)
        await instance.process.wait()


@pytest.fixture
async def three(tmp_path: Path, postgres_url: str) -> AsyncIterator[list[Instance]]:
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    instances = [Instance(free_port(), tmp_path) for _ in range(3)]
    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(start(i, example_config(tmp_path, postgres_url, i.port), session)
                               for i in instances))
        try:
            yield instances
        finally:
            await asyncio.gather(*(stop(i) for i in instances))


async def offered_slots(session: aiohttp.ClientSession, instance: Instance) -> list[str]:
    for _ in range(400):  # until the first sync: never synced, nothing is offered
        async with session.get(f"{instance.url}/api/v1/pages/intro-call/slots") as response:
            if response.status == 200:
                slots = (await response.json())["slots"]
                if slots:
                    return [s["start"] for s in slots]
        await asyncio.sleep(0.05)
    raise AssertionError(f"{instance.url} offers nothing")


async def book(session: aiohttp.ClientSession, instance: Instance, start: str,
               guest: int) -> tuple[int, dict[str, object]]:
    body = {"start": start, "duration": 30, "name": f"Guest {guest}",
            "email": f"guest{guest}@example.org"}
    headers = {"X-Forwarded-For": f"198.51.100.{guest % 250 + 1}"}
    async with session.post(f"{instance.url}/api/v1/pages/intro-call/bookings", json=body,
                            headers=headers) as response:
        return response.status, await response.json()


async def test_sixty_guests_race_for_one_slot_across_three_instances(three: list[Instance],
                                                                     postgres_url: str) -> None:
    async with aiohttp.ClientSession() as session:
        slot = (await offered_slots(session, three[0]))[0]
        for instance in three[1:]:
            assert slot in await offered_slots(session, instance)
        seen_after_201: list[bool] = []

        async def guest(number: int) -> int:
            status, _ = await book(session, three[number % 3], slot, number)
            if status == 201:
                # At once, before the other guests' answers: no instance offers it.
                for instance in three:
                    seen_after_201.append(slot in await offered_slots(session, instance))
            return status

        statuses = await asyncio.gather(*(guest(n) for n in range(60)))
    assert sorted(statuses) == [201] + [409] * 59, statuses
    assert seen_after_201 == [False, False, False]
    connection = await asyncpg.connect(postgres_url)
    try:
        assert await connection.fetchval(
            "SELECT COUNT(*) FROM bookings WHERE status = 'confirmed'") == 1
    finally:
        await connection.close()


async def test_a_killed_instance_loses_nothing_and_its_sources_move_on(
        three: list[Instance], postgres_url: str) -> None:
    connection = await asyncpg.connect(postgres_url)
    try:
        async with aiohttp.ClientSession() as session:
            slots = await offered_slots(session, three[0])

            async def current_holders() -> dict[str, str]:
                return {r["source"]: r["holder"] for r in await connection.fetch(
                    "SELECT source, holder FROM source_leases WHERE expires > "
                    "extract(epoch FROM now()) AND source NOT LIKE '@%'")}

            # The leases spread over the instances as they start (one may hand a source
            # to another): wait until both are held and none moved for a lease's life,
            # so the source the victim syncs is still its own when it is killed.
            holders: dict[str, str] = {}
            stable_since = time.monotonic()
            for _ in range(600):
                now_held = await current_holders()
                if now_held != holders:
                    holders, stable_since = now_held, time.monotonic()
                elif set(holders) == {"work", "personal"} and \
                        time.monotonic() - stable_since >= LEASE_SECONDS:
                    break
                await asyncio.sleep(0.05)
            assert set(holders) == {"work", "personal"}
            # Kill the instance that syncs "work", right after it took a booking.
            victim = next(i for i in three if holders["work"].startswith(f"i{i.port}:"))
            status, booked = await book(session, victim, slots[0], 1)
            assert status == 201
            assert (await current_holders())["work"] == holders["work"], \
                "the source moved before the kill"
            killed_at = time.time()
            await stop(victim, signal.SIGKILL)
            survivors = [i for i in three if i is not victim]

            row = await connection.fetchrow("SELECT status FROM bookings WHERE id = $1",
                                            booked["id"])
            assert row is not None and row["status"] == "confirmed"
            assert slots[0] not in await offered_slots(session, survivors[0])
            status, _ = await book(session, survivors[0], slots[-1], 2)  # far from [0]
            assert status == 201, "the others keep booking"

            # Another instance takes the source within the lease time and syncs it.
            deadline = killed_at + LEASE_SECONDS + 5
            taken_at = synced_at = None
            while time.time() < deadline and synced_at is None:
                lease = await connection.fetchrow(
                    "SELECT holder FROM source_leases WHERE source = 'work'")
                if taken_at is None and not lease["holder"].startswith(f"i{victim.port}:"):
                    taken_at = time.time()
                synced = await connection.fetchval(
                    "SELECT last_attempt FROM sources WHERE name = 'work'")
                if taken_at is not None and synced >= int(killed_at) + 1:
                    synced_at = time.time()
                await asyncio.sleep(0.1)
            assert taken_at is not None, "nobody took the dead instance's source"
            assert synced_at is not None, "the source was taken but not synced; the " \
                "survivors' logs:\n" + "\n".join(i.log.read_text()[-4000:] for i in survivors)
            print(f"\nsource taken over {taken_at - killed_at:.1f} s after SIGKILL "
                  f"(lease_seconds = {LEASE_SECONDS}); synced "
                  f"{synced_at - killed_at:.1f} s after")
            assert taken_at - killed_at <= LEASE_SECONDS + 1.5
    finally:
        await connection.close()


HOLDS_CONFIG = """
[server]
listen = "127.0.0.1:{port}"
database = "{database}"
lease_seconds = {lease}
instance_name = "i{port}"
rate_limit_bookings = "off"
rate_limit_failed_bookings = "off"
rate_limit_pages = "off"
[[sources]]
name = "dav"
kind = "caldav"
url = "{dav}"
username = "{username}"
password = "{password}"
calendars = ["Work"]
poll_interval = "10s"
[[calendars]]
name = "me"
sources = ["dav"]
[[booking_pages]]
slug = "intro"
title = "Intro"
hosts = ["me"]
duration = "30m"
timezone = "UTC"
minimum_notice = "0s"
max_days_ahead = 100
recheck = "off"
[booking_pages.hours]
mon = ["00:00-24:00"]
tue = ["00:00-24:00"]
wed = ["00:00-24:00"]
thu = ["00:00-24:00"]
fri = ["00:00-24:00"]
sat = ["00:00-24:00"]
sun = ["00:00-24:00"]
[booking_pages.hold_target]
me = {{ source = "dav", calendar = "Work" }}
"""


async def test_holds_land_once_each_across_killed_instances(tmp_path: Path, postgres_url: str,
                                                            radicale_peer) -> None:
    from icalendar import Calendar as ICalendar

    from adapters.base import HOLD_MARKER

    peer = radicale_peer
    work = peer.make_calendar("Work")
    rng = random.Random(20261205)
    instances = [Instance(free_port(), tmp_path) for _ in range(3)]
    configs = {}
    for instance in instances:
        configs[instance.port] = tmp_path / f"config-{instance.port}.toml"
        configs[instance.port].write_text(HOLDS_CONFIG.format(
            port=instance.port, database=postgres_url, lease=LEASE_SECONDS, dav=peer.base_url,
            username=peer.username, password=peer.password))
    booked: set[str] = set()
    kills = 0
    claimed_at_kill: list[int] = []
    connection = await asyncpg.connect(postgres_url)
    try:
        async with aiohttp.ClientSession() as session:
            await asyncio.gather(*(start(i, configs[i.port], session) for i in instances))
            slots: list[str] = []
            for _ in range(400):
                async with session.get(f"{instances[0].url}/api/v1/pages/intro/slots") as r:
                    slots = [s["start"] for s in (await r.json())["slots"]]
                if slots:
                    break
                await asyncio.sleep(0.05)
            # Three rounds: a burst of bookings over all three, then one instance is
            # killed while the hold workers deliver, and started again.
            for run in range(3):
                burst = slots[run * 10:(run + 1) * 10]
                results = await asyncio.gather(*(
                    session.post(f"{instances[n % 3].url}/api/v1/pages/intro/bookings",
                                 json={"start": start, "name": "Guest",
                                       "email": "g@example.org"})
                    for n, start in enumerate(burst)))
                for response in results:
                    assert response.status == 201, await response.text()
                    booked.add((await response.json())["id"])
                await asyncio.sleep(rng.uniform(0.0, 0.3))
                victim = instances[rng.randrange(3)]
                claimed_at_kill.append(await connection.fetchval(
                    "SELECT COUNT(*) FROM hold_outbox WHERE state = 'pending' AND claimed_by "
                    "LIKE $1 AND claimed_until > 0", f"i{victim.port}:%"))
                await stop(victim, signal.SIGKILL)
                kills += 1
                await start(victim, configs[victim.port], session)
            # Every hold lands: the killed instances' claims run out (lease_seconds),
            # another instance sees that at its next look (as often), and delivers.
            for _ in range(1800):
                pending = await connection.fetchval(
                    "SELECT COUNT(*) FROM hold_outbox WHERE state = 'pending'")
                if pending == 0:
                    break
                await asyncio.sleep(0.05)
            assert pending == 0, "holds still pending"
            await asyncio.gather(*(stop(i) for i in instances))
    finally:
        await connection.close()
        await asyncio.gather(*(stop(i, signal.SIGKILL) for i in instances))
    markers: list[str] = []
    for href in peer.hrefs(work):
        body = peer.request("GET", href, expect=(200,)).text
        markers += [str(e[HOLD_MARKER]) for e in ICalendar.from_ical(body).walk("VEVENT")
                    if HOLD_MARKER in e]
    assert len(booked) == 30
    assert sorted(markers) == sorted(booked), "each booking's hold exactly once"
    print(f"\n{len(booked)} holds over {kills} killed instances (holds claimed by the killed "
          f"one at each kill: {claimed_at_kill}); each upstream exactly once")
