"""The ``[[booking_pages]]`` entries of the config, read and validated.

Pages refer to calendars and sources read before them; ``Known`` carries
those (and the server's defaults) in, so this module needs nothing from
``server.config.model``.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, time, timedelta
from types import MappingProxyType
from typing import Any, Protocol
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from server.config.page_look import PAGE_LOOK_KEYS, PageLookConfig, read_page_look
from server.config.page_mail import PAGE_MAIL_KEYS, PageMailConfig, read_page_mail
from server.config.reader import (
    ONE_DAY,
    ONE_MINUTE,
    Reader,
    checked_duration,
    list_of_tables,
    read_choice,
    read_duration,
    read_int,
    read_text,
    shown,
    shown_duration,
)
from server.kit.i18n import LANGUAGES

SLUG_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
QUESTION_NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,31}")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index 0 = Monday, as date.weekday()
BOOKING_MODES = ("collective", "round_robin")
HOLD_STATUSES = ("tentative", "confirmed")
QUESTION_KINDS = ("text", "textarea")
HOLD_SOURCE_KINDS = ("caldav", "google", "microsoft")  # kinds whose adapter writes holds
# video_link values that ask the hold's upstream to make the meeting link, and the
# source kind that can: Google makes a Meet link, Microsoft a Teams meeting.
MADE_UPSTREAM = {"google-meet": "google", "teams": "microsoft"}
HOLD_TITLE_FIELDS = ("title", "guest_name", "guest_email", "host")
VIDEO_LINK_FIELDS = ("random", "booking_id")
_RANGE = re.compile(r"(\d\d):(\d\d)\s*-\s*(\d\d):(\d\d)")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")

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
    # Just before a booking commits, sync its hosts' sources once more (bounded by
    # recheck_timeout): "required" refuses the booking when that cannot finish.
    recheck: str = "best_effort"
    recheck_timeout: timedelta = timedelta(seconds=2)
    # Host calendar name -> target; hosts without an entry get no hold.
    hold_target: Mapping[str, HoldTargetConfig] = field(
        default_factory=lambda: MappingProxyType({}), hash=False)
    hold_title: str = "{title}: {guest_name}"
    hold_status: str = "tentative"  # "tentative" | "confirmed"
    video_link: str | None = None
    questions: tuple[QuestionConfig, ...] = ()
    mail: PageMailConfig = field(default_factory=PageMailConfig)
    # What the page shows besides the times (location, logo, colour) and who may frame it.
    look: PageLookConfig = field(default_factory=PageLookConfig)
    # The guests' language (en, de, fr, es); "" negotiates from their browser.
    language: str = ""

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def hours_on(self, day: date) -> tuple[TimeRange, ...]:
        """The openings of ``day``: its override if there is one, else its weekday's hours."""
        if day in self.date_overrides:
            return self.date_overrides[day]
        return self.weekly_hours.get(day.weekday(), ())


_BOOKING_PAGE_KEYS = {
    "slug", "title", "description", "hosts", "mode", "resources", "duration", "slot_step",
    "timezone", "hours", "date_overrides", "buffer_before", "buffer_after", "minimum_notice",
    "max_days_ahead", "daily_limit", "tentative_blocks", "hold_target", "hold_title",
    "hold_status", "video_link", "questions", "recheck", "recheck_timeout", "language",
} | PAGE_MAIL_KEYS | PAGE_LOOK_KEYS
RECHECKS = ("best_effort", "required", "off")
_HOLD_TARGET_KEYS = {"source", "calendar"}
_QUESTION_KEYS = {"name", "label", "required", "max_length", "kind"}


class ServerFacts(Protocol):
    """What pages need of ``[server]`` (a ``server.config.model.ServerConfig``)."""

    @property
    def timezone(self) -> str: ...

    @property
    def horizon_days(self) -> int: ...


class SourceFacts(Protocol):
    """What pages need of a ``[[sources]]`` entry (a ``server.config.model.SourceConfig``)."""

    @property
    def kind(self) -> str: ...

    @property
    def hold_calendar(self) -> str | None: ...


@dataclass(frozen=True)
class Known:
    """What booking pages may refer to, read before them."""

    server: ServerFacts
    sources: Mapping[str, SourceFacts]
    calendars: set[str]


def read_booking_page(raw: Mapping[str, Any], path: str, reader: Reader, known: Known,
                      seen_slugs: set[str]) -> BookingPageConfig:
    reader.table(raw, path, _BOOKING_PAGE_KEYS)
    # Read in the documented key order, so problems are listed in that order too.
    slug = _read_slug(raw, path, reader, seen_slugs)
    title = read_text(raw, "title", path, reader, limit=200, required=True)
    description = read_text(raw, "description", path, reader, limit=2000, multiline=True)
    hosts = _read_calendar_refs(raw, "hosts", path, reader, known, required=True)
    mode = read_choice(raw, "mode", path, reader, BOOKING_MODES)
    resources = _read_calendar_refs(raw, "resources", path, reader, known, required=False)
    for index, name in enumerate(resources):
        if name in hosts:
            reader.fail(f"{path}.resources[{index}]",
                        f"{shown(name)} is also a host; a calendar is either a host or a resource")
    durations = _read_durations(raw, path, reader)
    slot_step = read_duration(raw, "slot_step", path, reader,
                              min(durations, default=timedelta(minutes=30)),
                              low=ONE_MINUTE, whole_minutes=True)
    timezone = reader.zone(raw, f"{path}.timezone", known.server.timezone)
    weekly_hours = _read_hours(raw, path, reader)
    date_overrides = _read_date_overrides(raw, path, reader)
    buffer_before = read_duration(raw, "buffer_before", path, reader, timedelta(0))
    buffer_after = read_duration(raw, "buffer_after", path, reader, timedelta(0))
    minimum_notice = read_duration(raw, "minimum_notice", path, reader, timedelta(hours=4),
                                   high=timedelta(days=365))
    max_days_ahead = _read_max_days_ahead(raw, path, reader, known.server)
    if minimum_notice >= timedelta(days=max_days_ahead):
        reader.fail(f"{path}.minimum_notice", f"{shown_duration(minimum_notice)} reaches "
                    f"past max_days_ahead ({max_days_ahead} days); nothing could ever be booked")
    hold_target = _read_hold_target(raw, path, reader, hosts, known)
    video_link = _read_video_link(raw, path, reader)
    kind = MADE_UPSTREAM.get(video_link or "")
    if kind and (not hold_target or any(
            known.sources[t.source].kind != kind for t in hold_target.values())):
        reader.fail(f"{path}.video_link", f"{shown(video_link)} needs every host's hold_target "
                    f"to be a {kind} source: it makes the meeting link with the hold")
    return BookingPageConfig(
        slug=slug, title=title, description=description, hosts=hosts, mode=mode,
        resources=resources, durations=durations, slot_step=slot_step, timezone=timezone,
        weekly_hours=weekly_hours, date_overrides=date_overrides, buffer_before=buffer_before,
        buffer_after=buffer_after, minimum_notice=minimum_notice, max_days_ahead=max_days_ahead,
        daily_limit=read_int(raw, "daily_limit", path, reader, None, low=1),
        tentative_blocks=bool(reader.typed(raw, "tentative_blocks", f"{path}.tentative_blocks",
                                           bool, True)),
        recheck=read_choice(raw, "recheck", path, reader, RECHECKS),
        recheck_timeout=read_duration(raw, "recheck_timeout", path, reader,
                                      timedelta(seconds=2), low=timedelta(milliseconds=100),
                                      high=timedelta(seconds=30)),
        hold_target=hold_target,
        hold_title=_read_template(raw, "hold_title", path, reader, "{title}: {guest_name}",
                                  HOLD_TITLE_FIELDS),
        hold_status=read_choice(raw, "hold_status", path, reader, HOLD_STATUSES),
        video_link=video_link,
        questions=_read_questions(raw, path, reader),
        mail=read_page_mail(raw, path, reader, hold_target,
                            {name: source.kind for name, source in known.sources.items()}),
        look=read_page_look(raw, path, reader, has_video_link=video_link is not None),
        language=_read_language(raw, path, reader),
    )


def _read_language(raw: Mapping[str, Any], path: str, reader: Reader) -> str:
    if raw.get("language") is None:
        return ""
    return read_choice(raw, "language", path, reader, tuple(LANGUAGES))


def _read_slug(raw: Mapping[str, Any], path: str, reader: Reader, seen: set[str]) -> str:
    slug = reader.typed(raw, "slug", f"{path}.slug", str, required=True)
    if slug is None:
        return ""
    if not SLUG_PATTERN.fullmatch(slug):
        reader.fail(f"{path}.slug", f"{shown(slug)} must be 1-64 lowercase letters, digits and "
                    "'-', starting with a letter or digit (it is part of the page's URL)")
    elif slug in seen:
        reader.fail(f"{path}.slug", f"{shown(slug)} is used twice; slugs must be unique")
    seen.add(slug)
    return slug


def _read_max_days_ahead(raw: Mapping[str, Any], path: str, reader: Reader,
                         server: ServerFacts) -> int:
    # Busy time is only expanded server.horizon_days ahead; beyond it everything looks free.
    default = min(60, server.horizon_days)
    days = read_int(raw, "max_days_ahead", path, reader, default, low=1, high=365)
    assert days is not None
    if days > server.horizon_days:
        reader.fail(f"{path}.max_days_ahead", f"{days} reaches past server.horizon_days "
                    f"({server.horizon_days}), beyond which busy time is not known; lower it "
                    "or raise server.horizon_days")
        return default
    return days


def _read_durations(raw: Mapping[str, Any], path: str, reader: Reader) -> tuple[timedelta, ...]:
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
        duration = checked_duration(item, item_path, reader, low=ONE_MINUTE, high=ONE_DAY,
                                    whole_minutes=True)
        if duration in durations:
            reader.fail(item_path, f"{shown(item)} is listed twice")
        elif duration is not None:
            durations.append(duration)
    return tuple(durations)


def _read_calendar_refs(raw: Mapping[str, Any], key: str, path: str, reader: Reader,
                        known: Known, *, required: bool) -> tuple[str, ...]:
    where = f"{path}.{key}"
    value = reader.typed(raw, key, where, list, required=required)
    if value is None:
        return ()
    if required and not value:
        reader.fail(where, "is empty; name at least one calendar")
    names: list[str] = []
    for index, name in enumerate(value):
        if not isinstance(name, str) or name not in known.calendars:
            reader.fail(f"{where}[{index}]", f"{shown(name)} is not the name of a calendar; "
                        f"known calendars: {', '.join(sorted(known.calendars)) or 'none'}")
        elif name in names:
            reader.fail(f"{where}[{index}]", f"{shown(name)} is listed twice")
        else:
            names.append(name)
    return tuple(names)


def _parse_range(value: object) -> tuple[int, int]:
    """ "09:00-12:30" as minutes of the day (540, 750); an end of "24:00" is 1440."""
    match = _RANGE.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None or not isinstance(value, str):
        raise ValueError(f'{shown(value)} is not a range; use "09:00-12:00"')
    start_h, start_m, end_h, end_m = (int(g) for g in match.groups())
    if start_h > 23 or end_h > 24 or start_m > 59 or end_m > 59 or (end_h == 24 and end_m):
        raise ValueError(f"{shown(value)} has an impossible time; use 00:00 to 23:59 "
                         "(and 24:00 as an end: midnight)")
    start, end = start_h * 60 + start_m, end_h * 60 + end_m
    if end <= start:
        hint = f'; for a range until midnight use "{value.strip()[:5]}-24:00"' if end == 0 else ""
        raise ValueError(f"{shown(value)} does not end after it starts{hint}")
    return start, end


def _time_of(minutes: int) -> time:
    return time(0) if minutes == 24 * 60 else time(minutes // 60, minutes % 60)


def _read_ranges(value: object, path: str, reader: Reader) -> tuple[TimeRange, ...]:
    """A day's list of ranges: sorted, checked for overlaps, touching ones joined."""
    if not isinstance(value, list):
        reader.fail(path, f'{shown(value)} is not a list of ranges; use e.g. '
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
            reader.fail(f"{path}[{index}]", f"{shown(value[index])} overlaps "
                        f"{shown(value[last_index])}")
            continue
        if merged and start == merged[-1][1]:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
        last_index = index
    return tuple((_time_of(start), _time_of(end)) for start, end in merged)


def _read_hours(raw: Mapping[str, Any], path: str, reader: Reader
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
    if not _DATE.fullmatch(value):
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def _read_date_overrides(raw: Mapping[str, Any], path: str, reader: Reader
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
            reader.fail(f"{where}.{key}", f'{shown(key)} is not a date; use "YYYY-MM-DD"')
            continue
        overrides[day] = _read_ranges(ranges, f"{where}.{key}", reader)
    return MappingProxyType(dict(sorted(overrides.items())))


def _read_hold_target(raw: Mapping[str, Any], path: str, reader: Reader,
                      hosts: tuple[str, ...], known: Known) -> Mapping[str, HoldTargetConfig]:
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
            reader.fail(host_path, f"{shown(host)} is not one of this page's hosts "
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


def _read_one_hold_target(raw: Mapping[str, Any], path: str, reader: Reader,
                          known: Known) -> HoldTargetConfig | None:
    name = reader.typed(raw, "source", f"{path}.source", str, required=True)
    calendar = reader.typed(raw, "calendar", f"{path}.calendar", str)
    if calendar is not None and not calendar.strip():
        reader.fail(f"{path}.calendar", "is empty; give a calendar's display name or path")
        return None
    if name is None:
        return None
    source = known.sources.get(name)
    if source is None:
        reader.fail(f"{path}.source", f"{shown(name)} is not the name of a source; known "
                    f"sources: {', '.join(sorted(known.sources)) or 'none'}")
        return None
    if source.kind not in HOLD_SOURCE_KINDS:
        reader.fail(f"{path}.source", f"{shown(name)} is an {shown(source.kind)} source, which "
                    "cannot take holds; use a source of kind "
                    + " or ".join(shown(k) for k in HOLD_SOURCE_KINDS))
        return None
    calendar = calendar or source.hold_calendar or {"google": "primary", "microsoft": ""}.get(
        source.kind)
    if calendar is None:
        reader.fail(f"{path}.calendar", f"is required: source {shown(name)} has no "
                    "hold_calendar; name the calendar (display name or path) that receives holds")
        return None
    return HoldTargetConfig(source=name, calendar=calendar)


def _template_problems(template: str, allowed: tuple[str, ...]) -> list[str]:
    """What is wrong with a ``{placeholder}`` template (only plain known names may appear)."""
    choices = ", ".join(f"{{{name}}}" for name in allowed)
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError:
        return [f"{shown(template)} has an unmatched brace; write {{{{ and }}}} for literal "
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


def _read_template(raw: Mapping[str, Any], key: str, path: str, reader: Reader, default: str,
                   allowed: tuple[str, ...]) -> str:
    if key not in raw:
        return default
    text = read_text(raw, key, path, reader, limit=200, required=True)
    problems = _template_problems(text, allowed)
    for problem in problems:
        reader.fail(f"{path}.{key}", problem)
    return default if problems else text


def _read_video_link(raw: Mapping[str, Any], path: str, reader: Reader) -> str | None:
    """An https URL template, e.g. "https://meet.jit.si/fbproxy-{random}"."""
    where = f"{path}.video_link"
    template = reader.typed(raw, "video_link", where, str)
    if template is None or template in MADE_UPSTREAM:
        return template
    problems = _template_problems(template, VIDEO_LINK_FIELDS)
    if not problems:
        example = template.format(random="r4nd0m", booking_id="b00k1ng")
        try:
            parts = urlsplit(example)
            host = parts.hostname
        except ValueError:
            host = None
        if not example.startswith("https://") or not host:
            problems.append(f"{shown(template)} is not an https:// URL")
        elif len(template) > 1000 or re.search(r"[\s\x00-\x1f\x7f]", template):
            problems.append(f"{shown(template)} must be one URL of at most 1000 characters "
                            "without spaces")
    for problem in problems:
        reader.fail(where, problem)
    return None if problems else template


def _read_questions(raw: Mapping[str, Any], path: str, reader: Reader
                    ) -> tuple[QuestionConfig, ...]:
    where = f"{path}.questions"
    names: set[str] = set()
    return tuple(
        _read_question(table, f"{where}[{i}]", reader, names)
        for i, table in enumerate(list_of_tables(raw, "questions", reader, where))
    )


def _read_question(raw: Mapping[str, Any], path: str, reader: Reader,
                   seen: set[str]) -> QuestionConfig:
    reader.table(raw, path, _QUESTION_KEYS)
    name = reader.typed(raw, "name", f"{path}.name", str, required=True)
    if name is not None and not QUESTION_NAME_PATTERN.fullmatch(name):
        reader.fail(f"{path}.name", f"{shown(name)} must be 1-32 lowercase letters, digits and "
                    "'_', starting with a letter")
    elif name is not None and name in seen:
        reader.fail(f"{path}.name", f"{shown(name)} is used twice; names must be unique")
    name = name or ""
    seen.add(name)
    max_length = read_int(raw, "max_length", path, reader, 500, low=1, high=5000)
    assert max_length is not None
    return QuestionConfig(
        name=name,
        label=read_text(raw, "label", path, reader, limit=200, required=True),
        required=bool(reader.typed(raw, "required", f"{path}.required", bool, False)),
        max_length=max_length,
        kind=read_choice(raw, "kind", path, reader, QUESTION_KINDS),
    )
