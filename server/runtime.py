"""The running parts shared by the web app and the CLI, built in one place.

``open_runtime`` creates the store, the HTTP session, the thread pool and one
adapter and syncer per enabled source; it closes them all on exit.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from adapters.base import SourceAdapter
from adapters.google import GoogleAdapter
from adapters.ics import USER_AGENT
from adapters.microsoft import MicrosoftAdapter
from server.adapter_kinds import ADAPTER_KINDS, AdapterContext
from server.alerts import Alerts
from server.availability import BusyInterval
from server.clock import Clock
from server.config import CalendarConfig, Config
from server.holds import HoldWorker
from server.metrics import Metrics
from server.push import HOOK_PATHS, PushChannels, Watcher
from server.store import Store
from server.sync import SourceSyncer, SyncManager

# Bounds the blocking client libraries and CPU-heavy expansion.
WORKER_THREADS = 4

__all__ = ["ADAPTER_KINDS", "RUNTIME", "Runtime", "open_runtime"]

@dataclass(frozen=True)
class Viewer:
    """A secret's holder: the calendar it opens, and how much it may see."""

    calendar: CalendarConfig
    subscriber: str | None  # None: the calendar's own secret
    detail: str  # "busy" | "busy_tentative" | "holds"


def subscriber_key(calendar: str, subscriber: str) -> str:
    """A subscriber's entry among the secrets ('/' appears in no calendar name)."""
    return f"{calendar}/{subscriber}"


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
    push: PushChannels | None = None  # when a source has push = true
    metrics: Metrics = field(default_factory=Metrics, repr=False)
    alerts: Alerts | None = None  # when the config has [[alerts]]
    # Per calendar: ((instance generation, window), merged synced busy blocks) ...
    timelines: dict[str, tuple[tuple[object, ...], list[BusyInterval]]] = field(
        default_factory=dict, repr=False)
    # ... and ((booking generation, window), its merged bookings), cached apart.
    booking_timelines: dict[str, tuple[tuple[object, ...], list[BusyInterval]]] = field(
        default_factory=dict, repr=False)

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
        return found

    def calendar_for_secret(self, secret: str) -> CalendarConfig | None:
        viewer = self.viewer_for_secret(secret)
        return viewer.calendar if viewer is not None else None

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
        metrics = Metrics()
        syncers = []
        for source in config.sources:
            source_ids[source.name] = await store.ensure_source(source.name, source.kind)
            if not source.enabled:
                continue
            adapter = (adapters or {}).get(source.name) or ADAPTER_KINDS[source.kind](
                source, AdapterContext(session, executor, clock, config.server.horizon_days))
            stack.push_async_callback(adapter.close)
            syncers.append(SourceSyncer(
                source, source_ids[source.name], adapter, store=store, clock=clock,
                metrics=metrics,
                executor=executor, horizon_days=config.server.horizon_days))
        now = int(clock.now().timestamp())
        secrets = {
            c.name: str(c.secret) if c.secret else await store.calendar_secret(c.name, now=now)
            for c in config.calendars
        }
        for calendar in config.calendars:
            for subscriber in calendar.subscribers:
                key = subscriber_key(calendar.name, subscriber.name)
                secrets[key] = str(subscriber.secret) if subscriber.secret else \
                    await store.calendar_secret(key, now=now)
        manager = SyncManager(syncers)
        stack.push_async_callback(manager.stop)
        writers = {s.source.name: s.adapter for s in syncers if s.adapter.capabilities.holds}
        holds = HoldWorker(store, writers, clock, metrics=metrics)  # type: ignore[arg-type]
        stack.push_async_callback(holds.stop)
        push = _push_channels(config, store, clock, manager)
        if push is not None:
            stack.push_async_callback(push.stop)
        alerts = Alerts(config, store, clock, session) if config.alerts else None
        if alerts is not None:
            stack.push_async_callback(alerts.stop)
        yield Runtime(config=config, store=store, clock=clock, executor=executor,
                      session=session, sync=manager, source_ids=source_ids,
                      calendar_secrets=secrets, holds=holds, push=push, metrics=metrics,
                      alerts=alerts)


def _push_channels(config: Config, store: Store, clock: Clock,
                   manager: SyncManager) -> PushChannels | None:
    watchers: dict[str, Watcher] = {}
    calendars: dict[str, tuple[str, ...]] = {}
    addresses: dict[str, str] = {}
    for name, syncer in manager.syncers.items():
        source = syncer.source
        adapter = syncer.adapter
        if source.google is not None and source.google.push and \
                isinstance(adapter, GoogleAdapter):
            calendars[name] = adapter.settings.calendar_ids
        elif source.microsoft is not None and source.microsoft.push and \
                isinstance(adapter, MicrosoftAdapter):
            calendars[name] = adapter.settings.calendars or ("",)
        else:
            continue
        watchers[name] = adapter
        addresses[name] = config.server.base_url + HOOK_PATHS[source.kind]
    if not watchers:
        return None
    return PushChannels(store, clock, manager, addresses=addresses, calendars=calendars,
                        watchers=watchers)
