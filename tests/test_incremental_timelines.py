"""Incremental timelines: kept current change by change, always what a full read gives.

The property test drives a store through random item upserts, deletes, window
re-expansions, prunes and served-window moves over several sources, some made
through the observed store (their rows come from its change log), some
through a second store on the same database (another process or instance: the
observer must notice and read that source again). After every step, the
incrementally kept timeline must equal a fresh full read of the store, merged.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.booking.availability import BUSY, TENTATIVE, merge_rows
from server.booking.timelines import SourceTimelines
from server.config.database import PostgresUrl
from server.runtime import open_runtime
from server.store import BusyRow, Store, StoredItem
from server.store.instance_log import InstanceLog
from tests.conftest import event, ics

SOURCES = 3
KEYS = 6
GRID = 400
WINDOW = 150

# On a coarse grid, so rows often touch each other and the window's edges.
ticks = st.integers(0, GRID // 10).map(lambda n: n * 10)
row = st.tuples(ticks, st.integers(1, 6).map(lambda n: n * 10), st.sampled_from([BUSY, TENTATIVE]))
rows = st.lists(row, max_size=3)
via = st.sampled_from(["here", "here", "there"])
step = st.one_of(
    st.tuples(st.just("upsert"), st.integers(0, SOURCES - 1), st.integers(0, KEYS - 1), rows,
              via),
    st.tuples(st.just("delete"), st.integers(0, SOURCES - 1), st.integers(0, KEYS - 1), via),
    st.tuples(st.just("bulk"), st.integers(0, SOURCES - 1), st.integers(20, 40), via),
    st.tuples(st.just("replace"), st.integers(0, SOURCES - 1),
              st.lists(st.tuples(st.integers(0, KEYS - 1), rows), max_size=3), via),
    st.tuples(st.just("prune"), st.integers(0, SOURCES - 1), ticks, via),
    st.tuples(st.just("window"), ticks.filter(lambda t: t <= GRID - WINDOW)),
)


def stored(key: str, spans: list[tuple[int, int, str]]) -> StoredItem:
    """An item with a row per (start, duration, status)."""
    return StoredItem(key=key, ical="BEGIN:VCALENDAR", content_hash=key, etag=None,
                      recurring=False,
                      instances=tuple(BusyRow(s, s + d, status) for s, d, status in spans))


async def apply(store: Store, source: int, action: tuple[Any, ...]) -> None:
    kind = action[0]
    if kind == "upsert":
        await store.apply_changes(source, upserts=[stored(f"k{action[2]}", action[3])],
                                  deletes=[], state={}, now=1, window_end=None)
    elif kind == "delete":
        await store.apply_changes(source, upserts=[], deletes=[f"k{action[2]}"], state={},
                                  now=1, window_end=None)
    elif kind == "bulk":  # more rows than a RowSet changes one by one
        items = [stored(f"b{i}", [((7 * i) % GRID, 5 + i % 30, BUSY), (i, 3, TENTATIVE),
                                  ((13 * i) % GRID, 9, BUSY)]) for i in range(action[2])]
        await store.apply_changes(source, upserts=items, deletes=[], state={}, now=1,
                                  window_end=None)
    elif kind == "replace":
        await store.replace_instances(source, [stored(f"k{k}", r) for k, r in action[2]],
                                      window_end=GRID)
    else:
        await store.prune_instances(source, before=action[2])


class Counting:
    """Counts the observer's full reads of a source (window moves read besides=...)."""

    def __init__(self, store: Store) -> None:
        self.full_reads = 0
        read = store.source_rows

        async def source_rows(source_id: int, window: tuple[int, int], *,
                              besides: tuple[int, int] | None = None) -> Any:
            self.full_reads += besides is None
            return await read(source_id, window, besides=besides)

        store.source_rows = source_rows  # type: ignore[method-assign]


async def check(open_store: Callable[[], Any], names: Iterator[str],
                steps: list[tuple[Any, ...]]) -> None:
    here, there = await open_store(), await open_store()
    try:
        ids = [await here.ensure_source(next(names), "ics") for _ in range(SOURCES)]
        timelines = SourceTimelines()
        window = (0, WINDOW)
        for action in [("window", 0), *steps]:
            if action[0] == "window":
                window = (action[1], action[1] + WINDOW)
            else:
                await apply(here if action[-1] == "here" else there, ids[action[1]], action)
            for chosen in (ids, ids[:1]):
                expected = merge_rows(await here.busy_rows(chosen, *window))
                assert await timelines.merged(here, chosen, window) == expected, action
            for source in ids:
                held = timelines.held(source)
                assert held is not None
                assert sorted(held.rows.rows()) == sorted(
                    await here.busy_rows([source], *window)), action
    finally:
        await here.close()
        await there.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> Path | PostgresUrl:
    if request.param == "sqlite":
        return tmp_path / "db.sqlite3"
    return PostgresUrl(request.getfixturevalue("postgres_url"))


@given(st.lists(step, min_size=1, max_size=25))
@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_kept_timeline_equals_a_full_read_after_every_step(
        location: Path | PostgresUrl, steps: list[tuple[Any, ...]]) -> None:
    # One database for all examples; each example's sources are new ones.
    names = (f"s{n}" for n in itertools.count(next(EXAMPLES) * 100))
    asyncio.run(check(lambda: Store.open(location), names, steps))


EXAMPLES = itertools.count()


async def test_a_change_made_here_is_applied_without_reading_the_source(
        tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    here, there = await Store.open(path), await Store.open(path)
    try:
        a, b = [await here.ensure_source(name, "ics") for name in "ab"]
        for source in (a, b):
            await here.apply_changes(source, upserts=[stored("x", [(10, 10, BUSY)])],
                                     deletes=[], state={}, now=1, window_end=None)
        counting = Counting(here)
        timelines = SourceTimelines()
        await timelines.merged(here, [a, b], (0, 1000))
        assert counting.full_reads == 2  # the first query reads each source
        await here.apply_changes(a, upserts=[stored("y", [(40, 10, BUSY)])], deletes=[],
                                 state={}, now=2, window_end=None)
        blocks = await timelines.merged(here, [a, b], (0, 1000))
        assert [(x.start, x.end) for x in blocks] == [(10, 20), (40, 50)]
        assert counting.full_reads == 2, "applied from the change log"
        # Another process's change: that source, and only it, is read again.
        await there.apply_changes(b, upserts=[stored("z", [(60, 10, TENTATIVE)])], deletes=[],
                                  state={}, now=3, window_end=None)
        blocks = await timelines.merged(here, [a, b], (0, 1000))
        assert [(x.start, x.end, x.status) for x in blocks][-1] == (60, 70, TENTATIVE)
        assert counting.full_reads == 3
        # The window moving on reads only the rows entering it.
        await timelines.merged(here, [a, b], (15, 1015))
        assert counting.full_reads == 3
    finally:
        await here.close()
        await there.close()


WORK_ICS = ics(event("w1", "20261126T090000Z", "20261126T100000Z"))
HOME_ICS = ics(event("h1", "20261126T130000Z", "20261126T140000Z"))
SECRET = "s3cret-s3cret-s3cret-0001"
HOME_SECRET = "another-secret-0000002"


def rewrite(path: Path, text: str) -> None:
    """New content with a new mtime (an ICS source compares both)."""
    mtime = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    os.utime(path, ns=(mtime + 5_000_000_000, mtime + 5_000_000_000))


async def answers(client: Any) -> tuple[list[tuple[str, str]], str, str]:
    """The JSON free/busy of 26-27 November, and the calendar's and home-only's feeds."""
    response = await client.get("/api/v1/freebusy?calendar=me&start=2026-11-26T00:00:00Z"
                                "&end=2026-11-28T00:00:00Z",
                                headers={"Authorization": f"Bearer {SECRET}"})
    assert response.status == 200
    busy = [(b["start"][5:16], b["end"][11:16]) for b in (await response.json())["busy"]]
    feed = await (await client.get(f"/feeds/{SECRET}/busy.ics")).text()
    home = await (await client.get(f"/feeds/{HOME_SECRET}/freebusy.ics")).text()
    return busy, feed, home


async def test_a_change_through_sync_shows_at_once_in_json_and_feeds(
        tmp_path: Path, make_config: Any, serve: Any, clock: Any) -> None:
    rewrite(tmp_path / "work.ics", WORK_ICS)
    rewrite(tmp_path / "home.ics", HOME_ICS)
    config = make_config(
        [{"name": "work", "kind": "ics", "url": "work.ics"},
         {"name": "home", "kind": "ics", "url": "home.ics"}],
        [{"name": "me", "sources": ["work", "home"], "secret": SECRET},
         {"name": "home-only", "sources": ["home"], "secret": HOME_SECRET}])
    client, runtime = await serve(config)
    await runtime.sync.run_all_once()
    busy, feed, home = await answers(client)
    assert busy == [("11-26T09:00", "10:00"), ("11-26T13:00", "14:00")]
    assert "20261126T130000Z" in feed and "20261126T130000Z" in home
    counting = Counting(runtime.store)

    # A change synced here: applied from the change log, seen by the next answers.
    rewrite(tmp_path / "home.ics", ics(event("h1", "20261126T150000Z", "20261126T160000Z"),
                                       event("h2", "20261127T080000Z", "20261127T083000Z")))
    await runtime.sync.run_all_once(["home"])
    busy, feed, home = await answers(client)
    assert busy == [("11-26T09:00", "10:00"), ("11-26T15:00", "16:00"),
                    ("11-27T08:00", "08:30")]
    for text in (feed, home):
        assert "20261126T150000Z" in text and "20261127T080000Z" in text
        assert "20261126T130000Z" not in text
    assert counting.full_reads == 0

    # A change synced by another process (`fbproxy sync` beside the server): seen
    # as soon as the change counters are read again (at most a second later),
    # and only that source is read again.
    rewrite(tmp_path / "work.ics", ics(event("w1", "20261126T100000Z", "20261126T110000Z")))
    async with open_runtime(config, clock=clock) as elsewhere:
        [outcome] = await elsewhere.sync.run_all_once(["work"])
        assert outcome.ok and outcome.expanded == 1
    await runtime.store.instance_generation(max_age=0)
    busy, feed, _ = await answers(client)
    assert busy == [("11-26T10:00", "11:00"), ("11-26T15:00", "16:00"),
                    ("11-27T08:00", "08:30")]
    assert "20261126T100000Z" in feed and "20261126T090000Z" not in feed
    assert counting.full_reads == 1


def test_the_change_log_keeps_the_latest_steps_and_says_when_one_is_missing() -> None:
    log = InstanceLog(capacity=4)
    log.record(1, 1, [], [(0, 10, BUSY)])
    log.record(1, 2, [(0, 10, BUSY)], [(5, 10, BUSY)])
    log.record(2, 1, None, [(0, 1, BUSY)])  # what it took out is not known: not kept
    assert log.between(1, 0, 2) == [((), ((0, 10, BUSY),)), (((0, 10, BUSY),), ((5, 10, BUSY),))]
    assert log.between(1, 2, 2) == []
    assert log.between(2, 0, 1) is None
    assert log.between(1, 2, 1) is None  # backwards: never a step
    log.record(1, 3, [(5, 10, BUSY)], [(6, 10, BUSY), (7, 10, BUSY)])  # over capacity
    assert log.between(1, 0, 3) is None, "the oldest step was forgotten"
    assert log.between(1, 2, 3) is not None
    log.record(3, 1, [], [(0, 1, BUSY)] * 5)  # larger than the whole log: not kept
    assert log.between(3, 0, 1) is None
