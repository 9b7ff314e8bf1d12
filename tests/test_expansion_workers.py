"""Expansion in worker processes (issue 22): how the pool fails, and that it reads
items exactly as threads do.

- a worker that dies mid-round (killed, or exiting), or fails, fails that round:
  nothing of it is stored, the failure is recorded with backoff, and the next
  round succeeds; the same when the worker splitting the feed dies;
- a hostile item in a worker is skipped with its reason, the rest is stored;
- a 20 MB event is read in a worker whose memory stays bounded and which ends
  with its task (each task runs in a new worker); a stuck task is ended at its
  time limit;
- ``expansion_workers = 0`` (threads) stores the same rows and skips the same
  items with the same reasons as worker processes, on every hostile file.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import psutil
import pytest

from server.kit.processes import WorkerDied, WorkerProcesses
from server.runtime import WORKER_PRELOAD, Runtime
from server.sync.expander import Expander, split
from tests.conftest import event, ics
from tests.worker_hooks import die_once, die_once_then, report_then, stuck

HOSTILE = Path(__file__).parent / "data" / "hostile"
MiB = 1024 * 1024
# A worker's peak memory reading a 20 MB feed: the bound asserted (measured: ~150 MiB).
WORKER_MEMORY_BOUND = 400 * MiB


class Wrapped(WorkerProcesses):
    """Worker processes running every task inside ``wrap`` (a picklable function)."""

    def __init__(self, workers: int, wrap: Callable[..., Any]) -> None:
        super().__init__(workers, preload=WORKER_PRELOAD)
        self.wrap = wrap

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        return super().submit(self.wrap, fn, *args, **kwargs)


async def snapshot(runtime: Runtime, source: str) -> tuple[Any, ...]:
    source_id = runtime.source_ids[source]
    record = await runtime.store.source(source_id)
    return (sorted(await runtime.store.items(source_id)),
            sorted(await runtime.store.busy_rows([source_id], 0, 2**40)),
            dict(record.state), record.window_end)


def feed_of(count: int) -> str:
    return ics(*(event(f"e{i}", f"202611{26 + i % 4}T{8 + i % 9:02d}0000Z",
                       f"202611{26 + i % 4}T{8 + i % 9:02d}3000Z") for i in range(count)))


def rewrite(path: Path, text: str) -> None:
    """New content, seen as changed whatever the file system's clock."""
    before = path.stat().st_mtime_ns
    path.write_text(text, newline="")
    os.utime(path, ns=(before, before + 1_000_000_000))


@pytest.mark.parametrize("how", ["killed", "exits", "raises"])
async def test_a_worker_dying_mid_round_stores_nothing_and_the_next_round_succeeds(
        how: str, tmp_path: Path, make_config: Callable[..., Any],
        serve: Callable[..., Any]) -> None:
    feed, marker = tmp_path / "f.ics", tmp_path / "die"
    feed.write_text(feed_of(3), newline="")
    processes = WorkerProcesses(2, preload=WORKER_PRELOAD)
    expander = Expander(processes, 2, batch=functools.partial(die_once, str(marker), how))
    try:
        _, runtime = await serve(make_config([{"name": "f", "kind": "ics", "url": "f.ics"}],
                                             expansion_workers=2), expander=expander)
        [first] = await runtime.sync.run_all_once()
        assert first.ok and first.expanded == 3
        before = await snapshot(runtime, "f")

        rewrite(feed, feed_of(80))  # several pieces: one worker dies, others may finish
        assert expander.pieces(80) > 1
        marker.touch()
        [lost] = await runtime.sync.run_all_once()
        assert not lost.ok and "nothing" in (lost.error or ""), lost
        assert not marker.exists(), "a worker died"
        assert await snapshot(runtime, "f") == before, "nothing of the round was stored"
        syncer = runtime.sync.syncers["f"]
        assert syncer.failures == 1
        assert syncer.next_delay() < syncer.source.poll_interval.total_seconds(), "backoff"
        record = await runtime.store.source(runtime.source_ids["f"])
        assert record.consecutive_failures == 1 and record.last_error == lost.error

        [again] = await runtime.sync.run_all_once()
        assert again.ok and again.items == 80 and again.expanded == 77, again  # 3 unchanged
        assert processes.died == (how != "raises"), "one worker died; the others answered"
        assert len((await snapshot(runtime, "f"))[1]) == 80
    finally:
        processes.shutdown()


async def test_a_worker_dying_while_splitting_the_feed_fails_the_round_cleanly(
        tmp_path: Path, make_config: Callable[..., Any], serve: Callable[..., Any]) -> None:
    feed, marker = tmp_path / "f.ics", tmp_path / "die"
    feed.write_text(feed_of(3), newline="")
    processes = Wrapped(2, functools.partial(die_once_then, str(marker)))
    try:
        _, runtime = await serve(make_config([{"name": "f", "kind": "ics", "url": "f.ics"}]),
                                 expander=Expander(processes, 2))
        assert all(o.ok for o in await runtime.sync.run_all_once())
        before = await snapshot(runtime, "f")
        rewrite(feed, feed_of(10))
        marker.touch()  # the next task, the feed's splitting, dies
        [lost] = await runtime.sync.run_all_once()
        assert not lost.ok and "worker" in (lost.error or ""), lost
        assert await snapshot(runtime, "f") == before
        [again] = await runtime.sync.run_all_once()
        assert again.ok and again.items == 10
    finally:
        processes.shutdown()


async def test_hostile_items_in_a_worker_are_skipped_with_their_reasons(
        tmp_path: Path, make_config: Callable[..., Any], serve: Callable[..., Any]) -> None:
    good = [event(f"good{i}", "20261126T100000Z", "20261126T110000Z") for i in range(60)]
    bad = [
        "\n".join(["UID:bad-secondly", "DTSTAMP:20260101T000000Z", "DTSTART:20261126T100000Z",
                   "DURATION:PT1S", "RRULE:FREQ=SECONDLY"]),
        "\n".join(["UID:bad-no-start", "DTSTAMP:20260101T000000Z", "SUMMARY:x"]),
        "\n".join(["UID:bad-interval", "DTSTAMP:20260101T000000Z", "DTSTART:20261126T100000Z",
                   "DTEND:20261126T110000Z", "RRULE:FREQ=DAILY;INTERVAL=0"]),
    ]
    (tmp_path / "h.ics").write_text(ics(*good[:30], *bad, *good[30:]), newline="")
    _, runtime = await serve(make_config([{"name": "h", "kind": "ics", "url": "h.ics"}],
                                         expansion_workers=2))
    assert isinstance(runtime.expander.executor, WorkerProcesses)
    [outcome] = await runtime.sync.run_all_once()
    assert outcome.ok and outcome.expanded == 60
    reasons = {s.key: s.reason for s in outcome.skipped}
    assert "FREQ=SECONDLY" in reasons["bad-secondly"]
    assert "no DTSTART" in reasons["bad-no-start"]
    assert "INTERVAL=0" in reasons["bad-interval"]
    assert len(await runtime.store.busy_rows([runtime.source_ids["h"]], 0, 2**40)) == 60


async def test_a_20mb_event_is_read_in_a_worker_that_stays_bounded_and_ends(
        tmp_path: Path, make_config: Callable[..., Any], serve: Callable[..., Any]) -> None:
    """80 lines of 250 KB (each under the splitter's line limit, so they are kept):
    the item is read, its busy time stored; the workers that split and expanded it
    stayed under the bound and are gone after the round, their memory with them."""
    huge = ["UID:bad-huge", "DTSTAMP:20260101T000000Z", "DTSTART:20261127T090000Z",
            "DTEND:20261127T100000Z", *["X-PAD:" + "y" * 250_000] * 80]
    (tmp_path / "big.ics").write_text(ics("\n".join(huge), event(
        "good", "20261126T100000Z", "20261126T110000Z")), newline="")
    assert (tmp_path / "big.ics").stat().st_size > 20_000_000
    report = tmp_path / "workers.txt"
    processes = Wrapped(2, functools.partial(report_then, str(report)))
    try:
        _, runtime = await serve(make_config([{"name": "b", "kind": "ics", "url": "big.ics",
                                               "max_bytes": "25MB"}]),
                                 expander=Expander(processes, 2))
        [outcome] = await runtime.sync.run_all_once()
        assert outcome.ok and outcome.expanded == 2 and not outcome.skipped, outcome
        rows = await runtime.store.busy_rows([runtime.source_ids["b"]], 0, 2**40)
        assert len(rows) == 2
        tasks = [line.split() for line in report.read_text().splitlines()]
        assert len(tasks) >= 2, "the feed was split in one worker, expanded in another"
        assert len({pid for pid, _ in tasks}) == len(tasks), "a new worker for each task"
        assert max(int(peak) for _, peak in tasks) < WORKER_MEMORY_BOUND
        workers = [psutil.Process(int(pid)) for pid, _ in tasks if psutil.pid_exists(int(pid))]
        _, alive = psutil.wait_procs(workers, timeout=60)  # a wait, not a timing
        assert not alive, "each worker ended with its task"
    finally:
        processes.shutdown()


def test_a_stuck_task_is_ended_at_its_time_limit_and_the_next_one_runs() -> None:
    processes = WorkerProcesses(1, preload=WORKER_PRELOAD, time_limit=0.5)
    try:
        with pytest.raises(WorkerDied, match="took more than 0.5 s"):
            processes.submit(stuck).result()
        assert processes.submit(os.getpid).result() != os.getpid(), "in a new process"
        assert processes.died == 1
    finally:
        processes.shutdown()


@pytest.mark.parametrize("workers", [0, 2])
async def test_expansion_workers_setting_builds_the_executor(
        workers: int, make_config: Callable[..., Any], serve: Callable[..., Any],
        tmp_path: Path) -> None:
    (tmp_path / "f.ics").write_text(feed_of(1), newline="")
    _, runtime = await serve(make_config([{"name": "f", "kind": "ics", "url": "f.ics"}],
                                         expansion_workers=workers))
    expander = runtime.expander
    if workers:
        assert isinstance(expander.executor, WorkerProcesses)
        assert expander.executor.workers == workers
    else:
        assert expander.executor is runtime.executor, "the server's thread pool"
        assert expander.pieces(10_000) == 1
    assert (await runtime.sync.run_all_once())[0].ok


async def test_threads_and_workers_read_every_hostile_file_alike(
        tmp_path: Path, make_config: Callable[..., Any], serve: Callable[..., Any]) -> None:
    """Each hostile file through the real app with expansion_workers = 0 and = 2:
    the same rows stored, the same items skipped for the same reasons."""
    files = sorted(HOSTILE.glob("*.ics"))
    results: dict[int, list[Any]] = {}
    for workers in (0, 2):
        folder = tmp_path / f"w{workers}"
        folder.mkdir()
        sources = []
        for index, path in enumerate(files):
            (folder / path.name).write_bytes(path.read_bytes())
            sources.append({"name": f"s{index}", "kind": "ics",
                            "url": f"{folder.name}/{path.name}"})
        _, runtime = await serve(make_config(sources, database=f"{folder.name}/db.sqlite3",
                                             expansion_workers=workers))
        outcomes = {o.source: o for o in await runtime.sync.run_all_once()}
        found = []
        for index in range(len(files)):
            name = f"s{index}"
            outcome = outcomes[name]
            rows = await runtime.store.busy_rows([runtime.source_ids[name]], 0, 2**40)
            found.append((outcome.ok, outcome.error, sorted(rows),
                          sorted((s.key, s.reason) for s in outcome.skipped)))
        results[workers] = found
    for path, threads, processes in zip(files, results[0], results[2], strict=True):
        assert threads == processes, path.name


def test_pieces_keep_order_and_cover_every_item() -> None:
    from adapters.base import Item

    items = [Item(f"k{i}", "x" * (1 + i % 7) * 100) for i in range(101)]
    for pieces in (1, 2, 3, 4, 8, 200):
        parts = split(items, pieces)
        assert [i for part in parts for i in part] == items
        assert len(parts) <= min(pieces, len(items)) and all(parts)
    one = [Item("big", "x" * 10_000), *(Item(f"s{i}", "y") for i in range(5))]
    assert [i for part in split(one, 4) for i in part] == one

