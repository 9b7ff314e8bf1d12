"""What guards the guest-facing routes: per-client rate limits and CSRF tokens.

CSRF uses the double-submit pattern: a random token in a SameSite=Strict,
HttpOnly cookie and the same token in each form; another site can neither read
the cookie nor set it, so it cannot forge a matching pair. Origin is checked
too when the browser sends it.

With several instances on one PostgreSQL database the booking limits
(``bookings``, ``failed_bookings``) are counted in the database, so a guest
gets the configured number of bookings whichever instance the proxy sends
them to. ``pages`` and ``secrets`` stay counted per instance, on purpose:
they are checked on every page view and every wrong secret, the requests an
abuser can send fastest, and a database write for each would turn the limit
into load on the database all instances need (and a page view that costs
nothing today into a write). Per instance, a client gets at most the limit
times the number of instances, which still bounds the load each instance
takes; guessing a generated secret (256 random bits) stays hopeless either way.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal
from urllib.parse import urlsplit

from aiohttp import web

from server.config.model import Config
from server.errors import RequestError, StoreError, worded
from server.kit.ratelimit import RateLimiter, SharedBuckets, SharedRateLimiter, client_key
from server.runtime import RUNTIME

log = logging.getLogger("fbproxy.guard")

Limiter = RateLimiter | SharedRateLimiter
RATE_LIMITERS: web.AppKey[dict[str, Limiter]] = web.AppKey("rate_limiters", dict)
# The limits every instance counts together when the database is shared (see above).
SHARED_KINDS = frozenset({"bookings", "failed_bookings"})
CSRF_COOKIE = "fbproxy_csrf"
CSRF_FIELD = "csrf"
_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def rate_limiters(config: Config, shared: SharedBuckets | None = None) -> dict[str, Limiter]:
    """One limiter per kind of guest request that the config limits; with ``shared``
    buckets (a PostgreSQL store) the booking limits count there."""
    rates = {"bookings": config.server.rate_limit_bookings,
             "failed_bookings": config.server.rate_limit_failed_bookings,
             "pages": config.server.rate_limit_pages,
             "secrets": config.server.rate_limit_secrets}
    return {kind: SharedRateLimiter(kind, rate, shared)
            if shared is not None and kind in SHARED_KINDS else RateLimiter(rate)
            for kind, rate in rates.items() if rate is not None}


def renewed_limiters(old: dict[str, Limiter], fresh: dict[str, Limiter]) -> dict[str, Limiter]:
    """``fresh`` (a reloaded config's), keeping what each client used under ``old``."""
    renewed = dict(fresh)
    for kind, limiter in fresh.items():
        before = old.get(kind)
        if isinstance(before, RateLimiter) and isinstance(limiter, RateLimiter):
            renewed[kind] = before.with_rate(limiter.rate)
        # A shared limiter's buckets are in the database: the fresh one reads them.
    return renewed


def client_address(request: web.Request) -> str:
    """The guest's address: the peer's, or X-Forwarded-For's behind a trusted proxy.

    X-Forwarded-For is read right to left, skipping trusted proxies, so a
    client cannot pick its own address by sending the header itself.
    """
    trusted = request.app[RUNTIME].config.server.trusted_proxies
    address = request.remote or ""
    if not trusted:
        return address
    hops = [hop.strip() for hop in request.headers.get("X-Forwarded-For", "").split(",")]
    for hop in [address, *reversed([h for h in hops if h])]:
        try:
            ip = ipaddress.ip_address(hop)
        except ValueError:
            return hop[:64]
        if not any(ip in network for network in trusted):
            return hop
        address = hop
    return address


def check_rate(request: web.Request, kind: Literal["pages", "secrets"]) -> None:
    """Raise 429 with Retry-After when this client has used up its ``kind`` requests."""
    limiter = request.app[RATE_LIMITERS].get(kind)
    if limiter is None:
        return
    assert isinstance(limiter, RateLimiter), "pages and secrets are counted per instance"
    now = request.app[RUNTIME].clock.now().timestamp()
    wait = limiter.take(client_key(client_address(request)), now)
    if wait > 0:
        raise _too_many(kind, limiter, wait)


def _too_many(kind: str, limiter: Limiter, wait: float) -> RequestError:
    seconds = max(1, round(wait))
    what = {"bookings": "bookings", "failed_bookings": "failed booking attempts",
            "secrets": "wrong secrets"}.get(kind, "requests")
    return RequestError(429, f"too many {what} from your address ({limiter.rate}); "
                        f"try again in {seconds} s", headers={"Retry-After": str(seconds)},
                        guest=worded("too many attempts from your address; please try again "
                                     "in %(seconds)d s", seconds=seconds))


# Which budget an attempt that ends well, or badly, counts against.
_SUCCEEDED, _FAILED = "bookings", "failed_bookings"


@asynccontextmanager
async def booking_attempt(request: web.Request) -> AsyncIterator[None]:
    """Count one booking or cancellation (form or API) against the client's limits.

    A successful one counts against ``rate_limit_bookings``; one that fails
    (a typo's 422, a slot just taken, any error) against the more generous
    ``rate_limit_failed_bookings``, so mistakes do not use up a guest's bookings.
    Whether it succeeds is known only after the work, but the limit must hold
    before it (and for concurrent requests from one client): so a token of both
    budgets is taken first, 429 if either is spent, and the one the outcome
    does not count against is given back when the block ends.
    """
    limiters = request.app[RATE_LIMITERS]
    clock = request.app[RUNTIME].clock
    client = client_key(client_address(request))
    now = clock.now().timestamp()
    # The limiters themselves, not their names: a reload may replace them meanwhile.
    taken: dict[str, Limiter] = {}
    for kind in (_SUCCEEDED, _FAILED):
        limiter = limiters.get(kind)
        if limiter is None:
            continue
        wait = await _take(limiter, client, now)
        if wait > 0:
            for other in taken.values():
                await _give_back(other, client, now)
            raise _too_many(kind, limiter, wait)
        taken[kind] = limiter
    try:
        yield
    except BaseException:
        await _give_back(taken.get(_SUCCEEDED), client, clock.now().timestamp())
        raise
    await _give_back(taken.get(_FAILED), client, clock.now().timestamp())


async def _take(limiter: Limiter, client: str, now: float) -> float:
    if isinstance(limiter, SharedRateLimiter):
        return await limiter.take(client, now)
    return limiter.take(client, now)


async def _give_back(limiter: Limiter | None, client: str, now: float) -> None:
    if isinstance(limiter, RateLimiter):
        limiter.refund(client, now)
    elif limiter is not None:
        # A refund the database could not take costs the guest one token, no more;
        # it must not replace the answer the request already has.
        try:
            await limiter.refund(client, now)
        except StoreError as exc:
            log.warning("could not give back a %s token: %s", limiter.name, exc)


def wrong_secret(request: web.Request, error: RequestError) -> RequestError:
    """The error for a wrong secret, counted per client: past the limit it is a 429.

    Guessing a feed, API, CalDAV or admin secret then costs the guesser time;
    the right secret still works (it is checked before this is reached).
    """
    check_rate(request, "secrets")
    return error


def csrf_token(request: web.Request) -> str:
    """The client's token from its cookie, or a new one (see ``set_csrf_cookie``)."""
    token = request.cookies.get(CSRF_COOKIE, "")
    if 32 <= len(token) <= 64 and set(token) <= _TOKEN_CHARS:
        return token
    return secrets.token_urlsafe(32)


def set_csrf_cookie(request: web.Request, response: web.StreamResponse, token: str) -> None:
    if request.cookies.get(CSRF_COOKIE) == token:
        return
    secure = request.app[RUNTIME].config.server.base_url.startswith("https:")
    response.set_cookie(CSRF_COOKIE, token, httponly=True, samesite="Strict", secure=secure,
                        path="/")


def check_csrf(request: web.Request, submitted: str, *, embedded: bool = False) -> None:
    """403 unless the form's token matches the cookie and the request comes from us.

    In a page framed by another site (``embedded``) the browser may keep the
    cookie from us (a third-party cookie); such a post is taken without it only
    when the browser says it comes from our own page: ``Origin`` naming us (and
    ``Sec-Fetch-Site: same-origin`` when sent), which another site cannot forge.
    """
    origin = request.headers.get("Origin")
    if origin is not None and origin != "null" and not _same_origin(request, origin):
        raise RequestError(403, worded("this form was sent from another site; open the "
                                       "booking page here and send it again"))
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if embedded and not cookie and origin is not None and _same_origin(request, origin) \
            and request.headers.get("Sec-Fetch-Site", "same-origin") == "same-origin":
        return
    if not cookie or not submitted or not hmac.compare_digest(cookie.encode(),
                                                               submitted.encode()):
        raise RequestError(403, worded("the form has expired or cookies are off; reload the "
                                       "page (cookies must be allowed for this site) and "
                                       "send it again"))


def check_not_cross_site(request: web.Request) -> None:
    """403 for an admin API call that another site's page could have sent.

    A browser that has the admin secret as HTTP Basic credentials (from the
    status page) sends them with any form post, also from another site. Such a
    post can carry neither an ``Authorization: Bearer`` header nor a JSON
    content type, and says where it comes from in ``Origin``.
    """
    origin = request.headers.get("Origin")
    if origin is not None and not _same_origin(request, origin):
        raise RequestError(403, "this request was sent from another site")
    scheme = request.headers.get("Authorization", "").partition(" ")[0].lower()
    if scheme != "bearer" and request.content_type != "application/json":
        raise RequestError(403, "send the admin secret as 'Authorization: Bearer …', or the "
                           "request as application/json")


def _same_origin(request: web.Request, origin: str) -> bool:
    server = request.app[RUNTIME].config.server
    ours = urlsplit(server.base_url)
    theirs = urlsplit(origin)
    if (theirs.scheme, theirs.netloc) == (ours.scheme, ours.netloc):
        return True
    # Without a configured base_url, the server may be reached on any of its addresses
    # (the LAN address, a name): its own Host is then ours. With one, the Host header
    # is the client's to choose and proves nothing.
    return not server.base_url_configured and \
        (theirs.scheme, theirs.netloc) == (request.scheme, request.host)
