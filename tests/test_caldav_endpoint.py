"""The read-only CalDAV endpoint, driven by the real `caldav` client and by raw requests."""

from __future__ import annotations

import ast
import asyncio
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import caldav
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from icalendar import Calendar

from server.outputs.dav_collection import _utc_basic
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


async def run_vdirsyncer(config: Path, *args: str, stdin: bytes = b"") -> tuple[int, str]:
    """vdirsyncer's exit code and output."""
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("vdirsyncer")), "-c", str(config), *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    output, _ = await asyncio.wait_for(process.communicate(stdin), 120)
    return process.returncode or 0, output.decode()


async def vdirsyncer(config: Path, *args: str, stdin: bytes = b"") -> str:
    code, text = await run_vdirsyncer(config, *args, stdin=stdin)
    assert code == 0, text
    return text


def vdirsyncer_config(tmp_path: Path, client: Any) -> tuple[Path, Path]:
    """A vdirsyncer config that reads the merged calendar into a local folder:
    (the config file, the local folder)."""
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
    return config, local


@pytest.mark.clock_sensitive  # vdirsyncer runs on the wall clock
async def test_vdirsyncer_syncs_the_merged_calendar_and_then_exactly_a_change(
        feeds, make_config, serve, tmp_path: Path) -> None:
    client, runtime = await started(make_config, serve)
    config, local = vdirsyncer_config(tmp_path, client)
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


# -- calendar-query filters, principal search, allprop, refusals -----------------------


def query(inner: str, *, prop: str = "<D:getetag/>") -> str:
    return ('<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
            f"<D:prop>{prop}</D:prop><C:filter><C:comp-filter name=\"VCALENDAR\">{inner}"
            "</C:comp-filter></C:filter></C:calendar-query>")


def event_filter(*inner: str) -> str:
    return f'<C:comp-filter name="VEVENT">{"".join(inner)}</C:comp-filter>'


def prop_filter(name: str, inner: str = "") -> str:
    return f'<C:prop-filter name="{name}">{inner}</C:prop-filter>'


def text(value: str, **attributes: str) -> str:
    attrs = "".join(f' {k.replace("_", "-")}="{v}"' for k, v in attributes.items())
    return f"<C:text-match{attrs}>{value}</C:text-match>"


NOT_DEFINED = "<C:is-not-defined/>"


# Members: w1 Busy 11-26 09:00-10:00, h1 Busy 11-26 12:00-13:00, w2 Tentative
# 11-27 09:00-09:30; each has SUMMARY, DTSTART, DTEND, DTSTAMP, UID, CLASS:PRIVATE,
# STATUS, TRANSP and no CATEGORIES, no VALARM.
@pytest.mark.parametrize(("inner", "found"), [
    (event_filter(), 3),
    ('<C:comp-filter name="VTODO"/>', 0),
    (event_filter(NOT_DEFINED), 0),
    # caldav-server-tester's category search: no member has CATEGORIES.
    (event_filter(prop_filter("CATEGORIES", text("hands", collation="i;octet"))), 0),
    (event_filter(prop_filter("CATEGORIES", NOT_DEFINED)), 3),
    # ... and its is-not-defined probes: every member has CLASS and DTEND.
    (event_filter(prop_filter("CLASS", NOT_DEFINED)), 0),
    (event_filter(prop_filter("DTEND", NOT_DEFINED)), 0),
    (event_filter(prop_filter("CLASS")), 3),
    # i;ascii-casemap is the default collation; i;octet is exact.
    (event_filter(prop_filter("SUMMARY", text("busy"))), 2),
    (event_filter(prop_filter("SUMMARY", text("busy", collation="i;octet"))), 0),
    (event_filter(prop_filter("SUMMARY", text("Busy", collation="i;octet"))), 2),
    (event_filter(prop_filter("SUMMARY", text("TENT", collation="i;unicode-casemap"))), 1),
    (event_filter(prop_filter("STATUS", text("TENTATIVE", negate_condition="yes"))), 2),
    (event_filter(prop_filter("UID", text("@fbproxy", match_type="ends-with"))), 3),
    (event_filter(prop_filter("SUMMARY", text("Busy", match_type="equals")),
                  prop_filter("STATUS", text("CONFIRMED"))), 2),
    # time-ranges on the event and on a property
    (event_filter('<C:time-range start="20261126T093000Z" end="20261126T120000Z"/>'), 1),
    (event_filter('<C:time-range start="20261126T100000Z" end="20261126T120000Z"/>'), 0),
    (event_filter('<C:time-range end="20261126T093000Z"/>'), 1),
    (event_filter(prop_filter("DTSTART", '<C:time-range start="20261127T000000Z"/>')), 1),
    # parameters: the members' times are UTC, so no TZID
    (event_filter(prop_filter("DTSTART", '<C:param-filter name="TZID"/>')), 0),
    (event_filter(prop_filter("DTSTART", f'<C:param-filter name="TZID">{NOT_DEFINED}'
                                         "</C:param-filter>")), 3),
    # nested components: no member has an alarm
    (event_filter('<C:comp-filter name="VALARM"><C:time-range start="20000101T000000Z" '
                  'end="21000101T000000Z"/></C:comp-filter>'), 0),
    (event_filter(f'<C:comp-filter name="VALARM">{NOT_DEFINED}</C:comp-filter>'), 3),
    # properties of VCALENDAR itself
    (prop_filter("PRODID", text("fbproxy")), 3),
    (prop_filter("CATEGORIES", text("hands")), 0),
])
async def test_calendar_query_applies_every_part_of_the_filter(
        feeds, make_config, serve, inner: str, found: int) -> None:
    client, _ = await started(make_config, serve)
    response = await client.request("REPORT", COLLECTION, data=query(inner),
                                    headers={**basic(), "Depth": "1"})
    assert response.status == 207
    assert (await response.text()).count("<D:response>") == found


@pytest.mark.parametrize(("inner", "condition"), [
    ('<C:time-range start="20261126T000000Z" end="20261127T000000Z"/>', "C:valid-filter"),
    (event_filter(prop_filter("SUMMARY", text("x", collation="i;klingon"))),
     "C:supported-collation"),
    (event_filter('<C:prop-filter name=""/>'), "C:valid-filter"),
])
async def test_calendar_query_refuses_an_invalid_filter_by_its_precondition(
        feeds, make_config, serve, inner: str, condition: str) -> None:
    client, _ = await started(make_config, serve)
    response = await client.request("REPORT", COLLECTION, data=query(inner),
                                    headers={**basic(), "Depth": "1"})
    assert response.status == 403
    assert f"<{condition} />" in await response.text()


async def test_the_caldav_library_text_search_is_answered_by_the_server(
        feeds, make_config, serve) -> None:
    client, _ = await started(make_config, serve)

    def use() -> tuple[int, int]:
        calendar = dav_client(client).principal().calendars()[0]
        tentative = calendar.search(event=True, summary="Tentative", post_filter=False)
        categories = calendar.search(event=True, category="hands", post_filter=False)
        return len(tentative), len(categories)

    assert await asyncio.to_thread(use) == (1, 0)


PRINCIPAL_SEARCH = ('<D:principal-property-search xmlns:D="DAV:" '
                    'xmlns:C="urn:ietf:params:xml:ns:caldav"{test}>{searches}'
                    "<D:prop><C:calendar-home-set/><D:displayname/></D:prop>"
                    "</D:principal-property-search>")


def search(match: str) -> str:
    return (f"<D:property-search><D:prop><D:displayname/></D:prop><D:match>{match}</D:match>"
            "</D:property-search>")


@pytest.mark.parametrize(("path", "searches", "test", "found"), [
    ("/caldav/", search("ME"), "", 1),
    ("/caldav/principals/", search("m"), "", 1),
    ("/", search("me"), "", 1),
    ("/caldav/", search("someone"), "", 0),
    ("/caldav/", search("me") + search("someone"), "", 0),
    ("/caldav/", search("me") + search("someone"), ' test="anyof"', 1),
])
async def test_principal_property_search_finds_the_callers_own_principal(
        feeds, make_config, serve, path: str, searches: str, test: str, found: int) -> None:
    client, _ = await started(make_config, serve)
    response = await client.request(
        "REPORT", path, data=PRINCIPAL_SEARCH.format(test=test, searches=searches),
        headers={**basic(), "Depth": "0"})
    assert response.status == 207
    body = await response.text()
    assert body.count("<D:response>") == found
    if found:
        assert "<D:href>/caldav/principals/me/</D:href>" in body
        assert "<C:calendar-home-set><D:href>/caldav/calendars/me/</D:href>" in body


async def test_principal_search_through_the_caldav_library_and_the_search_property_set(
        feeds, make_config, serve) -> None:
    client, _ = await started(make_config, serve)

    def use() -> list[tuple[str, str]]:
        dav = dav_client(client)
        # caldav 3.6 puts the wanted properties next to an empty <prop/>: still answered.
        return [(str(p.url), str(p.calendar_home_set.url))
                for p in dav.search_principals(name="me") + dav.search_principals()]

    home = str(client.make_url("/caldav/calendars/me/"))
    assert [h for _, h in await asyncio.to_thread(use)] == [home, home]
    response = await client.request(
        "REPORT", "/caldav/principals/me/",
        data='<D:principal-search-property-set xmlns:D="DAV:"/>', headers=basic())
    assert response.status == 200
    assert "<D:prop><D:displayname /></D:prop>" in await response.text()
    reports = await client.request(
        "PROPFIND", "/caldav/principals/me/", headers={**basic(), "Depth": "0"},
        data='<D:propfind xmlns:D="DAV:"><D:prop><D:supported-report-set/>'
             "<D:principal-collection-set/></D:prop></D:propfind>")
    body = await reports.text()
    assert "<D:principal-property-search />" in body
    assert "<D:principal-collection-set><D:href>/caldav/principals/</D:href>" in body


async def test_allprop_answers_the_webdav_properties_and_leaves_the_rest_to_be_named(
        feeds, make_config, serve) -> None:
    client, _ = await started(make_config, serve)
    response = await client.request(
        "PROPFIND", COLLECTION, headers={**basic(), "Depth": "0"},
        data='<D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>')
    body = await response.text()
    for present in ("<D:resourcetype>", "<D:displayname>", "<D:getetag>", "<CS:getctag>"):
        assert present in body
    # RFC 6578 §4, RFC 4791 §5.2, RFC 3744 §5: only when asked for by name.
    for absent in ("sync-token", "supported-report-set", "calendar-description",
                   "supported-calendar-component-set", "current-user-privilege-set",
                   "principal-collection-set"):
        assert absent not in body
    named = await client.request(
        "PROPFIND", COLLECTION, headers={**basic(), "Depth": "0"},
        data='<D:propfind xmlns:D="DAV:"><D:prop><D:sync-token/></D:prop></D:propfind>')
    assert "<D:sync-token>urn:x-fbproxy:sync:" in await named.text()


async def test_creating_a_calendar_is_refused_not_reported_missing(
        feeds, make_config, serve) -> None:
    client, _ = await started(make_config, serve)
    for method in ("MKCALENDAR", "MKCOL"):
        response = await client.request(method, "/caldav/calendars/me/new-calendar/",
                                        headers=basic())
        assert response.status == 403, method
        body = await response.text()
        assert "<D:href>/caldav/calendars/me/</D:href><D:privilege><D:bind />" in body
    elsewhere = await client.request("MKCALENDAR", "/caldav/calendars/someone/new/",
                                     headers=basic())
    assert elsewhere.status == 404


# -- caldav-server-tester ----------------------------------------------------------

TESTER = Path(sys.executable).with_name("caldav-server-tester")
# Its checks that need no writing; each names the features it must find "full".
# The rest store fixtures first (MKCALENDAR, PUT): refused here by design, see
# docs/caldav.md ("caldav-server-tester results").
READ_SIDE = {
    "CheckGetCurrentUserPrincipal": ["get-current-user-principal"],
    "CheckWWWAuthenticate": ["auth.www-authenticate", "auth.www-authenticate.usable-scheme"],
    "CheckPropfindAllprop": ["propfind", "propfind.allprop", "propfind.allprop.resourcetype",
                             "propfind.principal-depth-1"],
    "CheckMakeDeleteCalendar": ["propfind.displayname"],
    "CheckNonExistingResource": ["non-existing-raises-not-found.object",
                                 "non-existing-raises-not-found.collection"],
    "CheckFreeBusyQuery": ["freebusy-query"],
    "CheckPrincipalSearch": ["principal-search", "principal-search.by-name.self",
                             "principal-search.list-all"],
    "CheckWellKnown": ["well-known"],
}


def loopback_alias() -> str:
    """127.1 reaches 127.0.0.1 but is not a name the tester skips well-known for."""
    try:
        resolved = {info[4][0] for info in socket.getaddrinfo("127.1", None, socket.AF_INET)}
    except OSError:
        return "127.0.0.1"
    return "127.1" if resolved == {"127.0.0.1"} else "127.0.0.1"


@pytest.mark.clock_sensitive  # the tester runs on the wall clock
async def test_caldav_server_tester_read_side_checks_pass(feeds, make_config, serve) -> None:
    client, _ = await started(make_config, serve)
    host = loopback_alias()
    url = str(client.make_url("/caldav/")).replace("127.0.0.1", host, 1)
    checks = [arg for name in READ_SIDE for arg in ("--run-checks", name)]
    process = await asyncio.create_subprocess_exec(
        str(TESTER), "--caldav-url", url, "--caldav-username", "me", "--caldav-password",
        SECRET, "--caldav-calendar", "me (busy)", "--format", "hints", *checks,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    output, errors = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, errors.decode()
    features = ast.literal_eval(output.decode())
    wanted = [f for fs in READ_SIDE.values() for f in fs
              if host != "127.0.0.1" or f != "well-known"]
    assert {f: features.get(f, {}).get("support") for f in wanted} == \
        dict.fromkeys(wanted, "full"), errors.decode()
    # Writing is refused, and said so: no calendar can be made, nothing was stored.
    assert features["create-calendar"]["support"] == "unsupported"
    assert features["get-current-user-principal.has-calendar"] == {"value": True}


_UTC_TEXTS = st.one_of(
    st.builds(lambda *parts: "{:04d}{:02d}{:02d}T{:02d}{:02d}{:02d}Z".format(*parts),
              st.integers(0, 9999), st.integers(0, 19), st.integers(0, 39),
              st.integers(0, 29), st.integers(0, 69), st.integers(0, 69)),
    # Fields strptime also reads unpadded ("2026121T9000Z" is 2026-12-01 09:00:00).
    st.builds(lambda parts, pads: "{}{}{}T{}{}{}Z".format(
        *(f"{p:0{w}d}" for p, w in zip(parts, pads, strict=True))),
        st.tuples(st.integers(1, 2300), *[st.integers(0, 61)] * 5),
        st.tuples(*[st.integers(1, 4)] * 6)),
    st.text(st.sampled_from("0123456789TZ +-:."), max_size=20), st.text(max_size=20))


@settings(max_examples=500, deadline=None, derandomize=True)
@given(_UTC_TEXTS)
def test_time_range_instants_read_as_strptime_reads_them(text: str) -> None:
    """The fast path for 20261201T090000Z gives strptime's answer, or its refusal."""
    def outcome(parse: Any) -> Any:
        try:
            return parse(text)
        except ValueError:
            return ValueError

    assert outcome(_utc_basic) == outcome(
        lambda t: datetime.strptime(t, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC))
