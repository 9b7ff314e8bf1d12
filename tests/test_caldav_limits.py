"""The CalDAV endpoint reads every body whole and bounds what one request can cost:
bodies that arrive in pieces, chunked bodies over the limit, deep or many filters,
repeated multiget hrefs and year-long free-busy windows."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.test_caldav_endpoint import COLLECTION, basic, feeds, started  # noqa: F401

PROPFIND = (b'<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:prop><d:displayname/>'
            b"</d:prop></d:propfind>")
CALDAV_NS = 'xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"'
pytestmark = pytest.mark.usefixtures("feeds")  # the two ICS sources of test_caldav_endpoint


async def _let_the_server_read() -> None:
    """Turns of the event loop (the test server shares it) so the piece already sent is
    read before the next one is written."""
    for _ in range(20):
        await asyncio.sleep(0)


async def _raw_request(port: int, head: bytes, pieces: list[bytes]) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head)
    for piece in pieces:
        writer.write(piece)
        await writer.drain()
        await _let_the_server_read()
    answer = await reader.read()
    writer.close()
    status = int(answer.split(b" ", 2)[1])
    return status, answer.partition(b"\r\n\r\n")[2]


def _head(method: str, path: str, extra: dict[str, str]) -> bytes:
    headers = {"Host": "127.0.0.1", "Connection": "close", "Depth": "0",
               "Content-Type": "application/xml", **basic(), **extra}
    lines = [f"{method} {path} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _chunked(pieces: list[bytes]) -> list[bytes]:
    return [b"%x\r\n%s\r\n" % (len(p), p) for p in pieces] + [b"0\r\n\r\n"]


async def test_a_body_sent_in_delayed_pieces_is_read_whole(make_config, serve) -> None:
    client, _ = await started(make_config, serve)
    port = client.server.port
    pieces = [PROPFIND[:30], PROPFIND[30:60], PROPFIND[60:]]
    status, body = await _raw_request(
        port, _head("PROPFIND", COLLECTION, {"Content-Length": str(len(PROPFIND))}), pieces)
    assert status == 207, body
    status, body = await _raw_request(
        port, _head("PROPFIND", COLLECTION, {"Transfer-Encoding": "chunked"}), _chunked(pieces))
    assert status == 207, body

    async def trickle() -> AsyncIterator[bytes]:  # the aiohttp client, chunked
        for piece in pieces:
            yield piece
            await _let_the_server_read()

    response = await client.request("PROPFIND", COLLECTION, data=trickle(),
                                    headers={**basic(), "Depth": "0"})
    assert response.status == 207, await response.text()


async def test_a_chunked_body_over_the_limit_is_refused(make_config, serve) -> None:
    client, _ = await started(make_config, serve)
    filler = b"<!--" + b"x" * (100 * 1024) + b"-->"
    body = (f"<c:calendar-query {CALDAV_NS}>".encode() + filler
            + b'<c:filter><c:comp-filter name="VCALENDAR"/></c:filter></c:calendar-query>')
    pieces = [body[i:i + 16384] for i in range(0, len(body), 16384)]
    status, answer = await _raw_request(
        client.server.port, _head("REPORT", COLLECTION, {"Transfer-Encoding": "chunked"}),
        _chunked(pieces))
    assert status == 413, answer
    assert b"64 KiB" in answer


async def test_deeply_nested_filters_are_refused(make_config, serve, caplog) -> None:
    client, _ = await started(make_config, serve)
    depth = 600
    body = (f'<c:calendar-query {CALDAV_NS}><c:filter>'
            + '<c:comp-filter name="VCALENDAR">' * depth
            + "</c:comp-filter>" * depth + "</c:filter></c:calendar-query>")
    with caplog.at_level(logging.WARNING):
        response = await client.request("REPORT", COLLECTION, data=body,
                                        headers={**basic(), "Depth": "1"})
    assert response.status == 400
    assert "more than 24 deep" in await response.text()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_too_many_filters_are_refused(make_config, serve) -> None:
    client, _ = await started(make_config, serve)
    filters = '<c:prop-filter name="UID"><c:text-match>x</c:text-match></c:prop-filter>' * 60
    body = (f'<c:calendar-query {CALDAV_NS}><d:prop><d:getetag/></d:prop><c:filter>'
            f'<c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT">{filters}'
            "</c:comp-filter></c:comp-filter></c:filter></c:calendar-query>")
    response = await client.request("REPORT", COLLECTION, data=body,
                                    headers={**basic(), "Depth": "1"})
    assert response.status == 400
    assert "at most 50" in await response.text()


async def _member_href(client: Any) -> str:
    body = (f'<c:calendar-query {CALDAV_NS}><d:prop><d:getetag/></d:prop><c:filter>'
            '<c:comp-filter name="VCALENDAR"/></c:filter></c:calendar-query>')
    response = await client.request("REPORT", COLLECTION, data=body,
                                    headers={**basic(), "Depth": "1"})
    text = await response.text()
    return text.split("<D:href>", 1)[1].split("</D:href>", 1)[0]


@pytest.mark.parametrize("spelling", ["same", "variants"])
async def test_a_repeated_multiget_href_is_answered_once(make_config, serve,
                                                         spelling: str) -> None:
    client, _ = await started(make_config, serve)
    href = await _member_href(client)
    once = (f'<c:calendar-multiget {CALDAV_NS}><d:prop><c:calendar-data/></d:prop>'
            f"<d:href>{href}</d:href></c:calendar-multiget>")
    single = await client.request("REPORT", COLLECTION, data=once, headers=basic())
    single_bytes = len(await single.read())
    variants = [href, href + "/", str(client.make_url(href))] if spelling == "variants" \
        else [href]
    repeated = "".join(f"<d:href>{variants[i % len(variants)]}</d:href>" for i in range(600))
    body = (f'<c:calendar-multiget {CALDAV_NS}><d:prop><c:calendar-data/></d:prop>'
            f"{repeated}</c:calendar-multiget>")
    response = await client.request("REPORT", COLLECTION, data=body, headers=basic())
    answer = await response.read()
    assert response.status == 207
    assert answer.count(b"BEGIN:VCALENDAR") == 1
    assert len(answer) <= single_bytes + 100
    assert len(answer) < len(body) / 10, "the answer is a fraction of the question"


async def test_a_multiget_of_too_many_hrefs_is_refused(make_config, serve) -> None:
    client, _ = await started(make_config, serve)
    hrefs = "".join(f"<d:href>{COLLECTION}{i}.ics</d:href>" for i in range(1001))
    body = (f'<c:calendar-multiget {CALDAV_NS}><d:prop><d:getetag/></d:prop>'
            f"{hrefs}</c:calendar-multiget>")
    response = await client.request("REPORT", COLLECTION, data=body, headers=basic())
    assert response.status == 400
    assert "at most 1000" in await response.text()


@pytest.mark.parametrize(("start", "end", "status"), [
    ("20261125T000000Z", "20271126T000000Z", 200),   # 366 days
    ("20261125T000000Z", "20271127T000000Z", 400),   # 367 days
    ("00010101T000000Z", "99991231T000000Z", 400),
])
async def test_free_busy_query_windows_are_capped(make_config, serve, start: str,
                                                  end: str, status: int) -> None:
    client, _ = await started(make_config, serve)
    body = (f'<c:free-busy-query xmlns:c="urn:ietf:params:xml:ns:caldav">'
            f'<c:time-range start="{start}" end="{end}"/></c:free-busy-query>')
    response = await client.request("REPORT", COLLECTION, data=body,
                                    headers={**basic(), "Depth": "1"})
    assert response.status == status, await response.text()
