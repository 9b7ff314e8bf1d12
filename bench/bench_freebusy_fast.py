#!/usr/bin/env python3
"""Free/busy at the speed of the HTTP stack: answers per second as a ratio of /healthz's.

Run from the repository root with the project's venv:

    .venv/bin/python bench/bench_freebusy_fast.py            # 2,000 events, 3 rounds
    .venv/bin/python bench/bench_freebusy_fast.py --quick    # 500 events, 1 round

One calendar of generated events (bench_core's calendar 0, one ICS source,
synced once) is served by one fbproxy app on 127.0.0.1 (aiohttp AppRunner, in
this process); the load comes from a separate process (an aiohttp client with C
requests in flight, 16 by default), so the server has a core of its own. Each
round measures these phases, each right after a /healthz run of its own:

    json same        GET /api/v1/freebusy, the same 60-day window every time
    json seconds     GET /api/v1/freebusy, 60-day windows whose starts differ by seconds
                     (what clients asking "from now" send)
    report same      CalDAV free-busy-query REPORT, the same 60-day window every time
    report hours     free-busy-query REPORTs over 60-day windows starting on any of
                     1,464 hours (bench_caldav_endpoint's windows)

/healthz is a store read and a small JSON answer. A phase's ratio is its req/s
over the req/s of the /healthz run just before it (the machine's load drifts);
its CPU ratio is /healthz's server CPU time per request over the phase's (the
server process's, all threads: less disturbed by other load, and not limited by
the client). The result (Markdown, medians over the rounds) goes to stdout,
progress to stderr. Every answer is checked (status and a marker in the body).
The code measured is the one next to this file (copy the file into another
checkout to measure that one).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.bench_caldav_endpoint import basic, free_busy_body  # noqa: E402
from bench.bench_core import NOW, ZONES, calendar_zone  # noqa: E402
from bench.common import code_version, progress, serving  # noqa: E402
from bench.workload import generate, write_calendar_file  # noqa: E402

CALENDAR = "bench"
SECRET = "bench-freebusy-fast-secret-00001"
WINDOW = timedelta(days=60)
HORIZON_DAYS = 120
PHASE_SECONDS = 3.0  # about how long each measured phase runs
MIN_REQUESTS = 200
MAX_REQUESTS = 20_000

# (method, url, headers, body, marker expected in the body)
Job = tuple[str, str, dict[str, str], bytes | None, bytes]


def http_load(jobs: Sequence[Job], concurrency: int) -> dict[str, Any]:
    return asyncio.run(_http_load(jobs, concurrency))


async def _http_load(jobs: Sequence[Job], concurrency: int) -> dict[str, Any]:
    import aiohttp

    problems: list[str] = []
    queue = iter(jobs)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, trust_env=False) as session:
        async def worker() -> None:
            for method, url, headers, data, marker in queue:
                async with session.request(method, url, headers=headers, data=data) as response:
                    body = await response.read()
                if (response.status != 200 or marker not in body) and len(problems) < 5:
                    problems.append(f"{method} {url}: {response.status} {body[:200]!r}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {"elapsed": elapsed, "problems": problems}


def json_url(base: str, start: datetime) -> str:
    query = urlencode({"start": start.isoformat(), "end": (start + WINDOW).isoformat()})
    return f"{base}/api/v1/freebusy?{query}"


def hour_windows(count: int, seed: int) -> list[datetime]:
    rng = random.Random(f"bench-freebusy-fast:{seed}")
    return [NOW - timedelta(days=1) + timedelta(hours=rng.randrange(61 * 24))
            for _ in range(count)]


class Phases:
    def __init__(self, base: str, seed: int) -> None:
        bearer = {"Authorization": f"Bearer {SECRET}"}
        dav = {"Authorization": basic(CALENDAR, SECRET), "Depth": "1",
               "Content-Type": "application/xml; charset=utf-8"}
        collection = f"{base}/caldav/calendars/{CALENDAR}/busy/"
        starts = hour_windows(4096, seed)
        self.jobs = {
            "healthz": lambda i: ("GET", f"{base}/healthz", {}, None, b'"ok"'),
            "json same": lambda i: ("GET", json_url(base, NOW), bearer, None, b'"busy"'),
            "json seconds": lambda i: ("GET", json_url(base, NOW + timedelta(seconds=i % 3600)),
                                       bearer, None, b'"busy"'),
            "report same": lambda i: ("REPORT", collection, dav, free_busy_body(NOW, NOW + WINDOW),
                                      b"BEGIN:VFREEBUSY"),
            "report hours": lambda i: ("REPORT", collection, dav,
                                       free_busy_body(starts[i % 4096],
                                                      starts[i % 4096] + WINDOW),
                                       b"BEGIN:VFREEBUSY"),
        }


@dataclass
class Sample:
    rate: float  # requests per second (wall clock)
    cpu: float  # the server process's CPU seconds per request (all its threads)


async def measure(pool: ProcessPoolExecutor, make: Any, count: int, offset: int,
                  concurrency: int) -> Sample:
    jobs = [make(offset + i) for i in range(count)]
    cpu = time.process_time()
    result = await asyncio.get_running_loop().run_in_executor(pool, http_load, jobs,
                                                              concurrency)
    cpu = time.process_time() - cpu
    if result["problems"]:
        raise SystemExit("wrong answers:\n  " + "\n  ".join(result["problems"]))
    return Sample(count / result["elapsed"], cpu / count)


async def phase(pool: ProcessPoolExecutor, make: Any, offset: int,
                concurrency: int) -> Sample:
    """A short warm-up, then about PHASE_SECONDS of requests."""
    warm = await measure(pool, make, 4 * concurrency, offset, concurrency)
    count = int(min(max(PHASE_SECONDS * warm.rate, MIN_REQUESTS), MAX_REQUESTS))
    return await measure(pool, make, count, offset + 4 * concurrency, concurrency)


async def run(args: argparse.Namespace, folder: Path, pool: ProcessPoolExecutor,
              ) -> dict[str, list[tuple[Sample, Sample]]]:
    from server.app import create_app
    from server.config.model import parse_config
    from server.kit.clock import FixedClock
    from server.runtime import RUNTIME

    work = generate(f"fbproxy-bench:{args.seed}:0", NOW, calendar_zone(0), ZONES,
                    vevents=args.events, export=True)
    ics = folder / "calendar.ics"
    write_calendar_file(ics, work, "Bench calendar 0")
    config = parse_config({
        "server": {"database": str(folder / "fbproxy.sqlite3"), "timezone": "UTC",
                   "horizon_days": HORIZON_DAYS, "listen": "127.0.0.1:8080"},
        "sources": [{"name": "cal", "kind": "ics", "url": str(ics), "timezone": "UTC",
                     "poll_interval": "5m"}],
        "calendars": [{"name": CALENDAR, "sources": ["cal"], "secret": SECRET}],
    }, base_dir=folder)
    app = create_app(config, clock=FixedClock(NOW), start_sync=False)
    # Per phase and round: (/healthz just before, the phase).
    pairs: dict[str, list[tuple[Sample, Sample]]] = {}
    async with serving(app) as base:
        (outcome,) = await app[RUNTIME].sync.run_all_once()
        if not outcome.ok:
            raise SystemExit(f"sync failed: {outcome.error}")
        progress(f"fbproxy on {base}: {work.stats.vevents:,} VEVENTs synced")
        phases = Phases(base, args.seed)
        offset = 0
        for round_no in range(args.rounds):
            for name, make in phases.jobs.items():
                if name == "healthz":
                    continue
                # /healthz right before each phase: the machine's load drifts.
                health = await phase(pool, phases.jobs["healthz"], offset, args.concurrency)
                sample = await phase(pool, make, offset, args.concurrency)
                offset += MAX_REQUESTS
                pairs.setdefault(name, []).append((health, sample))
                progress(f"round {round_no + 1} {name}: {sample.rate:,.0f} req/s, /healthz "
                         f"{health.rate:,.0f} req/s: {sample.rate / health.rate:.3f}; server "
                         f"CPU {sample.cpu * 1e6:,.0f} µs vs {health.cpu * 1e6:,.0f} µs a request")
    return pairs


def report(args: argparse.Namespace, pairs: dict[str, list[tuple[Sample, Sample]]]) -> None:
    print(f"## Free/busy vs /healthz — {code_version()}\n")
    print(f"{args.events:,} events, 60-day windows, c={args.concurrency}, {args.rounds} "
          "round(s). Each phase runs right after a /healthz run; ratio = the phase's req/s "
          "/ that /healthz run's req/s. The CPU ratio is /healthz's server CPU time per "
          "request / the phase's (less disturbed by other load on the machine).\n")
    print("| phase | req/s (median) | /healthz req/s (median) | ratio (median) | "
          "ratios per round | CPU ratio (median) |")
    print("|---|---:|---:|---:|---|---:|")
    for name, runs in pairs.items():
        ratios = [s.rate / h.rate for h, s in runs]
        cpu = [h.cpu / s.cpu for h, s in runs]
        print(f"| {name} | {statistics.median(s.rate for _, s in runs):,.0f} | "
              f"{statistics.median(h.rate for h, _ in runs):,.0f} | "
              f"{statistics.median(ratios):.3f} | {', '.join(f'{r:.3f}' for r in ratios)} | "
              f"{statistics.median(cpu):.3f} |")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="500 events, one round")
    args = parser.parse_args(argv)
    if args.quick:
        args.events, args.rounds = 500, 1
    logging.basicConfig(level=logging.WARNING)
    folder = Path(tempfile.mkdtemp(prefix="fbproxy-bench-fast-"))
    try:
        with ProcessPoolExecutor(1) as pool:
            pairs = asyncio.run(run(args, folder, pool))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    report(args, pairs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
