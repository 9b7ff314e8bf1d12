#!/usr/bin/env python3
"""Booking-page benchmark for fbproxy: slot computation, a brute-force peer, booking under load.

Run from the repository root with the project's venv:

    .venv/bin/python bench/bench_booking.py            # reference size: 10 hosts x 5,000
    .venv/bin/python bench/bench_booking.py --quick    # 4 hosts x 500, fewer repeats

Everything happens in a temporary folder and on 127.0.0.1 only. Progress goes
to stderr; the result is Markdown on stdout. See bench/README.md for what each
figure means.

Process layout:
  * the ICS files are generated in separate (spawned) processes, with the
    generator bench_core.py uses (bench/workload.py), from the same seeds;
  * fbproxy (the real app on an aiohttp TCPSite) runs in this process, and so
    do the in-process measurements and the brute-force peer;
  * the HTTP clients run in a separate process, so the server gets a core of
    its own instead of sharing one event loop with its clients.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
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

from dateutil.rrule import rrulestr  # type: ignore[import-untyped]  # noqa: E402
from icalendar import Event  # noqa: E402

from bench.bench_core import (  # noqa: E402
    NOW,
    ZONES,
    calendar_zone,
    fmt_ms,
    peak_rss_mib,
    percentile,
)
from bench.common import code_version, progress, serving  # noqa: E402
from bench.workload import Stats, Workload, generate, write_calendar_file  # noqa: E402

PAGE_ZONE = "Europe/Berlin"
OPEN, CLOSE = dtime(8), dtime(18)  # every weekday
WINDOW_DAYS = 90  # the page's max_days_ahead: one full slot computation
HTTP_DAYS = 60  # the slots API answers at most 62 days per request
HORIZON_DAYS = 120  # server.horizon_days (>= WINDOW_DAYS)
MODES = ("collective", "round_robin")
SLUGS = {"collective": "team-all", "round_robin": "team-any"}

log = logging.getLogger("bench")


# ---------------------------------------------------------------------------
# 1. Data: bench_core's calendars, with a few working days kept free
# ---------------------------------------------------------------------------

def free_days(count: int) -> list[date]:
    """``count`` working days inside the HTTP window on which every host is kept free."""
    today = NOW.astimezone(ZoneInfo(PAGE_ZONE)).date()
    days: list[date] = []
    offset = 8
    while len(days) < count:
        day = today + timedelta(days=offset)
        if day.weekday() < 5:
            days.append(day)
            offset += 9
        else:
            offset += 1
        if offset >= HTTP_DAYS:
            raise SystemExit(f"--free-days {count} does not fit in the first {HTTP_DAYS} days")
    return days


def day_windows(days: Iterable[date]) -> list[tuple[int, int]]:
    """Each day's opening hours (page zone) as absolute [start, end)."""
    zone = ZoneInfo(PAGE_ZONE)
    return [(int(datetime.combine(d, OPEN, zone).timestamp()),
             int(datetime.combine(d, CLOSE, zone).timestamp())) for d in days]


def _span(start: date | datetime, end: date | datetime, zone: ZoneInfo) -> tuple[int, int]:
    """An event's absolute span; all-day dates and floating times in the source's zone."""
    def instant(value: date | datetime) -> int:
        if not isinstance(value, datetime):
            value = datetime.combine(value, dtime(), zone)
        elif value.tzinfo is None:
            value = value.replace(tzinfo=zone)
        return int(value.timestamp())
    return instant(start), instant(end)


def _hits(span: tuple[int, int], windows: Sequence[tuple[int, int]]) -> bool:
    return any(span[0] < w_end and span[1] > w_start for w_start, w_end in windows)


def _make_free(event: Event) -> None:
    event.pop("TRANSP", None)
    event.add("TRANSP", "TRANSPARENT")


def keep_free(work: Workload, windows: Sequence[tuple[int, int]], zone: ZoneInfo,
              ) -> dict[str, int]:
    """Clear ``windows`` in every object, independently of fbproxy's expansion.

    A single event (or override) that overlaps a window becomes TRANSPARENT; a
    series gets an EXDATE for each occurrence that overlaps (occurrences read
    with dateutil, as the generator does, DTSTART counted as the first one).
    VEVENT count and structure stay the same.
    """
    cleared = Counter[str]()
    if not windows:
        return dict(cleared)
    lo = datetime.fromtimestamp(min(w[0] for w in windows), UTC) - timedelta(days=7)
    hi = datetime.fromtimestamp(max(w[1] for w in windows), UTC) + timedelta(days=7)
    for obj in work.objects:
        master, *overrides = obj.events
        start, end = master.decoded("DTSTART"), master.decoded("DTEND")
        if "RRULE" not in master:
            if _hits(_span(start, end, zone), windows):
                _make_free(master)
                cleared["transparent"] += 1
            continue
        raw = master["RRULE"].to_ical()
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        occurrences: list[Any]
        if isinstance(start, datetime):
            occurrences = list(rrulestr(text, dtstart=start).between(lo, hi, inc=True))
            first_inside = lo <= start <= hi
        else:
            naive = rrulestr(text, dtstart=datetime.combine(start, dtime()))
            occurrences = [d.date() for d in naive.between(
                lo.replace(tzinfo=None), hi.replace(tzinfo=None), inc=True)]
            first_inside = lo.date() <= start <= hi.date()
        if first_inside and start not in occurrences:
            occurrences.insert(0, start)  # RFC 5545: DTSTART is always an instance
        length = end - start
        excluded = [o for o in occurrences if _hits(_span(o, o + length, zone), windows)]
        if excluded:
            master.add("EXDATE", excluded)
            cleared["exdates"] += len(excluded)
        for override in overrides:
            moved = _span(override.decoded("DTSTART"), override.decoded("DTEND"), zone)
            if override.decoded("RECURRENCE-ID") in excluded or _hits(moved, windows):
                _make_free(override)
                cleared["transparent"] += 1
    return dict(cleared)


def generate_host(folder: str, index: int, seed: int, events: int,
                  windows: Sequence[tuple[int, int]]) -> tuple[Stats, dict[str, int]]:
    """Host ``index``'s ICS file: bench_core's calendar ``index`` (same seed key and zone)."""
    zone = calendar_zone(index)
    work = generate(f"fbproxy-bench:{seed}:{index}", NOW, zone, ZONES, vevents=events,
                    export=True)
    cleared = keep_free(work, windows, ZoneInfo(zone))
    write_calendar_file(Path(folder) / f"host{index:02d}.ics", work, f"Bench host {index}")
    return work.stats, cleared


# ---------------------------------------------------------------------------
# 2. The config, as a TOML file (docs/configuration.md)
# ---------------------------------------------------------------------------

def _toml(value: str) -> str:
    return json.dumps(value)  # a TOML basic string for these plain values


def write_config(folder: Path, files: Sequence[Stats], *, horizon_days: int) -> Path:
    from server.config.model import ServerConfig

    hosts = [f"host{i:02d}" for i in range(len(files))]
    lines = ["[server]", 'listen = "127.0.0.1:8080"', 'database = "fbproxy.sqlite3"',
             f"timezone = {_toml(PAGE_ZONE)}", f"horizon_days = {horizon_days}"]
    # One client address sends every request here; a per-address limit would
    # answer most of them 429 (when this version of fbproxy has such limits).
    known = {f.name for f in dataclasses.fields(ServerConfig)}
    lines += [f'{key} = "off"' for key in ("rate_limit_bookings", "rate_limit_failed_bookings",
                                           "rate_limit_pages") if key in known]
    for host, stats in zip(hosts, files, strict=True):
        lines += ["", "[[sources]]", f'name = "{host}-ics"', 'kind = "ics"',
                  f"url = {_toml(Path(stats.path).name)}", f"timezone = {_toml(stats.zone)}",
                  'poll_interval = "5m"',
                  "", "[[calendars]]", f'name = "{host}"', f'sources = ["{host}-ics"]']
    weekdays = "\n".join(f'{day} = ["{OPEN:%H:%M}-{CLOSE:%H:%M}"]'
                         for day in ("mon", "tue", "wed", "thu", "fri"))
    for mode in MODES:
        lines += ["", "[[booking_pages]]", f'slug = "{SLUGS[mode]}"',
                  f'title = "Team meeting ({mode})"',
                  "hosts = [" + ", ".join(f'"{h}"' for h in hosts) + "]",
                  f'mode = "{mode}"', 'duration = "30m"', f"timezone = {_toml(PAGE_ZONE)}",
                  'minimum_notice = "4h"', f"max_days_ahead = {WINDOW_DAYS}",
                  "", "[booking_pages.hours]", weekdays]
    path = folder / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------------------
# 3. The brute-force peer
# ---------------------------------------------------------------------------

def naive_slots(mode: str, candidates: Sequence[Any],
                rows_by_host: Mapping[str, Sequence[tuple[int, int, str]]]) -> list[Any]:
    """For each candidate, scan each host's busy rows linearly (stopping at the first hit).

    Rows are the store's raw instance rows (unmerged, in store order) plus
    booking blocks; every status blocks (the page's tentative_blocks is on,
    buffers are 0).
    """
    def free(start: int, end: int, rows: Sequence[tuple[int, int, str]]) -> bool:
        for row_start, row_end, _status in rows:
            if row_start < end and row_end > start:
                return False
        return True

    hosts = list(rows_by_host.values())
    if mode == "collective":
        return [c for c in candidates if all(free(c.start, c.end, rows) for rows in hosts)]
    return [c for c in candidates if any(free(c.start, c.end, rows) for rows in hosts)]


# ---------------------------------------------------------------------------
# HTTP clients (run in a worker process)
# ---------------------------------------------------------------------------

def http_get(urls: Sequence[str], concurrency: int, warm_url: str | None = None,
             ) -> dict[str, Any]:
    return asyncio.run(_http_get(urls, concurrency, warm_url))


async def _http_get(urls: Sequence[str], concurrency: int, warm_url: str | None,
                    ) -> dict[str, Any]:
    import aiohttp

    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    last: Any = None
    queue = iter(urls)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, trust_env=False) as session:
        if warm_url:  # open the connections before timing
            async def warm() -> None:
                async with session.get(warm_url) as response:
                    await response.read()
            await asyncio.gather(*(warm() for _ in range(concurrency)))

        async def worker() -> None:
            nonlocal last
            for url in queue:
                t0 = time.perf_counter()
                async with session.get(url) as response:
                    body = await response.read()
                latencies.append(time.perf_counter() - t0)
                statuses[response.status] += 1
                last = json.loads(body) if response.status == 200 else body.decode()[:300]

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {"latencies": latencies, "elapsed": elapsed, "statuses": dict(statuses),
            "last": last}


def http_post(url: str, bodies: Sequence[dict[str, Any]], concurrency: int, warm_url: str,
              race: bool = False) -> dict[str, Any]:
    return asyncio.run(_http_post(url, bodies, concurrency, warm_url, race))


async def _http_post(url: str, bodies: Sequence[dict[str, Any]], concurrency: int,
                     warm_url: str, race: bool) -> dict[str, Any]:
    """POST each body once, ``concurrency`` in flight; ``race``: all at the same moment."""
    import aiohttp

    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    queue = iter(bodies)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, trust_env=False) as session:
        async def warm() -> None:
            async with session.get(warm_url) as response:
                await response.read()
        await asyncio.gather(*(warm() for _ in range(concurrency)))
        gate = asyncio.Event()

        async def post(body: dict[str, Any]) -> None:
            t0 = time.perf_counter()
            async with session.post(url, json=body) as response:
                text = await response.text()
            latencies.append(time.perf_counter() - t0)
            statuses[response.status] += 1
            if response.status != 201:
                errors[f"{response.status} {text[:160]}"] += 1

        async def worker() -> None:
            await gate.wait()
            for body in queue:
                await post(body)

        tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
        await asyncio.sleep(0.05 if race else 0)  # every worker waits at the gate
        started = time.perf_counter()
        gate.set()
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
    return {"latencies": latencies, "elapsed": elapsed, "statuses": dict(statuses),
            "errors": dict(errors.most_common(3))}


# ---------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------

@dataclass
class Results:
    setup: list[tuple[str, str, str]] = field(default_factory=list)
    modes: list[tuple[str, str, str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, measurement: str, value: str, unit: str) -> None:
        self.setup.append((measurement, value, unit))

    def pair(self, measurement: str, values: Mapping[str, str], unit: str) -> None:
        self.modes.append((measurement, values["collective"], values["round_robin"], unit))


def p50_p99(samples: Sequence[float]) -> str:
    return f"{fmt_ms(percentile(samples, 50))} / {fmt_ms(percentile(samples, 99))}"


def statuses_text(statuses: Mapping[int, int]) -> str:
    return ", ".join(f"{count} x {status}" for status, count in sorted(statuses.items()))


def iso_z(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def timed(samples: list[float], awaitable: Any) -> Any:
    t0 = time.perf_counter()
    result = await awaitable
    samples.append(time.perf_counter() - t0)
    return result


async def run(args: argparse.Namespace, folder: Path, files: list[Stats],
              reserved: list[date], pool: ProcessPoolExecutor, res: Results) -> None:
    from server.app import create_app
    from server.booking.book import page_rules
    from server.booking.busy import merged_busy
    from server.booking.offer import offered_slots
    from server.booking.slots import candidate_slots, free_slots
    from server.config.model import load_config
    from server.kit.clock import FixedClock
    from server.runtime import RUNTIME

    config = load_config(write_config(folder, files, horizon_days=HORIZON_DAYS))
    loop = asyncio.get_running_loop()
    clock = FixedClock(NOW)
    zone = ZoneInfo(PAGE_ZONE)
    today = NOW.astimezone(zone).date()
    start = datetime.combine(today, dtime(), zone)
    end = datetime.combine(today + timedelta(days=WINDOW_DAYS + 1), dtime(), zone)
    pages = {mode: config.booking_page(SLUGS[mode]) for mode in MODES}
    duration = timedelta(minutes=30)
    rules = page_rules(pages["collective"], duration)  # the same rules for both pages
    candidates = candidate_slots(rules, NOW, start, end)
    span = (candidates[0].start, candidates[-1].end)
    reserved_windows = day_windows(reserved)
    reserved_slots = [c for c in candidates if _hits((c.start, c.end), reserved_windows)]

    app = create_app(config, clock=clock, start_sync=False)
    async with serving(app) as base:
        runtime = app[RUNTIME]
        calendars = {name: config.calendar(name) for name in pages["collective"].hosts}
        progress(f"app on {base}; initial sync of {len(files)} sources "
                 f"({sum(f.vevents for f in files):,} VEVENTs) ...")
        t0 = time.perf_counter()
        outcomes = await runtime.sync.run_all_once()
        sync_time = time.perf_counter() - t0
        failed = [o.error for o in outcomes if not o.ok]
        if failed:
            raise SystemExit(f"initial sync failed: {failed}")

        # -- what one slot computation works on -----------------------------------
        rows_by_host = {name: await runtime.store.busy_rows(
            runtime.ids_of(cal.sources), *span, calendars=(name,))
            for name, cal in calendars.items()}
        blocks_by_host = {name: await merged_busy(runtime, cal, *span)
                          for name, cal in calendars.items()}
        free_by_host = {name: free_slots(candidates, blocks, rules)
                        for name, blocks in blocks_by_host.items()}
        res.add("initial sync of all hosts' sources (one round)", f"{sync_time:.1f}", "s")
        res.add(f"busy rows per host in the {WINDOW_DAYS}-day span, mean (min-max)",
                _mean_range([len(r) for r in rows_by_host.values()]), "rows")
        res.add("merged busy blocks per host in that span, mean (min-max)",
                _mean_range([len(b) for b in blocks_by_host.values()]), "blocks")
        res.add(f"candidate slots in {WINDOW_DAYS} days (rules only: hours, notice, horizon)",
                f"{len(candidates):,}", "slots")
        res.add("of which free per host, mean (min-max)",
                _mean_range([len(f) for f in free_by_host.values()]), "slots")
        res.add(f"of which on the {len(reserved)} kept-free days", f"{len(reserved_slots):,}",
                "slots")
        await booking_read(args, runtime, calendars, candidates, res)

        # -- 1a. in process: offered_slots over the full 90 days ------------------------
        offered: dict[str, list[Any]] = {}
        warm: dict[str, list[float]] = {m: [] for m in MODES}
        cold: dict[str, list[float]] = {m: [] for m in MODES}
        for mode in MODES:
            page = pages[mode]
            progress(f"{mode}: offered_slots over {WINDOW_DAYS} days, {args.repeats} warm and "
                     f"{args.repeats} cold calls ...")
            offered[mode] = await offered_slots(runtime, page, duration, start, end)
            for _ in range(args.repeats):
                await timed(warm[mode], offered_slots(runtime, page, duration, start, end))
            for _ in range(args.repeats):
                # What a sync change does to the cache (a booking clears only its own part).
                runtime.timelines.clear()
                runtime.source_timelines.clear()
                runtime.booking_timelines.clear()
                await timed(cold[mode], offered_slots(runtime, page, duration, start, end))
        missing = [s for s in reserved_slots if s not in set(offered["collective"])]
        if missing:
            raise SystemExit(f"{len(missing)} of {len(reserved_slots)} slots on the kept-free "
                             f"days are not offered in collective mode, e.g. {missing[:3]}; "
                             "the data and fbproxy's expansion disagree")

        res.pair(f"slots offered over {WINDOW_DAYS} days (of {len(candidates):,} candidates)",
                 {m: f"{len(offered[m]):,}" for m in MODES}, "slots")
        res.pair(f"offered_slots, {WINDOW_DAYS} days, warm timeline cache, p50 / p99",
                 {m: p50_p99(warm[m]) for m in MODES}, "ms")
        res.pair(f"offered_slots, {WINDOW_DAYS} days, cold (timelines cleared), p50 / p99",
                 {m: p50_p99(cold[m]) for m in MODES}, "ms")

        # -- 2. the brute-force peer ---------------------------------------------------
        naive_total: dict[str, list[float]] = {m: [] for m in MODES}
        naive_scan: dict[str, list[float]] = {m: [] for m in MODES}
        agree: dict[str, bool] = {}
        for mode in MODES:
            progress(f"{mode}: brute-force peer, {args.naive_repeats} runs ...")
            found: list[Any] = []
            for _ in range(args.naive_repeats):
                t0 = time.perf_counter()
                naive_candidates = candidate_slots(rules, clock.now(), start, end)
                rows = {name: await runtime.store.busy_rows(
                    runtime.ids_of(cal.sources), naive_candidates[0].start,
                    naive_candidates[-1].end, calendars=(name,))
                    for name, cal in calendars.items()}
                t1 = time.perf_counter()
                found = naive_slots(mode, naive_candidates, rows)
                t2 = time.perf_counter()
                naive_total[mode].append(t2 - t0)
                naive_scan[mode].append(t2 - t1)
                del rows
            agree[mode] = set(found) == set(offered[mode])
            if not agree[mode]:
                only_naive = sorted(set(found) - set(offered[mode]))[:3]
                only_engine = sorted(set(offered[mode]) - set(found))[:3]
                progress(f"MISMATCH in {mode}: only brute force {only_naive}; "
                         f"only fbproxy {only_engine}")
        res.pair("brute force (candidates + row reads + linear scans), p50 / p99",
                 {m: p50_p99(naive_total[m]) for m in MODES}, "ms")
        res.pair("of which the linear scans, p50",
                 {m: fmt_ms(percentile(naive_scan[m], 50)) for m in MODES}, "ms")
        res.pair("fbproxy speed-up at p50: warm / cold",
                 {m: f"{percentile(naive_total[m], 50) / percentile(warm[m], 50):,.0f}x / "
                     f"{percentile(naive_total[m], 50) / percentile(cold[m], 50):,.1f}x"
                  for m in MODES}, "ratio")
        res.pair("brute force and fbproxy give the same slot set",
                 {m: "yes" if agree[m] else "NO" for m in MODES}, "")
        if not agree["collective"]:
            raise SystemExit("collective: brute force and fbproxy disagree (see above)")
        res.notes.append(f"Brute force and fbproxy agree on the collective slot set "
                         f"({len(offered['collective']):,} slots over {WINDOW_DAYS} days)"
                         + (f" and the round-robin one ({len(offered['round_robin']):,})."
                            if agree["round_robin"] else "; round robin DISAGREES."))

        if args.profile:
            await profile_slots(runtime, pages, duration, start, end)

        # -- 1b. over HTTP -------------------------------------------------------------
        async def in_pool(fn: Any, *fn_args: Any) -> Any:
            return await loop.run_in_executor(pool, fn, *fn_args)

        health = f"{base}/healthz"
        await in_pool(http_get, [health] * 2, 2)  # the client process's imports

        def slots_url(mode: str, first: date, last: date) -> str:
            query = urlencode({"start": first.isoformat(), "end": last.isoformat()})
            return f"{base}/api/v1/pages/{SLUGS[mode]}/slots?{query}"

        first_url = {m: slots_url(m, today, today + timedelta(days=HTTP_DAYS)) for m in MODES}
        second_url = {m: slots_url(m, today + timedelta(days=HTTP_DAYS),
                                   today + timedelta(days=WINDOW_DAYS + 1)) for m in MODES}
        http_warm: dict[str, dict[str, Any]] = {}
        http_cold: dict[str, list[float]] = {m: [] for m in MODES}
        http_pair: dict[str, list[float]] = {m: [] for m in MODES}
        http_load: dict[str, dict[str, Any]] = {}
        http_slots: dict[str, list[dict[str, str]]] = {}
        for mode in MODES:
            progress(f"{mode}: GET slots over HTTP ({HTTP_DAYS} days), warm, cold, "
                     f"two-request {WINDOW_DAYS} days, c={args.concurrency} ...")
            first = await in_pool(http_get, [first_url[mode]], 1)  # fills the cache
            if first["statuses"] != {200: 1}:
                raise SystemExit(f"slots API answered {first['statuses']}: {first['last']}")
            http_slots[mode] = first["last"]["slots"]
            http_warm[mode] = await in_pool(http_get, [first_url[mode]] * args.repeats, 1,
                                            health)
            for _ in range(args.repeats):
                runtime.timelines.clear()
                runtime.source_timelines.clear()
                runtime.booking_timelines.clear()
                one = await in_pool(http_get, [first_url[mode]], 1, health)
                http_cold[mode] += one["latencies"]
            for _ in range(args.repeats):
                two = await in_pool(http_get, [first_url[mode], second_url[mode]], 1, health)
                assert two["statuses"] == {200: 2}, two["statuses"]
                http_pair[mode].append(sum(two["latencies"]))
            http_load[mode] = await in_pool(
                http_get, [first_url[mode]] * (args.repeats * args.concurrency),
                args.concurrency, health)
            assert set(http_load[mode]["statuses"]) == {200}, http_load[mode]["statuses"]
        in_window = {m: sum(1 for s in offered[m] if s.start < int(datetime.combine(
            today + timedelta(days=HTTP_DAYS), dtime(), zone).timestamp())) for m in MODES}
        res.pair(f"GET /slots, {HTTP_DAYS} days (slots in the answer)",
                 {m: f"{len(http_slots[m]):,}" + ("" if len(http_slots[m]) == in_window[m]
                                                  else f" (in process: {in_window[m]})")
                  for m in MODES}, "slots")
        res.pair(f"GET /slots, {HTTP_DAYS} days, warm, one client, p50 / p99",
                 {m: p50_p99(http_warm[m]["latencies"]) for m in MODES}, "ms")
        res.pair(f"GET /slots, {HTTP_DAYS} days, cold (timelines cleared), p50 / p99",
                 {m: p50_p99(http_cold[m]) for m in MODES}, "ms")
        res.pair(f"GET /slots, {WINDOW_DAYS} days as two requests ({HTTP_DAYS} + "
                 f"{WINDOW_DAYS + 1 - HTTP_DAYS} days), warm, sum, p50 / p99",
                 {m: p50_p99(http_pair[m]) for m in MODES}, "ms")
        res.pair(f"GET /slots, {HTTP_DAYS} days, warm, c={args.concurrency}: throughput",
                 {m: f"{len(http_load[m]['latencies']) / http_load[m]['elapsed']:,.0f}"
                  for m in MODES}, "req/s")
        res.pair(f"GET /slots, {HTTP_DAYS} days, warm, c={args.concurrency}: p50 / p99",
                 {m: p50_p99(http_load[m]["latencies"]) for m in MODES}, "ms")

        # -- 3. booking ------------------------------------------------------------------
        await booking_phases(args, base, runtime, pages, rules, candidates, reserved,
                             http_slots, in_pool, res)
    res.add("peak RSS of the fbproxy process (ru_maxrss)", f"{peak_rss_mib():.0f}", "MiB")


def print_profile(profiler: Any, title: str, lines: int = 18) -> None:
    import io
    import pstats

    buffer = io.StringIO()
    pstats.Stats(profiler, stream=buffer).sort_stats("tottime").print_stats(lines)
    progress(f"profile: {title} (sorted by own time)")
    print(buffer.getvalue(), file=sys.stderr)


async def profile_slots(runtime: Any, pages: Mapping[str, Any], duration: timedelta,
                        start: datetime, end: datetime, calls: int = 5) -> None:
    """cProfile of offered_slots, warm and cold, per mode (this thread only: the
    store's SQLite work runs in aiosqlite's thread and shows as waiting)."""
    import cProfile

    from server.booking.offer import offered_slots

    for mode in MODES:
        for label, clear in (("warm", False), ("cold", True)):
            profiler = cProfile.Profile()
            for _ in range(calls):
                if clear:
                    runtime.timelines.clear()
                    runtime.source_timelines.clear()
                    runtime.booking_timelines.clear()
                profiler.enable()
                await offered_slots(runtime, pages[mode], duration, start, end)
                profiler.disable()
            print_profile(profiler, f"{calls} x offered_slots, {mode}, {label}")


async def profile_booking(runtime: Any, page: Any, start: str, calls: int = 1) -> None:
    """cProfile of one booking through server.booking.book.book, in process."""
    import cProfile

    from server.booking.book import book, parse_booking_request

    profiler = cProfile.Profile()
    profiler.enable()
    t0 = time.perf_counter()
    await book(runtime, page, parse_booking_request(booking_body(start, 10**6), page))
    spent = time.perf_counter() - t0
    profiler.disable()
    print_profile(profiler, f"one booking on {page.slug} at {start} ({fmt_ms(spent)} ms "
                  "under the profiler)")


async def booking_read(args: argparse.Namespace, runtime: Any, calendars: Mapping[str, Any],
                       candidates: Sequence[Any], res: Results) -> None:
    """What a booking reads inside its write transaction: every host's rows over the slot.

    The same query (server.store.bookings._busy_rows) on the reader connection, for a slot
    a week ahead and the last one; and how many index entries it walks.
    """
    import sqlite3

    week = int((NOW + timedelta(days=7)).timestamp())
    picks = {"1 week ahead": next(c for c in candidates if c.start >= week),
             f"{WINDOW_DAYS} days ahead": candidates[-1]}
    spent: dict[str, float] = {}
    visited: dict[str, int] = {}
    db = sqlite3.connect(f"file:{runtime.config.server.database}?mode=ro", uri=True)
    try:
        for label, slot in picks.items():
            samples: list[float] = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                for name, cal in calendars.items():
                    await runtime.store.busy_rows(runtime.ids_of(cal.sources), slot.start,
                                                  slot.end, calendars=(name,))
                samples.append(time.perf_counter() - t0)
            spent[label] = percentile(samples, 50)
            # The index (source_id, end_ts, start_ts) is read for slot start < end_ts <
            # slot end + the source's longest instance (sources.max_span).
            visited[label] = sum(db.execute(
                "SELECT COUNT(*) FROM instances WHERE source_id = ? AND end_ts > ? AND end_ts "
                "< ? + (SELECT max_span FROM sources WHERE id = ?)",
                (source_id, slot.start, slot.end, source_id)).fetchone()[0]
                for cal in calendars.values() for source_id in runtime.ids_of(cal.sources))
    finally:
        db.close()
    labels = " / ".join(picks)
    res.add(f"a booking's busy read: all hosts' rows over one slot ({labels}), p50",
            " / ".join(fmt_ms(spent[k]) for k in picks), "ms")
    res.add(f"index entries that read walks, all hosts ({labels})",
            " / ".join(f"{visited[k]:,}" for k in picks), "rows")


def _mean_range(values: Sequence[int]) -> str:
    return f"{sum(values) / len(values):,.0f} ({min(values):,}-{max(values):,})"


def booking_body(start: str, n: int) -> dict[str, Any]:
    # Whole minutes; the API also takes "30m" like the slots API.
    return {"start": start, "duration": 30, "name": f"Guest {n}",
            "email": f"guest{n}@bench.example", "answers": {}}


async def booking_phases(args: argparse.Namespace, base: str, runtime: Any,
                         pages: Mapping[str, Any], rules: Any, candidates: Sequence[Any],
                         reserved: Sequence[date], http_slots: Mapping[str, list[Any]],
                         in_pool: Any, res: Results) -> None:
    """Contention first (one slot each page), then throughput on disjoint slots."""
    from server.booking.busy import merged_busy
    from server.booking.slots import free_slots

    health = f"{base}/healthz"
    zone = ZoneInfo(PAGE_ZONE)
    # The kept-free days alternate: even ones for the collective page, odd ones for
    # round robin, so one page's bookings never take the other's slots.
    collective_days, round_robin_days = set(reserved[0::2]), set(reserved[1::2])

    def local_day(iso: str) -> date:
        return datetime.fromisoformat(iso).astimezone(zone).date()

    collective = [s["start"] for s in http_slots["collective"]
                  if local_day(s["start"]) not in round_robin_days]
    taken = set(collective)
    round_robin = [s["start"] for s in http_slots["round_robin"]
                   if s["start"] not in taken and local_day(s["start"]) not in collective_days]
    # Round robin races for a slot on one of its kept-free days: every host is free there.
    round_robin.sort(key=lambda s: local_day(s) not in round_robin_days)
    lists = {"collective": collective, "round_robin": round_robin}
    guest = 0
    race: dict[str, dict[str, Any]] = {}
    expected: dict[str, int] = {}
    for mode in MODES:
        if not lists[mode]:
            res.notes.append(f"{mode}: no free slot to book; contention and throughput "
                             "skipped (use --free-days 1 or more)")
            continue
        target = lists[mode].pop(0)
        slot_start = int(datetime.fromisoformat(target).timestamp())
        free_hosts = 0
        for name in pages[mode].hosts:
            blocks = await merged_busy(runtime, runtime.config.calendar(name),
                                       slot_start - 3600, slot_start + 5400)
            slot = next(c for c in candidates if c.start == slot_start)
            free_hosts += bool(free_slots([slot], blocks, rules))
        expected[mode] = 1 if mode == "collective" else free_hosts
        progress(f"{mode}: {args.contenders} clients race for {target} "
                 f"({free_hosts} host(s) free there) ...")
        bodies = [booking_body(target, guest + i) for i in range(args.contenders)]
        guest += args.contenders
        race[mode] = await in_pool(http_post, f"{base}/api/v1/pages/{SLUGS[mode]}/bookings",
                                   bodies, args.contenders, health, True)
    for mode in race:
        won = race[mode]["statuses"].get(201, 0)
        if won != expected[mode]:
            progress(f"{mode} race: {race[mode]['statuses']}, {race[mode]['errors']}")
            raise SystemExit(f"{mode}: {won} of {args.contenders} racing bookings got 201, "
                             f"expected exactly {expected[mode]}")

    through: dict[str, dict[str, Any]] = {}
    for mode in MODES:
        if mode not in race:
            continue
        starts = lists[mode][:args.bookings]
        progress(f"{mode}: {len(starts)} bookings of distinct free slots, "
                 f"c={args.concurrency} ...")
        bodies = [booking_body(s, guest + i) for i, s in enumerate(starts)]
        guest += len(starts)
        through[mode] = await in_pool(http_post, f"{base}/api/v1/pages/{SLUGS[mode]}/bookings",
                                      bodies, args.concurrency, health)
        if through[mode]["errors"]:
            progress(f"{mode}: not 201: {through[mode]['errors']}")

    if args.profile:
        rest = lists["round_robin"][args.bookings:]
        if rest:
            await profile_booking(runtime, pages["round_robin"], rest[0])

    def per_mode(fn: Any, source: Mapping[str, Any]) -> dict[str, str]:
        return {m: fn(source[m]) if m in source else "-" for m in MODES}

    res.pair(f"contention: {args.contenders} clients POST the same slot at once "
             "(201 expected: 1 / hosts free there)",
             {m: (f"{race[m]['statuses'].get(201, 0)} x 201 (expected {expected[m]}), "
                  + statuses_text({k: v for k, v in race[m]['statuses'].items() if k != 201}))
              if m in race else "-" for m in MODES}, "responses")
    res.pair("contention: latency p50 / p99 (all requests)",
             per_mode(lambda r: p50_p99(r["latencies"]), race), "ms")
    res.pair(f"booking distinct free slots, c={args.concurrency}: requests",
             per_mode(lambda r: statuses_text(r["statuses"]), through), "responses")
    res.pair(f"booking distinct free slots, c={args.concurrency}: throughput",
             per_mode(lambda r: f"{r['statuses'].get(201, 0) / r['elapsed']:,.1f}", through),
             "bookings/s")
    res.pair(f"booking distinct free slots, c={args.concurrency}: latency p50 / p99",
             per_mode(lambda r: p50_p99(r["latencies"]), through), "ms")

    # Invariants 1 and 2, checked independently of the engine.
    overlaps, on_busy, blocks = await check_bookings(runtime)
    res.add("booking blocks written (all pages, all hosts)", f"{blocks:,}", "blocks")
    res.add("pairs of booking blocks overlapping on one host (must be 0)", f"{overlaps}",
            "pairs")
    res.add("booking blocks overlapping a busy instance of their host (must be 0)",
            f"{on_busy}", "blocks")
    if overlaps or on_busy:
        raise SystemExit("a host is double-booked or booked over busy time")


async def check_bookings(runtime: Any) -> tuple[int, int, int]:
    """Overlapping booking blocks per calendar, and blocks over busy instances."""
    import bisect
    import sqlite3

    db = sqlite3.connect(f"file:{runtime.config.server.database}?mode=ro", uri=True)
    try:
        overlaps = db.execute(
            """SELECT COUNT(*) FROM booking_blocks a JOIN booking_blocks b
               ON a.calendar = b.calendar AND a.rowid < b.rowid
               AND a.start_ts < b.end_ts AND b.start_ts < a.end_ts""").fetchone()[0]
        blocks = db.execute("SELECT calendar, start_ts, end_ts FROM booking_blocks").fetchall()
        on_busy = 0
        for name in {b[0] for b in blocks}:
            ids = runtime.ids_of(runtime.config.calendar(name).sources)
            marks = ",".join("?" * len(ids))
            rows = sorted(db.execute(
                f"SELECT start_ts, end_ts FROM instances WHERE source_id IN ({marks})",
                ids).fetchall())
            starts = [r[0] for r in rows]
            longest = max((r[1] - r[0] for r in rows), default=0)
            for _, start, end in (b for b in blocks if b[0] == name):
                lo = bisect.bisect_left(starts, start - longest)
                hi = bisect.bisect_left(starts, end)
                on_busy += any(r[1] > start for r in rows[lo:hi])
    finally:
        db.close()
    return overlaps, on_busy, len(blocks)


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------

def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="quick size: 4 hosts x 500 VEVENTs, 10 repeats, 1 brute-force run "
                             "(explicit options win)")
    parser.add_argument("--hosts", type=int, help="hosts, one ICS source each (default 10)")
    parser.add_argument("--events", type=int,
                        help="VEVENTs per host, overrides included (default 5000)")
    parser.add_argument("--seed", type=int, default=1, help="data seed (default 1)")
    parser.add_argument("--repeats", type=int,
                        help="calls per latency figure (default 30)")
    parser.add_argument("--naive-repeats", type=int,
                        help="runs of the brute-force peer per mode (default 3)")
    parser.add_argument("--concurrency", type=int, default=8,
                        help="concurrent HTTP clients (default 8)")
    parser.add_argument("--contenders", type=int, default=50,
                        help="clients racing for one slot (default 50)")
    parser.add_argument("--bookings", type=int, default=200,
                        help="at most this many bookings per mode in the throughput run "
                             "(default 200; fewer when fewer slots are free)")
    parser.add_argument("--free-days", type=int, default=4,
                        help="working days kept free for every host (default 4; 0 = the "
                             "generated data untouched)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--profile", action="store_true",
                        help="also print cProfile reports of offered_slots and of one "
                             "booking to stderr")
    args = parser.parse_args(argv)
    quick = {"hosts": 4, "events": 500, "repeats": 10, "naive_repeats": 1}
    full = {"hosts": 10, "events": 5000, "repeats": 30, "naive_repeats": 3}
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    for name in ("hosts", "events", "repeats", "naive_repeats", "concurrency", "contenders",
                 "bookings"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.hosts > 99:
        parser.error("--hosts must be at most 99")
    if args.free_days < 0:
        parser.error("--free-days must be 0 or more")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    folder = Path(tempfile.mkdtemp(prefix="fbproxy-bench-booking-"))
    res = Results()
    started = time.perf_counter()
    spawn = multiprocessing.get_context("spawn")
    version = code_version()  # before the run: files may change while it goes on
    reserved = free_days(args.free_days)
    windows = day_windows(reserved)
    try:
        progress(f"generating {args.hosts} x {args.events} VEVENTs in {folder}, keeping "
                 f"{len(reserved)} day(s) free ...")
        t0 = time.perf_counter()
        with ProcessPoolExecutor(min(os.cpu_count() or 1, args.hosts),
                                 mp_context=spawn) as gen_pool:
            made = list(gen_pool.map(
                generate_host, [str(folder)] * args.hosts, range(args.hosts),
                [args.seed] * args.hosts, [args.events] * args.hosts, [windows] * args.hosts))
        files = [stats for stats, _ in made]
        cleared = sum((Counter(c) for _, c in made), Counter[str]())
        gen_time = time.perf_counter() - t0
        total = sum(f.vevents for f in files)
        res.add("hosts x VEVENTs (bench_core's calendars: same generator and seeds)",
                f"{args.hosts} x {args.events:,} = {total:,}", "VEVENT")
        res.add("recurring series / RECURRENCE-ID overrides, all hosts",
                f"{sum(f.series for f in files):,} / {sum(f.overrides for f in files):,}",
                "count")
        res.add(f"kept-free days ({', '.join(d.isoformat() for d in reserved) or 'none'}): "
                "EXDATEs added / events made TRANSPARENT, all hosts",
                f"{cleared['exdates']:,} / {cleared['transparent']:,}", "count")
        res.add("generation time (not part of fbproxy)", f"{gen_time:.1f}", "s")
        progress(f"generated {total:,} VEVENTs in {gen_time:.1f} s")
        with ProcessPoolExecutor(1, mp_context=spawn) as pool:
            asyncio.run(run(args, folder, files, reserved, pool, res))
    finally:
        if args.keep:
            progress(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)

    progress(f"done in {time.perf_counter() - started:.0f} s")
    print(f"\n### fbproxy booking benchmark — {args.hosts} hosts x {args.events:,} events, "
          f"seed {args.seed}, now {NOW:%Y-%m-%dT%H:%MZ}, code {version}, "
          f"Python {sys.version.split()[0]}, {os.cpu_count()} CPU(s)\n")
    print(f"Pages: {args.hosts} hosts, {OPEN:%H:%M}-{CLOSE:%H:%M} {PAGE_ZONE} every weekday, "
          f"30-minute slots, max_days_ahead {WINDOW_DAYS}, horizon_days {HORIZON_DAYS}.\n")
    print("| setup | value | unit |")
    print("|---|---:|---|")
    for row in res.setup:
        print("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    print("\n| measurement | collective | round_robin | unit |")
    print("|---|---:|---:|---|")
    for row in res.modes:
        print("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    for note in res.notes:
        print(f"\n{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
