"""A full database (PRAGMA max_page_count) in a sync and a booking: refused, intact, recovers."""

from __future__ import annotations

import sqlite3

from tests.booking_world import guest, offered, started
from tests.conftest import event, ics


async def test_a_full_database_refuses_cleanly_and_recovers(sources, make_config, serve,
                                                            tmp_path) -> None:
    client, runtime = await started(make_config, sources, serve)
    writer = runtime.store.database.writer  # the test fills the disk (autocommit here)
    pages = (await writer.fetchone("PRAGMA page_count"))[0]
    await writer.execute(f"PRAGMA max_page_count = {pages}")

    # A sync that needs room: refused, the last good data stays, the loop lives on.
    big = ics(*(event(f"n{i}", "20261127T090000Z", "20261127T093000Z",
                      "DESCRIPTION:" + "x" * 2000) for i in range(300)))
    (tmp_path / "alex.ics").write_text(big)
    [outcome, *_] = await runtime.sync.run_all_once(["alex"])
    assert not outcome.ok and "database is full" in (outcome.error or "")
    assert "2026-11-26T09:30:00Z" in await offered(client), "the last good data serves"

    # Fill the booking tables' last pages too, so the next booking needs a new one.
    for i in range(100_000):
        try:
            await writer.execute(
                "INSERT INTO bookings (id, page, host, start_ts, end_ts, guest_name, "
                "guest_email, cancel_secret, status, created) "
                "VALUES (?, 'filler', 'filler', ?, ?, 'x', 'x@x.x', 'x', 'cancelled', 0)",
                (f"filler{i:06d}", 2 * i + 1, 2 * i + 2))
            await writer.execute("INSERT INTO booking_blocks VALUES (?, 'filler', ?, ?)",
                                 (f"filler{i:06d}", 2 * i + 1, 2 * i + 2))
        except sqlite3.OperationalError:
            break

    # A booking: 503 with a reason, nothing half-written.
    response = await client.post("/api/v1/pages/intro/bookings", json=guest())
    assert response.status == 503 and "database is full" in (await response.json())["error"]
    assert response.headers["Retry-After"] == "60"
    with sqlite3.connect(runtime.config.server.database) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT COUNT(*) FROM bookings WHERE page = 'intro'"
                            ).fetchone()[0] == 0
        assert conn.execute("SELECT COUNT(*) FROM booking_blocks WHERE calendar = 'alex'"
                            ).fetchone()[0] == 0

    # Space comes back: both work again.
    await writer.execute("PRAGMA max_page_count = 1073741823")
    assert (await runtime.sync.run_all_once(["alex"]))[0].ok
    assert (await client.post("/api/v1/pages/intro/bookings", json=guest())).status == 201
