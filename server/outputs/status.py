"""The operator's view: /status (HTML) and /api/v1/status (JSON), behind the admin secret.

Per source: how fresh it is, what failed and how to fix it; the hold outbox;
bookings per page; and four weeks of each merged calendar's busy time as a
day x hour heatmap drawn as SVG on the server.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp_jinja2
from aiohttp import web

from server.booking.busy import merged_busy, source_freshness
from server.config.model import reauth_fix
from server.errors import RequestError
from server.kit.clock import iso
from server.kit.metrics import Metric, gauge
from server.outputs.guard import wrong_secret
from server.outputs.heatmap import heatmap
from server.runtime import RUNTIME, Runtime
from server.store import BookingCounts

ADMIN_SECRET_NAME = ":admin"  # its row among the generated secrets (no calendar has ':')
HEATMAP_DAYS = 28
LOCAL_FORMAT = "%Y-%m-%d %H:%M"  # the page's times, in server.timezone
_CHALLENGE = {"WWW-Authenticate": 'Basic realm="fbproxy status", charset="UTF-8"'}
def setup_status(app: web.Application) -> None:
    app.router.add_get("/status", status_page)
    app.router.add_get("/api/v1/status", status_api)


async def admin_secret(runtime: Runtime) -> str:
    configured = runtime.config.server.admin_secret
    if configured:
        return str(configured)
    return await runtime.store.calendar_secret(
        ADMIN_SECRET_NAME, now=int(runtime.clock.now().timestamp()))


async def authorize_admin(request: web.Request) -> Runtime:
    """The admin secret as a Bearer token, or as the password of HTTP Basic (browsers)."""
    runtime = request.app[RUNTIME]
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    given = ""
    if scheme.lower() == "bearer":
        given = value.strip()
    elif scheme.lower() == "basic":
        try:
            given = base64.b64decode(value.strip(), validate=True).decode().partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            given = ""
    secret = await admin_secret(runtime)
    if not given or not hmac.compare_digest(secret.encode(), given.encode()):
        raise wrong_secret(request, RequestError(
            401, "the status page needs the admin secret (`fbproxy urls` prints it): as the "
            "password, or 'Authorization: Bearer …'", headers=_CHALLENGE))
    return runtime


async def status_report(runtime: Runtime) -> dict[str, Any]:
    now = int(runtime.clock.now().timestamp())
    records = {r.name: r for r in await runtime.store.sources()}
    instances = await runtime.store.instance_counts()
    durations = await runtime.store.durations()
    leases = await runtime.store.lease_holders() if runtime.sync.leases is not None else {}
    sources = []
    for source in runtime.config.sources:
        record = records.get(source.name)
        fresh = source_freshness(runtime, record, source.name, now)
        fix = reauth_fix(runtime.config, source) if fresh.needs_reauth else None
        sources.append({
            "name": source.name, "kind": source.kind, "enabled": source.enabled,
            "last_attempt": iso(record.last_attempt) if record and record.last_attempt else None,
            "last_success": iso(fresh.last_success) if fresh.last_success else None,
            "age_seconds": fresh.age_seconds, "stale": fresh.stale,
            "last_error": fresh.last_error,
            "consecutive_failures": record.consecutive_failures if record else 0,
            "needs_reauth": fresh.needs_reauth, "fix": fix,
            "items": record.item_count if record else 0,
            "instances": instances.get(record.id, 0) if record else 0,
            "last_sync_seconds": durations[record.id] / 1000
            if record and record.id in durations else None,
            # Several instances: the one holding the source's lease, while it is live.
            "synced_by": leases[source.name][0]
            if source.name in leases and leases[source.name][1] > now else None,
        })
    holds = [{"action": a, "state": s, "count": n, "last_error": e}
             for a, s, n, e in await runtime.store.hold_summary()]
    pending = [{"booking": h.booking_id, "host": h.host, "action": h.action, "source": h.source,
                "attempts": h.attempts, "next_attempt": iso(h.next_attempt),
                "last_error": h.last_error}
               for h in await runtime.store.undelivered_holds(limit=20)]
    counts = await runtime.store.booking_counts(now)
    pages = []
    for page in runtime.config.booking_pages:
        n = counts.get(page.slug, BookingCounts())
        # "confirmed" (upcoming + past) stays for scripts that read it; total adds the cancelled.
        pages.append({"slug": page.slug, "title": page.title, "upcoming": n.upcoming,
                      "past": n.past, "cancelled": n.cancelled, "confirmed": n.confirmed,
                      "total": n.total})
    subscribers = [
        {"calendar": calendar.name, "subscriber": name or None,
         "last_access": iso(runtime.last_access[(calendar.name, name)])
         if (calendar.name, name) in runtime.last_access else None}
        for calendar in runtime.config.calendars
        for name in ("", *(s.name for s in calendar.subscribers))]
    mail = await runtime.store.mail_summary(now)
    return {"generated": iso(now),
            "instance": runtime.sync.leases.holder if runtime.sync.leases else None,
            "sources": sources, "holds": holds,
            "undelivered_holds": pending, "booking_pages": pages, "subscribers": subscribers,
            # Undelivered mail: due (waiting, some failing) and dropped (a limit, a reload).
            "mail": {"due": mail.pending, "failing": mail.failing, "sent": mail.sent,
                     "dropped": mail.dropped, "last_error": mail.last_error}
            if runtime.config.mail is not None or mail.pending or mail.sent else None,
            "ok": not any(s["stale"] or s["needs_reauth"] or s["last_error"]
                          for s in sources if s["enabled"])}


def local_time(text: str | None, zone: ZoneInfo) -> str | None:
    """An ISO UTC time of the report in the server's zone, for a person to read.

    The report keeps UTC for machines (/api/v1/status); the page converts at the
    last step so both show the same instant.
    """
    if text is None:
        return None
    return datetime.fromisoformat(text).astimezone(zone).strftime(LOCAL_FORMAT)


async def status_api(request: web.Request) -> web.Response:
    """GET /api/v1/status: the report as JSON (for scripts and monitoring)."""
    runtime = await authorize_admin(request)
    return web.json_response(await status_report(runtime),
                             headers={"Cache-Control": "no-store"})


async def status_page(request: web.Request) -> web.Response:
    """GET /status: the report and each calendar's heatmap, for a person."""
    runtime = await authorize_admin(request)
    report = await status_report(runtime)
    zone = runtime.config.server.zone
    today = runtime.clock.now().astimezone(zone).date()
    first = today - timedelta(days=today.weekday())  # this week's Monday
    maps = []
    for calendar in runtime.config.calendars:
        start = int(datetime.combine(first, datetime.min.time(), zone).timestamp())
        end = int(datetime.combine(first + timedelta(days=HEATMAP_DAYS), datetime.min.time(),
                                   zone).timestamp())
        blocks = await merged_busy(runtime, calendar, start, end)
        grid = heatmap(blocks, first, HEATMAP_DAYS, zone)
        maps.append({"name": calendar.name, "grid": grid,
                     "days": [first + timedelta(days=d) for d in range(HEATMAP_DAYS)]})
    generated = runtime.clock.now().astimezone(zone).strftime(LOCAL_FORMAT)
    response = aiohttp_jinja2.render_template("status.html", request, {
        "report": report, "maps": maps, "zone": zone.key, "today": today,
        "generated_local": generated, "local": lambda text: local_time(text, zone)})
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; "
        "base-uri 'none'; form-action 'none'")
    response.headers["X-Robots-Tag"] = "noindex"
    return response


async def state_metrics(runtime: Runtime) -> list[Metric]:
    """Gauges of the current state, read from the store for one scrape."""
    now = int(runtime.clock.now().timestamp())
    records = {r.name: r for r in await runtime.store.sources()}
    instances = await runtime.store.instance_counts()
    success, age, stale, reauth, items, counts = [], [], [], [], [], []
    for source in runtime.config.sources:
        record = records.get(source.name)
        fresh = source_freshness(runtime, record, source.name, now)
        labels = [source.name, source.kind]
        if fresh.last_success:
            success.append((labels, float(fresh.last_success)))
            age.append((labels, float(fresh.age_seconds or 0)))
        stale.append((labels, float(fresh.stale)))
        reauth.append((labels, float(fresh.needs_reauth)))
        items.append((labels, float(record.item_count if record else 0)))
        counts.append((labels, float(instances.get(record.id, 0) if record else 0)))
    outbox = [([action], float(count)) for action, state, count, _ in
              await runtime.store.hold_summary() if state == "pending"]
    mail = await runtime.store.mail_summary(now)
    names = ["source", "kind"]
    return [
        gauge("fbproxy_source_last_success_timestamp_seconds",
              "When the source last synced successfully.", names, success),
        gauge("fbproxy_source_age_seconds", "Seconds since the last successful sync.", names,
              age),
        gauge("fbproxy_source_stale", "1 when the source is past its stale_after.", names,
              stale),
        gauge("fbproxy_source_needs_reauth", "1 when the source needs re-authorization.",
              names, reauth),
        gauge("fbproxy_source_items", "Items stored for the source.", names, items),
        gauge("fbproxy_source_busy_instances", "Busy instances stored for the source.", names,
              counts),
        gauge("fbproxy_hold_outbox_pending", "Holds waiting to be written or removed upstream.",
              ["action"], outbox),
        gauge("fbproxy_mail_outbox_due", "Messages due and not yet sent (failing included).",
              [], [([], float(mail.pending))]),
        gauge("fbproxy_mail_outbox_failing", "Messages whose sending failed at least once.",
              [], [([], float(mail.failing))]),
    ]
