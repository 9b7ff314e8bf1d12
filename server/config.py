"""The TOML config file turned into frozen, fully validated dataclasses.

Every problem is collected (not just the first) and names its key path, the
bad value and what would be valid. Relative paths are read relative to the
config file's folder, so a config works from any working directory.
"""

from __future__ import annotations

import json
import os
import re
import ssl
import stat
import string
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, time, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from server.durations import format_duration, parse_duration
from server.errors import ConfigError

SOURCE_KINDS = ("ics", "caldav")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
SECRET_PATTERN = re.compile(r"^[A-Za-z0-9_~.-]{16,256}$")
MIN_POLL_INTERVAL = timedelta(seconds=10)
_SIZE = re.compile(r"^(\d+)\s*(b|kb|kib|mb|mib|gb|gib)?$", re.IGNORECASE)
_SIZE_FACTOR = {
    "b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2, "gb": 1000**3, "gib": 1024**3,
}

# Booking pages.
SLUG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
QUESTION_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index 0 = Monday, as date.weekday()
BOOKING_MODES = ("collective", "round_robin")
HOLD_STATUSES = ("tentative", "confirmed")
QUESTION_KINDS = ("text", "textarea")
HOLD_SOURCE_KINDS = ("caldav",)  # source kinds whose adapter can write holds
HOLD_TITLE_FIELDS = ("title", "guest_name", "guest_email", "host")
VIDEO_LINK_FIELDS = ("random", "booking_id")
_RANGE = re.compile(r"^(\d\d):(\d\d)\s*-\s*(\d\d):(\d\d)$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")
_CONTROL_BUT_NEWLINE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x85\u2028\u2029]")

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


# An opening [start, end) on one day; an end of time(0) is midnight at the day's end ("24:00").
TimeRange = tuple[time, time]

DEFAULT_WEEKLY_HOURS: Mapping[int, tuple[TimeRange, ...]] = MappingProxyType(
    {day: ((time(9), time(17)),) if day < 5 else () for day in range(7)})


@dataclass(frozen=True)
class HoldTargetConfig:
    """Where the holds of one host's bookings are written."""

    source: str  # a [[sources]] entry of a kind in HOLD_SOURCE_KINDS
    calendar: str  # the table's ``calendar``, else the source's ``hold_calendar``


@dataclass(frozen=True)
class QuestionConfig:
    """An extra field of the booking form."""

    name: str
    label: str
    required: bool = False
    max_length: int = 500
    kind: str = "text"  # "text" (one line) | "textarea"


@dataclass(frozen=True)
class BookingPageConfig:
    """One ``[[booking_pages]]`` entry; times of day are in ``timezone``."""

    slug: str
    title: str
    hosts: tuple[str, ...]  # names of [[calendars]]
    durations: tuple[timedelta, ...]  # non-empty, in the order given; the guest picks one
    slot_step: timedelta
    timezone: str = "UTC"
    description: str = ""
    mode: str = "collective"  # "collective" | "round_robin"
    resources: tuple[str, ...] = ()  # names of [[calendars]] that must be free too
    # Every weekday 0 (Monday) .. 6 is a key; a closed day maps to ().
    weekly_hours: Mapping[int, tuple[TimeRange, ...]] = field(
        default_factory=lambda: DEFAULT_WEEKLY_HOURS, hash=False)
    # A date here replaces its weekday's hours; () closes the day.
    date_overrides: Mapping[date, tuple[TimeRange, ...]] = field(
        default_factory=lambda: MappingProxyType({}), hash=False)
    buffer_before: timedelta = timedelta(0)
    buffer_after: timedelta = timedelta(0)
    minimum_notice: timedelta = timedelta(hours=4)
    max_days_ahead: int = 60
    daily_limit: int | None = None
    tentative_blocks: bool = True
    # Host calendar name -> target; hosts without an entry get no hold.
    hold_target: Mapping[str, HoldTargetConfig] = field(
        default_factory=lambda: MappingProxyType({}), hash=False)
    hold_title: str = "{title}: {guest_name}"
    hold_status: str = "tentative"  # "tentative" | "confirmed"
    video_link: str | None = None
    questions: tuple[QuestionConfig, ...] = ()

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def hours_on(self, day: date) -> tuple[TimeRange, ...]:
        """The openings of ``day``: its override if there is one, else its weekday's hours."""
        if day in self.date_overrides:
            return self.date_overrides[day]
        return self.weekly_hours.get(day.weekday(), ())


@dataclass(frozen=True)
class Config:
    server: ServerConfig
    sources: tuple[SourceConfig, ...]
    calendars: tuple[CalendarConfig, ...]
    booking_pages: tuple[BookingPageConfig, ...] = ()
    path: Path | None = None

    def source(self, name: str) -> SourceConfig:
        return next(s for s in self.sources if s.name == name)

    def calendar(self, name: str) -> CalendarConfig | None:
        return next((c for c in self.calendars if c.name == name), None)

    def booking_page(self, slug: str) -> BookingPageConfig | None:
        return next((p for p in self.booking_pages if p.slug == slug), None)


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
    name = reader.typed(raw, "name", f"{path}.name", str, required=True)
    if name is None:
        return ""
    if not NAME_PATTERN.match(name):
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
        if not isinstance(source, str) or source not in source_names:
            reader.fail(f"{path}.sources[{index}]", f"{source!r} is not the name of a source; "
                        f"known sources: {', '.join(sorted(source_names)) or 'none'}")
    secret = reader.secret(raw, "secret", f"{path}.secret")
    if secret is not None and not SECRET_PATTERN.match(secret):
        reader.fail(f"{path}.secret", "must be 16-256 URL-safe characters (A-Z a-z 0-9 _ - . ~); "
                    "generate one with: "
                    "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'")
    return CalendarConfig(name=name, sources=tuple(str(s) for s in sources), secret=secret)


_BOOKING_PAGE_KEYS = {
    "slug", "title", "description", "hosts", "mode", "resources", "duration", "slot_step",
    "timezone", "hours", "date_overrides", "buffer_before", "buffer_after", "minimum_notice",
    "max_days_ahead", "daily_limit", "tentative_blocks", "hold_target", "hold_title",
    "hold_status", "video_link", "questions",
}
_HOLD_TARGET_KEYS = {"source", "calendar"}
_QUESTION_KEYS = {"name", "label", "required", "max_length", "kind"}
_ONE_MINUTE = timedelta(minutes=1)
_ONE_DAY = timedelta(days=1)


@dataclass(frozen=True)
class _Known:
    """What booking pages may refer to, read before them."""

    server: ServerConfig
    sources: Mapping[str, SourceConfig]
    calendars: set[str]


def _shown(value: object) -> str:
    """A value as the message shows it: strings in double quotes, like in the TOML file."""
    return json.dumps(value, ensure_ascii=False) if isinstance(value, str) else repr(value)


def _read_booking_page(raw: Mapping[str, Any], path: str, reader: _Reader, known: _Known,
                       seen_slugs: set[str]) -> BookingPageConfig:
    reader.table(raw, path, _BOOKING_PAGE_KEYS)
    # Read in the documented key order, so problems are listed in that order too.
    slug = _read_slug(raw, path, reader, seen_slugs)
    title = _read_text(raw, "title", path, reader, limit=200, required=True)
    description = _read_text(raw, "description", path, reader, limit=2000, multiline=True)
    hosts = _read_calendar_refs(raw, "hosts", path, reader, known, required=True)
    mode = _read_choice(raw, "mode", path, reader, BOOKING_MODES)
    resources = _read_calendar_refs(raw, "resources", path, reader, known, required=False)
    for index, name in enumerate(resources):
        if name in hosts:
            reader.fail(f"{path}.resources[{index}]",
                        f"{_shown(name)} is also a host; a calendar is either a host or a resource")
    durations = _read_durations(raw, path, reader)
    slot_step = _read_duration(raw, "slot_step", path, reader,
                               min(durations, default=timedelta(minutes=30)),
                               low=_ONE_MINUTE, whole_minutes=True)
    timezone = reader.zone(raw, f"{path}.timezone", known.server.timezone)
    weekly_hours = _read_hours(raw, path, reader)
    date_overrides = _read_date_overrides(raw, path, reader)
    buffer_before = _read_duration(raw, "buffer_before", path, reader, timedelta(0))
    buffer_after = _read_duration(raw, "buffer_after", path, reader, timedelta(0))
    minimum_notice = _read_duration(raw, "minimum_notice", path, reader, timedelta(hours=4),
                                    high=timedelta(days=365))
    max_days_ahead = _read_max_days_ahead(raw, path, reader, known.server)
    if minimum_notice >= timedelta(days=max_days_ahead):
        reader.fail(f"{path}.minimum_notice", f"{_shown_duration(minimum_notice)} reaches "
                    f"past max_days_ahead ({max_days_ahead} days); nothing could ever be booked")
    return BookingPageConfig(
        slug=slug, title=title, description=description, hosts=hosts, mode=mode,
        resources=resources, durations=durations, slot_step=slot_step, timezone=timezone,
        weekly_hours=weekly_hours, date_overrides=date_overrides, buffer_before=buffer_before,
        buffer_after=buffer_after, minimum_notice=minimum_notice, max_days_ahead=max_days_ahead,
        daily_limit=_read_int(raw, "daily_limit", path, reader, None, low=1),
        tentative_blocks=bool(reader.typed(raw, "tentative_blocks", f"{path}.tentative_blocks",
                                           bool, True)),
        hold_target=_read_hold_target(raw, path, reader, hosts, known),
        hold_title=_read_template(raw, "hold_title", path, reader, "{title}: {guest_name}",
                                  HOLD_TITLE_FIELDS),
        hold_status=_read_choice(raw, "hold_status", path, reader, HOLD_STATUSES),
        video_link=_read_video_link(raw, path, reader),
        questions=_read_questions(raw, path, reader),
    )


def _read_slug(raw: Mapping[str, Any], path: str, reader: _Reader, seen: set[str]) -> str:
    slug = reader.typed(raw, "slug", f"{path}.slug", str, required=True)
    if slug is None:
        return ""
    if not SLUG_PATTERN.match(slug):
        reader.fail(f"{path}.slug", f"{_shown(slug)} must be 1-64 lowercase letters, digits and "
                    "'-', starting with a letter or digit (it is part of the page's URL)")
    elif slug in seen:
        reader.fail(f"{path}.slug", f"{_shown(slug)} is used twice; slugs must be unique")
    seen.add(slug)
    return slug


def _read_text(raw: Mapping[str, Any], key: str, path: str, reader: _Reader, *, limit: int,
               required: bool = False, multiline: bool = False) -> str:
    """Plain text shown to guests: bounded, and free of control characters."""
    where = f"{path}.{key}"
    text = reader.typed(raw, key, where, str, required=required)
    if text is None:
        return ""
    if required and not text.strip():
        reader.fail(where, "is empty")
    elif len(text) > limit:
        reader.fail(where, f"is {len(text)} characters long; use at most {limit}")
    elif multiline and _CONTROL_BUT_NEWLINE.search(text):
        reader.fail(where, "contains a control character; only line breaks and tabs may appear")
    elif not multiline and _CONTROL.search(text):
        reader.fail(where, "contains a line break or another control character; keep it to one "
                    "line of plain text")
    return text


def _read_choice(raw: Mapping[str, Any], key: str, path: str, reader: _Reader,
                 choices: tuple[str, ...]) -> str:
    """One of ``choices``; the first is the default."""
    value = reader.typed(raw, key, f"{path}.{key}", str, choices[0])
    if value not in choices:
        reader.fail(f"{path}.{key}", f"{_shown(value)} is not valid; use "
                    + " or ".join(_shown(c) for c in choices))
        return choices[0]
    return value


def _read_int(raw: Mapping[str, Any], key: str, path: str, reader: _Reader, default: int | None,
              *, low: int, high: int | None = None) -> int | None:
    value = reader.typed(raw, key, f"{path}.{key}", int)
    if value is None:
        return default
    if value < low or (high is not None and value > high):
        limits = f"use {low} to {high}" if high is not None else f"use at least {low}"
        reader.fail(f"{path}.{key}", f"{value} is out of range; {limits}")
        return default
    return value


def _read_max_days_ahead(raw: Mapping[str, Any], path: str, reader: _Reader,
                         server: ServerConfig) -> int:
    # Busy time is only expanded server.horizon_days ahead; beyond it everything looks free.
    default = min(60, server.horizon_days)
    days = _read_int(raw, "max_days_ahead", path, reader, default, low=1, high=365)
    assert days is not None
    if days > server.horizon_days:
        reader.fail(f"{path}.max_days_ahead", f"{days} reaches past server.horizon_days "
                    f"({server.horizon_days}), beyond which busy time is not known; lower it "
                    "or raise server.horizon_days")
        return default
    return days


def _checked_duration(value: object, path: str, reader: _Reader, *, low: timedelta,
                      high: timedelta, whole_minutes: bool) -> timedelta | None:
    try:
        duration = _parse_duration_value(value)
    except ValueError as exc:
        reader.fail(path, str(exc))
        return None
    if whole_minutes and duration % _ONE_MINUTE:
        reader.fail(path, f"{_shown(value)} is not a whole number of minutes")
    elif duration < low:
        reader.fail(path, f"{_shown(value)} is too short; use at least {_shown_duration(low)}")
    elif duration > high:
        reader.fail(path, f"{_shown(value)} is too long; use at most {_shown_duration(high)}")
    else:
        return duration
    return None


def _shown_duration(value: timedelta) -> str:
    """A duration for a message: whole days as "365d", not "52w1d"."""
    days, rest = divmod(value, _ONE_DAY)
    return _shown(f"{days}d" if days and not rest else format_duration(value))


def _read_duration(raw: Mapping[str, Any], key: str, path: str, reader: _Reader,
                   default: timedelta, *, low: timedelta = timedelta(0),
                   high: timedelta = _ONE_DAY, whole_minutes: bool = False) -> timedelta:
    if key not in raw:
        return default
    duration = _checked_duration(raw[key], f"{path}.{key}", reader, low=low, high=high,
                                 whole_minutes=whole_minutes)
    return default if duration is None else duration


def _read_durations(raw: Mapping[str, Any], path: str, reader: _Reader) -> tuple[timedelta, ...]:
    """``duration``: one duration, or a list the guest picks from (order kept)."""
    where = f"{path}.duration"
    if "duration" not in raw:
        reader.fail(where, 'is required; use e.g. "30m", or ["30m", "1h"] to let the guest pick')
        return ()
    value = raw["duration"]
    if isinstance(value, list) and not value:
        reader.fail(where, "is empty; give at least one duration")
    items = list(enumerate(value)) if isinstance(value, list) else [(None, value)]
    durations: list[timedelta] = []
    for index, item in items:
        item_path = where if index is None else f"{where}[{index}]"
        duration = _checked_duration(item, item_path, reader, low=_ONE_MINUTE, high=_ONE_DAY,
                                     whole_minutes=True)
        if duration in durations:
            reader.fail(item_path, f"{_shown(item)} is listed twice")
        elif duration is not None:
            durations.append(duration)
    return tuple(durations)


def _read_calendar_refs(raw: Mapping[str, Any], key: str, path: str, reader: _Reader,
                        known: _Known, *, required: bool) -> tuple[str, ...]:
    where = f"{path}.{key}"
    value = reader.typed(raw, key, where, list, required=required)
    if value is None:
        return ()
    if required and not value:
        reader.fail(where, "is empty; name at least one calendar")
    names: list[str] = []
    for index, name in enumerate(value):
        if not isinstance(name, str) or name not in known.calendars:
            reader.fail(f"{where}[{index}]", f"{_shown(name)} is not the name of a calendar; "
                        f"known calendars: {', '.join(sorted(known.calendars)) or 'none'}")
        elif name in names:
            reader.fail(f"{where}[{index}]", f"{_shown(name)} is listed twice")
        else:
            names.append(name)
    return tuple(names)


def _parse_range(value: object) -> tuple[int, int]:
    """ "09:00-12:30" as minutes of the day (540, 750); an end of "24:00" is 1440."""
    match = _RANGE.match(value.strip()) if isinstance(value, str) else None
    if match is None or not isinstance(value, str):
        raise ValueError(f'{_shown(value)} is not a range; use "09:00-12:00"')
    start_h, start_m, end_h, end_m = (int(g) for g in match.groups())
    if start_h > 23 or end_h > 24 or start_m > 59 or end_m > 59 or (end_h == 24 and end_m):
        raise ValueError(f"{_shown(value)} has an impossible time; use 00:00 to 23:59 "
                         "(and 24:00 as an end: midnight)")
    start, end = start_h * 60 + start_m, end_h * 60 + end_m
    if end <= start:
        hint = f'; for a range until midnight use "{value.strip()[:5]}-24:00"' if end == 0 else ""
        raise ValueError(f"{_shown(value)} does not end after it starts{hint}")
    return start, end


def _time_of(minutes: int) -> time:
    return time(0) if minutes == 24 * 60 else time(minutes // 60, minutes % 60)


def _read_ranges(value: object, path: str, reader: _Reader) -> tuple[TimeRange, ...]:
    """A day's list of ranges: sorted, checked for overlaps, touching ones joined."""
    if not isinstance(value, list):
        reader.fail(path, f'{_shown(value)} is not a list of ranges; use e.g. '
                    '["09:00-12:00", "13:00-17:00"], or [] for closed')
        return ()
    spans: list[tuple[int, int, int]] = []
    for index, item in enumerate(value):
        try:
            spans.append((*_parse_range(item), index))
        except ValueError as exc:
            reader.fail(f"{path}[{index}]", str(exc))
    merged: list[tuple[int, int]] = []
    last_index = 0
    for start, end, index in sorted(spans):
        if merged and start < merged[-1][1]:
            reader.fail(f"{path}[{index}]", f"{_shown(value[index])} overlaps "
                        f"{_shown(value[last_index])}")
            continue
        if merged and start == merged[-1][1]:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
        last_index = index
    return tuple((_time_of(start), _time_of(end)) for start, end in merged)


def _read_hours(raw: Mapping[str, Any], path: str, reader: _Reader
                ) -> Mapping[int, tuple[TimeRange, ...]]:
    """``hours``: weekday -> ranges; a weekday left out is closed."""
    if "hours" not in raw:
        return DEFAULT_WEEKLY_HOURS
    where = f"{path}.hours"
    value = raw["hours"]
    if not isinstance(value, dict):
        reader.fail(where, 'must be a table of weekdays, e.g. { mon = ["09:00-17:00"] }')
        return DEFAULT_WEEKLY_HOURS
    reader.table(value, where, set(WEEKDAYS))
    return MappingProxyType({
        day: _read_ranges(value[name], f"{where}.{name}", reader) if name in value else ()
        for day, name in enumerate(WEEKDAYS)
    })


def _parse_date(value: str) -> date | None:
    if not _DATE.match(value):
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def _read_date_overrides(raw: Mapping[str, Any], path: str, reader: _Reader
                         ) -> Mapping[date, tuple[TimeRange, ...]]:
    """``date_overrides``: "YYYY-MM-DD" -> ranges replacing that day's hours ([] = closed)."""
    where = f"{path}.date_overrides"
    value = raw.get("date_overrides", {})
    if not isinstance(value, dict):
        reader.fail(where, 'must be a table of dates, e.g. { "2026-12-24" = [] }')
        return MappingProxyType({})
    overrides: dict[date, tuple[TimeRange, ...]] = {}
    for key, ranges in value.items():
        day = _parse_date(key)
        if day is None:
            reader.fail(f"{where}.{key}", f'{_shown(key)} is not a date; use "YYYY-MM-DD"')
            continue
        overrides[day] = _read_ranges(ranges, f"{where}.{key}", reader)
    return MappingProxyType(dict(sorted(overrides.items())))


def _read_hold_target(raw: Mapping[str, Any], path: str, reader: _Reader,
                      hosts: tuple[str, ...], known: _Known) -> Mapping[str, HoldTargetConfig]:
    """``hold_target``: host calendar name -> { source, calendar } receiving its holds."""
    where = f"{path}.hold_target"
    value = raw.get("hold_target", {})
    if not isinstance(value, dict):
        reader.fail(where, 'must be a table like { alex = { source = "nextcloud" } }')
        return MappingProxyType({})
    # Compare with the hosts as written: a host with its own problem is reported there.
    written = raw.get("hosts")
    declared = [h for h in written if isinstance(h, str)] if isinstance(written, list) else []
    targets: dict[str, HoldTargetConfig] = {}
    for host, target in value.items():
        host_path = f"{where}.{host}"
        if host not in declared:
            reader.fail(host_path, f"{_shown(host)} is not one of this page's hosts "
                        f"({', '.join(declared) or 'none'})")
        if not isinstance(target, dict):
            reader.fail(host_path, 'must be a table like { source = "nextcloud", '
                        'calendar = "Personal" }')
            continue
        reader.table(target, host_path, _HOLD_TARGET_KEYS)
        resolved = _read_one_hold_target(target, host_path, reader, known)
        if resolved is not None and host in hosts:
            targets[host] = resolved
    return MappingProxyType(targets)


def _read_one_hold_target(raw: Mapping[str, Any], path: str, reader: _Reader,
                          known: _Known) -> HoldTargetConfig | None:
    name = reader.typed(raw, "source", f"{path}.source", str, required=True)
    calendar = reader.typed(raw, "calendar", f"{path}.calendar", str)
    if calendar is not None and not calendar.strip():
        reader.fail(f"{path}.calendar", "is empty; give a calendar's display name or path")
        return None
    if name is None:
        return None
    source = known.sources.get(name)
    if source is None:
        reader.fail(f"{path}.source", f"{_shown(name)} is not the name of a source; known "
                    f"sources: {', '.join(sorted(known.sources)) or 'none'}")
        return None
    if source.kind not in HOLD_SOURCE_KINDS:
        reader.fail(f"{path}.source", f"{_shown(name)} is an {_shown(source.kind)} source, which "
                    "cannot take holds; use a source of kind "
                    + " or ".join(_shown(k) for k in HOLD_SOURCE_KINDS))
        return None
    calendar = calendar or source.hold_calendar
    if calendar is None:
        reader.fail(f"{path}.calendar", f"is required: source {_shown(name)} has no "
                    "hold_calendar; name the calendar (display name or path) that receives holds")
        return None
    return HoldTargetConfig(source=name, calendar=calendar)


def _template_problems(template: str, allowed: tuple[str, ...]) -> list[str]:
    """What is wrong with a ``{placeholder}`` template (only plain known names may appear)."""
    choices = ", ".join(f"{{{name}}}" for name in allowed)
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError:
        return [f"{_shown(template)} has an unmatched brace; write {{{{ and }}}} for literal "
                "braces"]
    problems: list[str] = []
    for _literal, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in allowed:
            problems.append(f"{{{name}}} is not a placeholder here; use {choices}")
        elif spec or conversion:
            problems.append(f"{{{name}}} may not have a format (!… or :…); write {{{name}}}")
    return problems


def _read_template(raw: Mapping[str, Any], key: str, path: str, reader: _Reader, default: str,
                   allowed: tuple[str, ...]) -> str:
    if key not in raw:
        return default
    text = _read_text(raw, key, path, reader, limit=200, required=True)
    problems = _template_problems(text, allowed)
    for problem in problems:
        reader.fail(f"{path}.{key}", problem)
    return default if problems else text


def _read_video_link(raw: Mapping[str, Any], path: str, reader: _Reader) -> str | None:
    """An https URL template, e.g. "https://meet.jit.si/fbproxy-{random}"."""
    where = f"{path}.video_link"
    template = reader.typed(raw, "video_link", where, str)
    if template is None:
        return None
    problems = _template_problems(template, VIDEO_LINK_FIELDS)
    if not problems:
        example = template.format(random="r4nd0m", booking_id="b00k1ng")
        try:
            parts = urlsplit(example)
            host = parts.hostname
        except ValueError:
            host = None
        if not example.startswith("https://") or not host:
            problems.append(f"{_shown(template)} is not an https:// URL")
        elif len(template) > 1000 or re.search(r"[\s\x00-\x1f\x7f]", template):
            problems.append(f"{_shown(template)} must be one URL of at most 1000 characters "
                            "without spaces")
    for problem in problems:
        reader.fail(where, problem)
    return None if problems else template


def _read_questions(raw: Mapping[str, Any], path: str, reader: _Reader
                    ) -> tuple[QuestionConfig, ...]:
    where = f"{path}.questions"
    names: set[str] = set()
    return tuple(
        _read_question(table, f"{where}[{i}]", reader, names)
        for i, table in enumerate(_list_of_tables(raw, "questions", reader, where))
    )


def _read_question(raw: Mapping[str, Any], path: str, reader: _Reader,
                   seen: set[str]) -> QuestionConfig:
    reader.table(raw, path, _QUESTION_KEYS)
    name = reader.typed(raw, "name", f"{path}.name", str, required=True)
    if name is not None and not QUESTION_NAME_PATTERN.match(name):
        reader.fail(f"{path}.name", f"{_shown(name)} must be 1-32 lowercase letters, digits and "
                    "'_', starting with a letter")
    elif name is not None and name in seen:
        reader.fail(f"{path}.name", f"{_shown(name)} is used twice; names must be unique")
    name = name or ""
    seen.add(name)
    max_length = _read_int(raw, "max_length", path, reader, 500, low=1, high=5000)
    assert max_length is not None
    return QuestionConfig(
        name=name,
        label=_read_text(raw, "label", path, reader, limit=200, required=True),
        required=bool(reader.typed(raw, "required", f"{path}.required", bool, False)),
        max_length=max_length,
        kind=_read_choice(raw, "kind", path, reader, QUESTION_KINDS),
    )


def _list_of_tables(raw: Mapping[str, Any], key: str, reader: _Reader,
                    path: str | None = None) -> list[Mapping[str, Any]]:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        header = re.sub(r"\[\d+\]", "", path or key)
        reader.fail(path or key, f"must be an array of tables ([[{header}]])")
        return []
    return value


def parse_config(raw: Mapping[str, Any], *, base_dir: Path, path: Path | None = None) -> Config:
    """Validate a parsed TOML document; raise ConfigError listing every problem."""
    reader = _Reader(base_dir)
    reader.table(raw, "", {"server", "sources", "calendars", "booking_pages"})
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
    known = _Known(server=server, sources={s.name: s for s in sources if s.name},
                   calendars={c.name for c in calendars if c.name})
    slugs: set[str] = set()
    booking_pages = tuple(
        _read_booking_page(table, f"booking_pages[{i}]", reader, known, slugs)
        for i, table in enumerate(_list_of_tables(raw, "booking_pages", reader))
    )
    if reader.problems:
        raise ConfigError(reader.problems, path=str(path or ""))
    return Config(server=server, sources=sources, calendars=calendars,
                  booking_pages=booking_pages, path=path)


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
