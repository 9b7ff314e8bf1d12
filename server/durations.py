"""Parsing the human duration strings used in the config ("5m", "1h30m")."""

from __future__ import annotations

import re
from datetime import timedelta

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+)([smhdw])")
_WHOLE = re.compile(r"(?:\d+[smhdw])+")


def parse_duration(text: str) -> timedelta:
    """Parse "30s", "5m", "1h30m", "2d" or "1w"; raise ValueError otherwise."""
    compact = text.strip().lower().replace(" ", "")
    if not _WHOLE.fullmatch(compact):
        raise ValueError(f"{text!r} is not a duration; use e.g. \"5m\", \"30s\", \"1h\"")
    seconds = sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _PART.findall(compact))
    return timedelta(seconds=seconds)


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
