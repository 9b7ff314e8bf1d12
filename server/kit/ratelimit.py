"""Per-client token buckets: how often one guest may book or load booking pages.

Pure bookkeeping with the time passed in, so tests drive it with a fixed clock.
Clients are keyed by address; an IPv6 client owns its whole /64, so it counts
as one. ``take`` before the work and ``refund`` after it let a request count
only when its outcome says so (see ``guard.booking_attempt``).

``RateLimiter`` keeps its buckets in memory: one process. ``SharedRateLimiter``
keeps them where several instances see them (the store's rate_buckets table,
behind the ``SharedBuckets`` protocol), so a guest cannot multiply a limit by
the number of instances behind the proxy.
"""

from __future__ import annotations

import ipaddress
import re
from collections import OrderedDict
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from server.kit.durations import format_duration, parse_duration

MAX_CLIENTS = 20_000  # buckets kept; the least recently seen go first
# How often (seconds) an instance clears the shared buckets that are full again.
PRUNE_EVERY = 60.0
_RATE = re.compile(r"\s*(\d+)\s*/\s*(\S+)\s*")


@dataclass(frozen=True, slots=True)
class Rate:
    """``count`` requests per ``period``, allowed in a burst, refilled evenly."""

    count: int
    period: timedelta

    def __str__(self) -> str:
        return f"{self.count}/{format_duration(self.period)}"


def parse_rate(value: object) -> Rate | None:
    """``"10/1h"`` → Rate(10, 1h); ``"off"`` → None (no limit)."""
    if value == "off":
        return None
    match = _RATE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"{value!r} is not a rate; use e.g. \"10/1h\" (10 per hour) or \"off\"")
    count = int(match.group(1))
    period = parse_duration(match.group(2))
    if not 1 <= count <= 1_000_000 or period < timedelta(seconds=1):
        raise ValueError(f"{value!r} is out of range; use 1 to 1000000 per at least 1s")
    return Rate(count, period)


def client_key(address: str) -> str:
    """The bucket an address counts against: itself, or its /64 for IPv6."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class RateLimiter:
    """One rate for many clients; ``take`` answers how long to wait (0 = go)."""

    def __init__(self, rate: Rate, *, max_clients: int = MAX_CLIENTS) -> None:
        self.rate = rate
        self._per_second = rate.count / rate.period.total_seconds()
        self._max_clients = max_clients
        # client -> (tokens left, when counted)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, client: str, now: float) -> float:
        """Spend one token of ``client``'s bucket; else the seconds until one is back."""
        tokens = self._tokens(client, now)
        if tokens >= 1:
            tokens -= 1
            wait = 0.0
        else:
            wait = (1 - tokens) / self._per_second
        self._keep(client, tokens, now)
        return wait

    def refund(self, client: str, now: float) -> None:
        """Give back the token a ``take`` spent on a request that, in the end, does not
        count against this rate (a booking attempt that failed, say)."""
        self._keep(client, min(float(self.rate.count), self._tokens(client, now) + 1), now)

    def _tokens(self, client: str, now: float) -> float:
        """The client's tokens at ``now``: what was left, refilled for the time since."""
        tokens, then = self._buckets.pop(client, (float(self.rate.count), now))
        return min(float(self.rate.count), tokens + max(0.0, now - then) * self._per_second)

    def _keep(self, client: str, tokens: float, now: float) -> None:
        self._buckets[client] = (tokens, now)  # last in the order: the most recently seen
        while len(self._buckets) > self._max_clients:
            self._buckets.popitem(last=False)

    def with_rate(self, rate: Rate) -> RateLimiter:
        """A limiter at ``rate`` that remembers what each client has used here (a config
        reload must not hand every client a fresh allowance)."""
        limiter = RateLimiter(rate, max_clients=self._max_clients)
        limiter._buckets = OrderedDict(
            (client, (min(tokens, float(rate.count)), then))
            for client, (tokens, then) in self._buckets.items())
        return limiter


class SharedBuckets(Protocol):
    """Token buckets several processes share, each take and refund atomic (the Store)."""

    async def take_rate_token(self, key: str, burst: float, per_second: float,
                              now: float) -> float: ...

    async def refund_rate_token(self, key: str, burst: float, per_second: float,
                                now: float) -> None: ...

    async def prune_rate_buckets(self, prefix: str, *, idle_since: float, keep: int) -> int: ...


class SharedRateLimiter:
    """A ``RateLimiter`` whose buckets every instance shares; ``take`` and ``refund`` await.

    ``name`` keeps this limit's buckets apart from other limits' in the same
    table. Buckets idle for a whole period are full again and are dropped
    (at most every ``PRUNE_EVERY`` seconds, by whichever instance counts
    then), and never more than ``max_clients`` are kept, as in memory.
    """

    def __init__(self, name: str, rate: Rate, buckets: SharedBuckets, *,
                 max_clients: int = MAX_CLIENTS) -> None:
        self.name = name
        self.rate = rate
        self._buckets = buckets
        self._burst = float(rate.count)
        self._per_second = rate.count / rate.period.total_seconds()
        self._max_clients = max_clients
        self._next_prune = float("-inf")

    async def take(self, client: str, now: float) -> float:
        """Spend one token of ``client``'s bucket; else the seconds until one is back."""
        if now >= self._next_prune:
            self._next_prune = now + PRUNE_EVERY
            await self._buckets.prune_rate_buckets(
                f"{self.name}:", idle_since=now - self.rate.period.total_seconds(),
                keep=self._max_clients)
        return await self._buckets.take_rate_token(f"{self.name}:{client}", self._burst,
                                                   self._per_second, now)

    async def refund(self, client: str, now: float) -> None:
        """Give back the token a ``take`` spent (see ``RateLimiter.refund``)."""
        await self._buckets.refund_rate_token(f"{self.name}:{client}", self._burst,
                                              self._per_second, now)

    def with_rate(self, rate: Rate) -> SharedRateLimiter:
        """The same buckets at ``rate`` (a reload; what clients used stays counted, and a
        bucket fuller than the new burst is capped at its next take)."""
        return SharedRateLimiter(self.name, rate, self._buckets, max_clients=self._max_clients)
