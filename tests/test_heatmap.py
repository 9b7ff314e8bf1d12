"""The status page's heatmap grid (pure)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from server.booking.availability import BUSY, TENTATIVE, BusyInterval, merge_busy
from server.outputs.heatmap import heatmap

UTC_ZONE = ZoneInfo("UTC")


def at(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


def test_a_block_fills_its_hours_in_the_zone() -> None:
    blocks = [BusyInterval(at("2026-11-26T09:30:00"), at("2026-11-26T11:00:00"), BUSY),
              BusyInterval(at("2026-11-27T08:00:00"), at("2026-11-27T08:15:00"), TENTATIVE)]
    grid = heatmap(blocks, date(2026, 11, 26), 2, UTC_ZONE)
    assert [grid[0][h].busy for h in (8, 9, 10, 11)] == [0, 0.5, 1, 0]
    assert grid[1][8].tentative == 0.25 and grid[1][8].busy == 0
    berlin = heatmap(blocks, date(2026, 11, 26), 1, ZoneInfo("Europe/Berlin"))
    assert berlin[0][10].busy == 0.5 and berlin[0][11].busy == 1


@given(st.lists(st.tuples(st.integers(0, 3 * 86400), st.integers(1, 20000),
                          st.sampled_from([BUSY, TENTATIVE])), max_size=20),
       st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"]))
def test_shares_add_up_to_the_busy_time_in_the_window(raw, zone_name: str) -> None:
    zone = ZoneInfo(zone_name)
    base = at("2026-03-28T00:00:00")  # across Europe's and none of the others' clock change
    blocks = merge_busy(BusyInterval(base + s, base + s + d, status) for s, d, status in raw)
    first = date(2026, 3, 28)
    grid = heatmap(blocks, first, 2, zone)
    start = int(datetime.combine(first, datetime.min.time(), zone).timestamp())
    end = int(datetime.combine(date(2026, 3, 30), datetime.min.time(), zone).timestamp())
    inside = sum(max(0, min(b.end, end) - max(b.start, start)) for b in blocks)
    total = sum((c.busy + c.tentative) * 3600 for row in grid for c in row)
    assert all(0 <= c.busy <= 1 and 0 <= c.tentative <= 1 for row in grid for c in row)
    # Only the repeated autumn hour could be capped; there is none in this window.
    assert abs(total - inside) < 1e-6 * max(1, inside) + 1e-6
