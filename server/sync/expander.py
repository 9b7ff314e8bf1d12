"""Changed items parsed and expanded off the event loop, on every core.

A round's changed items are split into a few pieces of about the same size;
each piece goes to a worker process (``server.kit.processes.WorkerProcesses``)
as (key, text) pairs and comes back as plain values, which are then joined
with what the round knows (fingerprint, etag) into rows to store. With
``[server] expansion_workers = 0`` the pieces run in the server's thread pool
instead, one piece a round, as before worker processes.

Each item is parsed once, on its own: parsing a whole feed at once costs as
much as parsing its items one by one (measured: 3.4 s for both on a 10,000-event
feed), and only changed items are parsed at all.

A worker that dies fails the whole batch with ``ExpansionFailed``: the round
stores nothing of it and is tried again, with backoff, in new processes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import BrokenExecutor, Executor
from typing import NamedTuple

from adapters.base import Item, SkippedItem
from server.errors import ExpansionFailed
from server.store import BusyRow, StoredItem
from server.sync.expand import BadItem, ExpandContext, expand_item

log = logging.getLogger("fbproxy.sync")

# Pieces a batch is split into per worker: a piece that finishes early leaves its
# worker another one, so one piece of costly series does not keep the others idle.
PIECES_PER_WORKER = 2
# Fewer items than this are not worth another process (a few milliseconds each).
MIN_PIECE_ITEMS = 25
TRUNCATED = "too many occurrences; kept the first ones"
OUT_OF_MEMORY = "too large to expand: the worker ran out of memory"


class Expanded(NamedTuple):
    """What a worker sends back for one item: why it was refused, or its rows."""

    key: str
    refused: str | None = None
    recurring: bool = False
    instances: tuple[BusyRow, ...] = ()
    hold_booking: str | None = None
    # Parts of the item left out (and kept the first occurrences only): reported.
    reasons: tuple[str, ...] = ()


Batch = Callable[[Sequence[tuple[str, str]], ExpandContext], list[Expanded]]


def expand_batch(items: Sequence[tuple[str, str]], context: ExpandContext) -> list[Expanded]:
    """Expand (key, iCalendar text) pairs one by one; runs in a worker process."""
    return [_expand_one(key, ical, context) for key, ical in items]


def _expand_one(key: str, ical: str, context: ExpandContext) -> Expanded:
    try:
        expansion = expand_item(ical, context)
    except BadItem as exc:
        return Expanded(key, refused=str(exc))
    except MemoryError:
        return Expanded(key, refused=OUT_OF_MEMORY)
    reasons = expansion.skipped + ((TRUNCATED,) if expansion.truncated else ())
    return Expanded(key, None, expansion.recurring, expansion.instances,
                    expansion.hold_booking, reasons)


def to_store(items: Sequence[Item], results: Sequence[Expanded],
             fingerprints: Mapping[str, str]) -> tuple[list[StoredItem], list[SkippedItem]]:
    """The items with their results: rows to store, and what was skipped and why."""
    stored: list[StoredItem] = []
    skipped: list[SkippedItem] = []
    for item, result in zip(items, results, strict=True):
        if result.refused is not None:
            skipped.append(SkippedItem(item.key, result.refused))
            continue
        skipped += [SkippedItem(item.key, reason) for reason in result.reasons]
        stored.append(StoredItem(
            key=item.key, ical=item.ical, content_hash=fingerprints[item.key], etag=item.etag,
            recurring=result.recurring, instances=result.instances,
            hold_booking=result.hold_booking))
    return stored, skipped


def expand_items(items: Sequence[Item], context: ExpandContext,
                 fingerprints: Mapping[str, str]) -> tuple[list[StoredItem], list[SkippedItem]]:
    """A batch expanded in the calling thread; unreadable items are skipped."""
    return to_store(items, expand_batch([(i.key, i.ical) for i in items], context),
                    fingerprints)


def split(items: Sequence[Item], pieces: int) -> list[Sequence[Item]]:
    """``items`` in order, cut into up to ``pieces`` runs of about the same text size."""
    if pieces <= 1 or len(items) <= 1:
        return [items]
    sizes = [len(item.ical) for item in items]
    total = sum(sizes)
    cuts = [0]
    running = 0
    for index, size in enumerate(sizes):
        # Cut where the text before reaches the next k/pieces of the whole.
        if len(cuts) < pieces and index > cuts[-1] and running * pieces >= total * len(cuts):
            cuts.append(index)
        running += size
    cuts.append(len(items))
    return [items[start:end] for start, end in zip(cuts, cuts[1:], strict=False)]


class Expander:
    """Expands a round's changed items on ``executor``: worker processes, or with no
    workers (0) the server's threads."""

    def __init__(self, executor: Executor | None, workers: int, *,
                 batch: Batch = expand_batch) -> None:
        self.executor = executor
        self.workers = workers
        self._batch = batch

    def pieces(self, count: int) -> int:
        """How many pieces a batch of ``count`` items is split into."""
        if self.workers <= 1:
            return 1
        return max(1, min(self.workers * PIECES_PER_WORKER, count // MIN_PIECE_ITEMS))

    async def expand(self, items: Sequence[Item], context: ExpandContext,
                     fingerprints: Mapping[str, str],
                     ) -> tuple[list[StoredItem], list[SkippedItem]]:
        """Rows to store for ``items`` and what was skipped; ExpansionFailed when a worker
        died or failed."""
        if not items:
            return [], []
        loop = asyncio.get_running_loop()
        parts = split(items, self.pieces(len(items)))
        try:
            done = await asyncio.gather(*(
                loop.run_in_executor(self.executor, self._batch,
                                     [(item.key, item.ical) for item in part], context)
                for part in parts))
        except BrokenExecutor as exc:
            raise ExpansionFailed(f"a worker process died while expanding ({exc}); nothing "
                                  "it expanded is stored, the round is tried again") from exc
        except Exception as exc:  # a bug, or an answer that could not come back
            log.error("expansion failed", exc_info=exc)
            raise ExpansionFailed(f"expanding failed ({exc or type(exc).__name__}); nothing "
                                  "is stored, the round is tried again") from exc
        return to_store(items, [result for part in done for result in part], fingerprints)
