"""Where the store lives: a SQLite file or a PostgreSQL URL, and the key for tokens in it.

``[server] database`` is a path (SQLite) or a ``postgresql://`` URL.
``database_url_env`` and ``database_url_file`` give the URL without writing its
password into the config. A URL is checked here without connecting: its scheme,
host, port, database name and query parameters. A value with "://" is never
taken for a path, so a mistyped URL is an error, not a file named "mysql:".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

from server.config.reader import NAME_PATTERN, Reader, read_int

__all__ = ["PostgresUrl", "parse_postgres_url", "read_database", "read_instance_name",
           "read_lease_seconds", "state_folder"]

SCHEMES = ("postgresql", "postgres")
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
# asyncpg turns every query parameter it does not know into a server setting sent at
# connect time, so an unchecked typo would fail only then (or silently set something).
# These are the ones it reads itself, plus application_name (a real server setting).
# connect_timeout is not among them: asyncpg would send it to the server as a setting,
# which PostgreSQL rejects.
QUERY_KEYS = ("sslmode", "sslrootcert", "sslcert", "sslkey", "application_name", "host")
DATABASE_KEYS = ("database", "database_url_env", "database_url_file")
LEASE_SECONDS = 30
_LOOKS_LIKE_POSTGRES = re.compile(r"(?i)postgres(ql)?:")
_QUERY_PASSWORD = re.compile(r"(?i)([?&](?:ssl)?password=)[^&#]*")
_WHITESPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]")
# Stands in for a URL that failed its check: the config is refused anyway.
_INVALID = "postgresql://invalid/invalid"


@dataclass(frozen=True)
class PostgresUrl:
    """A PostgreSQL connection URL (libpq's form), checked but never connected to here."""

    # It may carry a password: repr() and str() show it masked (display()).
    url: str = field(repr=False)

    def display(self) -> str:
        """The URL with its password replaced by ``***``, for logs and messages."""
        # libpq also takes a password as a query parameter (refused, but shown in
        # the message that refuses it).
        url = _QUERY_PASSWORD.sub(r"\1***", self.url)
        scheme, sep, rest = url.partition("://")
        # The user info ends at the last "@": a password with an unencoded "/", "?"
        # or "#" (which a URL parser would cut short) is still masked whole.
        userinfo, at, tail = rest.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        if not sep or not at or not colon:
            return url
        return f"{scheme}://{user}:***@{tail}"

    def __str__(self) -> str:
        return self.display()

    def __repr__(self) -> str:  # dataclass keeps a __repr__ the class defines
        return f"PostgresUrl({self.display()!r})"


def parse_postgres_url(value: str) -> PostgresUrl:
    """``value`` as a PostgresUrl; ValueError saying what is wrong (password masked)."""
    url = PostgresUrl(value)
    shown = url.display()
    if _WHITESPACE_OR_CONTROL.search(value):
        raise ValueError(f"{shown!r} contains a space or a control character")
    try:
        parts = urlsplit(value)
    except ValueError as exc:  # an unclosed "[" of an IPv6 address
        raise ValueError(f"{shown!r} is not a valid URL: {exc}") from None
    if parts.scheme not in SCHEMES:
        what = f"scheme {parts.scheme!r} is not supported" if parts.scheme else "not a URL"
        raise ValueError(f"{shown!r}: {what}; use a path (SQLite) or a postgresql:// URL")
    if not value[len(parts.scheme):].startswith("://"):
        raise ValueError(f"{shown!r} is not a URL; write postgresql://HOST/DATABASE")
    after_host = value[len(parts.scheme) + 3 + len(parts.netloc):]
    if "@" in after_host or "#" in after_host:
        # Likely a password with a character that ends the host part; else a fragment.
        raise ValueError(f"{shown!r} has an \"@\" or \"#\" after the host: in the password, "
                         "write \"/\" as %2F, \"?\" as %3F, \"#\" as %23 and \"@\" as %40")
    _check_host_and_port(parts, shown)
    if "/" in parts.path[1:]:
        raise ValueError(f"{shown!r}: after the host comes one database name, not a path "
                         f"({parts.path})")
    if not unquote(parts.path.removeprefix("/")):
        raise ValueError(f"{shown!r} names no database; end it with one, e.g. "
                         "postgresql://fbproxy@localhost/fbproxy")
    _check_query(parts.query, shown)
    return url


def _check_host_and_port(parts: SplitResult, shown: str) -> None:
    if "," in parts.netloc.rpartition("@")[2]:
        raise ValueError(f"{shown!r} names several hosts; give one")
    try:
        port = parts.port
    except ValueError:  # urllib: "Port out of range 0-65535", "Port could not be cast ..."
        port = 0
    if port == 0:
        raise ValueError(f"{shown!r}: the port must be a number from 1 to 65535")


def _check_query(query: str, shown: str) -> None:
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise ValueError(f"{shown!r}: the query is not key=value pairs joined by &") from None
    keys = [key for key, _ in pairs]
    for key, value in pairs:
        if key not in QUERY_KEYS:
            raise ValueError(f"{shown!r}: query parameter {key!r} is not supported; "
                             f"use {', '.join(QUERY_KEYS)}")
        if keys.count(key) > 1:
            raise ValueError(f"{shown!r}: query parameter {key!r} is given twice")
        if key == "sslmode" and value not in SSL_MODES:
            raise ValueError(f"{shown!r}: sslmode {value!r} is not valid; use "
                             f"{', '.join(SSL_MODES)}")
        if key == "host" and not value.startswith("/"):
            # A host belongs before the database name; here only a socket folder fits.
            raise ValueError(f"{shown!r}: query parameter host must be a Unix socket folder "
                             "(an absolute path); put a host name after postgresql://")
        if not value:
            raise ValueError(f"{shown!r}: query parameter {key!r} is empty")


def read_database(raw: Mapping[str, Any], reader: Reader) -> Path | PostgresUrl:
    """``database`` (a path or a URL), ``database_url_env`` or ``database_url_file``."""
    given = [key for key in DATABASE_KEYS if key in raw]
    if len(given) > 1:
        reader.fail(f"server.{given[0]}", "give only one of "
                    + ", ".join(f"server.{key}" for key in given))
        return Path("fbproxy.sqlite3")
    if given and given[0] != "database":
        return _database_url(raw, given[0], reader)
    value = reader.typed(raw, "database", "server.database", str, "fbproxy.sqlite3")
    assert value is not None
    return _path_or_url(value, "server.database", reader)


def _path_or_url(value: str, where: str, reader: Reader) -> Path | PostgresUrl:
    if "://" in value or _LOOKS_LIKE_POSTGRES.match(value):
        try:
            return parse_postgres_url(value)
        except ValueError as exc:
            reader.fail(where, str(exc))
            return PostgresUrl(_INVALID)
    if not value.strip():
        reader.fail(where, "is empty; give a file path or a postgresql:// URL")
    return reader.writable_file(value, where)


def _database_url(raw: Mapping[str, Any], key: str, reader: Reader) -> Path | PostgresUrl:
    """The URL from an environment variable or a file (read like every ``*_file`` secret)."""
    where = f"server.{key}"
    # Reader.secret reads database_url_env / database_url_file with the conventions
    # of every secret: a variable that is set, a file not readable by others.
    url = reader.secret({key: raw[key]}, "database_url", "server.database_url")
    if url is None:
        return Path("fbproxy.sqlite3")
    if not url:
        reader.fail(where, f"{'the variable' if key.endswith('_env') else 'the file'} "
                    f"{raw[key]} is empty; it must hold a postgresql:// URL")
        return Path("fbproxy.sqlite3")
    if "://" not in url and not _LOOKS_LIKE_POSTGRES.match(url):
        # Not echoed: whatever the file or variable holds may be a secret.
        reader.fail(where, f"{raw[key]} does not hold a postgresql:// URL (a path to an "
                    "SQLite file goes in server.database)")
        return PostgresUrl(_INVALID)
    try:
        return parse_postgres_url(url)
    except ValueError as exc:
        reader.fail(where, f"{exc} (read from {raw[key]})")
        return PostgresUrl(_INVALID)


def state_folder(database: Path | PostgresUrl, reader: Reader) -> Path:
    """Where token files go by default: next to an SQLite file; with PostgreSQL,
    which has no folder of ours, the config file's folder."""
    return database.parent if isinstance(database, Path) else reader.base_dir


def read_lease_seconds(raw: Mapping[str, Any], reader: Reader) -> int:
    value = read_int(raw, "lease_seconds", "server", reader, LEASE_SECONDS, low=5, high=600)
    return LEASE_SECONDS if value is None else value


def read_instance_name(raw: Mapping[str, Any], reader: Reader) -> str | None:
    name = reader.typed(raw, "instance_name", "server.instance_name", str)
    if name is not None and not NAME_PATTERN.fullmatch(name):
        reader.fail("server.instance_name", f"{name!r} must be 1-64 letters, digits, "
                    "'_', '.', '-'")
        return None
    return name
