"""Dates, times and durations as a guest reads them, in their language (pure).

Shared by the booking pages and the mail, so a time reads the same in both.
Formatted with Babel's CLDR data for the language (``server/kit/i18n.py``
names the languages): German reads ``Donnerstag, 26. November 2026, 09:00–09:30``,
French ``jeudi 26 novembre 2026``. English uses British conventions (day before
month, a 24-hour clock), as the pages always did.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_skeleton, get_day_names
from babel.lists import format_list
from babel.units import format_unit

from server.kit.i18n import DEFAULT

# The CLDR locale whose date and time formats a language uses.
_DATE_LOCALE = {"en": "en_GB"}


def _dates(language: str) -> str:
    return _DATE_LOCALE.get(language, language)


def local(instant: int, zone: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(instant, UTC).astimezone(zone)


def day_label(day: date, language: str = DEFAULT) -> str:
    """``Thursday, 26 November 2026``; ``Donnerstag, 26. November 2026``"""
    return format_date(day, "full", locale=_dates(language))


def month_label(month: date, language: str = DEFAULT) -> str:
    """``November 2026``; ``noviembre de 2026`` (the stand-alone month name)"""
    return format_skeleton("yMMMM", month, locale=_dates(language))


def time_label(moment: datetime, language: str = DEFAULT) -> str:
    """``09:30`` (hours and minutes on the language's clock)"""
    return format_skeleton("Hm", moment, locale=_dates(language))


def weekday_names(language: str = DEFAULT) -> list[tuple[str, str]]:
    """(abbreviated, full) names of the weekdays, Monday first."""
    short = get_day_names("abbreviated", locale=_dates(language))
    wide = get_day_names("wide", locale=_dates(language))
    return [(short[day], wide[day]) for day in range(7)]


def duration_label(duration: timedelta, language: str = DEFAULT) -> str:
    """``30 min``, ``1 hr``, ``1 hr 30 min``; ``1 Std., 30 Min.``"""
    minutes = int(duration.total_seconds() // 60)
    hours, minutes = divmod(minutes, 60)
    parts = ([format_unit(hours, "duration-hour", length="short", locale=language)]
             if hours else [])
    if minutes or not hours:
        parts.append(format_unit(minutes, "duration-minute", length="short", locale=language))
    try:
        return format_list(parts, style="unit-narrow", locale=language)
    except KeyError:  # a locale whose CLDR data lacks that list pattern
        return " ".join(parts)


def when_label(start: int, end: int, zone: ZoneInfo, language: str = DEFAULT) -> str:
    """``Thursday, 26 November 2026, 09:00–09:30 (Europe/Berlin)``"""
    first, last = local(start, zone), local(end, zone)
    return (f"{day_label(first.date(), language)}, {time_label(first, language)}–"
            f"{time_label(last, language)} ({zone.key})")
