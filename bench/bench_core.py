#!/usr/bin/env python3
"""Core benchmark for fbproxy: sync throughput, busy queries, feed and API serving.

Run from the repository root with the project's venv:

    .venv/bin/python bench/bench_core.py --calendars 10 --events 5000

Everything happens in a temporary folder and on 127.0.0.1 only. Progress goes
to stderr; the result is a Markdown table on stdout. See bench/README.md for
what each figure means.

Process layout (so the peak-RSS figure is about fbproxy, not about the bench):
  * the ICS files are generated in a separate (spawned) process;
  * the HTTP load generator runs in a separate process, so the server gets a
    core of its own instead of sharing one event loop with its client;
  * the "naive proxy" peer runs in a separate process and reports its own peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import logging
import math
import multiprocessing
import os
import pstats
import random
import resource
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from icalendar import Calendar  # noqa: E402

from bench.common import code_version, progress, serving  # noqa: E402
from bench.workload import (  # noqa: E402
    FUTURE_DAYS,
    Stats,
    generate,
    move_event,
    write_calendar_file,
)

# A Monday morning; the generated data is laid out around it, and every part
# of fbproxy sees it through a FixedClock.
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
QUERY_DAYS = 60
# Each calendar lives in one of the first three zones; some events are in any of them.
ZONES = ("Europe/Berlin", "America/New_York", "Europe/London", "America/Los_Angeles",
         "Asia/Tokyo", "UTC")
HOME_ZONES = 3

log = logging.getLogger("bench")


# ---------------------------------------------------------------------------
# 1. Data generation (runs in a worker process; the generator is bench/workload.py)
# ---------------------------------------------------------------------------

def calendar_zone(index: int) -> str:
    return ZONES[index % HOME_ZONES]


def generate_file(folder: str, index: int, seed: int, events: int, touch: bool = False,
                  ) -> Stats:
    """Write calendar ``index``; ``touch`` moves one future busy single event by an hour."""
    work = generate(f"fbproxy-bench:{seed}:{index}", NOW, calendar_zone(index), ZONES,
                    vevents=events, export=True)
    if touch:
        if not work.stats.touched_uid:
            raise SystemExit("no single busy event a week out was generated; use more --events")
        (event,) = work.find(work.stats.touched_uid).events
        move_event(event, timedelta(hours=1), modified=NOW)
    write_calendar_file(Path(folder) / f"cal{index:02d}.ics", work, f"Bench calendar {index}")
    return work.stats


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------

def percentile(samples: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100)."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def peak_rss_mib() -> float:
    """ru_maxrss of this process (KiB on Linux), as MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def own_peak_rss_mib() -> float:
    """Peak RSS of this process's own memory, for worker processes.

    A spawned worker's ru_maxrss starts at its parent's RSS (Linux keeps the
    high-water mark of the forked image across exec); VmHWM does not.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return peak_rss_mib()


def db_sizes(path: Path) -> tuple[int, int]:
    """Bytes of the main database file and of its write-ahead log."""
    def size(p: Path) -> int:
        return p.stat().st_size if p.exists() else 0
    return size(path), size(Path(f"{path}-wal"))


def query_windows(count: int, seed: int) -> list[tuple[int, int]]:
    """60-day windows at random offsets inside what fbproxy keeps (now-1d .. now+120d)."""
    rng = random.Random(f"fbproxy-bench-queries:{seed}")
    lo = int((NOW - timedelta(days=1)).timestamp())
    hi = int((NOW + timedelta(days=FUTURE_DAYS - QUERY_DAYS)).timestamp())
    span = QUERY_DAYS * 86400
    return [(s, s + span) for s in (rng.randrange(lo, hi, 60) for _ in range(count))]


def clip_blocks(blocks: Sequence[Any], start: int, end: int) -> list[tuple[int, int, str]]:
    return [(max(b.start, start), min(b.end, end), b.status)
            for b in blocks if b.end > start and b.start < end]


# ---------------------------------------------------------------------------
# 4. The naive peer (runs in a worker process)
# ---------------------------------------------------------------------------

def naive_busy(sources: Sequence[tuple[str, str]], start: int, end: int) -> list[Any]:
    """What many small tools do per request: parse every file, expand, filter, merge."""
    import recurring_ical_events

    from server.booking.availability import BusyInterval, merge_busy

    # The library reads all-day dates and floating times against the query's own
    # zone (UTC here); they belong to the source's zone. Ask for a day more on each
    # side and clip after placing them in the source's zone, or blocks near the
    # window's edges come out wrong.
    pad = timedelta(days=1)
    begin = datetime.fromtimestamp(start, UTC) - pad
    finish = datetime.fromtimestamp(end, UTC) + pad
    intervals = []
    for path, zone_name in sources:
        zone = ZoneInfo(zone_name)
        calendar = Calendar.from_ical(Path(path).read_bytes())
        for event in recurring_ical_events.of(calendar).between(begin, finish):
            if str(event.get("TRANSP", "OPAQUE")).upper() == "TRANSPARENT":
                continue
            status = str(event.get("STATUS", "CONFIRMED")).upper()
            if status == "CANCELLED":
                continue
            s, e = _naive_utc(event.start, zone), _naive_utc(event.end, zone)
            if e > s and e > start and s < end:
                intervals.append(BusyInterval(s, e, "tentative" if status == "TENTATIVE"
                                              else "busy"))
    return merge_busy(intervals)


def _naive_utc(value: date | datetime, zone: ZoneInfo) -> int:
    if not isinstance(value, datetime):
        value = datetime.combine(value, dtime(), zone)
    elif value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    return int(value.timestamp())


def naive_run(sources: Sequence[tuple[str, str]], windows: Sequence[tuple[int, int]],
              ) -> dict[str, Any]:
    latencies, results = [], []
    for start, end in windows:
        t0 = time.perf_counter()
        blocks = naive_busy(sources, start, end)
        latencies.append(time.perf_counter() - t0)
        results.append(clip_blocks(blocks, start, end))
    return {"latencies": latencies, "results": results, "peak_rss_mib": own_peak_rss_mib()}


# ---------------------------------------------------------------------------
# HTTP load generator (runs in a worker process)
# ---------------------------------------------------------------------------

def http_load(urls: Sequence[str], headers: dict[str, str], concurrency: int,
              ) -> dict[str, Any]:
    return asyncio.run(_http_load(urls, headers, concurrency))


async def _http_load(urls: Sequence[str], headers: dict[str, str], concurrency: int,
                     ) -> dict[str, Any]:
    import aiohttp

    latencies: list[float] = []
    statuses: dict[int, int] = {}
    received = 0
    etag = None
    vevents = 0
    queue = iter(urls)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, trust_env=False) as session:
        async def worker() -> None:
            nonlocal received, etag, vevents
            for url in queue:  # shared iterator: each URL is fetched once
                t0 = time.perf_counter()
                async with session.get(url, headers=headers) as response:
                    body = await response.read()
                latencies.append(time.perf_counter() - t0)
                statuses[response.status] = statuses.get(response.status, 0) + 1
                received += len(body)
                etag = response.headers.get("ETag", etag)
                vevents = body.count(b"BEGIN:VEVENT")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {"latencies": latencies, "elapsed": elapsed, "statuses": statuses,
            "bytes": received, "etag": etag, "vevents": vevents}


# ---------------------------------------------------------------------------
# 2-3. fbproxy phases
# ---------------------------------------------------------------------------

@dataclass
class Results:
    rows: list[tuple[str, str, str, str]] = field(default_factory=list)

    def add(self, area: str, metric: str, value: str, unit: str) -> None:
        self.rows.append((area, metric, value, unit))


def build_config(folder: Path, files: Sequence[Stats]) -> Any:
    from server.config.model import parse_config

    names = [f"cal{i:02d}" for i in range(len(files))]
    raw = {
        "server": {"database": str(folder / "fbproxy.sqlite3"), "timezone": "Europe/Berlin",
                   "horizon_days": FUTURE_DAYS, "listen": "127.0.0.1:8080"},
        "sources": [{"name": name, "kind": "ics", "url": stats.path, "timezone": stats.zone,
                     "poll_interval": "5m"} for name, stats in zip(names, files, strict=True)],
        "calendars": [{"name": "merged", "sources": names}]
        + [{"name": f"only-{name}", "sources": [name]} for name in names],
    }
    return parse_config(raw, base_dir=folder)


def fmt_ms(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:.2f}" if ms < 10 else f"{ms:.1f}" if ms < 1000 else f"{ms:,.0f}"


async def fbproxy_phases(args: argparse.Namespace, folder: Path, files: list[Stats],
                         pool: ProcessPoolExecutor, res: Results) -> dict[str, Any]:
    from server.booking.busy import merged_busy
    from server.kit.clock import FixedClock
    from server.runtime import open_runtime

    config = build_config(folder, files)
    clock = FixedClock(NOW)
    loop = asyncio.get_running_loop()
    total_vevents = sum(f.vevents for f in files)
    db_path = config.server.database
    out: dict[str, Any] = {"config": config}

    async with open_runtime(config, clock=clock) as runtime:
        progress(f"initial sync of {len(files)} sources ({total_vevents:,} VEVENTs) ...")
        t0 = time.perf_counter()
        outcomes = await runtime.sync.run_all_once()
        initial = time.perf_counter() - t0
        failed = [o for o in outcomes if not o.ok]
        if failed:
            raise SystemExit(f"initial sync failed: {[o.error for o in failed]}")
        skipped = sum(len(o.skipped) for o in outcomes)
        items = sum(o.items for o in outcomes)
        rss_after_sync = peak_rss_mib()
        progress(f"initial sync: {initial:.2f} s, {total_vevents / initial:,.0f} VEVENT/s")

        progress("no-change round ...")
        t0 = time.perf_counter()
        outcomes = await runtime.sync.run_all_once()
        nochange = time.perf_counter() - t0
        assert all(o.ok and o.unchanged for o in outcomes), outcomes

        progress("rewriting cal00.ics with one event moved ...")
        touched = await loop.run_in_executor(
            pool, generate_file, str(folder), 0, args.seed, args.events, True)
        t0 = time.perf_counter()
        outcomes = await runtime.sync.run_all_once()
        touch_round = time.perf_counter() - t0
        reexpanded = sum(o.expanded for o in outcomes)
        changed_sources = sum(1 for o in outcomes if not o.unchanged)
        assert all(o.ok for o in outcomes), outcomes

        progress(f"{args.queries} busy queries (60-day windows) on 'merged' ...")
        merged = config.calendar("merged")
        single = config.calendar("only-cal00")
        windows = query_windows(args.queries, args.seed)
        await merged_busy(runtime, merged, *windows[0])  # warm the reader connection
        merged_lat, rows_read, blocks_out = [], [], []
        for start, end in windows:
            t0 = time.perf_counter()
            blocks = await merged_busy(runtime, merged, start, end)
            merged_lat.append(time.perf_counter() - t0)
            blocks_out.append(len(blocks))
        # Cold: the first query after every change rebuilds the cached timeline.
        cold_lat = []
        for start, end in windows[:30]:
            runtime.timelines.clear()
            runtime.source_timelines.clear()
            runtime.booking_timelines.clear()
            t0 = time.perf_counter()
            await merged_busy(runtime, merged, start, end)
            cold_lat.append(time.perf_counter() - t0)
        # What one query is made of: the store read, then the merge (timed apart).
        from server.booking.availability import merge_rows
        read_lat, merge_lat = [], []
        for start, end in windows[:50]:
            t0 = time.perf_counter()
            rows = await runtime.store.busy_rows(runtime.ids_of(merged.sources), start, end)
            t1 = time.perf_counter()
            merge_rows(rows)
            merge_lat.append(time.perf_counter() - t1)
            read_lat.append(t1 - t0)
            rows_read.append(len(rows))
            del rows  # 80k live objects left over would slow the next read's GC passes
        single_lat = []
        for start, end in windows:
            t0 = time.perf_counter()
            await merged_busy(runtime, single, start, end)
            single_lat.append(time.perf_counter() - t0)
        naive_n = min(args.naive_queries, len(windows))
        out["reference"] = [clip_blocks(await merged_busy(runtime, merged, s, e), s, e)
                            for s, e in windows[:naive_n]]
        out["windows"] = windows[:naive_n]

    main_size, wal_size = db_sizes(db_path)
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        stored_items = db.execute("SELECT COUNT(*) FROM items").fetchone()[0]
        stored_instances = db.execute("SELECT COUNT(*) FROM instances").fetchone()[0]
        recurring_items = db.execute("SELECT COUNT(*) FROM items WHERE recurring").fetchone()[0]
        ical_bytes = db.execute("SELECT COALESCE(SUM(LENGTH(ical)), 0) FROM items").fetchone()[0]
        # The index (source_id, end_ts, start_ts) bounds only end_ts > start: every row
        # ending after the window start is visited, then start_ts < end filters.
        visited = [db.execute("SELECT COUNT(*) FROM instances WHERE end_ts > ?",
                              (start,)).fetchone()[0] for start, _ in windows[:50]]
    finally:
        db.close()

    res.add("initial sync", "wall time, one round of all sources", f"{initial:.2f}", "s")
    res.add("initial sync", "throughput", f"{total_vevents / initial:,.0f}", "VEVENT/s")
    res.add("initial sync", "items (UIDs) / recurring items stored",
            f"{stored_items:,} / {recurring_items:,}", "items")
    res.add("initial sync", "busy instances stored", f"{stored_instances:,}", "rows")
    res.add("initial sync", "items skipped as unreadable", f"{skipped}", "items")
    res.add("initial sync", "DB size: main file / WAL (not checkpointed)",
            f"{main_size / 2**20:.1f} / {wal_size / 2**20:.1f}", "MiB")
    res.add("initial sync", "of which stored item iCalendar text",
            f"{ical_bytes / 2**20:.1f}", "MiB")
    res.add("initial sync", "peak RSS after initial sync", f"{rss_after_sync:.0f}", "MiB")
    res.add("re-sync", "no-change round (files untouched)", fmt_ms(nochange), "ms")
    res.add("re-sync", f"round after moving 1 event in 1 file ({changed_sources} source "
            f"re-read, {reexpanded} item re-expanded)", fmt_ms(touch_round), "ms")
    res.add("busy query", "merged calendar, 60-day window, cached timeline, p50", fmt_ms(
        percentile(merged_lat, 50)), "ms")
    res.add("busy query", "merged calendar, 60-day window, cached timeline, p99", fmt_ms(
        percentile(merged_lat, 99)), "ms")
    res.add("busy query", "merged calendar, first query after a change (whole served "
            "window read and merged), p50 / p99",
            f"{fmt_ms(percentile(cold_lat, 50))} / {fmt_ms(percentile(cold_lat, 99))}", "ms")
    res.add("busy query", "rows read / merged blocks returned (mean)",
            f"{statistics.mean(rows_read):,.0f} / {statistics.mean(blocks_out):,.0f}", "rows")
    res.add("busy query", "of which store.busy_rows / merge_busy, p50",
            f"{fmt_ms(percentile(read_lat, 50))} / {fmt_ms(percentile(merge_lat, 50))}", "ms")
    res.add("busy query", "index entries visited per query (end_ts > start, mean)",
            f"{statistics.mean(visited):,.0f}", "rows")
    res.add("busy query", "single-source calendar, 60-day window, p50 / p99",
            f"{fmt_ms(percentile(single_lat, 50))} / {fmt_ms(percentile(single_lat, 99))}",
            "ms")
    out.update(merged_p50=percentile(merged_lat, 50), merged_p99=percentile(merged_lat, 99),
               items=items, touched=touched)
    return out


async def serve_phases(args: argparse.Namespace, config: Any, pool: ProcessPoolExecutor,
                       res: Results) -> None:
    from server.app import create_app
    from server.kit.clock import FixedClock
    from server.runtime import RUNTIME

    loop = asyncio.get_running_loop()
    app = create_app(config, clock=FixedClock(NOW), start_sync=False)
    async with serving(app) as base:
        runtime = app[RUNTIME]
        progress(f"app listening on {base}; syncing once through the app's runtime ...")
        t0 = time.perf_counter()
        outcomes = await runtime.sync.run_all_once()
        app_sync = time.perf_counter() - t0
        assert all(o.ok for o in outcomes), outcomes
        feed_url = f"{base}/feeds/{runtime.calendar_secrets['merged']}/busy.ics"

        async def load(urls: Sequence[str], headers: dict[str, str], concurrency: int,
                       ) -> dict[str, Any]:
            return await loop.run_in_executor(pool, http_load, list(urls), headers, concurrency)

        # Warm the load process (imports) against a cheap route.
        await load([f"{base}/healthz"] * 4, {}, 2)

        cold = await load([feed_url], {}, 1)
        assert cold["statuses"] == {200: 1}, cold["statuses"]
        etag = cold["etag"]
        body_kib = cold["bytes"] / 1024
        single_url = f"{base}/feeds/{runtime.calendar_secrets['only-cal00']}/busy.ics"
        single = await load([single_url], {}, 1)
        assert single["statuses"] == {200: 1}, single["statuses"]
        progress(f"feed: cold render {fmt_ms(cold['latencies'][0])} ms, {body_kib:,.0f} KiB; "
                 f"{args.requests} full GETs ...")
        full = await load([feed_url] * args.requests, {}, args.concurrency)
        assert full["statuses"] == {200: args.requests}, full["statuses"]
        progress(f"{args.requests} conditional GETs ...")
        cond = await load([feed_url] * args.requests, {"If-None-Match": etag}, args.concurrency)
        assert cond["statuses"] == {304: args.requests}, cond["statuses"]

        progress(f"{args.requests} /api/v1/freebusy 60-day queries ...")
        auth = {"Authorization": f"Bearer {runtime.calendar_secrets['merged']}"}
        api_urls = []
        for start, end in query_windows(args.requests, args.seed + 1):
            query = urlencode({"start": _iso(start), "end": _iso(end)})
            api_urls.append(f"{base}/api/v1/freebusy?{query}")
        api = await load(api_urls, auth, args.concurrency)
        assert api["statuses"] == {200: args.requests}, api["statuses"]

        progress("no-change sync round, then one feed request ...")
        generation = await runtime.store.busy_generation()
        await runtime.sync.run_all_once()
        bumped = await runtime.store.busy_generation() != generation
        after = await load([feed_url], {"If-None-Match": etag}, 1)
        after_status = next(iter(after["statuses"]))

    res.add("feed", "sync through the app's runtime (DB already synced)", fmt_ms(app_sync), "ms")
    res.add("feed", f"busy.ics body, merged calendar ({cold['vevents']:,} blocks)",
            f"{body_kib:,.1f}", "KiB")
    res.add("feed", "busy.ics merged, first request (read + merge + render, cache cold)",
            fmt_ms(cold["latencies"][0]), "ms")
    res.add("feed", f"busy.ics single-source only-cal00, first request "
            f"({single['vevents']:,} blocks, {single['bytes'] / 1024:,.0f} KiB)",
            fmt_ms(single["latencies"][0]), "ms")
    for label, run in (("busy.ics 200 (cached body)", full),
                       ("busy.ics 304 (If-None-Match)", cond),
                       ("/api/v1/freebusy 60-day window", api)):
        rate = len(run["latencies"]) / run["elapsed"]
        res.add("feed", f"{label}: throughput, c={args.concurrency}", f"{rate:,.0f}", "req/s")
        res.add("feed", f"{label}: p50 / p99",
                f"{fmt_ms(percentile(run['latencies'], 50))} / "
                f"{fmt_ms(percentile(run['latencies'], 99))}", "ms")
    res.add("feed", "busy.ics right after a no-change sync round "
            f"(generation {'bumped' if bumped else 'unchanged'}, answered {after_status})",
            fmt_ms(after["latencies"][0]), "ms")


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------
# --profile: where the initial sync's time goes, single-threaded
# ---------------------------------------------------------------------------

def profile_sync(files: Sequence[Stats], folder: Path) -> None:
    """Run the sync pipeline's stages by hand on every file, timed, then profiled.

    The real round runs parsing and expansion in worker threads, which cProfile
    does not follow; calling the same functions in this thread does the same
    work. Pass 1 times each stage over all files (no profiler); pass 2 runs
    cProfile over the CPU stages of the first file.
    """
    from adapters.ics import split_feed
    from server.store import Store
    from server.sync.expand import ExpandContext
    from server.sync.loop import PAST_KEPT, expand_items, item_fingerprint

    def context(stats: Stats) -> ExpandContext:
        return ExpandContext(zone=ZoneInfo(stats.zone), window_start=NOW - PAST_KEPT,
                             window_end=NOW + timedelta(days=FUTURE_DAYS))

    def cpu_stages(body: bytes, ctx: ExpandContext) -> tuple[list[float], list[Any]]:
        t0 = time.perf_counter()
        items, _ = split_feed(body)
        t1 = time.perf_counter()
        prints = {i.key: item_fingerprint(i, ctx) for i in items}
        t2 = time.perf_counter()
        stored, _ = expand_items(items, ctx, prints)
        t3 = time.perf_counter()
        return [t1 - t0, t2 - t1, t3 - t2], stored

    stages = dict.fromkeys(("read file", "split_feed (parse + re-serialise per UID)",
                            "fingerprint (sha256)", "expand_items (parse item + expand)",
                            "store.apply_changes"), 0.0)

    async def run() -> None:
        store = await Store.open(folder / "profile.sqlite3")
        try:
            for index, stats in enumerate(files):
                source_id = await store.ensure_source(f"p{index}", "ics")
                t0 = time.perf_counter()
                body = Path(stats.path).read_bytes()  # noqa: ASYNC240 (timed on purpose)
                read = time.perf_counter() - t0
                spent, stored = cpu_stages(body, context(stats))
                t0 = time.perf_counter()
                await store.apply_changes(source_id, upserts=stored, deletes=[], state={},
                                          now=int(NOW.timestamp()), window_end=None)
                write = time.perf_counter() - t0
                for name, value in zip(stages, (read, *spent, write), strict=True):
                    stages[name] += value
        finally:
            await store.close()

    asyncio.run(run())
    total = sum(stages.values())
    vevents = sum(f.vevents for f in files)
    progress(f"profile pass 1: sync stages one after another in one thread "
             f"({vevents:,} VEVENTs, {total:.2f} s, {vevents / total:,.0f} VEVENT/s):")
    for name, spent in stages.items():
        progress(f"  {name:<44} {spent:8.2f} s  {100 * spent / total:5.1f} %")
    progress(f"profile pass 2: cProfile of the CPU stages on {Path(files[0].path).name}")
    profiler = cProfile.Profile()
    body = Path(files[0].path).read_bytes()
    profiler.runcall(cpu_stages, body, context(files[0]))
    for order in ("cumulative", "tottime"):
        buffer = io.StringIO()
        pstats.Stats(profiler, stream=buffer).sort_stats(order).print_stats(30)
        print(buffer.getvalue(), file=sys.stderr)


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------

def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calendars", type=int, default=10, help="ICS sources (default 10)")
    parser.add_argument("--events", type=int, default=5000,
                        help="VEVENTs per calendar, overrides included (default 5000)")
    parser.add_argument("--seed", type=int, default=1, help="data and query seed (default 1)")
    parser.add_argument("--queries", type=int, default=200,
                        help="busy queries against the store (default 200)")
    parser.add_argument("--naive-queries", type=int, default=5,
                        help="queries for the re-parsing peer (default 5)")
    parser.add_argument("--requests", type=int, default=500,
                        help="HTTP requests per load phase (default 500)")
    parser.add_argument("--concurrency", type=int, default=8,
                        help="concurrent HTTP requests (default 8)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--profile", action="store_true",
                        help="also profile the sync stages (cProfile, to stderr)")
    args = parser.parse_args(argv)
    for name in ("calendars", "events", "queries", "naive_queries", "requests", "concurrency"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.calendars > 99:
        parser.error("--calendars must be at most 99")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    folder = Path(tempfile.mkdtemp(prefix="fbproxy-bench-"))
    res = Results()
    started = time.perf_counter()
    spawn = multiprocessing.get_context("spawn")
    version = code_version()  # before the run: files may change while it goes on
    try:
        progress(f"generating {args.calendars} x {args.events} VEVENTs in {folder} ...")
        t0 = time.perf_counter()
        with ProcessPoolExecutor(min(os.cpu_count() or 1, args.calendars),
                                 mp_context=spawn) as gen_pool:
            files = list(gen_pool.map(generate_file, [str(folder)] * args.calendars,
                                      range(args.calendars), [args.seed] * args.calendars,
                                      [args.events] * args.calendars))
        gen_time = time.perf_counter() - t0
        total = sum(f.vevents for f in files)

        def tally(attr: str) -> int:
            return sum(getattr(f, attr) for f in files)

        res.add("workload", "calendars x VEVENTs (all in files)",
                f"{args.calendars} x {args.events:,} = {total:,}", "VEVENT")
        res.add("workload", "UIDs / recurring series / RECURRENCE-ID overrides / EXDATEs",
                f"{tally('items'):,} / {tally('series'):,} / {tally('overrides'):,} / "
                f"{tally('exdates'):,}", "count")
        res.add("workload", "all-day / TRANSPARENT / CANCELLED / TENTATIVE / floating",
                f"{tally('all_day'):,} / {tally('transparent'):,} / {tally('cancelled'):,} / "
                f"{tally('tentative'):,} / {tally('floating'):,}", "count")
        res.add("workload", "ICS bytes on disk", f"{tally('bytes') / 2**20:.1f}", "MiB")
        res.add("workload", "generation time (not part of fbproxy)", f"{gen_time:.1f}", "s")
        progress(f"generated {total:,} VEVENTs ({tally('bytes') / 2**20:.1f} MiB) "
                 f"in {gen_time:.1f} s")

        with ProcessPoolExecutor(1, mp_context=spawn) as pool:
            state = asyncio.run(fbproxy_phases(args, folder, files, pool, res))
            asyncio.run(serve_phases(args, state["config"], pool, res))
        fbproxy_rss = peak_rss_mib()
        res.add("memory", "peak RSS of the fbproxy process (ru_maxrss)",
                f"{fbproxy_rss:.0f}", "MiB")

        # The peer reads the same files (cal00 now holds the moved event, as fbproxy's store).
        sources = [(f.path, f.zone) for f in files]
        progress(f"naive peer: {args.naive_queries} queries, each re-parsing "
                 f"{args.calendars} files ...")
        with ProcessPoolExecutor(1, mp_context=spawn) as naive_pool:
            naive = naive_pool.submit(naive_run, sources, state["windows"]).result()
        lat = naive["latencies"]
        agree = sum(1 for a, b in zip(naive["results"], state["reference"], strict=True)
                    if a == b)
        res.add("naive peer", f"re-parse + expand per query, p50 (n={len(lat)})",
                fmt_ms(percentile(lat, 50)), "ms")
        res.add("naive peer", f"re-parse + expand per query, p99 (n={len(lat)}, ~max)",
                fmt_ms(percentile(lat, 99)), "ms")
        res.add("naive peer", "fbproxy busy-query speed-up at p50",
                f"{percentile(lat, 50) / state['merged_p50']:,.0f}x", "ratio")
        res.add("naive peer", "windows where both give identical busy blocks",
                f"{agree} / {len(lat)}", "windows")
        res.add("naive peer", "peak RSS of the naive peer's process",
                f"{naive['peak_rss_mib']:.0f}", "MiB")
        if agree != len(lat):
            for mine, theirs in zip(state["reference"], naive["results"], strict=True):
                if mine != theirs:
                    extra = sorted(set(theirs) - set(mine))[:3]
                    missing = sorted(set(mine) - set(theirs))[:3]
                    progress(f"mismatch: only naive {extra}; only fbproxy {missing}")
                    break

        if args.profile:
            profile_sync(files, folder)
    finally:
        if args.keep:
            progress(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)

    progress(f"done in {time.perf_counter() - started:.0f} s")
    print(f"\n### fbproxy core benchmark — {args.calendars} calendars x {args.events:,} "
          f"events, seed {args.seed}, now {NOW:%Y-%m-%dT%H:%MZ}, code {version}, "
          f"Python {sys.version.split()[0]}, {os.cpu_count()} CPU(s)\n")
    print("| area | measurement | value | unit |")
    print("|---|---|---:|---|")
    for row in res.rows:
        print("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
