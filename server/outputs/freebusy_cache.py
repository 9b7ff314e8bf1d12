"""Free/busy answers kept between changes: the JSON API's and CalDAV free-busy-query's.

Both answer "when is this calendar busy in [start, end)" many times over
between two changes of the data. Per calendar (and for the JSON API per detail
level) the merged busy time of the served window is rendered once per busy
generation, each block already as JSON or as its FREEBUSY line (by icalendar,
see freebusy_pieces). A window inside the served window is then a slice of it:
two bisects, the edge blocks clipped and written anew, the rest joined; a
window asked again is one look-up in a bounded LRU of whole answers.

The key is the one the feed cache uses: the store's busy generation (any
booking or sync moves it; on PostgreSQL it is read from the database on every
request, so a change made through another instance shows in the next answer)
and the served window. Only busy time is kept here: the secret is checked, the
sources' freshness read (a calendar that must not be served is refused) and
the per-request parts written by the handlers on every request.
"""

from __future__ import annotations

import asyncio
import bisect
import functools
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from aiohttp import web

from server.booking.availability import BUSY, BusyInterval, merge_rows
from server.booking.busy import merged_busy, served_window
from server.config.model import CalendarConfig
from server.kit.clock import iso
from server.kit.lru import LRU
from server.kit.single_flight import SingleFlight
from server.outputs.feeds import clip
from server.outputs.freebusy_pieces import Stamped, assemble, period_lines
from server.runtime import Runtime, Viewer

ANSWERS = 256  # whole answers kept, per kind (JSON, CalDAV): a few MB at most
CALDAV_DETAIL = "busy_tentative"  # the CalDAV view shows busy and tentative to every login

Key = tuple[object, ...]
BlockKey = tuple[int, int, str]
# Renders a timeline's blocks, given the pieces of its previous generation by block.
Render = Callable[[Runtime, Sequence[BusyInterval], dict[BlockKey, bytes]],
                  Awaitable[list[bytes]]]


def at_detail(blocks: list[BusyInterval], detail: str) -> list[BusyInterval]:
    """What a viewer may see: "busy" does not tell tentative from busy."""
    if detail != "busy":
        return blocks
    return merge_rows((b.start, b.end, BUSY) for b in blocks)


def _block_key(block: BusyInterval) -> BlockKey:
    return block.start, block.end, block.status


@dataclass(frozen=True, slots=True)
class RenderedTimeline:
    """A sorted, disjoint timeline, each block with its rendering."""

    blocks: Sequence[BusyInterval]
    pieces: list[bytes]
    starts: Sequence[int]
    ends: Sequence[int]

    @classmethod
    def of(cls, blocks: Sequence[BusyInterval], pieces: Sequence[bytes]) -> RenderedTimeline:
        return cls(blocks, list(pieces), [b.start for b in blocks], [b.end for b in blocks])

    def by_block(self) -> dict[BlockKey, bytes]:
        return dict(zip(map(_block_key, self.blocks), self.pieces, strict=True))

    def window(self, start: int, end: int,
               render: Callable[[BusyInterval], bytes]) -> list[bytes]:
        """The pieces of the blocks overlapping [start, end), those it clips rendered anew."""
        first = bisect.bisect_right(self.ends, start)
        last = bisect.bisect_left(self.starts, end)
        pieces = self.pieces[first:last]
        for index in (first, last - 1)[: min(max(last - first, 0), 2)]:
            block = self.blocks[index]
            if block.start < start or block.end > end:
                pieces[index - first] = render(BusyInterval(
                    max(block.start, start), min(block.end, end), block.status))
        return pieces


class FreeBusyAnswers:
    """The app's free/busy caches; ``clear`` on a config reload."""

    def __init__(self, entries: int = ANSWERS) -> None:
        # (kind, calendar, detail) -> (key, its served window's timeline)
        self.timelines: dict[tuple[str, str, str], tuple[Key, RenderedTimeline]] = {}
        # (calendar, detail, start, end) -> (key, the JSON answer's parts but the request's)
        self.json: LRU[tuple[str, str, int, int], tuple[Key, JsonBusy]] = LRU(entries)
        # (calendar, start, end) -> (key, the free-busy-query answer but its DTSTAMP)
        self.reports: LRU[tuple[str, int, int], tuple[Key, Stamped]] = LRU(entries)
        self.loads: SingleFlight[Key, RenderedTimeline] = SingleFlight()
        self.epoch = 0  # moved by clear: what was being made before is never kept

    def clear(self) -> None:
        self.epoch += 1
        self.timelines.clear()
        self.json.clear()
        self.reports.clear()


FREEBUSY_ANSWERS: web.AppKey[FreeBusyAnswers] = web.AppKey("freebusy_answers",
                                                           FreeBusyAnswers)


async def _key(runtime: Runtime, answers: FreeBusyAnswers,
               served: tuple[int, int]) -> Key:
    return await runtime.store.busy_generation(), served, answers.epoch


async def _timeline(runtime: Runtime, answers: FreeBusyAnswers, key: Key,
                    served: tuple[int, int], kind: str, calendar: CalendarConfig,
                    detail: str, render: Render) -> RenderedTimeline:
    """The served window's blocks at ``detail``, rendered; once per key however many
    requests miss it together, and reusing the previous generation's pieces."""
    slot = (kind, calendar.name, detail)
    cached = answers.timelines.get(slot)
    if cached is not None and cached[0] == key:
        return cached[1]

    async def load() -> RenderedTimeline:
        blocks = at_detail(await merged_busy(runtime, calendar, *served), detail)
        previous = cached[1].by_block() if cached is not None else {}
        timeline = RenderedTimeline.of(blocks, await render(runtime, blocks, previous))
        answers.timelines[slot] = (key, timeline)
        return timeline

    return await answers.loads.run((*slot, *key), load)


# -- the JSON API -------------------------------------------------------------------


@functools.lru_cache(maxsize=8192)
def _json_instant(ts: int) -> bytes:
    return json.dumps(iso(ts)).encode()


@functools.lru_cache(maxsize=64)
def _json_text(text: str) -> bytes:
    return json.dumps(text).encode()


def json_block(block: BusyInterval) -> bytes:
    """``json.dumps({"start": ..., "end": ..., "status": ...})`` of the block, in pieces."""
    return b"".join((b'{"start": ', _json_instant(block.start), b', "end": ',
                     _json_instant(block.end), b', "status": ', _json_text(block.status),
                     b"}"))


async def _json_pieces(runtime: Runtime, blocks: Sequence[BusyInterval],
                       previous: dict[BlockKey, bytes]) -> list[bytes]:
    return [previous.get(_block_key(b)) or json_block(b) for b in blocks]


@dataclass(frozen=True, slots=True)
class JsonBusy:
    """The parts of a JSON free/busy answer that change only with the busy time."""

    head: bytes  # '{"calendar": ..., "start": ..., "end": ...' as json.dumps writes it
    busy: bytes  # the JSON array of busy blocks


async def json_busy(runtime: Runtime, answers: FreeBusyAnswers, viewer: Viewer, start: int,
                    end: int) -> JsonBusy:
    """The blocks ``viewer`` may see in [start, end), clipped to it, as a JSON array.
    Call it only after the viewer's secret was checked."""
    served = served_window(runtime)
    key = await _key(runtime, answers, served)
    calendar = viewer.calendar
    slot = (calendar.name, viewer.detail, start, end)
    hit = answers.json.get(slot)
    if hit is not None and hit[0] == key:
        return hit[1]
    if served[0] <= start and end <= served[1]:
        timeline = await _timeline(runtime, answers, key, served, "json", calendar,
                                   viewer.detail, _json_pieces)
        pieces = timeline.window(start, end, json_block)
    else:  # outside the served window merged_busy reads the store: rare, not kept apart
        blocks = at_detail(await merged_busy(runtime, calendar, start, end), viewer.detail)
        pieces = [json_block(b) for b in clip(blocks, start, end)]
    head = b"".join((b'{"calendar": ', _json_text(calendar.name), b', "start": ',
                     _json_instant(start), b', "end": ', _json_instant(end)))
    answer = JsonBusy(head, b"[" + b", ".join(pieces) + b"]")
    answers.json.put(slot, (key, answer))
    return answer


# -- CalDAV free-busy-query -----------------------------------------------------------


async def _report_lines(runtime: Runtime, blocks: Sequence[BusyInterval],
                        previous: dict[BlockKey, bytes]) -> list[bytes]:
    """Each block's FREEBUSY line: the previous generation's, or written (off the loop)."""
    missing = [b for b in blocks if _block_key(b) not in previous]
    if missing:
        lines = await asyncio.get_running_loop().run_in_executor(
            runtime.executor, period_lines, missing)
        previous = {**previous, **dict(zip(map(_block_key, missing), lines, strict=True))}
    return [previous[_block_key(b)] for b in blocks]


def _period_line(block: BusyInterval) -> bytes:
    return period_lines([block])[0]


async def report_body(runtime: Runtime, answers: FreeBusyAnswers, calendar: CalendarConfig,
                      start: int, end: int) -> Stamped:
    """The free-busy-query answer for [start, end) but its DTSTAMP (``render_freebusy``'s
    bytes once stamped). Call it only after the caller's secret was checked."""
    served = served_window(runtime)
    key = await _key(runtime, answers, served)
    slot = (calendar.name, start, end)
    hit = answers.reports.get(slot)
    if hit is not None and hit[0] == key:
        return hit[1]
    if served[0] <= start and end <= served[1]:
        timeline = await _timeline(runtime, answers, key, served, "caldav", calendar,
                                   CALDAV_DETAIL, _report_lines)
        lines = timeline.window(start, end, _period_line)
    else:  # outside the served window merged_busy reads the store: rare, not kept apart
        blocks = clip(await merged_busy(runtime, calendar, start, end), start, end)
        lines = await _report_lines(runtime, blocks, {})
    body = assemble(calendar.name, None, start, end, lines)
    answers.reports.put(slot, (key, body))
    return body
