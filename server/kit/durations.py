"""Durations and instants from outside (the config, query parameters, JSON fields).

They are parsed here, in one place, with bounds: every value that passes can be
added to or subtracted from any other without leaving the range of Python's
``datetime`` (years 1 to 9999), so no later arithmetic raises OverflowError.
Each parser raises ValueError with a message fit for the person who sent the
value; it quotes that value only through :func:`echo`.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta, tzinfo

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+)([smhdw])")
_WHOLE = re.compile(r"(?:\d+[smhdw])+")
# Longer than any setting or booking needs (the longest is a year-long horizon),
# far short of datetime's range.
MAX_DURATION = timedelta(days=3660)
# Instants from outside lie in these years: no calendar needs more, and a bounded
# duration added to either end stays inside datetime's range.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
_ECHO_LIMIT = 40
_UNSAFE = re.compile(r"[^A-Za-z0-9 :+.,/_-]")


def echo(value: object) -> str:
    """A value for an error message: shortened, and with anything that could be markup or a
    line break (``<``, ``&``, quotes, control characters) shown as ``?``."""
    text = str(value)
    short = text[:_ECHO_LIMIT] + ("…" if len(text) > _ECHO_LIMIT else "")
    return "'" + _UNSAFE.sub("?", short) + "'"


def parse_duration(text: str) -> timedelta:
    """Parse "30s", "5m", "1h30m", "2d" or "1w"; raise ValueError otherwise."""
    compact = text.strip().lower().replace(" ", "")
    # The length bound keeps int() of a digit run cheap and the sum small.
    if len(compact) > 32 or not _WHOLE.fullmatch(compact):
        raise ValueError(f"{echo(text)} is not a duration; use e.g. \"5m\", \"30s\", \"1h\"")
    seconds = sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _PART.findall(compact))
    return check_duration(timedelta(seconds=min(seconds, _too_long_seconds())), text)


def duration_from_minutes(minutes: int) -> timedelta:
    """A whole number of minutes from outside, bounded like every duration."""
    if minutes < 0:
        raise ValueError(f"{echo(minutes)} minutes is negative")
    return check_duration(timedelta(minutes=min(minutes, _too_long_seconds() // 60 + 1)), minutes)


def check_duration(value: timedelta, text: object) -> timedelta:
    if value > MAX_DURATION:
        raise ValueError(f"{echo(text)} is longer than {MAX_DURATION.days} days")
    return value


def _too_long_seconds() -> int:
    """Anything over MAX_DURATION, small enough for timedelta."""
    return int(MAX_DURATION.total_seconds()) + 1


def check_instant(moment: datetime, what: str) -> datetime:
    """``moment`` (aware) if it lies between EARLIEST and LATEST."""
    if not EARLIEST <= moment <= LATEST:
        raise ValueError(f"{what} must lie between {EARLIEST.year} and {LATEST.year}")
    return moment


def parse_day(text: str, what: str) -> date:
    """A date like 2026-12-01, within the bounds."""
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{what}={echo(text)} is not a date like 2026-12-01") from None
    check_instant(datetime.combine(day, time(), UTC), what)
    return day


def parse_instant(text: str, what: str, zone: tzinfo) -> datetime:
    """An ISO 8601 date-time with an offset, or a date (midnight in ``zone``), within the
    bounds."""
    value = text.strip()
    try:
        if len(value) == 10:
            parsed = datetime.combine(date.fromisoformat(value), time(), zone)
        else:
            parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{what}={echo(text)} is not an ISO 8601 date or date-time; use e.g. "
                         "2026-12-01 or 2026-12-01T09:00:00Z") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{what}={echo(text)} has no time zone; add Z or an offset such as "
                         "+01:00")
    return check_instant(parsed, what)


def format_duration(value: timedelta) -> str:
    """The shortest config spelling of ``value`` ("90s" → "1m30s")."""
    remaining = int(value.total_seconds())
    if remaining == 0:
        return "0s"
    parts = []
    for unit in ("w", "d", "h", "m", "s"):
        count, remaining = divmod(remaining, _UNIT_SECONDS[unit])
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
