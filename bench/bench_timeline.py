#!/usr/bin/env python3
"""The first busy query after a change: what a calendar's timeline costs to bring up to date.

    .venv/bin/python bench/bench_timeline.py --calendars 10 --events 5000

The data and config are bench_core.py's (one ICS source per calendar, a
calendar "merged" over all of them, "only-calNN" over each). After the initial
sync it measures `merged_busy` over a 60-day window:

- cached: nothing changed since the last query;
- after a change made here: one event of cal00 moved (the file rewritten, one
  sync round of that source through this process), then the first query;
- after a change made by another process: one item of cal00 written through a
  second store on the same file (as `fbproxy sync` would), then the first
  query once the change counter is seen (it is read at most a second late);
- after the served window moved on an hour (the clock advanced);
- cold: every cached timeline dropped, all rows read and merged again (what
  each first query after a change cost before timelines were kept per source).

Results go to stdout as a Markdown table. ``--data DIR`` reuses (or writes)
the generated files there instead of generating them again.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import pickle
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.bench_core import (  # noqa: E402
    NOW,
    build_config,
    fmt_ms,
    generate_file,
    peak_rss_mib,
    percentile,
    query_windows,
)
from bench.common import code_version, progress  # noqa: E402


def generated(folder: Path, calendars: int, events: int, seed: int) -> list[Any]:
    """The calendar files (and cal00's variant with one event moved) in ``folder``;
    those of an earlier run with the same arguments if it holds them."""
    stats = folder / f"stats-{calendars}-{events}-{seed}.pickle"
    if stats.exists():
        with stats.open("rb") as file:
            return list(pickle.load(file))
    spawn = multiprocessing.get_context("spawn")
    variant = folder / "moved"
    variant.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(min(os.cpu_count() or 1, calendars), mp_context=spawn) as pool:
        files = list(pool.map(generate_file, [str(folder)] * calendars, range(calendars),
                              [seed] * calendars, [events] * calendars))
        pool.submit(generate_file, str(variant), 0, seed, events, True).result()
    with stats.open("wb") as file:
        pickle.dump(files, file)
    return files


def both_versions(folder: Path, path: Path) -> tuple[bytes, bytes]:
    """The file as generated, and with one event moved."""
    return path.read_bytes(), (folder / "moved" / path.name).read_bytes()


def rewrite(path: Path, body: bytes, sample: int) -> None:
    """Write ``body``, with an mtime the source has not seen (the files are the same size)."""
    path.write_bytes(body)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9 * (sample + 1)))


async def timed(query: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await query()
    return time.perf_counter() - started


async def measure(args: argparse.Namespace, folder: Path, files: list[Any],
                  ) -> list[tuple[str, str, str]]:
    from server.booking.busy import merged_busy
    from server.kit.clock import FixedClock
    from server.runtime import open_runtime
    from server.store import BusyRow, Store, StoredItem

    work = Path(tempfile.mkdtemp(prefix="fbproxy-timeline-"))
    try:
        config = build_config(work, files)
        clock = FixedClock(NOW)
        rows: list[tuple[str, str, str]] = []
        async with open_runtime(config, clock=clock) as runtime:
            progress(f"initial sync of {len(files)} sources ...")
            assert all(o.ok for o in await runtime.sync.run_all_once())
            merged = config.calendar("merged")
            assert merged is not None
            start, end = query_windows(1, args.seed)[0]

            def query() -> Awaitable[object]:
                return merged_busy(runtime, merged, start, end)

            await query()
            cached = [await timed(query) for _ in range(200)]

            progress(f"{args.samples} one-event changes through this process's sync ...")
            versions = both_versions(folder, Path(files[0].path))
            local, rounds = [], []
            for sample in range(args.samples):
                rewrite(Path(files[0].path), versions[(sample + 1) % 2], sample)
                started = time.perf_counter()
                [outcome] = await runtime.sync.run_all_once(["cal00"])
                rounds.append(time.perf_counter() - started)
                assert outcome.ok and outcome.expanded == 1, outcome
                local.append(await timed(query))

            progress(f"{args.samples} one-item changes through another store ...")
            other = await Store.open(config.server.database)
            foreign = []
            try:
                source = runtime.source_ids["cal00"]
                for sample in range(args.samples):
                    item = StoredItem(key="bench-foreign", ical="BEGIN:VCALENDAR",
                                      content_hash=str(sample), etag=None, recurring=False,
                                      instances=(BusyRow(start + 3600 * sample,
                                                         start + 3600 * sample + 1800, "busy"),))
                    await other.apply_changes(source, upserts=[item], deletes=[], state={},
                                              now=sample, window_end=None)
                    await asyncio.sleep(1.1)  # the change counter is read at most 1 s late
                    foreign.append(await timed(query))
            finally:
                await other.close()

            progress("window moves and cold reads ...")
            moved = []
            for _ in range(args.samples):
                clock.set(clock.now() + timedelta(hours=1))
                moved.append(await timed(query))
            cold = []
            for _ in range(args.samples):
                runtime.timelines.clear()
                held = getattr(runtime, "source_timelines", None)
                if held is not None:
                    held.clear()
                cold.append(await timed(query))

        def pair(samples: Sequence[float]) -> str:
            return f"{fmt_ms(percentile(samples, 50))} / {fmt_ms(percentile(samples, 99))}"

        rows += [
            ("cached timeline, p50 / p99", pair(cached), "ms"),
            ("first query after a one-event change made here, p50 / p99", pair(local), "ms"),
            ("the sync round of that change (not in the figure above), mean",
             fmt_ms(statistics.mean(rounds)), "ms"),
            ("first query after a one-item change by another process, p50 / p99",
             pair(foreign), "ms"),
            ("first query after the served window moved an hour, p50 / p99", pair(moved), "ms"),
            ("cold: every timeline dropped, p50 / p99", pair(cold), "ms"),
            ("peak RSS of this process (ru_maxrss)", f"{peak_rss_mib():.0f}", "MiB"),
        ]
        return rows
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calendars", type=int, default=10)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--samples", type=int, default=10, help="changes measured (default 10)")
    parser.add_argument("--data", type=Path, help="reuse or keep the generated files here")
    args = parser.parse_args(argv)
    folder = args.data or Path(tempfile.mkdtemp(prefix="fbproxy-timeline-data-"))
    try:
        progress(f"generating {args.calendars} x {args.events} VEVENTs in {folder} ...")
        files = generated(folder, args.calendars, args.events, args.seed)
        rows = asyncio.run(measure(args, folder, files))
    finally:
        if args.data is None:
            shutil.rmtree(folder, ignore_errors=True)
    print(f"\n### busy timeline after a change — {args.calendars} calendars x "
          f"{args.events:,} events, code {code_version()}, Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPU(s)\n")
    print("| measurement | value | unit |\n|---|---:|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
