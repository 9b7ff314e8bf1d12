"""The recent changes to sources' busy instances committed through this store.

Each write that changes a source's instances moves the source's generation
(``sources.generation``) in its own transaction. The change log remembers,
for the changes committed here, which rows that step took out and put in, so
that a cached timeline steps forward by them instead of reading the source
again. A step it does not hold (made by another process, or too large to
keep) leaves the reader to read the source again.
"""

from __future__ import annotations

from collections.abc import Sequence

Row = tuple[int, int, str]
# The rows one step took out, and the rows it put in.
Change = tuple[tuple[Row, ...], tuple[Row, ...]]

# The rows kept in all: a few one-event changes per source, many times over.
LOG_ROWS = 20_000
# A larger step is not kept: reading the source again costs about as much.
STEP_ROWS = 4_000


class InstanceLog:
    """Per (source, generation): the rows that step took out and put in."""

    def __init__(self, capacity: int = LOG_ROWS) -> None:
        self._capacity = capacity
        self._steps: dict[tuple[int, int], Change] = {}  # oldest first
        self._rows = 0

    def record(self, source_id: int, generation: int, removed: Sequence[Row] | None,
               added: Sequence[Row]) -> None:
        """Remember the step to ``generation``; ``removed`` None: not known."""
        if removed is None or len(removed) + len(added) > min(STEP_ROWS, self._capacity):
            return
        self._steps[(source_id, generation)] = (tuple(removed), tuple(added))
        self._rows += len(removed) + len(added)
        while self._rows > self._capacity:
            oldest = next(iter(self._steps))
            taken, put = self._steps.pop(oldest)
            self._rows -= len(taken) + len(put)

    def between(self, source_id: int, since: int, until: int) -> list[Change] | None:
        """The steps from generation ``since`` to ``until``, or None if one is missing."""
        if until < since or until - since > len(self._steps):
            return None
        steps = []
        for generation in range(since + 1, until + 1):
            step = self._steps.get((source_id, generation))
            if step is None:
                return None
            steps.append(step)
        return steps
