"""SIGKILL with mail queued: after a restart every message arrives, none twice.

The real console script books three times while its SMTP server hangs in the
middle of the first message's DATA (so every message is still queued, one of
them mid-transaction); it is killed with SIGKILL, the SMTP server comes back,
and the restarted server sends all three: nothing lost, nothing sent twice.
"""

from __future__ import annotations

import asyncio
import signal
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest

from tests.mailbox import start_mailbox
from tests.peers import free_port
from tests.test_crashes import PAGE, start_server, weekend_days

pytestmark = [pytest.mark.clock_sensitive, pytest.mark.slow]
MAIL_PAGE = PAGE.replace('recheck = "off"', 'recheck = "off"\nnotify_host = false')


def write_config(folder: Path, port: int, smtp_port: int) -> Path:
    (folder / "empty.ics").write_text("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\n"
                                      "END:VCALENDAR\r\n")
    path = folder / "config.toml"
    path.write_text(f"""
[server]
listen = "127.0.0.1:{port}"
database = "db/fbproxy.sqlite3"
rate_limit_bookings = "off"
rate_limit_pages = "off"
[mail]
smtp_host = "127.0.0.1"
smtp_port = {smtp_port}
starttls = false
from = "bookings@example.org"
[[sources]]
name = "empty"
kind = "ics"
url = "empty.ics"
[[calendars]]
name = "me"
sources = ["empty"]
secret = "crash-crash-crash-0001"
email = "me@example.org"
{MAIL_PAGE}""")
    return path


async def test_mail_queued_when_the_server_is_killed_arrives_after_the_restart(
        tmp_path: Path) -> None:
    smtp_port, port = free_port(), free_port()
    hanging, tarpit = start_mailbox(smtp_port)
    release = asyncio.Event()
    hanging.hang = release
    config = write_config(tmp_path, port, smtp_port)
    url = f"http://127.0.0.1:{port}"
    day = weekend_days()[0]
    async with aiohttp.ClientSession() as session:
        server = await start_server(config, tmp_path, url, session)
        try:
            for _ in range(400):  # the source's first sync: until then nothing is offered
                async with session.get(f"{url}/api/v1/pages/intro/slots?start={day}"
                                       f"&end={day + timedelta(days=1)}") as response:
                    if response.status == 200 and (await response.json())["slots"]:
                        break
                await asyncio.sleep(0.05)
            for n, hour in enumerate((9, 10, 11)):
                async with session.post(f"{url}/api/v1/pages/intro/bookings", json={
                        "start": f"{day}T{hour:02d}:00:00Z", "name": f"Guest {n}",
                        "email": f"guest{n}@example.org"}) as response:
                    assert response.status == 201, await response.text()
            # The first message is in the SMTP server's DATA, which never answers.
            for _ in range(200):
                if hanging.in_data:
                    break
                await asyncio.sleep(0.05)
            assert hanging.in_data == 1
        finally:
            server.send_signal(signal.SIGKILL)
            await server.wait()
        hanging.refuse = True  # the killed client's transaction ends unaccepted
        tarpit.loop.call_soon_threadsafe(release.set)
        tarpit.stop()
        assert hanging.messages == []

        inbox, controller = start_mailbox(smtp_port)
        try:
            server = await start_server(config, tmp_path, url, session)
            try:
                for _ in range(400):
                    if len(inbox.messages) >= 3:
                        break
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.5)  # a fourth (a duplicate) would arrive by now
            finally:
                server.send_signal(signal.SIGTERM)
                await server.wait()
        finally:
            controller.stop()
    assert sorted(m.envelope_to[0] for m in inbox.messages) == [
        "guest0@example.org", "guest1@example.org", "guest2@example.org"]
    assert len({m.message["Message-ID"] for m in inbox.messages}) == 3
    assert all(str(m.calendar()["METHOD"]) == "REQUEST" for m in inbox.messages)

