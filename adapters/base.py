"""The vocabulary shared by every source adapter and the server.

Adapters talk to one upstream and return plain data; they never import from
``server``. The server imports this module to drive them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

# Sync state is whatever an adapter needs to resume (a token, validators,
# per-href etags). It is stored as JSON, so it must stay JSON-shaped.
SyncState = Mapping[str, object]


class FbproxyError(Exception):
    """Root of every error fbproxy raises on purpose."""


class AdapterError(FbproxyError):
    """An upstream could not be synced; ``source`` names which one."""

    def __init__(self, message: str, *, source: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.source = source

    def __str__(self) -> str:
        return f"{self.source}: {self.message}" if self.source else self.message


class AuthExpired(AdapterError):
    """Credentials were refused; a human must re-authorize the source."""


class AccessDenied(AdapterError):
    """The account may not read or write this calendar (not shared with it, or read
    only): someone must change the sharing; authorizing again does not help."""


class SyncTokenInvalid(AdapterError):
    """The stored token or validators are no longer accepted; do a full sync."""


class UpstreamUnavailable(AdapterError):
    """A transient failure (network, timeout, 5xx); retry with backoff.

    ``retry_after`` is the upstream's own wish (HTTP Retry-After), in seconds:
    the next try waits at least that long.
    """

    def __init__(self, message: str, *, source: str = "",
                 retry_after: float | None = None) -> None:
        super().__init__(message, source=source)
        self.retry_after = retry_after


class BadUpstreamData(AdapterError):
    """The upstream answered, but with something we cannot use."""


@dataclass(frozen=True, slots=True)
class Item:
    """One upstream object: an iCalendar text holding every component of one UID."""

    key: str
    ical: str
    etag: str | None = None


@dataclass(frozen=True, slots=True)
class SkippedItem:
    """An upstream object that was left out, and why (reported, never fatal)."""

    key: str
    reason: str


@dataclass(frozen=True, slots=True)
class ChangeSet:
    """What changed upstream since the state the adapter was given.

    ``full`` means ``upserted`` is the complete content of the source: every
    stored item not in it is gone. ``unchanged`` means nothing was fetched at
    all (304, same mtime, same sync token); the state may still be updated.
    """

    state: SyncState
    upserted: tuple[Item, ...] = ()
    deleted: tuple[str, ...] = ()
    full: bool = False
    unchanged: bool = False
    skipped: tuple[SkippedItem, ...] = ()
    # Key prefixes synced in full this round: stored items under one of them
    # that are not in ``upserted`` are gone (one calendar's resync in a source
    # of several). ``full`` is the same for the whole source.
    full_scopes: tuple[str, ...] = ()
    # Cost of the round, for logs, tests and benchmarks.
    bytes_received: int = 0
    requests: int = 0
    fetched: int = 0


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a source kind can do, so callers ask instead of guessing."""

    incremental: bool = False
    push: bool = False
    holds: bool = False


# What reading one malformed upstream event may raise: that event is skipped with
# the reason, the rest of the round goes on (tests/test_payload_fuzz.py).
UNREADABLE_ITEM = (KeyError, TypeError, ValueError, AttributeError, ArithmeticError)

# The property that marks an event as a hold fbproxy wrote; its value is the booking id.
HOLD_MARKER = "X-FBPROXY-BOOKING"


@dataclass(frozen=True, slots=True)
class Attendee:
    """Someone the provider itself invites to a hold (the guest), by name and address.

    Both come from the guest: adapters hand them to the client library's JSON
    (Google, Graph), never into a URL or iCalendar text of their own making.
    """

    name: str
    email: str


@dataclass(frozen=True, slots=True)
class Hold:
    """An event fbproxy writes upstream for a booking (aware UTC datetimes).

    ``attendees`` asks the provider to invite them itself (Google with
    ``sendUpdates=all``, Graph by sending the meeting request of an event with
    attendees); a CalDAV hold ignores them, as fbproxy sends its own iMIP
    invitation for CalDAV targets.
    """

    booking_id: str
    start: datetime
    end: datetime
    title: str
    created: datetime
    status: str = "TENTATIVE"
    description: str = ""
    location: str = ""
    url: str = ""
    # Which calendar of the source receives it (display name or URL); None: the default.
    calendar: str | None = None
    attendees: tuple[Attendee, ...] = ()


@dataclass(frozen=True, slots=True)
class HoldRef:
    """Where a hold landed upstream, enough to move or delete it later."""

    booking_id: str
    ref: str
    etag: str | None = None
    # A meeting link the upstream made for the hold (Google Meet), for the guest.
    video_link: str = ""
    # Why the hold landed without the meeting link it asked for ("" when none was asked
    # for, or it came): shown to the operator and the guest instead of a silent gap.
    video_problem: str = ""


class TokenVault(Protocol):
    """Where one source's OAuth tokens are kept between runs, read and written whole.

    With one server, a file of their own (``secrets_file.FileTokenVault``); with
    several instances on one PostgreSQL database, an encrypted row of it
    (``server/sync/tokens.py``). The adapter reads the text before it needs the
    tokens (and again when they are refused: another instance or `fbproxy auth`
    may have stored newer ones) and writes back what its client library
    refreshed, so every instance works from the newest. What the text means is
    the adapter's business; the vault never logs it.
    """

    @property
    def where(self) -> str:
        """Where the tokens are, for messages ("the token file /var/…")."""
        ...

    async def load(self) -> str | None:
        """The stored text, or None when nothing was stored yet.

        Raises OSError or ValueError when it cannot be read, AuthExpired
        (naming the source) when it is there but cannot be decrypted, and
        UpstreamUnavailable when where it is kept cannot be reached now.
        """
        ...

    async def save(self, text: str) -> None:
        """Replace the stored text, all at once (a reader never sees half)."""
        ...


@runtime_checkable
class SourceAdapter(Protocol):
    """The contract every upstream kind implements."""

    name: str
    capabilities: Capabilities

    async def sync(self, state: SyncState) -> ChangeSet:
        """Return what changed since ``state`` (empty state: everything)."""
        ...

    async def close(self) -> None:
        """Release connections and threads."""
        ...


def kind_of(value: object) -> str:
    """What an upstream value is, for an error message: its type, never its content."""
    return "null" if value is None else type(value).__name__


def page_entries(page: Mapping[str, Any], key: str, what: str,
                 source: str) -> list[Mapping[str, Any]]:
    """The objects under ``key`` of one page of an API listing (Google ``items``, Graph
    ``value``): absent or null is none; anything but a list is bad data; entries that are
    not objects are left out."""
    entries = page.get(key)
    if entries is None:
        return []  # a page without events may leave the key out
    if not isinstance(entries, list):
        raise BadUpstreamData(f"{what} answered {key} that is not a list but "
                              f"{kind_of(entries)}", source=source)
    return [entry for entry in entries if isinstance(entry, Mapping)]
