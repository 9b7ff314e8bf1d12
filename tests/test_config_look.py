"""Config of what a booking page shows before booking (issue 24): avatar, logo,
location, accent_color, embed_origins; every problem named with its key path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from server.config.images import Picture
from server.config.model import parse_config
from server.config.page_look import Location
from server.errors import ConfigError

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
WEBP = b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x00" * 32
SOURCE = {"name": "work", "kind": "ics", "url": "work.ics"}


def raw(calendar: dict[str, Any] | None = None, **page: Any) -> dict[str, Any]:
    return {"sources": [SOURCE],
            "calendars": [{"name": "me", "sources": ["work"], **(calendar or {})}],
            "booking_pages": [{"slug": "intro", "title": "Intro", "hosts": ["me"],
                               "duration": "30m", **page}]}


def problems(document: dict[str, Any], tmp_path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(document, base_dir=tmp_path)
    return caught.value.problems


def test_local_pictures_are_read_and_recognised_by_their_bytes(tmp_path: Path) -> None:
    (tmp_path / "alex.webp").write_bytes(WEBP)
    (tmp_path / "logo.png").write_bytes(PNG)
    config = parse_config(raw({"avatar": "alex.webp"}, logo="logo.png"), base_dir=tmp_path)
    avatar = config.calendars[0].avatar
    assert avatar is not None and avatar.content_type == "image/webp" and avatar.body == WEBP
    assert avatar.href == f"/media/{avatar.digest}.webp" and avatar.origin == ""
    logo = config.booking_pages[0].look.logo
    assert logo is not None and logo.href.endswith(".png")


def test_an_https_picture_is_kept_as_a_url_with_its_origin(tmp_path: Path) -> None:
    config = parse_config(raw({"avatar": "https://Pics.Example.org:8443/a.jpg?s=1"}),
                          base_dir=tmp_path)
    assert config.calendars[0].avatar == Picture(url="https://Pics.Example.org:8443/a.jpg?s=1")
    assert config.calendars[0].avatar.origin == "https://pics.example.org:8443"


@pytest.mark.parametrize(("name", "body", "problem"), [
    ("missing.png", None, "cannot read"),
    ("big.png", PNG + b"\x00" * (1024 * 1024), "larger than 1 MiB"),
    ("fake.png", b"GIF8 not really", "is not a PNG, JPEG, WebP or GIF image"),
    ("face.svg", b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg">'
                 b"<script>alert(1)</script></svg>", "SVG is refused since it can carry script"),
])
def test_bad_avatar_files(tmp_path: Path, name: str, body: bytes | None, problem: str) -> None:
    if body is not None:
        (tmp_path / name).write_bytes(body)
    [found] = problems(raw({"avatar": name}), tmp_path)
    assert found.startswith("calendars[0].avatar: ") and problem in found


@pytest.mark.parametrize("url", [
    "http://pics.example.org/a.png", "https://user:pw@pics.example.org/a.png",
    "javascript:alert(1)//https://x", "https://pics.example.org/a b.png",
    'https://pics.example.org/a".png', "https://bad_host!/a.png", "data://x"])
def test_bad_picture_urls(tmp_path: Path, url: str) -> None:
    [found] = problems(raw(logo=url), tmp_path)
    assert found.startswith("booking_pages[0].logo: ") and "https:// URL" in found


@pytest.mark.parametrize(("value", "expected"), [
    ("video", Location("video")), ("Phone", Location("phone")),
    ("phone: +49 (30) 123-4567", Location("phone", "+49 (30) 123-4567")),
    ("address:Main Street 1, 10115 Berlin", Location("address", "Main Street 1, 10115 Berlin")),
    ("At the reception, ask for Alex", Location("text", "At the reception, ask for Alex")),
])
def test_location_forms(tmp_path: Path, value: str, expected: Location) -> None:
    config = parse_config(raw(location=value), base_dir=tmp_path)
    assert config.booking_pages[0].look.location == expected


def test_location_defaults_to_video_with_a_video_link(tmp_path: Path) -> None:
    with_link = parse_config(raw(video_link="https://meet.jit.si/x-{random}"), base_dir=tmp_path)
    assert with_link.booking_pages[0].look.location == Location("video")
    assert parse_config(raw(), base_dir=tmp_path).booking_pages[0].look.location is None


@pytest.mark.parametrize(("value", "problem"), [
    ("phone:call me", "is not a phone number"),
    ("address:", "names no address"),
    ("line one\nline two", "line break"),
    ("x" * 201, "at most 200"),
    ("", "is empty"),
])
def test_bad_locations(tmp_path: Path, value: str, problem: str) -> None:
    [found] = problems(raw(location=value), tmp_path)
    assert found.startswith("booking_pages[0].location: ") and problem in found


@pytest.mark.parametrize("value", ["red", "#fff", "#12345g", "0a58ca", "#0a58ca;}", 12])
def test_bad_accent_colours(tmp_path: Path, value: Any) -> None:
    [found] = problems(raw(accent_color=value), tmp_path)
    assert found.startswith("booking_pages[0].accent_color: ")


def test_accent_colour_is_kept_lowercase(tmp_path: Path) -> None:
    config = parse_config(raw(accent_color="#0A58CA"), base_dir=tmp_path)
    assert config.booking_pages[0].look.accent_color == "#0a58ca"


def test_embed_origins_are_exact_https_origins(tmp_path: Path) -> None:
    config = parse_config(raw(embed_origins=["https://www.example.org",
                                             "https://Shop.example.org:8443/",
                                             "https://example.net:443"]), base_dir=tmp_path)
    assert config.booking_pages[0].look.embed_origins == (
        "https://www.example.org", "https://shop.example.org:8443", "https://example.net")
    assert parse_config(raw(), base_dir=tmp_path).booking_pages[0].look.embed_origins == ()


@pytest.mark.parametrize("origin", [
    "http://www.example.org",  # plain http is refused
    "https://*.example.org", "https://www.example.org/page", "https://www.example.org?x=1",
    "'none'", "https://example.org; script-src *", " https://example.org", "*",
    "https://user@example.org", "www.example.org"])
def test_bad_embed_origins(tmp_path: Path, origin: str) -> None:
    [found] = problems(raw(embed_origins=[origin]), tmp_path)
    assert found.startswith("booking_pages[0].embed_origins[0]: ") and "https origin" in found


def test_an_embed_origin_listed_twice(tmp_path: Path) -> None:
    [found] = problems(raw(embed_origins=["https://a.example", "https://A.example/"]), tmp_path)
    assert found == 'booking_pages[0].embed_origins[1]: "https://A.example/" is listed twice'
