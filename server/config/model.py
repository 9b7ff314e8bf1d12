"""The TOML config file turned into frozen, fully validated dataclasses.

Every problem is collected (not just the first) and names its key path, the
bad value and what would be valid. Relative paths are read relative to the
config file's folder, so a config works from any working directory.
"""

from __future__ import annotations

import re
import ssl
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from server.config.alerts import AlertConfig, read_alerts
from server.config.database import (
    PostgresUrl,
    read_database,
    read_instance_name,
    read_lease_seconds,
    state_folder,
)
from server.config.google import GOOGLE_KEYS, GoogleConfig, read_google
from server.config.images import Picture, read_picture
from server.config.mail import MailConfig, read_address, read_mail
from server.config.microsoft import MICROSOFT_KEYS, MicrosoftConfig, read_microsoft
from server.config.pages import (
    BOOKING_MODES,
    DEFAULT_WEEKLY_HOURS,
    HOLD_SOURCE_KINDS,
    HOLD_STATUSES,
    HOLD_TITLE_FIELDS,
    QUESTION_KINDS,
    QUESTION_NAME_PATTERN,
    SLUG_PATTERN,
    VIDEO_LINK_FIELDS,
    WEEKDAYS,
    BookingPageConfig,
    HoldTargetConfig,
    Known,
    QuestionConfig,
    TimeRange,
    read_booking_page,
)
from server.config.reader import (
    NAME_PATTERN,
    IPNetwork,
    Reader,
    Secret,
    StateFolder,
    kinds_taking,
    list_of_tables,
    parse_duration_value,
    parse_listen,
    parse_networks,
    parse_size,
    read_choice,
    read_int,
    read_name,
    read_text,
)
from server.config.secrets_key import (
    SECRETS_KEY_KEYS,
    read_secrets_key,
    secrets_key_problems,
    shares_database,
)
from server.errors import ConfigError
from server.kit.processes import usable_cores
from server.kit.ratelimit import Rate, parse_rate

__all__ = [
    "BOOKING_MODES", "DEFAULT_WEEKLY_HOURS", "HOLD_SOURCE_KINDS", "HOLD_STATUSES",
    "HOLD_TITLE_FIELDS", "MIN_POLL_INTERVAL", "NAME_PATTERN", "QUESTION_KINDS",
    "QUESTION_NAME_PATTERN", "SECRET_PATTERN", "SLUG_PATTERN", "SOURCE_KINDS",
    "VIDEO_LINK_FIELDS", "WEEKDAYS", "BookingPageConfig", "CalendarConfig", "Config",
    "HoldTargetConfig", "PostgresUrl", "QuestionConfig", "Secret", "ServerConfig", "SourceConfig",
    "TimeRange", "load_config", "parse_config",
]

SOURCE_KINDS = ("ics", "caldav", "google", "microsoft")
SECRET_PATTERN = re.compile(r"[A-Za-z0-9_~.-]{16,256}")
MIN_POLL_INTERVAL = timedelta(seconds=10)
DEFAULT_BOOKING_RATE: Rate | None = Rate(10, timedelta(hours=1))
# Three times the bookings: a guest fixing typos or losing a slot to someone
# quicker needs a few; past 30 an hour it is a script, and each failed attempt
# still costs a validation and often a write transaction.
DEFAULT_FAILED_BOOKING_RATE: Rate | None = Rate(30, timedelta(hours=1))
DEFAULT_PAGE_RATE: Rate | None = Rate(120, timedelta(minutes=1))
DEFAULT_SECRET_RATE: Rate | None = Rate(30, timedelta(minutes=10))
# Expansion processes by default: one a core, up to this many (each can take a few
# hundred MiB on a hostile item; more rarely pays, as storing runs in one process).
MAX_DEFAULT_EXPANSION_WORKERS = 4
MAX_EXPANSION_WORKERS = 64


def default_expansion_workers() -> int:
    return min(usable_cores(), MAX_DEFAULT_EXPANSION_WORKERS)


@dataclass(frozen=True)
class ServerConfig:
    listen_host: str = "127.0.0.1"
    listen_port: int = 8080
    base_url: str = "http://127.0.0.1:8080"
    base_url_configured: bool = False  # False: base_url was derived from listen
    # An SQLite file, or a PostgreSQL server shared by several instances.
    database: Path | PostgresUrl = Path("fbproxy.sqlite3")
    timezone: str = "UTC"
    horizon_days: int = 120
    # Per client address; None turns a limit off (e.g. when a proxy in front limits).
    rate_limit_bookings: Rate | None = DEFAULT_BOOKING_RATE  # those that succeed
    rate_limit_failed_bookings: Rate | None = DEFAULT_FAILED_BOOKING_RATE  # 4xx and errors
    rate_limit_pages: Rate | None = DEFAULT_PAGE_RATE
    rate_limit_secrets: Rate | None = DEFAULT_SECRET_RATE  # wrong secrets per client
    # Proxies whose X-Forwarded-For names the real client (for rate limits and logs).
    trusted_proxies: tuple[IPNetwork, ...] = ()
    # How long a CalDAV sync token stays usable after the changes it predates.
    caldav_token_retention: timedelta = timedelta(days=30)
    # Opens /status and /api/v1/status; None: one is generated and kept in the database.
    admin_secret: Secret | None = field(default=None, repr=False)
    metrics_public: bool = False  # /metrics without the admin secret (a private network)
    # Several instances on one PostgreSQL database: a source is synced by the instance
    # holding its lease; a dead instance's sources wait this long before another takes them.
    lease_seconds: int = 30
    instance_name: str | None = None  # in logs and status; the prefix of its lease holder id
    # Fernet keys (one a line) encrypting OAuth tokens kept in a PostgreSQL database.
    secrets_key: Secret | None = field(default=None, repr=False)
    # Processes that parse and expand iCalendar items (0: threads of this process).
    expansion_workers: int = field(default_factory=default_expansion_workers)

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
    # "busy": past stale_after, the source's whole horizon counts as busy for booking
    # (fail closed); "last_known": its last good data keeps being used, flagged stale.
    on_stale: str = "busy"
    google: GoogleConfig | None = None  # kind "google" only
    microsoft: MicrosoftConfig | None = None  # kind "microsoft" only

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True)
class SubscriberConfig:
    """Someone given their own feed of a calendar, revoked by removing or rotating it."""

    name: str
    secret: Secret | None = field(default=None, repr=False)  # None: generated and kept
    detail: str = "busy_tentative"  # "busy" | "busy_tentative" | "holds"


@dataclass(frozen=True)
class CalendarConfig:
    name: str
    sources: tuple[str, ...]
    # None: generated on first start and kept in the database.
    secret: Secret | None = field(default=None, repr=False)
    subscribers: tuple[SubscriberConfig, ...] = ()
    # Feeds, the API and CalDAV answer 503 while a source never synced; past a source's
    # stale_after, "serve" keeps serving (flagged stale) and "fail" answers 503 too.
    stale_policy: str = "serve"
    # The host's address: the ORGANIZER of bookings' invitations and where their
    # notices go; "" means the [mail] from address.
    email: str = ""
    # The name guests and invitations show for this host ("" means the calendar's name).
    display_name: str = ""
    # The host's picture on booking pages: an https URL or a local image fbproxy serves.
    avatar: Picture | None = None


@dataclass(frozen=True)
class Config:
    server: ServerConfig
    sources: tuple[SourceConfig, ...]
    calendars: tuple[CalendarConfig, ...]
    booking_pages: tuple[BookingPageConfig, ...] = ()
    path: Path | None = None
    alerts: tuple[AlertConfig, ...] = ()
    mail: MailConfig | None = None

    def source(self, name: str) -> SourceConfig:
        return next(s for s in self.sources if s.name == name)

    def calendar(self, name: str) -> CalendarConfig | None:
        return next((c for c in self.calendars if c.name == name), None)

    def booking_page(self, slug: str) -> BookingPageConfig | None:
        return next((p for p in self.booking_pages if p.slug == slug), None)


def _check_source_url(kind: str, url: str, reader: Reader, path: str, *, enabled: bool) -> str:
    scheme = urlsplit(url).scheme.lower()
    if kind == "caldav" and scheme not in ("http", "https"):
        reader.fail(path, f"{url!r}: a CalDAV source needs an http(s):// URL (the server, "
                          "your principal or one calendar)")
        return url
    if scheme in ("http", "https", "webcal", "webcals"):
        if not urlsplit(url).hostname:
            reader.fail(path, f"{url!r} has no host")
        return url
    if scheme and scheme != "file" and len(scheme) > 1:
        reader.fail(path, f"{url!r}: scheme {scheme!r} is not supported; use a path, "
                          "file://, http(s):// or webcal://")
        return url
    local = urlsplit(url).path if scheme == "file" else url
    # A disabled source is not read, so its file may be gone.
    return str(reader.readable_file(local, path) if enabled else reader.path(local))


_SERVER_KEYS = {"listen", "base_url", "database", "database_url_env", "database_url_file",
                "timezone", "horizon_days",
                "rate_limit_bookings", "rate_limit_failed_bookings", "rate_limit_pages",
                "rate_limit_secrets",
                "trusted_proxies",
                "caldav_token_retention", "admin_secret", "admin_secret_env",
                "admin_secret_file", "metrics_public", "lease_seconds", "instance_name",
                "expansion_workers", *SECRETS_KEY_KEYS}
_COMMON_SOURCE_KEYS = {
    "name", "kind", "poll_interval", "stale_after", "on_stale", "timezone", "enabled",
    "owner_emails",
    "timeout",
}
_URL_SOURCE_KEYS = {"url", "username", "password", "password_env", "password_file", "ca_file"}
# Keys only some kinds understand; elsewhere they are errors, not silently ignored.
_KIND_KEYS: dict[str, set[str]] = {
    "ics": {"max_bytes"} | _URL_SOURCE_KEYS,
    "caldav": {"calendars", "hold_calendar"} | _URL_SOURCE_KEYS,
    "google": {"calendars", "hold_calendar"} | GOOGLE_KEYS,
    "microsoft": {"calendars", "hold_calendar"} | MICROSOFT_KEYS,
}
_SOURCE_KEYS = _COMMON_SOURCE_KEYS.union(*_KIND_KEYS.values())
_KEY_KINDS = kinds_taking(_KIND_KEYS, "sources")
_DEFAULT_POLL = {"ics": timedelta(minutes=5), "caldav": timedelta(minutes=1),
                 "google": timedelta(minutes=2), "microsoft": timedelta(minutes=2)}
# Kinds found by a URL; the others (google) know where their API is.
_URL_KINDS = ("ics", "caldav")
_CALENDAR_KEYS = {"name", "sources", "secret", "secret_env", "secret_file", "subscribers",
                  "stale_policy", "email", "display_name", "avatar"}
STALE_POLICIES = ("serve", "fail")
_SUBSCRIBER_KEYS = {"name", "secret", "secret_env", "secret_file", "detail"}
DETAILS = ("busy_tentative", "busy", "holds")


def _read_server(raw: Mapping[str, Any], reader: Reader) -> ServerConfig:
    reader.table(raw, "server", _SERVER_KEYS)
    host, port = reader.converted(raw, "listen", "server.listen", ("127.0.0.1", 8080),
                                  parse_listen)
    shown_host = f"[{host}]" if ":" in host else host
    base_url = reader.typed(raw, "base_url", "server.base_url", str,
                            f"http://{shown_host}:{port}")
    assert base_url is not None
    if urlsplit(base_url).scheme not in ("http", "https") or not urlsplit(base_url).netloc:
        reader.fail("server.base_url", f"{base_url!r} is not an http(s) URL")
    horizon = reader.typed(raw, "horizon_days", "server.horizon_days", int, 120)
    assert horizon is not None
    if not 1 <= horizon <= 1000:
        reader.fail("server.horizon_days", f"{horizon} is out of range; use 1 to 1000")
        horizon = 120
    return ServerConfig(
        listen_host=host, listen_port=port, base_url=base_url.rstrip("/"),
        base_url_configured="base_url" in raw,
        database=read_database(raw, reader),
        timezone=reader.zone(raw, "server.timezone", "UTC"),
        horizon_days=horizon,
        rate_limit_bookings=reader.converted(raw, "rate_limit_bookings",
                                             "server.rate_limit_bookings",
                                             DEFAULT_BOOKING_RATE, parse_rate),
        rate_limit_failed_bookings=reader.converted(raw, "rate_limit_failed_bookings",
                                                    "server.rate_limit_failed_bookings",
                                                    DEFAULT_FAILED_BOOKING_RATE, parse_rate),
        rate_limit_pages=reader.converted(raw, "rate_limit_pages", "server.rate_limit_pages",
                                          DEFAULT_PAGE_RATE, parse_rate),
        rate_limit_secrets=reader.converted(raw, "rate_limit_secrets",
                                            "server.rate_limit_secrets", DEFAULT_SECRET_RATE,
                                            parse_rate),
        trusted_proxies=reader.converted(raw, "trusted_proxies", "server.trusted_proxies", (),
                                         parse_networks),
        caldav_token_retention=_token_retention(raw, reader),
        admin_secret=_admin_secret(raw, reader),
        metrics_public=bool(reader.typed(raw, "metrics_public", "server.metrics_public", bool,
                                         False)),
        lease_seconds=read_lease_seconds(raw, reader),
        instance_name=read_instance_name(raw, reader),
        secrets_key=read_secrets_key(raw, reader),
        expansion_workers=_expansion_workers(raw, reader),
    )


def _expansion_workers(raw: Mapping[str, Any], reader: Reader) -> int:
    value = read_int(raw, "expansion_workers", "server", reader, None, low=0,
                     high=MAX_EXPANSION_WORKERS)
    return default_expansion_workers() if value is None else value


def _admin_secret(raw: Mapping[str, Any], reader: Reader) -> Secret | None:
    secret = reader.secret(raw, "admin_secret", "server.admin_secret")
    if secret is not None and not SECRET_PATTERN.fullmatch(secret):
        reader.fail("server.admin_secret", "must be 16-256 URL-safe characters "
                    "(A-Z a-z 0-9 _ - . ~)")
        return None
    return secret


def _token_retention(raw: Mapping[str, Any], reader: Reader) -> timedelta:
    path = "server.caldav_token_retention"
    value = reader.converted(raw, "caldav_token_retention", path, timedelta(days=30),
                             parse_duration_value)
    if not timedelta(hours=1) <= value <= timedelta(days=3650):
        reader.fail(path, f"{value} is out of range; use \"1h\" to \"3650d\"")
        return timedelta(days=30)
    return value


def _read_source(raw: Mapping[str, Any], path: str, reader: Reader, server: ServerConfig,
                 seen: set[str]) -> SourceConfig:
    name = read_name(raw, path, reader, seen)
    kind = reader.typed(raw, "kind", f"{path}.kind", str, "ics", required=True) or "ics"
    if kind not in SOURCE_KINDS:
        reader.fail(f"{path}.kind", f"{kind!r} is not a source kind; use one of {SOURCE_KINDS}")
    # An unknown kind is one error, not one more per key it might have had.
    reader.table(raw, path, _COMMON_SOURCE_KEYS | _KIND_KEYS.get(kind, _SOURCE_KEYS),
                 elsewhere=_KEY_KINDS)
    enabled = bool(reader.typed(raw, "enabled", f"{path}.enabled", bool, True))
    url = reader.typed(raw, "url", f"{path}.url", str, "",
                       required=kind in _URL_KINDS) or ""
    if url:
        url = _check_source_url(kind, url, reader, f"{path}.url", enabled=enabled)
    poll = reader.converted(raw, "poll_interval", f"{path}.poll_interval",
                            _DEFAULT_POLL.get(kind, timedelta(minutes=5)), parse_duration_value)
    if poll < MIN_POLL_INTERVAL:
        reader.fail(f"{path}.poll_interval", f"{poll} is too short; use at least \"10s\"")
    default_stale = max(3 * poll, timedelta(minutes=15))
    stale = reader.converted(raw, "stale_after", f"{path}.stale_after", default_stale,
                             parse_duration_value)
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
        on_stale=read_choice(raw, "on_stale", path, reader, ("busy", "last_known")),
        timezone=reader.zone(raw, f"{path}.timezone", server.timezone),
        enabled=enabled,
        owner_emails=tuple(e.lower() for e in emails or ()),
        timeout=reader.converted(raw, "timeout", f"{path}.timeout", timedelta(seconds=30),
                                 parse_duration_value),
        max_bytes=reader.converted(raw, "max_bytes", f"{path}.max_bytes", 20 * 1024 * 1024,
                                   parse_size),
        username=username,
        password=reader.secret(raw, "password", f"{path}.password"),
        calendars=tuple(calendars or ()),
        hold_calendar=reader.typed(raw, "hold_calendar", f"{path}.hold_calendar", str),
        ca_file=_read_ca_file(raw, f"{path}.ca_file", reader),
        google=read_google(raw, path, reader, name=name, state=_state(server, reader),
                           base_url=server.base_url) if kind == "google" else None,
        microsoft=read_microsoft(raw, path, reader, name=name, state=_state(server, reader),
                                 base_url=server.base_url) if kind == "microsoft" else None,
    )


def _state(server: ServerConfig, reader: Reader) -> StateFolder:
    """Where token files go unless a source names one (see ``StateFolder``)."""
    folder = state_folder(server.database, reader)
    # With PostgreSQL the tokens are kept in the database (server/sync/tokens.py): the
    # default files are never written, so there is nothing to check.
    return StateFolder(folder, checked=True)


def _read_ca_file(raw: Mapping[str, Any], path: str, reader: Reader) -> str | None:
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


def _read_calendar(raw: Mapping[str, Any], path: str, reader: Reader, source_names: set[str],
                   seen: set[str]) -> CalendarConfig:
    reader.table(raw, path, _CALENDAR_KEYS)
    name = read_name(raw, path, reader, seen)
    sources = reader.typed(raw, "sources", f"{path}.sources", list, [], required=True) or []
    if "sources" in raw and not sources:
        reader.fail(f"{path}.sources", "is empty; name at least one source")
    for index, source in enumerate(sources):
        if not isinstance(source, str) or source not in source_names:
            reader.fail(f"{path}.sources[{index}]", f"{source!r} is not the name of a source; "
                        f"known sources: {', '.join(sorted(source_names)) or 'none'}")
    secret = reader.secret(raw, "secret", f"{path}.secret")
    if secret is not None and not SECRET_PATTERN.fullmatch(secret):
        reader.fail(f"{path}.secret", "must be 16-256 URL-safe characters (A-Z a-z 0-9 _ - . ~); "
                    "generate one with: "
                    "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'")
    subscribers: list[SubscriberConfig] = []
    subscriber_names: set[str] = set()
    tables = list_of_tables(raw, "subscribers", reader, f"{path}.subscribers")
    for index, table in enumerate(tables):
        where = f"{path}.subscribers[{index}]"
        reader.table(table, where, _SUBSCRIBER_KEYS)
        sub_secret = reader.secret(table, "secret", f"{where}.secret")
        if sub_secret is not None and not SECRET_PATTERN.fullmatch(sub_secret):
            reader.fail(f"{where}.secret", "must be 16-256 URL-safe characters")
        subscribers.append(SubscriberConfig(
            name=read_name(table, where, reader, subscriber_names), secret=sub_secret,
            detail=read_choice(table, "detail", where, reader, DETAILS)))
    return CalendarConfig(name=name, sources=tuple(str(s) for s in sources), secret=secret,
                          subscribers=tuple(subscribers),
                          stale_policy=read_choice(raw, "stale_policy", path, reader,
                                                   STALE_POLICIES),
                          email=read_address(raw, "email", f"{path}.email", reader),
                          display_name=read_text(raw, "display_name", path, reader,
                                                 limit=100),
                          avatar=read_picture(raw, "avatar", path, reader))


def parse_config(raw: Mapping[str, Any], *, base_dir: Path, path: Path | None = None,
                 check_files: bool = False) -> Config:
    """Validate a parsed TOML document; raise ConfigError listing every problem.

    ``check_files`` also checks the local files only needed while running (see
    ``Reader``): what `fbproxy check-config` does.
    """
    reader = Reader(base_dir, check_files=check_files)
    reader.table(raw, "", {"server", "sources", "calendars", "booking_pages", "alerts", "mail"})
    server_raw = raw.get("server", {})
    if not isinstance(server_raw, dict):
        reader.fail("server", "must be a table ([server])")
        server_raw = {}
    server = _read_server(server_raw, reader)
    names: set[str] = set()
    sources = tuple(
        _read_source(table, f"sources[{i}]", reader, server, names)
        for i, table in enumerate(list_of_tables(raw, "sources", reader))
    )
    calendar_names: set[str] = set()
    calendars = tuple(
        _read_calendar(table, f"calendars[{i}]", reader, {s.name for s in sources}, calendar_names)
        for i, table in enumerate(list_of_tables(raw, "calendars", reader))
    )
    secrets = [c.secret for c in calendars if c.secret is not None]
    if len(secrets) != len(set(secrets)):
        reader.fail("calendars", "two calendars share a secret; give each its own")
    known = Known(server=server, sources={s.name: s for s in sources if s.name},
                  calendars={c.name for c in calendars if c.name})
    slugs: set[str] = set()
    booking_pages = tuple(
        read_booking_page(table, f"booking_pages[{i}]", reader, known, slugs)
        for i, table in enumerate(list_of_tables(raw, "booking_pages", reader))
    )
    mail = read_mail(raw, reader)
    alerts = read_alerts(raw, reader, mail)
    if mail is None and any(page.mail.reminders for page in booking_pages):
        reader.fail("mail", "booking pages with reminders need a [mail] table to send them")
    reader.problems.extend(secrets_key_problems(shares_database(server.database),
                                                server.secrets_key,
                                                ((s.name, s.kind) for s in sources)))
    if reader.problems:
        raise ConfigError(reader.problems, path=str(path or ""))
    return Config(server=server, sources=sources, calendars=calendars,
                  booking_pages=booking_pages, path=path, alerts=alerts, mail=mail)


def reauth_fix(config: Config, source: SourceConfig) -> str:
    """What a person does when ``source`` needs re-authorization (status page, alerts)."""
    path = config.path or "config.toml"
    if source.kind in ("google", "microsoft"):
        return f"fbproxy auth {source.kind} --config {path} --source {source.name}"
    return f"check this source's credentials in {path}"


def load_config(path: str | Path, *, check_files: bool = False) -> Config:
    """Read and validate the config file at ``path`` (``check_files``: see parse_config)."""
    config_path = Path(path).resolve()
    try:
        raw = tomllib.loads(config_path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError([f"cannot read the file: {exc.strerror}"], path=str(path)) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"not valid TOML: {exc}"], path=str(path)) from exc
    return parse_config(raw, base_dir=config_path.parent, path=config_path,
                        check_files=check_files)
