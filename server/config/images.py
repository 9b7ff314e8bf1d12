"""Pictures a booking page shows: a host's ``avatar``, a page's ``logo``.

Either an ``https://`` URL (the guest's browser loads it from there) or a local
file that fbproxy serves itself at ``/media/<hash>.<ext>``. A local file is read
when the config is loaded, so every command (``check-config`` among them)
reports one that is missing, too large or not an image. Only raster formats
are taken, recognised by their first bytes, never by the file name: an SVG
can carry script, and a file served as an image must be one.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from server.config.reader import Reader, shown

MAX_IMAGE_BYTES = 1024 * 1024
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
_HOST = re.compile(rf"{_LABEL}(\.{_LABEL})*")
_UNSAFE_URL = re.compile(r"[\s\x00-\x1f\x7f\"'<>\\`]")


@dataclass(frozen=True)
class Picture:
    """An image to show: ``url`` (https, loaded by the browser) or a local file's bytes."""

    url: str = ""
    body: bytes = field(default=b"", repr=False)
    content_type: str = ""  # image/png, image/jpeg, image/webp, image/gif
    extension: str = ""

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.body).hexdigest()[:32]

    @property
    def href(self) -> str:
        """Where a page points its ``<img src>``."""
        return self.url or f"/media/{self.digest}.{self.extension}"

    @property
    def origin(self) -> str:
        """The https origin a page's CSP must allow for it ("" for a local file)."""
        if not self.url:
            return ""
        parts = urlsplit(self.url)
        return f"https://{parts.netloc.lower()}"


def image_kind(body: bytes) -> tuple[str, str] | None:
    """(content type, extension) from the first bytes, or None when not a raster image."""
    if body.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png", "png"
    if body.startswith(b"\xff\xd8\xff"):
        return "image/jpeg", "jpg"
    if body[:4] == b"RIFF" and body[8:12] == b"WEBP":
        return "image/webp", "webp"
    if body[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif", "gif"
    return None


def read_picture(raw: Mapping[str, Any], key: str, path: str, reader: Reader) -> Picture | None:
    """``key``: an https URL, or a local PNG, JPEG, WebP or GIF file of at most 1 MiB."""
    where = f"{path}.{key}"
    value = reader.typed(raw, key, where, str)
    if value is None:
        return None
    if "://" in value:
        return _picture_url(value, where, reader)
    file_path = reader.path(value)
    try:
        with file_path.open("rb") as handle:
            body = handle.read(MAX_IMAGE_BYTES + 1)
    except OSError as exc:
        reader.fail(where, f"cannot read {file_path}: {exc.strerror} (a relative path is read "
                    f"from the config file's folder, {reader.base_dir})")
        return None
    if len(body) > MAX_IMAGE_BYTES:
        reader.fail(where, f"{file_path} is larger than 1 MiB; use a smaller picture "
                    "(a few hundred pixels wide is plenty)")
        return None
    kind = image_kind(body)
    if kind is None:
        svg = b"<svg" in body[:1024].lower()
        reader.fail(where, f"{file_path} is not a PNG, JPEG, WebP or GIF image"
                    + ("; SVG is refused since it can carry script: convert it to PNG"
                       if svg else ""))
        return None
    return Picture(body=body, content_type=kind[0], extension=kind[1])


def _picture_url(value: str, where: str, reader: Reader) -> Picture | None:
    try:
        parts = urlsplit(value)
        usable = (parts.scheme == "https" and bool(_HOST.fullmatch(parts.hostname or ""))
                  and not parts.username and not parts.password and parts.port != 0)
    except ValueError:
        usable = False
    if not usable or len(value) > 1000 or _UNSAFE_URL.search(value):
        reader.fail(where, f"{shown(value)} is not a usable picture: give an https:// URL "
                    "(one line, no credentials, at most 1000 characters) or a local file")
        return None
    return Picture(url=value)
