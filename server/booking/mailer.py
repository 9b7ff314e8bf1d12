"""The mail outbox worker: sends due messages about bookings, one SMTP transaction each.

A row is marked sent only after the server accepted it, so a crash loses
nothing and duplicates at most the one message in flight (its Message-ID is
the same both times). A failure is retried with backoff; a row that keeps
failing raises the ``mail_failing`` alert. The booking's transaction never
waits for any of this: it only wakes the worker.
"""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import timedelta

from server.booking.messages import MessageError, message_id, render_message
from server.config.mail import smtp_server
from server.config.model import Config
from server.kit.background import WakeableLoop
from server.kit.clock import Clock
from server.kit.smtp import SEND_ERRORS, send_message
from server.store import MailRow, Store
from server.sync.loop import retry_delay

log = logging.getLogger("fbproxy.mail")

RETRY_BASE = timedelta(minutes=1)
# After this many failed attempts a message counts as failing (status, alert).
FAILING_AFTER = 5


class Mailer(WakeableLoop):
    """Sends due mail_outbox rows; woken by bookings, else it polls (reminders fall due)."""

    loop_name = "mail"

    def __init__(self, store: Store, config: Config, clock: Clock,
                 rng: random.Random | None = None, *, holder: str = "local",
                 claim_seconds: int = 0, poll_seconds: float = 30.0) -> None:
        self._store = store
        self._config = config
        self._clock = clock
        self._rng = rng or random.Random()
        self.holder = holder
        # Several instances: a row is claimed for this long (an SMTP send is bounded
        # by its timeout, well inside it); 0 on SQLite, one server per file.
        self._claim_seconds = claim_seconds
        self._poll = poll_seconds
        self._wake = asyncio.Event()

    def set_config(self, config: Config) -> None:
        """The config in force after a reload (templates, addresses, the SMTP server)."""
        self._config = config

    async def run_once(self) -> int:
        """Send every due row once; returns how many were sent."""
        now = int(self._clock.now().timestamp())
        sent = 0
        for row in await self._store.claim_mail(now, holder=self.holder,
                                                claim_seconds=self._claim_seconds):
            try:
                if await self._send(row):
                    sent += 1
            except SEND_ERRORS as exc:
                await self._failed(row, f"{type(exc).__name__}: {exc}", now)
            except MessageError as exc:
                await self._failed(row, str(exc), now)
            except Exception as exc:  # a bug must not stop every other message
                log.exception("mail %s for booking %s: unexpected error", row.kind,
                              row.booking_id)
                await self._failed(row, f"{type(exc).__name__}: {exc}", now)
        return sent

    async def _send(self, row: MailRow) -> bool:
        config = self._config
        mail = config.mail
        booking = await self._store.booking(row.booking_id)
        if mail is None or booking is None:
            await self._store.mail_dropped(row, "no [mail] in the config any more"
                                           if mail is None else "no such booking")
            return False
        if not await self._store.mail_pending(row):
            return False  # dropped meanwhile (a reschedule or cancellation)
        if row.kind == "reminder" and (booking.status != "confirmed"
                                       or booking.sequence != row.sequence):
            await self._store.mail_dropped(row, "the booking moved or was cancelled")
            return False
        rendered = render_message(
            config, mail, config.booking_page(booking.page), booking, kind=row.kind,
            recipient=row.recipient, address=row.address, sequence=row.sequence, tag=row.tag,
            message_id=message_id(row.id, row.booking_id, mail.sender),
            now=self._clock.now())
        await send_message(smtp_server(mail), rendered.message, [rendered.recipient])
        await self._store.mail_sent(row, now=int(self._clock.now().timestamp()))
        log.info("mail %s for booking %s sent to %s", row.kind, row.booking_id, row.recipient)
        return True

    async def _failed(self, row: MailRow, error: str, now: int) -> None:
        delay = retry_delay(row.attempts + 1, RETRY_BASE, self._rng)
        await self._store.mail_failed(row, error=error, retry_at=now + int(delay))
        log.warning("mail %s for booking %s (attempt %d) failed: %s; retrying in %ds",
                    row.kind, row.booking_id, row.attempts + 1, error, delay)
