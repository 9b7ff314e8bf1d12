"""The running parts shared by the web app and the CLI, built in one place.

``open_runtime`` creates the store, the HTTP session, the thread pool and one
adapter and syncer per enabled source; it closes them all on exit.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from adapters.base import SourceAdapter
from adapters.caldav import CaldavAdapter, CaldavSettings
from adapters.google import GoogleAdapter, GoogleSettings
from adapters.ics import USER_AGENT, IcsAdapter, IcsSettings
from server.availability import BusyInterval
from server.clock import Clock
from server.config import CalendarConfig, Config, SourceConfig
from server.holds import HoldWorker
from server.push import HOOK_PATH, GooglePush, Watcher
from server.store import Store
from server.sync import SourceSyncer, SyncManager

# Bounds the blocking client libraries and CPU-heavy expansion.
WORKER_THREADS = 4

AdapterFactory = Callable[[SourceConfig, aiohttp.ClientSession, ThreadPoolExecutor], SourceAdapter]


def _ics_adapter(source: SourceConfig, session: aiohttp.ClientSession,
                 executor: ThreadPoolExecutor) -> SourceAdapter:
    settings = IcsSettings(
        url=source.url, timeout_seconds=source.timeout.total_seconds(),
        max_bytes=source.max_bytes, username=source.username, password=source.password,
        ca_file=source.ca_file)
    return IcsAdapter(source.name, settings, session=session, executor=executor)


def _caldav_adapter(source: SourceConfig, session: aiohttp.ClientSession,
                    executor: ThreadPoolExecutor) -> SourceAdapter:
    settings = CaldavSettings(
        url=source.url, username=source.username, password=source.password,
        calendars=source.calendars, hold_calendar=source.hold_calendar,
        timeout_seconds=source.timeout.total_seconds(), ca_file=source.ca_file)
    return CaldavAdapter(source.name, settings, executor=executor)


def _google_adapter(source: SourceConfig, session: aiohttp.ClientSession,
                    executor: ThreadPoolExecutor) -> SourceAdapter:
    google = source.google
    assert google is not None, "the config gives every google source its settings"
    settings = GoogleSettings(
        client_id=google.client_id, client_secret=str(google.client_secret),
        token_file=google.token_file, calendars=source.calendars,
        hold_calendar=source.hold_calendar, timeout_seconds=source.timeout.total_seconds(),
        api_endpoint=google.api_endpoint, token_uri=google.token_uri,
        owner_emails=source.owner_emails)
    return GoogleAdapter(source.name, settings, executor=executor)


# The closed registry of source kinds: config strings never import code.
ADAPTER_KINDS: Mapping[str, AdapterFactory] = {
    "ics": _ics_adapter, "caldav": _caldav_adapter, "google": _google_adapter}


@dataclass
class Runtime:
    config: Config
    store: Store
    clock: Clock
    executor: ThreadPoolExecutor
    session: aiohttp.ClientSession
    sync: SyncManager
    source_ids: dict[str, int]
    calendar_secrets: dict[str, str] = field(repr=False)
    holds: HoldWorker | None = None
    push: GooglePush | None = None  # when a google source has push = true
    # Per calendar: ((instance generation, window), merged synced busy blocks) ...
    timelines: dict[str, tuple[tuple[object, ...], list[BusyInterval]]] = field(
        default_factory=dict, repr=False)
    # ... and ((booking generation, window), its merged bookings), cached apart.
    booking_timelines: dict[str, tuple[tuple[object, ...], list[BusyInterval]]] = field(
        default_factory=dict, repr=False)

    def calendar_for_secret(self, secret: str) -> CalendarConfig | None:
        """Constant-time lookup: every calendar's secret is compared."""
        found = None
        for calendar in self.config.calendars:
            if hmac.compare_digest(self.calendar_secrets[calendar.name].encode(),
                                   secret.encode()):
                found = calendar
        return found

    def ids_of(self, source_names: tuple[str, ...]) -> list[int]:
        return [self.source_ids[name] for name in source_names if name in self.source_ids]


# How request handlers reach the runtime the app was started with.
RUNTIME: web.AppKey[Runtime] = web.AppKey("runtime", Runtime)


@asynccontextmanager
async def open_runtime(config: Config, *, clock: Clock, store: Store | None = None,
                       adapters: Mapping[str, SourceAdapter] | None = None,
                       ) -> AsyncIterator[Runtime]:
    async with AsyncExitStack() as stack:
        if store is None:
            store = await Store.open(config.server.database)
            stack.push_async_callback(store.close)
        executor = ThreadPoolExecutor(WORKER_THREADS, thread_name_prefix="fbproxy-worker")
        stack.callback(executor.shutdown, wait=False, cancel_futures=True)
        session = aiohttp.ClientSession(headers={"User-Agent": USER_AGENT}, trust_env=True)
        stack.push_async_callback(session.close)
        source_ids: dict[str, int] = {}
        syncers = []
        for source in config.sources:
            source_ids[source.name] = await store.ensure_source(source.name, source.kind)
            if not source.enabled:
                continue
            adapter = (adapters or {}).get(source.name) or \
                ADAPTER_KINDS[source.kind](source, session, executor)
            stack.push_async_callback(adapter.close)
            syncers.append(SourceSyncer(
                source, source_ids[source.name], adapter, store=store, clock=clock,
                executor=executor, horizon_days=config.server.horizon_days))
        now = int(clock.now().timestamp())
        secrets = {
            c.name: str(c.secret) if c.secret else await store.calendar_secret(c.name, now=now)
            for c in config.calendars
        }
        manager = SyncManager(syncers)
        stack.push_async_callback(manager.stop)
        writers = {s.source.name: s.adapter for s in syncers if s.adapter.capabilities.holds}
        holds = HoldWorker(store, writers, clock)  # type: ignore[arg-type]
        stack.push_async_callback(holds.stop)
        push = _google_push(config, store, clock, manager)
        if push is not None:
            stack.push_async_callback(push.stop)
        yield Runtime(config=config, store=store, clock=clock, executor=executor,
                      session=session, sync=manager, source_ids=source_ids,
                      calendar_secrets=secrets, holds=holds, push=push)


def _google_push(config: Config, store: Store, clock: Clock,
                 manager: SyncManager) -> GooglePush | None:
    watchers: dict[str, Watcher] = {}
    calendars: dict[str, tuple[str, ...]] = {}
    for name, syncer in manager.syncers.items():
        google = syncer.source.google
        if google is not None and google.push and isinstance(syncer.adapter, GoogleAdapter):
            watchers[name] = syncer.adapter
            calendars[name] = syncer.adapter.settings.calendar_ids
    if not watchers:
        return None
    return GooglePush(store, clock, manager, address=config.server.base_url + HOOK_PATH,
                      calendars=calendars, watchers=watchers)

