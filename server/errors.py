"""Errors raised by the server side; all descend from ``FbproxyError``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from adapters.base import FbproxyError


@dataclass(frozen=True, slots=True)
class Wording:
    """A text a guest may read: an English msgid of the catalogues (``server/locale/``)
    and the values of its ``%(name)s`` placeholders. ``str()`` is the English text;
    the pages show it translated (``server.kit.i18n.translate``)."""

    msgid: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.msgid % self.params if self.params else self.msgid


def worded(msgid: str, **params: Any) -> Wording:
    """Marks ``msgid`` for the catalogues (Babel extracts the first argument of
    ``worded``) and keeps the values to fill in after translating it."""
    return Wording(msgid, params)


class ConfigError(FbproxyError):
    """The config file is unusable; ``problems`` lists every issue found."""

    def __init__(self, problems: list[str], *, path: str = "") -> None:
        self.problems = problems
        self.path = path
        where = f"{path}: " if path else ""
        super().__init__(where + "; ".join(problems))

    def report(self) -> str:
        head = f"config {self.path} has {len(self.problems)} problem(s):"
        return "\n".join([head, *(f"  - {p}" for p in self.problems)])


class StoreError(FbproxyError):
    """The database is unusable (wrong version, corrupt, not writable)."""


class StoreFull(StoreError):
    """The database cannot grow (disk full or its size limit); the change was undone."""

    def __init__(self) -> None:
        super().__init__("the database is full (no disk space, or its size limit); nothing "
                         "was changed; free space and it recovers by itself")


class StoreUnavailable(StoreError):
    """The database server cannot be reached or refused; nothing was changed."""


class SlotTaken(StoreError):
    """The database refused a booking overlapping another one of the same calendar.

    The booking transaction's own check comes first; this is the database's
    guarantee behind it, whichever instance or process books.
    """


class LeaseLost(StoreError):
    """A sync round's results were not stored: its source moved on without it.

    Another instance took the source's lease, or another process stored a newer
    sync state, while the round ran; the round is discarded, nothing changed.
    """


class ExpansionFailed(FbproxyError):
    """A sync round's items could not be read or expanded: a worker process died
    (killed, out of memory) or failed while the round used it.

    Nothing the round computed with it is stored; the round fails and is tried
    again with backoff, in new worker processes.
    """


class RequestError(FbproxyError):
    """A client's request cannot be served; rendered once by the web middleware.

    ``reason`` is English (the JSON API's ``error``, for developers); given as a
    ``Wording`` the booking pages show it in the guest's language, or ``guest``
    where a guest needs other words than a developer (a question's label rather
    than its field name)."""

    def __init__(self, status: int, reason: str | Wording, *,
                 headers: dict[str, str] | None = None, guest: Wording | None = None) -> None:
        super().__init__(str(reason))
        self.status = status
        self.reason = str(reason)
        # What the pages show: translated when it is a msgid of the catalogues.
        self.wording = guest or (reason if isinstance(reason, Wording) else Wording(str(reason)))
        self.headers = headers or {}



@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One field of a request and what is wrong with it: ``error`` (its ``reason`` for
    developers, its ``wording`` shown next to the field) and, where those words say
    "this", ``summary``: the same naming the field, for a list of every problem."""

    field: str  # as the request names it: "name", "email", "answers.topic", "start", …
    error: RequestError
    summary: Wording | None = None

    @property
    def listed(self) -> Wording:
        return self.summary or self.error.wording


class FieldErrors(RequestError):
    """Several fields of one request wrong at once, each with its own error.

    Its status, ``reason`` and ``wording`` are the first field's (what a client that
    reads one error gets, as before); ``problems`` holds every field in the order
    checked, for a form to show each next to its field and for the JSON API's
    ``errors`` list."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        first = problems[0].error
        super().__init__(first.status, first.reason, headers=first.headers,
                         guest=first.wording)
        self.problems = problems
