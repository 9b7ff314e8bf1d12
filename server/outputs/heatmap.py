"""A calendar's busy time as a day x hour grid, for the status page (pure, no I/O)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from server.booking.availability import TENTATIVE, BusyInterval


@dataclass(frozen=True, slots=True)
class Cell:
    busy: float  # share of the hour that is busy, 0..1
    tentative: float  # share that is only tentative, 0..1


def heatmap(blocks: Iterable[BusyInterval], first_day: date, days: int,
            zone: ZoneInfo) -> list[list[Cell]]:
    """``days`` rows of 24 cells from ``first_day`` on, in ``zone``'s wall-clock hours.

    Blocks are merged (disjoint), so shares never exceed 1. On the day clocks
    go back, the repeated hour adds up both; on the day they go forward, the
    skipped hour stays empty.
    """
    busy = [[0.0] * 24 for _ in range(days)]
    tentative = [[0.0] * 24 for _ in range(days)]
    start = int(datetime.combine(first_day, datetime.min.time(), zone).timestamp())
    end = int(datetime.combine(first_day + timedelta(days=days), datetime.min.time(),
                               zone).timestamp())
    for block in blocks:
        low, high = max(block.start, start), min(block.end, end)
        while low < high:
            local = datetime.fromtimestamp(low, UTC).astimezone(zone)
            hour_end = int((local.replace(minute=0, second=0, microsecond=0)
                            + timedelta(hours=1)).timestamp())
            piece_end = min(high, hour_end)
            row = (local.date() - first_day).days
            if 0 <= row < days:
                target = tentative if block.status == TENTATIVE else busy
                target[row][local.hour] += (piece_end - low) / 3600
            low = piece_end
    return [[Cell(min(1.0, busy[d][h]), min(1.0, tentative[d][h])) for h in range(24)]
            for d in range(days)]
