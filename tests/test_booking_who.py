"""Who and where before booking (issue 24): hosts, pictures, location, logo, accent
colour, the zone picker and embedding, over HTTP."""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path
from typing import Any

import pytest

from tests.booking_world import started
from tests.test_booking_form import form_for, hidden, post_form

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64


def csp(response: Any) -> dict[str, str]:
    """The CSP's directives by name."""
    policy = response.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    return {part.split()[0]: part.strip() for part in policy.split(";") if part.strip()}


async def test_the_host_and_the_location_show_before_booking(sources, make_config, serve,
                                                             tmp_path: Path) -> None:
    (tmp_path / "alex.png").write_bytes(PNG)
    client, _ = await started(make_config, sources, serve,
                              calendars={"alex": {"display_name": "Alex Doe",
                                                  "avatar": "alex.png"}},
                              video_link="https://meet.jit.si/fbproxy-{random}")
    response = await client.get("/book/intro?tz=UTC")
    html = await response.text()
    assert response.status == 200
    assert '<span class="host-name">Alex Doe</span>' in html
    [src] = re.findall(r'<img class="avatar" src="([^"]+)"', html)
    assert re.fullmatch(r"/media/[0-9a-f]{32}\.png", src)
    assert "Video call (Jitsi Meet)" in html  # location defaults to video with a video_link
    assert html.index("30 min") < html.index("Video call")
    picture = await client.get(src)
    assert picture.status == 200 and await picture.read() == PNG
    assert picture.content_type == "image/png"
    assert picture.headers["X-Content-Type-Options"] == "nosniff"
    assert "immutable" in picture.headers["Cache-Control"]
    assert "sandbox" in picture.headers["Content-Security-Policy"]
    assert (await client.get("/media/" + "0" * 32 + ".png")).status == 404
    # Nothing of the calendar: alex's busy event keeps its title to itself.
    assert "Secret meeting" not in html


async def test_a_collective_page_lists_every_host_with_their_picture(
        sources, make_config, serve) -> None:
    client, _ = await started(
        make_config, sources, serve, hosts=["alex", "sam"],
        calendars={"alex": {"display_name": "Alex Doe",
                            "avatar": "https://pics.example.org/alex.jpg"},
                   "sam": {"display_name": "Sam Roe"}},
        location="phone:+49 30 1234567")
    response = await client.get("/book/intro?tz=UTC")
    html = await response.text()
    assert re.findall(r'<span class="host-name">([^<]+)</span>', html) == ["Alex Doe", "Sam Roe"]
    assert '<img class="avatar" src="https://pics.example.org/alex.jpg"' in html
    assert 'Phone call: <a href="tel:+49301234567">+49 30 1234567</a>' in html
    directives = csp(response)
    assert directives["img-src"] == "img-src 'self' https://pics.example.org"


async def test_a_round_robin_page_says_one_of_our_team(sources, make_config, serve) -> None:
    client, _ = await started(
        make_config, sources, serve, hosts=["alex", "sam"], mode="round_robin",
        calendars={"alex": {"display_name": "Alex Doe"}, "sam": {"display_name": "Sam Roe"}},
        location="address:Main Street 1, Berlin")
    html = await (await client.get("/book/intro?tz=UTC")).text()
    assert '<span class="host-name">One of our team</span>' in html
    assert "Alex Doe" not in html and "Sam Roe" not in html
    assert "In person: Main Street 1, Berlin" in html
    # After booking, the guest's page names the host they got.
    form = await form_for(client)
    booked = await post_form(client, form)
    assert booked.status == 303
    page = await (await client.get(booked.headers["Location"])).text()
    assert re.findall(r'<span class="host-name">([^<]+)</span>', page) in (["Alex Doe"],
                                                                           ["Sam Roe"])
    assert "In person: Main Street 1, Berlin" in page


@pytest.mark.parametrize(("video_link", "shown"), [
    ("https://meet.jit.si/x-{random}", "Video call (Jitsi Meet)"),
    ("https://us02web.zoom.us/j/{booking_id}", "Video call (Zoom)"),
    ("https://whereby.com/fbproxy-{random}", "Video call (Whereby)"),
    ("https://video.example.org/{random}", "Video call</p>"),
])
async def test_the_video_provider_is_named_by_the_links_host(
        sources, make_config, serve, video_link: str, shown: str) -> None:
    client, _ = await started(make_config, sources, serve, video_link=video_link,
                              location="video")
    assert shown in await (await client.get("/book/intro?tz=UTC")).text()


async def test_logo_and_accent_colour_come_as_files_not_inline(
        sources, make_config, serve, tmp_path: Path) -> None:
    (tmp_path / "logo.jpg").write_bytes(JPEG)
    client, _ = await started(make_config, sources, serve, logo="logo.jpg",
                              accent_color="#FFCC00")
    response = await client.get("/book/intro?tz=UTC")
    html = await response.text()
    [logo] = re.findall(r'<img class="logo" src="([^"]+)"', html)
    assert logo.endswith(".jpg") and (await (await client.get(logo)).read()) == JPEG
    [theme] = re.findall(r'<link rel="stylesheet" href="(/book/intro/theme\.css\?v=[^"]+)"', html)
    css = await client.get(unescape(theme))
    assert css.content_type == "text/css"
    body = await css.text()
    assert "--accent: #ffcc00" in body and "--accent-ink: #0d1117" in body  # dark text on yellow
    assert "style=" not in html and "<style" not in html
    assert csp(response)["style-src"] == "style-src 'self'"
    assert (await client.get("/book/nope/theme.css")).status == 404


async def test_the_zone_picker_is_canonical_with_offsets_and_the_guests_zone_first(
        sources, make_config, serve) -> None:
    client, _ = await started(make_config, sources, serve, timezone="Europe/Berlin")
    html = await (await client.get("/book/intro?tz=Asia/Tokyo")).text()
    options = re.findall(r'<option value="([^"]+)"( selected)?>([^<]+)</option>', html)
    zones = [value for value, _, _ in options]
    assert zones[0] == "Asia/Tokyo" and options[0][1] == " selected"
    assert options[0][2] == "(UTC+09:00) Tokyo"
    assert "Africa/Asmera" not in zones and "Africa/Timbuktu" not in zones
    assert "America/Argentina/ComodRivadavia" not in zones and "US/Eastern" not in zones
    labels = dict((value, label) for value, _, label in options)
    assert labels["Asia/Kolkata"] == "(UTC+05:30) Kolkata"
    assert labels["Europe/Berlin"] == "(UTC+01:00) Berlin · this page's zone"
    assert 'data-searchable' in html


@pytest.mark.parametrize(("alias", "canonical"), [
    ("Asia/Calcutta", "Asia/Kolkata"), ("Africa/Asmera", "Africa/Nairobi"),
    ("US/Eastern", "America/New_York"), ("Europe/Kiev", "Europe/Kyiv")])
async def test_an_old_alias_still_works_as_its_canonical_zone(
        sources, make_config, serve, alias: str, canonical: str) -> None:
    client, _ = await started(make_config, sources, serve)
    html = await (await client.get(f"/book/intro?tz={alias}")).text()
    assert "is not a time zone we know" not in html
    assert f"times shown in {canonical}" in html
    assert re.search(rf'<option value="{canonical}" selected>', html)


async def test_embed_renders_without_chrome_for_the_pages_origins(
        sources, make_config, serve, tmp_path: Path) -> None:
    (tmp_path / "logo.png").write_bytes(PNG)
    client, _ = await started(make_config, sources, serve, logo="logo.png",
                              embed_origins=["https://www.example.org",
                                             "https://shop.example.com:8443"])
    plain = await client.get("/book/intro?tz=UTC")
    assert csp(plain)["frame-ancestors"] == "frame-ancestors 'none'"
    assert plain.headers["X-Frame-Options"] == "DENY"
    assert '<img class="logo"' in await plain.text()

    embedded = await client.get("/book/intro?tz=UTC&embed=1")
    html = await embedded.text()
    assert csp(embedded)["frame-ancestors"] == \
        "frame-ancestors https://www.example.org https://shop.example.com:8443"
    assert "X-Frame-Options" not in embedded.headers
    assert '<body class="embed">' in html and '<img class="logo"' not in html
    # Every link and form keeps embed=1.
    links = [unescape(h) for h in re.findall(r'href="(\?[^"]*)"', html)]
    assert links and all("embed=1" in link for link in links)
    assert html.count('<input type="hidden" name="embed" value="1">') == 1  # the zone form

    form = await form_for(client, tz="UTC")
    assert 'name="embed"' not in form  # not embedded: nothing added
    embedded_form = await (await client.get(
        "/book/intro", params={"tz": "UTC", "start": "2026-11-26T09:30:00+00:00",
                               "day": "2026-11-26", "embed": "1"})).text()
    assert hidden(embedded_form, "embed") == "1"
    booked = await post_form(client, embedded_form, embed="1")
    assert booked.status == 303 and booked.headers["Location"].endswith("&embed=1")
    page = await client.get(booked.headers["Location"])
    assert csp(page)["frame-ancestors"].startswith("frame-ancestors https://www.example.org")
    assert '<body class="embed">' in await page.text()


async def test_embed_without_origins_stays_unframeable(sources, make_config, serve) -> None:
    client, _ = await started(make_config, sources, serve)
    response = await client.get("/book/intro?embed=1")
    assert csp(response)["frame-ancestors"] == "frame-ancestors 'none'"
    assert response.headers["X-Frame-Options"] == "DENY"


async def test_an_embedded_form_posts_without_the_third_party_cookie_from_our_origin_only(
        sources, make_config, serve) -> None:
    client, _ = await started(make_config, sources, serve,
                              embed_origins=["https://www.example.org"])
    html = await (await client.get(
        "/book/intro", params={"tz": "UTC", "start": "2026-11-26T09:30:00+00:00",
                               "day": "2026-11-26", "embed": "1"})).text()
    data = {name: hidden(html, name) for name in ("start", "duration", "tz", "embed")}
    data.update({"name": "Sam Guest", "email": "sam@example.org", "csrf": ""})
    client.session.cookie_jar.clear()  # the browser kept the cookie from the frame
    ours = str(client.make_url("")).rstrip("/")
    foreign = await client.post("/book/intro", data=data, allow_redirects=False,
                                headers={"Origin": "https://www.example.org"})
    assert foreign.status == 403
    no_origin = await client.post("/book/intro", data=data, allow_redirects=False)
    assert no_origin.status == 403
    cross = await client.post("/book/intro", data=data, allow_redirects=False,
                              headers={"Origin": ours, "Sec-Fetch-Site": "cross-site"})
    assert cross.status == 403
    not_embedded = await client.post("/book/intro", data={**data, "embed": ""},
                                     allow_redirects=False, headers={"Origin": ours})
    assert not_embedded.status == 403
    good = await client.post("/book/intro", data=data, allow_redirects=False,
                             headers={"Origin": ours, "Sec-Fetch-Site": "same-origin"})
    assert good.status == 303, await good.text()
