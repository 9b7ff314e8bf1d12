#!/usr/bin/env python3
"""CalDAV endpoint benchmark: fbproxy's free-busy answers next to Radicale's and Xandikos's.

Run from the repository root with the project's venv:

    .venv/bin/python bench/bench_caldav_endpoint.py --quick     # 500 events
    .venv/bin/python bench/bench_caldav_endpoint.py             # 5,000 events

One calendar of generated events (bench_core's calendar 0) is loaded into
fbproxy (one ICS source file, synced once), into a Radicale calendar and into
a Xandikos calendar (one PUT per calendar object, as a CalDAV client stores
them). Then, with C concurrent keep-alive clients in a separate process, it
measures fbproxy's free-busy-query REPORT, its ICS feeds (200 and 304), and
the same free-busy-query REPORT on Radicale and on Xandikos, for 60-day
windows. It checks every answer, compares the busy time the three servers
report for the same windows, and prints the throughput ratios. Everything runs
in a temporary folder and on 127.0.0.1. Progress goes to stderr; the result is
Markdown on stdout. See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import http.client
import importlib.metadata
import io
import logging
import math
import multiprocessing
import os
import pstats
import random
import shutil
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from base64 import b64encode
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from icalendar import Calendar  # noqa: E402

from bench.bench_core import NOW, ZONES, calendar_zone, percentile  # noqa: E402
from bench.common import code_version, progress, serving  # noqa: E402
from bench.workload import Stats, generate, write_calendar_file, write_object_files  # noqa: E402
from tests.peers import PeerServer, RadicaleServer  # noqa: E402

CALENDAR = "bench"  # fbproxy's calendar name (= its CalDAV user) and the peers' calendar
SECRET = "bench-caldav-endpoint-secret-0001"  # fbproxy's calendar secret (= CalDAV password)
USER = "bench"  # Radicale's user
PASSWORD = "bench-password"
WINDOW_DAYS = 60
HORIZON_DAYS = 120
AGREEMENT_WINDOWS = 5  # windows fetched one at a time from every server and compared
PEER_BUDGET = 120.0  # seconds a slow peer's load run should take at most (about)
QUICK_PEER_BUDGET = 15.0
REQUEST_TIMEOUT = 900.0
CALDAV = "urn:ietf:params:xml:ns:caldav"
DAV = "DAV:"
UTC_TIMEZONE = "\r\n".join([
    "BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//fbproxy bench//caldav endpoint//EN",
    "BEGIN:VTIMEZONE", "TZID:UTC", "BEGIN:STANDARD", "DTSTART:19700101T000000",
    "TZOFFSETFROM:+0000", "TZOFFSETTO:+0000", "TZNAME:UTC", "END:STANDARD",
    "END:VTIMEZONE", "END:VCALENDAR", ""])

log = logging.getLogger("bench")


def basic(user: str, password: str) -> str:
    return "Basic " + b64encode(f"{user}:{password}".encode()).decode()


def fmt_ms(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:.2f}" if ms < 10 else f"{ms:.1f}" if ms < 1000 else f"{ms:,.0f}"


def fmt_rate(rate: float) -> str:
    return f"{rate:.2f}" if rate < 10 else f"{rate:,.1f}" if rate < 100 else f"{rate:,.0f}"


# ---------------------------------------------------------------------------
# 1. Data: bench_core's calendar 0, as one ICS file and as one object per UID
# ---------------------------------------------------------------------------

@dataclass
class Data:
    stats: Stats
    ics_path: Path
    ics_bytes: int
    objects: list[tuple[str, bytes]]  # (file name, one VCALENDAR with the UID's VEVENTs)
    object_bytes: int


def make_data(folder: Path, events: int, seed: int) -> Data:
    work = generate(f"fbproxy-bench:{seed}:0", NOW, calendar_zone(0), ZONES, vevents=events,
                    export=True)
    ics_path = folder / "calendar.ics"
    write_calendar_file(ics_path, work, "Bench calendar 0")
    ics_bytes = work.stats.bytes
    objects_folder = folder / "objects"
    objects_folder.mkdir()
    work.stats.bytes = 0
    write_object_files(objects_folder, work)
    objects = [(o.name, (objects_folder / o.name).read_bytes()) for o in work.objects]
    return Data(work.stats, ics_path, ics_bytes, objects, work.stats.bytes)


def windows(count: int, seed: int) -> list[tuple[datetime, datetime]]:
    """60-day windows starting on whole hours, anywhere from now - 1 day to now + 60 days.

    All of them lie inside fbproxy's served window (now - 1 day to now + 120 days).
    """
    rng = random.Random(f"bench-caldav-endpoint:{seed}")
    out = []
    for _ in range(count):
        start = NOW - timedelta(days=1) + timedelta(hours=rng.randrange(61 * 24))
        out.append((start, start + timedelta(days=WINDOW_DAYS)))
    return out


def caldav_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def free_busy_body(start: datetime, end: datetime) -> bytes:
    return (f'<?xml version="1.0" encoding="utf-8"?><C:free-busy-query xmlns:C="{CALDAV}">'
            f'<C:time-range start="{caldav_time(start)}" end="{caldav_time(end)}"/>'
            "</C:free-busy-query>").encode()


# ---------------------------------------------------------------------------
# 2. The peers: Radicale (tests/peers.py) and Xandikos (plain HTTP, no auth)
# ---------------------------------------------------------------------------

class Radicale(RadicaleServer):
    """The test suite's Radicale: 127.0.0.1, a free port, htpasswd (plain) auth, own folder."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.set_password(USER, PASSWORD)
        self.auth = basic(USER, PASSWORD)

    @property
    def calendar_path(self) -> str:
        return f"/{USER}/{CALENDAR}/"

    def create_calendar(self) -> None:
        # Radicale makes the principal collection on the user's first request.
        dav_request(self.port, "PROPFIND", f"/{USER}/", b"", {"Depth": "0"}, self.auth,
                    expect=(207,))
        mkcalendar(self.port, self.calendar_path, self.auth)


class Xandikos(PeerServer):
    """``xandikos serve``: single user, plain HTTP, no authentication, on 127.0.0.1.

    tests/peers.py runs the multi-user mode, whose ``--htpasswd`` requires TLS
    (``--autocert``). A benchmark on loopback does not need either, and TLS would
    add a cost the other two servers do not pay. ``--defaults`` makes the
    principal ``/user/`` and its calendar home.
    """

    name = "xandikos"

    def _prepare(self) -> None:
        self.data = self.folder / "data"
        self.state = self.folder / "state"
        self.auth = ""

    def _command(self) -> list[str]:
        return [sys.executable, "-m", "xandikos", "serve", "--directory", str(self.data),
                "--state-dir", str(self.state), "--listen-address", "127.0.0.1",
                "--port", str(self.port), "--no-detect-systemd", "--defaults"]

    def _htpasswd_line(self, username: str, password: str) -> str:
        raise NotImplementedError("this Xandikos runs without authentication")

    def calendar_home(self, username: str) -> str:
        return f"{self.base_url}user/calendars/"

    @property
    def calendar_path(self) -> str:
        return f"/user/calendars/{CALENDAR}/"

    def create_calendar(self) -> None:
        mkcalendar(self.port, self.calendar_path, self.auth)


def dav_request(port: int, method: str, path: str, body: bytes, headers: dict[str, str],
                auth: str, *, expect: tuple[int, ...] = ()) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
    try:
        all_headers = {"Content-Type": "application/xml; charset=utf-8", **headers}
        if auth:
            all_headers["Authorization"] = auth
        connection.request(method, path, body=body or None, headers=all_headers)
        response = connection.getresponse()
        status, payload = response.status, response.read()
    finally:
        connection.close()
    if expect and status not in expect:
        raise SystemExit(f"{method} {path} on port {port} answered {status}: {payload[:300]!r}")
    return status, payload


def mkcalendar(port: int, path: str, auth: str) -> None:
    """MKCALENDAR a VEVENT calendar whose time zone is UTC (see the notes in the report)."""
    body = (f'<?xml version="1.0" encoding="utf-8"?><C:mkcalendar xmlns:D="{DAV}" '
            f'xmlns:C="{CALDAV}"><D:set><D:prop><D:displayname>{CALENDAR}</D:displayname>'
            '<C:supported-calendar-component-set><C:comp name="VEVENT"/>'
            "</C:supported-calendar-component-set>"
            f"<C:calendar-timezone>{UTC_TIMEZONE}</C:calendar-timezone>"
            "</D:prop></D:set></C:mkcalendar>").encode()
    dav_request(port, "MKCALENDAR", path, body, {}, auth, expect=(201,))


def count_members(port: int, path: str, auth: str) -> int:
    body = (f'<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="{DAV}">'
            "<D:prop><D:getetag/></D:prop></D:propfind>").encode()
    _, payload = dav_request(port, "PROPFIND", path, body, {"Depth": "1"}, auth, expect=(207,))
    hrefs = [(node.text or "").strip() for node in ET.fromstring(payload).iter(f"{{{DAV}}}href")]
    return sum(1 for h in hrefs if h.rstrip("/") != path.rstrip("/"))


# ---------------------------------------------------------------------------
# 3. HTTP load generator (runs in a worker process)
# ---------------------------------------------------------------------------

# (method, url, headers, body)
Job = tuple[str, str, dict[str, str], bytes | None]


def http_load(jobs: Sequence[Job], concurrency: int, check: str,
              keep_bodies: bool = False) -> dict[str, Any]:
    return asyncio.run(_http_load(jobs, concurrency, check, keep_bodies))


def _problem(check: str, status: int, content_type: str, body: bytes) -> str | None:
    """What is wrong with an answer, or None."""
    if check == "created":
        return None if status in (201, 204) else f"status {status}"
    if check == "not-modified":
        return None if status == 304 else f"status {status}"
    if status != 200:
        return f"status {status}"
    # The Content-Type is counted and shown in the report, not checked here:
    # Xandikos labels its free-busy answers application/octet-stream.
    marker = b"BEGIN:VFREEBUSY" if check == "freebusy" else b"BEGIN:VCALENDAR"
    if marker not in body:
        return f"no {marker.decode()} in the body"
    return None


async def _http_load(jobs: Sequence[Job], concurrency: int, check: str,
                     keep_bodies: bool) -> dict[str, Any]:
    import aiohttp

    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    answers: Counter[str] = Counter()  # "status content-type"
    problems: list[str] = []
    bodies: list[bytes] = []
    received = 0
    etag = None
    queue = iter(enumerate(jobs))
    results: dict[int, bytes] = {}
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    async with aiohttp.ClientSession(connector=connector, trust_env=False,
                                     timeout=timeout, auto_decompress=True) as session:
        async def worker() -> None:
            nonlocal received, etag
            for index, (method, url, headers, data) in queue:  # each job is run once
                t0 = time.perf_counter()
                async with session.request(method, url, headers=headers, data=data) as response:
                    body = await response.read()
                latencies.append(time.perf_counter() - t0)
                statuses[response.status] += 1
                content_type = response.headers.get("Content-Type", "")
                answers[f"{response.status} {content_type.split(';')[0].strip() or '-'}"] += 1
                received += len(body)
                etag = response.headers.get("ETag", etag)
                problem = _problem(check, response.status, content_type, body)
                if problem is not None and len(problems) < 5:
                    problems.append(f"{method} {url}: {problem}: {body[:200]!r}")
                if keep_bodies:
                    results[index] = body

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    if keep_bodies:
        bodies = [results[i] for i in range(len(jobs))]
    return {"latencies": latencies, "elapsed": elapsed, "statuses": dict(statuses),
            "answers": dict(answers),
            "bytes": received, "etag": etag, "problems": problems, "bodies": bodies}


# ---------------------------------------------------------------------------
# 4. Free-busy answers: parse and compare
# ---------------------------------------------------------------------------

Intervals = list[tuple[int, int]]


def union(periods: Sequence[tuple[int, int]]) -> Intervals:
    out: Intervals = []
    for start, end in sorted(periods):
        if end <= start:
            continue
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def intersect(a: Intervals, b: Intervals) -> Intervals:
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        start, end = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if start < end:
            out.append((start, end))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def subtract(a: Intervals, b: Intervals) -> Intervals:
    out = []
    for start, end in a:
        cursor = start
        for b_start, b_end in b:
            if b_end <= cursor or b_start >= end:
                continue
            if b_start > cursor:
                out.append((cursor, b_start))
            cursor = max(cursor, b_end)
        if cursor < end:
            out.append((cursor, end))
    return out


def seconds(intervals: Intervals) -> int:
    return sum(end - start for start, end in intervals)


@dataclass
class FreeBusy:
    periods: dict[str, Intervals] = field(default_factory=dict)  # FBTYPE -> union
    count: int = 0  # FREEBUSY periods in the answer, as sent

    def busy(self, *fbtypes: str) -> Intervals:
        return union([p for t in fbtypes for p in self.periods.get(t, [])])


def parse_free_busy(body: bytes) -> FreeBusy:
    """The FREEBUSY periods of the (one) VFREEBUSY, by FBTYPE, as unions of UTC seconds."""
    (component,) = Calendar.from_ical(body).walk("VFREEBUSY")
    found = component.get("FREEBUSY", [])
    raw: dict[str, list[tuple[int, int]]] = {}
    for prop in found if isinstance(found, list) else [found]:
        fbtype = str(prop.params.get("FBTYPE", "BUSY")).upper()
        periods = prop.dt if isinstance(prop.dt, list) else [prop.dt]
        for start, end_or_duration in periods:
            end = end_or_duration if isinstance(end_or_duration, datetime) \
                else start + end_or_duration
            raw.setdefault(fbtype, []).append((int(start.timestamp()), int(end.timestamp())))
    return FreeBusy({t: union(p) for t, p in raw.items()}, sum(len(p) for p in raw.values()))


@dataclass
class Agreement:
    windows: int = 0
    identical: int = 0  # windows where all busy time (BUSY + BUSY-TENTATIVE) is the same
    fbproxy_seconds: int = 0
    peer_seconds: int = 0
    only_fbproxy: int = 0
    only_peer: int = 0
    firm_identical: int = 0  # windows where the BUSY time alone is the same
    examples: list[str] = field(default_factory=list)


def compare(ours: Sequence[FreeBusy], theirs: Sequence[FreeBusy]) -> Agreement:
    result = Agreement()
    for mine, peer in zip(ours, theirs, strict=True):
        a = mine.busy("BUSY", "BUSY-TENTATIVE")
        b = peer.busy("BUSY", "BUSY-TENTATIVE")
        only_a, only_b = subtract(a, b), subtract(b, a)
        result.windows += 1
        result.identical += a == b
        result.firm_identical += mine.busy("BUSY") == peer.busy("BUSY")
        result.fbproxy_seconds += seconds(a)
        result.peer_seconds += seconds(b)
        result.only_fbproxy += seconds(only_a)
        result.only_peer += seconds(only_b)
        for label, diff in (("only fbproxy", only_a), ("only the peer", only_b)):
            for start, end in diff[:2]:
                if len(result.examples) < 4:
                    result.examples.append(
                        f"{label}: {datetime.fromtimestamp(start, UTC):%Y-%m-%d %H:%M}"
                        f"-{datetime.fromtimestamp(end, UTC):%H:%M} UTC")
    return result


# ---------------------------------------------------------------------------
# 5. The run
# ---------------------------------------------------------------------------

@dataclass
class Run:
    """One load run: n requests at concurrency c."""

    label: str
    requests: int
    concurrency: int
    elapsed: float
    latencies: list[float]
    body_bytes: float  # mean per response
    answers: Counter[str]  # "status content-type" of every request of the row, load or not

    @property
    def rate(self) -> float:
        return self.requests / self.elapsed


@dataclass
class Results:
    setup: list[tuple[str, str, str]] = field(default_factory=list)
    runs: dict[str, Run] = field(default_factory=dict)
    first: dict[str, float] = field(default_factory=dict)
    single: dict[str, list[float]] = field(default_factory=dict)
    answers: dict[str, list[FreeBusy]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    profile: str = ""

    def add(self, measurement: str, value: str, unit: str) -> None:
        self.setup.append((measurement, value, unit))


def build_config(folder: Path, ics_path: Path) -> Any:
    from server.config.model import parse_config

    raw = {
        "server": {"database": str(folder / "fbproxy.sqlite3"), "timezone": "UTC",
                   "horizon_days": HORIZON_DAYS, "listen": "127.0.0.1:8080"},
        # UTC: floating times and all-day dates are read as both CalDAV servers read them.
        "sources": [{"name": "cal", "kind": "ics", "url": str(ics_path), "timezone": "UTC",
                     "poll_interval": "5m"}],
        "calendars": [{"name": CALENDAR, "sources": ["cal"], "secret": SECRET}],
    }
    return parse_config(raw, base_dir=folder)


class Bench:
    def __init__(self, args: argparse.Namespace, folder: Path, data: Data,
                 pool: ProcessPoolExecutor, res: Results) -> None:
        self.args = args
        self.folder = folder
        self.data = data
        self.pool = pool
        self.res = res
        # Window 0 for the first request, 1..K for the comparison, the rest for load runs:
        # no server sees a window twice in a row of measurements.
        self.windows = windows(1 + AGREEMENT_WINDOWS + args.requests, args.seed)
        self.budget = QUICK_PEER_BUDGET if args.quick else PEER_BUDGET

    async def load(self, jobs: Sequence[Job], concurrency: int, check: str,
                   keep_bodies: bool = False) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(self.pool, http_load, list(jobs), concurrency,
                                            check, keep_bodies)
        if result["problems"]:
            raise SystemExit("wrong answers:\n  " + "\n  ".join(result["problems"]))
        return result

    def report_jobs(self, url: str, auth: str, count: int, offset: int = 0) -> list[Job]:
        headers = {"Depth": "1", "Content-Type": "application/xml; charset=utf-8"}
        if auth:
            headers["Authorization"] = auth
        return [("REPORT", url, headers, free_busy_body(*self.windows[(offset + i)
                                                                      % len(self.windows)]))
                for i in range(count)]

    async def put_all(self, server: Radicale | Xandikos) -> dict[str, Any]:
        headers = {"Content-Type": "text/calendar; charset=utf-8", "If-None-Match": "*"}
        if server.auth:
            headers["Authorization"] = server.auth
        base = f"http://127.0.0.1:{server.port}{server.calendar_path}"
        jobs: list[Job] = [("PUT", base + name, headers, body)
                           for name, body in self.data.objects]
        return await self.load(jobs, self.args.concurrency, "created")

    async def measure(self, key: str, label: str, jobs_for: Any, check: str,
                      slow_peer: bool = False, compare: bool = False) -> None:
        """First request, the agreement windows one at a time, then the load run."""
        c = self.args.concurrency
        first = await self.load(jobs_for(1, 0), 1, check)
        self.res.first[key] = first["latencies"][0]
        answers = Counter(first["answers"])
        if compare:
            single = await self.load(jobs_for(AGREEMENT_WINDOWS, 1), 1, check, keep_bodies=True)
            answers.update(single["answers"])
            self.res.single[key] = single["latencies"]
            self.res.answers[key] = [parse_free_busy(b) for b in single["bodies"]]
            one = percentile(single["latencies"], 50)
        else:
            one = first["latencies"][0]
        n = self.args.requests
        if slow_peer:
            # A slow server answers about one request per `one` seconds whatever C is.
            n = min(n, max(2 * c, math.ceil(self.budget / one)))
        progress(f"{label}: first {fmt_ms(self.res.first[key])} ms, one client "
                 f"{fmt_ms(one)} ms; {n} requests at c={c} ...")
        run = await self.load(jobs_for(n, 1 + AGREEMENT_WINDOWS), c, check)
        answers.update(run["answers"])
        self.res.runs[key] = Run(label, n, c, run["elapsed"], run["latencies"],
                                 run["bytes"] / n, answers)
        progress(f"{label}: {n / run['elapsed']:,.1f} req/s, p50 "
                 f"{fmt_ms(percentile(run['latencies'], 50))} ms")

    async def run(self, radicale: Radicale, xandikos: Xandikos) -> None:
        from server.app import create_app
        from server.kit.clock import FixedClock
        from server.runtime import RUNTIME

        args, res = self.args, self.res
        n_objects = len(self.data.objects)
        progress(f"PUT {n_objects:,} objects into Radicale and Xandikos (at once, "
                 f"c={args.concurrency} each) ...")
        radicale_put, xandikos_put = await asyncio.gather(self.put_all(radicale),
                                                          self.put_all(xandikos))
        for name, server, put in (("Radicale", radicale, radicale_put),
                                  ("Xandikos", xandikos, xandikos_put)):
            listed = count_members(server.port, server.calendar_path, server.auth)
            if listed != n_objects:
                raise SystemExit(f"{name} lists {listed} of the {n_objects} objects PUT")
            res.add(f"{name}: {n_objects:,} PUTs (one object per UID, c={args.concurrency}, "
                    "both servers loaded at the same time)",
                    f"{put['elapsed']:.1f} s ({n_objects / put['elapsed']:,.0f}/s)", "")
            progress(f"{name}: {n_objects:,} PUTs in {put['elapsed']:.1f} s, lists all")

        config = build_config(self.folder, self.data.ics_path)
        app = create_app(config, clock=FixedClock(NOW), start_sync=False)
        async with serving(app) as base:
            runtime = app[RUNTIME]
            progress(f"fbproxy on {base}: syncing the ICS source once ...")
            t0 = time.perf_counter()
            outcomes = await runtime.sync.run_all_once()
            sync_seconds = time.perf_counter() - t0
            (outcome,) = outcomes
            if not outcome.ok or outcome.skipped:
                raise SystemExit(f"fbproxy's sync failed: {outcome.error} "
                                 f"(skipped {len(outcome.skipped)})")
            res.add(f"fbproxy: sync of the ICS source ({self.data.stats.vevents:,} VEVENTs, "
                    f"{outcome.items:,} items), one round", f"{sync_seconds:.2f} s", "")

            fb_auth = basic(CALENDAR, SECRET)
            collection = f"{base}/caldav/calendars/{CALENDAR}/busy/"
            feed = f"{base}/feeds/{SECRET}/busy.ics"
            freebusy_feed = f"{base}/feeds/{SECRET}/freebusy.ics"

            await self.measure("fbproxy", "(a) fbproxy free-busy-query REPORT",
                               lambda n, o: self.report_jobs(collection, fb_auth, n, o),
                               "freebusy", compare=True)
            if args.profile:
                res.profile = await self.profile_report(collection, fb_auth)

            await self.measure("feed", "(b) fbproxy GET busy.ics",
                               lambda n, o: [("GET", feed, {}, None)] * n, "feed")
            etag = (await self.load([("GET", feed, {}, None)], 1, "feed"))["etag"]
            await self.measure("feed304", "(b) fbproxy GET busy.ics, If-None-Match",
                               lambda n, o: [("GET", feed, {"If-None-Match": etag}, None)] * n,
                               "not-modified")
            await self.measure("freebusy.ics", "(b) fbproxy GET freebusy.ics",
                               lambda n, o: [("GET", freebusy_feed, {}, None)] * n, "freebusy")
            feed_blocks = (await self.load([("GET", feed, {}, None)], 1, "feed",
                                           keep_bodies=True))["bodies"][0].count(b"BEGIN:VEVENT")
            res.notes.append(f"busy.ics and freebusy.ics cover fbproxy's whole served window "
                             f"(now - 1 day to now + {HORIZON_DAYS} days: {feed_blocks:,} busy "
                             "blocks), not a 60-day window; both are rendered once per change "
                             "of the data and served from a cache.")

            for key, name, server in (("radicale", "(c) Radicale", radicale),
                                      ("xandikos", "(d) Xandikos", xandikos)):
                url = f"http://127.0.0.1:{server.port}{server.calendar_path}"
                await self.measure(key, f"{name} free-busy-query REPORT",
                                   lambda n, o, url=url, auth=server.auth:
                                   self.report_jobs(url, auth, n, o),
                                   "freebusy", slow_peer=True, compare=True)

    async def profile_report(self, collection: str, auth: str) -> str:
        """cProfile of the server process's main thread while it answers REPORTs.

        The client runs in the worker process; SQLite runs in aiosqlite's thread,
        which cProfile does not follow (that time shows as waiting in the loop).
        """
        n = min(self.args.requests, 300)
        profiler = cProfile.Profile()
        progress(f"profiling {n} free-busy-query REPORTs (c={self.args.concurrency}) ...")
        profiler.enable()
        await self.load(self.report_jobs(collection, auth, n, 1 + AGREEMENT_WINDOWS),
                        self.args.concurrency, "freebusy")
        profiler.disable()
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        out.write(f"--- fbproxy free-busy-query REPORT x {n}: by own time\n")
        stats.sort_stats("tottime").print_stats(25)
        out.write(f"--- fbproxy free-busy-query REPORT x {n}: by cumulative time\n")
        stats.sort_stats("cumulative").print_stats(30)
        return out.getvalue()


# ---------------------------------------------------------------------------
# 6. The report
# ---------------------------------------------------------------------------

def versions() -> str:
    def version(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "?"
    return (f"Radicale {version('radicale')}, Xandikos {version('xandikos')}, "
            f"aiohttp {version('aiohttp')}, icalendar {version('icalendar')}, "
            f"Python {sys.version.split()[0]}")


def agreement_text(name: str, agreement: Agreement) -> str:
    total = max(agreement.fbproxy_seconds, agreement.peer_seconds)
    if agreement.identical == agreement.windows:
        text = (f"fbproxy and {name} report the same busy time in all {agreement.windows} "
                f"windows ({agreement.fbproxy_seconds / 3600:,.1f} h in all)")
    else:
        text = (f"fbproxy and {name} report the same busy time in {agreement.identical} of "
                f"{agreement.windows} windows; in all: fbproxy "
                f"{agreement.fbproxy_seconds / 3600:,.1f} h, {name} "
                f"{agreement.peer_seconds / 3600:,.1f} h; only in fbproxy's answer "
                f"{agreement.only_fbproxy / 3600:,.2f} h, only in {name}'s "
                f"{agreement.only_peer / 3600:,.2f} h "
                f"({100 * (agreement.only_fbproxy + agreement.only_peer) / total:.2f} % of it)")
    firm = (f"; counting BUSY alone (not BUSY-TENTATIVE), the same in "
            f"{agreement.firm_identical} of {agreement.windows}")
    return text + firm


def answers_text(answers: Counter[str]) -> str:
    return ", ".join(f"{count:,} x {answer}" for answer, count in answers.most_common())


def report(args: argparse.Namespace, data: Data, res: Results, code: str) -> None:
    st = data.stats
    print(f"\n### fbproxy CalDAV endpoint vs Radicale and Xandikos — {st.vevents:,} VEVENTs, "
          f"60-day free-busy windows, c={args.concurrency}, seed {args.seed}\n")
    print(f"{versions()}; code {code}; {os.cpu_count()} CPU(s); now "
          f"{NOW:%Y-%m-%dT%H:%MZ} for fbproxy. The load generator (aiohttp, keep-alive) "
          "runs in a process of its own; each server is measured alone.\n")
    print("| request | requests | throughput (req/s) | p50 (ms) | p99 (ms) "
          "| first request (ms) | one client, p50 (ms) | response body | answers (all requests) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for key, run in res.runs.items():
        one = res.single.get(key)
        one_text = f"{fmt_ms(percentile(one, 50))} (n={len(one)})" if one else "—"
        size = f"{run.body_bytes / 1024:,.1f} KiB" if run.body_bytes else "0"
        print(f"| {run.label} | {run.requests:,} | {fmt_rate(run.rate)} "
              f"| {fmt_ms(percentile(run.latencies, 50))} "
              f"| {fmt_ms(percentile(run.latencies, 99))} | {fmt_ms(res.first[key])} "
              f"| {one_text} | {size} | {answers_text(run.answers)} |")

    fb = res.runs["fbproxy"].rate
    radicale, xandikos = res.runs["radicale"].rate, res.runs["xandikos"].rate
    goal = fb / radicale >= 20
    print("\n| ratio | value | goal |")
    print("|---|---:|---|")
    print(f"| fbproxy / Radicale, free-busy-query req/s | {fb / radicale:,.0f}x "
          f"| at least 20x: {'met' if goal else 'NOT met'} |")
    print(f"| fbproxy / Xandikos, free-busy-query req/s | {fb / xandikos:,.0f}x | (context) |")
    single = {k: percentile(res.single[k], 50) for k in ("fbproxy", "radicale", "xandikos")}
    print(f"| fbproxy / Radicale, one client each (ratio of one-client p50) "
          f"| {single['radicale'] / single['fbproxy']:,.0f}x | (context) |")
    print(f"| fbproxy / Xandikos, one client each (ratio of one-client p50) "
          f"| {single['xandikos'] / single['fbproxy']:,.0f}x | (context) |")
    feed = res.runs["feed"].rate
    print(f"| fbproxy busy.ics / fbproxy free-busy-query, req/s | {feed / fb:,.1f}x "
          "| (context) |")

    print("\n| setup | value |")
    print("|---|---:|")
    print(f"| VEVENTs (bench_core's calendar 0) / calendar objects (UIDs) "
          f"| {st.vevents:,} / {st.items:,} |")
    print(f"| recurring series / RECURRENCE-ID overrides / EXDATEs "
          f"| {st.series:,} / {st.overrides:,} / {st.exdates:,} |")
    print(f"| all-day / TENTATIVE / TRANSPARENT / CANCELLED / floating "
          f"| {st.all_day:,} / {st.tentative:,} / {st.transparent:,} / {st.cancelled:,} / "
          f"{st.floating:,} |")
    print(f"| one ICS file (fbproxy) / the objects PUT (each with its VTIMEZONEs) "
          f"| {data.ics_bytes / 2**20:.1f} / {data.object_bytes / 2**20:.1f} MiB |")
    for measurement, value, _ in res.setup:
        print(f"| {measurement} | {value} |")

    fbs = res.answers["fbproxy"]
    periods = sum(a.count for a in fbs) / len(fbs)
    print(f"\nBusy time, compared over {len(fbs)} windows (FREEBUSY periods per answer on "
          f"average: fbproxy {periods:,.0f}, Radicale "
          f"{sum(a.count for a in res.answers['radicale']) / len(fbs):,.0f}, Xandikos "
          f"{sum(a.count for a in res.answers['xandikos']) / len(fbs):,.0f}):\n")
    for key, name in (("radicale", "Radicale"), ("xandikos", "Xandikos")):
        agreement = compare(fbs, res.answers[key])
        print(f"- {agreement_text(name, agreement)}.")
        if agreement.examples:
            print(f"  First differences: {'; '.join(agreement.examples)}.")

    print("\nNotes:\n")
    peers = [r for k, r in res.runs.items() if k in ("radicale", "xandikos")
             and r.requests < args.requests]
    budget = QUICK_PEER_BUDGET if args.quick else PEER_BUDGET
    if peers:
        print("- Fewer requests for the slow servers: "
              + ", ".join(f"{r.label.split(' free')[0]} {r.requests}" for r in peers)
              + f" instead of {args.requests} (about {budget:.0f} s of load each, at "
              f"least 2 x c). Every server gets the same windows in the same order.")
    for note in res.notes:
        print(f"- {note}")
    print("- Every free-busy answer was checked: status 200 and a VFREEBUSY in the body; "
          "the last column shows the Content-Type each server sent.")
    print("- Radicale is tests/peers.py's (HTTP Basic, htpasswd, log level info). Xandikos "
          "runs as `xandikos serve` (single user, plain HTTP, no authentication): its "
          "`--htpasswd` needs TLS, which the other two do not pay for. fbproxy's access log "
          "is off, as in bench_core.py.")
    print("- Both CalDAV calendars were made with MKCALENDAR and a UTC calendar-timezone, and "
          "fbproxy's source has `timezone = \"UTC\"`, so all three read floating times and "
          "all-day dates the same way.")


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------

def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="quick size: 500 VEVENTs, 100 requests (explicit options win)")
    parser.add_argument("--events", type=int,
                        help="VEVENTs in the calendar, overrides included (default 5000)")
    parser.add_argument("--seed", type=int, default=1, help="data and window seed (default 1)")
    parser.add_argument("--requests", type=int,
                        help="requests per load run (default 500; fewer for slow peers)")
    parser.add_argument("--concurrency", type=int, default=8,
                        help="requests in flight during a load run (default 8)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary folder and print its path")
    parser.add_argument("--profile", action="store_true",
                        help="also print a cProfile report of fbproxy answering REPORTs "
                             "to stderr")
    args = parser.parse_args(argv)
    for name, quick, full in (("events", 500, 5000), ("requests", 100, 500)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    for name in ("events", "requests", "concurrency"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.events < 100:
        parser.error("--events must be at least 100")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    code = code_version()  # before the run: files may change while it goes on
    folder = Path(tempfile.mkdtemp(prefix="fbproxy-bench-caldav-endpoint-"))
    started = time.perf_counter()
    res = Results()
    radicale: Radicale | None = None
    xandikos: Xandikos | None = None
    try:
        progress(f"generating {args.events:,} VEVENTs in {folder} ...")
        t0 = time.perf_counter()
        data = make_data(folder, args.events, args.seed)
        progress(f"generated {data.stats.vevents:,} VEVENTs in {len(data.objects):,} objects "
                 f"in {time.perf_counter() - t0:.1f} s")
        radicale = Radicale(folder / "radicale")
        xandikos = Xandikos(folder / "xandikos")
        try:
            radicale.start()
            xandikos.start()
        except RuntimeError as exc:  # did not come up: the message has its log's tail
            raise SystemExit(str(exc)) from None
        radicale.create_calendar()
        xandikos.create_calendar()
        progress(f"Radicale on {radicale.base_url}, Xandikos on {xandikos.base_url}")
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(2, mp_context=spawn) as pool:
            bench = Bench(args, folder, data, pool, res)
            asyncio.run(bench.run(radicale, xandikos))
    finally:
        for server in (radicale, xandikos):
            if server is not None:
                server.stop()
        if args.keep:
            progress(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)

    progress(f"done in {time.perf_counter() - started:.0f} s")
    if res.profile:
        print(res.profile, file=sys.stderr)
    report(args, data, res, code)
    return 0


if __name__ == "__main__":
    sys.exit(main())
