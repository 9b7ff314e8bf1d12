"""[server] database as a path or a PostgreSQL URL, and the keys for several instances."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from server.config.database import PostgresUrl
from server.config.model import Config, parse_config
from server.config.reader import Reader
from server.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
SOURCE = {"name": "work", "kind": "ics", "url": "work.ics"}
PASSWORD = "pw-never-shown-0001"
GOOGLE = {"name": "gcal", "kind": "google", "client_id": "id", "client_secret": "secret"}


@pytest.fixture(autouse=True)
def work_ics(tmp_path: Path) -> None:
    """The ICS file SOURCE reads, so that check_files finds only database problems."""
    (tmp_path / "work.ics").write_text("BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n")


def parse(server: dict[str, Any], tmp_path: Path, *, sources: list[dict[str, Any]] | None = None,
          check_files: bool = False) -> Config:
    return parse_config({"server": server, "sources": sources or [SOURCE]}, base_dir=tmp_path,
                        check_files=check_files)


def problems(server: dict[str, Any], tmp_path: Path, **kwargs: Any) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(server, tmp_path, **kwargs)
    return caught.value.problems


@pytest.mark.parametrize("url", [
    f"postgresql://fbproxy:{PASSWORD}@127.0.0.1:5432/fbproxy",
    "postgres://db.example.org/fbproxy?sslmode=verify-full&application_name=fbproxy-a",
    "postgresql://fbproxy@/fbproxy?host=/run/postgresql",
    "postgresql:///fbproxy",
    f"postgresql://fbproxy:{PASSWORD}@[::1]:5433/fb%20proxy?sslrootcert=/etc/ssl/ca.pem",
    "postgresql://fbproxy:p%40ss%2Fw%3Ard%23@db/fbproxy",
    "POSTGRESQL://db/fbproxy",
])
def test_a_postgresql_url_is_kept_as_given(url: str, tmp_path: Path) -> None:
    database = parse({"database": url}, tmp_path, check_files=True).server.database
    assert database == PostgresUrl(url)
    assert isinstance(database, PostgresUrl) and database.url == url


def test_a_path_is_still_an_sqlite_file(tmp_path: Path) -> None:
    assert parse({"database": "var/db.sqlite3"}, tmp_path).server.database == \
        tmp_path / "var" / "db.sqlite3"
    assert parse({}, tmp_path).server.database == tmp_path / "fbproxy.sqlite3"


@pytest.mark.parametrize(("value", "message"), [
    ("mysql://db/fbproxy", "scheme 'mysql' is not supported; use a path (SQLite) or a "
                           "postgresql:// URL"),
    ("file:///var/lib/fbproxy/db.sqlite3", "scheme 'file' is not supported"),
    ("sqlite://db.sqlite3", "scheme 'sqlite' is not supported"),
    ("var/a://b", "not a URL; use a path (SQLite) or a postgresql:// URL"),
    ("postgresql:/fbproxy", "is not a URL; write postgresql://HOST/DATABASE"),
    ("postgres:fbproxy", "is not a URL; write postgresql://HOST/DATABASE"),
    ("postgresql://", "names no database"),
    (f"postgresql://fbproxy:{PASSWORD}@db", "names no database"),
    (f"postgresql://fbproxy:{PASSWORD}@db/", "names no database"),
    (f"postgresql://fbproxy:{PASSWORD}@db/a/b", "one database name, not a path (/a/b)"),
    (f"postgresql://fbproxy:{PASSWORD}@db:99999/fbproxy", "port must be a number from 1 to 65535"),
    (f"postgresql://fbproxy:{PASSWORD}@db:0/fbproxy", "port must be a number from 1 to 65535"),
    (f"postgresql://fbproxy:{PASSWORD}@db:http/fbproxy", "port must be a number"),
    (f"postgresql://fbproxy:{PASSWORD}@db1,db2/fbproxy", "names several hosts"),
    (f"postgresql://fbproxy:{PASSWORD}@[::1/fbproxy", "is not a valid URL"),
    (f"postgresql://fbproxy:{PASSWORD}@db/fbproxy?connect_timeout=5",
     "query parameter 'connect_timeout' is not supported; use sslmode, sslrootcert, sslcert, "
     "sslkey, application_name, host"),
    (f"postgresql://fbproxy@db/fbproxy?password={PASSWORD}",
     "query parameter 'password' is not supported"),
    (f"postgresql://fbproxy:{PASSWORD}@db/fbproxy?search_path=x", "'search_path' is not"),
    (f"postgresql://fbproxy:{PASSWORD}@db/fbproxy?sslmode=on", "sslmode 'on' is not valid"),
    (f"postgresql://fbproxy:{PASSWORD}@db/fbproxy?sslmode=require&sslmode=disable",
     "'sslmode' is given twice"),
    (f"postgresql://fbproxy:{PASSWORD}@db/fbproxy?host=db2", "must be a Unix socket folder"),
    (f"postgresql://fbproxy:{PASSWORD}@db/fbproxy?application_name=", "'application_name' is "
                                                                      "empty"),
    (f"postgresql://fbproxy:{PASSWORD}@db/fbproxy?sslmode", "not key=value pairs"),
    (f"postgresql://fbproxy:{PASSWORD}@db/fbproxy#main", "has an \"@\" or \"#\" after the host"),
    (f"postgresql://fbproxy:{PASSWORD}/x@db/fbproxy", "write \"/\" as %2F"),
    (f"postgresql://fbproxy:{PASSWORD}?x@db/fbproxy", "write \"/\" as %2F"),
    (f"postgresql://fbproxy:{PASSWORD} @db/fbproxy", "contains a space or a control character"),
])
def test_a_malformed_url_is_an_error_naming_the_key(value: str, message: str,
                                                    tmp_path: Path) -> None:
    (found,) = problems({"database": value}, tmp_path, check_files=True)
    assert found.startswith("server.database: ") and message in found, found
    assert PASSWORD not in found


def test_a_url_is_never_checked_as_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    checked: list[str] = []
    original = Reader.writable_file

    def spy(self: Reader, value: str, where: str) -> Path:
        checked.append(value)
        return original(self, value, where)

    monkeypatch.setattr(Reader, "writable_file", spy)
    parse({"database": "postgresql://db/fbproxy"}, tmp_path, check_files=True)
    problems({"database": "mysql://db/fbproxy"}, tmp_path, check_files=True)
    assert checked == []
    parse({"database": "db.sqlite3"}, tmp_path, check_files=True)
    assert checked == ["db.sqlite3"]


@pytest.mark.parametrize(("url", "shown"), [
    (f"postgresql://fbproxy:{PASSWORD}@db:5432/fbproxy", "postgresql://fbproxy:***@db:5432/fbproxy"),
    (f"postgresql://:{PASSWORD}@db/fbproxy", "postgresql://:***@db/fbproxy"),
    ("postgresql://fbproxy@db/fbproxy", "postgresql://fbproxy@db/fbproxy"),
    ("postgresql://db:5432/fbproxy?sslmode=require", "postgresql://db:5432/fbproxy?sslmode=require"),
    # An unencoded "@" or "/" in the password: the whole of it is still hidden.
    (f"postgresql://fbproxy:{PASSWORD}@x/y@db/fbproxy", "postgresql://fbproxy:***@db/fbproxy"),
    (f"postgresql://fbproxy:a/{PASSWORD}@db/fbproxy", "postgresql://fbproxy:***@db/fbproxy"),
    (f"postgresql://db/fbproxy?sslmode=require&password={PASSWORD}&sslpassword={PASSWORD}",
     "postgresql://db/fbproxy?sslmode=require&password=***&sslpassword=***"),
])
def test_display_masks_the_password(url: str, shown: str) -> None:
    database = PostgresUrl(url)
    assert database.display() == shown
    assert str(database) == shown and f"{database}" == shown
    assert repr(database) == f"PostgresUrl({shown!r})"


def test_no_repr_of_the_config_shows_the_password(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    key = Fernet.generate_key().decode()
    monkeypatch.setenv("FBPROXY_SECRETS_KEY", key)
    config = parse({"database": f"postgresql://fbproxy:{PASSWORD}@db/fbproxy",
                    "secrets_key_env": "FBPROXY_SECRETS_KEY"}, tmp_path)
    for shown in (repr(config), repr(config.server), str(config.server),
                  repr(config.server.database), str(config.server.database)):
        assert PASSWORD not in shown and key not in shown
        assert "postgresql://fbproxy:***@db/fbproxy" in shown


def test_the_url_from_an_environment_variable(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"postgresql://fbproxy:{PASSWORD}@db/fbproxy"
    monkeypatch.setenv("FBPROXY_DATABASE_URL", f"{url}\n")
    server = {"database_url_env": "FBPROXY_DATABASE_URL"}
    assert parse(server, tmp_path).server.database == PostgresUrl(url)
    monkeypatch.setenv("FBPROXY_DATABASE_URL", "")
    assert problems(server, tmp_path) == [
        "server.database_url_env: the variable FBPROXY_DATABASE_URL is empty; it must hold a "
        "postgresql:// URL"]
    monkeypatch.delenv("FBPROXY_DATABASE_URL")
    assert problems(server, tmp_path) == [
        "server.database_url_env: environment variable FBPROXY_DATABASE_URL is not set"]
    monkeypatch.setenv("FBPROXY_DATABASE_URL", f"/var/lib/{PASSWORD}.sqlite3")
    assert problems(server, tmp_path) == [
        "server.database_url_env: FBPROXY_DATABASE_URL does not hold a postgresql:// URL (a "
        "path to an SQLite file goes in server.database)"]
    monkeypatch.setenv("FBPROXY_DATABASE_URL", f"postgresql://fbproxy:{PASSWORD}@db:70000/fb")
    assert problems(server, tmp_path) == [
        "server.database_url_env: 'postgresql://fbproxy:***@db:70000/fb': the port must be a "
        "number from 1 to 65535 (read from FBPROXY_DATABASE_URL)"]
    assert problems({"database_url_env": ""}, tmp_path) == [
        "server.database_url_env: '' is not a non-empty string"]


def test_the_url_from_a_file(tmp_path: Path) -> None:
    url = f"postgresql://fbproxy:{PASSWORD}@db/fbproxy?sslmode=require"
    url_file = tmp_path / "database-url"
    url_file.write_text(f"{url}\n")
    url_file.chmod(0o600)
    server = {"database_url_file": "database-url"}
    assert parse(server, tmp_path).server.database == PostgresUrl(url)
    url_file.chmod(0o640)
    assert problems(server, tmp_path) == [
        f"server.database_url_file: {url_file} is readable by others; chmod 600 it"]
    url_file.chmod(0o600)
    url_file.write_text("  \n")
    assert problems(server, tmp_path) == [
        "server.database_url_file: the file database-url is empty; it must hold a "
        "postgresql:// URL"]
    url_file.write_text(f"mysql://fbproxy:{PASSWORD}@db/fbproxy")
    (found,) = problems(server, tmp_path)
    assert found.startswith("server.database_url_file: 'mysql://fbproxy:***@db/fbproxy': "
                            "scheme 'mysql' is not supported")
    url_file.unlink()
    assert problems(server, tmp_path) == [
        f"server.database_url_file: cannot read {url_file}: No such file or directory"]


@pytest.mark.parametrize("keys", [
    ("database", "database_url_env"), ("database", "database_url_file"),
    ("database_url_env", "database_url_file"),
    ("database", "database_url_env", "database_url_file")])
def test_only_one_way_to_name_the_database(keys: tuple[str, ...], tmp_path: Path) -> None:
    values = {"database": "db.sqlite3", "database_url_env": "FBPROXY_DATABASE_URL",
              "database_url_file": "database-url"}
    found = problems({key: values[key] for key in keys}, tmp_path)
    assert found == [f"server.{keys[0]}: give only one of "
                     + ", ".join(f"server.{key}" for key in keys)]


def test_token_files_default_to_the_config_folder_with_postgresql(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With PostgreSQL the tokens live in the database (tests/test_tokens.py): the files'
    defaults stay what they were, and nothing is checked about them."""
    monkeypatch.setenv("FBPROXY_SECRETS_KEY", Fernet.generate_key().decode())
    keyed = {"secrets_key_env": "FBPROXY_SECRETS_KEY"}
    microsoft = {"name": "m365", "kind": "microsoft", "client_id": "app"}
    sqlite = parse({"database": "state/db.sqlite3"}, tmp_path, sources=[GOOGLE, microsoft])
    assert sqlite.sources[0].google is not None and sqlite.sources[1].microsoft is not None
    assert sqlite.sources[0].google.token_file == tmp_path / "state" / "google-gcal.token.json"
    assert sqlite.sources[1].microsoft.token_cache_file == \
        tmp_path / "state" / "microsoft-m365.tokens.json"
    postgres = parse({"database": "postgresql://db/fbproxy", **keyed}, tmp_path,
                     sources=[GOOGLE, microsoft], check_files=True)
    assert postgres.sources[0].google is not None and postgres.sources[1].microsoft is not None
    assert postgres.sources[0].google.token_file == tmp_path / "google-gcal.token.json"
    assert postgres.sources[1].microsoft.token_cache_file == \
        tmp_path / "microsoft-m365.tokens.json"
    (tmp_path / "google-gcal.token.json").mkdir()  # unusable, and never used
    parse({"database": "postgresql://db/fbproxy", **keyed}, tmp_path, sources=[GOOGLE],
          check_files=True)


def test_lease_seconds_and_instance_name(tmp_path: Path) -> None:
    server = parse({}, tmp_path).server
    assert (server.lease_seconds, server.instance_name) == (30, None)
    server = parse({"lease_seconds": 5, "instance_name": "fbproxy-a.1"}, tmp_path).server
    assert (server.lease_seconds, server.instance_name) == (5, "fbproxy-a.1")
    assert parse({"lease_seconds": 600}, tmp_path).server.lease_seconds == 600
    assert problems({"lease_seconds": 4, "instance_name": "a b"}, tmp_path) == [
        "server.lease_seconds: 4 is out of range; use 5 to 600",
        "server.instance_name: 'a b' must be 1-64 letters, digits, '_', '.', '-'"]
    assert problems({"lease_seconds": 601}, tmp_path) == [
        "server.lease_seconds: 601 is out of range; use 5 to 600"]
    assert problems({"lease_seconds": "30s", "instance_name": 1}, tmp_path) == [
        "server.lease_seconds: '30s' is not a int", "server.instance_name: 1 is not a str"]


def test_secrets_key_from_an_environment_variable_or_a_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = Fernet.generate_key().decode()
    monkeypatch.setenv("FBPROXY_SECRETS_KEY", key)
    server = parse({"secrets_key_env": "FBPROXY_SECRETS_KEY"}, tmp_path).server
    assert server.secrets_key == key and key not in repr(server)
    key_file = tmp_path / "secrets.key"
    key_file.write_text(f"{key}\n")
    key_file.chmod(0o600)
    assert parse({"secrets_key_file": str(key_file)}, tmp_path).server.secrets_key == key
    assert parse({}, tmp_path).server.secrets_key is None
    monkeypatch.setenv("FBPROXY_SECRETS_KEY", key[:-4])
    (found,) = problems({"secrets_key_env": "FBPROXY_SECRETS_KEY"}, tmp_path)
    assert found.startswith("server.secrets_key_env: key 1 of 1 is not a Fernet key") and \
        key[:-4] not in found
    assert problems({"secrets_key_env": "FBPROXY_SECRETS_KEY", "secrets_key_file": "k"},
                    tmp_path) == [
        "server.secrets_key: give only one of secrets_key_env, secrets_key_file"]
    (found,) = problems({"secrets_key": key}, tmp_path)
    assert found.startswith("server.secrets_key: unknown key")
    monkeypatch.delenv("FBPROXY_SECRETS_KEY")
    assert problems({"secrets_key_env": "FBPROXY_SECRETS_KEY"}, tmp_path) == [
        "server.secrets_key_env: environment variable FBPROXY_SECRETS_KEY is not set"]


def test_a_changed_database_is_seen_on_reload(tmp_path: Path) -> None:
    """Runtime.reload refuses a changed database by comparing the two values."""
    def database(value: str) -> object:
        return parse({"database": value}, tmp_path).server.database

    assert database("postgresql://a:b@db/fbproxy") == database("postgresql://a:b@db/fbproxy")
    assert database("postgresql://a:b@db/fbproxy") != database("postgresql://a:c@db/fbproxy")
    assert database("postgresql://db/fbproxy") != database("fbproxy.sqlite3")


# -- the console script --------------------------------------------------------------------

# The console script runs this checkout's code (see tests/test_cli.py).
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(
    filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    "PYTHONWARNINGS": "ignore::FutureWarning:google.api_core._python_version_support"}


def check_config(folder: Path) -> subprocess.CompletedProcess[str]:
    fbproxy = str(Path(sys.executable).with_name("fbproxy"))
    return subprocess.run([fbproxy, "check-config", "--config", "config.toml"], cwd=folder,
                          capture_output=True, text=True, timeout=120, check=False, env=ENV)


@pytest.mark.clock_sensitive
def test_check_config_names_a_bad_url_and_hides_its_password(tmp_path: Path) -> None:
    sources = '[[sources]]\nname = "work"\nkind = "ics"\nurl = "work.ics"\n'
    config = tmp_path / "config.toml"
    config.write_text(f'[server]\ndatabase = "postgresql://fbproxy:{PASSWORD}@127.0.0.1:99999'
                      f'/fbproxy"\n{sources}')
    result = check_config(tmp_path)
    assert result.returncode == 2, result
    assert result.stderr.splitlines() == [
        f"config {config} has 1 problem(s):",
        "  - server.database: 'postgresql://fbproxy:***@127.0.0.1:99999/fbproxy': the port must "
        "be a number from 1 to 65535"]
    # A good URL passes without a connection (nothing listens on port 9).
    config.write_text(f'[server]\ndatabase = "postgresql://fbproxy:{PASSWORD}@127.0.0.1:9'
                      f'/fbproxy"\n{sources}')
    result = check_config(tmp_path)
    assert result.returncode == 0, result
    assert PASSWORD not in result.stdout + result.stderr
