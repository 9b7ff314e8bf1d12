"""The time-zone picker's list: canonical zones only, offsets at a given instant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from server.kit.zones import (
    available_zones,
    canonical_zone,
    offset_label,
    selectable_zones,
    zone_choices,
)

JANUARY = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
JULY = datetime(2026, 7, 15, 12, 0, tzinfo=UTC)


def labels(now: datetime) -> dict[str, str]:
    return {choice.key: choice.label for choice in zone_choices(now)}


def test_only_canonical_zones_are_offered() -> None:
    zones = selectable_zones()
    assert zones[0] == "UTC" and len(zones) > 300
    for alias in ("Africa/Asmera", "Africa/Timbuktu", "America/Argentina/ComodRivadavia",
                  "Asia/Calcutta", "Europe/Kiev", "US/Eastern", "EST5EDT", "Etc/GMT+5",
                  "GMT", "Japan"):
        assert alias in available_zones(), alias  # still accepted ...
        assert alias not in zones, alias  # ... but never offered
    for canonical in ("Asia/Kolkata", "Europe/Kyiv", "America/St_Johns", "Asia/Tokyo",
                      "Africa/Asmara", "Europe/Amsterdam"):
        assert canonical in zones, canonical
    assert len(set(zones)) == len(zones)


@pytest.mark.parametrize(("alias", "canonical"), [
    ("Africa/Asmera", "Africa/Nairobi"), ("Africa/Timbuktu", "Africa/Abidjan"),
    ("America/Argentina/ComodRivadavia", "America/Argentina/Catamarca"),
    ("Asia/Calcutta", "Asia/Kolkata"), ("US/Eastern", "America/New_York"),
    ("Etc/UTC", "UTC"), ("Asia/Tokyo", "Asia/Tokyo"),
    ("Etc/GMT+5", "Etc/GMT+5"),  # valid, with no canonical form: kept as it is
])
def test_aliases_map_to_their_canonical_zone(alias: str, canonical: str) -> None:
    assert canonical_zone(alias) == canonical


def test_offsets_at_a_fixed_instant() -> None:
    january, july = labels(JANUARY), labels(JULY)
    assert january["Asia/Kolkata"] == july["Asia/Kolkata"] == "(UTC+05:30) Kolkata"
    assert january["America/St_Johns"] == "(UTC-03:30) St Johns"
    assert july["America/St_Johns"] == "(UTC-02:30) St Johns"
    assert january["Asia/Tokyo"] == "(UTC+09:00) Tokyo"
    assert january["Europe/Berlin"] == "(UTC+01:00) Berlin"
    assert july["Europe/Berlin"] == "(UTC+02:00) Berlin"
    assert january["America/New_York"] == "(UTC-05:00) New York"
    assert july["America/New_York"] == "(UTC-04:00) New York"
    assert january["Australia/Sydney"] == "(UTC+11:00) Sydney"  # southern summer
    assert july["Australia/Sydney"] == "(UTC+10:00) Sydney"
    assert january["Pacific/Chatham"] == "(UTC+13:45) Chatham"
    assert january["America/Argentina/Buenos_Aires"] == "(UTC-03:00) Buenos Aires"
    assert january["UTC"] == "(UTC+00:00) UTC"


def test_sorted_by_offset_then_name_with_the_guests_zone_first() -> None:
    plain = zone_choices(JANUARY)
    keys = [(c.offset_minutes, c.label) for c in plain]
    assert keys == sorted(keys)
    assert plain[0].offset_minutes == -11 * 60 and plain[-1].offset_minutes == 14 * 60
    led = zone_choices(JANUARY, first="Asia/Tokyo")
    assert led[0].key == "Asia/Tokyo" and len(led) == len(plain)
    assert [c.key for c in led[1:]] == [c.key for c in plain if c.key != "Asia/Tokyo"]
    # A valid zone the list leaves out is added at the top, so it can stay selected.
    extra = zone_choices(JANUARY, first="Etc/GMT+5")
    assert extra[0].key == "Etc/GMT+5" and extra[0].label == "(UTC-05:00) GMT+5"
    assert len(extra) == len(plain) + 1
    assert zone_choices(JANUARY, first="Mars/Olympus") == plain


@pytest.mark.parametrize(("minutes", "shown"), [(0, "UTC+00:00"), (330, "UTC+05:30"),
                                                (-210, "UTC-03:30"), (-570, "UTC-09:30")])
def test_offset_label(minutes: int, shown: str) -> None:
    assert offset_label(timedelta(minutes=minutes)) == shown
