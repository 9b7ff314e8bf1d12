"""The hold outbox worker: writes bookings upstream as holds, and removes them.

A booking's transaction queues its holds, so a hold is never forgotten; the
worker delivers each through the target source's adapter and only then marks
it done. A crash in between means one more delivery, which the adapter makes
harmless (the hold's UID comes from the booking id: CalDAV's If-None-Match
answers 412, which counts as done). So each booking is written upstream once.

A reschedule queues a 'move' per host that keeps the booking: the hold is
changed in place where its write landed (``move_hold``), once the write is
done, and only the newest time is delivered as done.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import AsyncIterator, Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol

from adapters.base import AdapterError, Attendee, Hold, HoldRef
from server.config.model import BookingPageConfig
from server.config.pages import MADE_UPSTREAM
from server.errors import StoreError
from server.kit.background import WakeableLoop
from server.kit.clock import Clock, iso
from server.kit.metrics import Metrics
from server.store import BookingRecord, OutboxRow, Store
from server.store.holds import VIDEO_PROBLEM
from server.sync.loop import retry_delay

log = logging.getLogger("fbproxy.holds")

RETRY_BASE = timedelta(minutes=5)
# A move whose hold is not written yet looks again this soon (no failed attempt).
WRITE_WAIT = timedelta(seconds=30)


class HoldWriter(Protocol):
    """What a source that takes holds does (adapters/caldav.py, google.py, microsoft.py).

    Each call is idempotent: ``write_hold`` derives the event's id from the booking
    id; ``move_hold`` changes that same event in place (same href or id, its video
    link kept) to what the hold now says; ``delete_hold`` of a hold already gone is
    done. ``notify`` asks the provider to tell the hold's attendees it is cancelled.
    """

    async def write_hold(self, hold: Hold) -> HoldRef: ...

    async def move_hold(self, ref: HoldRef, hold: Hold) -> HoldRef: ...

    async def delete_hold(self, ref: HoldRef, *, notify: bool = False) -> None: ...


def hold_fields(page: BookingPageConfig, booking: BookingRecord, host: str) -> dict[str, Any]:
    """What the hold says, fixed when the booking is made (templates checked by the config)."""
    title = page.hold_title.format(title=page.title, guest_name=booking.guest_name,
                                   guest_email=booking.guest_email, host=host)
    link = booking.video_link
    # "google-meet" / "teams" ask the adapter to have the link made with the hold.
    location = page.video_link if page.video_link in MADE_UPSTREAM else link
    lines = [f"Booked through {page.title}.", f"Guest: {booking.guest_name} "
             f"<{booking.guest_email}>"]
    lines += [f"{name}: {answer}" for name, answer in booking.answers.items()]
    if link:
        lines.append(f"Join: {link}")
    fields: dict[str, Any] = {
        "title": title, "start": iso(booking.start), "end": iso(booking.end),
        "created": iso(booking.created), "status": page.hold_status.upper(),
        "description": "\n".join(lines), "location": location, "url": link,
    }
    if page.mail.invite_via == "provider":
        # The provider (Google, Microsoft 365) invites the guest with the hold.
        fields["attendees"] = [{"name": booking.guest_name, "email": booking.guest_email}]
    return fields


def _hold(row: OutboxRow) -> Hold:
    fields: dict[str, Any] = json.loads(row.hold)
    when: dict[str, Any] = {k: datetime.fromisoformat(fields[k].replace("Z", "+00:00"))
                            for k in ("start", "end", "created")}
    attendees = tuple(Attendee(str(a["name"]), str(a["email"]))
                      for a in fields.get("attendees", ()))
    return Hold(booking_id=row.booking_id, title=fields["title"], status=fields["status"],
                description=fields["description"], location=fields["location"],
                url=fields["url"], calendar=row.calendar, attendees=attendees, **when)


class HoldWorker(WakeableLoop):
    """Delivers due outbox rows; woken by new bookings, else it polls."""

    loop_name = "holds"

    def __init__(self, store: Store, writers: Mapping[str, HoldWriter], clock: Clock,
                 rng: random.Random | None = None, metrics: Metrics | None = None, *,
                 holder: str = "local", claim_seconds: int = 60) -> None:
        # Several instances deliver from one outbox: each row is claimed by one
        # for claim_seconds, renewed while its delivery runs; if the instance dies
        # mid-delivery, another retries once the claim has run out (write_hold is
        # idempotent, so there is still one event upstream). 0: no claims (SQLite).
        self.holder = holder
        self._claim_seconds = claim_seconds
        # A claim of a dead instance runs out unseen by the others: they look again
        # within a claim's life rather than at the 30 s poll.
        self._poll = min(30, claim_seconds) if claim_seconds > 0 else 30
        self._store = store
        self._metrics = metrics
        self._writers = writers
        self._clock = clock
        self._rng = rng or random.Random()
        self._wake = asyncio.Event()

    def set_writers(self, writers: Mapping[str, HoldWriter]) -> None:
        """The sources that take holds, after a config reload."""
        self._writers = writers

    async def run_once(self) -> int:
        """Deliver every due row once; returns how many were delivered."""
        now = int(self._clock.now().timestamp())
        delivered = 0
        for row in await self._store.claim_holds(now, holder=self.holder,
                                                 claim_seconds=self._claim_seconds):
            result = "failed"
            try:
                async with self._claim_kept(row):
                    done = await self._deliver(row, now)
                delivered += 1 if done else 0
                result = "delivered" if done else "waiting"
            except AdapterError as exc:
                await self._failed(row, str(exc), now)
            except Exception as exc:  # a bug must not stop every other hold
                log.exception("hold %s for %s: unexpected error", row.booking_id, row.host)
                await self._failed(row, f"{type(exc).__name__}: {exc}", now)
            if self._metrics is not None:
                self._metrics.holds.labels(row.action, result).inc()
        return delivered

    @contextlib.asynccontextmanager
    async def _claim_kept(self, row: OutboxRow) -> AsyncIterator[None]:
        """Renew the row's claim every third of its life while the body runs."""
        if self._claim_seconds <= 0:
            yield
            return

        async def renew() -> None:
            while True:
                await asyncio.sleep(self._claim_seconds / 3)
                until = int(self._clock.now().timestamp()) + self._claim_seconds
                with contextlib.suppress(StoreError):
                    if not await self._store.renew_hold_claim(row, holder=self.holder,
                                                              until=until):
                        log.warning("hold %s for booking %s: claim lost mid-delivery",
                                    row.action, row.booking_id)
                        return

        renewal = asyncio.create_task(renew())
        try:
            yield
        finally:
            renewal.cancel()
            await asyncio.gather(renewal, return_exceptions=True)

    async def _deliver(self, row: OutboxRow, now: int) -> bool:
        """Deliver one row; False when it has to wait (a move before its write)."""
        writer = self._writers.get(row.source)
        if writer is None:
            raise AdapterError(f"source {row.source} is not enabled or cannot take holds")
        if not await self._store.hold_pending(row):
            return True  # retired meanwhile (cancelled before its write was delivered)
        if row.action == "move":
            return await self._move(writer, row, now)
        if row.action == "write":
            ref = await writer.write_hold(_hold(row))
            problem = VIDEO_PROBLEM + ref.video_problem if ref.video_problem else None
            await self._store.hold_delivered(row, ref=ref.ref, etag=ref.etag, problem=problem)
            if problem:
                # The hold is in the calendar; only its link is missing. Retrying the
                # write would not make one: say so on the status and booking pages.
                log.warning("hold for booking %s written to %s without a video link: %s",
                            row.booking_id, row.source, ref.video_problem)
            if ref.video_link:
                # The guest's link, made upstream (Meet); the first host's hold sets it.
                await self._store.set_video_link(row.booking_id, ref.video_link)
            log.info("hold for booking %s written to %s", row.booking_id, row.source)
            return True
        ref_url, etag = await self._store.write_ref(row.booking_id, row.host)
        if ref_url is None:
            # Cancelled before the write landed: retire the write, nothing to remove yet.
            await self._store.retire_write(row.booking_id, row.host)
        else:
            # A hold that invited the guest (invite_via = "provider"): the provider
            # tells them of the cancellation too.
            await writer.delete_hold(HoldRef(row.booking_id, ref_url, etag),
                                     notify=bool(_hold(row).attendees))
        await self._store.hold_delivered(row, ref=ref_url, etag=None)
        log.info("hold for booking %s removed from %s", row.booking_id, row.source)
        return True

    async def _move(self, writer: HoldWriter, row: OutboxRow, now: int) -> bool:
        """Change the hold in place where its write landed; the new etag goes on the
        write's row, which a later move or delete reads."""
        write = await self._store.write_state(row.booking_id, row.host)
        if write is not None and write[0] != "done":
            await self._store.hold_waiting(row, note="waiting for the hold to be written",
                                           retry_at=now + int(WRITE_WAIT.total_seconds()))
            return False
        if write is None or write[1] is None:  # never written (retired): nothing to move
            await self._store.hold_delivered(row, ref=None, etag=None)
            return True
        ref = await writer.move_hold(HoldRef(row.booking_id, write[1], write[2]), _hold(row))
        if await self._store.hold_moved(row, ref=ref.ref, etag=ref.etag):
            log.info("hold for booking %s moved on %s", row.booking_id, row.source)
        else:
            log.info("hold for booking %s moved on %s; moved again since, so once more",
                     row.booking_id, row.source)
        return True

    async def _failed(self, row: OutboxRow, error: str, now: int) -> None:
        delay = retry_delay(row.attempts + 1, RETRY_BASE, self._rng)
        await self._store.hold_failed(row, error=error, retry_at=now + int(delay))
        log.warning("hold %s for booking %s (attempt %d) failed: %s; retrying in %ds",
                    row.action, row.booking_id, row.attempts + 1, error, delay)
