"""Alerts: a message once per state change, sent from an outbox, never blocking sync.

Every 30 seconds the watcher compares each source's state (ok, failing for
longer than ``after``, needs re-authorization) and each stuck hold with the
state last reported for it, per ``[[alerts]]`` entry. A change is stored
together with its messages in one transaction, so a restart neither repeats
nor loses one; the sender delivers them with retries and backoff.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import random
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

import aiohttp
import aiosmtplib

from server.config.alerts import AlertConfig
from server.config.mail import smtp_server
from server.config.model import Config, SourceConfig, reauth_fix
from server.kit.background import BackgroundLoop
from server.kit.clock import Clock, iso
from server.kit.smtp import send_message
from server.store import AlertMessage, SourceRecord, Store
from server.sync.loop import retry_delay

log = logging.getLogger("fbproxy.alerts")

CHECK_EVERY = 30.0
HOLD_ALERT_ATTEMPTS = 5  # a hold that failed this often is reported (once)
MAIL_ALERT_ATTEMPTS = 5  # the same for a message to a guest or host
RETRY_BASE = timedelta(minutes=5)
SIGNATURE_HEADER = "X-Fbproxy-Signature"
# (old state, new state) -> event
_EVENTS = {("ok", "failing"): "source_failing", ("needs_reauth", "failing"): "source_failing",
           ("ok", "needs_reauth"): "source_needs_reauth",
           ("failing", "needs_reauth"): "source_needs_reauth",
           ("failing", "ok"): "source_recovered", ("needs_reauth", "ok"): "source_recovered"}


class Alerts(BackgroundLoop):
    """Watches for state changes and sends their messages."""

    loop_name = "alerts"

    def __init__(self, config: Config, store: Store, clock: Clock,
                 session: aiohttp.ClientSession, rng: random.Random | None = None, *,
                 holder: str = "local", claim_seconds: int = 60) -> None:
        self.holder = holder  # this instance, claiming messages to send
        self._claim_seconds = claim_seconds
        self._config = config
        self._store = store
        self._clock = clock
        self._session = session
        self._rng = rng or random.Random()

    async def _run_forever(self) -> None:
        while True:
            try:
                await self.evaluate()
                await self.deliver()
            except Exception:  # an alerting bug must not stop alerting for good
                log.exception("alerts: unexpected error")
            await asyncio.sleep(CHECK_EVERY)

    # -- watching -------------------------------------------------------------------

    async def evaluate(self) -> int:
        """Queue a message for each state change since the last look; how many were queued."""
        now = int(self._clock.now().timestamp())
        reported = await self._store.alert_states()
        records = {r.name: r for r in await self._store.sources()}
        stuck = [h for h in await self._store.undelivered_holds(limit=200)
                 if h.attempts >= HOLD_ALERT_ATTEMPTS]
        unsent = await self._store.failing_mail(MAIL_ALERT_ATTEMPTS)
        queued = 0
        for alert in self._config.alerts:
            for source in self._config.sources:
                if not source.enabled:
                    continue
                record = records.get(source.name)
                state = _source_state(record, alert, now)
                subject = f"{alert.name}:source:{source.name}"
                seen = reported[subject][0] if subject in reported else None
                previous = seen or "ok"
                if state == previous:
                    continue
                event = _EVENTS.get((previous, state))
                messages = []
                if event in alert.events:
                    messages.append((alert.name, self._source_payload(
                        event, source, record, now)))
                if await self._store.change_alert_state(subject, state, now=now,
                                                        messages=messages, seen=seen):
                    queued += len(messages)
            for hold in stuck:
                subject = f"{alert.name}:hold:{hold.booking_id}:{hold.host}:{hold.action}"
                if subject in reported or "hold_failing" not in alert.events:
                    continue
                payload = {"event": "hold_failing", "at": iso(now), "booking": hold.booking_id,
                           "host": hold.host, "source": hold.source, "action": hold.action,
                           "attempts": hold.attempts, "error": hold.last_error,
                           "message": f"the {hold.action} of booking {hold.booking_id}'s hold "
                                      f"on {hold.source} failed {hold.attempts} times: "
                                      f"{hold.last_error}"}
                if await self._store.change_alert_state(subject, "failing", now=now,
                                                        messages=[(alert.name, payload)]):
                    queued += 1
            for mail in unsent:
                subject = f"{alert.name}:mail:{mail.id}"
                if subject in reported or "mail_failing" not in alert.events:
                    continue
                payload = {"event": "mail_failing", "at": iso(now), "booking": mail.booking_id,
                           "kind": mail.kind, "recipient": mail.recipient,
                           "attempts": mail.attempts,
                           "message": f"the {mail.kind} message of booking {mail.booking_id} "
                                      f"to {mail.recipient} failed {mail.attempts} times"}
                if await self._store.change_alert_state(subject, "failing", now=now,
                                                        messages=[(alert.name, payload)]):
                    queued += 1
        return queued

    def _source_payload(self, event: str, source: SourceConfig, record: SourceRecord | None,
                        now: int) -> dict[str, Any]:
        name, kind = source.name, source.kind
        error = record.last_error if record else None
        fix = reauth_fix(self._config, source) if event == "source_needs_reauth" else None
        text = {"source_needs_reauth": f"source {name} needs re-authorization: run `{fix}`",
                "source_failing": f"source {name} has been failing: {error}",
                "source_recovered": f"source {name} syncs again"}[event]
        return {"event": event, "at": iso(now), "source": name, "kind": kind, "error": error,
                "fix": fix, "message": text,
                "last_success": iso(record.last_success) if record and record.last_success
                else None}

    # -- sending --------------------------------------------------------------------

    async def deliver(self) -> int:
        """Send what is due; failures are retried later with backoff."""
        now = int(self._clock.now().timestamp())
        sent = 0
        alerts = {a.name: a for a in self._config.alerts}
        for message in await self._store.claim_alerts(now, holder=self.holder,
                                                      claim_seconds=self._claim_seconds):
            alert = alerts.get(message.alert)
            if alert is None:  # removed from the config: nothing to send it to
                await self._store.alert_sent(message.id)
                continue
            try:
                if alert.kind == "webhook":
                    await self._post(alert, message)
                else:
                    await self._mail(alert, message)
            except (aiohttp.ClientError, aiosmtplib.SMTPException, OSError, TimeoutError,
                    AlertRefused) as exc:
                delay = retry_delay(message.attempts + 1, RETRY_BASE, self._rng)
                await self._store.alert_failed(message.id, error=str(exc),
                                               retry_at=now + int(delay))
                log.warning("alert %s: sending failed (%s); retrying in %ds", alert.name, exc,
                            delay)
                continue
            await self._store.alert_sent(message.id)
            sent += 1
        return sent

    async def _post(self, alert: AlertConfig, message: AlertMessage) -> None:
        body = json.dumps(message.payload, sort_keys=True).encode()
        headers = {"Content-Type": "application/json",
                   "X-Fbproxy-Event": str(message.payload.get("event", ""))}
        if alert.secret:
            digest = hmac.new(str(alert.secret).encode(), body, hashlib.sha256).hexdigest()
            headers[SIGNATURE_HEADER] = f"sha256={digest}"
        async with self._session.post(alert.url, data=body, headers=headers,
                                      timeout=aiohttp.ClientTimeout(total=10)) as response:
            if not 200 <= response.status < 300:
                raise AlertRefused(f"the webhook answered {response.status}")

    async def _mail(self, alert: AlertConfig, message: AlertMessage) -> None:
        mail = EmailMessage()
        mail["Subject"] = f"[fbproxy] {message.payload.get('message', '')}"[:200]
        mail["From"] = alert.sender
        mail["To"] = ", ".join(alert.recipients)
        mail.set_content(json.dumps(message.payload, indent=2, sort_keys=True))
        await send_message(smtp_server(alert), mail)


class AlertRefused(Exception):
    """The receiver answered, but not with success."""


def _source_state(record: SourceRecord | None, alert: AlertConfig, now: int) -> str:
    if record is None:
        return "ok"
    if record.needs_reauth:
        return "needs_reauth"
    if record.last_error:
        since = record.last_success or 0
        if since == 0 or now - since >= alert.after.total_seconds():
            return "failing"
    return "ok"
