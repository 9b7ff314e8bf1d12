"""The push hooks cannot be used to make fbproxy call the provider at a sender's pace."""

from __future__ import annotations

from typing import Any

from server.app import create_app
from server.runtime import RUNTIME
from server.sync.push import UNKNOWN_STOPS
from tests.peers import free_port
from tests.test_google_source import google, source  # noqa: F401


def stops(fake: Any) -> int:
    return sum(1 for method, path, _ in fake.requests if path.endswith("/channels/stop"))


async def test_unknown_channels_are_stopped_once_each_and_at_a_bounded_rate(
        google, tmp_path, make_config, aiohttp_client, clock) -> None:  # noqa: F811
    port = free_port()
    config = make_config([source(google, tmp_path, push=True)],
                         base_url=f"http://127.0.0.1:{port}")
    app = create_app(config, clock=clock, start_sync=False)
    client = await aiohttp_client(app, server_kwargs={"port": port})
    push = app[RUNTIME].push
    assert push is not None

    async def stray(channel_id: str) -> int:
        response = await client.post("/hooks/google", headers={
            "X-Goog-Channel-ID": channel_id, "X-Goog-Resource-ID": "r",
            "X-Goog-Channel-Token": "t", "X-Goog-Resource-State": "exists"})
        return response.status

    for _ in range(20):  # one old channel, notified over and over
        assert await stray("old-run") == 404
    for i in range(50):  # many made-up ones
        assert await stray(f"made-up-{i}") == 404
    await push.stop()  # waits for the stops under way
    assert stops(google) == UNKNOWN_STOPS.count, "once for old-run, then the hourly budget"
    await client.close()
