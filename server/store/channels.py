"""Push channels: the watches an upstream (Google) notifies fbproxy through."""

from __future__ import annotations

from dataclasses import dataclass

from server.store.connection import StoreBase


@dataclass(frozen=True, slots=True)
class PushChannel:
    channel_id: str
    source: str
    calendar: str
    resource_id: str
    token: str  # the secret the upstream sends back with every notification
    expiration: int
    created: int


_CHANNEL = "channel_id, source, calendar, resource_id, token, expiration, created"


class ChannelQueries(StoreBase):
    """Store methods for push channels."""

    async def add_channel(self, channel: PushChannel) -> None:
        async with self._transaction() as db:
            await db.execute(f"INSERT INTO push_channels ({_CHANNEL}) VALUES (?,?,?,?,?,?,?)",
                             (channel.channel_id, channel.source, channel.calendar,
                              channel.resource_id, channel.token, channel.expiration,
                              channel.created))

    async def remove_channel(self, channel_id: str) -> None:
        async with self._transaction() as db:
            await db.execute("DELETE FROM push_channels WHERE channel_id = ?", (channel_id,))

    async def channel(self, channel_id: str) -> PushChannel | None:
        row = await self._reader.fetchone(
            f"SELECT {_CHANNEL} FROM push_channels WHERE channel_id = ?", (channel_id,))
        return PushChannel(*row) if row else None

    async def channels(self) -> list[PushChannel]:
        rows = await self._reader.fetchall(
            f"SELECT {_CHANNEL} FROM push_channels ORDER BY source, calendar, expiration")
        return [PushChannel(*row) for row in rows]
