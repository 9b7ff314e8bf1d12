#!/usr/bin/env python3
"""How close fbproxy runs to its ceilings: every figure of issue 22, as a ratio, one run.

Run from the repository root with the project's venv:

    .venv/bin/python bench/bench_ceiling.py            # the reference sizes (a few minutes)
    .venv/bin/python bench/bench_ceiling.py --quick    # smaller, about a minute

Each figure is measured against a ceiling taken on the same machine in the same
run, so the ratios compare across machines better than the raw numbers:

* **initial sync** of a big ICS file (``--events``) against icalendar's parse plus
  recurring-ical-events' expansion of the same file on one core, in this process;
* the **worst latency** of JSON free/busy of *another* calendar while that sync runs;
* **JSON free/busy** and the **CalDAV free-busy-query REPORT** (60 days, ``--clients``
  concurrent keep-alive clients) against ``/healthz`` of the same server;
* the **first busy query after a one-event change** in ``--calendars`` × ``--per-calendar``
  events against the same query answered from the cache;
* the server's **peak RSS** with those calendars synced.

The server is the real app (``create_app``, background sync on) in a spawned
process of its own on 127.0.0.1, with the benchmarks' fixed clock
(bench_core.NOW), so results do not depend on the day. Progress goes to stderr,
the Markdown table to stdout. The 200-client load run is bench/load.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402
import psutil  # noqa: E402

from bench.bench_core import NOW, ZONES, calendar_zone, fmt_ms, percentile  # noqa: E402
from bench.common import code_version, progress, tree_memory  # noqa: E402
from bench.load import serve  # noqa: E402
from bench.workload import generate, write_calendar_file  # noqa: E402

QUERY_DAYS = 60
ADMIN = "bench-admin-secret-0123456789"
SECRET = "bench-calendar-secret-0123456789"
EMPTY = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//bench//EN\r\nEND:VCALENDAR\r\n"


@dataclass(frozen=True)
class Options:
    events: int
    query_events: int
    calendars: int
    per_calendar: int
    clients: int
    seconds: float


@dataclass
class Figure:
    name: str
    value: str
    ceiling: str
    ratio: str
    goal: str


# -- the workload -------------------------------------------------------------------------

def write_file(folder: str, name: str, index: int, events: int) -> tuple[str, int]:
    work = generate(f"fbproxy-ceiling:{name}", NOW, calendar_zone(index), ZONES,
                    vevents=events, export=True)
    path = Path(folder) / f"{name}.ics"
    write_calendar_file(path, work, name)
    return str(path), work.stats.vevents


def moved_variant(path: str) -> str:
    """The file with one future, timed, single event an hour later (a one-event change)."""
    from icalendar import Calendar

    calendar = Calendar.from_ical(Path(path).read_text())
    for event in calendar.walk("VEVENT"):
        start = event.decoded("DTSTART")
        if "RRULE" in event or "RECURRENCE-ID" in event or not hasattr(start, "hour") or \
                start.tzinfo is None or not NOW + timedelta(days=3) < start < NOW + timedelta(
                    days=30):
            continue
        end = event.decoded("DTEND") if "DTEND" in event else start + timedelta(hours=1)
        event["DTSTART"].dt = start + timedelta(hours=1)
        if "DTEND" in event:
            event["DTEND"].dt = end + timedelta(hours=1)
        variant = path.replace(".ics", ".variant.ics")
        Path(variant).write_bytes(calendar.to_ical())
        return variant
    raise RuntimeError(f"no event to move in {path}")


def one_core_ceiling(path: str) -> tuple[float, int]:
    """icalendar's parse and recurring-ical-events' expansion of the whole file."""
    import recurring_ical_events
    from icalendar import Calendar

    started = time.perf_counter()
    calendar = Calendar.from_ical(Path(path).read_text())
    occurrences = recurring_ical_events.of(calendar).between(
        NOW - timedelta(days=1), NOW + timedelta(days=120))
    count = sum(1 for _ in occurrences)
    return time.perf_counter() - started, count


def write_config(folder: Path, sources: Sequence[str], calendars: dict[str, list[str]],
                 poll: str = "10s") -> str:
    q = json.dumps
    lines = ["[server]", 'listen = "127.0.0.1:8080"', 'database = "fbproxy.sqlite3"',
             'timezone = "UTC"', "horizon_days = 120", f"admin_secret = {q(ADMIN)}",
             'rate_limit_pages = "off"', 'rate_limit_secrets = "off"']
    for name in sources:
        lines += ["", "[[sources]]", f"name = {q(name)}", 'kind = "ics"',
                  f"url = {q(name + '.ics')}", f"poll_interval = {q(poll)}"]
    for index, (name, members) in enumerate(calendars.items()):
        lines += ["", "[[calendars]]", f"name = {q(name)}",
                  "sources = [" + ", ".join(q(s) for s in members) + "]",
                  f"secret = {q(f'{SECRET}-{index:02d}')}"]
    path = folder / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


# -- the server ---------------------------------------------------------------------------

class Server:
    """bench/load.py's server process (the real app, fixed clock) on a config."""

    def __init__(self, config: str) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        # Not daemonic: a daemonic process may not start the expansion workers.
        self._process = context.Process(target=serve, args=(config, child), daemon=False)

    def __enter__(self) -> Server:
        self._process.start()
        ready = self._conn.recv()
        if ready["failed"]:
            raise RuntimeError(f"sources failed: {ready['failed']}")
        self.base = f"http://127.0.0.1:{ready['port']}"
        self.pid = self._process.pid
        return self

    def __exit__(self, *exc: object) -> None:
        self._conn.send("stop")
        self._conn.recv()
        self._process.join(30)


def generation(db: Path) -> int:
    with sqlite3.connect(db) as connection:
        return int(connection.execute(
            "SELECT value FROM meta WHERE key = 'busy_generation'").fetchone()[0])


def last_round(db: Path, source: str) -> tuple[int | None, int]:
    """The source's last round's duration (ms) and its items."""
    with sqlite3.connect(db) as connection:
        row = connection.execute("SELECT last_duration_ms, item_count FROM sources "
                                 "WHERE name = ?", (source,)).fetchone()
    return (row[0], row[1]) if row else (None, 0)


# -- the clients --------------------------------------------------------------------------

def freebusy_url(base: str, calendar: str) -> str:
    end = NOW + timedelta(days=QUERY_DAYS)
    return (f"{base}/api/v1/freebusy?calendar={calendar}&start={NOW:%Y-%m-%dT%H:%M:%SZ}"
            f"&end={end:%Y-%m-%dT%H:%M:%SZ}")


def report_body() -> str:
    end = NOW + timedelta(days=QUERY_DAYS)
    return ('<?xml version="1.0" encoding="utf-8"?>'
            '<C:free-busy-query xmlns:C="urn:ietf:params:xml:ns:caldav">'
            f'<C:time-range start="{NOW:%Y%m%dT%H%M%SZ}" end="{end:%Y%m%dT%H%M%SZ}"/>'
            '</C:free-busy-query>')


async def throughput(session: aiohttp.ClientSession, request: dict[str, Any], clients: int,
                     seconds: float) -> tuple[float, list[float]]:
    """Requests a second over ``seconds`` with ``clients`` keep-alive clients; latencies."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            async with session.request(**request) as response:
                await response.read()
                if response.status not in (200, 207):
                    raise RuntimeError(f"{request['url']}: {response.status}")
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return len(latencies) / (time.perf_counter() - started), latencies


async def serving_figures(base: str, options: Options) -> dict[str, tuple[float, list[float]]]:
    auth = {"Authorization": f"Bearer {SECRET}-01"}
    requests = {
        "healthz": {"method": "GET", "url": f"{base}/healthz"},
        "json": {"method": "GET", "url": freebusy_url(base, "other"), "headers": auth},
        "report": {"method": "REPORT", "url": f"{base}/caldav/calendars/other/busy/",
                   "data": report_body(), "headers": {
                       "Depth": "1", "Content-Type": "application/xml",
                       "Authorization": aiohttp.BasicAuth("other", f"{SECRET}-01").encode()}},
    }
    results = {}
    connector = aiohttp.TCPConnector(limit=options.clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        for name, request in requests.items():
            await throughput(session, request, options.clients, 0.5)  # warm
            progress(f"serving: {name}")
            results[name] = await throughput(session, request, options.clients, options.seconds)
    return results


async def round_stored(db: Path, before: int | None, items: bool) -> float:
    """Wait for the "big" source's next round (one with or without items); its seconds."""
    while True:
        milliseconds, count = last_round(db, "big")
        if bool(count) == items and milliseconds != before:
            return (milliseconds or 0) / 1000
        await asyncio.sleep(0.05)


async def sync_alone(db: Path, big: str) -> float:
    """The big file's initial sync with no requests meanwhile; then emptied again, so
    the sync under requests is an initial one too."""
    target = db.parent / "big.ics"
    staged = db.parent / "big.staged"
    shutil.copyfile(big, staged)  # noqa: ASYNC240 - nothing else runs
    before = last_round(db, "big")[0]
    os.replace(staged, target)
    seconds = await round_stored(db, before, items=True)
    before = last_round(db, "big")[0]
    target.write_text(EMPTY)  # noqa: ASYNC240
    await round_stored(db, before, items=False)
    return seconds


async def latency_during_sync(base: str, db: Path, big: str, options: Options,
                              ) -> tuple[float, list[float]]:
    """JSON free/busy of "other" while "big" syncs (its file is filled in now)."""
    before = last_round(db, "big")[0]
    os.replace(big, db.parent / "big.ics")  # noqa: ASYNC240 - before the clients start
    auth = {"Authorization": f"Bearer {SECRET}-01"}
    latencies: list[float] = []
    done = asyncio.Event()

    async def client(session: aiohttp.ClientSession) -> None:
        while not done.is_set():
            started = time.perf_counter()
            async with session.get(freebusy_url(base, "other"), headers=auth) as response:
                await response.read()
            latencies.append(time.perf_counter() - started)

    async def watch() -> float:
        # The round that stored the items records its duration just after them.
        while True:
            milliseconds, items = last_round(db, "big")
            if items and milliseconds != before:
                done.set()
                return (milliseconds or 0) / 1000
            await asyncio.sleep(0.05)

    connector = aiohttp.TCPConnector(limit=options.clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        clients = [asyncio.create_task(client(session)) for _ in range(options.clients)]
        sync_seconds = await watch()
        await asyncio.gather(*clients)
    return sync_seconds, latencies


async def first_query_after_change(base: str, db: Path, path: Path, changed: bytes,
                                   calendar: str, secret: str) -> tuple[float, float]:
    auth = {"Authorization": f"Bearer {secret}"}
    url = freebusy_url(base, calendar)
    async with aiohttp.ClientSession() as session:
        for _ in range(3):
            async with session.get(url, headers=auth) as response:
                await response.read()
        before = generation(db)
        await asyncio.to_thread(path.write_bytes, changed)
        while True:  # until the server has stored the change
            if generation(db) != before:
                break
            await asyncio.sleep(0.01)
        started = time.perf_counter()
        async with session.get(url, headers=auth) as response:
            await response.read()
        first = time.perf_counter() - started
        started = time.perf_counter()
        async with session.get(url, headers=auth) as response:
            await response.read()
        cached = time.perf_counter() - started
    return first, cached


def peak_memory(pid: int, until: Any) -> tuple[int, int]:
    """The server's peak RSS, and the peak PSS of it with its worker processes."""
    process, peak_rss, peak_pss = psutil.Process(pid), 0, 0
    while True:
        rss, pss = tree_memory(process)
        peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
        if until():
            return peak_rss, peak_pss
        time.sleep(0.02)


# -- the run ------------------------------------------------------------------------------

def run(options: Options) -> list[Figure]:
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="fbproxy-ceiling-") as temporary:
        folder = Path(temporary)
        progress(f"generating {options.events} + {options.query_events} events")
        with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
            big = pool.submit(write_file, temporary, "bigfile", 0, options.events)
            other = pool.submit(write_file, temporary, "other", 1, options.query_events)
            big_path, big_events = big.result()
            other.result()
        progress("the one-core ceiling: parse and expand the big file here")
        ceiling, occurrences = one_core_ceiling(big_path)
        (folder / "big.ics").write_text(EMPTY)
        config = write_config(folder, ["big", "other"], {"big": ["big"], "other": ["other"]})
        db = folder / "fbproxy.sqlite3"
        with Server(config) as server:
            serving = asyncio.run(serving_figures(server.base, options))
            progress("the big file arrives, nothing else running")
            sync_seconds = asyncio.run(sync_alone(db, big_path))
            progress("the big file arrives again; free/busy of the other calendar meanwhile")
            sync_loaded, during = asyncio.run(latency_during_sync(server.base, db, big_path,
                                                                   options))
        figures.append(Figure(
            f"initial sync of {big_events:,} events ({occurrences:,} occurrences)",
            f"{sync_seconds:.2f} s", f"{ceiling:.2f} s (parse + expand, one core)",
            f"{ceiling / sync_seconds:.2f} ×", "≥ 1.3 ×"))
        figures.append(Figure(
            "worst JSON free/busy latency of another calendar during that sync",
            f"{fmt_ms(max(during))} ms (p50 {fmt_ms(percentile(during, 50))} ms, "
            f"{len(during)} requests; that sync took {sync_loaded:.2f} s)", "–", "–",
            "≤ 250 ms"))
        progress("serving: a bare aiohttp route, the HTTP stack's own ceiling")
        bare = bare_ceiling(options)
        health = serving["healthz"][0]
        for key, label, goal in (("json", "JSON free/busy, 60 days", "≥ 0.6 ×"),
                                 ("report", "CalDAV free-busy-query REPORT, 60 days",
                                  "≥ 0.4 ×")):
            rate, latencies = serving[key]
            figures.append(Figure(
                f"{label} ({options.clients} clients)",
                f"{rate:,.0f} req/s (p50 {fmt_ms(percentile(latencies, 50))} ms)",
                f"{health:,.0f} req/s /healthz; {bare:,.0f} req/s a bare aiohttp route",
                f"{rate / health:.2f} × /healthz; {rate / bare:.2f} × bare", goal))
        figures += many_calendars(folder / "many", options)
    return figures


def bare_serve(conn: Any) -> None:
    """An aiohttp app with one route answering a fixed 600-byte JSON body: what the HTTP
    stack alone does on this machine (``/healthz`` also reads the store)."""
    from aiohttp import web

    body = json.dumps({"busy": [{"start": "2026-03-02T09:00:00Z",
                                 "end": "2026-03-02T10:00:00Z"}] * 10}).encode()

    async def answer(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/", answer)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        conn.send(runner.addresses[0][1])
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        await runner.cleanup()

    asyncio.run(main())


def bare_ceiling(options: Options) -> float:
    """Requests a second a bare aiohttp route answers the same clients (see bare_serve)."""
    context = multiprocessing.get_context("spawn")
    conn, child = context.Pipe()
    process = context.Process(target=bare_serve, args=(child,), daemon=True)
    process.start()
    port = conn.recv()

    async def measure() -> float:
        request = {"method": "GET", "url": f"http://127.0.0.1:{port}/"}
        connector = aiohttp.TCPConnector(limit=options.clients)
        async with aiohttp.ClientSession(connector=connector) as session:
            await throughput(session, request, options.clients, 0.5)
            rate, _ = await throughput(session, request, options.clients, options.seconds)
        return rate

    try:
        return asyncio.run(measure())
    finally:
        conn.send("stop")
        process.join(10)


def many_calendars(folder: Path, options: Options) -> list[Figure]:
    folder.mkdir()
    names = [f"cal{i:02d}" for i in range(options.calendars)]
    progress(f"generating {options.calendars} × {options.per_calendar} events")
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        paths = list(pool.map(write_file, [str(folder)] * len(names), names,
                              range(len(names)), [options.per_calendar] * len(names)))
    variant = moved_variant(paths[0][0])
    config = write_config(folder, names, {"merged": names})
    db = folder / "fbproxy.sqlite3"
    context = multiprocessing.get_context("spawn")
    conn, child = context.Pipe()
    process = context.Process(target=serve, args=(config, child), daemon=False)
    process.start()
    progress("the initial sync of every calendar; sampling the server's RSS")
    peak, peak_tree = peak_memory(process.pid or 0, conn.poll)
    ready = conn.recv()
    base = f"http://127.0.0.1:{ready['port']}"
    first, cached = asyncio.run(first_query_after_change(
        base, db, folder / "cal00.ics", Path(variant).read_bytes(), "merged", f"{SECRET}-00"))
    rss, pss = tree_memory(psutil.Process(process.pid or 0))
    peak, peak_tree = max(peak, rss), max(peak_tree, pss)
    conn.send("stop")
    conn.recv()
    process.join(30)
    total = options.calendars * options.per_calendar
    return [
        Figure(f"first busy query after a one-event change, {options.calendars} × "
               f"{options.per_calendar:,} events (merged, 60 days)", f"{fmt_ms(first)} ms",
               f"{fmt_ms(cached)} ms (the same query, cached)", f"{first / cached:,.0f} ×",
               "≤ 20 ms"),
        Figure(f"peak RSS, {options.calendars} × {options.per_calendar:,} events "
               f"({total:,})", f"{peak / 2**20:,.0f} MiB (with the expansion workers: "
               f"{peak_tree / 2**20:,.0f} MiB PSS)", "–", "–", "≤ 150 MiB"),
    ]


def render(figures: Sequence[Figure], options: Options) -> str:
    lines = [f"## fbproxy against its ceilings ({code_version()})", "",
             f"{os.cpu_count()} cores; Python {sys.version.split()[0]}; {options}", "",
             "| figure | fbproxy | ceiling | ratio | goal |", "|---|---|---|---|---|"]
    lines += [f"| {f.name} | {f.value} | {f.ceiling} | {f.ratio} | {f.goal} |" for f in figures]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, about a minute")
    parser.add_argument("--events", type=int, help="the big file's VEVENTs (10000)")
    parser.add_argument("--query-events", type=int, help="the queried calendar's (2000)")
    parser.add_argument("--calendars", type=int, help="calendars for the change query (10)")
    parser.add_argument("--per-calendar", type=int, help="VEVENTs in each (5000)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, help="per throughput phase (5)")
    args = parser.parse_args(argv)
    quick = args.quick
    options = Options(
        events=args.events or (2000 if quick else 10_000),
        query_events=args.query_events or (500 if quick else 2000),
        calendars=args.calendars or (3 if quick else 10),
        per_calendar=args.per_calendar or (1000 if quick else 5000),
        clients=args.clients, seconds=args.seconds or (2.0 if quick else 5.0))
    print(render(run(options), options))
    return 0


if __name__ == "__main__":
    sys.exit(main())
