"""Config validation: every error names its key path, the bad value and the fix."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from server.config import load_config, parse_config
from server.durations import format_duration, parse_duration
from server.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
SOURCE = {"name": "work", "kind": "ics", "url": "work.ics"}


def problems(raw: dict[str, Any], tmp_path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, base_dir=tmp_path)
    return caught.value.problems


def test_example_config_is_valid_and_complete() -> None:
    config = load_config(REPO / "config.example.toml")
    assert [s.name for s in config.sources] == ["work", "personal"]
    assert config.calendars[0].secret is None
    assert config.server.database == REPO / "var" / "fbproxy.sqlite3"
    assert Path(config.sources[0].url).exists()


def test_defaults(tmp_path: Path) -> None:
    config = parse_config({"sources": [SOURCE]}, base_dir=tmp_path)
    source = config.sources[0]
    assert source.poll_interval == timedelta(minutes=5)
    assert source.stale_after == timedelta(minutes=15)
    assert source.timezone == "UTC" and source.enabled
    assert source.url == str(tmp_path / "work.ics")
    assert config.server.horizon_days == 120
    assert config.server.base_url == "http://127.0.0.1:8080"


@pytest.mark.parametrize(("raw", "expected"), [
    ({"sources": [{**SOURCE, "poll_interval": "5 minutes"}]},
     'sources[0].poll_interval: \'5 minutes\' is not a duration; use e.g. "5m", "30s", "1h"'),
    ({"sources": [{**SOURCE, "poll_interval": "1s"}]}, "sources[0].poll_interval: 0:00:01 is too"),
    ({"sources": [{**SOURCE, "kind": "exchange"}]}, "sources[0].kind: 'exchange' is not a source"),
    ({"sources": [{**SOURCE, "timezone": "Mars/Olympus"}]},
     "sources[0].timezone: 'Mars/Olympus' is not an IANA time zone"),
    ({"sources": [{**SOURCE, "colour": "red"}]}, "sources[0].colour: unknown key"),
    ({"sources": [{"name": "x", "kind": "ics"}]}, "sources[0].url: is required"),
    ({"sources": [SOURCE, SOURCE]}, "sources[1].name: 'work' is used twice"),
    ({"sources": [{**SOURCE, "name": "bad name!"}]}, "sources[0].name: 'bad name!' must be"),
    ({"sources": [{**SOURCE, "url": "ftp://example.org/a.ics"}]}, "scheme 'ftp' is not supported"),
    ({"sources": [{**SOURCE, "max_bytes": "lots"}]}, "sources[0].max_bytes: 'lots' is not a size"),
    ({"sources": [{**SOURCE, "enabled": "yes"}]}, "sources[0].enabled: 'yes' is not a bool"),
    ({"sources": [{**SOURCE, "owner_emails": ["alex"]}]}, "sources[0].owner_emails:"),
    ({"server": {"listen": "localhost"}}, "server.listen: 'localhost' is not HOST:PORT"),
    ({"server": {"horizon_days": 0}}, "server.horizon_days: 0 is out of range"),
    ({"server": {"horizon_days": True}}, "server.horizon_days: True is not a int"),
    ({"server": {"base_url": "ftp://x"}}, "server.base_url: 'ftp://x' is not an http(s) URL"),
    ({"server": {"port": 1}}, "server.port: unknown key"),
    ({"sources": [SOURCE], "calendars": [{"name": "me", "sources": ["wrok"]}]},
     "calendars[0].sources[0]: 'wrok' is not the name of a source; known sources: work"),
    ({"sources": [SOURCE], "calendars": [{"name": "me", "sources": []}]},
     "calendars[0].sources: is empty"),
    ({"sources": [SOURCE], "calendars": [{"name": "me", "sources": ["work"], "secret": "short"}]},
     "calendars[0].secret: must be 16-256 URL-safe characters"),
    ({"sources": [SOURCE], "calendars": [
        {"name": "me", "sources": ["work"], "secret": "x" * 20, "secret_env": "X"}]},
     "calendars[0].secret: give only one of secret, secret_env"),
    ({"sources": [SOURCE], "calendars": [
        {"name": "me", "sources": ["work"], "secret_env": "FBPROXY_TEST_UNSET_VAR"}]},
     "calendars[0].secret_env: environment variable FBPROXY_TEST_UNSET_VAR is not set"),
    ({"sources": [SOURCE], "calendars": [
        {"name": "me", "sources": ["work"], "secret_file": "missing.secret"}]},
     "calendars[0].secret_file: cannot read"),
    ({"sources": {"name": "x"}}, "sources: must be an array of tables"),
    ({"calendar": []}, "calendar: unknown key"),
    ({"sources": [{**SOURCE, "ca_file": "nope.pem"}]}, "sources[0].ca_file: cannot use"),
    ({"sources": [{**SOURCE, "calendars": ["Work"]}]}, "sources[0].calendars: unknown key"),
])
def test_errors_name_the_key(tmp_path: Path, raw: dict[str, Any], expected: str) -> None:
    found = problems(raw, tmp_path)
    assert any(expected in p for p in found), found


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    found = problems({"server": {"timezone": "Nowhere"},
                      "sources": [{**SOURCE, "poll_interval": "soon", "kind": "x"}]}, tmp_path)
    assert len(found) == 3


def test_secrets_from_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_FEED_SECRET", "from-the-environment-123")
    secret_file = tmp_path / "feed.secret"
    secret_file.write_text("from-a-file-0123456789\n")
    secret_file.chmod(0o600)
    config = parse_config({"sources": [SOURCE], "calendars": [
        {"name": "a", "sources": ["work"], "secret_env": "MY_FEED_SECRET"},
        {"name": "b", "sources": ["work"], "secret_file": "feed.secret"},
    ]}, base_dir=tmp_path)
    assert [c.secret for c in config.calendars] == [
        "from-the-environment-123", "from-a-file-0123456789"]
    assert "from-the" not in repr(config)


def test_secret_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    secret_file = tmp_path / "feed.secret"
    secret_file.write_text("from-a-file-0123456789")
    secret_file.chmod(0o644)
    found = problems({"sources": [SOURCE], "calendars": [
        {"name": "b", "sources": ["work"], "secret_file": str(secret_file)}]}, tmp_path)
    assert any("readable by others; chmod 600" in p for p in found)


def test_systemd_credentials_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "feed").write_text("credential-secret-0123456")
    (credentials / "feed").chmod(0o440)  # systemd grants access through an ACL
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    config = parse_config({"sources": [SOURCE], "calendars": [
        {"name": "b", "sources": ["work"], "secret_file": "${CREDENTIALS_DIRECTORY}/feed"}]},
        base_dir=tmp_path)
    assert config.calendars[0].secret == "credential-secret-0123456"


def test_shared_secrets_are_refused(tmp_path: Path) -> None:
    found = problems({"sources": [SOURCE], "calendars": [
        {"name": "a", "sources": ["work"], "secret": "same-secret-0123456789"},
        {"name": "b", "sources": ["work"], "secret": "same-secret-0123456789"}]}, tmp_path)
    assert any("share a secret" in p for p in found)


def test_load_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_config(tmp_path / "nope.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[server\nlisten = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(broken)


def test_every_documented_key_exists_and_every_key_is_documented() -> None:
    from server.config import _CALENDAR_KEYS, _SERVER_KEYS, _SOURCE_KEYS

    docs = (REPO / "docs" / "configuration.md").read_text()
    example = (REPO / "config.example.toml").read_text()
    known = _SERVER_KEYS | _SOURCE_KEYS | _CALENDAR_KEYS
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", docs, re.MULTILINE))
    assert documented == known, f"documented but unknown: {documented - known}; " \
        f"undocumented: {known - documented}"
    for key in known:
        assert key in example, f"{key} is not mentioned in config.example.toml"


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30), ("5m", 300), ("1h30m", 5400), ("2d", 172800), ("1w", 604800), (" 10M ", 600)])
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text).total_seconds() == seconds
    assert parse_duration(format_duration(parse_duration(text))) == parse_duration(text)


@pytest.mark.parametrize("text", ["", "5", "m5", "5 minutes", "-5m", "1.5h"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_env_var_not_leaked_in_errors(tmp_path: Path) -> None:
    os.environ["FBPROXY_TEST_SHORT"] = "tiny"
    try:
        found = problems({"sources": [SOURCE], "calendars": [
            {"name": "a", "sources": ["work"], "secret_env": "FBPROXY_TEST_SHORT"}]}, tmp_path)
    finally:
        del os.environ["FBPROXY_TEST_SHORT"]
    assert found and not any("tiny" in p for p in found)
