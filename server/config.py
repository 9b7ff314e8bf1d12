"""The TOML config file turned into frozen, fully validated dataclasses.

Every problem is collected (not just the first) and names its key path, the
bad value and what would be valid. Relative paths are read relative to the
config file's folder, so a config works from any working directory.
"""

from __future__ import annotations

import os
import re
import ssl
import stat
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from server.durations import parse_duration
from server.errors import ConfigError

SOURCE_KINDS = ("ics", "caldav")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
SECRET_PATTERN = re.compile(r"^[A-Za-z0-9_~.-]{16,256}$")
MIN_POLL_INTERVAL = timedelta(seconds=10)
_SIZE = re.compile(r"^(\d+)\s*(b|kb|kib|mb|mib|gb|gib)?$", re.IGNORECASE)
_SIZE_FACTOR = {
    "b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2, "gb": 1000**3, "gib": 1024**3,
}

T = TypeVar("T")


class Secret(str):
    """A string that does not show itself in reprs, logs or tracebacks."""

    def __repr__(self) -> str:
        return "Secret('***')"


@dataclass(frozen=True)
class ServerConfig:
    listen_host: str = "127.0.0.1"
    listen_port: int = 8080
    base_url: str = "http://127.0.0.1:8080"
    database: Path = Path("fbproxy.sqlite3")
    timezone: str = "UTC"
    horizon_days: int = 120

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True)
class SourceConfig:
    name: str
    kind: str
    url: str
    poll_interval: timedelta
    stale_after: timedelta
    timezone: str
    enabled: bool = True
    owner_emails: tuple[str, ...] = ()
    timeout: timedelta = timedelta(seconds=30)
    max_bytes: int = 20 * 1024 * 1024
    username: str | None = None
    password: Secret | None = field(default=None, repr=False)
    calendars: tuple[str, ...] = ()
    hold_calendar: str | None = None
    ca_file: str | None = None

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True)
class CalendarConfig:
    name: str
    sources: tuple[str, ...]
    # None: generated on first start and kept in the database.
    secret: Secret | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Config:
    server: ServerConfig
    sources: tuple[SourceConfig, ...]
    calendars: tuple[CalendarConfig, ...]
    path: Path | None = None

    def source(self, name: str) -> SourceConfig:
        return next(s for s in self.sources if s.name == name)

    def calendar(self, name: str) -> CalendarConfig | None:
        return next((c for c in self.calendars if c.name == name), None)


class _Reader:
    """Collects problems while reading a TOML table, each with its key path."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self.problems: list[str] = []

    def fail(self, key: str, message: str) -> None:
        self.problems.append(f"{key}: {message}")

    def table(self, raw: Mapping[str, Any], key: str, allowed: set[str]) -> Mapping[str, Any]:
        for unknown in sorted(set(raw) - allowed):
            path = f"{key}.{unknown}" if key else unknown
            self.fail(path, f"unknown key; valid keys here are {', '.join(sorted(allowed))}")
        return raw

    def typed(self, raw: Mapping[str, Any], key: str, path: str, kind: type[T],
              default: T | None = None, required: bool = False) -> T | None:
        if key not in raw:
            if required:
                self.fail(path, "is required")
            return default
        value = raw[key]
        # bool is an int subclass: "port = true" must not pass as a number.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self.fail(path, f"{value!r} is not a {kind.__name__}")
            return default
        return value

    def converted(self, raw: Mapping[str, Any], key: str, path: str, default: T,
                  convert: Callable[[Any], T]) -> T:
        if key not in raw:
            return default
        try:
            return convert(raw[key])
        except (ValueError, TypeError) as exc:
            self.fail(path, str(exc))
            return default

    def secret(self, raw: Mapping[str, Any], key: str, path: str) -> Secret | None:
        """Read ``key``, ``key_env`` or ``key_file`` (at most one of them)."""
        given = [k for k in (key, f"{key}_env", f"{key}_file") if k in raw]
        if len(given) > 1:
            self.fail(path, f"give only one of {', '.join(given)}")
            return None
        if not given:
            return None
        which = given[0]
        value = raw[which]
        where = f"{path}{which[len(key):]}"
        if not isinstance(value, str) or not value:
            self.fail(where, f"{value!r} is not a non-empty string")
            return None
        if which.endswith("_env"):
            if value not in os.environ:
                self.fail(where, f"environment variable {value} is not set")
                return None
            return Secret(os.environ[value].strip())
        if which.endswith("_file"):
            return self._secret_file(value, where)
        return Secret(value)

    def _secret_file(self, name: str, where: str) -> Secret | None:
        # "${CREDENTIALS_DIRECTORY}/feed" reads a systemd credential (LoadCredential=).
        file_path = self.path(os.path.expandvars(name))
        try:
            text = file_path.read_text(encoding="utf-8").strip()
            mode = file_path.stat().st_mode
        except OSError as exc:
            self.fail(where, f"cannot read {file_path}: {exc.strerror}")
            return None
        # systemd grants credentials through an ACL that shows as group bits: trust its folder.
        if mode & (stat.S_IRWXG | stat.S_IRWXO) and not _in_credentials_directory(file_path):
            self.fail(where, f"{file_path} is readable by others; chmod 600 it")
            return None
        return Secret(text)

    def path(self, value: str) -> Path:
        expanded = Path(os.path.expanduser(value))
        return expanded if expanded.is_absolute() else (self.base_dir / expanded)

    def zone(self, raw: Mapping[str, Any], path: str, default: str) -> str:
        name = self.typed(raw, "timezone", path, str, default)
        assert name is not None
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            self.fail(path, f"{name!r} is not an IANA time zone; use e.g. \"Europe/Berlin\"")
            return default
        return name


def _in_credentials_directory(path: Path) -> bool:
    folder = os.environ.get("CREDENTIALS_DIRECTORY")
    return folder is not None and path.resolve().is_relative_to(Path(folder).resolve())


def _parse_listen(value: object) -> tuple[str, int]:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a string like \"127.0.0.1:8080\"")
    host, sep, port_text = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(
            f"{value!r} is not HOST:PORT; use e.g. \"127.0.0.1:8080\" or \"[::1]:8080\"")
    return host, int(port_text)


def _parse_size(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    match = _SIZE.match(value.strip()) if isinstance(value, str) else None
    if not match:
        raise ValueError(f"{value!r} is not a size; use bytes or e.g. \"20MiB\", \"500KB\"")
    return int(match.group(1)) * _SIZE_FACTOR[(match.group(2) or "b").lower()]


def _parse_duration_value(value: object) -> timedelta:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a duration; use e.g. \"5m\", \"30s\", \"1h\"")
    return parse_duration(value)


def _check_source_url(kind: str, url: str, reader: _Reader, path: str) -> str:
    scheme = urlsplit(url).scheme.lower()
    if kind == "caldav" and scheme not in ("http", "https"):
        reader.fail(path, f"{url!r}: a CalDAV source needs an http(s):// URL (the server, "
                          "your principal or one calendar)")
        return url
    if scheme in ("http", "https", "webcal", "webcals"):
        if not urlsplit(url).hostname:
            reader.fail(path, f"{url!r} has no host")
        return url
    if scheme == "file":
        return str(reader.path(urlsplit(url).path))
    if scheme and len(scheme) > 1:
        reader.fail(path, f"{url!r}: scheme {scheme!r} is not supported; use a path, "
                          "file://, http(s):// or webcal://")
        return url
    return str(reader.path(url))


_SERVER_KEYS = {"listen", "base_url", "database", "timezone", "horizon_days"}
_COMMON_SOURCE_KEYS = {
    "name", "kind", "url", "poll_interval", "stale_after", "timezone", "enabled", "owner_emails",
    "timeout", "username", "password", "password_env", "password_file", "ca_file",
}
# Keys only one kind understands; elsewhere they are errors, not silently ignored.
_KIND_KEYS: dict[str, set[str]] = {
    "ics": {"max_bytes"},
    "caldav": {"calendars", "hold_calendar"},
}
_SOURCE_KEYS = _COMMON_SOURCE_KEYS.union(*_KIND_KEYS.values())
_DEFAULT_POLL = {"ics": timedelta(minutes=5), "caldav": timedelta(minutes=1)}
_CALENDAR_KEYS = {"name", "sources", "secret", "secret_env", "secret_file"}


def _read_server(raw: Mapping[str, Any], reader: _Reader) -> ServerConfig:
    reader.table(raw, "server", _SERVER_KEYS)
    host, port = reader.converted(raw, "listen", "server.listen", ("127.0.0.1", 8080),
                                  _parse_listen)
    shown_host = f"[{host}]" if ":" in host else host
    base_url = reader.typed(raw, "base_url", "server.base_url", str,
                            f"http://{shown_host}:{port}")
    assert base_url is not None
    if urlsplit(base_url).scheme not in ("http", "https") or not urlsplit(base_url).netloc:
        reader.fail("server.base_url", f"{base_url!r} is not an http(s) URL")
    database = reader.typed(raw, "database", "server.database", str, "fbproxy.sqlite3")
    horizon = reader.typed(raw, "horizon_days", "server.horizon_days", int, 120)
    assert horizon is not None and database is not None
    if not 1 <= horizon <= 1000:
        reader.fail("server.horizon_days", f"{horizon} is out of range; use 1 to 1000")
        horizon = 120
    return ServerConfig(
        listen_host=host, listen_port=port, base_url=base_url.rstrip("/"),
        database=reader.path(database), timezone=reader.zone(raw, "server.timezone", "UTC"),
        horizon_days=horizon,
    )


def _read_name(raw: Mapping[str, Any], path: str, reader: _Reader, seen: set[str]) -> str:
    name = reader.typed(raw, "name", f"{path}.name", str, "", required=True) or ""
    if name and not NAME_PATTERN.match(name):
        reader.fail(f"{path}.name", f"{name!r} must be 1-64 letters, digits, '_', '.', '-'")
    elif name in seen:
        reader.fail(f"{path}.name", f"{name!r} is used twice; names must be unique")
    seen.add(name)
    return name


def _read_source(raw: Mapping[str, Any], path: str, reader: _Reader, server: ServerConfig,
                 seen: set[str]) -> SourceConfig:
    name = _read_name(raw, path, reader, seen)
    kind = reader.typed(raw, "kind", f"{path}.kind", str, "ics", required=True) or "ics"
    if kind not in SOURCE_KINDS:
        reader.fail(f"{path}.kind", f"{kind!r} is not a source kind; use one of {SOURCE_KINDS}")
    reader.table(raw, path, _COMMON_SOURCE_KEYS | _KIND_KEYS.get(kind, set()))
    url = reader.typed(raw, "url", f"{path}.url", str, "", required=True) or ""
    if url:
        url = _check_source_url(kind, url, reader, f"{path}.url")
    poll = reader.converted(raw, "poll_interval", f"{path}.poll_interval",
                            _DEFAULT_POLL.get(kind, timedelta(minutes=5)), _parse_duration_value)
    if poll < MIN_POLL_INTERVAL:
        reader.fail(f"{path}.poll_interval", f"{poll} is too short; use at least \"10s\"")
    default_stale = max(3 * poll, timedelta(minutes=15))
    stale = reader.converted(raw, "stale_after", f"{path}.stale_after", default_stale,
                             _parse_duration_value)
    username = reader.typed(raw, "username", f"{path}.username", str)
    # CalDAV accounts are usually named by the owner's address (iCloud, Fastmail).
    default_emails = [username] if kind == "caldav" and username and "@" in username else []
    emails = reader.typed(raw, "owner_emails", f"{path}.owner_emails", list, default_emails)
    if emails and not all(isinstance(e, str) and "@" in e for e in emails):
        reader.fail(f"{path}.owner_emails", f"{emails!r} must be a list of e-mail addresses")
        emails = []
    calendars = reader.typed(raw, "calendars", f"{path}.calendars", list, [])
    if calendars and not all(isinstance(c, str) and c for c in calendars):
        reader.fail(f"{path}.calendars", f"{calendars!r} must be a list of calendar names or "
                    "URLs")
        calendars = []
    return SourceConfig(
        name=name, kind=kind, url=url, poll_interval=poll, stale_after=stale,
        timezone=reader.zone(raw, f"{path}.timezone", server.timezone),
        enabled=bool(reader.typed(raw, "enabled", f"{path}.enabled", bool, True)),
        owner_emails=tuple(e.lower() for e in emails or ()),
        timeout=reader.converted(raw, "timeout", f"{path}.timeout", timedelta(seconds=30),
                                 _parse_duration_value),
        max_bytes=reader.converted(raw, "max_bytes", f"{path}.max_bytes", 20 * 1024 * 1024,
                                   _parse_size),
        username=username,
        password=reader.secret(raw, "password", f"{path}.password"),
        calendars=tuple(calendars or ()),
        hold_calendar=reader.typed(raw, "hold_calendar", f"{path}.hold_calendar", str),
        ca_file=_read_ca_file(raw, f"{path}.ca_file", reader),
    )


def _read_ca_file(raw: Mapping[str, Any], path: str, reader: _Reader) -> str | None:
    """A PEM bundle to trust for this source (a self-hosted server's own certificate)."""
    name = reader.typed(raw, "ca_file", path, str)
    if name is None:
        return None
    file_path = reader.path(name)
    try:
        ssl.create_default_context(cafile=str(file_path))
    except (OSError, ssl.SSLError) as exc:
        reader.fail(path, f"cannot use {file_path} as a CA bundle: {exc}")
        return None
    return str(file_path)


def _read_calendar(raw: Mapping[str, Any], path: str, reader: _Reader, source_names: set[str],
                   seen: set[str]) -> CalendarConfig:
    reader.table(raw, path, _CALENDAR_KEYS)
    name = _read_name(raw, path, reader, seen)
    sources = reader.typed(raw, "sources", f"{path}.sources", list, [], required=True) or []
    if "sources" in raw and not sources:
        reader.fail(f"{path}.sources", "is empty; name at least one source")
    for index, source in enumerate(sources):
        if source not in source_names:
            reader.fail(f"{path}.sources[{index}]", f"{source!r} is not the name of a source; "
                        f"known sources: {', '.join(sorted(source_names)) or 'none'}")
    secret = reader.secret(raw, "secret", f"{path}.secret")
    if secret is not None and not SECRET_PATTERN.match(secret):
        reader.fail(f"{path}.secret", "must be 16-256 URL-safe characters (A-Z a-z 0-9 _ - . ~); "
                    "generate one with: "
                    "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'")
    return CalendarConfig(name=name, sources=tuple(str(s) for s in sources), secret=secret)


def _list_of_tables(raw: Mapping[str, Any], key: str, reader: _Reader) -> list[Mapping[str, Any]]:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        reader.fail(key, f"must be an array of tables ([[{key}]])")
        return []
    return value


def parse_config(raw: Mapping[str, Any], *, base_dir: Path, path: Path | None = None) -> Config:
    """Validate a parsed TOML document; raise ConfigError listing every problem."""
    reader = _Reader(base_dir)
    reader.table(raw, "", {"server", "sources", "calendars"})
    server_raw = raw.get("server", {})
    if not isinstance(server_raw, dict):
        reader.fail("server", "must be a table ([server])")
        server_raw = {}
    server = _read_server(server_raw, reader)
    names: set[str] = set()
    sources = tuple(
        _read_source(table, f"sources[{i}]", reader, server, names)
        for i, table in enumerate(_list_of_tables(raw, "sources", reader))
    )
    calendar_names: set[str] = set()
    calendars = tuple(
        _read_calendar(table, f"calendars[{i}]", reader, {s.name for s in sources}, calendar_names)
        for i, table in enumerate(_list_of_tables(raw, "calendars", reader))
    )
    secrets = [c.secret for c in calendars if c.secret is not None]
    if len(secrets) != len(set(secrets)):
        reader.fail("calendars", "two calendars share a secret; give each its own")
    if reader.problems:
        raise ConfigError(reader.problems, path=str(path or ""))
    return Config(server=server, sources=sources, calendars=calendars, path=path)


def load_config(path: str | Path) -> Config:
    """Read and validate the config file at ``path``."""
    config_path = Path(path).resolve()
    try:
        raw = tomllib.loads(config_path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError([f"cannot read the file: {exc.strerror}"], path=str(path)) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"not valid TOML: {exc}"], path=str(path)) from exc
    return parse_config(raw, base_dir=config_path.parent, path=config_path)
