"""Cross-site requests: the admin reload cannot be posted from another site's page, the
booking form trusts only base_url's origin once one is set, and a reload keeps what each
client has used of its rate limits."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from server.app import create_app
from server.config.model import load_config
from tests.booking_world import started
from tests.conftest import event, ics
from tests.test_booking_form import FIRST_OPEN, form_for, hidden
from tests.test_reload import ADMIN, write_config

BASIC = {"Authorization": "Basic " + base64.b64encode(b"admin:admin-admin-admin-0001").decode()}


async def reloading_server(tmp_path: Path, aiohttp_client: Any, clock: Any,
                           extra: str = "") -> tuple[Any, Path]:
    (tmp_path / "a.ics").write_text(ics(event("a", "20261126T090000Z", "20261126T100000Z")))
    path = write_config(tmp_path, partner_secret="partner-old-secret-01", extra=extra)
    app = create_app(load_config(path), clock=clock, start_sync=False)
    return await aiohttp_client(app), path


@pytest.mark.parametrize(("headers", "data", "status"), [
    (ADMIN, None, 200),                                            # fbproxy reload
    ({**BASIC, "Content-Type": "application/json"}, b"{}", 200),   # a script with Basic
    (BASIC, b"x=1", 403),                                          # a form: ambient Basic
    ({**BASIC, "Content-Type": "text/plain"}, b"x", 403),
    ({**ADMIN, "Origin": "https://evil.example"}, None, 403),
    ({**ADMIN, "Origin": "null"}, None, 403),
])
async def test_reload_refuses_what_another_site_could_send(
        tmp_path: Path, aiohttp_client: Any, clock: Any, headers: dict[str, str],
        data: bytes | None, status: int) -> None:
    client, _ = await reloading_server(tmp_path, aiohttp_client, clock)
    if "Content-Type" not in headers and data is not None:
        headers = {**headers, "Content-Type": "application/x-www-form-urlencoded"}
    response = await client.post("/api/v1/reload", headers=headers, data=data)
    assert response.status == status, await response.text()


async def test_a_reload_keeps_what_each_client_used(tmp_path: Path, aiohttp_client: Any,
                                                    clock: Any) -> None:
    client, path = await reloading_server(tmp_path, aiohttp_client, clock)
    limited = path.read_text().replace("[server]\n", '[server]\nrate_limit_secrets = "3/1h"\n')
    path.write_text(limited)
    assert (await client.post("/api/v1/reload", headers=ADMIN)).status == 200
    for _ in range(3):
        assert (await client.get("/feeds/wrong-wrong-wrong-0001/busy.ics")).status == 404
    assert (await client.post("/api/v1/reload", headers=ADMIN)).status == 200
    assert (await client.get("/feeds/wrong-wrong-wrong-0001/busy.ics")).status == 429
    path.write_text(limited.replace('"3/1h"', '"5/1h"'))  # a new rate: still counted
    assert (await client.post("/api/v1/reload", headers=ADMIN)).status == 200
    assert (await client.get("/feeds/wrong-wrong-wrong-0001/busy.ics")).status == 429


@pytest.mark.parametrize(("base_url", "status"), [(None, 303), ("https://book.example.org", 403)])
async def test_the_form_trusts_its_own_host_only_without_a_base_url(
        sources: Any, make_config: Any, serve: Any, base_url: str | None, status: int) -> None:
    server = {"base_url": base_url} if base_url else {}
    client, _ = await started(make_config, sources, serve, server=server)
    html = await form_for(client, FIRST_OPEN)
    own_host = str(client.make_url("/")).rstrip("/")  # what Host says: the client's choice
    data = {name: hidden(html, name) for name in ("csrf", "start", "duration", "tz")}
    response = await client.post("/book/intro", allow_redirects=False, headers={
        "Origin": own_host}, data={**data, "name": "Sam Guest", "email": "sam@example.org"})
    assert response.status == status, await response.text()
