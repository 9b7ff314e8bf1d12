"""The sync loop and the store: backoff, token resync, window roll, atomicity, migrations."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import stat
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.base import (
    Capabilities,
    ChangeSet,
    Item,
    SyncState,
    SyncTokenInvalid,
    UpstreamUnavailable,
)
from server.errors import StoreError
from server.store import MIGRATIONS, BusyRow, Store, StoredItem
from server.sync.loop import retry_delay
from tests.conftest import NOW, event, ics


class ScriptedAdapter:
    """An adapter whose answers the test queues; records the states it was given."""

    capabilities = Capabilities(incremental=True)

    def __init__(self, name: str) -> None:
        self.name = name
        self.answers: list[ChangeSet | Exception] = []
        self.states: list[dict[str, Any]] = []

    async def sync(self, state: SyncState) -> ChangeSet:
        self.states.append(dict(state))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def close(self) -> None:
        pass


def item(uid: str, start: str, end: str, *extra: str) -> Item:
    return Item(key=uid, ical=ics(event(uid, start, end, *extra)))


@pytest.fixture(params=[0, 2], ids=["threads", "workers"])
def workers(request: pytest.FixtureRequest) -> int:
    """``[server] expansion_workers``: the tests using it run with both, alike."""
    return int(request.param)


async def test_invalid_token_triggers_one_clean_full_resync(make_config, serve, workers) -> None:
    adapter = ScriptedAdapter("s")
    config = make_config([{"name": "s", "kind": "ics", "url": "unused.ics"}],
                         expansion_workers=workers)
    _, runtime = await serve(config, adapters={"s": adapter})
    adapter.answers = [
        ChangeSet(state={"token": "t1"}, full=True, upserted=(
            item("a", "20261126T100000Z", "20261126T110000Z"),
            item("b", "20261127T100000Z", "20261127T110000Z"))),
        ChangeSet(state={"token": "t2"}, deleted=("a",)),
        SyncTokenInvalid("token expired"),
        ChangeSet(state={"token": "t9"}, full=True, upserted=(
            item("b", "20261127T100000Z", "20261127T110000Z"),
            item("c", "20261128T100000Z", "20261128T110000Z"))),
    ]
    await runtime.sync.run_all_once()
    [incremental] = await runtime.sync.run_all_once()
    assert incremental.deleted == 1
    [resync] = await runtime.sync.run_all_once()
    assert resync.ok and resync.full
    assert adapter.states == [{}, {"token": "t1"}, {"token": "t2"}, {}]
    source_id = runtime.source_ids["s"]
    rows = await runtime.store.busy_rows([source_id], 0, 2**40)
    assert sorted(r[0] for r in rows) == [1795773600, 1795860000], "b and c, once each"
    assert (await runtime.store.source(source_id)).state == {"token": "t9"}


async def test_unexpected_adapter_error_is_contained(make_config, serve) -> None:
    adapter = ScriptedAdapter("s")
    _, runtime = await serve(make_config([{"name": "s", "kind": "ics", "url": "x.ics"}]),
                             adapters={"s": adapter})
    adapter.answers = [RuntimeError("adapter bug"), UpstreamUnavailable("down")]
    [first] = await runtime.sync.run_all_once()
    [second] = await runtime.sync.run_all_once()
    assert not first.ok and first.error == "adapter bug"
    assert not second.ok
    assert runtime.sync.syncers["s"].failures == 2
    record = (await runtime.store.sources())[0]
    assert record.consecutive_failures == 2 and record.last_error == "down"


async def test_unreadable_item_is_skipped_and_keeps_last_good_version(make_config, serve,
                                                                       workers) -> None:
    adapter = ScriptedAdapter("s")
    _, runtime = await serve(make_config([{"name": "s", "kind": "ics", "url": "x.ics"}],
                                         expansion_workers=workers), adapters={"s": adapter})
    good = item("a", "20261126T100000Z", "20261126T110000Z")
    adapter.answers = [
        ChangeSet(state={}, full=True, upserted=(good,)),
        ChangeSet(state={}, full=True, upserted=(
            Item("a", "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART:garbage\r\nEND:VCALENDAR"),
            item("b", "20261127T100000Z", "20261127T110000Z"))),
    ]
    await runtime.sync.run_all_once()
    [outcome] = await runtime.sync.run_all_once()
    assert outcome.ok and [s.key for s in outcome.skipped] == ["a"]
    rows = await runtime.store.busy_rows([runtime.source_ids["s"]], 0, 2**40)
    assert len(rows) == 2


async def test_recurring_window_rolls_forward(make_config, serve, clock, workers) -> None:
    adapter = ScriptedAdapter("s")
    config = make_config([{"name": "s", "kind": "ics", "url": "x.ics"}], horizon_days=10,
                         expansion_workers=workers)
    _, runtime = await serve(config, adapters={"s": adapter})
    weekly = item("w", "20261102T100000Z", "20261102T110000Z", "RRULE:FREQ=DAILY")
    adapter.answers = [ChangeSet(state={}, full=True, upserted=(weekly,)),
                       ChangeSet(state={}, unchanged=True), ChangeSet(state={}, unchanged=True)]
    await runtime.sync.run_all_once()
    source_id = runtime.source_ids["s"]
    first = await runtime.store.busy_rows([source_id], 0, 2**40)
    assert len(first) == 11  # Nov 24 .. Dec 4 (window: now - 1 day .. now + 10 days)
    clock.set(NOW + timedelta(hours=12))
    await runtime.sync.run_all_once()
    assert len(await runtime.store.busy_rows([source_id], 0, 2**40)) == 11, "moved < a day"
    clock.set(NOW + timedelta(days=5))
    await runtime.sync.run_all_once()
    rolled = await runtime.store.busy_rows([source_id], 0, 2**40)
    assert min(r[0] for r in rolled) > max(r[0] for r in first) - 7 * 86400
    assert max(r[0] for r in rolled) == max(r[0] for r in first) + 5 * 86400


def test_retry_delay_backs_off_with_jitter_and_cap() -> None:
    rng = random.Random(7)
    poll = timedelta(minutes=5)
    assert retry_delay(0, poll, rng) == 300
    delays = [retry_delay(n, poll, rng) for n in range(1, 12)]
    assert 24 <= delays[0] <= 36
    assert all(d <= 1800 * 1.2 for d in delays)
    assert delays[-1] >= 1800 * 0.8
    assert retry_delay(1, timedelta(seconds=10), rng) <= 12
    assert retry_delay(20, timedelta(hours=2), rng) >= 7200 * 0.8


# -- store -------------------------------------------------------------------

def stored(key: str, *rows: tuple[int, int]) -> StoredItem:
    return StoredItem(key=key, ical="BEGIN:VCALENDAR", content_hash=key, etag=None,
                      recurring=False, instances=tuple(BusyRow(s, e, "busy") for s, e in rows))


async def test_store_file_is_private_and_migrations_are_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "db.sqlite3"
    store = await Store.open(path)
    source = await store.ensure_source("a", "ics")
    await store.apply_changes(source, upserts=[stored("x", (10, 20))], deletes=[], state={},
                              now=1, window_end=None)
    await store.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    again = await Store.open(path)
    assert await again.ensure_source("a", "ics") == source
    assert len(await again.busy_rows([source], 0, 100)) == 1
    await again.close()
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


async def test_store_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    with sqlite3.connect(path) as raw:
        raw.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(StoreError, match="newer than this fbproxy"):
        await Store.open(path)


async def test_failed_apply_leaves_nothing_half_done(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "db.sqlite3")
    source = await store.ensure_source("a", "ics")
    await store.apply_changes(source, upserts=[stored("x", (10, 20)), stored("y", (30, 40))],
                              deletes=[], state={"v": 1}, now=1, window_end=None)
    broken = stored("z", (50, 40))  # end before start violates a CHECK
    with pytest.raises(sqlite3.IntegrityError):
        await store.apply_changes(source, upserts=[stored("w", (60, 70)), broken],
                                  deletes=["x"], state={"v": 2}, now=2, window_end=None)
    rows = await store.busy_rows([source], 0, 100)
    assert sorted((r[0], r[1]) for r in rows) == [(10, 20), (30, 40)]
    assert (await store.source(source)).state == {"v": 1}
    await store.close()


async def test_changing_a_sources_kind_starts_it_afresh(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "db.sqlite3")
    first = await store.ensure_source("a", "ics")
    await store.apply_changes(first, upserts=[stored("x", (10, 20))], deletes=[], state={},
                              now=1, window_end=None)
    second = await store.ensure_source("a", "caldav")
    assert await store.busy_rows([first, second], 0, 100) == []
    assert (await store.source(second)).kind == "caldav"
    await store.close()


async def test_generated_calendar_secret_is_stable(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "db.sqlite3")
    secret = await store.calendar_secret("me", now=1)
    assert len(secret) >= 40 and await store.calendar_secret("me", now=2) == secret
    assert await store.calendar_secret("other", now=1) != secret
    await store.close()


async def test_a_file_that_is_no_database_gets_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="cannot open database"):
        await Store.open(path)


async def test_busy_generation_is_seen_across_processes(tmp_path: Path) -> None:
    """A server must see what `fbproxy sync` in another process changed."""
    path = tmp_path / "db.sqlite3"
    server_side, cli_side = await Store.open(path), await Store.open(path)
    try:
        before = await server_side.busy_generation(max_age=0)
        source = await cli_side.ensure_source("a", "ics")
        await cli_side.record_unchanged(source, state={}, now=1)
        unchanged = await server_side.busy_generation(max_age=0)
        await cli_side.apply_changes(source, upserts=[stored("x", (10, 20))], deletes=[],
                                     state={}, now=2, window_end=None)
        changed = await server_side.busy_generation(max_age=0)
        assert changed[0] > unchanged[0] >= before[0]
        await cli_side.record_unchanged(source, state={}, now=3)
        assert await server_side.busy_generation(max_age=0) == changed
        # Within max_age the server answers from memory: no round trip.
        await cli_side.apply_changes(source, upserts=[stored("y", (30, 40))], deletes=[],
                                     state={}, now=4, window_end=None)
        assert await server_side.busy_generation(max_age=3600) == changed
        # Its own changes show at once.
        await server_side.prune_instances(source, before=0)
        assert await server_side.busy_generation(max_age=3600) != changed
    finally:
        await server_side.close()
        await cli_side.close()


async def test_a_hold_of_an_unknown_booking_still_blocks(make_config, serve, workers) -> None:
    """Only holds of this fbproxy's own bookings are left to the booking; others are busy."""
    adapter = ScriptedAdapter("s")
    _, runtime = await serve(make_config([{"name": "s", "kind": "ics", "url": "x.ics"}],
                                         expansion_workers=workers), adapters={"s": adapter})
    foreign = item("h", "20261126T100000Z", "20261126T110000Z", "X-FBPROXY-BOOKING:bk_other")
    adapter.answers = [ChangeSet(state={}, full=True, upserted=(foreign,))]
    await runtime.sync.run_all_once()
    assert len(await runtime.store.busy_rows([runtime.source_ids["s"]], 0, 2**40)) == 1


@given(st.lists(st.tuples(st.integers(0, 1000), st.integers(1, 400)), max_size=30),
       st.integers(0, 1400), st.integers(1, 200))
@settings(max_examples=40, deadline=None)
def test_bounded_busy_query_finds_every_overlap(tmp_path_factory: pytest.TempPathFactory,
                                                spans: list[tuple[int, int]], start: int,
                                                length: int) -> None:
    """The query bounds end_ts by the longest instance; it must still see every overlap,
    long events included, and see them again after a reopen (migration 7 backfill)."""

    async def check() -> None:
        path = tmp_path_factory.mktemp("bounded") / "db.sqlite3"
        store = await Store.open(path)
        source = await store.ensure_source("a", "ics")
        items = [stored(f"k{i}", (s, s + d)) for i, (s, d) in enumerate(spans)]
        await store.apply_changes(source, upserts=items, deletes=[], state={}, now=1,
                                  window_end=None)
        expected = sorted((s, s + d) for s, d in spans if s + d > start and s < start + length)
        rows = await store.busy_rows([source], start, start + length)
        assert sorted((r[0], r[1]) for r in rows) == expected
        await store.close()

    asyncio.run(check())


async def test_every_recheck_round_is_stopped_at_shutdown(make_config, serve) -> None:
    """A re-check round replaced by a newer one while it waits is still stopped by stop()."""
    adapter = ScriptedAdapter("s")
    _, runtime = await serve(make_config([{"name": "s", "kind": "ics", "url": "x.ics"}]),
                             adapters={"s": adapter})
    syncer = runtime.sync.syncers["s"]
    release = asyncio.Event()

    async def slow_sync(state: dict[str, Any]) -> ChangeSet:
        await release.wait()
        return ChangeSet(state={}, full=True)

    adapter.sync = slow_sync  # type: ignore[method-assign]
    loop = asyncio.get_running_loop()
    first = asyncio.ensure_future(syncer.fresh_round(0.0))
    await asyncio.sleep(0)
    second = asyncio.ensure_future(syncer.fresh_round(loop.time() + 1e9))
    await asyncio.sleep(0)
    assert len(syncer._rounds) == 2, "the second asked for a newer round than the first"
    await runtime.sync.stop()
    assert not syncer._rounds
    for waiter in (first, second):
        with pytest.raises(asyncio.CancelledError):
            await waiter


async def test_a_recheck_goes_on_once_the_changes_are_stored(make_config, serve) -> None:
    """A booking's re-check waits for the upstream's changes to be stored, or to be known
    as none, not for the round's bookkeeping after that (its duration written behind
    other writers), which under load had bookings queue for seconds."""
    adapter = ScriptedAdapter("s")
    _, runtime = await serve(make_config([{"name": "s", "kind": "ics", "url": "x.ics"}]),
                             adapters={"s": adapter})
    syncer = runtime.sync.syncers["s"]
    store = runtime.store
    gates: list[tuple[asyncio.Event, asyncio.Event]] = []
    record_duration = store.record_duration

    async def slow_duration(source_id: int, seconds: float) -> None:
        held, release = gates[-1]
        held.set()
        await release.wait()
        await record_duration(source_id, seconds)

    store.record_duration = slow_duration  # type: ignore[method-assign]
    adapter.answers = [
        ChangeSet(state={"token": "t1"}, full=True,
                  upserted=(item("a", "20261126T100000Z", "20261126T110000Z"),)),
        ChangeSet(state={"token": "t1"}, unchanged=True)]
    try:
        for _ in range(2):
            held, release = asyncio.Event(), asyncio.Event()
            gates.append((held, release))
            outcome = await asyncio.wait_for(
                syncer.fresh_round(asyncio.get_running_loop().time() + 1e9), 10)
            assert outcome.ok
            await asyncio.wait_for(held.wait(), 10)  # the round is still at its bookkeeping
            assert [r[:2] for r in await store.busy_rows([runtime.source_ids["s"]], 0,
                                                         2**40)] == [(1795687200, 1795690800)]
            release.set()
            await asyncio.wait_for(asyncio.gather(*syncer._rounds), 10)
    finally:
        for _, release in gates:
            release.set()


async def test_an_unchanged_feed_is_read_again_when_its_zone_changes(
        tmp_path: Path, make_config, serve, workers) -> None:
    """Stored items expanded under another zone (or expansion version) are expanded again
    on the next round, also when the upstream has nothing new: an upgrade or a config
    change must not leave the old reading in place."""
    floating = ics(event("f", "20261126T090000", "20261126T100000"))
    (tmp_path / "f.ics").write_text(floating)
    source = {"name": "f", "kind": "ics", "url": "f.ics"}
    _, runtime = await serve(make_config([{**source, "timezone": "UTC"}],
                                         expansion_workers=workers))
    await runtime.sync.run_all_once()
    source_id = runtime.source_ids["f"]
    assert [r[:2] for r in await runtime.store.busy_rows([source_id], 0, 2**40)] == \
        [(1795683600, 1795687200)]  # 09:00-10:00 UTC
    await runtime.store.close()

    _, runtime = await serve(make_config([{**source, "timezone": "Europe/Berlin"}],
                                         expansion_workers=workers))
    [outcome] = await runtime.sync.run_all_once()
    assert outcome.unchanged, "the feed itself did not change"
    assert [r[:2] for r in await runtime.store.busy_rows([runtime.source_ids["f"]], 0, 2**40)] \
        == [(1795680000, 1795683600)]  # 09:00-10:00 in Berlin is 08:00-09:00 UTC
