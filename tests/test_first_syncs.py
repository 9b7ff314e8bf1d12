"""First syncs (nothing of the source stored yet) run a few at a time.

Each brings its whole calendar into memory until it is stored; ten at a start
held ten. The limit holds only among first syncs: a source that has synced
before never waits for one, however long they take.
"""

from __future__ import annotations

import asyncio
from typing import Any

from adapters.base import Capabilities, ChangeSet, Item, SyncState
from server.sync.loop import FIRST_SYNCS
from tests.conftest import event, ics


class Counted:
    """An adapter whose first sync waits for ``release`` and is counted meanwhile."""

    capabilities = Capabilities(incremental=True)

    def __init__(self, name: str, running: dict[str, int], changed: asyncio.Condition,
                 release: asyncio.Event | None) -> None:
        self.name = name
        self.running = running
        self.changed = changed
        self.release = release

    async def sync(self, state: SyncState) -> ChangeSet:
        if state:
            return ChangeSet(state=dict(state), unchanged=True)
        if self.release is not None:
            async with self.changed:
                self.running["now"] += 1
                self.running["most"] = max(self.running["most"], self.running["now"])
                self.changed.notify_all()
            await self.release.wait()
            self.running["now"] -= 1
        uid = f"{self.name}-1"
        return ChangeSet(state={"synced": True}, full=True, upserted=(
            Item(key=uid, ical=ics(event(uid, "20261126T100000Z", "20261126T110000Z"))),))

    async def close(self) -> None:
        pass


async def test_first_syncs_run_a_few_at_a_time_and_never_hold_up_a_synced_source(
        make_config: Any, serve: Any) -> None:
    names = ["old", "a", "b", "c", "d"]
    config = make_config([{"name": n, "kind": "ics", "url": f"{n}.ics"} for n in names])
    running = {"now": 0, "most": 0}
    changed = asyncio.Condition()
    release = asyncio.Event()
    adapters = {n: Counted(n, running, changed, None if n == "old" else release)
                for n in names}
    _, runtime = await serve(config, adapters=adapters)
    [old] = await runtime.sync.run_all_once(["old"])
    assert old.ok and not old.unchanged

    firsts = asyncio.create_task(runtime.sync.run_all_once(["a", "b", "c", "d"]))
    async with changed:
        await changed.wait_for(lambda: running["now"] >= FIRST_SYNCS)
    # Every slot is taken by a first sync that does not end: "old" syncs all the same.
    [again] = await runtime.sync.run_all_once(["old"])
    assert again.ok and again.unchanged
    assert running["now"] == FIRST_SYNCS, "no other first sync started meanwhile"

    release.set()
    assert all(outcome.ok for outcome in await firsts)
    assert running["most"] == FIRST_SYNCS
    outcomes = await runtime.sync.run_all_once()
    assert all(outcome.ok and outcome.unchanged for outcome in outcomes)
