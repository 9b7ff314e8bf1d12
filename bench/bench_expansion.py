#!/usr/bin/env python3
"""Expansion off the event loop: a big source's initial sync against the one-core ceiling,
and how long another calendar's JSON free/busy answer takes while that sync runs.

Run from the repository root with the project's venv:

    .venv/bin/python bench/bench_expansion.py                  # the configured default
    .venv/bin/python bench/bench_expansion.py --workers 0 2    # threads, then 2 processes

Everything happens in a temporary folder and on 127.0.0.1. Progress goes to
stderr; one Markdown table goes to stdout:

- ceiling: what one core needs to split the feed and parse and expand every item
  (``read_feed`` then ``expand_items``, in this process, one after the other);
- initial sync: one round of the big source in a fresh store
  (``SourceSyncer.run_once``: read, split, expand, store), nothing else running;
  the ceiling divided by it (above 1: more than one core worked on it), and the
  CPU time the server process itself spent (the rest was in worker processes);
- under requests: the same sync while a separate process (so the client takes no
  time from the server) asks for a small calendar's JSON free/busy every
  ``--pause`` seconds; the worst and the median answer time.

The data comes from bench/workload.py (``generate``): about 85 % single events,
about 15 % recurring series (weekly, daily, monthly) with EXDATEs and overrides.
Timings on a shared machine vary: run it on an idle one, and read best and worst.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import code_version, progress, serving  # noqa: E402
from bench.workload import FUTURE_DAYS, generate, write_calendar_file  # noqa: E402

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ZONE = "Europe/Berlin"
SECRET_BIG = "bench-secret-big-000001"
SECRET_SMALL = "bench-secret-small-00001"


def write_files(folder: Path, events: int, small: int, seed: int) -> tuple[Path, Path, Any]:
    big = generate(f"big-{seed}", NOW, ZONE, ("America/New_York", "UTC"), vevents=events)
    write_calendar_file(folder / "big.ics", big, "big")
    few = generate(f"small-{seed}", NOW, ZONE, ("UTC",), vevents=small)
    write_calendar_file(folder / "small.ics", few, "small")
    return folder / "big.ics", folder / "small.ics", big.stats


def ceiling(path: Path) -> tuple[float, float]:
    """Seconds one core needs to split the feed, and to parse and expand its items."""
    from adapters.ics_feed import read_feed
    from server.sync.expand import ExpandContext
    from server.sync.loop import PAST_KEPT, expand_items, item_fingerprint

    context = ExpandContext(zone=ZoneInfo(ZONE), window_start=NOW - PAST_KEPT,
                            window_end=NOW + timedelta(days=FUTURE_DAYS))
    body = path.read_bytes()
    t0 = time.perf_counter()
    items = read_feed(body).items
    t1 = time.perf_counter()
    prints = {item.key: item_fingerprint(item, context) for item in items}
    expand_items(items, context, prints)
    return t1 - t0, time.perf_counter() - t1


def client(url: str, secret: str, pause: float, stop: Any, out: Any) -> None:
    """Requests one after another, ``pause`` seconds apart, until ``stop`` is set; their
    durations go to ``out``. Paced, so the client does not itself take the server's CPU."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {secret}"})
    spent: list[float] = []
    while not stop.is_set():
        t0 = time.perf_counter()
        with urllib.request.urlopen(request, timeout=60) as answer:
            answer.read()
        spent.append(time.perf_counter() - t0)
        stop.wait(pause)
    out.put(spent)


async def one_sync(folder: Path, big: Path, small: Path, workers: int | None, run: str,
                   pause: float | None) -> dict[str, Any]:
    """The big source's initial sync in a fresh store; with ``pause``, while a client asks
    for the small calendar's free/busy every ``pause`` seconds."""
    from server.app import create_app
    from server.config.model import parse_config
    from server.kit.clock import FixedClock
    from server.runtime import RUNTIME

    server: dict[str, Any] = {"database": str(folder / f"db-{workers}-{run}.sqlite3"),
                              "timezone": ZONE, "rate_limit_pages": "off",
                              "rate_limit_secrets": "off", "horizon_days": FUTURE_DAYS}
    if workers is not None:
        server["expansion_workers"] = workers
    config = parse_config({
        "server": server,
        "sources": [{"name": "big", "kind": "ics", "url": str(big), "timezone": ZONE},
                    {"name": "small", "kind": "ics", "url": str(small), "timezone": ZONE}],
        "calendars": [{"name": "big", "sources": ["big"], "secret": SECRET_BIG},
                      {"name": "small", "sources": ["small"], "secret": SECRET_SMALL}],
    }, base_dir=folder)
    app = create_app(config, clock=FixedClock(NOW), start_sync=False)
    async with serving(app) as base:
        runtime = app[RUNTIME]
        first = await runtime.sync.syncers["small"].run_once()  # also starts the workers
        assert first.ok, first
        load = None
        if pause is not None:
            context = multiprocessing.get_context("spawn")
            stop, out = context.Event(), context.Queue()
            url = f"{base}/api/v1/freebusy?start=2026-03-02&end=2026-04-30"
            load = context.Process(target=client, args=(url, SECRET_SMALL, pause, stop, out))
            load.start()
            await asyncio.sleep(1.0)  # the client is up and answered a few times
        t0, cpu0 = time.perf_counter(), time.process_time()
        outcome = await runtime.sync.syncers["big"].run_once()
        seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        latencies: list[float] = []
        if load is not None:
            stop.set()
            latencies = await asyncio.get_running_loop().run_in_executor(None, out.get)
            load.join()
        assert outcome.ok, outcome
    return {"seconds": seconds, "cpu": cpu, "expanded": outcome.expanded,
            "latencies": latencies}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000, help="VEVENTs in the big file")
    parser.add_argument("--small", type=int, default=300, help="VEVENTs in the other file")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3, help="syncs of each kind per setting")
    parser.add_argument("--pause", type=float, default=0.05,
                        help="seconds between the latency client's requests")
    parser.add_argument("--workers", type=int, nargs="*", default=None,
                        help="expansion_workers values to run (default: the config default)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fbproxy-bench-exp-") as tmp:
        folder = Path(tmp)
        progress(f"generating {args.events:,} + {args.small:,} VEVENTs ...")
        big, small, stats = write_files(folder, args.events, args.small, args.seed)
        progress("one-core ceiling ...")
        ceilings = [ceiling(big) for _ in range(args.runs)]
        split, expand = min(c[0] for c in ceilings), min(c[1] for c in ceilings)
        rows = []
        for workers in args.workers if args.workers else [None]:
            name = "default" if workers is None else str(workers)
            alone, loaded = [], []
            for run in range(args.runs):
                progress(f"expansion_workers = {name}: sync {run + 1} alone, then under requests")
                alone.append(asyncio.run(one_sync(folder, big, small, workers, f"a{run}", None)))
                loaded.append(asyncio.run(one_sync(folder, big, small, workers, f"l{run}",
                                                   args.pause)))
            rows.append((name, alone, loaded))
    one_core = split + expand
    print(f"## Expansion: {stats.vevents:,} VEVENTs ({stats.series:,} series, "
          f"{stats.overrides:,} overrides), {stats.bytes / 1e6:.1f} MB — {code_version()}\n")
    print(f"One core (best of {args.runs}): split {split:.2f} s + parse and expand "
          f"{expand:.2f} s = {one_core:.2f} s (the ceiling)\n")
    print(f"Sync alone: best and worst of {args.runs}; server CPU: the server process's own. "
          f"Under requests: GET /api/v1/freebusy of the other calendar every "
          f"{1000 * args.pause:.0f} ms while the sync runs, worst and median of all runs.\n")
    print("| expansion_workers | initial sync (best / worst) | ceiling / sync (best) | "
          "server CPU | sync under requests | free/busy worst | free/busy median | "
          "requests |")
    print("|---|---|---|---|---|---|---|---|")
    for name, alone, loaded in rows:
        best = min(r["seconds"] for r in alone)
        worst = max(r["seconds"] for r in alone)
        cpu = min(r["cpu"] for r in alone)
        under = statistics.median(r["seconds"] for r in loaded)
        latencies = [x for r in loaded for x in r["latencies"]] or [0.0]
        print(f"| {name} | {best:.2f} / {worst:.2f} s | {one_core / best:.2f} × | {cpu:.2f} s "
              f"| {under:.2f} s | {1000 * max(latencies):.0f} ms | "
              f"{1000 * statistics.median(latencies):.0f} ms | {len(latencies)} |")


if __name__ == "__main__":
    main()
