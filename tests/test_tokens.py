"""OAuth tokens in the store (encrypted, rotated) with PostgreSQL, in files with SQLite.

`fbproxy auth` and `fbproxy rotate-tokens` are run through the functions the
console script calls once it has read its config: until ``[server] database``
takes a PostgreSQL URL in the config file (the config half of issue 21), a
config file cannot point the console script at PostgreSQL.
"""

from __future__ import annotations

import argparse
import base64
import json
import stat
import threading
import urllib.request
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from adapters.base import AuthExpired
from adapters.google import READ_SCOPE
from adapters.secrets_file import FileTokenVault
from server.cli import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, _authorize, _rotate_tokens
from server.config.database import PostgresUrl
from server.config.model import Config, Secret
from server.config.secrets_key import secrets_key_problems
from server.errors import ConfigError
from server.kit.secretbox import MAKE_KEY, SecretBox, Undecryptable
from server.runtime import open_runtime
from server.store import Store
from server.sync.tokens import TokenVaults, open_token_vaults
from tests.fake_google import FakeGoogle
from tests.fake_microsoft import FakeMicrosoft


def fernet_key(seed: bytes) -> str:
    return base64.urlsafe_b64encode(seed.ljust(32, b".")[:32]).decode()


KEY_OLD = fernet_key(b"the old key of the test suite")
KEY_NEW = fernet_key(b"the new key of the test suite")
KEY_OTHER = fernet_key(b"a key nobody configured")
PLAINTEXT = '{"refresh_token": "1//plain-refresh-token-never-stored-in-clear"}'


def google_raw(name: str = "g", **extra: Any) -> dict[str, Any]:
    return {"name": name, "kind": "google", "client_id": "id.apps.googleusercontent.com",
            "client_secret": "fake-client-secret", **extra}


def on_postgres(config: Config, url: str, keys: str | None) -> Config:
    """``config`` with its store on PostgreSQL and these keys (what the config file will say)."""
    server = replace(config.server, database=PostgresUrl(url),
                     secrets_key=Secret(keys) if keys is not None else None)
    return replace(config, server=server)




# -- keys -------------------------------------------------------------------------------------


def test_keys_one_a_line_or_comma_separated_the_first_encrypts() -> None:
    both = SecretBox.from_text(f"{KEY_NEW}\n{KEY_OLD}\n")
    assert both.key_count == 2
    assert SecretBox.from_text(f" {KEY_NEW}, {KEY_OLD} ").key_count == 2
    written_before = SecretBox.from_text(KEY_OLD).encrypt("text")
    assert both.decrypt(written_before) == "text", "an old key still decrypts"
    written_now = both.encrypt("text")
    assert SecretBox.from_text(KEY_NEW).decrypt(written_now) == "text", "the first encrypts"
    with pytest.raises(Undecryptable):
        SecretBox.from_text(KEY_OLD).decrypt(written_now)
    rotated = both.rotate(written_before)
    assert SecretBox.from_text(KEY_NEW).decrypt(rotated) == "text"


def test_a_bad_key_is_named_by_its_place_never_shown() -> None:
    with pytest.raises(ValueError) as caught:
        SecretBox.from_text(f"{KEY_NEW},not-a-fernet-key-at-all")
    message = str(caught.value)
    assert "key 2 of 2 is not a Fernet key" in message and MAKE_KEY in message
    assert "not-a-fernet-key-at-all" not in message and KEY_NEW not in message
    with pytest.raises(ValueError, match="holds no key"):
        SecretBox.from_text(" \n, ")


def test_the_config_reads_the_keys_from_a_variable_or_a_file(make_config, tmp_path,
                                                             monkeypatch) -> None:
    monkeypatch.setenv("FBPROXY_TEST_KEYS", f"{KEY_NEW},{KEY_OLD}")
    config = make_config([google_raw()], secrets_key_env="FBPROXY_TEST_KEYS")
    assert config.server.secrets_key == f"{KEY_NEW},{KEY_OLD}"
    assert KEY_NEW not in repr(config.server), "kept out of reprs like every secret"
    key_file = tmp_path / "fbproxy.keys"
    key_file.write_text(f"{KEY_NEW}\n{KEY_OLD}\n")
    key_file.chmod(0o600)
    config = make_config([google_raw()], secrets_key_file=str(key_file))
    assert SecretBox.from_text(str(config.server.secrets_key)).key_count == 2

    monkeypatch.setenv("FBPROXY_TEST_KEYS", "swordfish")
    with pytest.raises(ConfigError) as caught:
        make_config([google_raw()], secrets_key_env="FBPROXY_TEST_KEYS")
    assert "server.secrets_key_env: key 1 of 1 is not a Fernet key" in caught.value.report()
    assert "swordfish" not in caught.value.report()
    with pytest.raises(ConfigError) as caught:
        make_config([google_raw()], secrets_key=KEY_NEW)
    assert "server.secrets_key: unknown key" in caught.value.report(), \
        "never inline: the config file would hold the key next to the database URL"


def test_postgresql_with_oauth_sources_needs_a_key() -> None:
    [problem] = secrets_key_problems(True, None, [("g", "google"), ("cal", "ics"),
                                                  ("o", "microsoft")])
    assert problem.startswith("server.secrets_key_env: is required (or secrets_key_file)")
    assert "OAuth tokens of g, o" in problem and MAKE_KEY in problem
    assert secrets_key_problems(False, None, [("g", "google")]) == [], "SQLite: files"
    assert secrets_key_problems(True, None, [("cal", "ics")]) == [], "no tokens to keep"
    assert secrets_key_problems(True, Secret(KEY_NEW), [("g", "google")]) == []


@pytest.mark.postgres
async def test_serve_refuses_to_start_without_the_key(make_config, postgres_url,
                                                      clock) -> None:
    config = on_postgres(make_config([google_raw()]), postgres_url, None)
    with pytest.raises(ConfigError) as caught:
        async with open_runtime(config, clock=clock):
            pass
    report = caught.value.report()
    assert "server.secrets_key_env: is required" in report and MAKE_KEY in report


# -- the vault --------------------------------------------------------------------------------


async def test_the_vault_round_trip_is_encrypted_at_rest(store, make_config, clock) -> None:
    source = make_config([google_raw()]).sources[0]
    vaults = TokenVaults(store, SecretBox.from_text(KEY_NEW), clock)
    vault = vaults.for_source(source)
    assert vault is not None and await vault.load() is None, "nothing stored yet"
    await vault.save(PLAINTEXT)
    assert await vault.load() == PLAINTEXT
    raw = await store.stored_token("google:g")
    assert raw is not None and raw != PLAINTEXT and "plain-refresh-token" not in raw
    assert SecretBox.from_text(KEY_NEW).decrypt(raw) == PLAINTEXT
    await vault.save("replaced")
    assert await vault.load() == "replaced"
    assert await store.token_names() == ["google:g"]
    assert "encrypted" in vault.where and "'google:g'" in vault.where


async def test_with_sqlite_the_tokens_stay_in_their_files(tmp_path, make_config, clock) -> None:
    config = make_config([google_raw(), {"name": "cal", "kind": "ics", "url": "cal.ics"}],
                         calendars=[])
    store = await Store.open(config.server.database)
    try:
        vaults = TokenVaults.for_store(config, store, clock)
        google, ics = config.sources
        vault = vaults.for_source(google)
        assert isinstance(vault, FileTokenVault) and vault.path == google.google.token_file
        assert vaults.for_source(ics) is None
        await vault.save(PLAINTEXT)
        assert stat.S_IMODE(vault.path.stat().st_mode) == 0o600
        assert vault.path.read_text() == PLAINTEXT, "a file as before: no key, no database"
        assert await store.token_names() == []
    finally:
        await store.close()


@pytest.mark.postgres
async def test_a_wrong_key_is_an_auth_error_naming_the_source(make_config, postgres_url, clock,
                                                              serve) -> None:
    config = make_config([google_raw()])
    async with open_token_vaults(on_postgres(config, postgres_url, KEY_OTHER)) as vaults:
        await vaults.for_source(config.sources[0]).save(PLAINTEXT)
    wrong = on_postgres(config, postgres_url, KEY_NEW)
    async with open_token_vaults(wrong) as vaults:
        with pytest.raises(AuthExpired) as caught:
            await vaults.for_source(config.sources[0]).load()
    message = str(caught.value)
    assert caught.value.source == "g" and message.startswith("g: the stored token 'google:g' "
                                                             "cannot be decrypted")
    assert "fbproxy auth google --source g" in message and "plain-refresh" not in message
    # The running server: a failed round that asks for re-authorization, not a crash.
    _client, runtime = await serve(wrong)
    [outcome] = await runtime.sync.run_all_once()
    assert not outcome.ok and "cannot be decrypted" in (outcome.error or "")
    assert (await runtime.store.source(runtime.source_ids["g"])).needs_reauth


# -- rotation ---------------------------------------------------------------------------------


@pytest.mark.postgres
async def test_rotate_tokens_reencrypts_with_the_first_key(make_config, postgres_url,
                                                           capsys) -> None:
    config = make_config([google_raw("g"), google_raw("h")])
    old = on_postgres(config, postgres_url, KEY_OLD)
    async with open_token_vaults(old) as vaults:
        for source in config.sources:
            await vaults.for_source(source).save(f"{PLAINTEXT} of {source.name}")

    both = on_postgres(config, postgres_url, f"{KEY_NEW}\n{KEY_OLD}")
    async with open_token_vaults(both) as vaults:
        assert await vaults.for_source(config.sources[0]).load() == f"{PLAINTEXT} of g", \
            "the old key, second now, still decrypts"
    assert await _rotate_tokens(both) == EXIT_OK
    output = capsys.readouterr().out
    assert "re-encrypted 2 token(s) with the first of the 2 key(s)" in output
    assert "the others can now be removed" in output

    async with open_token_vaults(on_postgres(config, postgres_url, KEY_NEW)) as vaults:
        assert [await vaults.for_source(s).load() for s in config.sources] == \
            [f"{PLAINTEXT} of g", f"{PLAINTEXT} of h"], "only the new key is needed now"
    async with open_token_vaults(old) as vaults:
        with pytest.raises(AuthExpired):
            await vaults.for_source(config.sources[0]).load()


@pytest.mark.postgres
async def test_rotate_tokens_reports_what_no_key_opens(make_config, postgres_url,
                                                       capsys) -> None:
    config = make_config([google_raw("g"), google_raw("h")])
    for source, key in zip(config.sources, (KEY_OTHER, KEY_OLD), strict=True):
        async with open_token_vaults(on_postgres(config, postgres_url, key)) as vaults:
            await vaults.for_source(source).save(PLAINTEXT)
    assert await _rotate_tokens(on_postgres(config, postgres_url, f"{KEY_NEW},{KEY_OLD}")) \
        == EXIT_FAILED
    captured = capsys.readouterr()
    assert "re-encrypted 1 token(s)" in captured.out
    assert "no key decrypts google:g: left as they were" in captured.err


async def test_rotate_tokens_with_sqlite_has_nothing_to_do(make_config, capsys) -> None:
    assert await _rotate_tokens(make_config([google_raw()])) == EXIT_CONFIG
    assert "nothing to rotate" in capsys.readouterr().err


# -- `fbproxy auth`, and instances sharing what one refreshed ---------------------------------


class LoopbackBrowser:
    """webbrowser's stand-in: opens the consent page in a thread, as a user's browser would
    while `fbproxy auth` waits on its redirect."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []

    def open(self, url: str, new: int = 0, autoraise: bool = True) -> bool:
        def visit() -> None:
            with urllib.request.urlopen(url, timeout=30) as answer:  # noqa: S310 - loopback
                answer.read()
        thread = threading.Thread(target=visit)
        thread.start()
        self.threads.append(thread)
        return True


def google_source(fake: FakeGoogle) -> dict[str, Any]:
    return {"name": "g", "kind": "google", "client_id": fake.client_id,
            "client_secret": fake.client_secret, "api_endpoint": fake.api_endpoint,
            "token_uri": fake.token_uri, "auth_uri": fake.auth_uri}


async def auth(config: Config, provider: str) -> int:
    """What `fbproxy auth PROVIDER --source NAME` runs once it has read the config."""
    [source] = [s for s in config.sources if s.kind == provider]
    return await _authorize(config, source, argparse.Namespace(
        provider=provider, no_browser=False, port=0))


@pytest.mark.postgres
async def test_auth_google_stores_the_token_in_the_database_for_every_instance(
        fake_google: FakeGoogle, make_config: Callable[..., Config], postgres_url: str,
        serve: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    google = fake_google
    google.add_calendar("alex@example.org", "Alex", primary=True)
    google.put_event("alex@example.org", {
        "id": "e1", "start": {"dateTime": "2026-11-26T09:00:00Z"},
        "end": {"dateTime": "2026-11-26T10:00:00Z"}})
    browser = LoopbackBrowser()
    monkeypatch.setattr("webbrowser.get", lambda _name=None: browser)
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # the fake speaks http
    config = on_postgres(make_config([google_source(google)]), postgres_url, KEY_NEW)

    assert await auth(config, "google") == EXIT_OK
    output = capsys.readouterr().out
    assert "authorized: the token is in the database" in output
    assert "(as 'google:g', encrypted); every instance's next sync uses it" in output
    assert not config.sources[0].google.token_file.exists(), "no file with PostgreSQL"
    async with open_token_vaults(config) as vaults:
        stored = json.loads(await vaults.for_source(config.sources[0]).load())
    assert stored["scopes"] == [READ_SCOPE] and stored["refresh_token"].startswith("1//")

    _client_a, first = await serve(config)
    _client_b, second = await serve(config)
    assert [o.ok for o in await first.sync.run_all_once()] == [True]
    assert [o.ok for o in await second.sync.run_all_once()] == [True]

    # The account is authorized again (the old grant revoked): the instance still holding
    # the old token finds the new one in the database and its round goes through.
    google.revoke_refresh_tokens()
    assert await auth(config, "google") == EXIT_OK
    [outcome] = await second.sync.run_all_once()
    assert outcome.ok, outcome.error
    for thread in browser.threads:
        thread.join(timeout=30)


def microsoft_source(fake: FakeMicrosoft) -> dict[str, Any]:
    return {"name": "o", "kind": "microsoft", "tenant": fake.tenant, "client_id": fake.client_id,
            "graph_url": fake.graph_url, "login_url": fake.login_url}


def refresh_tokens(cache_text: str) -> set[str]:
    return {entry["secret"] for entry in json.loads(cache_text).get("RefreshToken", {}).values()}


@pytest.mark.postgres
async def test_auth_microsoft_and_a_refreshed_cache_reach_every_instance(
        fake_microsoft: FakeMicrosoft, make_config: Callable[..., Config], postgres_url: str,
        serve: Any, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
) -> None:
    fake = fake_microsoft
    fake.approve_at_once = True  # the user signs in before msal first asks
    fake.put_event({"id": "a", "subject": "Private", "showAs": "busy",
                    "start": {"dateTime": "2026-11-26T09:00:00", "timeZone": "UTC"},
                    "end": {"dateTime": "2026-11-26T10:00:00", "timeZone": "UTC"}})
    config = on_postgres(make_config([microsoft_source(fake)]), postgres_url, KEY_NEW)
    source = config.sources[0]

    assert await auth(config, "microsoft") == EXIT_OK
    output = capsys.readouterr().out
    assert "microsoft.com/devicelogin" in output
    assert "signed in as alex@contoso.example: the tokens are in the database" in output
    assert "(as 'microsoft:o', encrypted); every instance's next sync uses them" in output
    assert not source.microsoft.token_cache_file.exists(), "no file with PostgreSQL"

    async def stored_refresh_tokens() -> set[str]:
        async with open_token_vaults(config) as vaults:
            return refresh_tokens(await vaults.for_source(source).load())

    signed_in = await stored_refresh_tokens()
    _client_a, first = await serve(config)
    _client_b, second = await serve(config)
    assert [o.ok for o in await first.sync.run_all_once()] == [True]
    assert [o.ok for o in await second.sync.run_all_once()] == [True]

    # Graph refuses the access tokens: the first instance refreshes, and msal's new cache
    # (a new refresh token) goes to the database ...
    fake.expire_access_tokens()
    assert [o.ok for o in await first.sync.run_all_once()] == [True]
    refreshed = await stored_refresh_tokens()
    assert refreshed and refreshed != signed_in
    # ... where the second instance reads it before its own refresh.
    assert [o.ok for o in await second.sync.run_all_once()] == [True]
    used = [r["refresh_token"] for r in fake.token_requests if "refresh_token" in r]
    assert used[-1] in refreshed
    logged = caplog.text
    assert not any(token in logged for token in signed_in | refreshed), "tokens never logged"


async def test_tokens_are_stored_in_one_row_per_source_kind_and_name(store, clock) -> None:
    """The key naming: ``<kind>:<source>``; a rewrite is one transaction over all rows."""
    await store.store_token("google:work", "v1", now=1)
    await store.store_token("microsoft:office", "v2", now=1)
    await store.store_token("google:work", "v3", now=2)
    assert await store.token_names() == ["google:work", "microsoft:office"]
    assert await store.rewrite_tokens(
        lambda name, value: value.upper() if name.startswith("google") else None, now=3) == 1
    assert [await store.stored_token(n) for n in ("google:work", "microsoft:office")] == \
        ["V3", "v2"]
    assert await store.stored_token("google:nothing") is None
