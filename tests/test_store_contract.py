"""The store's contract, run against both backends: SQLite (a file) and PostgreSQL (real).

Every method the server uses, with the same expectations on each, so a query
written for one and wrong on the other fails here.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from server.config.database import PostgresUrl
from server.errors import LeaseLost
from server.store import (
    BookingRecord,
    BookingTransaction,
    BusyRow,
    Fence,
    PushChannel,
    SlotTaken,
    Store,
    StoredItem,
)

pytestmark = pytest.mark.postgres


def stored(key: str, *rows: tuple[int, int], recurring: bool = False,
           ical: str = "BEGIN:VCALENDAR") -> StoredItem:
    return StoredItem(key=key, ical=ical, content_hash=f"h-{key}", etag=f"e-{key}",
                      recurring=recurring,
                      instances=tuple(BusyRow(s, e, "busy") for s, e in rows))


def booking(booking_id: str, start: int, end: int, *, host: str = "me", page: str = "p",
            created: int = 1) -> BookingRecord:
    return BookingRecord(id=booking_id, page=page, host=host, start=start, end=end,
                         guest_name="Guest", guest_email="g@example.org",
                         answers={"topic": "x"}, cancel_secret="s3cret", status="confirmed",
                         created=created, video_link="", guest_timezone="Europe/Berlin")




async def test_sources_are_created_once_and_a_new_kind_starts_afresh(store: Store) -> None:
    first = await store.ensure_source("b", "ics")
    assert await store.ensure_source("b", "ics") == first
    await store.ensure_source("a", "caldav")
    assert [s.name for s in await store.sources()] == ["a", "b"]
    await store.apply_changes(first, upserts=[stored("x", (10, 20))], deletes=[], state={},
                              now=1, window_end=None)
    second = await store.ensure_source("b", "google")
    assert second != first
    assert await store.busy_rows([first, second], 0, 100) == []
    assert (await store.source(second)).kind == "google"


async def test_a_sync_round_is_stored_whole(store: Store) -> None:
    source = await store.ensure_source("s", "ics")
    await store.apply_changes(
        source, upserts=[stored("x", (10, 20), (30, 40), recurring=True), stored("y", (50, 60))],
        deletes=[], state={"token": "t1"}, now=100, window_end=1000)
    record = await store.source(source)
    assert (record.state, record.last_success, record.last_change, record.item_count,
            record.window_end) == ({"token": "t1"}, 100, 100, 2, 1000)
    assert sorted(tuple(r) for r in await store.busy_rows([source], 0, 100)) == [
        (10, 20, "busy"), (30, 40, "busy"), (50, 60, "busy")]
    assert sorted(tuple(r) for r in await store.busy_rows([source], 15, 35)) == [
        (10, 20, "busy"), (30, 40, "busy")]
    assert await store.item_hashes(source) == {"x": "h-x", "y": "h-y"}
    assert [key for key, _ in await store.recurring_items(source)] == ["x"]
    assert await store.instance_counts() == {source: 3}

    # An unchanged round keeps last_change; a delete drops the item and its instances.
    await store.apply_changes(source, upserts=[], deletes=[], state={"token": "t2"}, now=200,
                              window_end=None)
    record = await store.source(source)
    assert (record.last_change, record.window_end, record.state) == (100, 1000, {"token": "t2"})
    await store.apply_changes(source, upserts=[], deletes=["x"], state={}, now=300,
                              window_end=None)
    assert [tuple(r) for r in await store.busy_rows([source], 0, 100)] == [(50, 60, "busy")]
    assert (await store.source(source)).last_change == 300


async def test_a_failed_round_changes_nothing(store: Store) -> None:
    source = await store.ensure_source("s", "ics")
    await store.apply_changes(source, upserts=[stored("x", (10, 20))], deletes=[],
                              state={"v": 1}, now=1, window_end=None)
    with pytest.raises(Exception):  # noqa: B017, PT011 - each driver has its own error
        await store.apply_changes(source, upserts=[stored("w", (60, 70)), stored("z", (50, 40))],
                                  deletes=["x"], state={"v": 2}, now=2, window_end=None)
    assert [tuple(r) for r in await store.busy_rows([source], 0, 100)] == [(10, 20, "busy")]
    assert (await store.source(source)).state == {"v": 1}
    # The store is usable after the failure.
    await store.record_unchanged(source, state={"v": 3}, now=3)
    assert (await store.source(source)).state == {"v": 3}


async def test_failures_count_and_a_success_resets_them(store: Store) -> None:
    source = await store.ensure_source("s", "ics")
    assert await store.record_failure(source, error="boom", now=1) == 1
    assert await store.record_failure(source, error="x" * 5000, now=2, needs_reauth=True) == 2
    record = await store.source(source)
    assert record.needs_reauth and len(record.last_error or "") == 2000
    await store.record_unchanged(source, state={}, now=3)
    record = await store.source(source)
    assert (record.consecutive_failures, record.needs_reauth, record.last_error) == (0, False, None)
    await store.record_duration(source, 1.5)
    assert await store.durations() == {source: 1500}


async def test_window_moves_and_old_instances_go(store: Store) -> None:
    source = await store.ensure_source("s", "ics")
    await store.apply_changes(source, upserts=[stored("r", (10, 20), recurring=True)],
                              deletes=[], state={}, now=1, window_end=100)
    await store.replace_instances(source, [stored("r", (10, 20), (110, 120), recurring=True)],
                                  window_end=200)
    assert (await store.source(source)).window_end == 200
    assert await store.prune_instances(source, before=50) == 1
    assert [tuple(r) for r in await store.busy_rows([source], 0, 500)] == [(110, 120, "busy")]


async def test_a_long_instance_is_found_by_a_short_query(store: Store) -> None:
    source = await store.ensure_source("s", "ics")
    await store.apply_changes(source, upserts=[stored("long", (0, 10_000)), stored("s", (5, 6))],
                              deletes=[], state={}, now=1, window_end=None)
    assert sorted(tuple(r) for r in await store.busy_rows([source], 5000, 5001)) == [
        (0, 10_000, "busy")]


async def test_text_a_database_cannot_hold_is_kept_readable(store: Store) -> None:
    source = await store.ensure_source("s", "ics")
    await store.apply_changes(source, upserts=[stored("n", (1, 2), ical="A\x00B é 😀")],
                              deletes=[], state={"name": "Zoë"}, now=1, window_end=None)
    [(key, ical, _)] = await store.items(source)
    assert key == "n" and ical in ("A\x00B é 😀", "A\ufffdB é 😀")
    assert (await store.source(source)).state == {"name": "Zoë"}


async def test_bookings_hold_time_and_cancelling_frees_it(store: Store) -> None:
    async with store.booking_transaction() as tx:
        await tx.insert(booking("bk_1", 100, 200, created=50), [("me", 100, 200),
                                                                ("room", 100, 200)])
        await tx.queue_hold("bk_1", "me", source="cal", calendar=None,
                            hold={"summary": "Busy"}, now=50)
    assert [tuple(r) for r in await store.busy_rows([], 0, 1000, ["room"])] == [
        (100, 200, "busy")]
    saved = await store.booking("bk_1")
    assert saved == booking("bk_1", 100, 200, created=50)
    assert await store.booking_starts("me", 0, 1000) == [100]
    assert await store.known_bookings({"bk_1", "bk_nope"}) == {"bk_1"}
    assert [b.id for b in await store.bookings_holding("room", 0, 1000)] == ["bk_1"]
    async with store.booking_transaction() as tx:
        assert await tx.host_stats(["me", "other"], since=0) == {"me": (1, 50)}
        assert await tx.booking_starts("me", 0, 1000) == [100]
    counts = await store.booking_counts(now=150)
    assert (counts["p"].upcoming, counts["p"].past, counts["p"].cancelled) == (0, 1, 0)

    assert await store.cancel_booking("bk_1", now=60)
    assert not await store.cancel_booking("bk_1", now=61)
    assert await store.busy_rows([], 0, 1000, ["me", "room"]) == []
    assert (await store.booking("bk_1")).status == "cancelled"  # type: ignore[union-attr]
    assert sorted((h.action, h.host) for h in await store.undelivered_holds()) == [
        ("delete", "me"), ("write", "me")]
    assert (await store.booking_counts(now=0))["p"].cancelled == 1


async def test_the_database_refuses_two_bookings_of_one_calendar_at_once(store: Store) -> None:
    async with store.booking_transaction() as tx:
        await tx.insert(booking("bk_1", 100, 200), [("me", 100, 200)])
    with pytest.raises(SlotTaken):
        async with store.booking_transaction() as tx:
            await tx.insert(booking("bk_2", 150, 250), [("me", 150, 250)])
    assert await store.booking("bk_2") is None
    # Back to back, or another calendar, is fine.
    async with store.booking_transaction() as tx:
        await tx.insert(booking("bk_3", 200, 300), [("me", 200, 300)])
        await tx.insert(booking("bk_4", 150, 250, host="you"), [("you", 150, 250)])
    # A cancelled booking's time can be booked again.
    await store.cancel_booking("bk_1", now=1)
    async with store.booking_transaction() as tx:
        await tx.insert(booking("bk_5", 100, 200), [("me", 100, 200)])


async def test_the_hold_outbox_delivers_and_retries(store: Store) -> None:
    async with store.booking_transaction() as tx:
        await tx.insert(booking("bk_1", 100, 200), [("me", 100, 200)])
        await tx.queue_hold("bk_1", "me", source="cal", calendar="work",
                            hold={"summary": "Busy"}, now=10)
    [row] = await store.due_holds(now=10)
    assert (row.booking_id, row.host, row.action, row.source, row.calendar) == (
        "bk_1", "me", "write", "cal", "work")
    await store.hold_failed(row, error="503", retry_at=40)
    assert await store.due_holds(now=39) == []
    assert await store.hold_pending(row)
    [row] = await store.due_holds(now=40)
    await store.hold_delivered(row, ref="/cal/bk_1.ics", etag='"1"',
                               problem="no video link: Meet pending")
    assert not await store.hold_pending(row)
    assert await store.write_ref("bk_1", "me") == ("/cal/bk_1.ics", '"1"')
    assert await store.video_problem("bk_1") == "Meet pending"
    assert [(a, s, n) for a, s, n, _ in await store.hold_summary()] == [("write", "done", 1)]


async def test_a_hold_cancelled_before_delivery_is_never_written(store: Store) -> None:
    async with store.booking_transaction() as tx:
        await tx.insert(booking("bk_1", 100, 200), [("me", 100, 200)])
        await tx.queue_hold("bk_1", "me", source="cal", calendar=None, hold={}, now=10)
    await store.retire_write("bk_1", "me")
    assert await store.due_holds(now=10) == []


async def test_the_caldav_change_log(store: Store) -> None:
    await store.dav_refresh("c", [("a", 10, 20, "busy"), ("b", 30, 40, "tentative")], now=1,
                            prune_before=0)
    collection = await store.dav_collection("c")
    assert collection is not None and collection.last_seq == 2
    assert [m.uid for m in await store.dav_members("c")] == ["a", "b"]
    assert [m.uid for m in await store.dav_members("c", start=25, end=50)] == ["b"]
    assert [m.uid for m in await store.dav_members("c", uids=["b", "zz"])] == ["b"]
    assert await store.dav_members("c", uids=[]) == []
    await store.dav_refresh("c", [("b", 30, 40, "tentative"), ("c", 50, 60, "busy")], now=5,
                            prune_before=0)
    changes = await store.dav_changes("c", since=2, limit=10, initial=False)
    assert [(m.uid, m.removed) for m in changes] == [("a", True), ("c", False)]
    assert [m.uid for m in await store.dav_changes("c", since=0, limit=10, initial=True)] == [
        "b", "c"]
    # Pruning the removal moves the floor: older tokens are no longer good.
    await store.dav_refresh("c", [("b", 30, 40, "tentative"), ("c", 50, 60, "busy")], now=9,
                            prune_before=6)
    collection = await store.dav_collection("c")
    assert collection is not None and collection.floor_seq == 3
    assert len(collection.lineage) >= 8


async def test_push_channels_alerts_and_secrets(store: Store) -> None:
    channel = PushChannel("ch1", "google-src", "primary", "res", "tok", 1000, 1)
    await store.add_channel(channel)
    assert await store.channel("ch1") == channel and await store.channels() == [channel]
    await store.remove_channel("ch1")
    assert await store.channel("ch1") is None

    await store.change_alert_state("source:a", "failing", now=5,
                                   messages=[("ops", {"text": "a fails"})])
    assert await store.alert_states() == {"source:a": ("failing", 5)}
    [message] = await store.due_alerts(now=5)
    assert message.payload == {"text": "a fails"} and message.attempts == 0
    await store.alert_failed(message.id, error="smtp down", retry_at=50)
    assert await store.due_alerts(now=49) == []
    [message] = await store.due_alerts(now=50)
    assert message.attempts == 1
    await store.alert_sent(message.id)
    assert await store.due_alerts(now=100) == []

    secret = await store.calendar_secret("me", now=1)
    assert len(secret) >= 40 and await store.calendar_secret("me", now=2) == secret


async def test_another_instance_sees_changes(location: Path | PostgresUrl) -> None:
    """Two stores on one database: instances, or a server and `fbproxy sync`."""
    first, second = await Store.open(location), await Store.open(location)
    try:
        before = await second.busy_generation(max_age=0)
        async with first.booking_transaction() as tx:
            await tx.insert(booking("bk_1", 100, 200), [("me", 100, 200)])
        after = await second.busy_generation(max_age=0)
        assert after != before
        secrets = await asyncio.gather(first.calendar_secret("x", now=1),
                                       second.calendar_secret("x", now=1))
        assert secrets[0] == secrets[1]
        assert await second.ensure_source("s", "ics") == await first.ensure_source("s", "ics")
    finally:
        await first.close()
        await second.close()



async def test_leases_are_taken_renewed_and_taken_over_with_a_new_epoch(store: Store) -> None:
    names = ["a", "b"]
    assert await store.take_leases(names, "one", now=100, ttl=10) == {"a": 1, "b": 1}
    # Held: another instance gets nothing until they run out; then it gets a new epoch.
    assert await store.take_leases(names, "two", now=105, ttl=10) == {}
    assert await store.take_leases(names, "one", now=108, ttl=10) == {"a": 1}, \
        "two is alive now: one keeps its share and lets b go"
    assert await store.take_leases(names, "two", now=109, ttl=10) == {"b": 2}
    assert (await store.lease_holders())["b"] == ("two", 119)
    # one dies (no renewal): after its leases ran out, two takes a as well.
    assert await store.take_leases(names, "two", now=115, ttl=10) == {"b": 2}
    assert await store.take_leases(names, "two", now=119, ttl=10) == {"a": 2, "b": 2}
    # A clean shutdown frees them at once.
    await store.release_leases("two")
    assert await store.take_leases(names, "three", now=120, ttl=10) == {"a": 3, "b": 3}


async def test_a_round_commits_only_under_its_fence(store: Store) -> None:
    source = await store.ensure_source("a", "ics")
    await store.take_leases(["a"], "one", now=100, ttl=10)
    mine = Fence(state={}, holder="one", epoch=1)
    await store.apply_changes(source, upserts=[stored("x", (10, 20))], deletes=[],
                              state={"t": 1}, now=100, window_end=None,
                              fence=mine)
    # The state moved on: a round that started from {} is refused, also under the lease.
    with pytest.raises(LeaseLost, match="sync state changed"):
        await store.record_unchanged(source, state={"t": 0}, now=101, fence=mine)
    # Another instance took the lease over: the old holder's round is discarded.
    await store.take_leases(["a"], "two", now=111, ttl=10)
    stale = Fence(state={"t": 1}, holder="one", epoch=1)
    with pytest.raises(LeaseLost, match="took over"):
        await store.apply_changes(source, upserts=[stored("y", (30, 40))], deletes=["x"],
                                  state={"t": 2}, now=112, window_end=None, fence=stale)
    with pytest.raises(LeaseLost):
        await store.replace_instances(source, [stored("x", (50, 60))], 1000, fence=stale)
    assert [tuple(r) for r in await store.busy_rows([source], 0, 100)] == [(10, 20, "busy")]
    assert (await store.source(source)).state == {"t": 1}
    await store.record_unchanged(source, state={"t": 3}, now=113,
                                 fence=Fence(state={"t": 1}, holder="two", epoch=2))


async def test_outbox_rows_are_claimed_by_one_instance(store: Store) -> None:
    async with store.booking_transaction() as tx:
        for n in range(3):
            await tx.insert(booking(f"bk_{n}", 100 + 100 * n, 150 + 100 * n), [
                ("me", 100 + 100 * n, 150 + 100 * n)])
            await tx.queue_hold(f"bk_{n}", "me", source="cal", calendar=None, hold={}, now=10)
    first = await store.claim_holds(10, holder="one", claim_seconds=30, limit=2)
    second = await store.claim_holds(10, holder="two", claim_seconds=30)
    assert len(first) == 2 and len(second) == 1
    assert {r.booking_id for r in first} | {r.booking_id for r in second} == {
        "bk_0", "bk_1", "bk_2"}
    assert await store.claim_holds(20, holder="two", claim_seconds=30) == []
    assert await store.renew_hold_claim(first[0], holder="one", until=60)
    assert not await store.renew_hold_claim(first[0], holder="two", until=60)
    # Claims run out (the renewed one later): "one" died, "two" may deliver them.
    assert sorted(r.booking_id for r in await store.claim_holds(40, holder="two",
                                                                claim_seconds=30)) == sorted(
        [first[1].booking_id, second[0].booking_id])
    await store.hold_failed(second[0], error="503", retry_at=10)
    assert [r.booking_id for r in await store.claim_holds(40, holder="three",
                                                          claim_seconds=30)] == [
        second[0].booking_id], "a failed delivery's claim ends with it"

    await store.change_alert_state("s", "failing", now=1, messages=[("ops", {"n": 1})])
    assert not await store.change_alert_state("s", "failing", now=1,
                                              messages=[("ops", {"n": 1})]), \
        "another instance saw the same change: queued once"
    assert len(await store.claim_alerts(1, holder="one", claim_seconds=30)) == 1
    assert await store.claim_alerts(1, holder="two", claim_seconds=30) == []


async def test_instances_starting_together_migrate_once(postgres_url: str) -> None:
    import asyncpg

    from server.errors import StoreError
    from server.store.schema_pg import PG_MIGRATIONS

    stores = await asyncio.gather(*(Store.open(PostgresUrl(postgres_url)) for _ in range(5)))
    for opened in stores:
        await opened.close()
    connection = await asyncpg.connect(postgres_url)
    try:
        versions = [r["version"] for r in await connection.fetch(
            "SELECT version FROM schema_migrations ORDER BY version")]
        assert versions == list(range(1, len(PG_MIGRATIONS) + 1))
        await connection.execute("INSERT INTO schema_migrations (version) VALUES ($1)",
                                 len(PG_MIGRATIONS) + 1)
    finally:
        await connection.close()
    with pytest.raises(StoreError, match="newer than this fbproxy"):
        await Store.open(PostgresUrl(postgres_url))


async def test_an_unreachable_database_is_a_clear_error() -> None:
    from server.errors import StoreUnavailable
    from tests.peers import free_port

    url = f"postgresql://fbproxy:secret-pw@127.0.0.1:{free_port()}/nowhere"
    with pytest.raises(StoreUnavailable) as caught:
        await Store.open(PostgresUrl(url))
    assert "secret-pw" not in str(caught.value) and "***" in str(caught.value)


async def test_a_read_after_a_commit_sees_it_while_other_reads_run(store: Store) -> None:
    """Reads share one connection on SQLite; one still stepping through its rows must
    not hold a snapshot that a read started after a commit then answers from (seen as
    a sync round's fence failing in one process under load)."""
    source = await store.ensure_source("a", "ics")
    for key in ("other-1", "other-2", "other-3"):
        await store.ensure_source(key, "ics")
    done = asyncio.Event()

    async def other_reads() -> None:
        while not done.is_set():  # several rows, only the first taken
            await store.database.reads.fetchone("SELECT name FROM sources ORDER BY id")

    readers = [asyncio.create_task(other_reads()) for _ in range(4)]
    try:
        for value in range(300):
            await store.record_unchanged(source, state={"t": value}, now=value)
            assert (await store.source(source)).state == {"t": value}
    finally:
        done.set()
        await asyncio.gather(*readers)


async def test_a_booking_run_in_one_go_commits_whole_or_not_at_all(store: Store) -> None:
    """``Store.book``: the check and the insert as one transaction, which on SQLite runs to
    its end in the writer's thread; a refusal inside leaves nothing behind."""
    threads: list[str] = []
    generation = await store.booking_generation()

    async def insert(tx: BookingTransaction) -> str:
        threads.append(threading.current_thread().name)
        assert await tx.booking_starts("me", 0, 1000) == []
        await tx.insert(booking("bk_1", 100, 200), [("me", 100, 200)])
        return "bk_1"

    assert await store.book(insert) == "bk_1"
    assert await store.booking_generation() != generation
    if store.database.dialect == "sqlite":
        assert len(threads) == 1 and threads[0].startswith("fbproxy-sqlite-writer")

    async def refuse(tx: BookingTransaction) -> str:
        await tx.insert(booking("bk_2", 300, 400), [("me", 300, 400)])
        raise ValueError("refused after the insert")

    with pytest.raises(ValueError, match="refused after the insert"):
        await store.book(refuse)
    assert await store.booking("bk_2") is None

    async def overlap(tx: BookingTransaction) -> str:
        await tx.insert(booking("bk_3", 150, 250), [("me", 150, 250)])
        return "bk_3"

    with pytest.raises(SlotTaken):
        await store.book(overlap)
    assert await store.booking("bk_3") is None


async def test_a_booking_run_in_one_go_awaits_only_its_transaction(tmp_path: Path) -> None:
    """Anything else awaited would need the event loop the writer's thread has not got:
    refused, and nothing of it is stored."""
    store = await Store.open(tmp_path / "store.sqlite3")
    try:
        async def wanders(tx: BookingTransaction) -> None:
            await tx.insert(booking("bk_1", 100, 200), [("me", 100, 200)])
            await asyncio.sleep(0)

        with pytest.raises(RuntimeError, match="awaited something other than its session"):
            await store.book(wanders)
        assert await store.booking("bk_1") is None
    finally:
        await store.close()


async def test_the_mail_outbox_queues_with_the_booking_claims_once_and_drops_reminders(
        store: Store) -> None:
    from server.store import MailJob

    jobs = [MailJob("invite", "guest", "g@example.org", 1),
            MailJob("reminder", "guest", "g@example.org", 500, "1h"),
            MailJob("host_booked", "me", "me@example.org", 1)]

    async def body(tx: BookingTransaction) -> None:
        await tx.insert(booking("b1", 1000, 2000), [("me", 1000, 2000)])
        record = booking("b1", 1000, 2000)
        await tx.queue_mail(record, jobs, now=1, per_address_per_day=2)
        await tx.queue_mail(record, jobs, now=1, per_address_per_day=2)  # harmless again

    await store.book(body)
    assert [(k, s) for k, _r, s, _q, _t in await store.mail_of_booking("b1")] == [
        ("invite", "pending"), ("reminder", "pending"), ("host_booked", "pending")]
    claimed = await store.claim_mail(10, holder="a", claim_seconds=60)
    assert [r.kind for r in claimed] == ["invite", "host_booked"], "the reminder is not due"
    assert await store.claim_mail(10, holder="b", claim_seconds=60) == [], "claimed by a"
    await store.mail_sent(claimed[0], now=11)
    await store.mail_failed(claimed[1], error="451 later", retry_at=100)
    summary = await store.mail_summary(20)
    assert (summary.pending, summary.failing, summary.sent, summary.dropped) == (0, 1, 1, 0)
    assert summary.last_error == "451 later"
    # Cancelling: the reminder is dropped (and no longer counts), and the CANCEL is
    # over the address's limit of 1 (the invitation went out): dropped too.
    assert await store.cancel_booking("b1", now=30, reason="ill", mail=[
        MailJob("cancel", "guest", "g@example.org", 30)], mail_limit=1)
    states = {(k, s) for k, _r, s, _q, _t in await store.mail_of_booking("b1")}
    assert ("reminder", "dropped") in states and ("cancel", "dropped") in states
    cancelled = await store.booking("b1")
    assert cancelled is not None and (cancelled.sequence, cancelled.cancel_reason,
                                      cancelled.cancelled_by) == (1, "ill", "guest")
