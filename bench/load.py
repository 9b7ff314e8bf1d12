#!/usr/bin/env python3
"""Load test for fbproxy: many keep-alive clients on every public route while sources sync.

Run from the repository root with the project's venv:

    .venv/bin/python bench/load.py                      # 200 clients for 60 s, 10 x 500 VEVENTs
    .venv/bin/python bench/load.py --seconds 10 --clients 50 --events 200

Everything happens in a temporary folder and on 127.0.0.1 only. Progress goes
to stderr; the result is Markdown on stdout. See bench/README.md ("Load").

Process layout:
  * the ICS files are generated in separate (spawned) processes, with the
    generator the other benchmarks use (bench/workload.py);
  * fbproxy (the real app from ``create_app``, its background sync loop on,
    every source polled every 10 s) runs in a spawned process of its own, so
    its RSS can be read with psutil and it gets a core to itself;
  * the HTTP clients (aiohttp, keep-alive) run in another spawned process;
  * this process writes the config, changes the ICS files while the load runs
    and samples the server's RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import multiprocessing
import os
import random
import secrets
import shutil
import sqlite3
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.bench_core import NOW, ZONES, calendar_zone, fmt_ms, percentile  # noqa: E402
from bench.common import code_version, progress, serving, tree_cpu_seconds  # noqa: E402
from bench.workload import generate, move_event, write_calendar_file  # noqa: E402

PAGE_ZONE = "Europe/Berlin"
HORIZON_DAYS = 120
BOOKING_DAYS = 60  # max_days_ahead of the pages: one slots request (at most 62 days) lists all
# The background file changes move an event that starts in this range: inside the
# feeds' window (now-1d .. now+horizon), outside every page's, so they change feeds
# and free/busy answers but never take a slot a client is about to book.
CHANGE_FROM, CHANGE_TO = 70, 115  # days after NOW
POLL = "10s"  # the shortest poll_interval fbproxy accepts
FREEBUSY_DAYS = 14
SLOTS_DAYS = 7
# Route -> weight in the request mix, and the statuses that count as success.
ROUTES: dict[str, tuple[float, frozenset[int]]] = {
    "GET busy.ics": (0.15, frozenset({200})),
    "GET busy.ics, If-None-Match": (0.30, frozenset({200, 304})),
    "GET /api/v1/freebusy": (0.25, frozenset({200})),
    "GET /api/v1/pages/{slug}/slots": (0.22, frozenset({200})),
    "POST /api/v1/pages/{slug}/bookings": (0.08, frozenset({201})),
}


# ---------------------------------------------------------------------------
# 1. Data: one ICS file per source, and a changed variant of it
# ---------------------------------------------------------------------------

@dataclass
class SourceFile:
    path: str
    zone: str
    vevents: int
    bytes: int
    variant: str  # the same file with one event moved by an hour ("" when none fits)


def generate_source(folder: str, index: int, seed: int, events: int) -> SourceFile:
    """bench_core's calendar ``index``, plus a variant with one far-ahead event moved."""
    zone = calendar_zone(index)
    work = generate(f"fbproxy-bench:{seed}:{index}", NOW, zone, ZONES, vevents=events,
                    export=True)
    path = Path(folder) / f"cal{index:02d}.ics"
    variant = Path(folder) / f"cal{index:02d}.variant.ics"
    lo, hi = NOW + timedelta(days=CHANGE_FROM), NOW + timedelta(days=CHANGE_TO)
    target = None
    for obj in work.objects:
        (event, *rest) = obj.events
        if rest or "RRULE" in event:
            continue
        start = event.decoded("DTSTART")
        if isinstance(start, datetime) and start.tzinfo is not None and lo <= start <= hi \
                and str(event.get("STATUS", "CONFIRMED")) == "CONFIRMED" \
                and str(event.get("TRANSP", "OPAQUE")) == "OPAQUE":
            target = event
            break
    if target is not None:
        move_event(target, timedelta(hours=1), modified=NOW)
        write_calendar_file(variant, work, f"Bench calendar {index}")
        move_event(target, -timedelta(hours=1), modified=NOW)
    write_calendar_file(path, work, f"Bench calendar {index}")
    return SourceFile(str(path), zone, work.stats.vevents, work.stats.bytes,
                      str(variant) if target is not None else "")


# ---------------------------------------------------------------------------
# 2. The config, as a TOML file (docs/configuration.md)
# ---------------------------------------------------------------------------

@dataclass
class Setup:
    config_path: str
    db_path: str
    calendars: dict[str, str]  # name -> secret
    pages: list[str]


def write_config(folder: Path, files: Sequence[SourceFile]) -> Setup:
    """One ics source per file, one calendar per source plus "merged", one page per host.

    Each page has one host, so every booking of a listed free slot must succeed
    (no other page can take that host's time), and the pages together offer
    enough distinct slots for a minute of bookings.
    """
    q = json.dumps  # a TOML basic string for these plain values
    names = [f"cal{i:02d}" for i in range(len(files))]
    calendars = {name: secrets.token_urlsafe(24) for name in ["merged", *names]}
    lines = ["[server]", 'listen = "127.0.0.1:8080"', 'database = "fbproxy.sqlite3"',
             f"timezone = {q(PAGE_ZONE)}", f"horizon_days = {HORIZON_DAYS}",
             # every client is 127.0.0.1: per-address limits would answer 429
             'rate_limit_bookings = "off"', 'rate_limit_failed_bookings = "off"',
             'rate_limit_pages = "off"',
             "metrics_public = true"]
    for name, stats in zip(names, files, strict=True):
        lines += ["", "[[sources]]", f"name = {q(name)}", 'kind = "ics"',
                  f"url = {q(Path(stats.path).name)}", f"timezone = {q(stats.zone)}",
                  f"poll_interval = {q(POLL)}"]
    for name, secret in calendars.items():
        sources = names if name == "merged" else [name]
        lines += ["", "[[calendars]]", f"name = {q(name)}",
                  "sources = [" + ", ".join(q(s) for s in sources) + "]",
                  f"secret = {q(secret)}"]
    pages = [f"book-{name}" for name in names]
    for slug, host in zip(pages, names, strict=True):
        # recheck is left at its default ("best_effort"): each booking re-syncs its
        # host's source first, one round shared by bookings within a second.
        lines += ["", "[[booking_pages]]", f"slug = {q(slug)}", f"title = {q('Meet ' + host)}",
                  f"hosts = [{q(host)}]", 'duration = "30m"', f"timezone = {q(PAGE_ZONE)}",
                  'minimum_notice = "4h"', f"max_days_ahead = {BOOKING_DAYS}",
                  "", "[booking_pages.hours]"]
        lines += [f'{day} = ["08:00-18:00"]' for day in ("mon", "tue", "wed", "thu", "fri")]
    path = folder / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return Setup(str(path), str(folder / "fbproxy.sqlite3"), calendars, pages)


# ---------------------------------------------------------------------------
# 3. The server (runs in a spawned process of its own)
# ---------------------------------------------------------------------------

class _Tally(logging.Handler):
    """Counts the server's warnings and errors, keeping the first few messages."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0
        self.first: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        if len(self.first) < 5:
            self.first.append(f"{record.levelname} {record.name}: {record.getMessage()}"[:300])


def serve(config_path: str, conn: Any, profile: bool = False,
          trace_memory: bool = False) -> None:
    """fbproxy as `fbproxy serve` runs it, but on port 0 and with the bench's fixed clock.

    ``profile``: run it under cProfile (the event loop's thread) and print the top
    functions to stderr when it stops. ``trace_memory``: trace allocations with
    tracemalloc and print, when it stops, what grew since the initial sync.
    """
    if not profile:
        asyncio.run(_serve(config_path, conn, trace_memory))
        return
    import cProfile
    import io
    import pstats

    profiler = cProfile.Profile()
    profiler.runcall(asyncio.run, _serve(config_path, conn, trace_memory))
    for order in ("cumulative", "tottime"):
        buffer = io.StringIO()
        pstats.Stats(profiler, stream=buffer).sort_stats(order).print_stats(35)
        print(buffer.getvalue(), file=sys.stderr)


async def _serve(config_path: str, conn: Any, trace_memory: bool) -> None:
    from server.app import create_app
    from server.config.model import load_config
    from server.kit.clock import FixedClock
    from server.runtime import RUNTIME

    tally = _Tally()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="server %(levelname)s %(name)s: %(message)s")
    logging.getLogger().addHandler(tally)
    config = load_config(config_path)
    if trace_memory:
        tracemalloc.start(12)
    app = create_app(config, clock=FixedClock(NOW), start_sync=True)
    async with serving(app) as base:
        # The loop's first round runs already; this waits for it (per-source lock).
        outcomes = await app[RUNTIME].sync.run_all_once()
        synced = tracemalloc.take_snapshot() if trace_memory else None
        conn.send({"port": int(base.rsplit(":", 1)[1]),
                   "failed": [f"{o.source}: {o.error}" for o in outcomes if not o.ok]})
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # "stop"
        if synced is not None:
            print_memory_growth(synced)
        during = tally.count
    conn.send({"log_count": during, "log_shutdown": tally.count - during,
               "log_first": tally.first})


def serve_bare(port: int, canned: dict[str, Any], conn: Any) -> None:
    """The load's ceiling: a bare aiohttp app answering every route of the mix with a
    body fbproxy gave for it (captured once), no middleware, no lookup, no store.

    Several of these share ``port`` (SO_REUSEPORT): the kernel spreads the clients'
    connections over them, so N processes are the most N event loops can serve.
    """
    from aiohttp import web

    feed = canned["feed"].encode()
    feed_etag = canned["feed_etag"]
    headers = {"ETag": feed_etag, "Cache-Control": "no-cache"}

    async def busy_ics(request: web.Request) -> web.Response:
        if request.headers.get("If-None-Match") == feed_etag:
            return web.Response(status=304, headers=headers)
        return web.Response(body=feed, headers=headers, content_type="text/calendar")

    def fixed(body: str, status: int = 200) -> Any:
        data = body.encode()

        async def handler(request: web.Request) -> web.Response:
            await request.read()
            return web.Response(body=data, status=status, content_type="application/json")
        return handler

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/feeds/{secret}/busy.ics", busy_ics)
        app.router.add_get("/api/v1/freebusy", fixed(canned["freebusy"]))
        app.router.add_get("/api/v1/pages/{slug}/slots", fixed(canned["slots"]))
        app.router.add_post("/api/v1/pages/{slug}/bookings", fixed(canned["booking"], 201))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, reuse_port=True).start()
        conn.send("ready")
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # "stop"
        await runner.cleanup()

    asyncio.run(main())


async def capture_bodies(plan: Plan, prepared: dict[str, Any]) -> dict[str, Any]:
    """One real answer of fbproxy per route of the mix, for the bare ceiling to serve."""
    import aiohttp

    name = plan.pages[0]
    calendar, secret = next(iter(plan.calendars.items()))
    day = NOW.astimezone(ZoneInfo(PAGE_ZONE)).date() + timedelta(days=1)
    start = (NOW + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    end = (NOW + timedelta(days=1 + FREEBUSY_DAYS)).strftime("%Y-%m-%dT%H:%M:%SZ")
    async with aiohttp.ClientSession(trust_env=False) as session:
        async with session.get(f"{plan.base}/feeds/{secret}/busy.ics") as response:
            feed, feed_etag = await response.text(), response.headers["ETag"]
        async with session.get(f"{plan.base}/api/v1/freebusy?calendar={calendar}"
                               f"&start={start}&end={end}",
                               headers={"Authorization": f"Bearer {secret}"}) as response:
            freebusy = await response.text()
        async with session.get(f"{plan.base}/api/v1/pages/{name}/slots?start={day}"
                               f"&end={day + timedelta(days=SLOTS_DAYS)}") as response:
            slots = await response.text()
    # A booking's answer without booking one more slot: the same shape fbproxy sends.
    booking = json.dumps({"id": "0" * 32, "start": prepared["slots"][name][0] if
                          prepared["slots"][name] else start, "duration": 30,
                          "manage_url": f"{plan.base}/book/{name}/manage/{'0' * 43}"})
    return {"feed": feed, "feed_etag": feed_etag, "freebusy": freebusy, "slots": slots,
            "booking": booking}


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_bare(plan: Plan, prepared: dict[str, Any], canned: dict[str, Any], processes: int,
             seconds: float, pool: ProcessPoolExecutor) -> dict[str, Any]:
    """The same clients for ``seconds`` against ``processes`` bare servers on one port."""
    import psutil

    spawn = multiprocessing.get_context("spawn")
    port = free_port()
    servers, pipes = [], []
    try:
        for _ in range(processes):
            parent, child = spawn.Pipe()
            server = spawn.Process(target=serve_bare, args=(port, canned, child), daemon=True)
            server.start()
            servers.append(server)
            pipes.append(parent)
        for parent in pipes:
            if not parent.poll(60):
                raise RuntimeError("a bare server did not start within 60 s")
            parent.recv()
        bare = Plan(f"http://127.0.0.1:{port}", seconds, plan.clients, plan.seed,
                    plan.calendars, plan.pages, plan.weights)
        # Every feed answers with the one captured ETag, so revalidations get 304s.
        same = {"slots": prepared["slots"],
                "etags": dict.fromkeys(prepared["etags"], canned["feed_etag"])}
        procs = [psutil.Process(s.pid) for s in servers]
        cpu_before = sum(tree_cpu_seconds(p) for p in procs)
        out = pool.submit(run_clients, bare, same, seconds, False).result()
        out["server_cpu"] = (sum(tree_cpu_seconds(p) for p in procs) - cpu_before) / out[
            "elapsed"]
        return out
    finally:
        for parent in pipes:
            with contextlib.suppress(OSError):
                parent.send("stop")
        for server in servers:
            server.join(10)
            if server.is_alive():
                server.terminate()


def print_memory_growth(synced: tracemalloc.Snapshot) -> None:
    """What the Python heap holds now and held at most, and what grew since ``synced``."""
    gc.collect()
    now = tracemalloc.take_snapshot()
    current, peak = tracemalloc.get_traced_memory()
    print(f"traced Python memory: {current / 2**20:.1f} MiB now, {peak / 2**20:.1f} MiB at "
          "most; the largest growths since the initial sync:", file=sys.stderr)
    for stat in now.compare_to(synced, "traceback")[:12]:
        print(stat, file=sys.stderr)
        for line in stat.traceback.format()[-12:]:
            print("    ", line, file=sys.stderr)


# ---------------------------------------------------------------------------
# 4. The clients (run in a spawned process)
# ---------------------------------------------------------------------------

@dataclass
class Plan:
    base: str
    seconds: float
    clients: int
    seed: int
    calendars: dict[str, str]
    pages: list[str]
    weights: dict[str, float]


def prepare(plan: Plan) -> dict[str, Any]:
    """Before the clock starts: every page's free slots and every feed's ETag."""
    return asyncio.run(_prepare(plan))


async def _prepare(plan: Plan) -> dict[str, Any]:
    import aiohttp

    first = NOW.astimezone(ZoneInfo(PAGE_ZONE)).date()
    slots: dict[str, list[str]] = {}
    etags: dict[str, str] = {}
    async with aiohttp.ClientSession(trust_env=False) as session:
        for slug in plan.pages:
            url = (f"{plan.base}/api/v1/pages/{slug}/slots?start={first}"
                   f"&end={first + timedelta(days=BOOKING_DAYS + 1)}")
            async with session.get(url) as response:
                if response.status != 200:
                    raise RuntimeError(f"{url}: {response.status} {await response.text()}")
                slots[slug] = [s["start"] for s in (await response.json())["slots"]]
        for secret in plan.calendars.values():
            async with session.get(f"{plan.base}/feeds/{secret}/busy.ics") as response:
                await response.read()
                etags[secret] = response.headers["ETag"]
    return {"slots": slots, "etags": etags}


def run_clients(plan: Plan, prepared: dict[str, Any], seconds: float, warmup: bool,
                ) -> dict[str, Any]:
    """``seconds`` of the mix; the warm-up books the odd slots of the pool, the run the even."""
    return asyncio.run(_run_clients(plan, prepared, seconds, warmup))


async def _run_clients(plan: Plan, prepared: dict[str, Any], seconds: float, warmup: bool,
                       ) -> dict[str, Any]:
    import aiohttp

    rng = random.Random(f"fbproxy-load:{plan.seed}")
    # Distinct free slots, pages interleaved, in random order; each is booked once.
    pool = [(slug, start) for slug, starts in prepared["slots"].items() for start in starts]
    rng.shuffle(pool)
    pool = pool[1::2] if warmup else pool[0::2]
    bookable = iter(pool)
    offered = len(pool)
    names = list(plan.calendars)
    routes = list(ROUTES)
    weights = [plan.weights[r] for r in routes]
    first_day = NOW.astimezone(ZoneInfo(PAGE_ZONE)).date()
    lo = int((NOW - timedelta(days=1)).timestamp())
    hi = int((NOW + timedelta(days=HORIZON_DAYS - FREEBUSY_DAYS)).timestamp())
    latencies: dict[str, list[float]] = {r: [] for r in routes}
    statuses: dict[str, Counter[int]] = {r: Counter() for r in routes}
    errors: dict[str, Counter[str]] = {r: Counter() for r in routes}
    booked = 0
    exhausted = False
    versions: set[tuple[str, str]] = set()  # (feed secret, ETag) pairs seen
    revalidated: Counter[tuple[str, str]] = Counter()  # (sent, got) of If-None-Match 200s

    def iso(ts: int) -> str:
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    connector = aiohttp.TCPConnector(limit=plan.clients)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                     trust_env=False) as session:
        deadline = time.perf_counter() + seconds

        async def client(n: int) -> None:
            nonlocal booked, exhausted
            mine = random.Random(f"fbproxy-load:{plan.seed}:{n}:{warmup}")
            etags = dict(prepared["etags"])  # what this client last saw, per feed
            while time.perf_counter() < deadline:
                route = mine.choices(routes, weights)[0]
                method, headers, body = "GET", {}, None
                if route.startswith("POST"):
                    pick = next(bookable, None)
                    if pick is None:
                        exhausted = True
                        route = "GET /api/v1/pages/{slug}/slots"
                    else:
                        slug, start = pick
                        url = f"{plan.base}/api/v1/pages/{slug}/bookings"
                        method = "POST"
                        body = {"start": start, "duration": 30, "name": f"Guest {n}",
                                "email": f"guest{n}@load.example"}
                if route.startswith("GET busy.ics"):
                    secret = plan.calendars[mine.choice(names)]
                    url = f"{plan.base}/feeds/{secret}/busy.ics"
                    if route.endswith("If-None-Match"):
                        headers["If-None-Match"] = etags[secret]
                elif route == "GET /api/v1/freebusy":
                    name = mine.choice(names)
                    start_ts = mine.randrange(lo, hi, 900)
                    url = (f"{plan.base}/api/v1/freebusy?calendar={name}&start={iso(start_ts)}"
                           f"&end={iso(start_ts + FREEBUSY_DAYS * 86400)}")
                    headers["Authorization"] = f"Bearer {plan.calendars[name]}"
                elif route == "GET /api/v1/pages/{slug}/slots":
                    day = first_day + timedelta(days=mine.randrange(BOOKING_DAYS - SLOTS_DAYS))
                    url = (f"{plan.base}/api/v1/pages/{mine.choice(plan.pages)}/slots"
                           f"?start={day}&end={day + timedelta(days=SLOTS_DAYS)}")
                t0 = time.perf_counter()
                try:
                    async with session.request(method, url, headers=headers,
                                               json=body) as response:
                        data = await response.read()
                        status = response.status
                        etag = response.headers.get("ETag")
                except Exception as exc:  # any exception is an error of this route
                    latencies[route].append(time.perf_counter() - t0)
                    errors[route][f"{type(exc).__name__}: {exc}"[:200]] += 1
                    continue
                latencies[route].append(time.perf_counter() - t0)
                statuses[route][status] += 1
                if status not in ROUTES[route][1]:
                    errors[route][f"{status} {data[:200].decode(errors='replace')}"] += 1
                    continue
                problem = check_body(route, status, data)
                if not problem and status == 200 and "If-None-Match" in headers:
                    if etag == headers["If-None-Match"]:
                        problem = "200 (not 304) with the ETag sent in If-None-Match"
                    else:
                        revalidated[(headers["If-None-Match"], etag)] += 1
                if problem:
                    errors[route][problem] += 1
                    continue
                if route.startswith("GET busy.ics") and etag:
                    versions.add((url.split("/")[-2], etag))
                    if status == 200:
                        etags[url.split("/")[-2]] = etag
                booked += route.startswith("POST")

        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(client(n) for n in range(plan.clients)))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"latencies": latencies, "statuses": {r: dict(c) for r, c in statuses.items()},
            "errors": {r: dict(c.most_common(5)) for r, c in errors.items()},
            "error_counts": {r: sum(c.values()) for r, c in errors.items()},
            "elapsed": elapsed, "cpu": cpu, "booked": booked, "feed_versions": len(versions),
            "offered": offered, "exhausted": exhausted,
            "revalidated": revalidated.most_common(5)}


def check_body(route: str, status: int, data: bytes) -> str:
    """What is wrong with a response of an expected status ("" when nothing)."""
    if status == 304:
        return "" if not data else "304 with a body"
    if route.startswith("GET busy.ics"):
        return "" if data.startswith(b"BEGIN:VCALENDAR") else f"not iCalendar: {data[:80]!r}"
    try:
        parsed = json.loads(data)
    except ValueError:
        return f"not JSON: {data[:80]!r}"
    key = {"GET /api/v1/freebusy": "busy", "GET /api/v1/pages/{slug}/slots": "slots"}.get(
        route, "id")
    return "" if isinstance(parsed, dict) and key in parsed else f"no {key!r}: {data[:120]!r}"


# ---------------------------------------------------------------------------
# 5. The run
# ---------------------------------------------------------------------------

@dataclass
class Options:
    seconds: float = 60.0
    clients: int = 200
    calendars: int = 10
    events: int = 500
    seed: int = 1
    change_every: float = 1.0  # seconds between file changes (round robin over the files)
    warmup: float = 5.0  # seconds of the same mix before the measured run (RSS "before")
    keep: bool = False
    bookings: bool = True  # False: no bookings in the mix (the other weights stay)
    profile: bool = False
    trace_memory: bool = False
    ceiling: float = 0.0  # seconds of the same clients against bare aiohttp (0: none)


@dataclass
class LoadResult:
    options: Options
    routes: dict[str, dict[str, Any]]
    total_requests: int
    total_errors: int
    elapsed: float
    rss_start: int  # after the initial sync, before any load
    rss_before: int  # after the warm-up
    rss_after: int
    warmup_requests: int
    warmup_errors: int
    rss_peak: int
    rss_curve: list[int]  # every 10 s of the run
    file_changes: int
    file_touches: int
    sync_rounds: dict[str, int]  # result -> rounds during the load
    booked: int
    offered: int
    exhausted: bool
    double_booked: int
    server_log_count: int
    server_log_first: list[str]
    server_log_shutdown: int  # lines logged while the server stopped, after the load
    vevents: int
    feed_versions: int  # distinct (feed, ETag) pairs the clients were served
    server_cpu: float  # CPU seconds (user + system, all threads) per second of the run
    client_cpu: float  # the same for the client process
    revalidated: list[Any]  # the commonest (ETag sent, ETag got) of If-None-Match 200s
    feeds: int
    # processes -> the clients' figures against that many bare aiohttp servers
    ceilings: dict[int, dict[str, Any]] = field(default_factory=dict)

    @property
    def rss_growth(self) -> float:
        return (self.rss_after - self.rss_before) / self.rss_before

    @property
    def rate(self) -> float:
        return self.total_requests / self.elapsed


def sync_round_counts(base: str) -> Counter[str]:
    """fbproxy_sync_rounds_total summed by result, from /metrics."""
    import urllib.request

    with urllib.request.urlopen(f"{base}/metrics", timeout=30) as response:  # noqa: S310
        text = response.read().decode()
    counts: Counter[str] = Counter()
    for line in text.splitlines():
        if line.startswith("fbproxy_sync_rounds_total{"):
            labels, value = line.rsplit(" ", 1)
            result = labels.split('result="', 1)[1].split('"', 1)[0]
            counts[result] += int(float(value))
    return counts


async def change_files(bodies: Sequence[tuple[bytes, bytes | None]],
                       files: Sequence[SourceFile], every: float, stop: asyncio.Event,
                       counts: Counter[str]) -> None:
    """Round robin over the files: swap in the other content, next time only touch.

    A swap (the one moved event back and forth) makes the next round read,
    split and fingerprint the file and re-expand one item; a touch (new mtime,
    same bytes) makes it read and hash the file and find nothing changed.
    """
    showing = [0] * len(files)
    step = 0
    while not stop.is_set():
        with_content = (step // len(files)) % 2 == 0
        index = step % len(files)
        path = Path(files[index].path)
        body = bodies[index][1 - showing[index]]
        if with_content and body is not None:
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(body)
            os.replace(tmp, path)
            showing[index] = 1 - showing[index]
            counts["changed"] += 1
        else:
            os.utime(path)
            counts["touched"] += 1
        step += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)


def double_bookings(db_path: str) -> int:
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return int(db.execute(
            """SELECT COUNT(*) FROM booking_blocks a JOIN booking_blocks b
               ON a.calendar = b.calendar AND a.rowid < b.rowid
               AND a.start_ts < b.end_ts AND b.start_ts < a.end_ts""").fetchone()[0])
    finally:
        db.close()


def run(options: Options) -> LoadResult:
    """Generate, start the server, load it for ``options.seconds``, stop; the figures."""
    import psutil

    folder = Path(tempfile.mkdtemp(prefix="fbproxy-load-"))
    spawn = multiprocessing.get_context("spawn")
    server: Any = None
    parent: Any = None
    try:
        progress(f"generating {options.calendars} x {options.events} VEVENTs in {folder} ...")
        with ProcessPoolExecutor(min(os.cpu_count() or 1, options.calendars),
                                 mp_context=spawn) as gen_pool:
            files = list(gen_pool.map(
                generate_source, [str(folder)] * options.calendars, range(options.calendars),
                [options.seed] * options.calendars, [options.events] * options.calendars))
        setup = write_config(folder, files)

        parent, child = spawn.Pipe()
        server = spawn.Process(target=serve, args=(setup.config_path, child, options.profile,
                                                     options.trace_memory),
                               daemon=False)  # a daemonic process may not start workers
        server.start()
        if not parent.poll(120):
            raise RuntimeError("the server did not start within 120 s")
        hello = parent.recv()
        if hello["failed"]:
            raise RuntimeError(f"initial sync failed: {hello['failed']}")
        base = f"http://127.0.0.1:{hello['port']}"
        proc = psutil.Process(server.pid)
        progress(f"server pid {server.pid} on {base}, synced; preparing the clients ...")
        weights = {route: weight for route, (weight, _) in ROUTES.items()}
        if not options.bookings:
            weights["POST /api/v1/pages/{slug}/bookings"] = 0.0
        plan = Plan(base, options.seconds, options.clients, options.seed, setup.calendars,
                    setup.pages, weights)
        with ProcessPoolExecutor(1, mp_context=spawn) as pool:
            prepared = pool.submit(prepare, plan).result()
            bodies = [(Path(f.path).read_bytes(),
                       Path(f.variant).read_bytes() if f.variant else None) for f in files]
            result = asyncio.run(_load(options, plan, prepared, files, bodies, pool, proc))
            canned = asyncio.run(capture_bodies(plan, prepared)) if options.ceiling else {}
        parent.send("stop")
        if parent.poll(60):
            bye = parent.recv()
            result.server_log_count = bye["log_count"]
            result.server_log_shutdown = bye["log_shutdown"]
            result.server_log_first = bye["log_first"]
        server.join(30)
        result.double_booked = double_bookings(setup.db_path)
        if options.ceiling:
            with ProcessPoolExecutor(1, mp_context=spawn) as pool:
                for processes in (1, 2):
                    progress(f"ceiling: the same {options.clients} clients for "
                             f"{options.ceiling:g} s against {processes} bare aiohttp "
                             "process(es) ...")
                    result.ceilings[processes] = run_bare(plan, prepared, canned, processes,
                                                          options.ceiling, pool)
        return result
    finally:
        if server is not None and server.is_alive():
            server.terminate()
            server.join(10)
        if options.keep:
            progress(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


async def _load(options: Options, plan: Plan, prepared: dict[str, Any],
                files: Sequence[SourceFile], bodies: Sequence[tuple[bytes, bytes | None]],
                pool: ProcessPoolExecutor, proc: Any) -> LoadResult:
    loop = asyncio.get_running_loop()
    rss_start = proc.memory_info().rss
    stop = asyncio.Event()
    changes: Counter[str] = Counter()
    changer = asyncio.create_task(change_files(bodies, files, options.change_every, stop,
                                               changes))
    if options.warmup > 0:
        progress(f"server RSS {rss_start / 2**20:.1f} MiB; warming up for {options.warmup:g} s "
                 "(same mix, not counted) ...")
        warm = await loop.run_in_executor(pool, run_clients, plan, prepared, options.warmup,
                                          True)
        warm_requests = sum(len(v) for v in warm["latencies"].values())
        warm_errors = sum(warm["error_counts"].values())
    else:
        warm_requests = warm_errors = 0
    rounds_before = await loop.run_in_executor(None, sync_round_counts, plan.base)
    rss_before = proc.memory_info().rss
    rss_peak = rss_before
    cpu_before = tree_cpu_seconds(proc)
    offered = sum(len(s) for s in prepared["slots"].values()) // 2
    progress(f"server RSS {rss_before / 2**20:.1f} MiB; {options.clients} clients for "
             f"{options.seconds:g} s ({offered:,} free slots to book), files changing every "
             f"{options.change_every:g} s ...")
    changes.clear()
    clients = loop.run_in_executor(pool, run_clients, plan, prepared, options.seconds, False)
    started = time.monotonic()
    rss_curve: list[int] = []
    while not clients.done():
        await asyncio.wait([clients], timeout=0.5)
        rss = proc.memory_info().rss
        rss_peak = max(rss_peak, rss)
        if time.monotonic() - started >= 10 * (len(rss_curve) + 1):
            rss_curve.append(rss)
            progress(f"  {10 * len(rss_curve)} s: server RSS {rss / 2**20:.1f} MiB")
    stop.set()
    await changer
    out = clients.result()
    rss_after = proc.memory_info().rss
    server_cpu = tree_cpu_seconds(proc) - cpu_before
    rounds = await loop.run_in_executor(None, sync_round_counts, plan.base)
    rounds.subtract(rounds_before)
    routes: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        lat = out["latencies"][route]
        routes[route] = {"requests": len(lat), "errors": out["error_counts"][route],
                         "p50": percentile(lat, 50), "p99": percentile(lat, 99),
                         "statuses": out["statuses"][route],
                         "error_samples": out["errors"][route]}
    total = sum(r["requests"] for r in routes.values())
    errors = sum(r["errors"] for r in routes.values())
    progress(f"{total:,} requests in {out['elapsed']:.1f} s, {errors} error(s); "
             f"server RSS {rss_after / 2**20:.1f} MiB")
    return LoadResult(options=options, routes=routes, total_requests=total, total_errors=errors,
                      elapsed=out["elapsed"], rss_start=rss_start,
                      rss_before=rss_before, rss_after=rss_after,
                      warmup_requests=warm_requests, warmup_errors=warm_errors,
                      rss_peak=rss_peak, rss_curve=rss_curve,
                      file_changes=changes["changed"],
                      file_touches=changes["touched"], sync_rounds=dict(rounds),
                      booked=out["booked"], offered=out["offered"],
                      exhausted=out["exhausted"], double_booked=-1, server_log_count=-1,
                      server_log_shutdown=-1,
                      server_log_first=[], vevents=sum(f.vevents for f in files),
                      feed_versions=out["feed_versions"],
                      revalidated=out["revalidated"],
                      server_cpu=server_cpu / out["elapsed"],
                      client_cpu=out["cpu"] / out["elapsed"], feeds=len(plan.calendars))


def render(result: LoadResult, version: str) -> str:
    o = result.options
    lines = [f"### fbproxy load — {o.clients} clients x {o.seconds:g} s, {o.calendars} ICS "
             f"sources x {o.events:,} events, seed {o.seed}, now {NOW:%Y-%m-%dT%H:%MZ}, code "
             f"{version}, Python {sys.version.split()[0]}, {os.cpu_count()} CPU(s)", "",
             "| route | requests | errors | p50 (ms) | p99 (ms) | answers |",
             "|---|---:|---:|---:|---:|---|"]
    for route, r in result.routes.items():
        answers = ", ".join(f"{n:,} x {s}" for s, n in sorted(r["statuses"].items()))
        lines.append(f"| {route} | {r['requests']:,} | {r['errors']:,} | {fmt_ms(r['p50'])} "
                     f"| {fmt_ms(r['p99'])} | {answers or '-'} |")
    lines.append(f"| **all** | **{result.total_requests:,}** | **{result.total_errors:,}** "
                 f"| | | {result.rate:,.0f} req/s over {result.elapsed:.1f} s |")
    rounds = result.sync_rounds
    lines += ["", "| measurement | value |", "|---|---:|",
              f"| warm-up: requests / errors (not in the table above) | "
              f"{result.warmup_requests:,} / {result.warmup_errors:,} |",
              f"| server RSS after the initial sync (before the warm-up) | "
              f"{result.rss_start / 2**20:.1f} MiB |",
              f"| server RSS before / after the load (before: after a {o.warmup:g} s warm-up) "
              f"| {result.rss_before / 2**20:.1f} / "
              f"{result.rss_after / 2**20:.1f} MiB ({100 * result.rss_growth:+.1f} %) |",
              f"| CPU use during the load: server process / client process (1.0 = one core) | "
              f"{result.server_cpu:.2f} / {result.client_cpu:.2f} |",
              f"| server RSS, highest sample (every 0.5 s) | {result.rss_peak / 2**20:.1f} MiB |",
              f"| server RSS every 10 s of the load (MiB) | "
              f"{', '.join(f'{rss / 2**20:.0f}' for rss in result.rss_curve) or '-'} |",
              f"| sync rounds during the load: changed / unchanged / failed | "
              f"{rounds.get('ok', 0):,} / {rounds.get('unchanged', 0):,} / "
              f"{rounds.get('failed', 0):,} |",
              f"| feed versions served (distinct ETags over {result.feeds} feeds) | "
              f"{result.feed_versions:,} |",
              f"| ICS files rewritten (one event moved) / touched (new mtime only) | "
              f"{result.file_changes:,} / {result.file_touches:,} |",
              f"| bookings made / distinct free slots listed before the load | "
              f"{result.booked:,} / {result.offered:,}"
              f"{' (all taken: later picks became slot queries)' if result.exhausted else ''} |",
              f"| pairs of overlapping booking blocks on one calendar (must be 0) | "
              f"{result.double_booked} |",
              f"| server log lines at WARNING or above: up to the end of the load / while "
              f"stopping | {result.server_log_count} / {result.server_log_shutdown} |"]
    if result.ceilings:
        lines += render_ceilings(result)
    for route, r in result.routes.items():
        for text, n in r["error_samples"].items():
            lines.append(f"\nerror, {route}: {n} x {text}")
    for text in result.server_log_first:
        lines.append(f"\nserver log: {text}")
    return "\n".join(lines)


def render_ceilings(result: LoadResult) -> list[str]:
    """fbproxy's p50 per route next to the bare aiohttp servers' under the same clients."""
    heads = [f"bare aiohttp, {n} process{'es' if n > 1 else ''}" for n in result.ceilings]
    lines = ["", f"The ceiling, measured in this run: the same {result.options.clients} "
             f"clients and mix for {result.options.ceiling:g} s against bare aiohttp "
             "servers answering every route with a body fbproxy gave (no lookup, no "
             "middleware; several processes share the port with SO_REUSEPORT).", "",
             f"| figure | fbproxy | {' | '.join(heads)} |",
             "|---|---:|" + "---:|" * len(heads)]
    for route, r in result.routes.items():
        bare = [fmt_ms(percentile(c["latencies"][route], 50)) for c in result.ceilings.values()]
        lines.append(f"| {route}: p50 (ms) | {fmt_ms(r['p50'])} | {' | '.join(bare)} |")
    rates = [sum(len(v) for v in c["latencies"].values()) / c["elapsed"]
             for c in result.ceilings.values()]
    lines.append(f"| throughput (req/s) | {result.rate:,.0f} | "
                 f"{' | '.join(f'{r:,.0f}' for r in rates)} |")
    lines.append(f"| CPU: server / clients (1.0 = one core) | {result.server_cpu:.2f} / "
                 f"{result.client_cpu:.2f} | " + " | ".join(
                     f"{c['server_cpu']:.2f} / {c['cpu'] / c['elapsed']:.2f}"
                     for c in result.ceilings.values()) + " |")
    errors = [sum(c["error_counts"].values()) for c in result.ceilings.values()]
    lines.append(f"| errors | {result.total_errors:,} | {' | '.join(map(str, errors))} |")
    return lines


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="load duration (default 60)")
    parser.add_argument("--clients", type=int, default=200,
                        help="concurrent keep-alive clients (default 200)")
    parser.add_argument("--calendars", type=int, default=10, help="ICS sources (default 10)")
    parser.add_argument("--events", type=int, default=500,
                        help="VEVENTs per source, overrides included (default 500)")
    parser.add_argument("--seed", type=int, default=1, help="data and request seed (default 1)")
    parser.add_argument("--change-every", type=float, default=1.0,
                        help="seconds between two ICS file changes (default 1)")
    parser.add_argument("--warmup", type=float, default=5.0,
                        help="seconds of the same mix before the measured run; the RSS "
                             "'before' is read after it (default 5)")
    parser.add_argument("--no-bookings", action="store_true",
                        help="leave bookings out of the mix (to see what they cost)")
    parser.add_argument("--profile", action="store_true",
                        help="run the server under cProfile; report to stderr at the end")
    parser.add_argument("--trace-memory", action="store_true",
                        help="trace the server's allocations (tracemalloc; slow); report "
                             "what grew to stderr at the end")
    parser.add_argument("--ceiling", type=float, default=20.0,
                        help="seconds of the same clients against 1 and 2 bare aiohttp "
                             "processes after the run, the load's ceiling (0: skip; "
                             "default 20)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.change_every <= 0 or args.warmup < 0:
        parser.error("--seconds and --change-every must be positive")
    for name in ("clients", "calendars", "events"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.calendars > 99:
        parser.error("--calendars must be at most 99")
    return Options(seconds=args.seconds, clients=args.clients, calendars=args.calendars,
                   events=args.events, seed=args.seed, change_every=args.change_every,
                   warmup=args.warmup,
                   keep=args.keep, bookings=not args.no_bookings, profile=args.profile,
                   trace_memory=args.trace_memory, ceiling=max(0.0, args.ceiling))


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    version = code_version()
    started = time.perf_counter()
    result = run(options)
    progress(f"done in {time.perf_counter() - started:.0f} s")
    print("\n" + render(result, version))
    return 0 if result.total_errors == 0 and result.double_booked == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
