#!/usr/bin/env python3
"""fbproxy on SQLite against one, two and three instances on one PostgreSQL.

Run from the repository root with the project's venv (PostgreSQL's server
programs must be installed; tests/postgres.py finds them):

    .venv/bin/python bench/bench_instances.py --quick   # about 2 minutes
    .venv/bin/python bench/bench_instances.py           # the reference size, about 7 minutes

Each setup is a fresh database and real `fbproxy serve` processes (the console
script, this checkout's code through PYTHONPATH) on 127.0.0.1, with no proxy in
front: the bench client spreads its requests round robin over the instances and
names each guest by X-Forwarded-For (the instances trust 127.0.0.1 as their
proxy), so the per-address rate limits count guests. Measured per setup: the
first full sync, cached feeds, free/busy and slot throughput, bookings (distinct
slots, and groups racing for one slot, checked in the database afterwards) and
CPU use; then the database's size, and what the instances answer while
PostgreSQL is down. Progress goes to stderr; the result is Markdown on stdout.
See bench/README.md ("Instances").

Process layout: this process writes the data and configs, starts PostgreSQL
(as an unprivileged account when run as root) and the fbproxy processes, and
is the HTTP client (one asyncio loop). The ICS files are generated in spawned
processes with bench/workload.py's generator.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import random
import re
import shutil
import signal
import sqlite3
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
from typing import IO, Any
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402
import asyncpg  # noqa: E402
import psutil  # noqa: E402

from bench.bench_booking import keep_free  # noqa: E402
from bench.bench_core import ZONES, calendar_zone, fmt_ms, percentile  # noqa: E402
from bench.common import code_version, progress  # noqa: E402
from bench.workload import generate, write_calendar_file  # noqa: E402
from server.store.postgres import WRITE_LOCK  # noqa: E402
from tests.postgres import PostgresServer, free_port, start_postgres  # noqa: E402

FBPROXY = str(Path(sys.executable).with_name("fbproxy"))
PAGE_ZONE = "Europe/Berlin"
OPEN, CLOSE = dtime(8), dtime(18)  # the pages' hours, every weekday
SLOT_MINUTES = 30
SLOTS_PER_DAY = (CLOSE.hour - OPEN.hour) * 60 // SLOT_MINUTES
HORIZON_DAYS = 120
MAX_DAYS_AHEAD = 60
SLOTS_DAYS = 31  # one slots request: a month, as the booking form shows
FREEBUSY_DAYS = 14
SLUGS = {"round_robin": "team-any", "collective": "team-all"}
SETUPS: dict[str, tuple[str, int, str]] = {
    "sqlite-1": ("sqlite", 1, "SQLite, 1 instance"),
    "pg-1": ("postgresql", 1, "PostgreSQL, 1 instance"),
    "pg-2": ("postgresql", 2, "PostgreSQL, 2 instances"),
    "pg-3": ("postgresql", 3, "PostgreSQL, 3 instances"),
}
LOG_LINE = re.compile(r"^\S+ (WARNING|ERROR|CRITICAL) ")


# ---------------------------------------------------------------------------
# 1. Data: bench_core's calendars around this week's Monday, some days kept free
# ---------------------------------------------------------------------------

@dataclass
class SourceFile:
    name: str
    path: str
    zone: str
    vevents: int
    items: int
    bytes: int
    cleared: int  # EXDATEs added and events made TRANSPARENT for the kept-free days


def this_monday() -> datetime:
    """09:00 UTC on Monday of the current week: the data is laid out around it.

    The instances run on the system clock (a real `fbproxy serve`), so the data
    moves with the date, as in bench_caldav.py; the same seed gives the same
    calendars relative to that Monday.
    """
    today = datetime.now(UTC).date()
    return datetime.combine(today - timedelta(days=today.weekday()), dtime(9), UTC)


def kept_free_days(count: int) -> list[date]:
    """Every other working day from a week ahead: ``count`` days every host keeps free."""
    today = datetime.now(ZoneInfo(PAGE_ZONE)).date()
    day, days, take = today + timedelta(days=7), [], True
    while len(days) < count:
        if day.weekday() < 5:
            if take:
                days.append(day)
            take = not take
        day += timedelta(days=1)
    if days and (days[-1] - today).days >= MAX_DAYS_AHEAD - 1:
        raise SystemExit(f"--free-days {count}: the last one is past the pages' "
                         f"{MAX_DAYS_AHEAD} days ahead")
    return days


def day_windows(days: Iterable[date]) -> list[tuple[int, int]]:
    zone = ZoneInfo(PAGE_ZONE)
    return [(int(datetime.combine(d, OPEN, zone).timestamp()),
             int(datetime.combine(d, CLOSE, zone).timestamp())) for d in days]


def generate_source(folder: str, index: int, seed: int, events: int, anchor: datetime,
                    windows: list[tuple[int, int]], variant: bool = False) -> SourceFile:
    """Source ``index``: bench_core's calendar ``index`` (same seed key and zone).

    ``variant``: other events of the same size and mix (another seed key), written
    to ``calNN.v2.ics``: the re-sync replaces every item with one of these.
    """
    zone = calendar_zone(index)
    key = f"fbproxy-bench:{seed}:{index}" + (":v2" if variant else "")
    work = generate(key, anchor, zone, ZONES, vevents=events, export=True)
    cleared = keep_free(work, windows, ZoneInfo(zone))
    name = f"cal{index:02d}"
    path = Path(folder) / (f"{name}.v2.ics" if variant else f"{name}.ics")
    write_calendar_file(path, work, f"Bench calendar {index}")
    return SourceFile(name, str(path), zone, work.stats.vevents, work.stats.items,
                      work.stats.bytes, sum(cleared.values()))


# ---------------------------------------------------------------------------
# 2. Configs (docs/configuration.md): one per instance, the same but for address and name
# ---------------------------------------------------------------------------

@dataclass
class Layout:
    """What every instance's config holds, apart from its address and name."""

    files: list[SourceFile]
    variants: list[SourceFile]  # the same sources' files for the re-sync
    secrets: dict[str, str]  # calendar -> feed secret
    hosts: dict[str, list[str]]  # page mode -> host calendars

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.files]


def make_layout(files: list[SourceFile], variants: list[SourceFile]) -> Layout:
    names = [f.name for f in files]
    half = max(1, len(names) // 2)
    rng = random.Random("fbproxy-bench-instances:secrets")
    secrets = {name: "s" + "".join(rng.choice("abcdefghijkmnpqrstuvwxyz23456789")
                                   for _ in range(31)) for name in ["merged", *names]}
    return Layout(files, variants, secrets, {"round_robin": names[:half],
                                   "collective": names[half:] or names[:1]})


def write_config(path: Path, layout: Layout, *, port: int, database: str, instance: str,
                 lease_seconds: int, recheck: str, variant: bool = False) -> None:
    q = json.dumps  # a TOML basic string for these plain values
    lines = ["[server]", f'listen = "127.0.0.1:{port}"', f'base_url = "http://127.0.0.1:{port}"',
             f"database = {q(database)}", f"instance_name = {q(instance)}",
             f"timezone = {q(PAGE_ZONE)}", f"horizon_days = {HORIZON_DAYS}",
             # The bench client is the instances' "reverse proxy": X-Forwarded-For names
             # each guest, so the per-address rate limits (left at their defaults) count
             # guests.
             'trusted_proxies = ["127.0.0.1/32"]',
             # /metrics tells which instance ran which sync rounds.
             "metrics_public = true"]
    if database.startswith("postgresql://"):
        lines.append(f"lease_seconds = {lease_seconds}")
    for source in layout.variants if variant else layout.files:
        lines += ["", "[[sources]]", f"name = {q(source.name)}", 'kind = "ics"',
                  f"url = {q(source.path)}", f"timezone = {q(source.zone)}",
                  'poll_interval = "5m"']
    for name, secret in layout.secrets.items():
        sources = layout.names if name == "merged" else [name]
        lines += ["", "[[calendars]]", f"name = {q(name)}",
                  "sources = [" + ", ".join(q(s) for s in sources) + "]",
                  f"secret = {q(secret)}"]
    for mode, slug in SLUGS.items():
        lines += ["", "[[booking_pages]]", f"slug = {q(slug)}", f"title = {q('Team ' + mode)}",
                  "hosts = [" + ", ".join(q(h) for h in layout.hosts[mode]) + "]",
                  f"mode = {q(mode)}", f'duration = "{SLOT_MINUTES}m"',
                  f"timezone = {q(PAGE_ZONE)}", 'minimum_notice = "4h"',
                  f"max_days_ahead = {MAX_DAYS_AHEAD}", f"recheck = {q(recheck)}",
                  "", "[booking_pages.hours]"]
        lines += [f'{day} = ["{OPEN:%H:%M}-{CLOSE:%H:%M}"]'
                  for day in ("mon", "tue", "wed", "thu", "fri")]
    path.write_text("\n".join(lines) + "\n")


# ---------------------------------------------------------------------------
# 3. The instances: `fbproxy serve` processes
# ---------------------------------------------------------------------------

@dataclass
class Instance:
    number: int
    port: int
    config: Path
    log: Path
    name: str
    process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _append(path: Path) -> IO[bytes]:
    return path.open("ab")


async def spawn(instance: Instance) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    with _append(instance.log) as log:
        # Warnings and errors only: an access log line per request would be measured too.
        instance.process = await asyncio.create_subprocess_exec(
            FBPROXY, "--log-level", "warning", "serve", "--config", str(instance.config),
            cwd=instance.config.parent, env=env, stdout=log, stderr=log)


async def wait_healthy(instance: Instance, session: aiohttp.ClientSession,
                       within: float = 180) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(aiohttp.ClientError, OSError):
            async with session.get(f"{instance.url}/healthz") as response:
                if response.status == 200:
                    return
        assert instance.process is not None
        if instance.process.returncode is not None:
            break
        await asyncio.sleep(0.05)
    raise SystemExit(f"fbproxy on port {instance.port} did not start:\n"
                     + instance.log.read_text(errors="replace")[-3000:])


async def stop(instance: Instance) -> None:
    process = instance.process
    if process is None or process.returncode is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), 60)
    except TimeoutError:
        process.kill()
        await process.wait()


def log_problems(instances: Sequence[Instance]) -> tuple[int, list[str], int]:
    """Lines at WARNING or above in the instances' logs, the first few, and how many
    were sync rounds discarded because another instance took the source over."""
    count, first, discarded = 0, [], 0
    for instance in instances:
        for line in instance.log.read_text(errors="replace").splitlines():
            if LOG_LINE.match(line) or line.startswith("Traceback"):
                count += 1
                discarded += "this round is discarded" in line
                if len(first) < 5:
                    first.append(f"i{instance.number}: {line[:240]}")
    return count, first, discarded


# ---------------------------------------------------------------------------
# 4. Reading the database from outside the instances
# ---------------------------------------------------------------------------

OVERLAPS = """SELECT COUNT(*) FROM booking_blocks a JOIN booking_blocks b
              ON a.calendar = b.calendar AND a.booking_id < b.booking_id
              AND a.start_ts < b.end_ts AND b.start_ts < a.end_ts"""
GENERATIONS = ("SELECT key, value FROM meta "
               "WHERE key IN ('busy_generation', 'booking_generation')")


class SqliteProbe:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        return self._db

    async def sources(self) -> dict[str, tuple[Any, ...]]:
        """name -> (last_success, last_change, item_count); {} before the schema."""
        if not self.path.exists():
            return {}
        try:
            rows = self._conn().execute(
                "SELECT name, last_success, last_change, item_count FROM sources")
            return {r[0]: tuple(r[1:]) for r in rows.fetchall()}
        except sqlite3.Error:
            self.close()
            return {}

    async def scalar(self, sql: str) -> int:
        return int(self._conn().execute(sql).fetchone()[0])

    async def size(self) -> int:
        return sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal"))
                   if p.exists())

    async def write_ceiling(self, count: int, concurrency: int) -> tuple[float, list[float]]:
        """Minimal write transactions (BEGIN IMMEDIATE, one UPDATE, COMMIT) from here,
        with fbproxy's settings (WAL, synchronous=NORMAL): per second, and each one's time.
        ``concurrency`` is ignored: SQLite has one writer at a time anyway."""
        db = sqlite3.connect(str(self.path), isolation_level=None, timeout=30)
        try:
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute("CREATE TABLE bench_writes (n INTEGER NOT NULL)")
            db.execute("INSERT INTO bench_writes VALUES (0)")
            samples = []
            started = time.perf_counter()
            for _ in range(count):
                t0 = time.perf_counter()
                db.execute("BEGIN IMMEDIATE")
                # A real change: SQLite skips writing a row rewritten with the same content.
                db.execute("UPDATE bench_writes SET n = n + 1")
                db.execute("COMMIT")
                samples.append(time.perf_counter() - t0)
            rate = count / (time.perf_counter() - started)
            db.execute("DROP TABLE bench_writes")
            return rate, samples
        finally:
            db.close()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


class PgProbe:
    def __init__(self, url: str) -> None:
        self.url = url
        self._db: asyncpg.Connection | None = None

    async def conn(self) -> asyncpg.Connection:
        if self._db is None:
            self._db = await asyncpg.connect(self.url)
        return self._db

    async def sources(self) -> dict[str, tuple[Any, ...]]:
        try:
            rows = await (await self.conn()).fetch(
                "SELECT name, last_success, last_change, item_count FROM sources")
        except asyncpg.UndefinedTableError:
            return {}
        return {r[0]: tuple(r[1:]) for r in rows}

    async def scalar(self, sql: str) -> int:
        return int(await (await self.conn()).fetchval(sql))

    async def size(self) -> int:
        return await self.scalar("SELECT pg_database_size(current_database())")

    async def holders(self) -> dict[str, str]:
        rows = await (await self.conn()).fetch(
            "SELECT source, holder FROM source_leases WHERE source NOT LIKE '@%' "
            "AND expires > extract(epoch FROM now())")
        return {r["source"]: r["holder"] for r in rows}

    async def generation_reads(self, count: int) -> list[float]:
        """The read every request on PostgreSQL makes first (store.busy_generation)."""
        db = await self.conn()
        samples = []
        for _ in range(count):
            t0 = time.perf_counter()
            await db.fetch(GENERATIONS)
            samples.append(time.perf_counter() - t0)
        return samples

    async def write_ceiling(self, count: int, concurrency: int) -> tuple[float, list[float]]:
        """Minimal write transactions through fbproxy's one advisory lock (BEGIN, the
        lock, one UPDATE, COMMIT), ``concurrency`` connections: per second, and each
        one's time. What every write of every instance queues for."""
        db = await self.conn()
        await db.execute("CREATE TABLE bench_writes (n INTEGER NOT NULL)")
        await db.execute("INSERT INTO bench_writes VALUES (0)")
        pool = await asyncpg.create_pool(self.url, min_size=concurrency, max_size=concurrency)
        assert pool is not None
        samples: list[float] = []
        left = iter(range(count))

        async def writer() -> None:
            async with pool.acquire() as conn:
                for _ in left:
                    t0 = time.perf_counter()
                    async with conn.transaction():
                        await conn.execute("SELECT pg_advisory_xact_lock($1)", WRITE_LOCK)
                        await conn.execute("UPDATE bench_writes SET n = n + 1")
                    samples.append(time.perf_counter() - t0)
        try:
            started = time.perf_counter()
            await asyncio.gather(*(writer() for _ in range(concurrency)))
            return count / (time.perf_counter() - started), samples
        finally:
            await pool.close()
            await db.execute("DROP TABLE bench_writes")

    async def table_sizes(self) -> list[tuple[str, int, int, int]]:
        """(table, rows, bytes with indexes and TOAST, bytes of the indexes)."""
        db = await self.conn()
        tables = await db.fetch(
            """SELECT c.relname, pg_total_relation_size(c.oid) AS total,
                      pg_indexes_size(c.oid) AS indexes
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE c.relkind = 'r' AND n.nspname = 'public' ORDER BY total DESC""")
        out = []
        for row in tables:
            rows = await db.fetchval(f'SELECT COUNT(*) FROM "{row["relname"]}"')
            out.append((row["relname"], int(rows), int(row["total"]), int(row["indexes"])))
        return out

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None


Probe = SqliteProbe | PgProbe


# ---------------------------------------------------------------------------
# 5. CPU use: fbproxy processes, PostgreSQL's processes, this client
# ---------------------------------------------------------------------------

def _cpu(process: psutil.Process) -> float:
    try:
        times = process.cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


class CpuMeter:
    def __init__(self, fbproxy: Sequence[int], postgres: PostgresServer | None) -> None:
        self.fbproxy = [psutil.Process(pid) for pid in fbproxy]
        self.postmaster: psutil.Process | None = None
        if postgres is not None:
            pid = int((postgres.data / "postmaster.pid").read_text().split()[0])
            self.postmaster = psutil.Process(pid)
        self.client = psutil.Process()

    def sample(self) -> tuple[float, float, float, float]:
        """Seconds of CPU used so far by: the fbproxy processes, PostgreSQL, this
        client, and the whole machine (user, nice, system, irq, softirq).

        PostgreSQL's is its postmaster and every process it runs now (the
        backends of the instances' pooled connections live as long as the pool).
        """
        pg = 0.0
        if self.postmaster is not None:
            with contextlib.suppress(psutil.Error):
                pg = _cpu(self.postmaster) + sum(
                    _cpu(c) for c in self.postmaster.children(recursive=True))
        machine = psutil.cpu_times()
        busy = machine.user + machine.nice + machine.system + machine.irq + machine.softirq
        return sum(_cpu(p) for p in self.fbproxy), pg, _cpu(self.client), busy


def per_unit(before: tuple[float, ...], after: tuple[float, ...], units: int, scale: float,
             postgres: bool) -> str:
    """CPU seconds × ``scale`` per unit of work: fbproxy (all instances) / PostgreSQL.

    Unlike the cores, this hardly depends on what else the machine runs."""
    fb, pg = ((b - a) * scale / units for a, b in zip(before[:2], after[:2], strict=True))
    return f"{fb:.2f} / {pg:.2f}" if postgres else f"{fb:.2f} / -"


def cores(before: tuple[float, ...], after: tuple[float, ...], seconds: float,
          postgres: bool) -> str:
    """CPU use over a phase, in cores: fbproxy / PostgreSQL / client / everything else
    on the machine (other processes: the machine may be shared)."""
    fb, pg, client, busy = ((b - a) / seconds for a, b in zip(before, after, strict=True))
    others = max(0.0, busy - fb - pg - client)
    return f"{fb:.2f} / {pg:.2f} / {client:.2f} / {others:.2f}" if postgres \
        else f"{fb:.2f} / - / {client:.2f} / {others:.2f}"


# ---------------------------------------------------------------------------
# 6. The client
# ---------------------------------------------------------------------------

@dataclass
class Req:
    method: str
    url: str
    headers: dict[str, str]
    body: dict[str, Any] | None = None
    group: int = -1  # a race group


@dataclass
class PhaseResult:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    groups: dict[int, Counter[int]] = field(default_factory=dict)
    elapsed: float = 0.0
    cpu: str = ""
    cpu_per: str = ""  # CPU ms per request: fbproxy / PostgreSQL

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0

    def p50_p99(self) -> str:
        return (f"{fmt_ms(percentile(self.latencies, 50))} / "
                f"{fmt_ms(percentile(self.latencies, 99))}")

    def split(self) -> str:
        return ", ".join(f"{n:,} x {status}" for status, n in sorted(self.statuses.items()))


class Client:
    """Numbers guests (X-Forwarded-For) and runs phases of requests."""

    def __init__(self) -> None:
        self.guests = 0

    def address(self) -> dict[str, str]:
        self.guests += 1
        n = self.guests
        return {"X-Forwarded-For": f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"}

    async def phase(self, requests: Sequence[Req], concurrency: int,
                    instances: Sequence[Instance], meter: CpuMeter, postgres: bool,
                    expected: frozenset[int]) -> PhaseResult:
        """Every request once, ``concurrency`` in flight (all at once for a race)."""
        result = PhaseResult()
        connector = aiohttp.TCPConnector(limit=concurrency)
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                         trust_env=False) as session:
            async def warm(url: str) -> None:  # connections open before the clock starts
                async with session.get(url) as response:
                    await response.read()
            await asyncio.gather(*(warm(f"{instances[i % len(instances)].url}/healthz")
                                   for i in range(min(concurrency, 64))))
            queue = iter(requests)

            async def worker() -> None:
                for req in queue:
                    t0 = time.perf_counter()
                    async with session.request(req.method, req.url, headers=req.headers,
                                               json=req.body) as response:
                        body = await response.read()
                    result.latencies.append(time.perf_counter() - t0)
                    result.statuses[response.status] += 1
                    if req.group >= 0:
                        result.groups.setdefault(req.group, Counter())[response.status] += 1
                    if response.status not in expected:
                        result.errors[f"{response.status} {body[:160].decode(errors='replace')}"
                                      ] += 1

            before = meter.sample()
            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            result.elapsed = time.perf_counter() - started
            after = meter.sample()
            result.cpu = cores(before, after, result.elapsed, postgres)
            result.cpu_per = per_unit(before, after, len(requests), 1000, postgres)
        if result.errors:
            progress(f"  unexpected answers: {dict(result.errors.most_common(3))}")
        return result


def booking_body(start: str, n: int) -> dict[str, Any]:
    return {"start": start, "duration": SLOT_MINUTES, "name": f"Guest {n}",
            "email": f"guest{n}@bench.example", "answers": {}}


# ---------------------------------------------------------------------------
# 7. One setup
# ---------------------------------------------------------------------------

@dataclass
class Plan:
    """The requests every setup gets, the same for all (seeded)."""

    freebusy: list[str]  # query strings
    slots: list[tuple[str, str]]  # (slug, query string)


def make_plan(args: argparse.Namespace) -> Plan:
    rng = random.Random(f"fbproxy-bench-instances:{args.seed}")
    today = datetime.now(ZoneInfo(PAGE_ZONE)).date()
    freebusy = []
    for _ in range(args.requests):
        first = today + timedelta(days=rng.randrange(0, HORIZON_DAYS - FREEBUSY_DAYS - 1))
        freebusy.append(f"start={first}&end={first + timedelta(days=FREEBUSY_DAYS)}")
    slots = []
    for n in range(args.slot_requests):
        first = today + timedelta(days=rng.randrange(0, MAX_DAYS_AHEAD - SLOTS_DAYS))
        slug = list(SLUGS.values())[n % 2]
        slots.append((slug, f"start={first}&end={first + timedelta(days=SLOTS_DAYS)}"))
    return Plan(freebusy, slots)


@dataclass
class SetupResult:
    key: str
    rows: dict[str, str] = field(default_factory=dict)
    sizes: list[tuple[str, int, int, int]] = field(default_factory=list)  # after loading
    sizes_end: list[tuple[str, int, int, int]] = field(default_factory=list)
    loaded_size: int = 0
    db_size: int = 0
    outage: list[tuple[str, str]] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


async def run_setup(key: str, args: argparse.Namespace, folder: Path, layout: Layout,
                    plan: Plan, free_days: Sequence[date], postgres: PostgresServer | None,
                    client: Client) -> SetupResult:
    kind, count, label = SETUPS[key]
    res = SetupResult(key)
    row = res.rows
    here = folder / key
    here.mkdir()
    probe: Probe
    if kind == "sqlite":
        database = str(here / "fbproxy.sqlite3")
        probe = SqliteProbe(Path(database))
    else:
        assert postgres is not None
        await asyncio.to_thread(postgres.psql, f"CREATE DATABASE {db_name(key)} OWNER fbproxy")
        database = postgres.url(db_name(key))
        probe = PgProbe(database)
    instances = []
    for number in range(1, count + 1):
        port = free_port()
        instances.append(Instance(number, port, here / f"config-{number}.toml",
                                  here / f"fbproxy-{number}.log", f"i{number}"))

    def configs(variant: bool) -> None:
        for i in instances:
            write_config(i.config, layout, port=i.port, database=database, instance=i.name,
                         lease_seconds=args.lease_seconds, recheck=args.recheck,
                         variant=variant)

    configs(variant=False)
    pg = kind == "postgresql"
    before_outage = 0
    try:
        progress(f"{label}: starting {count} fbproxy serve ...")
        async with aiohttp.ClientSession(trust_env=False) as session:
            spawned = time.time()
            await asyncio.gather(*(spawn(i) for i in instances))
            meter = CpuMeter([i.process.pid for i in instances if i.process],
                             postgres if pg else None)
            cpu_before = meter.sample()
            await asyncio.gather(*(wait_healthy(i, session) for i in instances))
            healthy = time.time()
            synced_at, sources = await wait_synced(probe, layout.names, args.sync_timeout)
            cpu_after = meter.sample()
            cpu = cores(cpu_before, cpu_after, synced_at - spawned, pg)
            rounds = await sync_rounds(session, instances, len(layout.names))
        elapsed = synced_at - spawned
        progress(f"{label}: every source synced {elapsed:.1f} s after the start")
        vevents = sum(f.vevents for f in layout.files)
        row["first full sync: start → every source synced (polled)"] = f"{elapsed:.1f} s"
        row["of which start-up: start → every instance answers /healthz"] = \
            f"{healthy - spawned:.1f} s"
        row["first full sync: VEVENTs in the files / that time"] = \
            f"{vevents / elapsed:,.0f} VEVENT/s"
        row["first full sync: rounds that stored data, per instance (/metrics)"] = \
            " + ".join(str(r) for r in rounds)
        row["first full sync: CPU fbproxy / PostgreSQL / client / others (cores)"] = cpu
        row["first full sync: CPU seconds per 1,000 VEVENTs, fbproxy / PostgreSQL"] = \
            per_unit(cpu_before, cpu_after, vevents, 1000, pg)
        row["items / busy instance rows stored"] = (
            f"{await probe.scalar('SELECT COUNT(*) FROM items'):,} / "
            f"{await probe.scalar('SELECT COUNT(*) FROM instances'):,}")
        res.loaded_size = await probe.size()
        row["database size after the first full sync"] = f"{res.loaded_size / 2**20:,.1f} MiB"
        if isinstance(probe, PgProbe):
            res.sizes = await probe.table_sizes()

        if isinstance(probe, PgProbe):
            settled = await settle_leases(probe, instances, layout.names,
                                          args.lease_seconds * 2)
            row["sources per instance once the leases settled (lease holders)"] = settled
        else:
            row["sources per instance once the leases settled (lease holders)"] = \
                f"{len(sources)} (no leases)"
        await resync(args, res, instances, layout, probe, meter, pg, configs)

        await reads(args, res, instances, layout, plan, meter, pg, client, probe)
        await bookings(args, res, instances, layout, free_days, meter, pg, client, probe)
        for c in (1, 4):
            rate, samples = await probe.write_ceiling(args.write_transactions, c)
            row[f"the write lock alone: minimal write transactions from the bench, "
                f"{c} connection(s): per second / p50"] = (
                f"{rate:,.0f} / {fmt_ms(percentile(samples, 50))} ms"
                if pg or c == 1 else "- (one writer)")
        if isinstance(probe, PgProbe):
            row["sources per instance at the end (lease holders)"] = \
                spread(await probe.holders(), instances)
            res.sizes_end = await probe.table_sizes()
        res.db_size = await probe.size()
        before_outage = log_problems(instances)[0]
        if key == args.outage_setup:
            assert postgres is not None
            try:
                res.outage = await outage(args, instances, layout, postgres, client)
            except Exception as exc:  # the figures above still count
                res.outage = [("the outage check failed", repr(exc)[:300])]
                res.failed.append(f"outage check: {exc!r}")
    finally:
        await asyncio.gather(*(stop(i) for i in instances))
        if isinstance(probe, SqliteProbe):
            probe.close()
            res.db_size = await probe.size()
        else:
            await probe.close()
    problems, first, discarded = log_problems(instances)
    row["sync rounds discarded (the lease moved on during the round; from the logs)"] = \
        f"{discarded}"
    row["instance log lines at WARNING or above: before the outage check / in all"] = \
        f"{before_outage} / {problems}"
    for line in first:
        progress(f"  log: {line}")
    row["database size after the run (the re-sync's dead rows not vacuumed yet)"] = \
        f"{res.db_size / 2**20:,.1f} MiB"
    if pg and postgres is not None and not args.keep:
        await asyncio.to_thread(postgres.drop_database, db_name(key))
    return res


def db_name(key: str) -> str:
    return "bench_" + key.replace("-", "_")


def spread(holders: Mapping[str, str], instances: Sequence[Instance]) -> str:
    counts = Counter(holder.split(":", 1)[0] for holder in holders.values())
    return " + ".join(str(counts.get(i.name, 0)) for i in instances)


async def wait_synced(probe: Probe, names: Sequence[str], within: float, since: int = 0,
                      ) -> tuple[float, dict[str, tuple[Any, ...]]]:
    """When every source first showed a last_success (``since``: a last_change at or
    after that second), polled every 0.1 s; and the rows then."""
    column = 1 if since else 0
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        rows = await probe.sources()
        if rows and all((rows.get(n, (None, None))[column] or -1) >= since for n in names):
            return time.time(), rows
        await asyncio.sleep(0.1)
    raise SystemExit(f"not every source synced within {within:.0f} s")


METRIC = re.compile(r'^fbproxy_sync_rounds_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$')


async def sync_rounds(session: aiohttp.ClientSession, instances: Sequence[Instance],
                      at_least: int = 0) -> list[int]:
    """Per instance: its sync rounds so far that stored changes (result "ok").

    Waits (up to 10 s) until they add up to ``at_least``: a round's counter goes
    up just after its commit, which the caller may have seen first.
    """
    deadline = time.monotonic() + 10
    while True:
        out = []
        for instance in instances:
            async with session.get(f"{instance.url}/metrics") as response:
                text = await response.text()
            out.append(int(sum(float(m["value"])
                               for m in map(METRIC.match, text.splitlines())
                               if m and 'result="ok"' in m["labels"])))
        if sum(out) >= at_least or time.monotonic() > deadline:
            return out
        await asyncio.sleep(0.1)


async def settle_leases(probe: PgProbe, instances: Sequence[Instance], names: Sequence[str],
                        within: float) -> str:
    """Wait until the sources are spread over the instances (each its share), then a
    second more for the rounds the new holders start (nothing changed: a stat each)."""
    share = -(-len(names) // len(instances))
    deadline = time.monotonic() + within
    holders: dict[str, str] = {}
    while time.monotonic() < deadline:
        holders = await probe.holders()
        counts = Counter(h.split(":", 1)[0] for h in holders.values())
        if len(holders) == len(names) and all(counts[i.name] <= share for i in instances):
            await asyncio.sleep(1)
            return spread(await probe.holders(), instances)
        await asyncio.sleep(0.2)
    return spread(holders, instances) + " (not settled)"


async def resync(args: argparse.Namespace, res: SetupResult, instances: Sequence[Instance],
                 layout: Layout, probe: Probe, meter: CpuMeter, pg: bool,
                 configs: Any) -> None:
    """Every source's file swapped for its variant (every item replaced) by a config
    reload on every instance, with the leases settled: the sync spread over instances."""
    label = SETUPS[res.key][2]
    configs(variant=True)
    async with aiohttp.ClientSession(trust_env=False) as session:
        before = await sync_rounds(session, instances)
        # Start on a whole second: last_change is kept in whole seconds.
        await asyncio.sleep(1 - time.time() % 1)
        since = int(time.time())
        t0 = time.time()
        cpu_before = meter.sample()
        for instance in instances:
            assert instance.process is not None
            instance.process.send_signal(signal.SIGHUP)
        progress(f"{label}: re-sync: every source swapped for its variant (config reload) ...")
        done, _ = await wait_synced(probe, layout.names, args.sync_timeout, since=since)
        cpu_after = meter.sample()
        cpu = cores(cpu_before, cpu_after, done - t0, pg)
        after = await sync_rounds(session, instances, sum(before) + len(layout.names))
    elapsed = done - t0
    progress(f"{label}: re-synced in {elapsed:.1f} s")
    vevents = sum(f.vevents for f in layout.variants)
    row = res.rows
    row["full re-sync, leases settled (every item replaced): reload → every source synced"] = \
        f"{elapsed:.1f} s"
    row["full re-sync: VEVENTs / that time"] = f"{vevents / elapsed:,.0f} VEVENT/s"
    row["full re-sync: rounds that stored data, per instance (/metrics)"] = \
        " + ".join(str(a - b) for a, b in zip(after, before, strict=True))
    row["full re-sync: CPU fbproxy / PostgreSQL / client / others (cores)"] = cpu
    row["full re-sync: CPU seconds per 1,000 VEVENTs, fbproxy / PostgreSQL"] = \
        per_unit(cpu_before, cpu_after, vevents, 1000, pg)


async def reads(args: argparse.Namespace, res: SetupResult, instances: Sequence[Instance],
                layout: Layout, plan: Plan, meter: CpuMeter, pg: bool, client: Client,
                probe: Probe) -> None:
    row = res.rows
    label = SETUPS[res.key][2]
    feed = f"/feeds/{layout.secrets['merged']}/busy.ics"
    bearer = {"Authorization": f"Bearer {layout.secrets['merged']}"}
    etags = {}
    progress(f"{label}: warming up (each instance renders the feed, computes slots) ...")
    async with aiohttp.ClientSession(trust_env=False) as session:
        for instance in instances:
            async with session.get(instance.url + feed) as response:
                await response.read()
                if response.status != 200:
                    raise SystemExit(f"{instance.url}: busy.ics answered {response.status}")
                etags[instance.number] = response.headers["ETag"]
            for n in range(min(4, len(plan.freebusy), len(plan.slots))):
                async with session.get(f"{instance.url}/api/v1/freebusy?{plan.freebusy[n]}",
                                       headers=bearer) as response:
                    await response.read()
                slug, query = plan.slots[n]
                async with session.get(f"{instance.url}/api/v1/pages/{slug}/slots?{query}",
                                       headers=client.address()) as response:
                    await response.read()

    def at(n: int) -> Instance:
        return instances[n % len(instances)]

    def conditional(n: int) -> Req:
        return Req("GET", at(n).url + feed, {"If-None-Match": etags[at(n).number]})

    progress(f"{label}: cached feed, one request at a time ...")
    one = await client.phase([conditional(n) for n in range(args.feed_requests)], 1,
                             instances, meter, pg, frozenset({304}))
    row["cached feed (busy.ics, If-None-Match → 304), one client: p50 / p99"] = \
        f"{one.p50_p99()} ms"
    if isinstance(probe, PgProbe):
        samples = await probe.generation_reads(args.feed_requests)
        row["the change counters' read alone (asyncpg from the bench), p50"] = \
            f"{fmt_ms(percentile(samples, 50))} ms"
    else:
        row["the change counters' read alone (asyncpg from the bench), p50"] = \
            "- (read at most once a second)"
    c = args.concurrency
    phases = {
        "cached feed (304)": (
            [conditional(n) for n in range(args.requests)], frozenset({304})),
        "GET /api/v1/freebusy (merged, 14 days)": (
            [Req("GET", f"{at(n).url}/api/v1/freebusy?{q}", bearer)
             for n, q in enumerate(plan.freebusy)], frozenset({200})),
        "GET slots (31 days, both pages)": (
            [Req("GET", f"{at(n).url}/api/v1/pages/{slug}/slots?{q}", client.address())
             for n, (slug, q) in enumerate(plan.slots)], frozenset({200})),
    }
    for name, (requests, expected) in phases.items():
        progress(f"{label}: {name}, {len(requests)} requests, c={c} ...")
        result = await client.phase(requests, c, instances, meter, pg, expected)
        row[f"{name}, c={c}: requests/s"] = f"{result.rate:,.0f}"
        row[f"{name}, c={c}: p50 / p99"] = f"{result.p50_p99()} ms"
        if set(result.statuses) - expected:
            row[f"{name}, c={c}: answers"] = result.split()
            res.failed.append(f"{name}: {result.split()}")
        row[f"{name}, c={c}: CPU fbproxy / PostgreSQL / client / others (cores)"] = result.cpu
        row[f"{name}, c={c}: CPU ms per request, fbproxy / PostgreSQL"] = result.cpu_per


async def bookings(args: argparse.Namespace, res: SetupResult, instances: Sequence[Instance],
                   layout: Layout, free_days: Sequence[date], meter: CpuMeter, pg: bool,
                   client: Client, probe: Probe) -> None:
    row = res.rows
    label = SETUPS[res.key][2]
    zone = ZoneInfo(PAGE_ZONE)
    today = datetime.now(zone).date()
    offered: dict[str, list[str]] = {}
    async with aiohttp.ClientSession(trust_env=False) as session:
        for mode, slug in SLUGS.items():
            url = (f"{instances[0].url}/api/v1/pages/{slug}/slots?start={today}"
                   f"&end={today + timedelta(days=MAX_DAYS_AHEAD)}")
            async with session.get(url, headers=client.address()) as response:
                if response.status != 200:
                    raise SystemExit(f"{url}: {response.status} {await response.text()}")
                offered[mode] = [s["start"] for s in (await response.json())["slots"]]

    def day(start: str) -> date:
        return datetime.fromisoformat(start.replace("Z", "+00:00")).astimezone(zone).date()

    free = set(free_days)
    on_free = {mode: [s for s in starts if day(s) in free] for mode, starts in offered.items()}
    for mode, starts in on_free.items():
        if len(starts) != SLOTS_PER_DAY * len(free_days):
            raise SystemExit(f"{mode}: {len(starts)} slots offered on the {len(free_days)} "
                             f"kept-free days, expected {SLOTS_PER_DAY} a day: the data and "
                             "fbproxy's expansion disagree")
    # The race: groups of guests, each group on one slot of a kept-free day (every
    # host free there), pages alternating; all requests at once.
    groups: list[tuple[str, str, int]] = []  # (mode, start, 201s expected)
    picks = {mode: iter(starts[::max(1, len(starts) // args.race_groups)])
             for mode, starts in on_free.items()}
    for g in range(args.race_groups):
        mode = "collective" if g % 2 == 0 else "round_robin"
        groups.append((mode, next(picks[mode]),
                       1 if mode == "collective" else len(layout.hosts[mode])))
    raced = {(mode, start) for mode, start, _ in groups}
    race: list[Req] = []
    for g, (mode, start, _) in enumerate(groups):
        for k in range(args.race_size):
            n = client.guests
            instance = instances[(g + k) % len(instances)]
            race.append(Req("POST", f"{instance.url}/api/v1/pages/{SLUGS[mode]}/bookings",
                            client.address(), booking_body(start, n), group=g))
    progress(f"{label}: {args.race_groups} groups x {args.race_size} guests race, "
             "each group for one slot ...")
    raced_result = await client.phase(race, len(race), instances, meter, pg,
                                      frozenset({201, 409}))
    wins = {g: raced_result.groups.get(g, Counter()).get(201, 0) for g in range(len(groups))}
    wrong = [g for g, (_, _, expected) in enumerate(groups) if wins[g] != expected]
    expected_wins = sum(e for _, _, e in groups)
    row[f"race: {args.race_groups} groups x {args.race_size} guests at once, one slot a "
        "group: answers"] = raced_result.split() + f" (201 expected: {expected_wins})"
    if wrong:
        res.failed.append(f"race groups with a wrong number of 201s: {wrong}")
    row["race: answers per second (201 and 409) / bookings committed per second"] = (
        f"{raced_result.rate:,.1f} / "
        f"{raced_result.statuses.get(201, 0) / raced_result.elapsed:,.1f}")
    row["race: latency p50 / p99 (all answers)"] = f"{raced_result.p50_p99()} ms"
    row["race: CPU fbproxy / PostgreSQL / client / others (cores)"] = raced_result.cpu
    row["race: CPU ms per answer, fbproxy / PostgreSQL"] = raced_result.cpu_per

    # Distinct free slots: both pages interleaved, none of the raced ones.
    lists = [[s for s in offered[mode] if (mode, s) not in raced] for mode in SLUGS]
    distinct: list[Req] = []
    for n in range(args.bookings):
        mode = list(SLUGS)[n % 2]
        pool = lists[n % 2]
        if not pool:
            continue
        start = pool.pop(0)
        instance = instances[n % len(instances)]
        guest = client.guests
        distinct.append(Req("POST", f"{instance.url}/api/v1/pages/{SLUGS[mode]}/bookings",
                            client.address(), booking_body(start, guest)))
    progress(f"{label}: {len(distinct)} bookings of distinct free slots, "
             f"c={args.booking_concurrency} ...")
    through = await client.phase(distinct, args.booking_concurrency, instances, meter, pg,
                                 frozenset({201}))
    c = args.booking_concurrency
    row[f"distinct free slots, c={c}: answers"] = through.split()
    row[f"distinct free slots, c={c}: bookings committed per second"] = \
        f"{through.statuses.get(201, 0) / through.elapsed:,.1f}"
    row[f"distinct free slots, c={c}: latency p50 / p99"] = f"{through.p50_p99()} ms"
    row[f"distinct free slots, c={c}: CPU fbproxy / PostgreSQL / client / others (cores)"] = \
        through.cpu
    row[f"distinct free slots, c={c}: CPU ms per booking, fbproxy / PostgreSQL"] = \
        through.cpu_per
    if set(through.statuses) != {201}:
        res.failed.append(f"distinct slots: {through.split()}")

    overlaps = await probe.scalar(OVERLAPS)
    confirmed = await probe.scalar("SELECT COUNT(*) FROM bookings WHERE status = 'confirmed'")
    made = raced_result.statuses.get(201, 0) + through.statuses.get(201, 0)
    row["pairs of overlapping booking blocks on one calendar, in the DB (must be 0)"] = \
        f"{overlaps}"
    row["confirmed bookings in the DB / 201 answers"] = f"{confirmed:,} / {made:,}"
    if overlaps or confirmed != made:
        res.failed.append(f"double booking: {overlaps} overlaps, {confirmed} confirmed "
                          f"for {made} 201s")


# ---------------------------------------------------------------------------
# 8. PostgreSQL goes away: what the instances answer, and when they are back
# ---------------------------------------------------------------------------

async def outage(args: argparse.Namespace, instances: Sequence[Instance], layout: Layout,
                 postgres: PostgresServer, client: Client) -> list[tuple[str, str]]:
    """Stop PostgreSQL under running instances, ask every route, start it again."""
    feed = f"/feeds/{layout.secrets['merged']}/busy.ics"
    bearer = {"Authorization": f"Bearer {layout.secrets['merged']}"}
    today = datetime.now(ZoneInfo(PAGE_ZONE)).date()
    slots = (f"/api/v1/pages/{SLUGS['round_robin']}/slots?start={today}"
             f"&end={today + timedelta(days=MAX_DAYS_AHEAD)}")
    label = SETUPS[args.outage_setup][2]
    out: list[tuple[str, str]] = []
    async with aiohttp.ClientSession(trust_env=False,
                                     timeout=aiohttp.ClientTimeout(total=90)) as session:
        async def ask(instance: Instance, method: str, path: str, headers: dict[str, str],
                      body: dict[str, Any] | None = None) -> tuple[int, float, str]:
            t0 = time.perf_counter()
            try:
                async with session.request(method, instance.url + path, headers=headers,
                                           json=body) as response:
                    text = await response.text()
                    retry = response.headers.get("Retry-After")
                    return (response.status, time.perf_counter() - t0,
                            (f"Retry-After: {retry}; " if retry else "") + text[:160])
            except (aiohttp.ClientError, TimeoutError) as exc:
                return -1, time.perf_counter() - t0, repr(exc)[:120]

        etag = ""
        async with session.get(instances[0].url + feed) as response:
            etag = response.headers.get("ETag", "")
        # A slot to book during and after the outage.
        async with session.get(instances[0].url + slots, headers=client.address()) as response:
            free = [s["start"] for s in (await response.json())["slots"]]
        routes: list[tuple[str, str, str, dict[str, str], Any]] = [
            ("GET /healthz", "GET", "/healthz", {}, None),
            ("GET busy.ics, If-None-Match (cached before)", "GET", feed,
             {"If-None-Match": etag}, None),
            ("GET busy.ics", "GET", feed, {}, None),
            ("GET /api/v1/freebusy", "GET", "/api/v1/freebusy", bearer, None),
            ("GET slots", "GET", slots, {}, None),
            ("POST a booking", "POST", f"/api/v1/pages/{SLUGS['round_robin']}/bookings", {},
             "book"),
        ]
        progress(f"{label}: stopping PostgreSQL (pg_ctl stop -m fast) under the instances ...")
        await asyncio.to_thread(postgres.pause)
        stopped = time.monotonic()
        for title, method, path, headers, body in routes:
            answers = []
            for instance in instances:
                payload = booking_body(free[0], client.guests) if body else None
                status, spent, text = await ask(instance, method, path,
                                                {**headers, **client.address()}, payload)
                answers.append((status, spent, text))
            statuses = Counter(a[0] for a in answers)
            slowest = max(a[1] for a in answers)
            sample = answers[0][2].strip()
            out.append((f"while down: {title}",
                        ", ".join(f"{n} x {s}" for s, n in sorted(statuses.items()))
                        + f" in ≤ {fmt_ms(slowest)} ms — {sample[:150]}"))
        down_for = args.outage_seconds - (time.monotonic() - stopped)
        if down_for > 0:
            await asyncio.sleep(down_for)
        progress(f"{label}: PostgreSQL down for {time.monotonic() - stopped:.1f} s; "
                 "starting it again ...")
        await asyncio.to_thread(postgres.resume)
        resumed = time.monotonic()
        back: dict[str, float] = {}
        deadline = resumed + 120
        while len(back) < 2 * len(instances) and time.monotonic() < deadline:
            for instance in instances:
                for title, method, path, headers in (
                        ("GET busy.ics", "GET", feed, {}),
                        ("GET /api/v1/freebusy", "GET", "/api/v1/freebusy", bearer)):
                    key = f"{instance.number}:{title}"
                    if key not in back:
                        status, _, _ = await ask(instance, method, path, headers)
                        if status == 200:
                            back[key] = time.monotonic() - resumed
            await asyncio.sleep(0.1)
        out.append(("after PostgreSQL is back: first 200 of busy.ics and /api/v1/freebusy, "
                    "slowest instance",
                    f"{max(back.values()):.1f} s after it accepted connections again"
                    if len(back) == 2 * len(instances) else "not within 120 s"))
        statuses = Counter()
        for n, instance in enumerate(instances):
            status, _, text = await ask(instance, "POST",
                                        f"/api/v1/pages/{SLUGS['round_robin']}/bookings",
                                        client.address(),
                                        booking_body(free[1 + n], client.guests))
            statuses[status] += 1
        out.append(("after PostgreSQL is back: a booking through each instance",
                    ", ".join(f"{n} x {s}" for s, n in sorted(statuses.items()))))
    return out


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------

def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="quick size: 300 VEVENTs a source, fewer requests and bookings "
                             "(options given explicitly win)")
    parser.add_argument("--sources", type=int, default=6, help="ICS sources (default 6)")
    parser.add_argument("--events", type=int, help="VEVENTs per source (default 3000)")
    parser.add_argument("--seed", type=int, default=1, help="data seed (default 1)")
    parser.add_argument("--setups", default=",".join(SETUPS),
                        help=f"comma-separated, of {', '.join(SETUPS)} (default all)")
    parser.add_argument("--requests", type=int,
                        help="requests per read phase (default 2000)")
    parser.add_argument("--slot-requests", type=int,
                        help="requests in the slots phase, each a month of slots (default 600)")
    parser.add_argument("--feed-requests", type=int,
                        help="sequential cached-feed requests (default 500)")
    parser.add_argument("--concurrency", type=int, default=16,
                        help="requests in flight in the read phases (default 16)")
    parser.add_argument("--bookings", type=int,
                        help="bookings of distinct free slots (default 300)")
    parser.add_argument("--booking-concurrency", type=int, default=16,
                        help="bookings in flight in that phase (default 16)")
    parser.add_argument("--write-transactions", type=int, default=500,
                        help="minimal write transactions timed from the bench (default 500)")
    parser.add_argument("--race-groups", type=int,
                        help="groups racing, each for one slot (default 10)")
    parser.add_argument("--race-size", type=int,
                        help="guests in a racing group (default 30)")
    parser.add_argument("--free-days", type=int,
                        help="working days kept free for every host (default 14)")
    parser.add_argument("--lease-seconds", type=int, default=30,
                        help="server.lease_seconds on PostgreSQL (default 30, fbproxy's)")
    parser.add_argument("--recheck", default="best_effort",
                        choices=["best_effort", "required", "off"],
                        help="the pages' recheck (default best_effort, fbproxy's)")
    parser.add_argument("--outage-seconds", type=float, default=10,
                        help="how long PostgreSQL stays down in the outage check (default 10)")
    parser.add_argument("--no-outage", action="store_true",
                        help="skip the outage check (PostgreSQL stopped under the instances)")
    parser.add_argument("--pg-no-fsync", action="store_true",
                        help="run PostgreSQL with the tests' fsync=off, synchronous_commit=off")
    parser.add_argument("--sync-timeout", type=float, default=600,
                        help="seconds the first full sync may take (default 600)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    quick = {"events": 300, "requests": 400, "slot_requests": 200, "feed_requests": 200,
             "bookings": 60, "race_groups": 4, "race_size": 15, "free_days": 6}
    full = {"events": 3000, "requests": 2000, "slot_requests": 600, "feed_requests": 500,
            "bookings": 300, "race_groups": 10, "race_size": 30, "free_days": 14}
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.setup_keys = [s.strip() for s in args.setups.split(",") if s.strip()]
    unknown = [s for s in args.setup_keys if s not in SETUPS]
    if unknown or not args.setup_keys:
        parser.error(f"--setups: unknown {unknown}; choose from {', '.join(SETUPS)}")
    for name in ("sources", "events", "requests", "slot_requests", "feed_requests",
                 "concurrency", "bookings", "booking_concurrency", "race_groups", "race_size",
                 "free_days"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if not 2 <= args.sources <= 99:
        parser.error("--sources must be 2 to 99")
    if args.race_groups > args.free_days * SLOTS_PER_DAY // 2:
        parser.error("--race-groups: more groups than slots on the kept-free days")
    pg_keys = [k for k in args.setup_keys if SETUPS[k][0] == "postgresql"]
    args.outage_setup = None if args.no_outage or not pg_keys else pg_keys[-1]
    return args


async def run(args: argparse.Namespace, folder: Path, layout: Layout,
              free_days: Sequence[date]) -> tuple[list[SetupResult], str]:
    postgres = None
    version = "-"
    if any(SETUPS[k][0] == "postgresql" for k in args.setup_keys):
        progress("starting PostgreSQL ...")
        postgres = await asyncio.to_thread(start_postgres, durable=not args.pg_no_fsync)
        version = await asyncio.to_thread(postgres.psql, "SHOW server_version")
        settings = await asyncio.to_thread(
            postgres.psql, "SELECT string_agg(name || '=' || setting, ', ' ORDER BY name) "
            "FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', "
            "'shared_buffers', 'max_connections')")
        version = f"{version} ({settings}; shared_buffers in 8 kB pages)"
    plan = make_plan(args)
    client = Client()
    results = []
    try:
        for key in args.setup_keys:
            results.append(await run_setup(key, args, folder, layout, plan, free_days,
                                           postgres, client))
    finally:
        if postgres is not None:
            if args.keep:
                progress(f"PostgreSQL's folder: {postgres.folder} (stopped)")
                await asyncio.to_thread(postgres.pause)
            else:
                await asyncio.to_thread(postgres.stop)
    return results, version


def print_results(args: argparse.Namespace, layout: Layout, results: Sequence[SetupResult],
                  pg_version: str, code: str, free_days: Sequence[date], gen_time: float,
                  ) -> None:
    files = layout.files
    vevents = sum(f.vevents for f in files)
    print(f"\n### fbproxy instances — {len(files)} ICS sources x {args.events:,} events, "
          f"seed {args.seed}, code {code}, Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPU(s), {args.duration:.0f} s\n")
    print("Load average (1, 5, 15 min) before / after the run: "
          + " / ".join(", ".join(f"{x:.2f}" for x in load)
                       for load in (args.load_before, args.load_after))
          + " (the machine may be shared: the CPU rows' \"others\" is everything else "
          "it ran meanwhile).\n")
    print(f"PostgreSQL {pg_version}. Every instance: `fbproxy --log-level warning serve` "
          f"on 127.0.0.1; lease_seconds {args.lease_seconds}; pages' recheck "
          f"{args.recheck}; rate limits at their defaults, one X-Forwarded-For address per "
          "guest.\n")
    print(f"Workload: {vevents:,} VEVENTs ({sum(f.items for f in files):,} UIDs, "
          f"{sum(f.bytes for f in files) / 2**20:.1f} MiB of ICS; generated in "
          f"{gen_time:.0f} s, not measured) in {len(files)} sources; calendars: one per source "
          f"and `merged` over all; pages `{SLUGS['round_robin']}` (round_robin over "
          f"{', '.join(layout.hosts['round_robin'])}) and `{SLUGS['collective']}` (collective "
          f"over {', '.join(layout.hosts['collective'])}), {SLOT_MINUTES}-minute slots "
          f"{OPEN:%H:%M}-{CLOSE:%H:%M} {PAGE_ZONE} on weekdays, {len(free_days)} working days "
          f"kept free for every host ({free_days[0]} to {free_days[-1]}; "
          f"{sum(f.cleared for f in files):,} EXDATEs/TRANSPARENTs).\n")
    keys = [r.key for r in results]
    print("| measurement | " + " | ".join(SETUPS[k][2] for k in keys) + " |")
    print("|---|" + "---:|" * len(keys))
    names: list[str] = []
    for r in results:
        names += [n for n in r.rows if n not in names]
    for name in names:
        cells = [r.rows.get(name, "-") for r in results]
        print(f"| {name} | " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    sized = [r for r in results if r.sizes]
    if sized:
        r = sized[0]
        print(f"\nPostgreSQL database right after the first full sync ({SETUPS[r.key][2]}): "
              f"pg_database_size {r.loaded_size / 2**20:,.1f} MiB.\n")
        print("| table | rows | size with indexes and TOAST | of which indexes | bytes a row "
              "| after the run: rows / size |")
        print("|---|---:|---:|---:|---:|---:|")
        end = {t[0]: t for t in r.sizes_end}
        for table, rows, size, indexes in r.sizes:
            _, rows_end, size_end, _ = end.get(table, (table, 0, 0, 0))
            if size >= 64 * 1024 or rows or rows_end:
                per = f"{size / rows:,.0f}" if rows else \
                    f"{size_end / rows_end:,.0f} (after the run)" if rows_end else "-"
                print(f"| {table} | {rows:,} | {size / 2**20:,.2f} MiB | "
                      f"{indexes / 2**20:,.2f} MiB | {per} | {rows_end:,} / "
                      f"{size_end / 2**20:,.2f} MiB |")
    for r in results:
        if r.outage:
            print(f"\nPostgreSQL stopped (`pg_ctl stop -m fast`) under {SETUPS[r.key][2]} "
                  f"for {args.outage_seconds:.0f} s, every route asked once on each "
                  "instance:\n")
            print("| what | answers |")
            print("|---|---|")
            for what, answer in r.outage:
                print(f"| {what} | {answer.replace('|', '/')} |")
    print("\nWhat limits scaling here:\n")
    for line in limits(args, results):
        print(f"- {line}")
    failed = [f"{SETUPS[r.key][2]}: {f}" for r in results for f in r.failed]
    if failed:
        print("\n**Wrong answers:** " + "; ".join(failed))


def limits(args: argparse.Namespace, results: Sequence[SetupResult]) -> list[str]:
    def values(name: str) -> str:
        return ", ".join(f"{SETUPS[r.key][2]} {r.rows.get(name, '-')}" for r in results)

    others = [float(cell.rsplit("/", 1)[1]) for r in results for name, cell in r.rows.items()
              if "(cores)" in name and cell.count("/") == 3]
    c, b = args.concurrency, args.booking_concurrency
    return [
        "Bookings: every write transaction of every instance takes the one advisory lock "
        "(`WRITE_LOCK`, server/store/postgres.py), so booking transactions commit one at a "
        "time across all instances, and each instance also queues its own writers on an "
        "asyncio lock first. More instances add request handling and slot checks in "
        "parallel, not commits; and a lock handed between processes waits for the next "
        "holder to be scheduled. Distinct-slot bookings/s: "
        + values(f"distinct free slots, c={b}: bookings committed per second")
        + "; the lock alone, 4 connections: "
        + values("the write lock alone: minimal write transactions from the bench, "
                 "4 connection(s): per second / p50") + ".",
        "Each booking re-checks its hosts' sources first (`recheck = \"best_effort\"`): "
        "a sync round per source (shared by the bookings of the same moment), whose result "
        "is itself a write transaction; an instance that does not hold a source's lease "
        "asks the holder (NOTIFY) and polls for its round.",
        f"CPU: this machine has {os.cpu_count()} cores for every fbproxy process, "
        "PostgreSQL and the bench client at once; the CPU rows show how they shared them "
        "(1.0 = one core). A second and third instance can only use what the first left."
        + (f" Other processes on the machine used {min(others):.2f}–{max(others):.2f} "
           "cores during the phases (the last figure of the CPU rows): throughput and "
           "latency are what fbproxy got of the rest; the CPU-per-request rows depend "
           "far less on it." if others else ""),
        "Reads on PostgreSQL pay a database round trip per request (the change counters, "
        "so no instance serves another's stale data) where SQLite reads them at most once a "
        "second. fbproxy CPU per cached feed request (ms, fbproxy / PostgreSQL): "
        + values(f"cached feed (304), c={c}: CPU ms per request, fbproxy / PostgreSQL")
        + ". A timeline or feed is cached per instance, so each instance misses and "
        "computes it once per change.",
        "Sync: a source is synced by the instance holding its lease; the first instance up "
        "takes every source, and others get their share only at its next renewal "
        f"(every lease_seconds × 0.2 = {args.lease_seconds * 0.2:.0f} s here), so a first "
        "full sync shorter than that is not spread at all, and a round whose source moved "
        "on meanwhile is discarded (see the row). The re-sync, with the leases settled, "
        "shows the spread: VEVENTs/s "
        + values("full re-sync: VEVENTs / that time") + ".",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="fbproxy-bench-instances-"))
    code = code_version()  # before the run: files may change while it goes on
    args.load_before = os.getloadavg()
    started = time.perf_counter()
    spawn_ctx = multiprocessing.get_context("spawn")
    free_days = kept_free_days(args.free_days)
    anchor = this_monday()
    try:
        progress(f"generating {args.sources} x {args.events} VEVENTs (and as many for the "
                 f"re-sync) in {folder} ...")
        t0 = time.perf_counter()
        windows = day_windows(free_days)
        n = args.sources
        with ProcessPoolExecutor(min(os.cpu_count() or 1, n), mp_context=spawn_ctx) as pool:
            made = list(pool.map(generate_source, [str(folder)] * 2 * n, [*range(n), *range(n)],
                                 [args.seed] * 2 * n, [args.events] * 2 * n, [anchor] * 2 * n,
                                 [windows] * 2 * n, [False] * n + [True] * n))
        gen_time = time.perf_counter() - t0
        layout = make_layout(made[:n], made[n:])
        results, pg_version = asyncio.run(run(args, folder, layout, free_days))
    finally:
        if args.keep:
            progress(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    args.load_after = os.getloadavg()
    args.duration = time.perf_counter() - started
    progress(f"done in {args.duration:.0f} s")
    print_results(args, layout, results, pg_version, code, free_days, gen_time)
    return 1 if any(r.failed for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
