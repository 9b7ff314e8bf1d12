"""The lifecycle the local fake upstreams share: an aiohttp app on 127.0.0.1, a free port."""

from __future__ import annotations

from aiohttp import web


class LocalServer:
    """Subclasses build their routes in ``app()``; ``start``/``close`` run it on loopback."""

    _runner: web.AppRunner | None = None
    _port = 0

    def app(self) -> web.Application:
        raise NotImplementedError

    @property
    def base_url(self) -> str:
        if not self._port:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return f"http://127.0.0.1:{self._port}"

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self._port = int(self._runner.addresses[0][1])

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
