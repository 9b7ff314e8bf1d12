"""An iCalendar feed split into items: one per UID, master and overrides together.

This works on content lines, not on parsed objects: parsing is the costly part,
and only items whose text changed are ever parsed (by expansion). It is pure
text work, run by the ICS adapter on the executor it is given (the server's
expansion worker processes).

Every VEVENT of a feed ends up in an item or in the skipped list, named; no
other outcome exists (the corpus tests check that on real feeds). What is
read leniently or left out as not busy time is reported in ``FeedContents`` so
the adapter logs it once per changed feed.
"""

from __future__ import annotations

import functools
import hashlib
import re
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass, field

from adapters.base import BadUpstreamData, Item, SkippedItem

MAX_KEY_LENGTH = 200
# Bounds for hostile feeds, far beyond anything a calendar app writes: parsing
# past them costs seconds of CPU and hundreds of MiB (the item is skipped).
MAX_NESTING = 8  # VCALENDAR > VEVENT > VALARM is 3
MAX_COMPONENTS_PER_ITEM = 2000  # a master and its RECURRENCE-ID overrides
MAX_ZONE_LINES = 2000  # a real VTIMEZONE has tens
# A longer content line (a giant DESCRIPTION or inline ATTACH) is dropped: busy
# time never needs it, and parsing it cost seconds and ~150 MiB at 20 MB.
MAX_LINE_CHARS = 256 * 1024
# The components that can make busy time; VTIMEZONEs travel with the items using them.
BUSY_KINDS = frozenset({"VEVENT", "VFREEBUSY"})


@dataclass(frozen=True, slots=True)
class FeedContents:
    """A split feed: its items, what was skipped (by key, with why), and what was read
    leniently (``warnings``) or left out as not busy time (``ignored``: kind -> count)."""

    items: list[Item]
    skipped: list[SkippedItem]
    warnings: list[str] = field(default_factory=list)
    ignored: dict[str, int] = field(default_factory=dict)


def split_feed(body: bytes) -> tuple[list[Item], list[SkippedItem]]:
    """Split a feed into one item per UID; raise BadUpstreamData if it is no calendar."""
    contents = read_feed(body)
    return contents.items, contents.skipped


def read_feed(body: bytes) -> FeedContents:
    """Split a feed into one item per UID; raise BadUpstreamData if it is no calendar.

    Each item keeps its upstream lines verbatim, wrapped in a VCALENDAR with its
    calendar's X-WR-TIMEZONE and the VTIMEZONEs it needs.

    A body that is not iCalendar at all (an HTML login page, an empty answer) or
    that was cut short, or whose components do not nest, must fail: reading it
    as "a calendar with fewer events" would erase busy blocks. Errors name the
    physical line (CR, LF and CRLF each end one) of the body as received.
    """
    decoded = _decode(body)
    text = decoded.lstrip("\ufeff \t\r\n")
    if not text[:15].upper().startswith("BEGIN:VCALENDAR"):
        raise BadUpstreamData(f"not an iCalendar feed ({_describe(text)})")
    scan = _Scan(text, skipped_lines=_line_breaks(decoded[:len(decoded) - len(text)]))
    zones: dict[str, list[str]] = {}
    groups: dict[str, list[list[str]]] = {}
    headers: dict[str, str | None] = {}
    for header, start, component in scan.components():
        kind = component[0][6:].strip().upper()
        if kind == "VTIMEZONE":
            zones[_property(component, "TZID") or ""] = component
        elif kind in BUSY_KINDS:
            key = _component_key(component)
            groups.setdefault(key, []).append(component)
            headers.setdefault(key, header)
        else:
            scan.not_busy(kind, start, component)
    for key, members in groups.items():
        problem = _problem(members, zones)
        if problem:
            scan.skipped.append(SkippedItem(key, problem))
        else:
            scan.items.append(_item(key, members, zones, headers[key]))
    return FeedContents(scan.items, scan.skipped, scan.warnings(), scan.ignored)


@dataclass
class _Calendar:
    """A VCALENDAR being read: its X-WR-TIMEZONE line and the components inside it
    (with the zone line they were read under: None until a calendar around them gives one)."""

    zone_line: str | None = None
    components: list[tuple[str | None, int, list[str]]] = field(default_factory=list)


class _Scan:
    """One pass over a feed's lines, nesting checked, with what it found on the way."""

    def __init__(self, text: str, skipped_lines: int) -> None:
        self.text = text
        self.skipped_lines = skipped_lines  # blank lines before BEGIN:VCALENDAR
        self.lines = _unfold(text)
        self.items: list[Item] = []
        self.skipped: list[SkippedItem] = []
        self.ignored: dict[str, int] = {}
        self._line_starts: list[int] | None = None
        # What was read leniently: count and the first line, for one warning each.
        self._stray = 0
        self._stray_first = 0
        self._nested: list[int] = []
        self._bad_zones: list[tuple[int, str]] = []

    def components(self) -> Iterator[tuple[str | None, int, list[str]]]:
        """Each component directly inside a VCALENDAR, once its calendar is closed: the
        calendar's X-WR-TIMEZONE line, the component's first line index, its lines."""
        stack: list[tuple[str, int]] = []  # what is open: name, index of its BEGIN line
        calendars: list[_Calendar] = []  # the VCALENDARs at the bottom of the stack
        current: list[str] = []
        start = 0
        too_deep = False
        for index, line in enumerate(self.lines):
            if len(line) > MAX_LINE_CHARS:
                continue
            upper = line[:20].upper()
            depth = len(stack)
            if upper.startswith("BEGIN:"):
                name = line[6:].strip().upper()
                stack.append((name, index))
                if depth > len(calendars):
                    # Nesting is still checked past the limit, but those lines are
                    # not kept: the parser's cost grows with the depth.
                    too_deep = too_deep or depth >= MAX_NESTING
                    if depth < MAX_NESTING:
                        current.append(line)
                elif name == "VCALENDAR":
                    calendars.append(self._open_calendar(index, depth))
                else:
                    current, start, too_deep = [line], index, False
            elif upper.startswith("END:"):
                name = line[4:].strip().upper()
                if not stack:
                    self._stray_line(index)
                    continue
                if stack[-1][0] != name:
                    raise self._error(index, f"END:{_safe(name)} does not close "
                                             f"{_safe(stack[-1][0])} (opened at line "
                                             f"{self.line(stack[-1][1])})")
                stack.pop()
                if depth == len(calendars):
                    yield from self._close_calendar(calendars)
                    continue
                if depth <= MAX_NESTING:
                    current.append(line)
                if depth == len(calendars) + 1:
                    self._component_read(calendars, start, current, too_deep)
                    current = []
            elif depth > len(calendars):
                if depth <= MAX_NESTING:
                    current.append(line)
            elif not calendars:
                self._stray_line(index)
            elif upper.startswith("X-WR-TIMEZONE"):
                self._zone_line(calendars[-1], index, line)
        if stack:
            name, opened = stack[-1]
            raise BadUpstreamData(f"the feed is cut short: {_safe(name)} opened at line "
                                  f"{self.line(opened)} is never closed")

    def _open_calendar(self, index: int, depth: int) -> _Calendar:
        if depth:
            # A VCALENDAR inside a VCALENDAR (seen in a real corpus): its events are
            # read as the outer calendar's rather than dropped. Each level takes room
            # that VEVENT > VALARM need under MAX_NESTING.
            if depth + 3 > MAX_NESTING:
                raise self._error(index, f"VCALENDARs nested {depth + 1} deep")
            self._nested.append(index)
        return _Calendar()

    def _close_calendar(self, calendars: list[_Calendar]) -> Iterator[
            tuple[str | None, int, list[str]]]:
        closed = calendars.pop()
        found = [(header or closed.zone_line, start, lines)
                 for header, start, lines in closed.components]
        if calendars:
            calendars[-1].components += found
        else:
            yield from found

    def _component_read(self, calendars: list[_Calendar], start: int, lines: list[str],
                        too_deep: bool) -> None:
        if too_deep:
            self.skipped.append(SkippedItem(
                _component_key(lines), f"components nested more than {MAX_NESTING} deep"))
        elif not calendars:
            # After the last END:VCALENDAR: its lines are not a calendar's; an event
            # there is skipped by name, anything else is a stray line.
            if _holds_vevent(lines) or lines[0][6:].strip().upper() in BUSY_KINDS:
                kind = lines[0][6:].strip().upper()
                self.skipped.append(SkippedItem(
                    _component_key(lines),
                    f"a {_safe(kind)} outside any VCALENDAR (line {self.line(start)})"))
            else:
                self._stray_line(start, len(lines))
        else:
            if lines[0][6:].strip().upper() == "VEVENT" and _holds_vevent(lines):
                outer = _property(lines, "UID") or ""
                self._skip_nested(start, lines, f"VEVENT {_safe(outer)}")
            calendars[-1].components.append((None, start, lines))

    def _stray_line(self, index: int, count: int = 1) -> None:
        """Text after the last END:VCALENDAR (a cache's comment): not truncation, ignored."""
        if not self._stray:
            self._stray_first = index
        self._stray += count

    def _zone_line(self, calendar: _Calendar, index: int, line: str) -> None:
        name = line.partition(":")[2].strip()
        if name in _iana_zones():
            calendar.zone_line = line
        else:
            # x-wr-timezone would fail on it (recurring events skipped) while plain
            # events ignored it: now both read floating times in the source's zone.
            self._bad_zones.append((index, name))

    def not_busy(self, kind: str, start: int, component: list[str]) -> None:
        """A VTODO, VJOURNAL, VAVAILABILITY or X- component: no busy time, only counted,
        unless it wraps a VEVENT, which is then skipped by name rather than lost."""
        if _holds_vevent(component):
            self._skip_nested(start, component, f"a {_safe(kind)}")
        else:
            self.ignored[kind] = self.ignored.get(kind, 0) + 1

    def _skip_nested(self, start: int, component: list[str], where: str) -> None:
        """Each VEVENT inside ``component``, skipped by its own key (the library reads
        no VEVENT inside another component)."""
        for inner in _nested_vevents(component):
            uid = _property(inner, "UID") or ""
            self.skipped.append(SkippedItem(
                _component_key(inner),
                f"a VEVENT (UID {_safe(uid)}) inside {where} (line {self.line(start)}) "
                "is not read"))

    def warnings(self) -> list[str]:
        found = []
        if self._stray:
            found.append(f"ignored {self._stray} line(s) outside any VCALENDAR, "
                         f"from line {self.line(self._stray_first)}")
        if self._nested:
            found.append(f"read {len(self._nested)} VCALENDAR(s) nested inside another as "
                         f"part of it, from line {self.line(self._nested[0])}")
        if self._bad_zones:
            index, name = self._bad_zones[0]
            found.append(f"X-WR-TIMEZONE {_safe(name)} (line {self.line(index)}) is no time "
                         "zone fbproxy knows: ignored, floating times are read in the "
                         "source's zone")
        return found

    def line(self, index: int) -> int:
        """The physical line number (from 1) where unfolded line ``index`` starts."""
        if self._line_starts is None:
            self._line_starts = _line_starts(self.text)
        return self.skipped_lines + self._line_starts[index] + 1

    def _error(self, index: int, message: str) -> BadUpstreamData:
        return BadUpstreamData(f"line {self.line(index)}: {message}")


def _problem(members: list[list[str]], zones: dict[str, list[str]]) -> str | None:
    """Why an item is too costly to read, or None."""
    if len(members) > MAX_COMPONENTS_PER_ITEM:
        return (f"{len(members)} components share this UID "
                f"(more than {MAX_COMPONENTS_PER_ITEM})")
    for tzid in sorted({tz for member in members for tz in _tzids(member)}):
        zone = zones.get(tzid, ())
        if len(zone) > MAX_ZONE_LINES and tzid not in _iana_zones():
            return f"its VTIMEZONE {tzid[:60]!r} has {len(zone)} lines " \
                   f"(more than {MAX_ZONE_LINES})"
    return None


def _item(key: str, members: list[list[str]], zones: dict[str, list[str]],
          header: str | None) -> Item:
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//fbproxy//item//EN"]
    if header:
        lines.append(header)
    for tzid in sorted({tz for member in members for tz in _tzids(member)}):
        # A zone Python knows by name needs no definition: parsing one is
        # the slowest part of reading an item, and the IANA rules win anyway.
        if tzid in zones and tzid not in _iana_zones():
            lines += zones[tzid]
    for member in members:
        lines += member
    lines.append("END:VCALENDAR")
    return Item(key=key, ical="\r\n".join(lines) + "\r\n")


def _holds_vevent(component: list[str]) -> bool:
    return any(line[:12].upper() == "BEGIN:VEVENT" for line in component[1:])


def _nested_vevents(component: list[str]) -> list[list[str]]:
    """The lines of each VEVENT inside ``component`` (the outermost ones, at any depth)."""
    found: list[list[str]] = []
    depth = 0  # of components inside a VEVENT being collected
    for line in component[1:-1]:
        upper = line[:12].upper()
        if depth:
            found[-1].append(line)
            if upper.startswith("BEGIN:"):
                depth += 1
            elif upper.startswith("END:"):
                depth -= 1
        elif upper == "BEGIN:VEVENT":
            found.append([line])
            depth = 1
    return found


def _safe(text: str, limit: int = 40) -> str:
    """Upstream text for an error message (it reaches the API and status page):
    letters, digits and spaces only, so it can carry no markup or content line."""
    return "'" + re.sub(r"[^A-Za-z0-9 ]", ".", text[:limit]) + "'"


def _describe(text: str) -> str:
    if not text:
        return "the body is empty"
    if text[:200].lower().lstrip().startswith(("<!doctype html", "<html")):
        return "an HTML page"
    return f"starts with {_safe(text)}"


def _decode(body: bytes) -> str:
    """UTF-8 (RFC 5545); a UTF-16 export (some Windows tools) is read by its BOM."""
    if body[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return body.decode("utf-16", errors="replace")
    return body.decode("utf-8", errors="replace")


def _physical_lines(text: str) -> list[str]:
    """CR, LF and CRLF all end a line (feeds written on any system)."""
    if not any(mark in text for mark in _OTHER_BREAKS):
        # The same lines (but a last empty one) in one pass, without two copies
        # of the feed on the way: several feeds are read at once.
        return text.splitlines()
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


# What str.splitlines() also ends a line on, and iCalendar does not.
_OTHER_BREAKS = ("\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029")


def _line_breaks(text: str) -> int:
    return text.count("\r") + text.count("\n") - text.count("\r\n")  # CRLF is one


def _unfold(text: str) -> list[str]:
    """RFC 5545 §3.1: a line starting with a space or tab continues the previous one."""
    # Continuations are joined once per line: appending each to a growing
    # string was quadratic (a 20 MB folded DESCRIPTION never finished). Only
    # a folded line gets a list of its parts: one per line cost 10 MB a feed.
    lines: list[str] = []
    parts: list[str] = []  # the last line's, while it is continued
    for raw in _physical_lines(text):
        if raw[:1] in (" ", "\t") and lines:
            if not parts:
                parts.append(lines[-1])
            parts.append(raw[1:])
        elif raw:
            if parts:
                lines[-1] = "".join(parts)
                parts = []
            lines.append(raw)
    if parts:
        lines[-1] = "".join(parts)
    return lines


def _line_starts(text: str) -> list[int]:
    """For each line ``_unfold`` returns, the physical line (from 0) it starts on.

    Only error and warning messages need it, so it is a second pass, not a cost
    of every feed."""
    starts: list[int] = []
    for number, raw in enumerate(_physical_lines(text)):
        if raw[:1] in (" ", "\t") and starts:
            continue
        if raw:
            starts.append(number)
    return starts


def _property(component: list[str], name: str) -> str | None:
    """The value of a property of the component itself (not of a nested VALARM)."""
    depth = 0
    for line in component[1:-1]:
        upper = line[:len(name) + 1].upper()
        if line[:6].upper() == "BEGIN:":
            depth += 1
        elif line[:4].upper() == "END:":
            depth -= 1
        elif depth == 0 and upper in (f"{name}:", f"{name};"):
            return line.partition(":")[2].strip()
    return None


def _component_key(component: list[str]) -> str:
    uid = _property(component, "UID")
    if uid and len(uid) <= MAX_KEY_LENGTH:
        return uid
    material = uid if uid else "\n".join(component)
    return "sha256-" + hashlib.sha256(material.encode()).hexdigest()


_TZID = re.compile(r';TZID=(?:"([^"]*)"|([^;:]*))', re.IGNORECASE)


def _tzids(component: list[str]) -> set[str]:
    return {quoted or plain for line in component for quoted, plain in _TZID.findall(line)}


@functools.cache
def _iana_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())
