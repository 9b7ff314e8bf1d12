"""Token files: written only by their owner (0600), atomically, so a crash never leaves half."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``, mode 0600, its folder created 0700."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        os.fchmod(handle, 0o600)
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_private(path: Path) -> str | None:
    """The file's text, or None when there is no such file."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


class FileTokenVault:
    """A source's tokens in a file of their own: the ``TokenVault`` of one server (SQLite)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def where(self) -> str:
        return f"the token file {self.path}"

    async def load(self) -> str | None:
        return await asyncio.to_thread(read_private, self.path)

    async def save(self, text: str) -> None:
        await asyncio.to_thread(write_private, self.path, text)
