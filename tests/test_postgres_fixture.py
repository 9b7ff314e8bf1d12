"""The test PostgreSQL server does what the store's tests rely on (tests/postgres.py)."""

from __future__ import annotations

import os
from pathlib import Path

import asyncpg
import psutil
import pytest

from server.config.database import parse_postgres_url
from tests import postgres
from tests.postgres import PostgresServer


async def test_the_url_connects_as_fbproxy_to_a_fresh_database(postgres_url: str) -> None:
    parse_postgres_url(postgres_url)  # what a config would accept
    connection = await asyncpg.connect(postgres_url)
    try:
        user, database = await connection.fetchrow("SELECT current_user, current_database()")
        assert user == "fbproxy" and postgres_url.endswith(f"/{database}")
        assert await connection.fetchval(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == 0
        assert await connection.fetchval("SHOW max_connections") == "200"
        assert await connection.fetchval("SHOW fsync") == "off"
        assert await connection.fetchval("SHOW synchronous_commit") == "off"
    finally:
        await connection.close()


async def test_btree_gist_rejects_overlapping_ranges(postgres_url: str) -> None:
    """The database owner may create btree_gist (trusted since PostgreSQL 13), and a gist
    exclusion constraint on int8range refuses an overlap: what bookings will rely on."""
    connection = await asyncpg.connect(postgres_url)
    try:
        await connection.execute("CREATE EXTENSION btree_gist")
        await connection.execute(
            """CREATE TABLE blocks (calendar text NOT NULL, during int8range NOT NULL,
                   EXCLUDE USING gist (calendar WITH =, during WITH &&))""")
        insert = "INSERT INTO blocks (calendar, during) VALUES ($1, int8range($2, $3))"
        await connection.execute(insert, "alex", 100, 200)
        with pytest.raises(asyncpg.exceptions.ExclusionViolationError):
            await connection.execute(insert, "alex", 150, 250)
        await connection.execute(insert, "alex", 200, 300)  # [) ranges: touching is fine
        await connection.execute(insert, "sam", 150, 250)  # another calendar
        assert await connection.fetchval("SELECT count(*) FROM blocks") == 3
    finally:
        await connection.close()


async def test_the_password_is_checked(postgres_server: PostgresServer) -> None:
    name = postgres_server.create_database()
    try:
        wrong = postgres_server.url(name).replace("%40", "%41", 1)
        with pytest.raises(asyncpg.exceptions.InvalidPasswordError):
            await asyncpg.connect(wrong)
    finally:
        postgres_server.drop_database(name)


def test_each_database_is_dropped_after_its_test(postgres_server: PostgresServer) -> None:
    name = postgres_server.create_database()
    exists = f"SELECT count(*) FROM pg_database WHERE datname = '{name}'"
    assert postgres_server.psql(exists) == "1"
    postgres_server.drop_database(name)
    assert postgres_server.psql(exists) == "0"


def test_the_server_never_runs_as_root(postgres_server: PostgresServer) -> None:
    postmaster = int((postgres_server.data / "postmaster.pid").read_text().split()[0])
    uid = psutil.Process(postmaster).uids().effective
    assert uid != 0
    assert uid == (os.geteuid() if postgres_server.account is None
                   else postgres_server.account.uid)
    assert postgres_server.data.stat().st_uid == uid


def test_no_postgresql_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fixture turns it into a failure (pytest.fail), never a skip."""
    monkeypatch.setattr(postgres, "BIN_GLOB", str(tmp_path / "*" / "bin"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(postgres.PostgresMissing, match="scripts/test installs it"):
        postgres.find_bindir()
