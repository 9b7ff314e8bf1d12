"""`create_app(config)`: wires the store, sync loop and routes into one aiohttp app."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Mapping

from aiohttp import web

from adapters.base import SourceAdapter
from server.config.model import Config
from server.errors import ConfigError
from server.kit.clock import Clock, SystemClock
from server.kit.single_flight import SingleFlight
from server.outputs.feed_cache import FEED_RENDERS, FEEDS
from server.outputs.freebusy_cache import FREEBUSY_ANSWERS, FreeBusyAnswers
from server.outputs.guard import RATE_LIMITERS, rate_limiters
from server.outputs.reload import reload_from_disk
from server.outputs.web import error_middleware, setup_routes
from server.runtime import RUNTIME, open_runtime
from server.store import Store
from server.sync.expander import Expander

CONFIG: web.AppKey[Config] = web.AppKey("config", Config)


def create_app(config: Config, *, store: Store | None = None,
               adapters: Mapping[str, SourceAdapter] | None = None, clock: Clock | None = None,
               start_sync: bool = True, handle_signals: bool = False,
               expander: Expander | None = None) -> web.Application:
    """The application; any part can be swapped for tests without monkeypatching.

    ``start_sync=False`` keeps the background sync loop off, so a test can run
    rounds itself through ``app[RUNTIME].sync``.
    """
    app = web.Application(middlewares=[error_middleware], client_max_size=64 * 1024)
    app[CONFIG] = config
    app[FEEDS] = {}
    app[FEED_RENDERS] = SingleFlight()
    app[FREEBUSY_ANSWERS] = FreeBusyAnswers()
    app[RATE_LIMITERS] = rate_limiters(config)
    chosen_clock = clock or SystemClock()

    async def runtime_ctx(app: web.Application) -> AsyncIterator[None]:
        async with open_runtime(config, clock=chosen_clock, store=store,
                                adapters=adapters, expander=expander) as runtime:
            app[RUNTIME] = runtime
            if runtime.store.database.shared:
                # Only now is the store known: the booking limits count in it, for
                # every instance (guard.py says which limits and why).
                app[RATE_LIMITERS].update(rate_limiters(config, runtime.store))
            if start_sync:
                runtime.sync.start()
                if runtime.holds is not None:
                    runtime.holds.start()
                if runtime.mailer is not None:
                    runtime.mailer.start()
                if runtime.push is not None:
                    runtime.push.start()
                if runtime.alerts is not None:
                    runtime.alerts.start()
            if handle_signals:
                _on_sighup(app)
            yield
            if handle_signals:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)

    app.cleanup_ctx.append(runtime_ctx)
    app[RELOADS] = set()
    setup_routes(app)
    return app


RELOADS: web.AppKey[set[asyncio.Task[object]]] = web.AppKey("reloads", set)


def _on_sighup(app: web.Application) -> None:
    """SIGHUP re-reads the config (systemctl reload); a bad one is logged and refused."""

    async def reload() -> None:
        with contextlib.suppress(ConfigError):
            await reload_from_disk(app)

    def handler() -> None:
        task = asyncio.ensure_future(reload())
        app[RELOADS].add(task)
        task.add_done_callback(app[RELOADS].discard)

    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, handler)
