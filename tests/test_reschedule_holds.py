"""A moved booking's holds: the outbox rows a reschedule leaves, and the worker's moves.

The page's hold target is a real CalDAV server (Radicale); the worker that
delivers moves is given a writer of our own HoldWriter interface, which
records what it was asked (the adapters' move_hold has its own tests).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest

from adapters.base import AdapterError, Hold, HoldRef
from server.booking.holds import HoldWorker
from tests.peers import PeerPool, peer_for
from tests.test_hold_outbox import config, holds

SLOT = "2026-11-26T10:00:00Z"
BASE = "http://127.0.0.1:8080"


class RecordingWriter:
    """A HoldWriter: remembers every call; ``during_move`` runs inside a move."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.during_move: Callable[[], Awaitable[None]] | None = None
        self.down = False

    async def write_hold(self, hold: Hold) -> HoldRef:
        if self.down:
            raise AdapterError("the calendar server is down")
        self.calls.append(("write", hold))
        return HoldRef(hold.booking_id, f"/cal/{hold.booking_id}.ics", '"e1"')

    async def move_hold(self, ref: HoldRef, hold: Hold) -> HoldRef:
        self.calls.append(("move", (ref, hold)))
        if self.during_move is not None:
            await self.during_move()
        return HoldRef(ref.booking_id, ref.ref, f'"e{len(self.calls)}"')

    async def delete_hold(self, ref: HoldRef, *, notify: bool = False) -> None:
        self.calls.append(("delete", ref))


async def rows(runtime: Any, booking_id: str) -> dict[tuple[str, str], tuple[Any, ...]]:
    """(host, action) -> (state, hold fields, attempts, etag)."""
    found = await runtime.store.database.writer.fetchall(
        "SELECT host, action, state, hold, attempts, etag FROM hold_outbox "
        "WHERE booking_id = ?", (booking_id,))
    return {(h, a): (s, json.loads(j), n, e) for h, a, s, j, n, e in found}


async def world(radicale_peer: Any, make_config: Any, serve: Any, **page: Any) -> Any:
    radicale_peer.make_calendar("Work")
    client, runtime = await serve(config(make_config, radicale_peer, **page))
    assert (await runtime.sync.run_all_once())[0].ok
    response = await client.post("/api/v1/pages/intro/bookings", json={
        "start": SLOT, "name": "Sam", "email": "sam@example.org"})
    assert response.status == 201, await response.text()
    return client, runtime, await response.json()


async def move(client: Any, booking: dict[str, Any], start: str) -> dict[str, Any]:
    response = await client.post(booking["reschedule_url"].removeprefix(BASE),
                                 json={"start": start})
    assert response.status == 200, await response.text()
    return await response.json()


async def test_a_write_not_yet_delivered_says_the_new_time(radicale_peer, make_config,
                                                           serve, clock) -> None:
    client, runtime, booking = await world(radicale_peer, make_config, serve)
    await move(client, booking, "2026-11-26T11:00:00Z")
    outbox = await rows(runtime, booking["id"])
    assert set(outbox) == {("me", "write"), ("me", "move")}
    assert outbox["me", "write"][0] == "pending"
    assert outbox["me", "write"][1]["start"] == "2026-11-26T11:00:00Z"
    assert outbox["me", "write"][1]["location"].startswith("https://meet.example/"), \
        "the video link is kept"
    assert outbox["me", "write"][1] == outbox["me", "move"][1]

    writer = RecordingWriter()
    writer.down = True
    worker = HoldWorker(runtime.store, {"dav": writer}, clock, claim_seconds=0)
    assert await worker.run_once() == 0, "the write fails; the move waits for it"
    outbox = await rows(runtime, booking["id"])
    assert outbox["me", "write"][2] == 1
    assert outbox["me", "move"][0] == "pending" and outbox["me", "move"][2] == 0, \
        "waiting is no failed attempt (no alert)"
    writer.down = False
    delivered = 0
    for _ in range(2):  # the move may come first in a run: it then waits once more
        clock.set(clock.now() + timedelta(hours=1))
        delivered += await worker.run_once()
    assert delivered == 2
    assert [kind for kind, _ in writer.calls] == ["write", "move"]
    assert writer.calls[0][1].start.isoformat() == "2026-11-26T11:00:00+00:00"
    outbox = await rows(runtime, booking["id"])
    assert outbox["me", "write"][0] == outbox["me", "move"][0] == "done"


async def test_a_delivered_hold_is_moved_once_to_the_newest_time(radicale_peer, make_config,
                                                                 serve, clock) -> None:
    client, runtime, booking = await world(radicale_peer, make_config, serve)
    writer = RecordingWriter()
    worker = HoldWorker(runtime.store, {"dav": writer}, clock, claim_seconds=0)
    assert await worker.run_once() == 1
    await move(client, booking, "2026-11-26T11:00:00Z")
    await move(client, booking, "2026-11-26T11:30:00Z")
    outbox = await rows(runtime, booking["id"])
    assert set(outbox) == {("me", "write"), ("me", "move")}, "one move row, re-armed"
    assert outbox["me", "move"][1]["start"] == "2026-11-26T11:30:00Z"

    assert await worker.run_once() == 1
    kind, (ref, hold) = writer.calls[1]
    assert kind == "move" and ref.ref == f"/cal/{booking['id']}.ics" and ref.etag == '"e1"'
    assert hold.start.isoformat() == "2026-11-26T11:30:00+00:00"
    assert hold.location.startswith("https://meet.example/")
    outbox = await rows(runtime, booking["id"])
    assert outbox["me", "move"][0] == "done"
    assert outbox["me", "write"][3] == '"e2"', "the write's row has the etag a delete needs"
    assert await worker.run_once() == 0, "moved exactly once"

    # Cancelled afterwards: the delete uses the moved hold's etag.
    assert (await client.post(booking["cancel_url"].removeprefix(BASE))).status == 200
    assert await worker.run_once() == 1
    assert writer.calls[-1] == ("delete", HoldRef(booking["id"], f"/cal/{booking['id']}.ics",
                                                  '"e2"'))


async def test_a_move_overtaken_by_another_is_delivered_again(radicale_peer, make_config,
                                                              serve, clock) -> None:
    client, runtime, booking = await world(radicale_peer, make_config, serve)
    writer = RecordingWriter()
    worker = HoldWorker(runtime.store, {"dav": writer}, clock, claim_seconds=0)
    await worker.run_once()
    await move(client, booking, "2026-11-26T11:00:00Z")

    async def moved_again() -> None:
        writer.during_move = None
        await move(client, booking, "2026-11-26T11:30:00Z")

    writer.during_move = moved_again
    await worker.run_once()
    outbox = await rows(runtime, booking["id"])
    assert outbox["me", "move"][0] == "pending", "the newer time is still to deliver"
    await worker.run_once()
    moves = [hold.start.isoformat() for kind, (_, hold) in
             ((k, c) for k, c in writer.calls if k == "move")]
    assert moves == ["2026-11-26T11:00:00+00:00", "2026-11-26T11:30:00+00:00"]
    assert (await rows(runtime, booking["id"]))["me", "move"][0] == "done"


async def test_a_new_round_robin_host_gets_a_write_the_old_one_a_delete(
        radicale_peer, make_config, serve, clock) -> None:
    radicale_peer.make_calendar("Work")
    radicale_peer.make_calendar("Other")
    source = {"name": "dav", "kind": "caldav", "url": radicale_peer.base_url,
              "username": radicale_peer.username, "password": radicale_peer.password,
              "calendars": ["Work"]}
    other = {**source, "name": "dav2", "calendars": ["Other"]}
    page = {"slug": "intro", "title": "Intro call", "hosts": ["me", "you"], "duration": "30m",
            "timezone": "UTC", "minimum_notice": "1h", "mode": "round_robin",
            "hours": {d: ["09:00-12:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
            "hold_target": {"me": {"source": "dav", "calendar": "Work"},
                            "you": {"source": "dav2", "calendar": "Other"}}}
    calendars = [{"name": "me", "sources": ["dav"], "secret": "s3cret-s3cret-s3cret-0001"},
                 {"name": "you", "sources": ["dav2"], "secret": "s3cret-s3cret-s3cret-0002"}]
    client, runtime = await serve(make_config([source, other], calendars,
                                              booking_pages=[page]))
    assert all(r.ok for r in await runtime.sync.run_all_once())
    booking = await (await client.post("/api/v1/pages/intro/bookings", json={
        "start": SLOT, "name": "Sam", "email": "sam@example.org"})).json()
    first = booking["host"]
    second = "you" if first == "me" else "me"
    writer = RecordingWriter()
    worker = HoldWorker(runtime.store, {"dav": writer, "dav2": writer}, clock,
                        claim_seconds=0)
    await worker.run_once()
    # The first host is taken at 11:00 by another guest: the move goes to the other.
    other_booking = await client.post("/api/v1/pages/intro/bookings", json={
        "start": "2026-11-26T11:00:00Z", "name": "Kim", "email": "kim@example.org"})
    assert (await other_booking.json())["host"] == second
    await move(client, booking, "2026-11-26T10:30:00Z")  # both free: the host stays
    assert (await rows(runtime, booking["id"]))[first, "move"][0] == "pending"
    blocker = await client.post("/api/v1/pages/intro/bookings", json={
        "start": "2026-11-26T11:30:00Z", "name": "Lee", "email": "lee@example.org"})
    blocked = (await blocker.json())["host"]
    moved = await move(client, booking, "2026-11-26T11:30:00Z")
    assert moved["host"] != blocked
    if moved["host"] != first:
        outbox = await rows(runtime, booking["id"])
        assert outbox[first, "delete"][0] == "pending"
        assert outbox[first, "move"][0] == "done", "no move for a host that lost it"
        assert outbox[moved["host"], "write"][0] == "pending"
        assert outbox[moved["host"], "write"][1]["start"] == "2026-11-26T11:30:00Z"
        await worker.run_once()
        ours = [kind for kind, call in writer.calls[1:]
                if (call[1] if kind == "move" else call).booking_id == booking["id"]]
        assert sorted(ours) == ["delete", "write"]


@pytest.fixture(params=["radicale", "xandikos"])
def dav_peer(request: pytest.FixtureRequest, peer_pool: PeerPool) -> Any:
    yield from peer_for(peer_pool, request.param, request, pytest.MonkeyPatch())


async def test_a_moved_booking_moves_its_hold_at_the_same_href_never_two(
        dav_peer: Any, make_config: Any, serve: Any) -> None:
    """End to end on a real CalDAV server (Radicale and Xandikos), the real adapter:
    the hold is written, moved twice in place, synced back counted once, removed."""

    peer = dav_peer
    work = peer.make_calendar("Work")
    client, runtime = await serve(config(make_config, peer))
    assert (await runtime.sync.run_all_once())[0].ok
    response = await client.post("/api/v1/pages/intro/bookings", json={
        "start": SLOT, "name": "Sam", "email": "sam@example.org"})
    booking = await response.json()
    assert await runtime.holds.run_once() == 1
    hrefs = peer.hrefs(work)
    [written] = holds(peer, work)

    await move(client, booking, "2026-11-27T09:30:00Z")
    assert await runtime.holds.run_once() == 1
    assert peer.hrefs(work) == hrefs, "the same resource, no second one"
    [moved] = holds(peer, work)
    assert moved.decoded("DTSTART").isoformat() == "2026-11-27T09:30:00+00:00"
    assert str(moved["UID"]) == str(written["UID"])
    assert int(moved.get("SEQUENCE", 0)) > int(written.get("SEQUENCE", 0))
    assert str(moved["LOCATION"]) == str(written["LOCATION"]), "the video link kept"

    await move(client, booking, "2026-11-30T11:00:00Z")
    assert await runtime.holds.run_once() == 1
    assert peer.hrefs(work) == hrefs
    [again] = holds(peer, work)
    assert again.decoded("DTSTART").isoformat() == "2026-11-30T11:00:00+00:00"

    # Synced back, the hold is the booking's: busy once, at the new time only.
    await runtime.sync.run_all_once()
    api = await client.get("/api/v1/freebusy?calendar=me&start=2026-11-26&end=2026-12-01",
                           headers={"Authorization": "Bearer s3cret-s3cret-s3cret-0001"})
    assert [(b["start"], b["end"]) for b in (await api.json())["busy"]] == [
        ("2026-11-30T11:00:00Z", "2026-11-30T11:30:00Z")]
    # Cancelling removes it with the etag the last move left.
    assert (await client.post(booking["cancel_url"].removeprefix(BASE))).status == 200
    assert await runtime.holds.run_once() == 1
    assert holds(peer, work) == []
