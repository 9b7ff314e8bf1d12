"""``[mail]``: the SMTP server fbproxy sends its mail through, and addresses it trusts.

Booking pages send the guest's invitations, reminders and the host's notices
through it; ``[[alerts]]`` of kind ``email`` use it for every SMTP key they leave
out. Without ``[mail]`` nothing is sent to guests and everything else works.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.utils import parseaddr
from typing import Any, Protocol

from server.config.reader import Reader, Secret, read_int
from server.kit.smtp import SmtpServer

MAIL_KEYS = {"smtp_host", "smtp_port", "starttls", "tls", "username", "password",
             "password_env", "password_file", "from", "max_per_address_per_day"}
# One plain address: no display name, comments, quotes, brackets, spaces or control
# characters, exactly one @ and a dot in the domain. Stricter than RFC 5322 on
# purpose: every address here ends up in a header, and most of them come from guests.
_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@"
                      r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                      r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+")


@dataclass(frozen=True)
class MailConfig:
    smtp_host: str
    sender: str  # the From address (a plain address)
    sender_name: str = "fbproxy"  # the From display name
    smtp_port: int = 587
    starttls: bool = True  # STARTTLS after connecting (port 587)
    tls: bool = False  # implicit TLS from the first byte (port 465)
    username: str | None = None
    password: Secret | None = field(default=None, repr=False)
    # Messages to one address in 24 hours, past which more are dropped (and said so
    # on the status page): a guest address cannot be made a target of a mail flood.
    max_per_address_per_day: int = 20


class SmtpKeys(Protocol):
    """What [mail] and an e-mail alert both say about their SMTP server."""

    @property
    def smtp_host(self) -> str: ...

    @property
    def smtp_port(self) -> int: ...

    @property
    def starttls(self) -> bool: ...

    @property
    def tls(self) -> bool: ...

    @property
    def username(self) -> str | None: ...

    @property
    def password(self) -> Secret | None: ...


def smtp_server(keys: SmtpKeys) -> SmtpServer:
    """The server to send through, as the config names it."""
    return SmtpServer(keys.smtp_host, keys.smtp_port, starttls=keys.starttls, tls=keys.tls,
                      username=keys.username,
                      password=str(keys.password) if keys.password else None)


def plain_address(value: str) -> bool:
    """Whether ``value`` is one plain e-mail address fbproxy will put in a header."""
    return len(value) <= 254 and _ADDRESS.fullmatch(value) is not None


def read_mail(raw: Mapping[str, Any], reader: Reader) -> MailConfig | None:
    table = raw.get("mail")
    if table is None:
        return None
    if not isinstance(table, dict):
        reader.fail("mail", "must be a table ([mail])")
        return None
    reader.table(table, "mail", MAIL_KEYS)
    host = reader.typed(table, "smtp_host", "mail.smtp_host", str, "", required=True) or ""
    if host and (len(host) > 253 or not re.fullmatch(r"[A-Za-z0-9.:_\[\]-]+", host)):
        reader.fail("mail.smtp_host", f"{host!r} is not a host name or address")
    sender_name, sender = read_sender(table, "from", "mail.from", reader, required=True)
    tls = bool(reader.typed(table, "tls", "mail.tls", bool, False))
    starttls = bool(reader.typed(table, "starttls", "mail.starttls", bool, not tls))
    if tls and starttls:
        reader.fail("mail.starttls", "give tls = true (implicit TLS, port 465) or starttls = "
                    "true (port 587), not both")
    port = read_int(table, "smtp_port", "mail", reader, 465 if tls else 587, low=1,
                    high=65535) or 587
    username = reader.typed(table, "username", "mail.username", str)
    password = reader.secret(table, "password", "mail.password")
    if (username is None) != (password is None):
        reader.fail("mail.username", "give username and password together, or neither")
    limit = read_int(table, "max_per_address_per_day", "mail", reader, 20, low=1,
                     high=1000) or 20
    return MailConfig(smtp_host=host, sender=sender, sender_name=sender_name or "fbproxy",
                      smtp_port=port, starttls=starttls, tls=tls, username=username,
                      password=password, max_per_address_per_day=limit)


def read_sender(table: Mapping[str, Any], key: str, path: str, reader: Reader, *,
                required: bool) -> tuple[str, str]:
    """(display name, address) of ``"Name <a@b.org>"`` or ``"a@b.org"``."""
    value = reader.typed(table, key, path, str, "", required=required) or ""
    if not value:
        return "", ""
    name, address = parseaddr(value)
    if not plain_address(address) or any(ch in value for ch in "\r\n"):
        reader.fail(path, f"{value!r} is not an e-mail address (\"a@example.org\" or "
                    "\"Name <a@example.org>\")")
        return "", ""
    try:
        Address(display_name=name, addr_spec=address)
    except (ValueError, IndexError):
        reader.fail(path, f"{value!r} is not an e-mail address")
        return "", ""
    return name, address


def read_address(table: Mapping[str, Any], key: str, path: str, reader: Reader) -> str:
    """An optional plain address (``[[calendars]] email``)."""
    value = reader.typed(table, key, path, str, "") or ""
    if value and not plain_address(value):
        reader.fail(path, f"{value!r} is not one plain e-mail address like sam@example.org")
        return ""
    return value
