"""Per-subscriber feeds: each its own secret and detail level, revoked one by one."""

from __future__ import annotations

from typing import Any

from server.outputs.status import status_report
from tests.booking_world import HOSTS, guest

OWNER = "secret-of-alex-0123456789"
BUSY_ONLY = "subscriber-busy-only-0001"
ASSISTANT = "subscriber-assistant-0001"


def config(make_config: Any, sources: Any, subscribers: list[dict[str, Any]]) -> Any:
    calendars = [{"name": h, "sources": [h], "secret": f"secret-of-{h}-0123456789",
                  **({"subscribers": subscribers} if h == "alex" else {})} for h in HOSTS]
    page = {"slug": "intro", "title": "Intro call", "hosts": ["alex"], "duration": "30m",
            "timezone": "UTC", "minimum_notice": "1h",
            "hours": {d: ["09:00-12:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
            "hold_title": "Call with {guest_name}"}
    return make_config(sources, calendars, booking_pages=[page])


async def test_each_subscriber_sees_its_detail_and_is_revoked_alone(
        sources, make_config, serve, tmp_path) -> None:
    (tmp_path / "alex.ics").write_text(
        (tmp_path / "alex.ics").read_text().replace(
            "END:VCALENDAR", "BEGIN:VEVENT\r\nUID:t1\r\nDTSTAMP:20260101T000000Z\r\n"
            "DTSTART:20261127T090000Z\r\nDTEND:20261127T100000Z\r\nSTATUS:TENTATIVE\r\n"
            "SUMMARY:Maybe\r\nEND:VEVENT\r\nEND:VCALENDAR"))
    subscribers = [{"name": "partner", "detail": "busy", "secret": BUSY_ONLY},
                   {"name": "assistant", "detail": "holds", "secret": ASSISTANT}]
    client, runtime = await serve(config(make_config, sources, subscribers))
    await runtime.sync.run_all_once()
    assert (await client.post("/api/v1/pages/intro/bookings",
                              json=guest(name="Sam <Guest>"))).status == 201

    owner = await (await client.get(f"/feeds/{OWNER}/busy.ics")).text()
    partner = await (await client.get(f"/feeds/{BUSY_ONLY}/busy.ics")).text()
    assistant = await (await client.get(f"/feeds/{ASSISTANT}/busy.ics")).text()
    assert "SUMMARY:Tentative" in owner and "Call with" not in owner
    assert "Tentative" not in partner and "Call with" not in partner
    assert "SUMMARY:Call with Sam <Guest>" in assistant and "Maybe" not in assistant
    seen = {(s["calendar"], s["subscriber"]): s["last_access"]
            for s in (await status_report(runtime))["subscribers"]}
    assert seen[("alex", "partner")] == "2026-11-25T12:00:00Z"
    assert seen[("sam", None)] is None, "nobody used sam's secret"
    api = await (await client.get("/api/v1/freebusy?start=2026-11-26&end=2026-11-28",
                                  headers={"Authorization": f"Bearer {BUSY_ONLY}"})).json()
    assert {b["status"] for b in api["busy"]} == {"busy"}

    # Removing the partner (a new config, a restart) revokes it; the others keep working.
    await client.close()
    client, _ = await serve(config(make_config, sources, subscribers[1:]))
    assert (await client.get(f"/feeds/{BUSY_ONLY}/busy.ics")).status == 404
    assert (await client.get(f"/feeds/{ASSISTANT}/busy.ics")).status == 200
    assert (await client.get(f"/feeds/{OWNER}/busy.ics")).status == 200
