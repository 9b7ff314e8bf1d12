"""A background loop a component runs while the server serves, stopped on shutdown."""

from __future__ import annotations

import asyncio
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
