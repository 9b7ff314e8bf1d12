"""Where the OAuth tokens of Google and Microsoft sources live: files, or the database.

With SQLite (one server) each source keeps its tokens in its own 0600 file
(``token_file``, ``token_cache_file``), exactly as before there was a choice.
With PostgreSQL every instance needs them, so they are rows of the ``tokens``
table named ``<kind>:<source>`` (``google:work``), encrypted with the keys of
``server.secrets_key`` (Fernet, kit/secretbox.py): the first key encrypts, all
decrypt, and ``rotate`` re-encrypts every row with the first. A token is read
before the adapter needs it and written back when its library refreshed it,
so what one instance refreshed is what the others read next. Token text is
never logged, nor put into an error message.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from adapters.base import AuthExpired, TokenVault, UpstreamUnavailable
from adapters.secrets_file import FileTokenVault
from server.config.model import Config, SourceConfig
from server.config.secrets_key import missing_key, secrets_key_problems, shares_database
from server.errors import ConfigError, StoreError
from server.kit.clock import Clock, SystemClock
from server.kit.secretbox import SecretBox, Undecryptable
from server.store import Store


def token_name(source: SourceConfig) -> str:
    """The source's row in the tokens table: its kind and name (``google:work``)."""
    return f"{source.kind}:{source.name}"


def token_file(source: SourceConfig) -> Path | None:
    """The file a source keeps its tokens in with SQLite; None for kinds without any."""
    if source.google is not None:
        return source.google.token_file
    if source.microsoft is not None:
        return source.microsoft.token_cache_file
    return None


class StoreTokenVault:
    """One source's tokens, encrypted, in the database every instance shares."""

    def __init__(self, vaults: TokenVaults, name: str, source: str) -> None:
        self._vaults = vaults
        self.name = name
        self._source = source

    @property
    def where(self) -> str:
        return f"the database {self._vaults.location} (as {self.name!r}, encrypted)"

    async def load(self) -> str | None:
        try:
            stored = await self._vaults.store.stored_token(self.name)
        except StoreError as exc:
            raise self._unavailable(exc) from exc
        if stored is None:
            return None
        try:
            return self._vaults.box.decrypt(stored)
        except Undecryptable:
            kind = self.name.partition(":")[0]
            raise AuthExpired(
                f"the stored token {self.name!r} cannot be decrypted with any key of "
                "server.secrets_key: was the key replaced? Keep the old key listed after the "
                "new one until `fbproxy rotate-tokens` has run, or sign in again with "
                f"`fbproxy auth {kind} --source {self._source}`", source=self._source) from None

    async def save(self, text: str) -> None:
        try:
            await self._vaults.store.store_token(
                self.name, self._vaults.box.encrypt(text),
                now=int(self._vaults.clock.now().timestamp()))
        except StoreError as exc:
            raise self._unavailable(exc) from exc

    def _unavailable(self, exc: StoreError) -> UpstreamUnavailable:
        # To the adapter (and the sync loop and hold worker above it) the database is
        # where its tokens are: unreachable now, so the round is retried with backoff.
        return UpstreamUnavailable(f"cannot reach the tokens in the database: {exc}",
                                   source=self._source)


@dataclass(frozen=True)
class Rotation:
    rotated: int
    undecryptable: list[str]  # token names no key decrypts, left as they were


class TokenVaults:
    """Each source's ``TokenVault``: files with SQLite, the database with PostgreSQL."""

    def __init__(self, store: Store | None, box: SecretBox | None, clock: Clock) -> None:
        # store: only a shared one (PostgreSQL); None keeps the tokens in files.
        self._store = store
        self._box = box
        self.clock = clock

    @classmethod
    def for_store(cls, config: Config, store: Store, clock: Clock) -> TokenVaults:
        """The vaults for a running server or command on ``store``; a ConfigError when
        the database is shared, keeps tokens, and no key was given."""
        if not store.database.shared:
            return cls(None, None, clock)
        return cls(store, _box(config), clock)

    @property
    def in_database(self) -> bool:
        return self._store is not None

    @property
    def store(self) -> Store:
        assert self._store is not None, "only vaults in the database read the store"
        return self._store

    @property
    def box(self) -> SecretBox:
        if self._box is None:
            raise ConfigError([missing_key("the tokens in the database are encrypted with it")])
        return self._box

    @property
    def location(self) -> str:
        return self.store.database.location

    def for_source(self, source: SourceConfig) -> TokenVault | None:
        """Where ``source`` keeps its tokens; None for a kind that has none."""
        path = token_file(source)
        if path is None:
            return None
        if self._store is None:
            return FileTokenVault(path)
        return StoreTokenVault(self, token_name(source), source.name)

    def rekey(self, config: Config) -> None:
        """Take the keys of a reloaded config (ConfigError, and no change, when missing)."""
        if self._store is not None:
            self._box = _box(config)

    async def rotate(self) -> Rotation:
        """Re-encrypt every stored token with the first key, in one transaction."""
        box, failed = self.box, []

        def rotated(name: str, value: str) -> str | None:
            try:
                return box.rotate(value)
            except Undecryptable:
                failed.append(name)
                return None

        count = await self.store.rewrite_tokens(rotated, now=int(self.clock.now().timestamp()))
        return Rotation(count, failed)


def _box(config: Config) -> SecretBox | None:
    problems = secrets_key_problems(True, config.server.secrets_key,
                                    ((s.name, s.kind) for s in config.sources))
    if problems:
        raise ConfigError(problems, path=str(config.path or ""))
    key = config.server.secrets_key
    # The config checked the keys when it was read.
    return SecretBox.from_text(key) if key is not None else None


@asynccontextmanager
async def open_token_vaults(config: Config, *, clock: Clock | None = None,
                            ) -> AsyncIterator[TokenVaults]:
    """The vaults for a command that runs without a server (`fbproxy auth`,
    `fbproxy rotate-tokens`): the database is opened only when it keeps them."""
    chosen = clock or SystemClock()
    if not shares_database(config.server.database):
        yield TokenVaults(None, None, chosen)
        return
    store = await Store.open(config.server.database)
    try:
        yield TokenVaults.for_store(config, store, chosen)
    finally:
        await store.close()
