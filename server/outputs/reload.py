"""Reloading the config while serving: SIGHUP, `fbproxy reload`, POST /api/v1/reload.

A new config that does not validate is refused with its problems and the
running one stays; a valid one is applied by ``Runtime.reload`` without
dropping connections or sync state.
"""

from __future__ import annotations

import logging

from aiohttp import web

from server.config.model import load_config
from server.errors import ConfigError, RequestError
from server.outputs.feed_cache import FEEDS
from server.outputs.freebusy_cache import FREEBUSY_ANSWERS
from server.outputs.guard import (
    RATE_LIMITERS,
    check_not_cross_site,
    rate_limiters,
    renewed_limiters,
)
from server.outputs.status import authorize_admin
from server.runtime import RUNTIME

log = logging.getLogger("fbproxy.reload")


async def reload_from_disk(app: web.Application) -> list[str]:
    """Read the config file again and apply it; ConfigError when it is refused."""
    runtime = app[RUNTIME]
    path = runtime.config.path
    if path is None:
        raise ConfigError(["this server was started without a config file"])
    try:
        new = load_config(path)
        notes = await runtime.reload(new)
    except ConfigError as exc:
        log.error("config reload refused, the running config stays:\n%s", exc.report())
        raise
    limiters = app[RATE_LIMITERS]
    store = runtime.store
    # What each client used before the reload still counts.
    fresh = renewed_limiters(limiters, rate_limiters(new, store if store.database.shared
                                                     else None))
    limiters.clear()
    limiters.update(fresh)
    app[FEEDS].clear()
    app[FREEBUSY_ANSWERS].clear()
    log.info("config reloaded from %s%s", path, "".join(f"; {n}" for n in notes))
    return notes


async def api_reload(request: web.Request) -> web.Response:
    """POST /api/v1/reload (admin secret): what `fbproxy reload` calls."""
    check_not_cross_site(request)
    await authorize_admin(request)
    try:
        notes = await reload_from_disk(request.app)
    except ConfigError as exc:
        raise RequestError(400, "the new config was refused, the running one stays: "
                           + "; ".join(exc.problems)) from exc
    return web.json_response({"reloaded": True, "changes": notes})
