"""Reading request bodies: whole (however many pieces they arrive in), bounded by the
app's ``client_max_size``, and refused with a 4xx and a reason when malformed."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from server.errors import RequestError, worded


async def whole_body(request: web.Request) -> bytes:
    """All of the body, also when chunked; 413 past the app's size limit."""
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise RequestError(413, worded("request bodies are limited to %(size)d KiB",
                                       size=request.client_max_size // 1024)) from exc


async def json_body(request: web.Request, what: str = "the body") -> Any:
    """The body as JSON; 400 when it is not, also when nested too deep for the parser
    (a RecursionError is no ValueError)."""
    raw = await whole_body(request)
    try:
        return json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise RequestError(400, f"{what} is not JSON"
                           + (" (nested too deep)" if isinstance(exc, RecursionError) else "")
                           ) from exc
