"""A background loop a component runs while the server serves, stopped on shutdown."""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod


class BackgroundLoop(ABC):
    """``start`` runs ``_run_forever`` as a task; ``stop`` cancels it and waits."""

    _task: asyncio.Task[None] | None = None
    loop_name = "background"

    def start(self) -> None:
        self._task = asyncio.create_task(self._run_forever(), name=self.loop_name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    @abstractmethod
    async def _run_forever(self) -> None: ...


class WakeableLoop(BackgroundLoop):
    """Runs ``run_once`` now, then whenever ``trigger`` is called or ``_poll`` seconds
    passed, whichever comes first (an outbox worker: woken by new rows, polling for
    rows that fall due)."""

    _poll: float = 30.0
    _wake: asyncio.Event

    def trigger(self) -> None:
        self._wake.set()

    async def _run_forever(self) -> None:
        while True:
            await self.run_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll)
            self._wake.clear()

    @abstractmethod
    async def run_once(self) -> int: ...
