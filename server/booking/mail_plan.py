"""Which messages a booking, a reschedule or a cancellation sends, and when (pure).

The rows these plans make are queued in the same transaction as the change
itself (``server/store/mail.py``); ``server/booking/mailer.py`` renders and sends
them. Nothing is planned without ``[mail]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from server.config.model import BookingPageConfig, Config
from server.kit.durations import format_duration
from server.store import BookingRecord, MailJob

GUEST = "guest"


def host_address(config: Config, host: str) -> str:
    """A host calendar's address: its ``email``, else the [mail] sender."""
    calendar = config.calendar(host)
    if calendar is not None and calendar.email:
        return calendar.email
    return config.mail.sender if config.mail is not None else ""


def _hosts(page: BookingPageConfig, booking: BookingRecord) -> tuple[str, ...]:
    """The hosts of this booking: every host of a collective page, else the one assigned."""
    return page.hosts if page.mode == "collective" else (booking.host,)


def reminder_tag(offset: timedelta) -> str:
    return format_duration(offset)


def _reminders(config: Config, page: BookingPageConfig, booking: BookingRecord,
               now: int) -> list[MailJob]:
    jobs = []
    for offset in page.mail.reminders:
        due = booking.start - int(offset.total_seconds())
        if due <= now:
            continue  # booked closer to the start than this reminder: the booking is news
        jobs.append(MailJob("reminder", GUEST, booking.guest_email, due, reminder_tag(offset)))
        if page.mail.remind_host:
            jobs += [MailJob("reminder", host, host_address(config, host), due,
                             reminder_tag(offset)) for host in _hosts(page, booking)]
    return jobs


def _to_hosts(config: Config, page: BookingPageConfig, booking: BookingRecord, kind: str,
              now: int) -> list[MailJob]:
    if not page.mail.notify_host:
        return []
    return [MailJob(kind, host, host_address(config, host), now)
            for host in _hosts(page, booking)]


def booked_mail(config: Config, page: BookingPageConfig, booking: BookingRecord,
                now: int) -> Sequence[MailJob]:
    """A new booking: the guest's invitation, the hosts' notices, the reminders."""
    if config.mail is None:
        return ()
    jobs = []
    if page.mail.invite_via == "fbproxy":
        jobs.append(MailJob("invite", GUEST, booking.guest_email, now))
    return [*jobs, *_to_hosts(config, page, booking, "host_booked", now),
            *_reminders(config, page, booking, now)]


def moved_mail(config: Config, page: BookingPageConfig, booking: BookingRecord,
               now: int) -> Sequence[MailJob]:
    """A booking moved to a new time (``booking`` as it is now, its sequence moved on).

    The queued reminders of the old time are dropped by the move's transaction;
    these are the new time's."""
    if config.mail is None:
        return ()
    jobs = []
    if page.mail.invite_via == "fbproxy":
        jobs.append(MailJob("update", GUEST, booking.guest_email, now))
    return [*jobs, *_to_hosts(config, page, booking, "host_moved", now),
            *_reminders(config, page, booking, now)]


def cancelled_mail(config: Config, page: BookingPageConfig, booking: BookingRecord,
                   now: int) -> Sequence[MailJob]:
    """A booking cancelled by the guest or a host: the guest's CANCEL, the hosts told."""
    if config.mail is None:
        return ()
    jobs = []
    if page.mail.invite_via == "fbproxy":
        jobs.append(MailJob("cancel", GUEST, booking.guest_email, now))
    return [*jobs, *_to_hosts(config, page, booking, "host_cancelled", now)]
