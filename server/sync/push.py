"""Push: a channel per calendar of each ``push = true`` source (Google watch channels,
Microsoft Graph subscriptions).

Channels are kept in the store with their secret token (Google's channel
token, Graph's clientState), renewed before they expire, and stopped when their
source or calendar leaves the config or fbproxy shuts down. A notification only
wakes the source's sync loop: the change itself is read by the next incremental
sync, so a forged or repeated notification costs one cheap round and nothing
else.

With several instances, the one holding a source's lease creates, renews and
stops its channels (once, not once per instance); a notification may reach
any instance, which passes it on to the holder.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
from collections.abc import Mapping
from datetime import timedelta
from typing import Protocol

from adapters.base import AdapterError
from server.kit.background import BackgroundLoop
from server.kit.clock import Clock
from server.kit.ratelimit import Rate, RateLimiter
from server.store import PushChannel, Store
from server.sync.loop import SyncManager

log = logging.getLogger("fbproxy.push")

HOOK_PATHS = {"google": "/hooks/google", "microsoft": "/hooks/microsoft"}
CHECK_EVERY = timedelta(hours=1)
# Anyone can post a notification for a made-up channel, and each unknown one asks
# every account to stop it: bounded, so the hook cannot be used to make fbproxy
# call Google (or use up its quota) at the sender's pace. Old runs' channels are
# few and expire by themselves within a week.
UNKNOWN_STOPS = Rate(10, timedelta(hours=1))


def _fresh(channel: PushChannel, now: int) -> bool:
    """Whether a channel needs no successor yet: more than a quarter of the life the
    upstream granted it is left (Google's week: 1.75 days; Graph: ~18 h; a channel
    Google cut to 2 days: 12 h), and at least two checks' worth, so it is renewed at a
    check before it lapses."""
    life = channel.expiration - channel.created
    margin = max(life // 4, 2 * int(CHECK_EVERY.total_seconds()))
    return channel.expiration - now > margin


class Watcher(Protocol):
    """What a push-capable adapter offers (Google and Microsoft adapters)."""

    # The longest channel the upstream grants (Google: 7 days, Graph events: ~3 days).
    max_channel: timedelta

    async def watch(self, calendar_id: str, *, token: str, address: str,
                    ttl_seconds: int) -> tuple[str, str, int]:
        """Open a channel: (channel id, resource id, expiry in Unix seconds)."""
        ...

    async def stop_channel(self, channel_id: str, resource_id: str) -> None: ...


class PushChannels(BackgroundLoop):
    """Creates, renews and stops the channels of push-enabled sources."""

    loop_name = "push"

    def __init__(self, store: Store, clock: Clock, sync: SyncManager, *,
                 addresses: Mapping[str, str], calendars: Mapping[str, tuple[str, ...]],
                 watchers: Mapping[str, Watcher]) -> None:
        self._store = store
        self._sync = sync
        self._background: set[asyncio.Task[None]] = set()
        self._clock = clock
        self._addresses = addresses  # source name -> the URL its upstream notifies
        self._calendars = calendars  # source name -> calendar ids to watch
        self._watchers = watchers
        self._wake = asyncio.Event()
        self._unknown_stops = RateLimiter(UNKNOWN_STOPS)
        self._stopped_unknown = RateLimiter(Rate(1, timedelta(days=7)), max_clients=1000)

    def _ours(self, source: str) -> bool:
        """Whether this instance looks after ``source``'s channels (holds its lease);
        a source no longer in the config is anyone's to clean up."""
        syncer = self._sync.syncers.get(source)
        return syncer is None or syncer.held_here()

    async def stop(self) -> None:
        await super().stop()
        # Stops of unknown channels still under way finish first: they are bounded.
        await asyncio.gather(*self._background, return_exceptions=True)
        for channel in await self._store.channels():
            if self._ours(channel.source):
                await self._retire(channel)

    def trigger(self) -> None:
        """Check the channels now (this instance took a source's lease)."""
        self._wake.set()

    async def _run_forever(self) -> None:
        while True:
            await self.ensure()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), CHECK_EVERY.total_seconds())
            self._wake.clear()

    async def ensure(self) -> None:
        """One channel per watched calendar, none close to expiry, no strays."""
        now = int(self._clock.now().timestamp())
        channels = await self._store.channels()
        for channel in channels:
            if not self._ours(channel.source):
                continue
            wanted = channel.calendar in self._calendars.get(channel.source, ())
            if not wanted or channel.expiration <= now:
                await self._retire(channel)
        for source, calendar_ids in self._calendars.items():
            if not self._ours(source):
                continue
            for calendar_id in calendar_ids:
                mine = [c for c in channels if (c.source, c.calendar) == (source, calendar_id)
                        and c.expiration > now]
                if any(_fresh(c, now) for c in mine):
                    continue
                if await self._open(source, calendar_id, now):
                    for old in mine:  # replaced: the new one is live before the old stops
                        await self._retire(old)

    async def _open(self, source: str, calendar_id: str, now: int) -> bool:
        token = secrets.token_urlsafe(32)
        watcher = self._watchers[source]
        try:
            channel_id, resource_id, expiration = await watcher.watch(
                calendar_id, token=token, address=self._addresses[source],
                ttl_seconds=int(watcher.max_channel.total_seconds()))
        except AdapterError as exc:
            log.warning("push for %s/%s not set up (polling continues): %s", source,
                        calendar_id, exc)
            return False
        await self._store.add_channel(PushChannel(channel_id, source, calendar_id, resource_id,
                                                  token, expiration, now))
        log.info("push channel for %s/%s until %s", source, calendar_id, expiration)
        return True

    async def _retire(self, channel: PushChannel) -> None:
        watcher = self._watchers.get(channel.source)
        if watcher is not None:
            with contextlib.suppress(AdapterError):
                await watcher.stop_channel(channel.channel_id, channel.resource_id)
        await self._store.remove_channel(channel.channel_id)

    async def notified(self, channel_id: str, token: str, state: str,
                       resource_id: str) -> bool:
        """Handle one notification; False when the channel or its token is unknown."""
        channel = await self._store.channel(channel_id) if 0 < len(channel_id) <= 200 else None
        if channel is None or not hmac.compare_digest(channel.token.encode(), token.encode()):
            if channel is None and channel_id and resource_id and self._may_stop(channel_id):
                # Stopped in the background: Google wants its answer quickly.
                task = asyncio.create_task(self._stop_unknown(channel_id, resource_id))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
            return False
        if state != "sync":  # "sync" only confirms a new channel
            await self._sync.wake(self._store, channel.source)
        return True

    def _may_stop(self, channel_id: str) -> bool:
        """Each unknown channel once a week, and at most UNKNOWN_STOPS of them."""
        now = self._clock.now().timestamp()
        return self._stopped_unknown.take(channel_id, now) == 0 and \
            self._unknown_stops.take("any", now) == 0

    async def _stop_unknown(self, channel_id: str, resource_id: str) -> None:
        """A channel nobody here knows (an old run's): ask each account to stop it."""
        for watcher in self._watchers.values():
            with contextlib.suppress(AdapterError):
                await watcher.stop_channel(channel_id, resource_id)
