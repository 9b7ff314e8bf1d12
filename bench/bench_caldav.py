#!/usr/bin/env python3
"""CalDAV benchmark: fbproxy's CalDAV source side by side with vdirsyncer, in one run.

Run from the repository root with the project's venv:

    .venv/bin/python bench/bench_caldav.py --events 5000

A real Radicale serves one calendar of generated events on 127.0.0.1. Both
clients reach it through a small counting reverse proxy in this process, so
requests and bytes on the wire are measured the same way for both. Each client
does (a) a first sync, (b) a round with nothing changed and (c) a round after
one event changed upstream. Progress goes to stderr; the result is Markdown on
stdout. See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import importlib.metadata
import json
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from base64 import b64encode
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from icalendar import Calendar  # noqa: E402

from bench import workload  # noqa: E402
from bench.common import code_version, progress  # noqa: E402
from bench.workload import FUTURE_DAYS, PAST_DAYS, Stats  # noqa: E402
from tests.peers import RadicaleServer  # noqa: E402

USER = "bench"
PASSWORD = "bench-password"
CALENDAR = "bench"
HOME_ZONE = "Europe/Berlin"
OTHER_ZONES = ("America/New_York", "Europe/London", "Asia/Tokyo")
HORIZON_DAYS = 120
STOP_TIMEOUT = 10.0
UPSTREAM_TIMEOUT = 600.0
VDIRSYNCER_TIMEOUT = 1800.0
# The first twelve of the shared summaries (this benchmark's data has always used these).
SUMMARIES = workload.SUMMARIES[:12]
DAV = "{DAV:}"

log = logging.getLogger("bench")


def basic_auth() -> str:
    return "Basic " + b64encode(f"{USER}:{PASSWORD}".encode()).decode()


# ---------------------------------------------------------------------------
# 1. The calendar: one .ics file per UID, written into Radicale's storage
# ---------------------------------------------------------------------------

def generate(folder: Path, count: int, seed: int, anchor: datetime) -> Stats:
    """Write ``count`` calendar objects (UIDs) into ``folder``; ~15 % are series."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".Radicale.props").write_text(
        json.dumps({"tag": "VCALENDAR", "D:displayname": "bench"}))
    # fbproxy runs on the system clock here, so the data must sit around "now".
    work = workload.generate(f"fbproxy-bench-caldav:{seed}", anchor, HOME_ZONE, OTHER_ZONES,
                             objects=count, summaries=SUMMARIES)
    if not work.stats.touched_uid:
        raise SystemExit("no single busy event a week out was generated; use more --events")
    workload.write_object_files(folder, work)
    return work.stats


def first_start(text: str | bytes) -> Any:
    """DTSTART of the first VEVENT, to compare versions however they are serialised."""
    return Calendar.from_ical(text).walk("VEVENT")[0].decoded("DTSTART")


def changed_event(original: bytes) -> bytes:
    """The same event one hour later, with SEQUENCE and LAST-MODIFIED bumped."""
    calendar = Calendar.from_ical(original)
    workload.move_event(calendar.walk("VEVENT")[0], timedelta(hours=1),
                        modified=datetime.now(UTC).replace(microsecond=0))
    return bytes(calendar.to_ical())


# ---------------------------------------------------------------------------
# 2. Radicale, and a counting reverse proxy in front of it
# ---------------------------------------------------------------------------

class Radicale(RadicaleServer):
    """The test suite's Radicale (tests/peers.py) with the benchmark's user and calendar.

    From RadicaleServer: 127.0.0.1 on a free port, htpasswd (plain) auth, its own
    storage, config and log in ``folder``, start with a bounded readiness poll, stop.
    Added here: requests straight to it (not through the counting proxy).
    """

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.set_password(USER, PASSWORD)
        # Objects are written here before the server starts (much faster than PUTs).
        self.calendar_folder = self.item_file(USER, CALENDAR, ".Radicale.props").parent

    @property
    def path(self) -> str:
        return f"/{USER}/{CALENDAR}/"

    def request(self, method: str, path: str, body: bytes = b"",
                headers: dict[str, str] | None = None, timeout: float = UPSTREAM_TIMEOUT,
                ) -> tuple[int, bytes]:
        """Straight to Radicale (not through the proxy), authenticated."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request(method, path, body=body or None,
                               headers={"Authorization": basic_auth(), **(headers or {})})
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def list_items(self) -> dict[str, str]:
        """PROPFIND Depth 1 on the calendar: {href: etag} of its members."""
        body = (b'<?xml version="1.0" encoding="utf-8"?><d:propfind xmlns:d="DAV:">'
                b"<d:prop><d:getetag/></d:prop></d:propfind>")
        status, payload = self.request("PROPFIND", self.path, body, {
            "Depth": "1", "Content-Type": "application/xml; charset=utf-8"})
        if status != 207:
            raise SystemExit(f"PROPFIND {self.path} answered {status}:\n{self.log_tail()}")
        items = {}
        for node in ET.fromstring(payload).iter(f"{DAV}response"):
            href = (node.findtext(f"{DAV}href") or "").strip()
            if href.rstrip("/") != self.path.rstrip("/"):
                items[href] = (node.findtext(f".//{DAV}getetag") or "").strip()
        return items

    def warm_up(self) -> None:
        """Ask once for the calendar's sync-token and ctag (server-side state, see below).

        Radicale keeps a per-item "history etag" for sync tokens; it is written
        when an item is uploaded, but the items here were written straight into
        its storage. The first sync-token request would write all of them
        (thousands of fsynced files), a one-time cost a real server never shows.
        """
        body = (b'<?xml version="1.0" encoding="utf-8"?><d:propfind xmlns:d="DAV:" '
                b'xmlns:cs="http://calendarserver.org/ns/"><d:prop><d:sync-token/>'
                b"<cs:getctag/></d:prop></d:propfind>")
        status, payload = self.request("PROPFIND", self.path, body, {
            "Depth": "0", "Content-Type": "application/xml; charset=utf-8"})
        if status != 207 or b"sync-token" not in payload:
            raise SystemExit(f"PROPFIND sync-token of {self.path} answered {status}")


@dataclass
class Traffic:
    """What went through the proxy: counted from the client's side of it."""

    requests: int = 0
    sent: int = 0  # client -> server: request line, headers, body
    received: int = 0  # server -> client: status line, headers, body (as sent, gzip or not)
    upstream_seconds: float = 0.0  # time spent waiting for Radicale's answers
    methods: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return self.sent + self.received


# Hop-by-hop headers are the proxy's own business; Content-Length is set anew.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "transfer-encoding",
                        "te", "trailer", "upgrade", "content-length"})


def _header_bytes(headers: Sequence[tuple[str, str]]) -> int:
    return sum(len(k) + len(v) + 4 for k, v in headers) + 2  # "K: V\r\n" ... "\r\n"


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive towards the clients, as a real server
    timeout = 300  # an idle keep-alive connection is dropped after this
    # Without TCP_NODELAY a response written in two parts waits for the client's
    # delayed ACK (~40 ms per request on Linux): a proxy artefact, not the clients'.
    disable_nagle_algorithm = True
    proxy: CountingProxy

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (base signature)
        pass

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _forward(self) -> None:
        body = self._read_body()
        request_headers = list(self.headers.items())
        sent = len(self.requestline) + 2 + _header_bytes(request_headers) + len(body)
        upstream = http.client.HTTPConnection("127.0.0.1", self.proxy.upstream_port,
                                              timeout=UPSTREAM_TIMEOUT)
        t0 = time.perf_counter()
        try:
            upstream.putrequest(self.command, self.path, skip_host=True,
                                skip_accept_encoding=True)
            for key, value in request_headers:
                if key.lower() not in HOP_BY_HOP:
                    upstream.putheader(key, value)
            if body or self.command in ("PUT", "POST", "PROPFIND", "REPORT", "PROPPATCH"):
                upstream.putheader("Content-Length", str(len(body)))
            upstream.endheaders(body or None)
            response = upstream.getresponse()
            payload = response.read()
            status, reason = response.status, response.reason
            headers = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP]
            length = response.getheader("Content-Length")
        except OSError as exc:
            status, reason, payload, headers, length = 502, "Bad Gateway", str(exc).encode(), [
                ("Content-Type", "text/plain")], None
        finally:
            upstream.close()
        waited = time.perf_counter() - t0
        no_body = self.command == "HEAD" or status in (204, 304) or status < 200
        if not no_body:
            headers.append(("Content-Length", str(len(payload))))
        elif self.command == "HEAD" and length is not None:
            headers.append(("Content-Length", length))
        head = "".join([f"{self.protocol_version} {status} {reason}\r\n",
                        *(f"{key}: {value}\r\n" for key, value in headers), "\r\n"])
        # One write: see disable_nagle_algorithm.
        message = head.encode("latin-1") + (b"" if no_body else payload)
        self.wfile.write(message)
        self.proxy.record(self.command, self.path, status, sent, len(message), waited)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_OPTIONS = _forward
    do_PROPFIND = do_PROPPATCH = do_REPORT = do_MKCOL = do_MKCALENDAR = _forward
    do_MOVE = do_COPY = do_LOCK = do_UNLOCK = _forward


class CountingProxy:
    """A reverse proxy on 127.0.0.1 (own thread) that counts requests and bytes."""

    def __init__(self, upstream_port: int, log_path: Path) -> None:
        self.upstream_port = upstream_port
        self._log = log_path.open("a", encoding="utf-8")  # one line per request
        handler = type("Handler", (_ProxyHandler,), {"proxy": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._lock = threading.Lock()
        self._traffic = Traffic()
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="counting-proxy", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(STOP_TIMEOUT)
        with self._lock:
            self._log.close()

    def record(self, method: str, path: str, status: int, sent: int, received: int,
               waited: float) -> None:
        with self._lock:
            self._traffic.requests += 1
            self._traffic.sent += sent
            self._traffic.received += received
            self._traffic.upstream_seconds += waited
            self._traffic.methods[method] += 1
            if not self._log.closed:
                self._log.write(f"{method} {path} {status} sent={sent} received={received} "
                                f"upstream={waited * 1000:.1f}ms\n")

    def mark(self, text: str) -> None:
        """A heading in the request log (which client and step follow)."""
        with self._lock:
            self._log.write(f"--- {text}\n")
            self._log.flush()

    def take(self) -> Traffic:
        """What was counted since the last call (and start afresh)."""
        with self._lock:
            traffic, self._traffic = self._traffic, Traffic()
            return traffic


# ---------------------------------------------------------------------------
# 3-4. The two clients
# ---------------------------------------------------------------------------

@dataclass
class Step:
    seconds: float
    traffic: Traffic
    fetched: int | None = None
    adapter_requests: int | None = None
    adapter_bytes: int | None = None


class Vdirsyncer:
    """vdirsyncer run as users run it: the venv's script, a config file, subprocesses."""

    def __init__(self, folder: Path, server_url: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.local = folder / "local"
        self.config = folder / "config"
        self.log_path = folder / "vdirsyncer.log"
        script = Path(sys.executable).parent / "vdirsyncer"
        self.script = str(script) if script.exists() else shutil.which("vdirsyncer") or ""
        if not self.script:
            raise SystemExit("the vdirsyncer script was not found next to this Python")
        q = json.dumps
        self.config.write_text("\n".join([
            "[general]", f"status_path = {q(str(folder / 'status') + '/')}", "",
            "[pair bench]", 'a = "bench_remote"', 'b = "bench_local"',
            f"collections = [{q(CALENDAR)}]", 'conflict_resolution = "a wins"',
            'implicit = "create"', "",
            "[storage bench_remote]", 'type = "caldav"', f"url = {q(server_url + '/')}",
            f"username = {q(USER)}", f"password = {q(PASSWORD)}", 'auth = "basic"',
            "read_only = true", "",
            "[storage bench_local]", 'type = "filesystem"', f"path = {q(str(self.local) + '/')}",
            'fileext = ".ics"', ""]))
        # No prompts (stdin is closed), a UTF-8 locale for click, no proxy for 127.0.0.1.
        self.env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        self.env.update(LC_ALL="C.UTF-8", LANG="C.UTF-8", no_proxy="127.0.0.1,localhost",
                        NO_PROXY="127.0.0.1,localhost")

    def run(self, *args: str) -> float:
        """Run one command; returns its wall time (process start-up included)."""
        command = [self.script, "--verbosity", "WARNING", "--config", str(self.config), *args]
        with self.log_path.open("ab") as log_file:
            log_file.write(f"--- {' '.join(args)}\n".encode())
            log_file.flush()
            t0 = time.perf_counter()
            done = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=log_file,
                                  stderr=subprocess.STDOUT, env=self.env,
                                  timeout=VDIRSYNCER_TIMEOUT, check=False)
            seconds = time.perf_counter() - t0
        if done.returncode != 0:
            tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])
            raise SystemExit(f"vdirsyncer {' '.join(args)} exited with {done.returncode}:\n"
                             f"{tail}")
        return seconds

    def startup_seconds(self) -> float:
        """The fastest of three `vdirsyncer --version`: process start-up and imports."""
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            subprocess.run([self.script, "--version"], stdin=subprocess.DEVNULL,
                           capture_output=True, env=self.env, timeout=60, check=True)
            times.append(time.perf_counter() - t0)
        return min(times)

    def local_files(self) -> list[Path]:
        return sorted((self.local / CALENDAR).glob("*.ics"))


def build_config(folder: Path, server_url: str) -> Any:
    from server.config.model import parse_config

    raw = {
        "server": {"database": str(folder / "fbproxy.sqlite3"), "timezone": HOME_ZONE,
                   "horizon_days": HORIZON_DAYS, "listen": "127.0.0.1:8080"},
        "sources": [{"name": "radicale", "kind": "caldav", "url": server_url + "/",
                     "username": USER, "password": PASSWORD, "timezone": HOME_ZONE,
                     "poll_interval": "1m"}],
        "calendars": [{"name": "bench", "sources": ["radicale"]}],
    }
    return parse_config(raw, base_dir=folder)


async def run_clients(args: argparse.Namespace, folder: Path, radicale: Radicale,
                      proxy: CountingProxy, work: Stats) -> dict[str, Any]:
    """Both clients, step by step, interleaved so each step sees the same calendar."""
    from server.kit.clock import SystemClock
    from server.runtime import open_runtime

    config = build_config(folder, proxy.url)
    vdir = Vdirsyncer(folder / "vdirsyncer", proxy.url)
    fb: dict[str, Step] = {}
    vd: dict[str, Step] = {}
    out: dict[str, Any] = {"fbproxy": fb, "vdirsyncer": vd}

    async def fbproxy_round(step: str) -> Any:
        proxy.take()
        proxy.mark(f"fbproxy {step}")
        t0 = time.perf_counter()
        outcomes = await runtime.sync.run_all_once()
        seconds = time.perf_counter() - t0
        traffic = proxy.take()
        (outcome,) = outcomes
        if not outcome.ok:
            raise SystemExit(f"fbproxy {step} failed: {outcome.error}")
        fb[step] = Step(seconds, traffic, outcome.fetched, outcome.requests,
                        outcome.bytes_received)
        progress(f"fbproxy {step}: {seconds:.3f} s, {traffic.requests} requests, "
                 f"{traffic.total / 1024:,.1f} KiB, fetched {outcome.fetched}, "
                 f"items {outcome.items}, re-expanded {outcome.expanded}")
        return outcome

    async def vdirsyncer_round(step: str, *command: str) -> Step:
        proxy.take()
        proxy.mark(f"vdirsyncer {step}")
        seconds = await asyncio.to_thread(vdir.run, *command)
        traffic = proxy.take()
        result = Step(seconds, traffic)
        vd[step] = result
        progress(f"vdirsyncer {step}: {seconds:.3f} s, {traffic.requests} requests, "
                 f"{traffic.total / 1024:,.1f} KiB")
        return result

    async with open_runtime(config, clock=SystemClock()) as runtime:
        progress(f"(a) first sync: fbproxy ({work.items:,} events) ...")
        first = await fbproxy_round("a")
        if first.items != work.items or first.skipped:
            raise SystemExit(f"fbproxy stored {first.items} of {work.items} items, "
                             f"skipped {len(first.skipped)}")

        progress("vdirsyncer discover (not timed as a step) ...")
        out["discover"] = await vdirsyncer_round("discover", "discover")
        progress("(a) first sync: vdirsyncer ...")
        await vdirsyncer_round("a", "sync")
        if len(vdir.local_files()) != work.items:
            raise SystemExit(f"vdirsyncer wrote {len(vdir.local_files())} of "
                             f"{work.items} items")

        progress("(b) no-change round: fbproxy, then vdirsyncer ...")
        second = await fbproxy_round("b")
        if not second.unchanged:
            raise SystemExit("fbproxy's no-change round was not unchanged")
        await vdirsyncer_round("b", "sync")

        original = (radicale.calendar_folder / work.touched_name).read_bytes()
        changed = changed_event(original)
        status, _ = radicale.request("PUT", radicale.path + work.touched_name, changed,
                                     {"Content-Type": "text/calendar; charset=utf-8"})
        if status not in (201, 204):
            raise SystemExit(f"PUT of the changed event answered {status}")
        uid = work.touched_uid
        progress(f"changed {work.touched_name} upstream (moved by 1 h, PUT straight to Radicale)")

        progress("(c) one event changed: fbproxy, then vdirsyncer ...")
        third = await fbproxy_round("c")
        if third.fetched != 1 or third.expanded != 1:
            raise SystemExit(f"fbproxy's round after one change fetched {third.fetched} and "
                             f"re-expanded {third.expanded} items (expected 1 and 1)")
        await vdirsyncer_round("c", "sync")
        new_start = first_start(changed)
        copies = [p for p in vdir.local_files() if uid in p.read_text(errors="replace")]
        if len(copies) != 1 or first_start(copies[0].read_bytes()) != new_start:
            raise SystemExit("vdirsyncer's local copy of the changed event is not up to date")
        out["startup"] = vdir.startup_seconds()

    db = sqlite3.connect(f"file:{config.server.database}?mode=ro", uri=True)
    try:
        out["items"] = db.execute("SELECT COUNT(*) FROM items").fetchone()[0]
        out["instances"] = db.execute("SELECT COUNT(*) FROM instances").fetchone()[0]
        stored = db.execute("SELECT ical FROM items WHERE item_key LIKE ?",
                            (f"%/{work.touched_name}",)).fetchone()
    finally:
        db.close()
    if stored is None or first_start(stored[0]) != new_start:
        raise SystemExit("fbproxy's stored copy of the changed event is not up to date")
    return out


# ---------------------------------------------------------------------------
# 5. The report
# ---------------------------------------------------------------------------

def kib(count: int) -> str:
    return f"{count / 1024:,.1f} KiB"


def seconds_text(value: float) -> str:
    return f"{value * 1000:,.1f} ms" if value < 1 else f"{value:,.2f} s"


def percent(part: float, whole: float) -> str:
    return f"{100 * part / whole:.2f} %" if whole else "n/a"


def methods_text(traffic: Traffic) -> str:
    return ", ".join(f"{m} {n}" for m, n in sorted(traffic.methods.items())) or "none"


def versions() -> str:
    def version(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "?"
    return (f"Radicale {version('radicale')}, vdirsyncer {version('vdirsyncer')}, "
            f"caldav {version('caldav')}, Python {sys.version.split()[0]}")


def report(args: argparse.Namespace, work: Stats, results: dict[str, Any],
           warmup: float, code: str) -> None:
    fb: dict[str, Step] = results["fbproxy"]
    vd: dict[str, Step] = results["vdirsyncer"]
    labels = {"a": "(a) first sync", "b": "(b) no-change round", "c": "(c) one event changed"}
    print(f"\n### fbproxy CalDAV source vs vdirsyncer — {work.items:,} events, "
          f"seed {args.seed}\n")
    print(f"{versions()}; code {code}; {os.cpu_count()} CPU(s). Both clients talk to one "
          "Radicale on 127.0.0.1 through the same counting proxy; bytes are request + "
          "response (status line, headers, body as sent on the wire).\n")
    print("| step | fbproxy time | fbproxy requests | fbproxy bytes | fbproxy fetched "
          "| vdirsyncer time | vdirsyncer requests | vdirsyncer bytes |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for step, label in labels.items():
        f, v = fb[step], vd[step]
        print(f"| {label} | {seconds_text(f.seconds)} | {f.traffic.requests:,} "
              f"| {kib(f.traffic.total)} | {f.fetched:,} | {seconds_text(v.seconds)} "
              f"| {v.traffic.requests:,} | {kib(v.traffic.total)} |")

    def goal(ok: bool) -> str:
        return "met" if ok else "NOT met"

    a, b, c = fb["a"], fb["b"], fb["c"]
    speedup = vd["c"].seconds / c.seconds
    print("\n| ratio | value | goal |")
    print("|---|---:|---|")
    for name, part, whole in (("fbproxy (b)/(a) time", b.seconds, a.seconds),
                              ("fbproxy (b)/(a) bytes", b.traffic.total, a.traffic.total),
                              ("fbproxy (c)/(a) time", c.seconds, a.seconds),
                              ("fbproxy (c)/(a) bytes", c.traffic.total, a.traffic.total)):
        print(f"| {name} | {percent(part, whole)} | under 2 %: {goal(part < 0.02 * whole)} |")
    print(f"| vdirsyncer (c) time / fbproxy (c) time | {speedup:,.1f}x "
          f"| at least 10x: {goal(speedup >= 10)} |")
    print(f"| vdirsyncer (c) bytes / fbproxy (c) bytes "
          f"| {vd['c'].traffic.total / c.traffic.total:,.1f}x | (context) |")
    own = {k: s.seconds - s.traffic.upstream_seconds for k, s in fb.items()}
    vd_own = vd["c"].seconds - vd["c"].traffic.upstream_seconds
    print(f"| fbproxy (b)/(a), (c)/(a) time without waiting for Radicale "
          f"| {percent(own['b'], own['a'])}, {percent(own['c'], own['a'])} | (context) |")
    print(f"| vdirsyncer (c) / fbproxy (c) time without waiting for Radicale "
          f"| {vd_own / own['c']:,.1f}x | (context) |")
    print(f"| vdirsyncer (b)/(a) time, (c)/(a) time "
          f"| {percent(vd['b'].seconds, vd['a'].seconds)}, "
          f"{percent(vd['c'].seconds, vd['a'].seconds)} | (context) |")

    print("\n| detail | fbproxy | vdirsyncer |")
    print("|---|---|---|")
    for step, label in labels.items():
        f, v = fb[step], vd[step]
        print(f"| {label}: requests by method | {methods_text(f.traffic)} "
              f"| {methods_text(v.traffic)} |")
        print(f"| {label}: sent / received | {kib(f.traffic.sent)} / {kib(f.traffic.received)} "
              f"| {kib(v.traffic.sent)} / {kib(v.traffic.received)} |")
        print(f"| {label}: of the time, waiting for Radicale "
              f"| {seconds_text(f.traffic.upstream_seconds)} "
              f"| {seconds_text(v.traffic.upstream_seconds)} |")
        print(f"| {label}: as counted by the adapter (requests, Content-Length) "
              f"| {f.adapter_requests:,}, {kib(f.adapter_bytes or 0)} | — |")
    disc = results["discover"]
    print(f"| `vdirsyncer discover` (not in the table above) | — "
          f"| {seconds_text(disc.seconds)}, {disc.traffic.requests} requests "
          f"({methods_text(disc.traffic)}), {kib(disc.traffic.total)} |")

    print("\nWorkload: " + (
        f"{work.items:,} calendar objects (one UID each, {work.vevents:,} VEVENTs) in one "
        f"Radicale calendar, {work.bytes / 2**20:.1f} MiB of iCalendar; {work.series:,} "
        f"recurring series with {work.exdates:,} EXDATEs and {work.overrides:,} "
        f"RECURRENCE-ID overrides; {work.all_day:,} all-day, {work.tentative:,} TENTATIVE, "
        f"{work.transparent:,} TRANSPARENT, {work.cancelled:,} CANCELLED, {work.floating:,} "
        f"floating. Laid out around {work.anchor:%Y-%m-%d %H:%MZ} (Monday of this week), "
        f"-{PAST_DAYS}..+{FUTURE_DAYS} days."))
    print("\nNotes:\n")
    print(f"- fbproxy's first sync includes discovery, parsing and expanding every event "
          f"(recurrences over a {HORIZON_DAYS}-day horizon) and storing the items and their "
          f"busy instances in SQLite ({results['items']:,} items, {results['instances']:,} "
          "instance rows); vdirsyncer's first sync only copies each object into a local "
          "folder (one file per object).")
    print(f"- vdirsyncer's times are whole-process wall times, as a cron job sees them; "
          f"its process start-up alone (`vdirsyncer --version`, best of 3) is "
          f"{seconds_text(results['startup'])}. fbproxy's are one `run_all_once()` in a "
          "process that is already running.")
    print("- (c) is measured after one event was moved by an hour with a PUT straight to "
          "Radicale (not through the proxy); both clients were checked to hold the new "
          "version afterwards.")
    print(f"- The objects were written straight into Radicale's storage, so before any "
          f"measurement a PROPFIND listed all {work.items:,} of them (Radicale builds its "
          "item cache) and one asked for the calendar's sync-token (Radicale writes the "
          "per-item sync history that an upload would have written); "
          f"{seconds_text(warmup)}, not counted.")


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------

def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=5000,
                        help="calendar objects (UIDs) in the calendar (default 5000)")
    parser.add_argument("--seed", type=int, default=1, help="data seed (default 1)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary folder (Radicale storage and logs, SQLite DB, "
                             "vdirsyncer config and status) and print its path")
    args = parser.parse_args(argv)
    if args.events < 20:
        parser.error("--events must be at least 20")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    for name in ("no_proxy", "NO_PROXY"):  # the caldav client honours proxy variables
        os.environ[name] = ",".join(filter(None, ("127.0.0.1,localhost",
                                                  os.environ.get(name))))
    code = code_version()
    folder = Path(tempfile.mkdtemp(prefix="fbproxy-bench-caldav-"))
    started = time.perf_counter()
    radicale = Radicale(folder / "radicale")
    proxy: CountingProxy | None = None
    try:
        today = datetime.now(UTC).date()
        anchor = datetime.combine(today - timedelta(days=today.weekday()), dtime(9), UTC)
        progress(f"generating {args.events:,} events into Radicale's storage in {folder} ...")
        t0 = time.perf_counter()
        work = generate(radicale.calendar_folder, args.events, args.seed, anchor)
        progress(f"generated {work.items:,} objects ({work.vevents:,} VEVENTs, "
                 f"{work.bytes / 2**20:.1f} MiB) in {time.perf_counter() - t0:.1f} s")

        try:
            radicale.start()
        except RuntimeError as exc:  # did not come up: the message has its log's tail
            raise SystemExit(str(exc)) from None
        progress(f"Radicale is up on 127.0.0.1:{radicale.port}; listing the calendar ...")
        t0 = time.perf_counter()
        listed = radicale.list_items()
        radicale.warm_up()
        warmup = time.perf_counter() - t0
        if len(listed) != work.items:
            raise SystemExit(f"Radicale lists {len(listed)} of the {work.items} objects "
                             f"written into its storage:\n{radicale.log_tail()}")
        progress(f"Radicale lists all {len(listed):,} objects ({warmup:.1f} s with building "
                 "its item cache and sync history)")

        proxy = CountingProxy(radicale.port, folder / "proxy.log")
        proxy.start()
        progress(f"counting proxy on {proxy.url}")
        results = asyncio.run(run_clients(args, folder, radicale, proxy, work))
    finally:
        if proxy is not None:
            proxy.close()
        radicale.stop()
        if args.keep:
            progress(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)

    progress(f"done in {time.perf_counter() - started:.0f} s")
    report(args, work, results, warmup, code)
    return 0


if __name__ == "__main__":
    sys.exit(main())
