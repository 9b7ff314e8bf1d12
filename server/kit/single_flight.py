"""Share one computation among concurrent callers asking for the same key."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

Key = TypeVar("Key", bound=Hashable)
Value = TypeVar("Value")


class SingleFlight(Generic[Key, Value]):
    """At most one computation per key in flight; everyone asking meanwhile awaits it.

    After a change, hundreds of requests miss a cache at the same moment; each
    building the same value would multiply the work and the memory held at
    once by the number of waiting requests. The computation runs as a task of
    its own, so a caller that is cancelled (its client went away) does not
    cancel it for the others.
    """

    def __init__(self) -> None:
        self._pending: dict[Key, asyncio.Task[Value]] = {}

    async def run(self, key: Key, compute: Callable[[], Awaitable[Value]]) -> Value:
        task = self._pending.get(key)
        if task is None:
            task = asyncio.ensure_future(compute())
            self._pending[key] = task
            task.add_done_callback(lambda done: self._finished(key, done))
        return await asyncio.shield(task)

    def _finished(self, key: Key, task: asyncio.Task[Value]) -> None:
        if self._pending.get(key) is task:
            del self._pending[key]
        if not task.cancelled():
            task.exception()  # retrieved here too: every caller may have gone

    def __len__(self) -> int:
        return len(self._pending)
