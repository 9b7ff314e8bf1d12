"""Sending one message over SMTP (aiosmtplib), the way every part of fbproxy sends mail."""

from __future__ import annotations

from dataclasses import dataclass, field
from email.message import EmailMessage

import aiosmtplib

SMTP_TIMEOUT = 20.0
# What a failed send raises: the caller retries later.
SEND_ERRORS = (aiosmtplib.SMTPException, OSError, TimeoutError)


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int = 587
    starttls: bool = True  # STARTTLS after connecting
    tls: bool = False  # implicit TLS
    username: str | None = None
    password: str | None = field(default=None, repr=False)


async def send_message(server: SmtpServer, message: EmailMessage,
                       recipients: list[str] | None = None) -> None:
    """Send ``message`` (to its To/Cc, or to ``recipients``); raises one of SEND_ERRORS."""
    await aiosmtplib.send(
        message, recipients=recipients, hostname=server.host, port=server.port,
        use_tls=server.tls, start_tls=server.starttls if not server.tls else False,
        username=server.username, password=server.password, timeout=SMTP_TIMEOUT)
