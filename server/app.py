"""`create_app(config)`: wires the store, sync loop and routes into one aiohttp app."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

from aiohttp import web

from adapters.base import SourceAdapter
from server.clock import Clock, SystemClock
from server.config import Config
from server.guard import RATE_LIMITERS, rate_limiters
from server.runtime import RUNTIME, open_runtime
from server.store import Store
from server.web import FEED_CACHE, error_middleware, setup_routes

CONFIG: web.AppKey[Config] = web.AppKey("config", Config)


def create_app(config: Config, *, store: Store | None = None,
               adapters: Mapping[str, SourceAdapter] | None = None, clock: Clock | None = None,
               start_sync: bool = True) -> web.Application:
    """The application; any part can be swapped for tests without monkeypatching.

    ``start_sync=False`` keeps the background sync loop off, so a test can run
    rounds itself through ``app[RUNTIME].sync``.
    """
    app = web.Application(middlewares=[error_middleware], client_max_size=64 * 1024)
    app[CONFIG] = config
    app[FEED_CACHE] = {}
    app[RATE_LIMITERS] = rate_limiters(config)
    chosen_clock = clock or SystemClock()

    async def runtime_ctx(app: web.Application) -> AsyncIterator[None]:
        async with open_runtime(config, clock=chosen_clock, store=store,
                                adapters=adapters) as runtime:
            app[RUNTIME] = runtime
            if start_sync:
                runtime.sync.start()
                if runtime.holds is not None:
                    runtime.holds.start()
                if runtime.push is not None:
                    runtime.push.start()
                if runtime.alerts is not None:
                    runtime.alerts.start()
            yield

    app.cleanup_ctx.append(runtime_ctx)
    setup_routes(app)
    return app
