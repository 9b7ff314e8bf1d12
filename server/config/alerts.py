"""``[[alerts]]``: where fbproxy reports state changes (a webhook, or e-mail over SMTP)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from server.config.mail import MailConfig, plain_address, read_sender
from server.config.reader import (
    Reader,
    Secret,
    is_loopback,
    kinds_taking,
    list_of_tables,
    read_choice,
    read_duration,
    read_int,
    read_name,
)

ALERT_KINDS = ("webhook", "email")
EVENTS = ("source_needs_reauth", "source_failing", "source_recovered", "hold_failing",
          "mail_failing")
_COMMON = {"name", "kind", "events", "after"}
_KIND_KEYS = {
    "webhook": {"url", "secret", "secret_env", "secret_file"},
    "email": {"smtp_host", "smtp_port", "starttls", "tls", "username", "password", "password_env",
              "password_file", "from", "to"},
}
ALERT_KEYS = _COMMON.union(*_KIND_KEYS.values())
_KEY_KINDS = kinds_taking(_KIND_KEYS, "alerts")


@dataclass(frozen=True)
class AlertConfig:
    name: str
    kind: str
    events: tuple[str, ...] = EVENTS
    after: timedelta = timedelta(minutes=15)  # failing this long before source_failing
    url: str = ""  # webhook
    secret: Secret | None = field(default=None, repr=False)  # webhook HMAC-SHA256 key
    smtp_host: str = ""
    smtp_port: int = 587
    starttls: bool = True
    tls: bool = False  # implicit TLS (port 465)
    username: str | None = None
    password: Secret | None = field(default=None, repr=False)
    sender: str = ""
    recipients: tuple[str, ...] = ()


def read_alerts(raw: Mapping[str, Any], reader: Reader,
                mail: MailConfig | None = None) -> tuple[AlertConfig, ...]:
    """``mail``: the [mail] table, whose SMTP settings e-mail alerts use for every key
    they leave out."""
    names: set[str] = set()
    return tuple(_read_alert(table, f"alerts[{i}]", reader, names, mail)
                 for i, table in enumerate(list_of_tables(raw, "alerts", reader)))


def _read_alert(raw: Mapping[str, Any], path: str, reader: Reader,
                names: set[str], mail: MailConfig | None) -> AlertConfig:
    name = read_name(raw, path, reader, names)
    kind = read_choice(raw, "kind", path, reader, ALERT_KINDS)
    reader.table(raw, path, _COMMON | _KIND_KEYS[kind], elsewhere=_KEY_KINDS)
    events = reader.typed(raw, "events", f"{path}.events", list, list(EVENTS)) or []
    unknown = [e for e in events if e not in EVENTS]
    if unknown:
        reader.fail(f"{path}.events", f"{unknown!r}: use some of {', '.join(EVENTS)}")
    after = read_duration(raw, "after", path, reader, timedelta(minutes=15),
                          low=timedelta(0), high=timedelta(days=7))
    common: dict[str, Any] = {"name": name, "kind": kind,
                              "events": tuple(e for e in events if e in EVENTS), "after": after}
    if kind == "webhook":
        url = reader.typed(raw, "url", f"{path}.url", str, "", required=True) or ""
        scheme = urlsplit(url).scheme
        if url and scheme != "https" and not (scheme == "http" and is_loopback(url)):
            reader.fail(f"{path}.url", f"{url!r}: use an https URL (http only on loopback)")
        return AlertConfig(**common, url=url,
                           secret=reader.secret(raw, "secret", f"{path}.secret"))
    to = reader.typed(raw, "to", f"{path}.to", list, [], required=True) or []
    if not to or not all(isinstance(a, str) and plain_address(a) for a in to):
        reader.fail(f"{path}.to", "must be a list of e-mail addresses")
    own = "smtp_host" in raw
    if mail is not None and not own:
        # Everything SMTP from [mail], unless the alert names its own server.
        return AlertConfig(
            **common, smtp_host=mail.smtp_host, smtp_port=mail.smtp_port,
            starttls=mail.starttls, tls=mail.tls, username=mail.username,
            password=mail.password,
            sender=read_sender(raw, "from", f"{path}.from", reader, required=False)[1]
            or mail.sender, recipients=tuple(str(a) for a in to))
    if not own:
        reader.fail(f"{path}.smtp_host", "is required (or give a [mail] table, whose server "
                    "e-mail alerts then use)")
    sender = read_sender(raw, "from", f"{path}.from", reader, required=True)[1]
    tls = bool(reader.typed(raw, "tls", f"{path}.tls", bool, False))
    return AlertConfig(
        **common, smtp_host=reader.typed(raw, "smtp_host", f"{path}.smtp_host", str, "") or "",
        smtp_port=read_int(raw, "smtp_port", path, reader, 465 if tls else 587, low=1,
                           high=65535) or 587,
        starttls=bool(reader.typed(raw, "starttls", f"{path}.starttls", bool, not tls)),
        tls=tls, username=reader.typed(raw, "username", f"{path}.username", str),
        password=reader.secret(raw, "password", f"{path}.password"),
        sender=sender, recipients=tuple(str(a) for a in to))
