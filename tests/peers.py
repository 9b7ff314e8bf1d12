"""Real CalDAV peers for tests: Radicale and Xandikos as subprocesses on loopback.

Each server starts once per test session (on first use), on 127.0.0.1 with a
free port and its own folder under pytest's temp directory; its log goes to
``<folder>/server.log``. Both require HTTP Basic authentication:

- Radicale: ``auth.type = htpasswd`` with ``htpasswd_encryption = plain``;
  it re-reads the file on every login, so users can be added while it runs.
- Xandikos: ``multi-user`` mode (one principal per authenticated user, at
  ``/<user>/``, calendars under ``/<user>/calendars/``) with ``--htpasswd``.
  Xandikos refuses ``--htpasswd`` without ``--autocert`` (TLS), so it serves
  https with a self-signed certificate made here with the ``openssl`` command
  (IP SAN 127.0.0.1). Clients must trust ``Peer.ca_file``: ``Peer.client_env``
  names the variables that make niquests/requests (and the ssl module) do so.
  Its htpasswd takes ``{SHA}`` or bcrypt entries; ``{SHA}`` is used here.

Every test gets a fresh user (``Peer``), so discovery only ever sees that
test's calendars. ``Peer.stop()``/``Peer.start()`` stop and restart the whole
server on the same port and data folder (the ``peer`` fixtures restart it at
teardown if a test left it down).

Register the fixtures with ``pytest_plugins = ["tests.peers"]``.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urljoin, urlsplit

import pytest
import requests

PASSWORD = "correct horse"
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
HTTP_TIMEOUT = 10.0

DAV = "DAV:"
CALDAV = "urn:ietf:params:xml:ns:caldav"


@dataclass(frozen=True)
class Calendar:
    """A calendar collection created for a test."""

    url: str
    name: str
    display_name: str

    @property
    def path(self) -> str:
        return urlsplit(self.url).path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PeerServer:
    """One CalDAV server process: its folder, port, users and lifecycle."""

    name = ""
    scheme = "http"
    # Whether an item the server could not parse is still served to clients.
    serves_broken_items = True

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.htpasswd = folder / "users"
        self.htpasswd.write_text("")
        self.log_path = folder / "server.log"
        self.ca_file: str | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._users: dict[str, str] = {}
        self._prepare()

    # -- what each server kind defines ----------------------------------------

    def _prepare(self) -> None:
        raise NotImplementedError

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _htpasswd_line(self, username: str, password: str) -> str:
        raise NotImplementedError

    def calendar_home(self, username: str) -> str:
        raise NotImplementedError

    def item_file(self, username: str, calendar: str, name: str) -> Path:
        """Where the server keeps an item on disk (for writes that bypass it)."""
        raise NotImplementedError

    # -- shared ---------------------------------------------------------------

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<{self.name} {self.base_url} {state}, log {self.log_path}>"

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def set_password(self, username: str, password: str = PASSWORD) -> None:
        """Add the user, or change their password (both servers reload the file)."""
        self._users[username] = self._htpasswd_line(username, password)
        before = self.htpasswd.stat().st_mtime_ns
        self.htpasswd.write_text("".join(line + "\n" for line in self._users.values()))
        # Both servers notice a new mtime (or size): make sure the mtime moved.
        after = max(self.htpasswd.stat().st_mtime_ns, before + 1_000_000)
        os.utime(self.htpasswd, ns=(after, after))

    def start(self) -> None:
        if self.running:
            return
        self._log = self.log_path.open("ab")
        self._log.write(f"--- starting {self._command()}\n".encode())
        self._log.flush()
        self._process = subprocess.Popen(
            self._command(), stdout=self._log, stderr=subprocess.STDOUT, cwd=self.folder,
            stdin=subprocess.DEVNULL)
        self._wait_ready()

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_TIMEOUT)
        if self._log is not None:
            self._log.close()
            self._log = None

    def _wait_ready(self) -> None:
        """Poll until the server answers HTTP at all (any status), within a bound."""
        deadline = time.monotonic() + READY_TIMEOUT
        session = requests.Session()
        session.trust_env = False
        try:
            while True:
                assert self._process is not None
                if self._process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self._process.returncode}; "
                                       f"see {self.log_path}:\n{self.log_tail()}")
                try:
                    session.request("OPTIONS", self.base_url, timeout=1.0,
                                    verify=self.ca_file or True)
                    return
                except requests.ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"{self.name} did not answer within {READY_TIMEOUT}s; "
                                       f"see {self.log_path}:\n{self.log_tail()}")
                time.sleep(0.05)
        finally:
            session.close()

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class RadicaleServer(PeerServer):
    name = "radicale"
    # Radicale's `skip_broken_item` (default on) hides items it cannot parse:
    # they are neither listed nor served, so a client never sees them.
    serves_broken_items = False

    def _prepare(self) -> None:
        self.storage = self.folder / "collections"
        self.config = self.folder / "config"
        self.config.write_text("\n".join([
            "[server]",
            f"hosts = 127.0.0.1:{self.port}",
            "delay_on_error = 0",
            "[auth]",
            "type = htpasswd",
            f"htpasswd_filename = {self.htpasswd}",
            "htpasswd_encryption = plain",
            # No artificial delay after a failed login (the default is 1 s).
            "delay = 0",
            "[rights]",
            "type = owner_only",
            "[storage]",
            f"filesystem_folder = {self.storage}",
            # Radicale drops sync history older than this, judged by file mtimes
            # against time.time(). Under libfaketime (scripts/test) the clock is
            # moved years but file times are not, so all history would look stale.
            "max_sync_token_age = 315360000",
            "[web]",
            "type = none",
            "[logging]",
            "level = info",
            "",
        ]))

    def _command(self) -> list[str]:
        return [sys.executable, "-m", "radicale", "--config", str(self.config)]

    def _htpasswd_line(self, username: str, password: str) -> str:
        return f"{username}:{password}"

    def calendar_home(self, username: str) -> str:
        return f"{self.base_url}{username}/"

    def item_file(self, username: str, calendar: str, name: str) -> Path:
        return self.storage / "collection-root" / username / calendar / name


class XandikosServer(PeerServer):
    name = "xandikos"
    scheme = "https"

    def _prepare(self) -> None:
        if shutil.which("openssl") is None:
            pytest.fail("the openssl command is needed to make Xandikos's TLS certificate; "
                        "scripts/test installs it (Debian package openssl)")
        self.data = self.folder / "data"
        self.state = self.folder / "state"
        certs = self.state / "certs"
        certs.mkdir(parents=True)
        # Xandikos's --autocert reuses selfsigned.crt/.key when present, unless
        # `cryptography` is installed (google-auth brings it) and the certificate
        # expires within 30 days: then it makes its own, without the IP address.
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-days", "400", "-subj", "/CN=127.0.0.1",
             "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
             "-keyout", str(certs / "selfsigned.key"), "-out", str(certs / "selfsigned.crt")],
            check=True, capture_output=True)
        self.ca_file = str(certs / "selfsigned.crt")

    def _command(self) -> list[str]:
        return [sys.executable, "-m", "xandikos", "multi-user", "--directory", str(self.data),
                "--state-dir", str(self.state), "--listen-address", "127.0.0.1",
                "--port", str(self.port), "--autocert", "--htpasswd", str(self.htpasswd),
                "--no-detect-systemd"]

    def _htpasswd_line(self, username: str, password: str) -> str:
        digest = base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()
        return f"{username}:{{SHA}}{digest}"

    def calendar_home(self, username: str) -> str:
        return f"{self.base_url}{username}/calendars/"

    def item_file(self, username: str, calendar: str, name: str) -> Path:
        # A git repository per calendar: a file written here is not served
        # until committed. Use Peer.put_event: Xandikos stores what it is sent.
        return self.data / username / "calendars" / calendar / name


SERVER_KINDS: dict[str, type[PeerServer]] = {"radicale": RadicaleServer,
                                             "xandikos": XandikosServer}


@dataclass
class Peer:
    """One user on a running peer server, with raw-HTTP helpers for test setup."""

    server: PeerServer
    username: str
    password: str = PASSWORD
    calendars: list[Calendar] = field(default_factory=list)
    _session: requests.Session = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._session = requests.Session()
        self._session.trust_env = False
        self._session.auth = (self.username, self.password)
        self._session.verify = self.server.ca_file or True

    # -- where things are -----------------------------------------------------

    @property
    def name(self) -> str:
        return self.server.name

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def principal_url(self) -> str:
        return f"{self.base_url}{self.username}/"

    @property
    def calendar_home(self) -> str:
        return self.server.calendar_home(self.username)

    @property
    def ca_file(self) -> str | None:
        return self.server.ca_file

    @property
    def client_env(self) -> dict[str, str]:
        """Environment that makes HTTP clients in this process trust the peer."""
        if self.ca_file is None:
            return {}
        return {"REQUESTS_CA_BUNDLE": self.ca_file, "SSL_CERT_FILE": self.ca_file}

    @property
    def bogus_sync_token(self) -> str:
        """A well-formed sync token this server never issued."""
        if self.name == "radicale":
            return "http://radicale.org/ns/sync/" + "0" * 64
        return "0" * 40

    # -- raw HTTP -------------------------------------------------------------

    def request(self, method: str, url: str, *, expect: tuple[int, ...] = (), **kwargs: Any
                ) -> requests.Response:
        response = self._session.request(method, urljoin(self.base_url, url),
                                         timeout=HTTP_TIMEOUT, **kwargs)
        if expect and response.status_code not in expect:
            raise AssertionError(f"{self.name}: {method} {url} -> {response.status_code} "
                                 f"(expected {expect}): {response.text[:500]}")
        return response

    def login(self) -> None:
        """First contact: both servers create the user's principal on demand."""
        self.request("PROPFIND", self.principal_url, headers={"Depth": "0"}, expect=(207,))

    def make_calendar(self, display_name: str | None = None) -> Calendar:
        """MKCALENDAR a fresh VEVENT calendar with a unique name."""
        name = f"cal-{uuid.uuid4().hex[:10]}"
        display_name = display_name or f"Calendar {name[4:]}"
        url = f"{self.calendar_home}{name}/"
        body = (
            '<?xml version="1.0" encoding="utf-8"?>'
            f'<C:mkcalendar xmlns:D="{DAV}" xmlns:C="{CALDAV}"><D:set><D:prop>'
            f"<D:displayname>{display_name}</D:displayname>"
            '<C:supported-calendar-component-set><C:comp name="VEVENT"/>'
            "</C:supported-calendar-component-set>"
            "</D:prop></D:set></C:mkcalendar>")
        self.request("MKCALENDAR", url, data=body.encode(), expect=(201,),
                     headers={"Content-Type": "application/xml; charset=utf-8"})
        calendar = Calendar(url=url, name=name, display_name=display_name)
        self.calendars.append(calendar)
        return calendar

    def delete_calendar(self, calendar: Calendar) -> None:
        self.request("DELETE", calendar.url, expect=(200, 204))

    def put_event(self, calendar: Calendar, name: str, ical: str, *,
                  etag: str | None = None, create: bool = False) -> str:
        """PUT an item (``name`` like ``a.ics``); returns the new ETag (or "")."""
        headers = {"Content-Type": "text/calendar; charset=utf-8"}
        if create:
            headers["If-None-Match"] = "*"
        if etag:
            headers["If-Match"] = etag
        response = self.request("PUT", calendar.url + name, data=ical.encode(),
                                headers=headers, expect=(201, 204))
        return response.headers.get("ETag", "")

    def delete_event(self, calendar: Calendar, name: str) -> None:
        self.request("DELETE", calendar.url + name, expect=(200, 204))

    def hrefs(self, calendar: Calendar) -> list[str]:
        """The paths of the items in a calendar (PROPFIND Depth 1)."""
        body = (f'<?xml version="1.0"?><D:propfind xmlns:D="{DAV}"><D:prop><D:getetag/>'
                "</D:prop></D:propfind>")
        response = self.request("PROPFIND", calendar.url, data=body.encode(), expect=(207,),
                                headers={"Depth": "1", "Content-Type": "application/xml"})
        root = ET.fromstring(response.content)
        found = [h.text or "" for h in root.iter(f"{{{DAV}}}href")]
        return sorted(h for h in found if h.rstrip("/") != calendar.path.rstrip("/"))

    def free_busy(self, calendar: Calendar, start: str, end: str) -> str:
        """RFC 4791 §7.10 free-busy-query REPORT; times like 20261125T000000Z."""
        body = (f'<?xml version="1.0" encoding="utf-8"?><C:free-busy-query xmlns:C="{CALDAV}">'
                f'<C:time-range start="{start}" end="{end}"/></C:free-busy-query>')
        response = self.request("REPORT", calendar.url, data=body.encode(), expect=(200,),
                                headers={"Depth": "1", "Content-Type": "application/xml"})
        return response.text

    def plant_broken_item(self, calendar: Calendar, name: str, ical: str) -> None:
        """Store an item the server would refuse to PUT (Radicale validates)."""
        if self.name == "radicale":
            path = self.server.item_file(self.username, calendar.name, name)
            path.write_text(ical)
        else:
            self.put_event(calendar, name, ical)

    # -- server lifecycle -----------------------------------------------------

    def set_password(self, password: str) -> None:
        """Change this user's password on the server (this Peer keeps the new one)."""
        self.server.set_password(self.username, password)
        self.password = password
        self._session.auth = (self.username, password)

    def stop(self) -> None:
        self.server.stop()

    def start(self) -> None:
        self.server.start()

    def close(self) -> None:
        self._session.close()


class PeerPool:
    """The session's servers, started on first use, stopped at the end."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.servers: dict[str, PeerServer] = {}
        self._users = itertools.count(1)

    def server(self, kind: str) -> PeerServer:
        if kind not in self.servers:
            server = SERVER_KINDS[kind](self.folder / kind)
            self.servers[kind] = server
        server = self.servers[kind]
        server.start()
        return server

    def new_peer(self, kind: str, label: str = "") -> Peer:
        """A fresh user on a running server of that kind."""
        server = self.server(kind)
        suffix = "".join(c for c in label.lower() if c.isalnum())[:20]
        username = f"alex{next(self._users)}{'-' + suffix if suffix else ''}"
        server.set_password(username)
        peer = Peer(server=server, username=username)
        peer.login()
        return peer

    def close(self) -> None:
        for server in self.servers.values():
            server.stop()


@pytest.fixture(scope="session")
def peer_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PeerPool]:
    pool = PeerPool(tmp_path_factory.mktemp("peers"))
    yield pool
    pool.close()


def peer_for(pool: PeerPool, kind: str, request: pytest.FixtureRequest,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[Peer]:
    """Body of a per-test peer fixture: a fresh user; the server is up again after."""
    peer = pool.new_peer(kind, request.node.name.partition("[")[0].removeprefix("test_"))
    # Tests hand peer.ca_file to fbproxy through the `ca_file` source key; the
    # environment stays clean so that key is what makes TLS work.
    try:
        yield peer
    finally:
        peer.close()
        pool.server(kind)  # restart it if the test left it stopped


@pytest.fixture
def radicale_peer(peer_pool: PeerPool, request: pytest.FixtureRequest,
                  monkeypatch: pytest.MonkeyPatch) -> Iterator[Peer]:
    yield from peer_for(peer_pool, "radicale", request, monkeypatch)


@pytest.fixture
def xandikos_peer(peer_pool: PeerPool, request: pytest.FixtureRequest,
                  monkeypatch: pytest.MonkeyPatch) -> Iterator[Peer]:
    yield from peer_for(peer_pool, "xandikos", request, monkeypatch)
