"""Shared fixtures: configs in temp folders, a fixed clock, the app on a real port."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.config.database import PostgresUrl
from server.config.model import Config, parse_config
from server.kit.clock import FixedClock
from server.runtime import RUNTIME, Runtime
from server.store import Store
from tests import postgres

# Real CalDAV peers (Radicale, Xandikos) for the CalDAV tests; the booking tests' world.
pytest_plugins = ["tests.peers", "tests.booking_world", "tests.mailbox", "tests.fake_google",
                  "tests.fake_microsoft", "tests.browser"]

REPO = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

# Tests talk to loopback only; a proxy variable must not reroute that.
for _var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
    os.environ.pop(_var, None)


def ics(*events: str, extra: str = "") -> str:
    """A VCALENDAR around VEVENT bodies (each given without BEGIN/END lines)."""
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//fbproxy tests//EN"]
    if extra:
        lines.append(extra)
    for body in events:
        lines += ["BEGIN:VEVENT", *body.strip().splitlines(), "END:VEVENT"]
    lines.append("END:VCALENDAR")
    return "\r\n".join(line.strip() for line in lines) + "\r\n"


def event(uid: str, start: str, end: str, *extra: str) -> str:
    """A VEVENT body: UTC basic-format times like 20261126T100000Z."""
    return "\n".join([f"UID:{uid}", "DTSTAMP:20260101T000000Z", f"DTSTART:{start}",
                      f"DTEND:{end}", "SUMMARY:Secret meeting", *extra])


# Every secret the suite hands to fbproxy, and the shapes of the tokens the fakes
# issue: none may ever appear in fbproxy's own log lines (or tracebacks).
SUITE_SECRETS = ("s3cret-s3cret-s3cret-0001", "secret-of-alex-0123456789",
                 "secret-of-sam-0123456789", "secret-of-kim-0123456789",
                 "admin-admin-admin-0001", "subscriber-busy-only-0001",
                 "subscriber-assistant-0001", "partner-old-secret-01", "partner-new-secret-01",
                 "assistant-secret-0001", "owner-owner-owner-0001", "webhook-signing-key-0001",
                 "fake-client-secret", "correct horse",
                 postgres.PASSWORD, quote(postgres.PASSWORD, safe=""))
TOKEN_SHAPES = re.compile(r"1//[A-Za-z0-9_-]{20,}|ya29\.[A-Za-z0-9_-]{10,}")


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture(autouse=True)
def no_secret_in_logs() -> Iterator[None]:
    """Fails a test whose run made fbproxy log a secret it was given."""
    collect = _Collect()
    logger = logging.getLogger("fbproxy")
    previous = logger.level
    logger.addHandler(collect)
    logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        logger.removeHandler(collect)
        logger.setLevel(previous)
    text = "\n".join(collect.lines)
    leaked = [s for s in SUITE_SECRETS if s in text] + TOKEN_SHAPES.findall(text)
    assert not leaked, f"secrets in fbproxy's log: {leaked}"


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


# Fixtures whose upstream keeps part of its time on the wall clock (the fakes' tokens,
# which msal and google-auth time themselves; the real CalDAV peers): a test using
# one is clock_sensitive. Tests that run the console script or a client on the wall
# clock carry the marker themselves.
WALL_CLOCK_FIXTURES = frozenset({"fake_google", "fake_microsoft", "peer_pool"})
# A test using one of these needs the PostgreSQL server: marked postgres.
POSTGRES_FIXTURES = frozenset({"postgres_server", "postgres_url"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if WALL_CLOCK_FIXTURES & fixtures:
            item.add_marker(pytest.mark.clock_sensitive)
        if POSTGRES_FIXTURES & fixtures:
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[postgres.PostgresServer]:
    """One PostgreSQL server for the session (tests/postgres.py), stopped and removed at
    the end. A machine without PostgreSQL fails the tests that need it, never skips them."""
    try:
        server = postgres.start_postgres()
    except postgres.PostgresMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: postgres.PostgresServer) -> Iterator[str]:
    """A fresh database owned by the role fbproxy, as
    postgresql://fbproxy:PASSWORD@127.0.0.1:PORT/test_N; dropped after the test."""
    name = postgres_server.create_database()
    try:
        yield postgres_server.url(name)
    finally:
        postgres_server.drop_database(name)


@pytest.fixture
def expansion_workers() -> int:
    """``[server] expansion_workers`` of make_config's configs: threads (0), as starting
    worker processes costs most rounds more than their work. The modules that read
    upstream data (ICS, Google, Microsoft, hostile feeds) override this fixture to
    run in worker processes, as tests/test_expansion_workers.py does; the console
    script's tests run with the default, worker processes."""
    return 0


@pytest.fixture
def make_config(tmp_path: Path, expansion_workers: int) -> Callable[..., Config]:
    """A Config from a dict, with the database and relative paths in tmp_path."""

    def build(sources: list[dict[str, Any]], calendars: list[dict[str, Any]] | None = None,
              *, booking_pages: list[dict[str, Any]] | None = None,
              mail: dict[str, Any] | None = None,
              alerts: list[dict[str, Any]] | None = None, **server: Any) -> Config:
        # Tests send many requests from 127.0.0.1; the limits get tests of their own.
        limits = {"rate_limit_bookings": "off", "rate_limit_failed_bookings": "off",
                  "rate_limit_pages": "off", "rate_limit_secrets": "off"}
        raw = {
            "server": {"database": "db/fbproxy.sqlite3", "timezone": "UTC",
                       "expansion_workers": expansion_workers, **limits, **server},
            "sources": sources,
            "calendars": calendars if calendars is not None else [
                {"name": "me", "sources": [s["name"] for s in sources],
                 "secret": "s3cret-s3cret-s3cret-0001"}],
            "booking_pages": booking_pages or [],
        }
        if mail is not None:
            raw["mail"] = mail
        if alerts is not None:
            raw["alerts"] = alerts
        return parse_config(raw, base_dir=tmp_path)

    return build


@pytest.fixture
async def serve(
    aiohttp_client: Callable[..., Any], clock: FixedClock,
) -> AsyncIterator[Callable[..., Any]]:
    """Start the real app (no background sync) and return (client, runtime)."""

    async def start(config: Config, **kwargs: Any) -> tuple[TestClient[Any, Any], Runtime]:
        app = create_app(config, clock=clock, start_sync=False, **kwargs)
        client = await aiohttp_client(app)
        return client, app[RUNTIME]

    yield start



@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> Path | PostgresUrl:
    """Where a store lives, once for each backend: a test using it runs on both."""
    if request.param == "sqlite":
        return tmp_path / "store.sqlite3"
    return PostgresUrl(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def store(location: Path | PostgresUrl) -> AsyncIterator[Store]:
    """An open store on each backend (see ``location``)."""
    opened = await Store.open(location)
    yield opened
    await opened.close()
