"""A queued message about a booking, rendered: headers, text, HTML and the invitation.

Templates are Jinja2 (``mail_templates/NAME.txt`` and ``NAME.html``; a page's
``templates_dir`` may override any of them); each sets ``subject`` at its top
level, and writes its texts with ``{% trans %}`` / ``_()`` (gettext, the catalogues
of ``server/locale/``): a guest's messages read in the language they booked in,
else the page's ``language``, else English; a host's in the page's ``language``,
else English. The HTML is autoescaped; the text is not HTML at all. Every header is
built by the ``email`` package from values checked here: a guest's name or
answers cannot add a header or a recipient (CR and LF never reach a header),
and the invitation is written by icalendar (``invitation.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2

from server.booking.invitation import GuestEvent, guest_calendar
from server.booking.links import host_path, manage_path
from server.booking.mail_plan import GUEST, host_address
from server.booking.wording import duration_label, when_label
from server.config.mail import MailConfig, plain_address
from server.config.model import BookingPageConfig, Config
from server.kit.i18n import choose, i18n_environment, template_callables, translate
from server.store import BookingRecord

TEMPLATES = Path(__file__).with_name("mail_templates")
# The iTIP method of the guest's calendar part, per kind of message (others have none).
METHOD = {"invite": "REQUEST", "update": "REQUEST", "cancel": "CANCEL"}
_SPACE = re.compile(r"\s+")


class MessageError(Exception):
    """This message cannot be built (a template fails, an address is not plain)."""


@dataclass(frozen=True, slots=True)
class Rendered:
    message: EmailMessage
    recipient: str  # the one address it goes to


def shown_zone(page: BookingPageConfig | None, booking: BookingRecord, *,
               to_guest: bool) -> ZoneInfo:
    """The zone a booking's times are shown in: the guest's own (as they booked) to
    the guest, the page's to its hosts."""
    page_zone = page.timezone if page is not None else "UTC"
    return ZoneInfo((booking.guest_timezone or page_zone) if to_guest else page_zone)


def host_name(config: Config, host: str) -> str:
    calendar = config.calendar(host)
    return (calendar.display_name if calendar is not None and calendar.display_name
            else host)


def guest_language(page: BookingPageConfig | None, booking: BookingRecord) -> str:
    """The language of the guest's messages and files: the one they booked in, else
    the page's, else English."""
    return choose(booking=booking.guest_language, page=page.language if page else "")


def guest_event(config: Config, page: BookingPageConfig | None,
                booking: BookingRecord) -> GuestEvent:
    """The guest's copy of ``booking`` (the .ics download and the invitations), its
    description in the guest's language."""
    base = config.server.base_url
    title = page.title if page is not None else booking.page
    language = guest_language(page, booking)
    lines = [translate(language, "With %(host)s.", {"host": host_name(config, booking.host)})]
    if booking.video_link:
        lines.append(translate(language, "Join: %(url)s", {"url": booking.video_link}))
    lines.append(translate(language, "Reschedule or cancel: %(url)s",
                           {"url": base + manage_path(booking)}))
    return GuestEvent(
        booking_id=booking.id, title=title, start=booking.start, end=booking.end,
        created=booking.created, sequence=booking.sequence,
        cancelled=booking.status == "cancelled",
        organizer_name=host_name(config, booking.host),
        organizer_email=host_address(config, booking.host),
        guest_name=booking.guest_name, guest_email=booking.guest_email,
        location=booking.video_link, description="\n".join(lines),
        manage_url=base + manage_path(booking))


@lru_cache(maxsize=32)
def _environment(override: Path | None, html: bool) -> jinja2.Environment:
    loaders: list[jinja2.BaseLoader] = [jinja2.FileSystemLoader(TEMPLATES)]
    if override is not None:
        loaders.insert(0, jinja2.FileSystemLoader(override))
    environment = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders), autoescape=html, undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
    i18n_environment(environment)
    return environment


def _render(page: BookingPageConfig | None, name: str, html: bool,
            context: dict[str, Any]) -> tuple[str, str]:
    """(subject, body) of template ``name``."""
    override = page.mail.templates_dir if page is not None else None
    try:
        template = _environment(override, html).get_template(
            f"{name}.{'html' if html else 'txt'}")
        module = template.make_module(context)
    except jinja2.TemplateError as exc:
        raise MessageError(f"mail template {name}: {exc}") from exc
    return _SPACE.sub(" ", str(getattr(module, "subject", ""))).strip()[:200], str(module)


def _address(name: str, email: str) -> Address:
    if not plain_address(email):
        raise MessageError(f"{email!r} is not a plain e-mail address")
    # The display name is one line: a CR or LF would be a header injection.
    return Address(display_name=_SPACE.sub(" ", name).strip()[:100], addr_spec=email)


def render_message(config: Config, mail: MailConfig, page: BookingPageConfig | None,
                   booking: BookingRecord, *, kind: str, recipient: str, address: str,
                   sequence: int, tag: str, message_id: str, now: datetime) -> Rendered:
    """The message a mail_outbox row stands for, from the booking as it is now."""
    to_guest = recipient == GUEST
    zone = shown_zone(page, booking, to_guest=to_guest)
    language = guest_language(page, booking) if to_guest \
        else choose(page=page.language if page else "")
    base = config.server.base_url
    questions = {q.name: q.label for q in page.questions} if page is not None else {}
    event = guest_event(config, page, booking)
    context = {
        "title": event.title, "booking_id": booking.id,
        "when": when_label(booking.start, booking.end, zone, language),
        "duration": duration_label(timedelta(seconds=booking.end - booking.start), language),
        "host": host_name(config, booking.host if to_guest or page is None
                          or page.mode != "collective" else recipient),
        "guest_name": booking.guest_name, "guest_email": booking.guest_email,
        "answers": [(questions.get(k, k), v) for k, v in booking.answers.items()],
        "video_link": booking.video_link, "manage_url": base + manage_path(booking),
        "host_url": base + host_path(booking) if booking.host_secret else "",
        "reason": booking.cancel_reason, "cancelled_by": booking.cancelled_by,
        "reminder": tag, "zone": zone.key, "to_guest": to_guest,
        "cancelled": booking.status == "cancelled", "lang": language,
        **template_callables(language),
    }
    name = f"reminder_{'guest' if to_guest else 'host'}" if kind == "reminder" else kind
    subject, text = _render(page, name, False, context)
    _, html = _render(page, name, True, context)
    message = EmailMessage()
    message["Subject"] = subject or event.title
    message["From"] = _address(mail.sender_name, mail.sender)
    message["To"] = _address(booking.guest_name if to_guest else host_name(config, recipient),
                             address)
    reply_to = host_address(config, booking.host) if to_guest else booking.guest_email
    if reply_to and reply_to != mail.sender:
        message["Reply-To"] = _address("", reply_to)
    message["Date"] = format_datetime(now)
    message["Message-ID"] = message_id
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    method = METHOD.get(kind) if to_guest else None
    if method is not None:
        ics = guest_calendar(event, method, now)
        # The part calendar apps act on (RFC 6047), and the same file attached for
        # mail programs that only offer attachments.
        message.add_alternative(ics.decode("utf-8"), subtype="calendar",
                                params={"method": method})
        message.add_attachment(ics, maintype="application", subtype="ics",
                               filename="invite.ics")
    return Rendered(message, address)


def message_id(row_id: int, booking_id: str, sender: str) -> str:
    """Stable per outbox row: a message sent twice (a crash mid-send) has one id."""
    domain = sender.rpartition("@")[2] or "fbproxy.invalid"
    safe = "".join(ch for ch in booking_id if ch.isalnum() or ch in "-_")
    return f"<fbproxy.{row_id}.{safe}@{domain}>"
