"""The running parts shared by the web app and the CLI, built in one place.

``open_runtime`` creates the store, the HTTP session, the thread pool, the
expansion worker processes and one adapter and syncer per enabled source; it
closes them all on exit.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import multiprocessing
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from adapters.base import SourceAdapter
from adapters.ics import USER_AGENT
from server.booking.availability import BusyInterval
from server.booking.holds import HoldWorker
from server.booking.mailer import Mailer
from server.booking.timelines import SourceTimelines
from server.config.model import CalendarConfig, Config, SourceConfig
from server.errors import ConfigError
from server.kit.clock import Clock
from server.kit.metrics import Metrics
from server.kit.processes import WorkerProcesses
from server.kit.single_flight import SingleFlight
from server.store import Store
from server.sync.adapter_kinds import ADAPTER_KINDS, AdapterContext
from server.sync.alerts import Alerts
from server.sync.expander import Expander
from server.sync.leases import SourceLeases, instance_id
from server.sync.loop import SourceSyncer, SyncManager
from server.sync.push import HOOK_PATHS, PushChannels, Watcher
from server.sync.tokens import TokenVaults

# Bounds the blocking client libraries (and expansion with expansion_workers = 0).
WORKER_THREADS = 4
# What the expansion workers' fork server imports (and warms) once, for every worker.
WORKER_PRELOAD = ("server.sync.preload",)

__all__ = ["ADAPTER_KINDS", "RUNTIME", "Runtime", "open_runtime"]

log = logging.getLogger("fbproxy.runtime")

@dataclass(frozen=True)
class Viewer:
    """A secret's holder: the calendar it opens, and how much it may see."""

    calendar: CalendarConfig
    subscriber: str | None  # None: the calendar's own secret
    detail: str  # "busy" | "busy_tentative" | "holds"


def subscriber_key(calendar: str, subscriber: str) -> str:
    """A subscriber's entry among the secrets ('/' appears in no calendar name)."""
    return f"{calendar}/{subscriber}"


# A cached busy timeline: (what it was read for, e.g. (generation, window), merged blocks).
Timeline = tuple[tuple[object, ...], list[BusyInterval]]


@dataclass
class Runtime:
    config: Config
    store: Store
    clock: Clock
    executor: ThreadPoolExecutor
    session: aiohttp.ClientSession
    sync: SyncManager
    expander: Expander
    source_ids: dict[str, int]
    calendar_secrets: dict[str, str] = field(repr=False)
    holds: HoldWorker | None = None
    mailer: Mailer | None = None  # sends the mail outbox's messages (with [mail])
    push: PushChannels | None = None  # when a source has push = true
    metrics: Metrics = field(default_factory=Metrics, repr=False)
    alerts: Alerts | None = None  # when the config has [[alerts]]
    tokens: TokenVaults | None = None  # where OAuth sources keep their tokens
    # (calendar, subscriber or "") -> when its secret was last used; since the start.
    last_access: dict[tuple[str, str], int] = field(default_factory=dict, repr=False)
    # Per calendar: ((instance generation, window), merged synced busy blocks), merged
    # from each source's blocks, kept current change by change ...
    timelines: dict[str, Timeline] = field(default_factory=dict, repr=False)
    source_timelines: SourceTimelines = field(default_factory=SourceTimelines, repr=False)
    # ... and ((booking generation, window), its merged bookings), cached apart.
    booking_timelines: dict[str, Timeline] = field(default_factory=dict, repr=False)
    # ... and the two merged, per calendar, for the pair of keys above.
    combined_timelines: dict[str, Timeline] = field(default_factory=dict, repr=False)
    # Timeline reads in flight: requests missing the same one share it.
    timeline_loads: SingleFlight[tuple[object, ...], list[BusyInterval]] = field(
        default_factory=SingleFlight, repr=False)

    def viewer_for_secret(self, secret: str) -> Viewer | None:
        """Who holds this secret: a calendar's owner or one of its subscribers.

        Constant time: every secret is compared, whichever matches.
        """
        found = None
        for calendar in self.config.calendars:
            if hmac.compare_digest(self.calendar_secrets[calendar.name].encode(),
                                   secret.encode()):
                found = Viewer(calendar, None, "busy_tentative")
            for subscriber in calendar.subscribers:
                key = subscriber_key(calendar.name, subscriber.name)
                if hmac.compare_digest(self.calendar_secrets[key].encode(), secret.encode()):
                    found = Viewer(calendar, subscriber.name, subscriber.detail)
        if found is not None:
            self.last_access[(found.calendar.name, found.subscriber or "")] = \
                int(self.clock.now().timestamp())
        return found

    def calendar_for_secret(self, secret: str) -> CalendarConfig | None:
        viewer = self.viewer_for_secret(secret)
        return viewer.calendar if viewer is not None else None

    async def reload(self, new: Config) -> list[str]:
        """Apply a new config without a restart; what changed, in words.

        Calendars, subscribers, booking pages, alerts and rate limits change at
        once; a source whose settings changed gets a new adapter and sync loop
        (its stored data stays); listen and database need a restart.
        """
        old = self.config
        if new.server.database != old.server.database:
            raise ConfigError(["server.database: cannot change while fbproxy runs; restart it"],
                              path=str(new.path or ""))
        notes = []
        if (new.server.listen_host, new.server.listen_port) != \
                (old.server.listen_host, old.server.listen_port):
            notes.append("server.listen changes at the next restart")
        if new.server.expansion_workers != old.server.expansion_workers:
            notes.append("server.expansion_workers changes at the next restart")
        if self.tokens is not None:
            self.tokens.rekey(new)  # refused (ConfigError) before anything changed
        secrets = await _secrets(new, self.store, int(self.clock.now().timestamp()))
        before = {s.name: s for s in old.sources}
        after = {s.name: s for s in new.sources}
        for name in sorted(before.keys() | after.keys()):
            if before.get(name) == after.get(name):
                continue
            removed = await self.sync.remove(name)
            if removed is not None:
                await removed.adapter.close()
            source = after.get(name)
            if source is not None:
                self.source_ids[name] = await self.store.ensure_source(name, source.kind)
                if source.enabled:
                    adapter = ADAPTER_KINDS[source.kind](source, AdapterContext(
                        self.session, self.executor, self.clock, new.server.horizon_days,
                        self.tokens, self.expander.executor))
                    self.sync.add(_syncer(new, source, self.source_ids[name], adapter,
                                          self.store, self.clock, self.expander, self.metrics))
            notes.append(f"source {name}: " + ("removed" if source is None else
                                               "added" if name not in before else "restarted"))
        if self.holds is not None:
            self.holds.set_writers(_writers(self.sync))
        if self.mailer is not None:
            self.mailer.set_config(new)
        running = self.sync.running
        if self.push is not None:
            await self.push.stop()
        self.push = _push_channels(new, self.store, self.clock, self.sync)
        if self.alerts is not None:
            await self.alerts.stop()
        self.alerts = Alerts(new, self.store, self.clock, self.session) if new.alerts else None
        if running:
            for part in (self.push, self.alerts):
                if part is not None:
                    part.start()
        self.config = new
        self.calendar_secrets = secrets
        self.timelines.clear()
        self.source_timelines.clear()
        self.booking_timelines.clear()
        self.combined_timelines.clear()
        return notes

    def wake_outboxes(self) -> None:
        """A booking, move or cancellation committed rows for the hold and mail workers."""
        if self.holds is not None:
            self.holds.trigger()
        if self.mailer is not None:
            self.mailer.trigger()

    def ids_of(self, source_names: tuple[str, ...]) -> list[int]:
        return [self.source_ids[name] for name in source_names if name in self.source_ids]


# How request handlers reach the runtime the app was started with.
RUNTIME: web.AppKey[Runtime] = web.AppKey("runtime", Runtime)


@asynccontextmanager
async def open_runtime(config: Config, *, clock: Clock, store: Store | None = None,
                       adapters: Mapping[str, SourceAdapter] | None = None,
                       expander: Expander | None = None) -> AsyncIterator[Runtime]:
    async with AsyncExitStack() as stack:
        if store is None:
            store = await Store.open(config.server.database)
            stack.push_async_callback(store.close)
        executor = ThreadPoolExecutor(WORKER_THREADS, thread_name_prefix="fbproxy-worker")
        stack.callback(executor.shutdown, wait=False, cancel_futures=True)
        if expander is None:
            expander = _expander(config.server.expansion_workers, executor)
            if expander.executor is not executor:
                stack.push_async_callback(_shutdown, expander.executor)
        session = aiohttp.ClientSession(headers={"User-Agent": USER_AGENT}, trust_env=True)
        stack.push_async_callback(session.close)
        tokens = TokenVaults.for_store(config, store, clock)
        source_ids: dict[str, int] = {}
        metrics = Metrics()
        syncers = []
        for source in config.sources:
            source_ids[source.name] = await store.ensure_source(source.name, source.kind)
            if not source.enabled:
                continue
            adapter = (adapters or {}).get(source.name) or ADAPTER_KINDS[source.kind](
                source, AdapterContext(session, executor, clock, config.server.horizon_days,
                                       tokens, expander.executor))
            stack.push_async_callback(adapter.close)
            syncers.append(_syncer(config, source, source_ids[source.name], adapter, store,
                                   clock, expander, metrics))
        secrets = await _secrets(config, store, int(clock.now().timestamp()))
        holder = instance_id(config.server.instance_name)
        lease_seconds = config.server.lease_seconds
        # Leases and claims only where instances share the database: on SQLite, one
        # server per file (`fbproxy sync` beside it is fenced by the sync state), and
        # a restart after a crash must not wait for its own old leases to run out.
        shared = store.database.shared
        leases = SourceLeases(store, clock, holder=holder, lease_seconds=lease_seconds) \
            if shared else None
        manager = SyncManager(syncers, leases=leases)
        stack.push_async_callback(manager.stop)
        # A claimed hold (renewed while delivered) or alert whose instance died is
        # delivered by another after this.
        claim = lease_seconds if shared else 0
        holds = HoldWorker(store, _writers(manager), clock, metrics=metrics, holder=holder,
                           claim_seconds=claim)
        stack.push_async_callback(holds.stop)
        # Always there: a reload may add [mail], and rows queued before a reload that
        # removed it are dropped (said on the status page) rather than left waiting.
        mailer = Mailer(store, config, clock, holder=holder, claim_seconds=2 * claim)
        stack.push_async_callback(mailer.stop)
        push = _push_channels(config, store, clock, manager)
        if push is not None:
            stack.push_async_callback(push.stop)
        # An alert's send is not renewed: bounded by its timeout; at worst sent twice.
        alerts = Alerts(config, store, clock, session, holder=holder,
                        claim_seconds=2 * claim) if config.alerts else None
        if alerts is not None:
            stack.push_async_callback(alerts.stop)
        runtime = Runtime(config=config, store=store, clock=clock, executor=executor,
                          session=session, sync=manager, expander=expander,
                          source_ids=source_ids,
                          calendar_secrets=secrets, holds=holds, mailer=mailer, push=push,
                          metrics=metrics,
                          alerts=alerts, tokens=tokens)
        # A source's lease taken here: its push channels are looked after here now
        # (runtime.push: the one of the config in force, after reloads too).
        manager.on_gain.append(lambda source: runtime.push.trigger() if runtime.push else None)
        yield runtime


def _syncer(config: Config, source: SourceConfig, source_id: int, adapter: SourceAdapter,
            store: Store, clock: Clock, expander: Expander,
            metrics: Metrics) -> SourceSyncer:
    return SourceSyncer(source, source_id, adapter, store=store, clock=clock, metrics=metrics,
                        expander=expander, horizon_days=config.server.horizon_days)


def _expander(workers: int, threads: ThreadPoolExecutor) -> Expander:
    """Expansion in ``workers`` processes; with none (0), in the thread pool."""
    if workers and multiprocessing.current_process().daemon:
        # A daemonic multiprocessing child (a test harness running the server) may
        # not start processes of its own.
        log.info("server.expansion_workers = %d, but this process may not start "
                 "processes (a daemonic child): expanding in threads", workers)
        workers = 0
    if workers == 0:
        return Expander(threads, 0)
    return Expander(WorkerProcesses(workers, preload=WORKER_PRELOAD), workers)


async def _shutdown(executor: Executor | None) -> None:
    """Stop the worker processes (the rounds using them were stopped first): waiting
    tasks are dropped, running ones ended; off the event loop."""
    if executor is not None:
        await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)


async def _secrets(config: Config, store: Store, now: int) -> dict[str, str]:
    """Every calendar's and subscriber's secret: from the config, else generated and kept."""
    secrets = {
        c.name: str(c.secret) if c.secret else await store.calendar_secret(c.name, now=now)
        for c in config.calendars
    }
    for calendar in config.calendars:
        for subscriber in calendar.subscribers:
            key = subscriber_key(calendar.name, subscriber.name)
            secrets[key] = str(subscriber.secret) if subscriber.secret else \
                await store.calendar_secret(key, now=now)
    return secrets


def _writers(manager: SyncManager) -> dict[str, Any]:
    return {name: s.adapter for name, s in manager.syncers.items()
            if s.adapter.capabilities.holds}


def _push_channels(config: Config, store: Store, clock: Clock,
                   manager: SyncManager) -> PushChannels | None:
    watchers: dict[str, Watcher] = {}
    calendars: dict[str, tuple[str, ...]] = {}
    addresses: dict[str, str] = {}
    for name, syncer in manager.syncers.items():
        source = syncer.source
        adapter = syncer.adapter
        # Imported only with such a source (see adapter_kinds.py: their libraries are big).
        if source.google is not None and source.google.push:
            from adapters.google import GoogleAdapter
            if not isinstance(adapter, GoogleAdapter):
                continue
            calendars[name] = adapter.settings.calendar_ids
        elif source.microsoft is not None and source.microsoft.push:
            from adapters.microsoft import MicrosoftAdapter
            if not isinstance(adapter, MicrosoftAdapter):
                continue
            calendars[name] = adapter.settings.calendars or ("",)
        else:
            continue
        watchers[name] = adapter
        addresses[name] = config.server.base_url + HOOK_PATHS[source.kind]
    if not watchers:
        return None
    return PushChannels(store, clock, manager, addresses=addresses, calendars=calendars,
                        watchers=watchers)
