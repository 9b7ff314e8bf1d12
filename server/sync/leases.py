"""Which instance syncs which source: leases in the shared store, renewed while alive.

Every instance runs a syncer for every source, but only the holder of a
source's lease runs its rounds. Leases last ``lease_seconds`` × 0.8 and are
renewed every ``lease_seconds`` × 0.2, so the sources of an instance that dies
(or is cut off from the database) are taken by another within ``lease_seconds``
of its last renewal. A clean shutdown releases them at once. Taking a lease
over gives it a new epoch, and a round commits only under the epoch it started
with (``store.Fence``), so a stalled former holder cannot overwrite the new
holder's work when it wakes up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterable

from server.errors import StoreError
from server.kit.background import BackgroundLoop
from server.kit.clock import Clock
from server.store import Fence, Store

log = logging.getLogger("fbproxy.leases")

# Payload: a source name. Any instance may receive a push notification or a
# booking's re-check; the holder of the source's lease runs the round.
WAKE_CHANNEL = "fbproxy_wake"


def instance_id(name: str | None) -> str:
    """This process's name as a lease holder: the configured name (or the host's),
    its pid and a random part, so a restarted instance never mistakes an old
    lease for its own."""
    return f"{name or socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class SourceLeases(BackgroundLoop):
    """Takes, renews and releases this instance's source leases."""

    loop_name = "leases"

    def __init__(self, store: Store, clock: Clock, *, holder: str,
                 lease_seconds: int) -> None:
        self.holder = holder
        self.ttl = max(1, round(lease_seconds * 0.8))
        self.every = max(0.5, lease_seconds * 0.2)
        self.active = False  # off: every round runs here, fenced only by the sync state
        self._store = store
        self._clock = clock
        # Set by the SyncManager: the sources this instance runs (after reloads
        # too); a source became ours; another instance asks for a round of a
        # source (push, a booking's re-check).
        self.sources: Callable[[], Iterable[str]] = lambda: ()
        self.on_gain: Callable[[str], None] = lambda source: None
        self.on_wake: Callable[[str], None] = lambda source: None
        self._held: dict[str, int] = {}
        self._events: dict[str, asyncio.Event] = {}
        self._renewed = time.monotonic()

    def holds(self, source: str) -> bool:
        return not self.active or source in self._held

    def fence(self, source: str, state: dict[str, object]) -> Fence | None:
        """The fence for a round starting now; None when another instance holds it."""
        if not self.active:
            return Fence(state=dict(state))
        epoch = self._held.get(source)
        return None if epoch is None else Fence(dict(state), self.holder, epoch)

    async def wait_held(self, source: str) -> None:
        await self._event(source).wait()

    def _event(self, source: str) -> asyncio.Event:
        return self._events.setdefault(source, asyncio.Event())

    def start(self) -> None:
        self.active = True
        super().start()

    async def stop(self) -> None:
        await super().stop()
        if self.active and self._held:
            with contextlib.suppress(StoreError):
                await self._store.release_leases(self.holder)
        self._held = {}

    async def refresh(self) -> None:
        """Renew what is held, take what is free; tell the syncers what changed."""
        now = int(self._clock.now().timestamp())
        try:
            held = await self._store.take_leases(sorted(set(self.sources())), self.holder,
                                                 now=now, ttl=self.ttl)
        except StoreError as exc:
            # Cut off from the database: once our leases may have run out, act as if
            # they had, so this instance stops syncing what another now holds.
            held = {} if time.monotonic() - self._renewed >= self.ttl else self._held
            log.warning("leases: cannot renew (%s)", exc)
        else:
            self._renewed = time.monotonic()
            try:  # (again, if the listening connection was lost)
                await self._store.database.listen(WAKE_CHANNEL, self.on_wake)
            except StoreError as exc:
                log.warning("leases: cannot listen for wake-ups (%s); polling only", exc)
        gained = sorted(held.keys() - self._held.keys())
        lost = sorted(self._held.keys() - held.keys())
        self._held = held
        for source in lost:
            self._event(source).clear()
            log.warning("source %s: lease lost; another instance syncs it now", source)
        for source in gained:
            self._event(source).set()
            log.info("source %s: this instance (%s) syncs it now", source, self.holder)
            self.on_gain(source)

    async def _run_forever(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(self.every)
