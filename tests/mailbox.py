"""A real SMTP server (aiosmtpd) on loopback that keeps what it receives.

Registered as a pytest plugin (see conftest): the ``mailbox`` fixture is a
started server; ``Mailbox.messages`` are the parsed messages with their
envelope recipients. A message is in the list before the sender's DATA command
returns, so a test reads it right after the send, without waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from icalendar import Calendar

from tests.peers import free_port


@dataclass
class Received:
    envelope_to: list[str]
    raw: bytes
    message: EmailMessage

    def part(self, content_type: str) -> EmailMessage | None:
        for part in self.message.walk():
            if part.get_content_type() == content_type:
                return part  # type: ignore[return-value]
        return None

    def calendar(self) -> Calendar:
        part = self.part("text/calendar")
        assert part is not None, "no text/calendar part"
        return Calendar.from_ical(part.get_content())

    def text(self) -> str:
        part = self.part("text/plain")
        assert part is not None
        return str(part.get_content())

    def html(self) -> str:
        part = self.part("text/html")
        assert part is not None
        return str(part.get_content())


@dataclass
class Mailbox:
    port: int
    messages: list[Received] = field(default_factory=list)
    # Set: DATA is answered 451 (a temporary failure); cleared: accepted.
    refuse: bool = False
    # Set: DATA never answers until released (a server hanging mid-transaction).
    hang: asyncio.Event | None = None
    in_data: int = 0  # DATA commands received (answered or not)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.in_data += 1
        if self.hang is not None:
            await self.hang.wait()
        if self.refuse:
            return "451 try again later"
        raw = bytes(envelope.content)
        self.messages.append(Received(list(envelope.rcpt_tos), raw, message_from_bytes(
            raw, policy=policy.default)))  # type: ignore[arg-type]
        return "250 OK"

    def to(self, address: str) -> list[Received]:
        return [m for m in self.messages if address in m.envelope_to]


def start_mailbox(port: int | None = None) -> tuple[Mailbox, Controller]:
    box = Mailbox(port or free_port())
    controller = Controller(box, hostname="127.0.0.1", port=box.port)
    controller.start()
    return box, controller


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    box, controller = start_mailbox()
    try:
        yield box
    finally:
        controller.stop()


def mail_table(box: Mailbox, **extra: Any) -> dict[str, Any]:
    """A [mail] table sending to ``box``."""
    return {"smtp_host": "127.0.0.1", "smtp_port": box.port, "starttls": False,
            "from": "Bookings <bookings@example.org>", **extra}
