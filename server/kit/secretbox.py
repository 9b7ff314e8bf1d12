"""Secrets encrypted at rest: Fernet (AES-128-CBC and HMAC-SHA256), with key rotation.

The key material is one or more Fernet keys, one a line or comma-separated.
The first encrypts; every one decrypts (MultiFernet). Rotating a key is:
put a new key first and keep the old one after it, re-encrypt everything with
the new one (``rotate``), then drop the old one.
"""

from __future__ import annotations

import re

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

# How an operator makes a key (quoted in config errors and the docs).
MAKE_KEY = ('python -c "from cryptography.fernet import Fernet; '
            'print(Fernet.generate_key().decode())"')
_SEPARATORS = re.compile(r"[\s,]+")


class Undecryptable(ValueError):
    """None of the keys decrypts this text: a wrong key, or the text was altered."""


class SecretBox:
    """Encrypts with the first key; decrypts with any."""

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ValueError("holds no key; " + _how_to_make())
        fernets = []
        for number, key in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(key.encode("ascii")))
            except (ValueError, UnicodeEncodeError):
                # The key itself is never repeated back: it is a secret.
                raise ValueError(f"key {number} of {len(keys)} is not a Fernet key (32 bytes "
                                 f"in URL-safe base64, 44 characters); "
                                 f"{_how_to_make()}") from None
        self._fernet = MultiFernet(fernets)
        self.key_count = len(keys)

    @classmethod
    def from_text(cls, text: str) -> SecretBox:
        """Keys one a line or separated by commas (an environment variable has one line)."""
        return cls([key for key in _SEPARATORS.split(text) if key])

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError) as exc:
            raise Undecryptable("no key decrypts it") from exc

    def rotate(self, ciphertext: str) -> str:
        """The same plaintext encrypted with the first key (whichever key encrypted it)."""
        try:
            return self._fernet.rotate(ciphertext.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeError) as exc:
            raise Undecryptable("no key decrypts it") from exc


def _how_to_make() -> str:
    return f"make one with: {MAKE_KEY}"
