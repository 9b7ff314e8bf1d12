"""``[server] secrets_key_env`` / ``secrets_key_file``: the keys that encrypt OAuth tokens
kept in a PostgreSQL database (server/sync/tokens.py).

With SQLite the tokens stay in their own 0600 files and no key is needed. With
PostgreSQL every instance reads them from the database, so they are encrypted
there and each instance is given the key apart from the database (an
environment variable or a file, never inline next to the database URL).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from server.config.database import PostgresUrl
from server.config.reader import Reader, Secret
from server.kit.secretbox import MAKE_KEY, SecretBox

SECRETS_KEY_KEYS = {"secrets_key_env", "secrets_key_file"}
# The source kinds whose tokens (Google's refresh token, msal's cache) are stored.
TOKEN_KINDS = ("google", "microsoft")


def read_secrets_key(raw: Mapping[str, Any], reader: Reader) -> Secret | None:
    """The key material, checked to be Fernet keys (the keys themselves never shown)."""
    if "secrets_key" in raw:
        return None  # reported as an unknown key: a key inline would sit in the config file
    key = reader.secret(raw, "secrets_key", "server.secrets_key")
    if key is None:
        return None
    which = "secrets_key_env" if "secrets_key_env" in raw else "secrets_key_file"
    try:
        SecretBox.from_text(key)
    except ValueError as exc:
        reader.fail(f"server.{which}", str(exc))
        return None
    return key


def shares_database(database: Path | PostgresUrl) -> bool:
    """Whether the store is a PostgreSQL database several instances share."""
    return isinstance(database, PostgresUrl)


def secrets_key_problems(shared: bool, secrets_key: Secret | None,
                         sources: Iterable[tuple[str, str]]) -> list[str]:
    """A missing key when a ``shared`` database (PostgreSQL) keeps OAuth tokens: the
    (name, kind) of each source."""
    needing = [name for name, kind in sources if kind in TOKEN_KINDS]
    if not shared or secrets_key is not None or not needing:
        return []
    return [missing_key(f"with a PostgreSQL database the OAuth tokens of "
                        f"{', '.join(needing)} are kept in it, encrypted with this key")]


def missing_key(why: str) -> str:
    """The problem of a missing ``secrets_key``, with ``why`` it is needed and how to make one."""
    return (f"server.secrets_key_env: is required (or secrets_key_file): {why} (one or more "
            "Fernet keys, one a line or comma-separated; the first encrypts, every one "
            f"decrypts). Make one with: {MAKE_KEY}")
