"""What a booking page tells a guest before booking, and where it may be shown:
``location``, ``logo``, ``accent_color`` and ``embed_origins``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from server.config.images import Picture, read_picture
from server.config.reader import Reader, read_text, shown

PAGE_LOOK_KEYS = {"location", "logo", "accent_color", "embed_origins"}
LOCATION_KINDS = ("video", "phone", "address", "text")
_PHONE = re.compile(r"\+?[0-9][0-9 ()./-]{2,39}")
_COLOR = re.compile(r"#[0-9a-fA-F]{6}")
_ORIGIN_HOST = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")
MAX_EMBED_ORIGINS = 20


@dataclass(frozen=True)
class Location:
    """Where the meeting happens, as the page says it."""

    kind: str  # one of LOCATION_KINDS
    text: str = ""  # phone: the number ("" = the host calls); address, text: as written


@dataclass(frozen=True)
class PageLookConfig:
    location: Location | None = None
    logo: Picture | None = None
    accent_color: str = ""  # "#rrggbb" (lowercase), or "" for the default colours
    embed_origins: tuple[str, ...] = ()  # exact https origins allowed to frame the page


def read_page_look(raw: Mapping[str, Any], path: str, reader: Reader,
                   has_video_link: bool) -> PageLookConfig:
    return PageLookConfig(
        location=_read_location(raw, path, reader, has_video_link),
        logo=read_picture(raw, "logo", path, reader),
        accent_color=_read_color(raw, path, reader),
        embed_origins=_read_origins(raw, path, reader))


def _read_location(raw: Mapping[str, Any], path: str, reader: Reader,
                   has_video_link: bool) -> Location | None:
    """``"video"``, ``"phone"``, ``"phone:+49 30 1234567"``, ``"address:Main St 1, Berlin"``
    or any other one-line text; left out: ``"video"`` when the page makes a video link."""
    if "location" not in raw:
        return Location("video") if has_video_link else None
    where = f"{path}.location"
    text = read_text(raw, "location", path, reader, limit=200, required=True).strip()
    kind, colon, rest = text.partition(":")
    kind, rest = kind.strip().lower(), rest.strip()
    if text.lower() in ("video", "phone"):
        return Location(text.lower())
    if colon and kind == "phone":
        if not _PHONE.fullmatch(rest):
            reader.fail(where, f"{shown(rest)} is not a phone number; use digits, spaces and "
                        '+ ( ) - . / only, e.g. "phone:+49 30 1234567"')
            return None
        return Location("phone", rest)
    if colon and kind == "address":
        if not rest:
            reader.fail(where, 'names no address; use e.g. "address:Main Street 1, Berlin"')
            return None
        return Location("address", rest)
    return Location("text", text) if text else None


def _read_color(raw: Mapping[str, Any], path: str, reader: Reader) -> str:
    where = f"{path}.accent_color"
    value = reader.typed(raw, "accent_color", where, str)
    if value is None:
        return ""
    if not _COLOR.fullmatch(value):
        reader.fail(where, f'{shown(value)} is not a colour; use "#rrggbb", e.g. "#0a58ca"')
        return ""
    return value.lower()


def _read_origins(raw: Mapping[str, Any], path: str, reader: Reader) -> tuple[str, ...]:
    """Exact https origins (scheme, host, optional port; nothing else) in the CSP."""
    where = f"{path}.embed_origins"
    values = reader.typed(raw, "embed_origins", where, list, []) or []
    if len(values) > MAX_EMBED_ORIGINS:
        reader.fail(where, f"has {len(values)} entries; use at most {MAX_EMBED_ORIGINS}")
        return ()
    origins: list[str] = []
    for index, value in enumerate(values):
        origin = _origin(value)
        if origin is None:
            reader.fail(f"{where}[{index}]", f"{shown(value)} is not an https origin; use "
                        'e.g. "https://www.example.org" (no path, no wildcard; http is '
                        "refused)")
        elif origin in origins:
            reader.fail(f"{where}[{index}]", f"{shown(value)} is listed twice")
        else:
            origins.append(origin)
    return tuple(origins)


def _origin(value: object) -> str | None:
    if not isinstance(value, str) or len(value) > 300:
        return None
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname or ""
    if parts.scheme != "https" or not _ORIGIN_HOST.fullmatch(host) or parts.username \
            or parts.password or parts.path not in ("", "/") or parts.query \
            or parts.fragment or port == 0 or value != value.strip():
        return None
    return f"https://{host}" + (f":{port}" if port not in (None, 443) else "")
