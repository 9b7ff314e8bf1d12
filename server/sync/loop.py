"""The sync loop: one task per source, polling, backoff, expansion, storing.

A source's failure is recorded and retried with backoff; it never touches
another source, and its last good data keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import BrokenExecutor
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from adapters.base import (
    AdapterError,
    AuthExpired,
    ChangeSet,
    Item,
    SkippedItem,
    SourceAdapter,
    SyncTokenInvalid,
)
from server.config.model import SourceConfig
from server.errors import ExpansionFailed, LeaseLost, StoreError
from server.kit.clock import Clock
from server.kit.metrics import Metrics
from server.store import Fence, SourceRecord, Store, StoredItem
from server.sync.expand import EXPANSION_VERSION, ExpandContext
from server.sync.expander import Expander
from server.sync.expander import expand_items as expand_items  # bench/ calls it from here
from server.sync.leases import WAKE_CHANNEL, SourceLeases

log = logging.getLogger("fbproxy.sync")

FIRST_RETRY = timedelta(seconds=30)
MAX_RETRY = timedelta(minutes=30)
# Recurring series are re-expanded when the window has moved on this much.
WINDOW_SLACK = timedelta(days=1)
PAST_KEPT = timedelta(days=1)
# First syncs (of a source with nothing stored yet) running at once. Each holds
# its whole calendar in memory until it is stored: ten at a start held ten. Only
# first syncs wait for a slot (a hung upstream holds one up to its timeout).
FIRST_SYNCS = 2


@dataclass(frozen=True, slots=True)
class SyncOutcome:
    source: str
    ok: bool
    unchanged: bool = False
    full: bool = False
    items: int = 0
    expanded: int = 0
    deleted: int = 0
    skipped: tuple[SkippedItem, ...] = ()
    error: str | None = None
    seconds: float = 0.0
    bytes_received: int = 0
    requests: int = 0
    fetched: int = 0
    # Run by the instance holding the source's lease, not by this one.
    elsewhere: bool = False


MAX_RETRY_AFTER = 86400.0
# How often a booking's re-check looks whether the lease holder has run its round.
ELSEWHERE_POLL = 0.1


def retry_delay(failures: int, poll_interval: timedelta, rng: random.Random) -> float:
    """Seconds until the next round: the poll interval, or backoff after failures."""
    if failures <= 0:
        return poll_interval.total_seconds()
    cap = max(poll_interval, MAX_RETRY).total_seconds()
    first = min(FIRST_RETRY, poll_interval).total_seconds()
    base: float = min(cap, first * 2.0 ** min(failures - 1, 32))
    return base * rng.uniform(0.8, 1.2)


def item_fingerprint(item: Item, context: ExpandContext) -> str:
    """Changes when the item or anything that shapes its expansion changes."""
    digest = hashlib.sha256()
    owners = ",".join(sorted(context.owner_emails))
    digest.update(f"{EXPANSION_VERSION}|{context.zone.key}|{owners}|".encode())
    digest.update(item.ical.encode())
    return digest.hexdigest()


def _settle(checked: asyncio.Future[SyncOutcome], task: asyncio.Task[SyncOutcome]) -> None:
    """A re-check round ended before its upstream was checked: its waiters get how."""
    if checked.done():
        return
    if task.cancelled():
        checked.cancel()
    elif task.exception() is not None:
        checked.set_exception(task.exception())  # type: ignore[arg-type]
    else:
        checked.set_result(task.result())


class SourceSyncer:
    """Keeps one source in the store up to date."""

    def __init__(self, source: SourceConfig, source_id: int, adapter: SourceAdapter, *,
                 store: Store, clock: Clock, expander: Expander, horizon_days: int,
                 rng: random.Random | None = None, metrics: Metrics | None = None) -> None:
        self.source = source
        self.source_id = source_id
        self.adapter = adapter
        self._store = store
        self._clock = clock
        self._expander = expander
        self._horizon = timedelta(days=horizon_days)
        self._rng = rng or random.Random()
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._metrics = metrics
        self.failures = 0
        self._retry_after = 0.0  # what the upstream asked for at its last failure
        # The newest re-check round (started when, and when the upstream was checked
        # in it), shared by concurrent rechecks.
        self._latest_round: tuple[float, asyncio.Future[SyncOutcome]] | None = None
        # Resolved by the running round once the upstream's changes are stored or
        # known to be none: what a re-check waits for, not the round's bookkeeping
        # after that (its own state and duration written, the window rolled on).
        self._checked: asyncio.Future[SyncOutcome] | None = None
        # Every re-check round not yet finished: a newer one may have replaced
        # the latest while an older one still waits for the lock.
        self._rounds: set[asyncio.Task[SyncOutcome]] = set()
        # Whether the stored items were checked against this run's expansion (its
        # version, the source's zone and owners) since this syncer started.
        self._expansions_checked = False
        # Who runs this source's rounds when several instances share the store
        # (None: this syncer alone), and the fence of the round under way.
        self.leases: SourceLeases | None = None
        self._fence: Fence | None = None
        # The slots the manager's first syncs share (None: no limit), and whether
        # this source has stored anything (then its rounds take none).
        self.first_syncs: asyncio.Semaphore | None = None
        self._stored_once = False

    def context(self) -> ExpandContext:
        now = self._clock.now()
        return ExpandContext(
            zone=self.source.zone, window_start=now - PAST_KEPT, window_end=now + self._horizon,
            owner_emails=frozenset(self.source.owner_emails))

    def trigger(self) -> None:
        """Sync now instead of waiting for the next poll (push, manual)."""
        self._wake.set()

    def held_here(self) -> bool:
        return self.leases is None or self.leases.holds(self.source.name)

    async def run_forever(self) -> None:
        while True:
            if not self.held_here():
                assert self.leases is not None
                await self.leases.wait_held(self.source.name)
            await self.run_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.next_delay())
            self._wake.clear()

    def next_delay(self) -> float:
        """Seconds until the next round: the poll, backoff, or the upstream's Retry-After."""
        delay = retry_delay(self.failures, self.source.poll_interval, self._rng)
        return max(delay, self._retry_after) if self.failures else delay

    async def fresh_round(self, since: float) -> SyncOutcome:
        """A round that started at ``since`` (time.perf_counter) or later.

        Many bookings checking the same source at once share one round instead
        of each asking the upstream again. When another instance holds the
        source's lease, it is asked to run the round, and this one waits for it.
        """
        if not self.held_here():
            return await self._round_elsewhere()
        if self._latest_round is None or self._latest_round[0] < since:
            checked = asyncio.get_running_loop().create_future()
            task = asyncio.create_task(self.run_once(checked=checked))
            self._rounds.add(task)
            task.add_done_callback(self._rounds.discard)
            task.add_done_callback(functools.partial(_settle, checked))
            self._latest_round = (time.perf_counter(), checked)
        return await asyncio.shield(self._latest_round[1])

    async def _round_elsewhere(self) -> SyncOutcome:
        """Wake the lease holder's syncer and wait for the round it then runs.

        The caller bounds the wait (a booking's recheck_timeout)."""
        asked = int(self._clock.now().timestamp())
        await self._store.database.notify(WAKE_CHANNEL, self.source.name)
        while True:
            record = await self._store.source(self.source_id)
            if record.last_attempt is not None and record.last_attempt >= asked:
                ok = record.last_success is not None and record.last_success >= asked
                return SyncOutcome(self.source.name, ok=ok, elsewhere=True,
                                   error=None if ok else record.last_error)
            if self.held_here():  # the holder went away and this instance took over
                return await self.run_once()
            await asyncio.sleep(ELSEWHERE_POLL)

    async def cancel_rounds(self) -> None:
        """Stop the re-check rounds still running (shutdown: the store closes next)."""
        rounds = list(self._rounds)
        for task in rounds:
            task.cancel()
        await asyncio.gather(*rounds, return_exceptions=True)

    async def run_once(self, *, checked: asyncio.Future[SyncOutcome] | None = None,
                       ) -> SyncOutcome:
        """One round; ``checked`` is resolved as soon as the upstream's changes are
        stored or known to be none (else by whatever ends the round: see ``_settle``)."""
        async with self._lock:
            self._checked = checked
            try:
                return await self._locked_round()
            finally:
                self._checked = None

    def _upstream_checked(self, outcome: SyncOutcome) -> None:
        """The round's changes are stored, or there are none: re-checks may go on."""
        if self._checked is not None and not self._checked.done():
            self._checked.set_result(outcome)

    async def _locked_round(self) -> SyncOutcome:
        started = time.perf_counter()
        try:
            async with await self._first_sync_slot():
                outcome = await self._round()
        except LeaseLost as exc:  # discarded: the source's new holder does the work
            log.warning("%s", exc)
            return SyncOutcome(self.source.name, ok=False, error=str(exc), elsewhere=True)
        except (StoreError, ExpansionFailed) as exc:  # a full disk, a killed worker: this
            # round's writes are undone or never made; try later
            log.error("source %s: %s", self.source.name, exc)
            outcome = SyncOutcome(self.source.name, ok=False, error=str(exc))
            with contextlib.suppress(StoreError):
                await self._store.record_failure(
                    self.source_id, error=str(exc), now=int(self._clock.now().timestamp()))
        outcome = replace(outcome, seconds=time.perf_counter() - started)
        if outcome.elsewhere:
            return outcome
        self.failures = 0 if outcome.ok else self.failures + 1
        with contextlib.suppress(StoreError):
            await self._store.record_duration(self.source_id, outcome.seconds)
        if self._metrics is not None:
            self._metrics.sync_round(self.source.name, outcome.ok, outcome.unchanged,
                                     outcome.seconds)
        return outcome

    async def _first_sync_slot(self) -> contextlib.AbstractAsyncContextManager[Any]:
        """One of the first syncs' few slots while nothing of the source is stored yet,
        else nothing to wait for: other sources' rounds never wait for a first sync."""
        if self.first_syncs is None or self._stored_once:
            return contextlib.nullcontext()
        self._stored_once = (await self._store.source(self.source_id)).window_end is not None
        return contextlib.nullcontext() if self._stored_once else self.first_syncs

    async def _round(self) -> SyncOutcome:
        record = await self._store.source(self.source_id)
        if self.leases is None:
            self._fence = Fence(state=dict(record.state))
        else:
            self._fence = self.leases.fence(self.source.name, record.state)
            if self._fence is None:
                return SyncOutcome(self.source.name, ok=False, elsewhere=True,
                                   error="another instance syncs this source")
        context = self.context()
        try:
            changes = await self._fetch(record)
        except AuthExpired as exc:
            return await self._failed(exc, needs_reauth=True)
        except AdapterError as exc:
            return await self._failed(exc)
        except BrokenExecutor as exc:  # the worker reading the feed died
            raise ExpansionFailed(f"a worker process died while reading the source ({exc}); "
                                  "it is tried again") from exc
        except Exception as exc:  # an adapter bug must not end the loop
            log.exception("source %s: unexpected error while syncing", self.source.name)
            return await self._failed(exc)
        now = int(self._clock.now().timestamp())
        if not self._expansions_checked:
            await self._expand_outdated(record, context)
            self._expansions_checked = True
        if changes.unchanged:
            self._upstream_checked(SyncOutcome(self.source.name, ok=True, unchanged=True,
                                               items=record.item_count))
            await self._store.record_unchanged(self.source_id, state=dict(changes.state),
                                               now=now, fence=self._fence)
            self._moved_to(changes.state)
            skipped = await self._roll_window(record, context)
            return SyncOutcome(self.source.name, ok=True, unchanged=True,
                               items=record.item_count, skipped=tuple(skipped),
                               bytes_received=changes.bytes_received,
                               requests=changes.requests)
        return await self._apply(record, changes, context, now)

    async def _fetch(self, record: SourceRecord) -> ChangeSet:
        try:
            return await self.adapter.sync(record.state)
        except SyncTokenInvalid as exc:
            log.warning("source %s: sync token rejected (%s); doing a full resync",
                        self.source.name, exc.message)
            return await self.adapter.sync({})

    async def _apply(self, record: SourceRecord, changes: ChangeSet, context: ExpandContext,
                     now: int) -> SyncOutcome:
        known = await self._store.item_hashes(self.source_id)
        fingerprints = {item.key: item_fingerprint(item, context) for item in changes.upserted}
        changed = [i for i in changes.upserted if known.get(i.key) != fingerprints[i.key]]
        stored, skipped = await self._expand(changed, context, fingerprints)
        deletes = set(changes.deleted)
        scopes = ("",) if changes.full else changes.full_scopes
        if scopes:
            # A skipped item keeps its last good version instead of vanishing.
            deletes |= {key for key in known if key.startswith(scopes)} - set(fingerprints)
        deletes &= set(known)
        fresh_window = record.window_end is None
        await self._store.apply_changes(
            self.source_id, upserts=stored, deletes=sorted(deletes), state=dict(changes.state),
            now=now, window_end=int(context.window_end.timestamp()) if fresh_window else None,
            fence=self._fence)
        self._moved_to(changes.state)
        self._upstream_checked(SyncOutcome(self.source.name, ok=True, full=changes.full))
        self._log_skipped(changes.skipped)
        if stored or deletes:
            log.info("source %s: %d item(s) updated, %d deleted", self.source.name,
                     len(stored), len(deletes))
        if not fresh_window:
            skipped += await self._roll_window(record, context)
        all_skipped = (*changes.skipped, *skipped)
        return SyncOutcome(
            self.source.name, ok=True, full=changes.full,
            items=len((set(known) - deletes) | {item.key for item in stored}),
            expanded=len(stored), deleted=len(deletes), skipped=all_skipped,
            bytes_received=changes.bytes_received, requests=changes.requests,
            fetched=changes.fetched)

    def _moved_to(self, state: Mapping[str, Any]) -> None:
        """The round stored a new sync state: its later writes are fenced by that one."""
        if self._fence is not None:
            self._fence = replace(self._fence, state=dict(state))

    async def _expand(self, items: Sequence[Item], context: ExpandContext,
                      fingerprints: dict[str, str]) -> tuple[list[StoredItem], list[SkippedItem]]:
        """Expand items off the event loop; unreadable ones come back as skipped."""
        stored, skipped = await self._expander.expand(items, context, fingerprints)
        # A hold we wrote comes back through sync: its booking already holds the
        # time (and stops holding it the moment it is cancelled), so the copy
        # upstream must not count a second time.
        ours = await self._store.known_bookings(
            {item.hold_booking for item in stored if item.hold_booking})
        stored = [replace(item, instances=()) if item.hold_booking in ours else item
                  for item in stored]
        self._log_skipped(skipped)
        return stored, skipped

    def _log_skipped(self, skipped: Sequence[SkippedItem]) -> None:
        for item in skipped:
            log.warning("source %s: skipped item %s: %s", self.source.name, item.key, item.reason)

    async def _roll_window(self, record: SourceRecord,
                           context: ExpandContext) -> list[SkippedItem]:
        """Extend recurring series as time moves on (at most about once a day).

        A series that can no longer be expanded (a rule that has stepped past the
        bounds since it was first read) is reported as skipped, never left quiet.
        """
        target = int(context.window_end.timestamp())
        if record.window_end is not None and \
                record.window_end >= target - int(WINDOW_SLACK.total_seconds()):
            return []
        recurring = await self._store.recurring_items(self.source_id)
        items = [Item(key=key, ical=ical) for key, ical in recurring]
        fingerprints = {item.key: item_fingerprint(item, context) for item in items}
        stored, skipped = await self._expand(items, context, fingerprints)
        await self._store.replace_instances(self.source_id, stored, target, fence=self._fence)
        await self._store.prune_instances(
            self.source_id, before=int(context.window_start.timestamp()))
        log.info("source %s: window moved on; re-expanded %d recurring item(s)",
                 self.source.name, len(stored))
        return skipped

    async def _expand_outdated(self, record: SourceRecord, context: ExpandContext) -> None:
        """Expand again the stored items whose expansion is of another version, zone or
        owners than this run's (an upgrade, a changed config): a feed that does not
        change would otherwise keep serving the old reading."""
        if record.window_end is None:
            return  # nothing stored yet
        stored = await self._store.items(self.source_id)
        fingerprints = {key: item_fingerprint(Item(key=key, ical=ical), context)
                        for key, ical, _ in stored}
        outdated = [Item(key=key, ical=ical) for key, ical, digest in stored
                    if digest != fingerprints[key]]
        if not outdated:
            return
        expanded, skipped = await self._expand(outdated, context, fingerprints)
        await self._store.replace_instances(self.source_id, expanded, record.window_end,
                                            fence=self._fence)
        log.info("source %s: expanded %d stored item(s) again for this version or config",
                 self.source.name, len(expanded))

    async def _failed(self, exc: Exception, *, needs_reauth: bool = False) -> SyncOutcome:
        message = str(exc) or type(exc).__name__
        # Honour the upstream's Retry-After, up to a day (a longer one is a mistake).
        wish = getattr(exc, "retry_after", None)
        self._retry_after = min(float(wish), MAX_RETRY_AFTER) if wish else 0.0
        now = int(self._clock.now().timestamp())
        failures = await self._store.record_failure(
            self.source_id, error=message, now=now, needs_reauth=needs_reauth)
        level = logging.ERROR if needs_reauth else logging.WARNING
        hint = "; re-authorize this source" if needs_reauth else ""
        log.log(level, "source %s: sync failed (%d in a row): %s%s", self.source.name,
                failures, message, hint)
        return SyncOutcome(self.source.name, ok=False, error=message)


class SyncManager:
    """Owns every source's syncer and background task, and the leases that say which
    sources this instance syncs while others share the store."""

    def __init__(self, syncers: Sequence[SourceSyncer], *,
                 leases: SourceLeases | None = None) -> None:
        self.syncers = {s.source.name: s for s in syncers}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.running = False
        self.leases = leases
        # Called with a source's name when this instance takes its lease (push
        # channels are then looked after here).
        self.on_gain: list[Callable[[str], None]] = []
        self._first_syncs = asyncio.Semaphore(FIRST_SYNCS)
        for syncer in syncers:
            syncer.leases = leases
            syncer.first_syncs = self._first_syncs
        if leases is not None:
            leases.sources = self.syncers.keys
            leases.on_gain = self._gained
            leases.on_wake = self._woken

    def start(self) -> None:
        self.running = True
        if self.leases is not None:
            self.leases.start()
        for name in self.syncers:
            self._start(name)

    def _gained(self, source: str) -> None:
        syncer = self.syncers.get(source)
        if syncer is not None:  # its last holder may have died mid-round: sync now
            syncer.trigger()
        for callback in self.on_gain:
            callback(source)

    def _woken(self, source: str) -> None:
        syncer = self.syncers.get(source)
        if syncer is not None and syncer.held_here():
            syncer.trigger()

    async def wake(self, store: Store, source: str) -> None:
        """Sync ``source`` soon: here if this instance holds it, else its holder."""
        syncer = self.syncers.get(source)
        if syncer is not None and syncer.held_here():
            syncer.trigger()
        else:
            await store.database.notify(WAKE_CHANNEL, source)

    def _start(self, name: str) -> None:
        self._tasks[name] = asyncio.create_task(self.syncers[name].run_forever(),
                                                name=f"sync:{name}")

    async def stop(self) -> None:
        self.running = False
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._tasks.clear()
        for syncer in self.syncers.values():
            await syncer.cancel_rounds()
        if self.leases is not None:  # after the rounds: released, others take over at once
            await self.leases.stop()

    async def remove(self, name: str) -> SourceSyncer | None:
        """Stop and forget one source's syncer (a config reload dropped or changed it)."""
        task = self._tasks.pop(name, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        syncer = self.syncers.pop(name, None)
        if syncer is not None:
            await syncer.cancel_rounds()  # a booking's re-check must not outlive its source
        return syncer

    def add(self, syncer: SourceSyncer) -> None:
        """Take on a new syncer; its loop starts at once if the others run."""
        syncer.leases = self.leases
        syncer.first_syncs = self._first_syncs
        self.syncers[syncer.source.name] = syncer
        if self.running:
            self._start(syncer.source.name)

    async def run_all_once(self, names: Sequence[str] | None = None,
                           on_done: Callable[[SyncOutcome], None] | None = None,
                           ) -> list[SyncOutcome]:
        """One round of the chosen sources, concurrently (the CLI's `sync`)."""
        chosen = [s for n, s in self.syncers.items() if names is None or n in names]

        async def one(syncer: SourceSyncer) -> SyncOutcome:
            outcome = await syncer.run_once()
            if on_done is not None:
                on_done(outcome)
            return outcome

        return list(await asyncio.gather(*(one(s) for s in chosen)))
