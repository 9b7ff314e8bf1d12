"""A throwaway PostgreSQL server for the tests: initdb, pg_ctl and psql, never as root.

The fixtures in tests/conftest.py start one server a session (``start_postgres``)
and make a fresh database a test. PostgreSQL refuses to run as root, and CI runs
as root: then every server process runs as an unprivileged account
(``unprivileged_account``), which owns the server's temporary folder. Admin
statements go through ``psql`` over the Unix socket (trusted, superuser), so the
fixtures need no event loop; tests connect over TCP on 127.0.0.1 as the role
``fbproxy`` with a password, which the server checks (scram-sha-256).
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

SUPERUSER = "postgres"
ROLE = "fbproxy"
# Characters a URL must percent-encode: the tests' URLs exercise that on every connect.
PASSWORD = "pg-p@ss/w:rd-0001"
# Tried in order when running as root: the account Debian's package made for
# PostgreSQL, then the one every system has; else a system account is created.
ACCOUNTS = ("postgres", "nobody")
CREATED_ACCOUNT = "fbproxy-pgtest"
BIN_GLOB = "/usr/lib/postgresql/*/bin"
MAX_CONNECTIONS = 200  # three fbproxy processes with their pools, and the tests' own
START_ATTEMPTS = 3  # a free port can be taken between finding it and binding it
TIMEOUT = 120


class PostgresMissing(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


def find_bindir() -> Path:
    """The folder with initdb, pg_ctl and postgres: Debian's newest, pg_config's, or PATH's."""
    debian = [Path(folder) for folder in glob.glob(BIN_GLOB) if Path(folder, "initdb").exists()]
    if debian:
        # Debian keeps each major version apart, off PATH: /usr/lib/postgresql/15/bin.
        return max(debian, key=lambda folder: _version(folder.parent.name))
    for folder in (_pg_config_bindir(), _on_path("initdb")):
        if folder is not None and (folder / "initdb").exists():
            return folder
    raise PostgresMissing(
        "PostgreSQL is not installed: no initdb in /usr/lib/postgresql/*/bin, in "
        "`pg_config --bindir` or on PATH. scripts/test installs it (Debian's postgresql "
        "package); or run: apt-get install postgresql")


def _version(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", name))


def _pg_config_bindir() -> Path | None:
    pg_config = shutil.which("pg_config")
    if pg_config is None:
        return None
    result = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True,
                            check=False, timeout=TIMEOUT)
    return Path(result.stdout.strip()) if result.returncode == 0 else None


def _on_path(program: str) -> Path | None:
    found = shutil.which(program)
    return Path(found).resolve().parent if found else None


@dataclass(frozen=True)
class Account:
    """The unprivileged account the server runs as, when the tests run as root."""

    name: str
    uid: int
    gid: int

    def process_kwargs(self) -> dict[str, Any]:
        # extra_groups=[]: drop root's supplementary groups too.
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


def unprivileged_account() -> Account | None:
    """None when not root (the server runs as us); else an account that is not root."""
    if os.geteuid() != 0:
        return None
    for name in (*ACCOUNTS, CREATED_ACCOUNT):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return Account(name, entry.pw_uid, entry.pw_gid)
    subprocess.run(["useradd", "--system", "--no-create-home", "--user-group",
                    "--shell", "/usr/sbin/nologin", CREATED_ACCOUNT],
                   check=True, capture_output=True, timeout=TIMEOUT)
    entry = pwd.getpwnam(CREATED_ACCOUNT)
    return Account(CREATED_ACCOUNT, entry.pw_uid, entry.pw_gid)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PostgresServer:
    """A running server: its folder (data, socket, log), port and account."""

    bindir: Path
    folder: Path
    account: Account | None
    port: int = 0
    host: str = "127.0.0.1"
    options: str = ""  # pg_ctl start's -o, kept for resume()
    _names: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def socket_dir(self) -> Path:
        return self.folder

    @property
    def log(self) -> Path:
        return self.folder / "postgres.log"

    def url(self, database: str) -> str:
        """``database`` as the role ``fbproxy`` reaches it, over TCP with its password."""
        return (f"postgresql://{ROLE}:{quote(PASSWORD, safe='')}@{self.host}:{self.port}"
                f"/{database}")

    def psql(self, sql: str, *, database: str = "postgres") -> str:
        """Run ``sql`` as the superuser over the Unix socket; its output, unaligned."""
        result = subprocess.run(
            [str(self.bindir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-h", str(self.socket_dir), "-p", str(self.port), "-U", SUPERUSER,
             "-d", database, "-c", sql],
            capture_output=True, text=True, check=False, timeout=TIMEOUT, env=_clean_env())
        if result.returncode != 0:
            raise RuntimeError(f"psql {sql!r} failed: {result.stderr.strip()}")
        return result.stdout.strip()

    def create_database(self) -> str:
        """A fresh database owned by ``fbproxy``; its name."""
        name = f"test_{next(self._names)}"
        self.psql(f"CREATE DATABASE {name} OWNER {ROLE}")
        return name

    def drop_database(self, name: str) -> None:
        # FORCE ends the connections a test left open (a pool not closed, a crash).
        self.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """One of the server programs, as the server's account."""
        return subprocess.run(
            [str(self.bindir / args[0]), *args[1:]], cwd=self.folder, capture_output=True,
            text=True, check=False, timeout=TIMEOUT, env=_clean_env(),
            **(self.account.process_kwargs() if self.account else {}))

    def pause(self) -> None:
        """Stop the server (fast: its connections are ended) but keep its data."""
        result = self.run("pg_ctl", "stop", "-D", str(self.data), "-m", "fast", "-w")
        if result.returncode != 0:
            raise RuntimeError(f"pg_ctl stop failed: {result.stderr.strip()}")

    def resume(self) -> None:
        """Start the paused server again, on the same port with the same settings."""
        result = self.run("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data),
                          "-l", str(self.log), "-o", self.options)
        if result.returncode != 0:
            raise RuntimeError(f"PostgreSQL did not start again: {result.stderr.strip()}")

    def stop(self) -> None:
        # immediate: the data is thrown away, so no shutdown checkpoint is needed.
        self.run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", "-w")
        shutil.rmtree(self.folder, ignore_errors=True)


def _clean_env() -> dict[str, str]:
    # Nothing of the test run's environment (PG* variables, libfaketime's LD_PRELOAD).
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"}


def start_postgres(*, durable: bool = False) -> PostgresServer:
    """initdb and start a server on 127.0.0.1 and a free port; the role ``fbproxy`` made.

    ``durable`` keeps PostgreSQL's own defaults (fsync, synchronous_commit and
    full_page_writes on) instead of the tests' speed settings: for a benchmark,
    which should measure what an installation gets (bench/bench_instances.py).
    """
    bindir = find_bindir()
    account = unprivileged_account()
    # Not under pytest's tmp_path: root's is 0700, which the server's account cannot enter.
    folder = Path(tempfile.mkdtemp(prefix="fbproxy-pg-"))
    server = PostgresServer(bindir, folder, account)
    try:
        if account is not None:
            os.chown(folder, account.uid, account.gid)
        _initdb(server)
        _start(server, durable=durable)
        server.psql(f"CREATE ROLE {ROLE} LOGIN PASSWORD {_literal(PASSWORD)}")
    except BaseException:
        server.stop()
        raise
    return server


def _literal(text: str) -> str:
    """``text`` as an SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def _initdb(server: PostgresServer) -> None:
    # Trust on the socket (the superuser, for psql); a checked password over TCP.
    result = server.run("initdb", "-D", str(server.data), "-U", SUPERUSER, "-E", "UTF8",
                        "--no-locale", "--no-sync", "--auth-local=trust",
                        "--auth-host=scram-sha-256")
    if result.returncode != 0:
        raise RuntimeError(f"initdb failed:\n{result.stdout}\n{result.stderr}")


def _start(server: PostgresServer, *, durable: bool = False) -> None:
    for _ in range(START_ATTEMPTS):
        server.port = free_port()
        options = (f"-p {server.port} -k {server.socket_dir} -c listen_addresses=127.0.0.1 "
                   f"-c max_connections={MAX_CONNECTIONS}")
        if not durable:
            # Test speed over durability: the data lives for one test run.
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        result = server.run("pg_ctl", "start", "-w", "-t", "60", "-D", str(server.data),
                            "-l", str(server.log), "-o", options)
        if result.returncode == 0:
            server.options = options
            return
        log = server.log.read_text(errors="replace") if server.log.exists() else ""
        if "could not bind" not in log and "already in use" not in log:
            break
    raise RuntimeError(f"PostgreSQL did not start:\n{result.stderr}\n{log[-4000:]}")
