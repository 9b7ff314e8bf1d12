"""Config validation: every error names its key path, the bad value and the fix."""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from datetime import date, time, timedelta
from pathlib import Path
from typing import Any

import pytest

from server.config.model import (
    BookingPageConfig,
    HoldTargetConfig,
    QuestionConfig,
    load_config,
    parse_config,
)
from server.config.page_look import Location, PageLookConfig
from server.errors import ConfigError
from server.kit.durations import format_duration, parse_duration

REPO = Path(__file__).resolve().parents[1]
SOURCE = {"name": "work", "kind": "ics", "url": "work.ics"}


def problems(raw: dict[str, Any], tmp_path: Path, *, check_files: bool = False) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, base_dir=tmp_path, check_files=check_files)
    return caught.value.problems


def test_example_config_is_valid_and_complete() -> None:
    config = load_config(REPO / "config.example.toml")
    assert [s.name for s in config.sources] == ["work", "personal"]
    assert config.calendars[0].secret is None
    assert config.server.database == REPO / "var" / "fbproxy.sqlite3"
    assert Path(config.sources[0].url).exists()
    # The example books too: /book/intro-call works on a fresh checkout.
    assert [page.slug for page in config.booking_pages] == ["intro-call"]
    assert config.booking_pages[0].hold_target == {}
    assert config.server.rate_limit_bookings is not None


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
    ({"sources": [{**SOURCE, "name": ""}]}, "sources[0].name: '' must be"),
    ({"sources": [{**SOURCE, "name": "work\n"}]}, "sources[0].name: 'work\\n' must be"),
    ({"sources": [SOURCE], "calendars": [{"name": "me", "sources": [{"x": 1}]}]},
     "calendars[0].sources[0]: {'x': 1} is not the name of a source"),
])
def test_errors_name_the_key(tmp_path: Path, raw: dict[str, Any], expected: str) -> None:
    found = problems(raw, tmp_path)
    assert any(expected in p for p in found), found


BASE_FOR_KEYS: dict[str, Any] = {"sources": [SOURCE], "calendars": [
    {"name": "alex", "sources": ["work"]}]}
PAGE_FOR_KEYS: dict[str, Any] = {"slug": "intro", "title": "Intro", "hosts": ["alex"],
                                 "duration": "30m"}


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


def _documented_keys() -> dict[str, set[str]]:
    """Each heading of docs/configuration.md -> the keys its table documents."""
    docs = (REPO / "docs" / "configuration.md").read_text()
    sections: dict[str, set[str]] = {}
    heading = ""
    for line in docs.splitlines():
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        elif match := re.match(r"^\| `([a-z_]+)` \|", line):
            sections.setdefault(heading, set()).add(match.group(1))
    return sections


def test_every_documented_key_exists_and_every_key_is_documented() -> None:
    from server.config.alerts import ALERT_KEYS
    from server.config.google import GOOGLE_KEYS
    from server.config.mail import MAIL_KEYS
    from server.config.microsoft import MICROSOFT_KEYS
    from server.config.model import _CALENDAR_KEYS, _SERVER_KEYS, _SOURCE_KEYS, _SUBSCRIBER_KEYS
    from server.config.pages import _BOOKING_PAGE_KEYS, _HOLD_TARGET_KEYS, _QUESTION_KEYS

    expected = {
        "`[server]`": _SERVER_KEYS,
        "`[[sources]]`": _SOURCE_KEYS - GOOGLE_KEYS - MICROSOFT_KEYS,
        "Google sources": GOOGLE_KEYS,
        "Microsoft 365 sources": MICROSOFT_KEYS,
        "`[[calendars]]`": _CALENDAR_KEYS,
        "`[[calendars.subscribers]]`": _SUBSCRIBER_KEYS,
        "`[[booking_pages]]`": _BOOKING_PAGE_KEYS,
        "`hold_target`": _HOLD_TARGET_KEYS,
        "`[[booking_pages.questions]]`": _QUESTION_KEYS,
        "`[[alerts]]`": ALERT_KEYS,
        "`[mail]`": MAIL_KEYS,
    }
    documented = _documented_keys()
    assert documented.keys() == expected.keys()
    for heading, known in expected.items():
        found = documented[heading]
        assert found == known, f"{heading}: documented but unknown: {found - known}; " \
            f"undocumented: {known - found}"
    example = (REPO / "config.example.toml").read_text()
    for key in set().union(*expected.values()):
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


def test_failed_booking_attempts_have_their_own_rate(tmp_path: Path) -> None:
    from server.kit.ratelimit import Rate

    server = parse_config({}, base_dir=tmp_path).server
    assert server.rate_limit_bookings == Rate(10, timedelta(hours=1))
    assert server.rate_limit_failed_bookings == Rate(30, timedelta(hours=1))
    server = parse_config({"server": {"rate_limit_failed_bookings": "off"}},
                          base_dir=tmp_path).server
    assert server.rate_limit_failed_bookings is None
    assert problems({"server": {"rate_limit_failed_bookings": "lots"}}, tmp_path) == [
        "server.rate_limit_failed_bookings: 'lots' is not a rate; use e.g. \"10/1h\" (10 per "
        "hour) or \"off\""]


@pytest.mark.parametrize(("raw", "expected"), [
    ({"server": {"lisen": "127.0.0.1:8080"}}, 'server.lisen: unknown key; did you mean "listen"?'),
    ({"sorces": []}, 'sorces: unknown key; did you mean "sources"?'),
    ({"sources": [{**SOURCE, "pollinterval": "5m"}]},
     'sources[0].pollinterval: unknown key; did you mean "poll_interval"?'),
    ({"sources": [SOURCE], "calendars": [{"name": "me", "sources": ["work"], "secrett": "x"}]},
     'calendars[0].secrett: unknown key; did you mean "secret"?'),
    ({"sources": [SOURCE], "calendars": [
        {"name": "me", "sources": ["work"], "subscribers": [{"name": "a", "detial": "busy"}]}]},
     'calendars[0].subscribers[0].detial: unknown key; did you mean "detail"?'),
    ({**BASE_FOR_KEYS, "booking_pages": [{**PAGE_FOR_KEYS, "max_day_ahead": 3}]},
     'booking_pages[0].max_day_ahead: unknown key; did you mean "max_days_ahead"?'),
    ({"alerts": [{"name": "a", "kind": "webhook", "url": "https://example.org", "secrt": "x"}]},
     'alerts[0].secrt: unknown key; did you mean "secret"?'),
])
def test_unknown_keys_suggest_the_close_one(tmp_path: Path, raw: dict[str, Any],
                                            expected: str) -> None:
    assert expected in problems(raw, tmp_path)


def test_a_key_of_another_kind_says_which_kinds_take_it(tmp_path: Path) -> None:
    found = problems({"sources": [
        {**SOURCE, "calendars": ["Work"]},
        {"name": "dav", "kind": "caldav", "url": "https://dav.example.org/", "max_bytes": 1}],
        "alerts": [{"name": "a", "kind": "webhook", "url": "https://example.org", "to": []}]},
        tmp_path)
    assert found == [
        'sources[0].calendars: unknown key here; only "caldav", "google" or "microsoft" '
        "sources take it",
        'sources[1].max_bytes: unknown key here; only "ics" sources take it',
        'alerts[0].to: unknown key here; only "email" alerts take it']


def test_unknown_keys_list_the_valid_ones_when_none_is_close(tmp_path: Path) -> None:
    found = problems({"sources": [SOURCE], "calendars": [
        {"name": "me", "sources": ["work"], "colour": "red"}]}, tmp_path)
    assert found == ["calendars[0].colour: unknown key; valid keys here are avatar, display_name, "
                     "email, name, secret, secret_env, secret_file, sources, stale_policy, "
                     "subscribers"]


def test_local_files_are_checked_only_when_asked(tmp_path: Path) -> None:
    raw = {"sources": [{**SOURCE, "url": "calendars/work.ics"}]}
    config = parse_config(raw, base_dir=tmp_path)  # serve: a sync error, not a refusal
    assert config.sources[0].url == str(tmp_path / "calendars" / "work.ics")
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, base_dir=tmp_path, check_files=True)
    assert caught.value.problems == [
        f"sources[0].url: cannot read {tmp_path}/calendars/work.ics: No such file or directory "
        f"(a relative path is read from the config file's folder, {tmp_path})"]
    (tmp_path / "calendars").mkdir()
    (tmp_path / "calendars" / "work.ics").write_text("BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n")
    assert parse_config(raw, base_dir=tmp_path, check_files=True).sources


@pytest.mark.parametrize(("source", "expected"), [
    # An absolute path needs no word on where relative ones are read from.
    ({"url": "file:///nowhere/work.ics"},
     "sources[0].url: cannot read /nowhere/work.ics: No such file or directory"),
    ({"url": "/nowhere/work.ics"},
     "sources[0].url: cannot read /nowhere/work.ics: No such file or directory"),
    ({"url": "gone.ics", "enabled": False}, None),  # not read, so not checked
    ({"url": "https://example.org/work.ics"}, None),
])
def test_which_source_files_are_checked(tmp_path: Path, source: dict[str, Any],
                                        expected: str | None) -> None:
    raw = {"sources": [{**SOURCE, **source}]}
    if expected is None:
        parse_config(raw, base_dir=tmp_path, check_files=True)
        return
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, base_dir=tmp_path, check_files=True)
    assert caught.value.problems == [expected]


def test_a_folder_is_not_a_calendar_file(tmp_path: Path) -> None:
    (tmp_path / "calendars").mkdir()
    (found,) = problems({"sources": [{**SOURCE, "url": "calendars"}]}, tmp_path,
                        check_files=True)
    assert found.startswith(f"sources[0].url: cannot read {tmp_path}/calendars: Is a directory")


def test_the_database_and_token_files_must_be_writable(tmp_path: Path) -> None:
    (tmp_path / "work.ics").write_text("BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n")
    (tmp_path / "plain-file").write_text("")
    microsoft = {"name": "m365", "kind": "microsoft", "client_id": "app",
                 "token_cache_file": "/dev/null/tokens.json"}
    raw = {"server": {"database": "plain-file/db/fbproxy.sqlite3"},
           "sources": [SOURCE, microsoft]}
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, base_dir=tmp_path, check_files=True)
    assert caught.value.problems == [
        f"server.database: cannot create {tmp_path}/plain-file/db/fbproxy.sqlite3: "
        f"{tmp_path}/plain-file is not a folder (a relative path is read from the config "
        f"file's folder, {tmp_path})",
        "sources[1].token_cache_file: cannot create /dev/null/tokens.json: /dev/null is not a "
        "folder"]
    # Missing folders are fine: fbproxy creates them.
    raw["server"] = {"database": "var/state/fbproxy.sqlite3"}
    del microsoft["token_cache_file"]
    assert parse_config(raw, base_dir=tmp_path, check_files=True).server.database == \
        tmp_path / "var" / "state" / "fbproxy.sqlite3"


# -- booking pages ---------------------------------------------------------------------------

CALDAV = {"name": "nextcloud", "kind": "caldav", "url": "https://cloud.example.org/dav",
          "hold_calendar": "Personal"}
BASE: dict[str, Any] = {
    "server": {"timezone": "Europe/Berlin"},
    "sources": [SOURCE, CALDAV, {"name": "rooms", "kind": "ics", "url": "rooms.ics"}],
    "calendars": [{"name": "alex", "sources": ["work", "nextcloud"]},
                  {"name": "sam", "sources": ["work"]},
                  {"name": "room-1", "sources": ["rooms"]}],
}
PAGE: dict[str, Any] = {"slug": "intro", "title": "Intro call", "hosts": ["alex"],
                        "duration": "30m"}


def page(tmp_path: Path, **keys: Any) -> BookingPageConfig:
    config = parse_config({**BASE, "booking_pages": [{**PAGE, **keys}]}, base_dir=tmp_path)
    return config.booking_pages[0]


def page_problems(tmp_path: Path, *pages: dict[str, Any]) -> list[str]:
    return problems({**BASE, "booking_pages": list(pages)}, tmp_path)


FULL_PAGE = """
[[booking_pages]]
slug = "team-demo"
title = "Product demo"
description = "Two of us show you around.\\nBring questions."
hosts = ["alex", "sam"]
mode = "round_robin"
resources = ["room-1"]
duration = ["45m", "30m", "1h30m"]
slot_step = "15m"
timezone = "America/New_York"
buffer_before = "5m"
buffer_after = "10m"
minimum_notice = "1d"
max_days_ahead = 30
daily_limit = 3
tentative_blocks = false
hold_title = "Demo with {guest_name} <{guest_email}> ({host}) {{x}}"
hold_status = "confirmed"
video_link = "https://meet.jit.si/fbproxy-{random}-{booking_id}"
location = "address: Main Street 1, Berlin"
accent_color = "#FF6600"
embed_origins = ["https://www.example.org", "https://Shop.Example.com:8443/"]

[booking_pages.hours]
mon = ["13:00-17:00", "09:00-12:00"]
wed = ["09:00-12:00", "12:00-13:00"]
sat = ["20:00-24:00"]
sun = []

[booking_pages.date_overrides]
2026-12-24 = []
"2026-12-23" = ["10:00-11:00", "00:00-02:00"]

[booking_pages.hold_target]
alex = { source = "nextcloud" }
sam = { source = "nextcloud", calendar = "/dav/calendars/sam/work/" }

[[booking_pages.questions]]
name = "company"
label = "Company"
required = true
max_length = 100

[[booking_pages.questions]]
name = "agenda_2"
label = "What should we show?"
kind = "textarea"
"""


def test_full_booking_page(tmp_path: Path) -> None:
    raw = {**BASE, **tomllib.loads(FULL_PAGE)}
    config = parse_config(raw, base_dir=tmp_path)
    result = config.booking_pages[0]
    assert config.booking_page("team-demo") is result and config.booking_page("x") is None
    assert result == BookingPageConfig(
        slug="team-demo",
        title="Product demo",
        description="Two of us show you around.\nBring questions.",
        hosts=("alex", "sam"),
        mode="round_robin",
        resources=("room-1",),
        durations=(timedelta(minutes=45), timedelta(minutes=30), timedelta(minutes=90)),
        slot_step=timedelta(minutes=15),
        timezone="America/New_York",
        weekly_hours={
            0: ((time(9), time(12)), (time(13), time(17))),
            1: (),
            2: ((time(9), time(13)),),  # touching ranges are joined
            3: (), 4: (),
            5: ((time(20), time(0)),),  # "24:00": midnight at the day's end
            6: (),
        },
        date_overrides={
            date(2026, 12, 23): ((time(0), time(2)), (time(10), time(11))),
            date(2026, 12, 24): (),
        },
        buffer_before=timedelta(minutes=5),
        buffer_after=timedelta(minutes=10),
        minimum_notice=timedelta(days=1),
        max_days_ahead=30,
        daily_limit=3,
        tentative_blocks=False,
        hold_target={
            "alex": HoldTargetConfig(source="nextcloud", calendar="Personal"),
            "sam": HoldTargetConfig(source="nextcloud", calendar="/dav/calendars/sam/work/"),
        },
        hold_title="Demo with {guest_name} <{guest_email}> ({host}) {{x}}",
        hold_status="confirmed",
        video_link="https://meet.jit.si/fbproxy-{random}-{booking_id}",
        questions=(
            QuestionConfig(name="company", label="Company", required=True, max_length=100),
            QuestionConfig(name="agenda_2", label="What should we show?", kind="textarea"),
        ),
        look=PageLookConfig(location=Location("address", "Main Street 1, Berlin"),
                            accent_color="#ff6600",
                            embed_origins=("https://www.example.org",
                                           "https://shop.example.com:8443")),
    )
    assert list(result.date_overrides) == [date(2026, 12, 23), date(2026, 12, 24)]
    assert result.hours_on(date(2026, 12, 24)) == ()
    assert result.hours_on(date(2026, 12, 21)) == result.weekly_hours[0]  # a Monday
    assert str(result.zone) == "America/New_York"


def test_booking_page_defaults(tmp_path: Path) -> None:
    result = page(tmp_path)
    assert result == BookingPageConfig(
        slug="intro", title="Intro call", hosts=("alex",), durations=(timedelta(minutes=30),),
        slot_step=timedelta(minutes=30), timezone="Europe/Berlin")
    assert result.description == "" and result.mode == "collective" and result.resources == ()
    nine_to_five = ((time(9), time(17)),)
    assert result.weekly_hours == {0: nine_to_five, 1: nine_to_five, 2: nine_to_five,
                                   3: nine_to_five, 4: nine_to_five, 5: (), 6: ()}
    assert result.date_overrides == {}
    assert result.buffer_before == result.buffer_after == timedelta(0)
    assert result.minimum_notice == timedelta(hours=4)
    assert result.max_days_ahead == 60 and result.daily_limit is None
    assert result.tentative_blocks is True
    assert result.hold_target == {} and result.questions == ()
    assert result.hold_title == "{title}: {guest_name}" and result.hold_status == "tentative"
    assert result.video_link is None
    assert page(tmp_path, duration=["1h", "20m"]).slot_step == timedelta(minutes=20)
    assert page(tmp_path, hours={"tue": ["10:00-11:00"]}).weekly_hours[0] == ()


def test_booking_page_is_frozen_and_hashable(tmp_path: Path) -> None:
    result = page(tmp_path, hold_target={"alex": {"source": "nextcloud"}})
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.slug = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        result.weekly_hours[5] = ()  # type: ignore[index]
    with pytest.raises(TypeError):
        result.hold_target["sam"] = result.hold_target["alex"]  # type: ignore[index]
    assert hash(result) == hash(page(tmp_path, hold_target={"alex": {"source": "nextcloud"}}))


def test_max_days_ahead_stays_within_the_horizon(tmp_path: Path) -> None:
    raw = {**BASE, "server": {"horizon_days": 30}, "booking_pages": [PAGE]}
    assert parse_config(raw, base_dir=tmp_path).booking_pages[0].max_days_ahead == 30
    found = problems({**raw, "booking_pages": [{**PAGE, "max_days_ahead": 31}]}, tmp_path)
    assert found == ["booking_pages[0].max_days_ahead: 31 reaches past server.horizon_days (30), "
                     "beyond which busy time is not known; lower it or raise "
                     "server.horizon_days"]


BAD_PAGES: list[tuple[dict[str, Any], str]] = [
    ({"slug": "Intro"}, 'booking_pages[0].slug: "Intro" must be 1-64 lowercase letters'),
    ({"slug": "-intro"}, 'booking_pages[0].slug: "-intro" must be'),
    ({"slug": "a" * 65}, f'booking_pages[0].slug: "{"a" * 65}" must be'),
    ({"slug": ""}, 'booking_pages[0].slug: "" must be'),
    ({"slug": "intro\n"}, 'booking_pages[0].slug: "intro\\n" must be'),  # $ matched before \n
    ({"slug": None}, "booking_pages[0].slug: is required"),
    ({"title": None}, "booking_pages[0].title: is required"),
    ({"title": " "}, "booking_pages[0].title: is empty"),
    ({"title": "x" * 201}, "booking_pages[0].title: is 201 characters long; use at most 200"),
    ({"title": "Intro\r\nX-Evil: 1"}, "booking_pages[0].title: contains a line break"),
    ({"description": "x" * 2001}, "booking_pages[0].description: is 2001 characters long"),
    ({"description": "a\x1b[31m"}, "booking_pages[0].description: contains a control character"),
    ({"hosts": None}, "booking_pages[0].hosts: is required"),
    ({"hosts": []}, "booking_pages[0].hosts: is empty; name at least one calendar"),
    ({"hosts": "alex"}, "booking_pages[0].hosts: 'alex' is not a list"),
    ({"hosts": ["alex", "alx"]},
     'booking_pages[0].hosts[1]: "alx" is not the name of a calendar; known calendars: alex, '
     "room-1, sam"),
    ({"hosts": ["alex", "alex"]}, 'booking_pages[0].hosts[1]: "alex" is listed twice'),
    ({"mode": "any"}, 'booking_pages[0].mode: "any" is not valid; use "collective" or '
                      '"round_robin"'),
    ({"resources": ["room-2"]}, 'booking_pages[0].resources[0]: "room-2" is not the name of a '
                                "calendar"),
    ({"resources": ["alex"]}, 'booking_pages[0].resources[0]: "alex" is also a host'),
    ({"duration": None}, "booking_pages[0].duration: is required"),
    ({"duration": []}, "booking_pages[0].duration: is empty"),
    ({"duration": "half an hour"}, "booking_pages[0].duration: 'half an hour' is not a duration"),
    ({"duration": 30}, "booking_pages[0].duration: 30 is not a duration"),
    ({"duration": ["30m", "1h", "30m"]}, 'booking_pages[0].duration[2]: "30m" is listed twice'),
    ({"duration": ["30m", "90s"]},
     'booking_pages[0].duration[1]: "90s" is not a whole number of minutes'),
    ({"duration": "0m"}, 'booking_pages[0].duration: "0m" is too short; use at least "1m"'),
    ({"duration": "25h"}, 'booking_pages[0].duration: "25h" is too long; use at most "1d"'),
    ({"slot_step": "0s"}, 'booking_pages[0].slot_step: "0s" is too short'),
    ({"slot_step": "7m30s"}, "booking_pages[0].slot_step: \"7m30s\" is not a whole number"),
    ({"timezone": "Europe/Bonn"}, "booking_pages[0].timezone: 'Europe/Bonn' is not an IANA"),
    ({"hours": {"mon": ["09:00-12:00", "9-12"]}},
     'booking_pages[0].hours.mon[1]: "9-12" is not a range; use "09:00-12:00"'),
    ({"hours": {"mon": "09:00-17:00"}},
     'booking_pages[0].hours.mon: "09:00-17:00" is not a list of ranges'),
    ({"hours": {"tue": [900]}}, 'booking_pages[0].hours.tue[0]: 900 is not a range'),
    ({"hours": {"wed": ["12:00-09:00"]}},
     'booking_pages[0].hours.wed[0]: "12:00-09:00" does not end after it starts'),
    ({"hours": {"wed": ["09:00-09:00"]}}, 'booking_pages[0].hours.wed[0]: "09:00-09:00" does not'),
    ({"hours": {"thu": ["22:00-00:00"]}},
     'booking_pages[0].hours.thu[0]: "22:00-00:00" does not end after it starts; for a range '
     'until midnight use "22:00-24:00"'),
    ({"hours": {"fri": ["09:00-24:30"]}},
     'booking_pages[0].hours.fri[0]: "09:00-24:30" has an impossible time'),
    ({"hours": {"fri": ["24:00-24:00"]}}, 'booking_pages[0].hours.fri[0]: "24:00-24:00" has an'),
    ({"hours": {"sat": ["09:60-10:00"]}}, 'booking_pages[0].hours.sat[0]: "09:60-10:00" has an'),
    ({"hours": {"sun": ["09:00-12:00", "13:00-15:00", "11:00-14:00"]}},
     'booking_pages[0].hours.sun[2]: "11:00-14:00" overlaps "09:00-12:00"'),
    ({"hours": {"sun": ["13:00-15:00", "09:00-14:00"]}},
     'booking_pages[0].hours.sun[0]: "13:00-15:00" overlaps "09:00-14:00"'),
    ({"hours": {"monday": []}}, "booking_pages[0].hours.monday: unknown key"),
    ({"hours": ["09:00-17:00"]}, "booking_pages[0].hours: must be a table of weekdays"),
    ({"date_overrides": {"24.12.2026": []}},
     'booking_pages[0].date_overrides.24.12.2026: "24.12.2026" is not a date; use "YYYY-MM-DD"'),
    ({"date_overrides": {"2026-02-30": []}},
     'booking_pages[0].date_overrides.2026-02-30: "2026-02-30" is not a date'),
    ({"date_overrides": {"2026-12-24": ["9-12"]}},
     'booking_pages[0].date_overrides.2026-12-24[0]: "9-12" is not a range'),
    ({"date_overrides": {"2026-12-24": "closed"}},
     'booking_pages[0].date_overrides.2026-12-24: "closed" is not a list of ranges'),
    ({"date_overrides": []}, "booking_pages[0].date_overrides: must be a table of dates"),
    ({"buffer_before": "-5m"}, "booking_pages[0].buffer_before: '-5m' is not a duration"),
    ({"buffer_after": "2d"}, 'booking_pages[0].buffer_after: "2d" is too long; use at most "1d"'),
    ({"minimum_notice": "soon"}, "booking_pages[0].minimum_notice: 'soon' is not a duration"),
    ({"minimum_notice": "400d"},
     'booking_pages[0].minimum_notice: "400d" is too long; use at most "365d"'),
    ({"minimum_notice": "10d", "max_days_ahead": 10},
     'booking_pages[0].minimum_notice: "10d" reaches past max_days_ahead (10 days); nothing '
     "could ever be booked"),
    ({"max_days_ahead": 0}, "booking_pages[0].max_days_ahead: 0 is out of range; use 1 to 365"),
    ({"max_days_ahead": 366}, "booking_pages[0].max_days_ahead: 366 is out of range"),
    ({"max_days_ahead": "60"}, "booking_pages[0].max_days_ahead: '60' is not a int"),
    ({"daily_limit": 0}, "booking_pages[0].daily_limit: 0 is out of range; use at least 1"),
    ({"daily_limit": True}, "booking_pages[0].daily_limit: True is not a int"),
    ({"tentative_blocks": "no"}, "booking_pages[0].tentative_blocks: 'no' is not a bool"),
    ({"hold_target": {"sam": {"source": "nextcloud"}}},
     'booking_pages[0].hold_target.sam: "sam" is not one of this page\'s hosts (alex)'),
    ({"hold_target": {"alex": "nextcloud"}},
     "booking_pages[0].hold_target.alex: must be a table like { source = "),
    ({"hold_target": {"alex": {}}}, "booking_pages[0].hold_target.alex.source: is required"),
    ({"hold_target": {"alex": {"source": "nextcloud", "calender": "x"}}},
     "booking_pages[0].hold_target.alex.calender: unknown key; did you mean \"calendar\"?"),
    ({"hold_target": {"alex": {"source": "nextclod"}}},
     'booking_pages[0].hold_target.alex.source: "nextclod" is not the name of a source; '
     "known sources: nextcloud, rooms, work"),
    ({"hold_target": {"alex": {"source": "work"}}},
     'booking_pages[0].hold_target.alex.source: "work" is an "ics" source, which cannot take '
     'holds; use a source of kind "caldav"'),
    ({"hold_target": {"alex": {"source": "nextcloud", "calendar": ""}}},
     "booking_pages[0].hold_target.alex.calendar: is empty"),
    ({"hold_target": "nextcloud"}, "booking_pages[0].hold_target: must be a table"),
    ({"hold_title": "{title} with {guest}"},
     "booking_pages[0].hold_title: {guest} is not a placeholder here; use {title}, "
     "{guest_name}, {guest_email}, {host}"),
    ({"hold_title": "{title.__class__}"},
     "booking_pages[0].hold_title: {title.__class__} is not a placeholder here"),
    ({"hold_title": "{} booked"}, "booking_pages[0].hold_title: {} is not a placeholder here"),
    ({"hold_title": "{guest_name!r}"},
     "booking_pages[0].hold_title: {guest_name} may not have a format"),
    ({"hold_title": "{host:>30}"}, "booking_pages[0].hold_title: {host} may not have a format"),
    ({"hold_title": "Call {title"}, "booking_pages[0].hold_title: \"Call {title\" has an "
                                    "unmatched brace"),
    ({"hold_title": ""}, "booking_pages[0].hold_title: is empty"),
    ({"hold_title": "{title}\n{guest_name}"}, "booking_pages[0].hold_title: contains a line"),
    ({"hold_status": "busy"}, 'booking_pages[0].hold_status: "busy" is not valid; use '
                              '"tentative" or "confirmed"'),
    ({"video_link": "http://meet.example.org/{random}"},
     'booking_pages[0].video_link: "http://meet.example.org/{random}" is not an https:// URL'),
    ({"video_link": "https:///{random}"},
     'booking_pages[0].video_link: "https:///{random}" is not an https:// URL'),
    ({"video_link": "meet.jit.si/{random}"},
     'booking_pages[0].video_link: "meet.jit.si/{random}" is not an https:// URL'),
    ({"video_link": "https://meet.jit.si/{room}"},
     "booking_pages[0].video_link: {room} is not a placeholder here; use {random}, {booking_id}"),
    ({"video_link": "https://meet.jit.si/a b"},
     'booking_pages[0].video_link: "https://meet.jit.si/a b" must be one URL of at most 1000 '
     "characters without spaces"),
    ({"questions": {"name": "x"}},
     "booking_pages[0].questions: must be an array of tables ([[booking_pages.questions]])"),
    ({"questions": [{"name": "Company", "label": "Company"}]},
     'booking_pages[0].questions[0].name: "Company" must be 1-32 lowercase letters'),
    ({"questions": [{"name": "a" * 33, "label": "A"}]},
     f'booking_pages[0].questions[0].name: "{"a" * 33}" must be'),
    ({"questions": [{"name": "_x", "label": "X"}]},
     'booking_pages[0].questions[0].name: "_x" must be 1-32 lowercase letters, digits and \'_\', '
     "starting with a letter"),
    ({"questions": [{"label": "Company"}]}, "booking_pages[0].questions[0].name: is required"),
    ({"questions": [{"name": "a", "label": "A"}, {"name": "a", "label": "B"}]},
     'booking_pages[0].questions[1].name: "a" is used twice'),
    ({"questions": [{"name": "a"}]}, "booking_pages[0].questions[0].label: is required"),
    ({"questions": [{"name": "a", "label": "x" * 201}]},
     "booking_pages[0].questions[0].label: is 201 characters long"),
    ({"questions": [{"name": "a", "label": "A", "required": "yes"}]},
     "booking_pages[0].questions[0].required: 'yes' is not a bool"),
    ({"questions": [{"name": "a", "label": "A", "max_length": 0}]},
     "booking_pages[0].questions[0].max_length: 0 is out of range; use 1 to 5000"),
    ({"questions": [{"name": "a", "label": "A", "max_length": 5001}]},
     "booking_pages[0].questions[0].max_length: 5001 is out of range"),
    ({"questions": [{"name": "a", "label": "A", "kind": "select"}]},
     'booking_pages[0].questions[0].kind: "select" is not valid; use "text" or "textarea"'),
    ({"questions": [{"name": "a", "label": "A", "options": []}]},
     "booking_pages[0].questions[0].options: unknown key"),
    ({"colour": "red"}, "booking_pages[0].colour: unknown key"),
]


@pytest.mark.parametrize(("keys", "expected"), BAD_PAGES)
def test_booking_page_errors_name_the_key(tmp_path: Path, keys: dict[str, Any],
                                          expected: str) -> None:
    raw_page = {k: v for k, v in {**PAGE, **keys}.items() if v is not None}
    found = page_problems(tmp_path, raw_page)
    assert any(p.startswith(expected) or expected in p for p in found), found


def test_a_bad_host_is_reported_once(tmp_path: Path) -> None:
    found = page_problems(tmp_path, {**PAGE, "hosts": ["alx"],
                                     "hold_target": {"alx": {"source": "nextcloud"}}})
    assert found == ['booking_pages[0].hosts[0]: "alx" is not the name of a calendar; '
                     "known calendars: alex, room-1, sam"]


def test_booking_page_errors_are_all_reported(tmp_path: Path) -> None:
    found = page_problems(tmp_path, {**PAGE, "slug": "X", "hours": {"mon": ["9-12"]},
                                     "questions": [{"name": "a"}]})
    assert [p.split(":")[0] for p in found] == [
        "booking_pages[0].slug", "booking_pages[0].hours.mon[0]",
        "booking_pages[0].questions[0].label"]


def test_slugs_are_unique(tmp_path: Path) -> None:
    found = page_problems(tmp_path, PAGE, {**PAGE, "title": "Again"})
    assert found == ['booking_pages[1].slug: "intro" is used twice; slugs must be unique']


def test_booking_pages_must_be_an_array_of_tables(tmp_path: Path) -> None:
    found = problems({**BASE, "booking_pages": PAGE}, tmp_path)
    assert found == ["booking_pages: must be an array of tables ([[booking_pages]])"]


def test_hold_target_calendar_falls_back_to_the_sources_hold_calendar(tmp_path: Path) -> None:
    result = page(tmp_path, hold_target={"alex": {"source": "nextcloud"}})
    assert result.hold_target["alex"] == HoldTargetConfig("nextcloud", "Personal")
    # A CalDAV source outside the host's calendar may take the holds too.
    result = page(tmp_path, hosts=["sam"], hold_target={"sam": {"source": "nextcloud"}})
    assert result.hold_target["sam"].source == "nextcloud"
    bare = {k: v for k, v in CALDAV.items() if k != "hold_calendar"}
    found = problems({**BASE, "sources": [SOURCE, bare, BASE["sources"][2]], "booking_pages": [
        {**PAGE, "hold_target": {"alex": {"source": "nextcloud"}}}]}, tmp_path)
    assert found == ['booking_pages[0].hold_target.alex.calendar: is required: source '
                     '"nextcloud" has no hold_calendar; name the calendar (display name or path) '
                     "that receives holds"]


def test_hours_until_midnight_and_unsorted_ranges(tmp_path: Path) -> None:
    result = page(tmp_path, hours={"mon": ["18:00-24:00", "00:00-06:00", " 07:00 - 08:30 "],
                                   "sun": ["00:00-24:00"]})
    assert result.weekly_hours[0] == (
        (time(0), time(6)), (time(7), time(8, 30)), (time(18), time(0)))
    assert result.weekly_hours[6] == ((time(0), time(0)),)  # the whole day


def test_example_booking_page_is_valid() -> None:
    (result,) = load_config(REPO / "config.example.toml").booking_pages
    assert result.slug == "intro-call" and result.hosts == ("alex",)
    assert result.durations == (timedelta(minutes=30), timedelta(hours=1))
    assert result.weekly_hours[2] == ((time(9), time(12)),) and result.weekly_hours[5] == ()
    assert result.date_overrides[date(2026, 12, 24)] == ()
    assert result.questions[0].kind == "textarea"


def test_docs_booking_example_is_valid(tmp_path: Path) -> None:
    docs = (REPO / "docs" / "configuration.md").read_text()
    section = docs.split("## `[[booking_pages]]`")[1]
    example = re.search(r"```toml\n(.*?)```", section, re.DOTALL)
    assert example is not None
    bare = {k: v for k, v in CALDAV.items() if k != "hold_calendar"}
    raw = {**BASE, "sources": [SOURCE, bare], "calendars": BASE["calendars"][:2],
           **tomllib.loads(example.group(1))}
    result = parse_config(raw, base_dir=tmp_path).booking_pages[0]
    assert result.hold_target["alex"] == HoldTargetConfig("nextcloud", "Personal")
    assert result.questions[0].name == "topic"


def _page(**extra: Any) -> dict[str, Any]:
    return {"slug": "intro", "title": "Intro", "hosts": ["me"], "duration": "30m", **extra}


def test_mail_is_checked_key_by_key(tmp_path: Path) -> None:
    found = problems({"sources": [SOURCE], "calendars": [
        {"name": "me", "sources": ["work"], "email": "Alex <alex@example.org>"}],
        "mail": {"smtp_host": "smtp.example.org", "tls": True, "starttls": True,
                 "from": "not an address\r\nBcc: x@evil.example", "username": "u",
                 "max_per_address_per_day": 0}}, tmp_path)
    assert found == [
        "calendars[0].email: 'Alex <alex@example.org>' is not one plain e-mail address like "
        "sam@example.org",
        "mail.from: 'not an address\\r\\nBcc: x@evil.example' is not an e-mail address "
        "(\"a@example.org\" or \"Name <a@example.org>\")",
        "mail.starttls: give tls = true (implicit TLS, port 465) or starttls = true (port "
        "587), not both",
        "mail.username: give username and password together, or neither",
        "mail.max_per_address_per_day: 0 is out of range; use 1 to 1000"]


def test_page_mail_keys_are_checked(tmp_path: Path) -> None:
    found = problems({"sources": [SOURCE], "calendars": [{"name": "me", "sources": ["work"]}],
                      "booking_pages": [_page(reminders=["24h", "1m", "24h"],
                                              invite_via="provider")]}, tmp_path)
    assert found == [
        'booking_pages[0].invite_via: "provider" needs every host\'s hold_target to be a '
        "google or microsoft source (their provider sends the invitation with the hold); "
        'CalDAV targets use "fbproxy"',
        'booking_pages[0].reminders[1]: "1m" is too short; use at least "5m"',
        'booking_pages[0].reminders[2]: "24h" is given twice',
        "mail: booking pages with reminders need a [mail] table to send them"]


def test_email_alerts_take_the_mail_server(tmp_path: Path) -> None:
    config = parse_config({
        "sources": [SOURCE], "calendars": [{"name": "me", "sources": ["work"]}],
        "mail": {"smtp_host": "smtp.example.org", "tls": True, "from": "Bot <bot@example.org>",
                 "username": "bot", "password": "pw"},
        "alerts": [{"name": "ops", "kind": "email", "to": ["ops@example.org"]}]},
        base_dir=tmp_path)
    [alert] = config.alerts
    assert (alert.smtp_host, alert.smtp_port, alert.tls, alert.starttls, alert.username,
            alert.sender) == ("smtp.example.org", 465, True, False, "bot", "bot@example.org")
    assert config.mail is not None and config.mail.sender_name == "Bot"
    found = problems({"sources": [SOURCE], "calendars": [{"name": "me", "sources": ["work"]}],
                      "alerts": [{"name": "ops", "kind": "email", "to": ["ops@example.org"],
                                  "from": "bot@example.org"}]}, tmp_path)
    assert found == ["alerts[0].smtp_host: is required (or give a [mail] table, whose server "
                     "e-mail alerts then use)"]


def test_check_config_parses_a_pages_mail_templates(tmp_path: Path) -> None:
    folder = tmp_path / "mail"
    folder.mkdir()
    (folder / "invite.txt").write_text("{% if %}broken")
    (folder / "cancel.html").write_text("{{ fine }}")
    raw = {"sources": [SOURCE], "calendars": [{"name": "me", "sources": ["work"]}],
           "booking_pages": [_page(templates_dir="mail")]}
    parse_config(raw, base_dir=tmp_path)  # serving reads them when sending, not now
    found = problems(raw, tmp_path, check_files=True)
    assert [p for p in found if "templates_dir" in p] == [
        "booking_pages[0].templates_dir: invite.txt, line 1: Expected an expression, got "
        "'end of statement block'"]
