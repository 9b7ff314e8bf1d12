"""The read-only CalDAV endpoint, driven by the real `caldav` client and by raw requests."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import caldav
import pytest
from icalendar import Calendar

from tests.conftest import event, ics

SECRET = "s3cret-s3cret-s3cret-0001"
AUTH = ("me", SECRET)
COLLECTION = "/caldav/calendars/me/busy/"
WORK = [event("w1", "20261126T090000Z", "20261126T100000Z"),
        event("w2", "20261127T090000Z", "20261127T093000Z", "STATUS:TENTATIVE")]
HOME = [event("h1", "20261126T120000Z", "20261126T130000Z")]


@pytest.fixture
def feeds(tmp_path: Path) -> Path:
    (tmp_path / "work.ics").write_text(ics(*WORK))
    (tmp_path / "home.ics").write_text(ics(*HOME))
    return tmp_path


async def started(make_config: Any, serve: Any, **server: Any) -> Any:
    config = make_config([{"name": "work", "kind": "ics", "url": "work.ics"},
                          {"name": "home", "kind": "ics", "url": "home.ics"}], **server)
    client, runtime = await serve(config)
    assert all(r.ok for r in await runtime.sync.run_all_once())
    return client, runtime


def basic(user: str = "me", password: str = SECRET) -> dict[str, str]:
    import base64
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def dav_client(client: Any) -> caldav.DAVClient:
    return caldav.DAVClient(url=str(client.make_url("/")), username="me", password=SECRET)


def when(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


async def test_the_caldav_library_discovers_lists_searches_and_asks_free_busy(
        feeds, make_config, serve) -> None:
    client, _ = await started(make_config, serve)

    def use() -> tuple[list[str], list[str], str]:
        principal = dav_client(client).principal()
        calendars = principal.calendars()
        found = calendars[0].search(start=when("2026-11-26T00:00"), end=when("2026-11-27T00:00"),
                                    event=True)
        starts = sorted(str(e.icalendar_component["DTSTART"].dt) for e in found)
        freebusy = calendars[0].freebusy_request(when("2026-11-26T00:00"),
                                                 when("2026-11-28T00:00"))
        return [c.get_display_name() for c in calendars], starts, freebusy.data

    names, starts, freebusy = await asyncio.to_thread(use)
    assert names == ["me (busy)"]
    assert starts == ["2026-11-26 09:00:00+00:00", "2026-11-26 12:00:00+00:00"]
    [vfreebusy] = Calendar.from_ical(freebusy).walk("VFREEBUSY")
    periods = [(str(p.params["FBTYPE"]), p.to_ical().decode()) for p in vfreebusy["FREEBUSY"]]
    assert periods == [("BUSY", "20261126T090000Z/20261126T100000Z"),
                       ("BUSY", "20261126T120000Z/20261126T130000Z"),
                       ("BUSY-TENTATIVE", "20261127T090000Z/20261127T093000Z")]
    assert "Secret meeting" not in freebusy


async def test_sync_tokens_follow_upstream_changes_and_survive_a_restart(
        feeds, make_config, serve) -> None:
    client, runtime = await started(make_config, serve)
    calendar = await asyncio.to_thread(lambda: dav_client(client).principal().calendars()[0])
    first = await asyncio.to_thread(
        lambda: calendar.objects_by_sync_token(load_objects=True))
    assert len(list(first)) == 3
    # Upstream: w1 moves an hour later, h1 is deleted.
    (feeds / "work.ics").write_text(ics(event("w1", "20261126T100000Z", "20261126T110000Z"),
                                        WORK[1]))
    (feeds / "home.ics").write_text(ics())
    assert all(r.ok for r in await runtime.sync.run_all_once())

    changes = await asyncio.to_thread(lambda: calendar.objects_by_sync_token(
        sync_token=first.sync_token, load_objects=True))
    updated = [str(o.icalendar_component["DTSTART"].dt) for o in changes if o.data]
    assert updated == ["2026-11-26 10:00:00+00:00"]
    assert len(changes.deleted_urls) == 2  # the old w1 block and h1
    nothing = await asyncio.to_thread(lambda: calendar.objects_by_sync_token(
        sync_token=changes.sync_token, load_objects=False))
    assert list(nothing) == [] and nothing.sync_token == changes.sync_token

    await client.close()
    client, _ = await serve(runtime.config)  # a restart on the same database
    calendar = await asyncio.to_thread(lambda: dav_client(client).principal().calendars()[0])
    again = await asyncio.to_thread(lambda: calendar.objects_by_sync_token(
        sync_token=changes.sync_token, load_objects=False, disable_fallback=True))
    assert list(again) == [], "the token is still valid after a restart"


async def test_raw_sync_collection_paging_and_bad_tokens(feeds, make_config, serve) -> None:
    client, _ = await started(make_config, serve)

    async def sync(token: str, limit: str = "") -> tuple[int, str]:
        body = ('<?xml version="1.0"?><D:sync-collection xmlns:D="DAV:">'
                f"<D:sync-token>{token}</D:sync-token><D:sync-level>1</D:sync-level>"
                f"<D:prop><D:getetag/></D:prop>{limit}</D:sync-collection>")
        response = await client.request("REPORT", COLLECTION, data=body, headers=basic())
        return response.status, await response.text()

    status, body = await sync("", "<D:limit><D:nresults>2</D:nresults></D:limit>")
    assert status == 207 and body.count("<D:getetag>") == 2 and "507" in body
    token = body.split("<D:sync-token>")[1].split("<")[0]
    status, body = await sync(token)
    assert status == 207 and body.count("<D:getetag>") == 1 and "507" not in body
    for bad in ("urn:x-fbproxy:sync:nope:1", "http://example.org/other", token + "999"):
        status, body = await sync(bad)
        assert status == 403 and "valid-sync-token" in body


async def test_authentication_and_read_only(feeds, make_config, serve) -> None:
    client, _ = await started(make_config, serve)
    anonymous = await client.request("PROPFIND", COLLECTION)
    assert anonymous.status == 401 and anonymous.headers["WWW-Authenticate"].startswith("Basic")
    wrong = await client.request("PROPFIND", COLLECTION, headers=basic(password="nope"))
    assert wrong.status == 401
    other = await client.request("PROPFIND", "/caldav/calendars/someone/busy/",
                                 headers=basic())
    assert other.status == 404
    options = await client.request("OPTIONS", "/caldav/")
    assert "calendar-access" in options.headers["DAV"]
    for method in ("PUT", "DELETE", "MKCALENDAR", "PROPPATCH", "MOVE", "COPY"):
        response = await client.request(method, COLLECTION + "x.ics", headers=basic(),
                                        data=b"BEGIN:VCALENDAR")
        assert response.status in (403, 404), method
        if response.status == 403:
            assert "need-privileges" in await response.text()
    assert (await client.request("LOCK", COLLECTION, headers=basic())).status == 405
    redirect = await client.get("/.well-known/caldav", allow_redirects=False)
    assert redirect.status == 301 and redirect.headers["Location"] == "/caldav/"


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<D:propfind xmlns:D="DAV:"><D:prop><D:displayname>&lol3;</D:displayname></D:prop></D:propfind>"""
EXTERNAL = """<?xml version="1.0"?>
<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<D:propfind xmlns:D="DAV:"><D:prop><D:displayname>&xxe;</D:displayname></D:prop></D:propfind>"""


@pytest.mark.parametrize(("method", "body", "status", "reason"), [
    ("PROPFIND", BILLION_LAUGHS, 400, "DTDs and entities"),
    ("PROPFIND", EXTERNAL, 400, "DTDs and entities"),
    ("PROPFIND", "<D:propfind xmlns:D='DAV:'><D:prop>", 400, "not well-formed"),
    ("PROPFIND", "<propfind xmlns='urn:wrong'><prop/></propfind>", 400, "<propfind>"),
    ("REPORT", "<x:report xmlns:x='urn:wrong'/>", 403, "supported-report"),
    ("REPORT", "<C:calendar-query xmlns:C='urn:ietf:params:xml:ns:caldav'/>", 400, "VCALENDAR"),
    ("REPORT", "<C:free-busy-query xmlns:C='urn:ietf:params:xml:ns:caldav'><C:time-range "
               "start='tomorrow'/></C:free-busy-query>", 400, "not a UTC date-time"),
    ("PROPFIND", "<a>" + "x" * 10_000_000 + "</a>", 413, "limited"),
])
async def test_hostile_xml_gets_a_clear_4xx(feeds, make_config, serve, method: str, body: str,
                                            status: int, reason: str) -> None:
    client, _ = await started(make_config, serve)
    response = await client.request(method, COLLECTION, data=body.encode(),
                                    headers={**basic(), "Depth": "0"})
    assert response.status == status
    assert reason in await response.text()
    still = await client.request("PROPFIND", COLLECTION, headers={**basic(), "Depth": "0"})
    assert still.status == 207, "the server keeps serving"


async def vdirsyncer(config: Path, *args: str, stdin: bytes = b"") -> str:
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("vdirsyncer")), "-c", str(config), *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    output, _ = await asyncio.wait_for(process.communicate(stdin), 120)
    text = output.decode()
    assert process.returncode == 0, text
    return text


async def test_vdirsyncer_syncs_the_merged_calendar_and_then_exactly_a_change(
        feeds, make_config, serve, tmp_path: Path) -> None:
    client, runtime = await started(make_config, serve)
    local = tmp_path / "local"
    local.mkdir()
    config = tmp_path / "vdirsyncer.conf"
    config.write_text(f"""[general]
status_path = "{tmp_path / 'status'}/"

[pair busy]
a = "fbproxy"
b = "local"
collections = ["from a"]

[storage fbproxy]
type = "caldav"
url = "{client.make_url('/')}"
username = "me"
password = "{SECRET}"
read_only = true

[storage local]
type = "filesystem"
path = "{local}/"
fileext = ".ics"
""")
    discovered = await vdirsyncer(config, "discover", stdin=b"y\n")
    assert '"busy" ("me (busy)")' in discovered
    first = await vdirsyncer(config, "sync")
    assert first.count("Copying (uploading) item") == 3
    files = sorted((local / "busy").glob("*.ics"))
    starts = sorted(str(Calendar.from_ical(f.read_text()).walk("VEVENT")[0]["DTSTART"].to_ical(),
                        "ascii") for f in files)
    assert starts == ["20261126T090000Z", "20261126T120000Z", "20261127T090000Z"]
    untouched = {f.name: f.stat().st_mtime_ns for f in files}

    (feeds / "home.ics").write_text(ics())  # h1 cancelled upstream
    assert all(r.ok for r in await runtime.sync.run_all_once())
    second = await vdirsyncer(config, "sync")
    changes = [line for line in second.splitlines() if "item" in line]
    assert len(changes) == 1 and changes[0].startswith("Deleting item"), second
    left = {f.name: f.stat().st_mtime_ns for f in (local / "busy").glob("*.ics")}
    assert len(left) == 2 and all(untouched[name] == mtime for name, mtime in left.items())
