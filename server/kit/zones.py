"""The IANA time zones a guest may pick, read once from the tz database.

The picker offers the canonical zones only: the ones ``zone.tab`` of the tzdata
package lists (one or more a country, by their main city), plus UTC. The
deprecated aliases (``Africa/Asmera``, ``Asia/Calcutta``, ``US/Eastern``) are
still accepted wherever a zone is asked for, and mapped to the zone they link
to (the ``L`` lines of ``tzdata.zi``), so an old bookmark keeps working.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache, lru_cache
from importlib import resources
from zoneinfo import ZoneInfo, available_timezones


@dataclass(frozen=True, slots=True)
class ZoneChoice:
    """One entry of the picker: ``(UTC+09:00) Tokyo`` for Asia/Tokyo."""

    key: str
    offset_minutes: int  # the zone's UTC offset at the instant the list was made
    label: str


@cache
def available_zones() -> frozenset[str]:
    """Every zone name this Python can load (accepted anywhere a zone is asked for)."""
    return frozenset(available_timezones())


def _tzdata_text(name: str) -> str:
    return resources.files("tzdata.zoneinfo").joinpath(name).read_text(encoding="utf-8")


@cache
def selectable_zones() -> tuple[str, ...]:
    """The canonical zones offered in the booking form's picker, sorted, plus UTC."""
    listed = {line.split("\t")[2] for line in _tzdata_text("zone.tab").splitlines()
              if line and not line.startswith("#")}
    return ("UTC", *sorted(listed & available_zones()))


@cache
def _selectable_set() -> frozenset[str]:
    return frozenset(selectable_zones())


@cache
def _links() -> dict[str, str]:
    """Alias -> the zone it links to, as tzdata says (``L TARGET ALIAS``)."""
    links: dict[str, str] = {}
    for line in _tzdata_text("tzdata.zi").splitlines():
        if line.startswith("L "):
            _, target, alias = line.split()
            links[alias] = target
    return links


def canonical_zone(name: str) -> str:
    """``name`` as the picker shows it: an alias becomes the zone it links to.

    A valid zone without a canonical form in the picker (``Etc/GMT+5``) stays as
    it is: still accepted, only not offered.
    """
    selectable = _selectable_set()
    seen = name
    for _ in range(4):  # links lead to a zone directly; a few hops at most, never a loop
        if seen in selectable:
            return seen
        target = _links().get(seen)
        if target is None:
            break
        seen = target
    if seen in ("Etc/UTC", "Etc/GMT", "Etc/UCT", "Etc/Universal", "Etc/Zulu"):
        return "UTC"
    return name


def offset_label(offset: timedelta) -> str:
    """``UTC+05:30``, ``UTC-03:30``, ``UTC+00:00``."""
    minutes = int(offset.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    hours, rest = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours:02d}:{rest:02d}"


def city_of(key: str) -> str:
    """``America/Argentina/Buenos_Aires`` -> ``Buenos Aires``."""
    return key.rsplit("/", 1)[-1].replace("_", " ")


def zone_choices(now: datetime, first: str = "") -> tuple[ZoneChoice, ...]:
    """The picker's entries at ``now``: sorted by offset, then name; ``first`` (the
    guest's zone) leads, and is added when it is valid but not canonical."""
    listed = _choices_at(now.replace(second=0, microsecond=0))
    if not first:
        return listed
    lead = next((c for c in listed if c.key == first), None)
    if lead is None:
        if first not in available_zones():
            return listed
        lead = _choice(first, now)
    return (lead, *(c for c in listed if c.key != first))


@lru_cache(maxsize=4)
def _choices_at(now: datetime) -> tuple[ZoneChoice, ...]:
    choices = [_choice(key, now) for key in selectable_zones()]
    return tuple(sorted(choices, key=lambda c: (c.offset_minutes, c.label, c.key)))


def _choice(key: str, now: datetime) -> ZoneChoice:
    offset = now.astimezone(ZoneInfo(key)).utcoffset() or timedelta(0)
    return ZoneChoice(key=key, offset_minutes=int(offset.total_seconds() // 60),
                      label=f"({offset_label(offset)}) {city_of(key)}")
