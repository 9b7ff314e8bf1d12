"""A merged calendar as a CalDAV collection: its members, their change log, and queries.

The members are the calendar's merged busy blocks in the served window. A
block's href, UID and body follow from its time range and status alone, so an
unchanged block keeps its href and ETag forever, and a changed block is one
member removed and one added. Each such change gets a sequence number in the
store; a sync token is a position in that log, valid across restarts until the
log is pruned (``server.caldav_token_retention``).

A calendar-query filter (RFC 4791 §9.7) is read into a ``CompFilter`` tree and
matched against each member's parsed body, so every comp-filter, prop-filter,
param-filter, text-match and time-range counts, not just the event's times.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import re
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiohttp import web

from server.booking.availability import BusyInterval
from server.booking.busy import merged_busy, served_window
from server.config.model import CalendarConfig
from server.errors import RequestError
from server.kit.durations import EARLIEST, LATEST, echo
from server.outputs.davxml import CALDAV, Precondition, tag
from server.outputs.feeds import block_uid, render_block
from server.runtime import Runtime
from server.store import DavCollection, DavMember

TOKEN_PREFIX = "urn:x-fbproxy:sync:"
_TOKEN = re.compile(r"urn:x-fbproxy:sync:([A-Za-z0-9_-]{1,64}):(\d{1,18})")


@dataclass
class DavCollections:
    """Per calendar: what the stored members were last refreshed from, and a lock."""

    refreshed: dict[str, tuple[object, ...]] = field(default_factory=dict)
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)


DAV_COLLECTIONS: web.AppKey[DavCollections] = web.AppKey("dav_collections", DavCollections)


def member_uid(calendar_name: str, block: BusyInterval) -> str:
    """The member's name: the feed's block UID without its domain (so hrefs match UIDs)."""
    return block_uid(calendar_name, block).split("@", 1)[0]


async def current(runtime: Runtime, state: DavCollections,
                  calendar: CalendarConfig) -> DavCollection:
    """The collection, its members first brought up to date with the busy time."""
    window = served_window(runtime)
    key = (await runtime.store.busy_generation(), window)
    if state.refreshed.get(calendar.name) != key:
        lock = state.locks.setdefault(calendar.name, asyncio.Lock())
        async with lock:
            if state.refreshed.get(calendar.name) != key:
                blocks = await merged_busy(runtime, calendar, *window)
                now = int(runtime.clock.now().timestamp())
                retention = int(runtime.config.server.caldav_token_retention.total_seconds())
                await runtime.store.dav_refresh(
                    calendar.name,
                    [(member_uid(calendar.name, b), b.start, b.end, b.status) for b in blocks],
                    now=now, prune_before=now - retention)
                state.refreshed[calendar.name] = key
    collection = await runtime.store.dav_collection(calendar.name)
    assert collection is not None, "dav_refresh creates the collection"
    return collection


def sync_token(collection: DavCollection, seq: int | None = None) -> str:
    return f"{TOKEN_PREFIX}{collection.lineage}:{collection.last_seq if seq is None else seq}"


def token_position(collection: DavCollection, token: str) -> int | None:
    """The log position a client's token names; None when it is not (or no longer) valid."""
    match = _TOKEN.fullmatch(token.strip())
    if match is None or match.group(1) != collection.lineage:
        return None
    seq = int(match.group(2))
    if seq < collection.floor_seq or seq > collection.last_seq:
        return None
    return seq


@functools.lru_cache(maxsize=4096)
def member_body(member: DavMember) -> bytes:
    block = BusyInterval(member.start, member.end, member.status)
    return render_block(f"{member.uid}@fbproxy", block,
                        stamp=datetime.fromtimestamp(member.added, UTC))


def member_etag(body: bytes) -> str:
    return f'"{hashlib.sha256(body).hexdigest()[:32]}"'


# -- members as iCalendar trees ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Property:
    name: str  # upper case
    params: tuple[tuple[str, str], ...]  # (NAME, value without quotes)
    value: str  # as written: TEXT still escaped


@dataclass(frozen=True, slots=True)
class Component:
    name: str  # upper case
    properties: tuple[Property, ...]
    components: tuple[Component, ...]


_VALUE = r'(?:"[^"]*"|[^";:,]*)'
_PARAM = re.compile(rf";([A-Za-z0-9-]+)=({_VALUE}(?:,{_VALUE})*)")
_LINE = re.compile(rf"([A-Za-z0-9-]+)((?:;[A-Za-z0-9-]+={_VALUE}(?:,{_VALUE})*)*):(.*)")
_FOLD = re.compile(r"\r?\n[ \t]")


def parse_component(body: bytes) -> Component:
    """An iCalendar object as a tree; lines that are not content lines are skipped."""
    stack: list[tuple[str, list[Property], list[Component]]] = [("", [], [])]
    for line in _FOLD.sub("", body.decode("utf-8", "replace")).splitlines():
        match = _LINE.fullmatch(line)
        if match is None:
            continue
        name, params, value = match.group(1).upper(), match.group(2), match.group(3)
        if name == "BEGIN":
            stack.append((value.strip().upper(), [], []))
        elif name == "END" and len(stack) > 1:
            done, properties, components = stack.pop()
            stack[-1][2].append(Component(done, tuple(properties), tuple(components)))
        else:
            stack[-1][1].append(Property(name, tuple(
                (key.upper(), raw.replace('"', "")) for key, raw in _PARAM.findall(params)),
                value))
    roots = stack[0][2]
    return roots[0] if roots else Component("VCALENDAR", (), ())


@functools.lru_cache(maxsize=4096)
def member_component(member: DavMember) -> Component:
    return parse_component(member_body(member))


# -- calendar-query filters (RFC 4791 §9.7) -------------------------------------------

# Where a time-range may stand (RFC 4791 §9.9); anywhere else is not a valid filter.
_TIMED = {"VEVENT", "VTODO", "VJOURNAL", "VFREEBUSY", "VALARM"}
# i;ascii-casemap and i;octet are required (RFC 4791 §7.5.1); i;unicode-casemap is RFC 5051.
COLLATIONS = ("i;ascii-casemap", "i;octet", "i;unicode-casemap")
# RFC 4791 text-match is a substring test; match-type is CardDAV's (RFC 6352), accepted too.
_MATCH_TYPES = ("contains", "equals", "starts-with", "ends-with")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_ESCAPED = re.compile(r"\\([\\;,nN])")
_DURATION = re.compile(r"([+-])?P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?")


@dataclass(frozen=True, slots=True)
class TimeRange:
    start: int | None  # None: from the beginning of time
    end: int | None  # None: to its end

    def contains(self, moment: int) -> bool:
        """For a property's value: start <= value < end (RFC 4791 §9.9)."""
        return (self.start is None or self.start <= moment) and \
            (self.end is None or moment < self.end)

    def overlaps(self, start: int, end: int) -> bool:
        return (self.start is None or self.start < end) and (self.end is None or start < self.end)


@dataclass(frozen=True, slots=True)
class TextMatch:
    text: str
    collation: str
    negate: bool
    match_type: str

    def matches(self, value: str) -> bool:
        needle, haystack = _fold(self.text, self.collation), _fold(value, self.collation)
        if self.match_type == "equals":
            hit = haystack == needle
        elif self.match_type == "starts-with":
            hit = haystack.startswith(needle)
        elif self.match_type == "ends-with":
            hit = haystack.endswith(needle)
        else:
            hit = needle in haystack
        return hit != self.negate


@dataclass(frozen=True, slots=True)
class ParamFilter:
    name: str
    is_not_defined: bool
    text_match: TextMatch | None

    def matches(self, params: Sequence[tuple[str, str]]) -> bool:
        values = [value for name, value in params if name == self.name]
        if self.is_not_defined:
            return not values
        return bool(values) and (self.text_match is None
                                 or any(self.text_match.matches(v) for v in values))


@dataclass(frozen=True, slots=True)
class PropFilter:
    name: str
    is_not_defined: bool
    time_range: TimeRange | None
    text_match: TextMatch | None
    params: tuple[ParamFilter, ...]

    def matches(self, properties: Sequence[Property]) -> bool:
        named = [p for p in properties if p.name == self.name]
        if self.is_not_defined:
            return not named
        return any(self._matches(p) for p in named)

    def _matches(self, prop: Property) -> bool:
        if self.time_range is not None:
            moment = _instant(prop.value)
            if moment is None or not self.time_range.contains(moment[0]):
                return False
        if self.text_match is not None and not self.text_match.matches(_unescape(prop.value)):
            return False
        return all(f.matches(prop.params) for f in self.params)


@dataclass(frozen=True, slots=True)
class CompFilter:
    name: str
    is_not_defined: bool
    time_range: TimeRange | None
    props: tuple[PropFilter, ...]
    comps: tuple[CompFilter, ...]

    def matches(self, components: Sequence[Component]) -> bool:
        """Whether the components in this scope satisfy the filter (RFC 4791 §9.7.1)."""
        named = [c for c in components if c.name == self.name]
        if self.is_not_defined:
            return not named
        return any(self._matches(c) for c in named)

    def _matches(self, component: Component) -> bool:
        if self.time_range is not None and not _overlaps(component, self.time_range):
            return False
        return all(f.matches(component.properties) for f in self.props) and \
            all(f.matches(component.components) for f in self.comps)

    def window(self) -> tuple[int | None, int | None]:
        """A VEVENT time-range every match must overlap: narrows the store query."""
        for inner in self.comps:
            if inner.name == "VEVENT" and not inner.is_not_defined and inner.time_range:
                return inner.time_range.start, inner.time_range.end
        return None, None


MAX_FILTERS = 50
_FILTER_TAGS = frozenset(tag(CALDAV, name) for name in ("comp-filter", "prop-filter",
                                                        "param-filter"))


def parse_query_filter(root: ET.Element) -> CompFilter:
    """calendar-query's <filter>: 400 when missing, 403 valid-filter when not valid."""
    node = root.find(f"{tag(CALDAV, 'filter')}/{tag(CALDAV, 'comp-filter')}")
    if node is None or node.get("name", "").upper() != "VCALENDAR":
        raise RequestError(400, "calendar-query needs <filter><comp-filter name=\"VCALENDAR\">")
    # Every filter is tried against every member, on the event loop.
    filters = sum(1 for n in node.iter() if n.tag in _FILTER_TAGS)
    if filters > MAX_FILTERS:
        raise RequestError(400, f"calendar-query has {filters} filters; at most {MAX_FILTERS}")
    return _comp_filter(node)


def parse_time_range(node: ET.Element | None) -> TimeRange | None:
    if node is None:
        return None
    start, end = _parse_utc(node.get("start"), "start"), _parse_utc(node.get("end"), "end")
    if start is not None and end is not None and end <= start:
        raise RequestError(400, "time-range end must be after start")
    return TimeRange(start, end)


def _comp_filter(node: ET.Element) -> CompFilter:
    name = _filter_name(node, "comp-filter")
    time_range = parse_time_range(node.find(tag(CALDAV, "time-range")))
    if time_range is not None and name not in _TIMED:
        raise Precondition(CALDAV, "valid-filter", f"a time-range cannot filter {name} "
                           "(only VEVENT, VTODO, VJOURNAL, VFREEBUSY, VALARM)")
    return CompFilter(name, node.find(tag(CALDAV, "is-not-defined")) is not None, time_range,
                      tuple(_prop_filter(p) for p in node.findall(tag(CALDAV, "prop-filter"))),
                      tuple(_comp_filter(c) for c in node.findall(tag(CALDAV, "comp-filter"))))


def _prop_filter(node: ET.Element) -> PropFilter:
    text = node.find(tag(CALDAV, "text-match"))
    return PropFilter(_filter_name(node, "prop-filter"),
                      node.find(tag(CALDAV, "is-not-defined")) is not None,
                      parse_time_range(node.find(tag(CALDAV, "time-range"))),
                      None if text is None else parse_text_match(text),
                      tuple(_param_filter(p) for p in node.findall(tag(CALDAV, "param-filter"))))


def _param_filter(node: ET.Element) -> ParamFilter:
    text = node.find(tag(CALDAV, "text-match"))
    return ParamFilter(_filter_name(node, "param-filter"),
                       node.find(tag(CALDAV, "is-not-defined")) is not None,
                       None if text is None else parse_text_match(text))


def _filter_name(node: ET.Element, kind: str) -> str:
    name = node.get("name", "").strip().upper()
    if not name:
        raise Precondition(CALDAV, "valid-filter", f"a {kind} needs a name")
    return name


def parse_text_match(node: ET.Element, default_collation: str = "i;ascii-casemap") -> TextMatch:
    collation = node.get("collation", default_collation)
    if collation not in COLLATIONS:
        raise Precondition(CALDAV, "supported-collation", f"collation {collation[:40]!r} is not "
                           f"supported; use one of {', '.join(COLLATIONS)}")
    match_type = node.get("match-type", "contains")
    if match_type not in _MATCH_TYPES:
        raise RequestError(400, f"text-match match-type must be one of {', '.join(_MATCH_TYPES)}")
    negate = node.get("negate-condition", "no").strip().lower() == "yes"
    return TextMatch(node.text or "", collation, negate, match_type)


def _parse_utc(value: str | None, what: str) -> int | None:
    if value is None:
        return None
    try:
        moment = _utc_basic(value.strip())
    except ValueError as exc:
        raise RequestError(400, f"time-range {what}={echo(value)} is not a UTC date-time "
                           "like 20261201T000000Z") from exc
    # Clients write open ranges as far-off years (00010101T000000Z): no data lies
    # outside the bounds, so clamping changes no answer and keeps arithmetic in range.
    return int(min(max(moment, EARLIEST), LATEST).timestamp())


_BASIC_UTC = re.compile(r"(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z")


def _utc_basic(text: str) -> datetime:
    """``strptime(text, "%Y%m%dT%H%M%SZ")`` in UTC; the usual fixed-width form read
    directly (strptime costs tens of µs, and every free-busy-query has two)."""
    match = _BASIC_UTC.fullmatch(text)
    if match is not None:
        year, month, day, hour, minute, second = map(int, match.groups())
        with contextlib.suppress(ValueError):  # strptime says what is wrong
            return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    return datetime.strptime(text, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def _fold(text: str, collation: str) -> str:
    if collation == "i;octet":
        return text
    if collation == "i;ascii-casemap":
        return text.translate(_ASCII_LOWER)
    # RFC 5051: each character's titlecase, then canonical decomposition.
    return unicodedata.normalize("NFD", "".join(char.title() for char in text))


def _unescape(value: str) -> str:
    """A TEXT value as its text (RFC 5545 §3.3.11); other values have no backslashes."""
    return _ESCAPED.sub(lambda m: "\n" if m.group(1) in "nN" else m.group(1), value)


def _instant(value: str) -> tuple[int, bool] | None:
    """A DATE or DATE-TIME value as a timestamp, and whether it is a date.

    Members carry UTC times only; a floating time is read as UTC.
    """
    text = value.strip()
    try:
        if len(text) == 8:
            day = datetime.strptime(text, "%Y%m%d").replace(tzinfo=UTC)
            return int(day.timestamp()), True
        moment = datetime.strptime(text.removesuffix("Z"), "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None
    return int(moment.timestamp()), False


def _seconds(duration: str) -> int | None:
    match = _DURATION.fullmatch(duration.strip())
    if match is None:
        return None
    weeks, days, hours, minutes, seconds = (int(g or 0) for g in match.groups()[1:])
    total = (((weeks * 7 + days) * 24 + hours) * 60 + minutes) * 60 + seconds
    return -total if match.group(1) == "-" else total


def _first(component: Component, name: str) -> str | None:
    return next((p.value for p in component.properties if p.name == name), None)


def _overlaps(component: Component, time_range: TimeRange) -> bool:
    """A VEVENT against a time-range, by RFC 4791 §9.9's table.

    Members are single, non-recurring VEVENTs; other components have no
    DTSTART here and so never overlap.
    """
    dtstart = _first(component, "DTSTART")
    start = None if dtstart is None else _instant(dtstart)
    if start is None:
        return False
    begin, is_date = start
    dtend, duration = _first(component, "DTEND"), _first(component, "DURATION")
    end = None if dtend is None else _instant(dtend)
    if end is not None:
        return time_range.overlaps(begin, end[0])
    length = None if duration is None else _seconds(duration)
    if length is None and is_date:
        length = 86400
    if length:
        return time_range.overlaps(begin, begin + length)
    return time_range.contains(begin)
