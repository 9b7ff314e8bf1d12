"""The IANA time zones a guest may pick, read once from the tz database."""

from __future__ import annotations

from functools import cache
from zoneinfo import available_timezones

# Region/City names only: the old aliases (US/Eastern, EST5EDT, Etc/GMT+5) would
# double the list a guest scrolls through and say nothing more.
_REGIONS = ("Africa/", "America/", "Antarctica/", "Arctic/", "Asia/", "Atlantic/",
            "Australia/", "Europe/", "Indian/", "Pacific/")


@cache
def available_zones() -> frozenset[str]:
    """Every zone name this Python can load (accepted anywhere a zone is asked for)."""
    return frozenset(available_timezones())


@cache
def selectable_zones() -> tuple[str, ...]:
    """The zones offered in the booking form's picker, sorted, plus UTC."""
    return ("UTC", *sorted(z for z in available_zones() if z.startswith(_REGIONS)))
