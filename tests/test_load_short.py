"""bench/load.py's core in a short mode: every route under concurrent load, sources syncing.

The real app runs in a spawned process with its sync loop on while the ICS files
change underneath it; 50 keep-alive clients mix feed GETs (with and without
If-None-Match), JSON free/busy, slot queries and bookings of distinct free slots
for 10 s. Every answer must have the expected status and body, no host may be
double-booked, and the server's RSS may not grow by more than 10 % (see
bench/README.md, "Load", for why that bound).
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.load import Options, render, run  # noqa: E402


def test_short_load_has_no_errors_and_bounded_memory() -> None:
    result = run(Options(seconds=10, clients=50, calendars=3, events=150, warmup=1))
    report = render(result, "test")
    print(report)
    assert result.total_requests > 0, report
    assert result.total_errors == 0, report
    assert result.warmup_errors == 0, report
    for route, figures in result.routes.items():
        assert figures["requests"] > 0, f"{route} was never requested\n{report}"
    assert result.booked > 0, report
    assert result.double_booked == 0, report
    assert result.sync_rounds.get("failed", 0) == 0, report
    assert result.sync_rounds.get("ok", 0) > 0, f"no sync round saw a change\n{report}"
    assert result.file_changes > 0, report
    assert result.server_log_count == 0, report
    assert result.rss_growth < 0.10, report
