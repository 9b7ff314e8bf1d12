"""Reloading the config while serving: subscribers rotated, sources replaced, bad ones refused."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

from server.app import create_app
from server.config.model import load_config
from server.runtime import RUNTIME
from tests.conftest import event, ics

ADMIN = {"Authorization": "Bearer admin-admin-admin-0001"}


def write_config(folder: Path, *, partner_secret: str, url: str = "a.ics",
                 extra: str = "") -> Path:
    path = folder / "config.toml"
    path.write_text(f"""
[server]
database = "db/fbproxy.sqlite3"
admin_secret = "admin-admin-admin-0001"
[[sources]]
name = "work"
kind = "ics"
url = "{url}"
[[calendars]]
name = "me"
sources = ["work"]
secret = "owner-owner-owner-0001"
[[calendars.subscribers]]
name = "partner"
secret = "{partner_secret}"
[[calendars.subscribers]]
name = "assistant"
secret = "assistant-secret-0001"
{extra}
""")
    return path


async def test_reload_rotates_a_subscriber_and_replaces_a_source(tmp_path, aiohttp_client,
                                                                 clock) -> None:
    (tmp_path / "a.ics").write_text(ics(event("a", "20261126T090000Z", "20261126T100000Z")))
    (tmp_path / "b.ics").write_text(ics(event("b", "20261126T140000Z", "20261126T150000Z")))
    path = write_config(tmp_path, partner_secret="partner-old-secret-01")
    app = create_app(load_config(path), clock=clock, start_sync=False, handle_signals=True)
    client = await aiohttp_client(app)
    runtime = app[RUNTIME]
    await runtime.sync.run_all_once()
    assert (await client.get("/feeds/partner-old-secret-01/busy.ics")).status == 200

    # A broken config is refused; everything keeps working as before.
    path.write_text(path.read_text() + "\n[[sources]]\nname = 1\n")
    refused = await client.post("/api/v1/reload", headers=ADMIN)
    assert refused.status == 400 and "sources[1].name" in (await refused.json())["error"]
    assert (await client.get("/feeds/partner-old-secret-01/busy.ics")).status == 200

    # The partner's secret rotates and the source moves to another file: SIGHUP.
    write_config(tmp_path, partner_secret="partner-new-secret-01", url="b.ics")
    os.kill(os.getpid(), signal.SIGHUP)
    for _ in range(200):
        if runtime.config.source("work").url.endswith("b.ics"):
            break
        await asyncio.sleep(0.01)
    assert (await client.get("/feeds/partner-old-secret-01/busy.ics")).status == 404
    assert (await client.get("/feeds/partner-new-secret-01/busy.ics")).status == 200
    assert (await client.get("/feeds/assistant-secret-0001/busy.ics")).status == 200
    await runtime.sync.run_all_once()
    feed = await (await client.get("/feeds/owner-owner-owner-0001/busy.ics")).text()
    assert "DTSTART:20261126T140000Z" in feed and "DTSTART:20261126T090000Z" not in feed


async def test_fbproxy_reload_talks_to_the_running_server(tmp_path: Path, aiohttp_server: Any,
                                                         clock) -> None:
    from tests.peers import free_port

    port = free_port()
    (tmp_path / "a.ics").write_text(ics())
    path = write_config(tmp_path, partner_secret="partner-old-secret-01")
    text = path.read_text().replace("[server]", f'[server]\nlisten = "127.0.0.1:{port}"')
    path.write_text(text)
    app = create_app(load_config(path), clock=clock, start_sync=False)
    await aiohttp_server(app, port=port)
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("fbproxy")), "reload", "--config", str(path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, output.decode()
    assert "reloaded" in output.decode()
