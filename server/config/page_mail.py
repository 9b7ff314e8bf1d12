"""A booking page's mail: who is told of a booking, reminders, and who invites the guest."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

import jinja2

from server.config.reader import Reader, checked_duration, read_choice, shown

PAGE_MAIL_KEYS = {"notify_host", "reminders", "remind_host", "invite_via", "templates_dir"}
INVITE_VIA = ("fbproxy", "provider")
# The sources whose provider sends invitations itself when a hold has attendees.
INVITING_KINDS = ("google", "microsoft")
MAX_REMINDERS = 5
# The templates a page's templates_dir may override (each optional).
MAIL_TEMPLATES = ("invite", "update", "cancel", "reminder_guest", "reminder_host",
                  "host_booked", "host_moved", "host_cancelled")


class TargetFacts(Protocol):
    @property
    def source(self) -> str: ...


@dataclass(frozen=True)
class PageMailConfig:
    notify_host: bool = True  # the host gets a message on each booking, move and cancel
    reminders: tuple[timedelta, ...] = ()  # before the start, to the guest
    remind_host: bool = False  # the reminders go to the host(s) too
    invite_via: str = "fbproxy"  # "provider": Google / Microsoft invite the guest
    templates_dir: Path | None = None  # overrides of the mail templates


def read_page_mail(raw: Mapping[str, Any], path: str, reader: Reader,
                   hold_target: Mapping[str, TargetFacts],
                   source_kinds: Mapping[str, str]) -> PageMailConfig:
    invite_via = read_choice(raw, "invite_via", path, reader, INVITE_VIA)
    if invite_via == "provider" and (not hold_target or any(
            source_kinds.get(t.source) not in INVITING_KINDS for t in hold_target.values())):
        reader.fail(f"{path}.invite_via", "\"provider\" needs every host's hold_target to be a "
                    "google or microsoft source (their provider sends the invitation with the "
                    "hold); CalDAV targets use \"fbproxy\"")
    templates_dir = None
    folder = reader.typed(raw, "templates_dir", f"{path}.templates_dir", str)
    if folder:
        templates_dir = reader.path(folder)
        if reader.check_files:
            _check_templates(templates_dir, f"{path}.templates_dir", reader)
    return PageMailConfig(
        notify_host=bool(reader.typed(raw, "notify_host", f"{path}.notify_host", bool, True)),
        reminders=_read_reminders(raw, path, reader),
        remind_host=bool(reader.typed(raw, "remind_host", f"{path}.remind_host", bool, False)),
        invite_via=invite_via, templates_dir=templates_dir)


def _read_reminders(raw: Mapping[str, Any], path: str, reader: Reader) -> tuple[timedelta, ...]:
    where = f"{path}.reminders"
    values = reader.typed(raw, "reminders", where, list, []) or []
    if len(values) > MAX_REMINDERS:
        reader.fail(where, f"has {len(values)} entries; use at most {MAX_REMINDERS}")
        return ()
    found: list[timedelta] = []
    for index, value in enumerate(values):
        duration = checked_duration(value, f"{where}[{index}]", reader,
                                    low=timedelta(minutes=5), high=timedelta(days=14),
                                    whole_minutes=True)
        if duration is None:
            continue
        if duration in found:
            reader.fail(f"{where}[{index}]", f"{shown(value)} is given twice")
            continue
        found.append(duration)
    return tuple(sorted(found, reverse=True))


def _check_templates(folder: Path, where: str, reader: Reader) -> None:
    """`fbproxy check-config`: the folder exists and each template in it parses."""
    if not folder.is_dir():
        reader.fail(where, f"{shown(str(folder))} is not a folder")
        return
    environment = jinja2.Environment(autoescape=True)
    for name in MAIL_TEMPLATES:
        for suffix in (".txt", ".html"):
            file = folder / f"{name}{suffix}"
            if not file.exists():
                continue
            try:
                environment.parse(file.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError) as exc:
                reader.fail(where, f"{file.name}: cannot be read ({exc})")
            except jinja2.TemplateSyntaxError as exc:
                reader.fail(where, f"{file.name}, line {exc.lineno}: {exc.message}")
