"""VFREEBUSY objects put together from pieces icalendar wrote once.

``feeds.render_freebusy`` builds the whole icalendar tree for every answer:
for 60 days of a busy calendar that is hundreds of FREEBUSY properties at
about 80 µs each (icalendar looks up each datetime's time zone and folds every
line). Here icalendar still writes every byte, but each piece only once:

- the frame: the VCALENDAR and VFREEBUSY around the periods, per (calendar
  name, refresh), written with placeholder DTSTART, DTEND and DTSTAMP values
  and one placeholder period, and cut at them;
- each period's FREEBUSY content line, per (start, end, status), written many
  at a time and kept by the caller;
- each UTC DATE-TIME value (``vDatetime.to_ical``), per second.

A content line depends on its property's name, parameters and value alone,
and the order of a component's properties on their names alone (icalendar
sorts them; the values of one name stay in the order added), so the pieces put
together are byte for byte what icalendar writes for the whole tree.
tests/test_freebusy_render.py checks that with hypothesis for every path here.

The DTSTAMP is left out of an assembled object (``Stamped``): a CalDAV answer
is stamped with the moment it is sent, a feed with its data's last change.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from icalendar import FreeBusy, vDatetime

from server.booking.availability import BUSY, BusyInterval
from server.outputs.feeds import EventBytes, add_period, clip, freebusy_calendar

# One block's FREEBUSY content line (CRLF included), by (start, end, status).
PeriodLines = dict[tuple[int, int, str], bytes]
_BEGIN = b"BEGIN:VFREEBUSY\r\n"
_END = b"END:VFREEBUSY\r\n"
_FOLD = re.compile(rb"\r\n[ \t]")
# The frame's placeholders: instants no answer carries (each written once, checked).
_PLACEHOLDER_BASE = -2_208_988_800  # 1900-01-01T00:00:00Z
_SLOTS = ("DTSTART", "DTEND", "DTSTAMP")
_PERIOD = "FREEBUSY"


def _utc(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


@functools.lru_cache(maxsize=8192)
def utc_value(ts: int) -> bytes:
    """A UTC DATE-TIME value as icalendar writes it (20261125T120000Z)."""
    return bytes(vDatetime(_utc(ts)).to_ical())  # type: ignore[no-untyped-call]


def stamp_value(stamp: datetime) -> bytes:
    """A DTSTAMP's value: the whole second, in UTC (RFC 5545 §3.8.7.2)."""
    return utc_value(int(stamp.astimezone(UTC).replace(microsecond=0).timestamp()))


@dataclass(frozen=True, slots=True)
class Stamped:
    """An iCalendar object as ``head``, then its DTSTAMP value, then ``tail``."""

    head: bytes
    tail: bytes

    def with_stamp(self, stamp: datetime) -> bytes:
        return b"".join((self.head, stamp_value(stamp), self.tail))


def period_lines(blocks: Sequence[BusyInterval]) -> list[bytes]:
    """Each block's FREEBUSY content line, as icalendar writes it (from ``_LineTemplate``)."""
    return [_line_template(block.status).line(block.start, block.end) for block in blocks]


def icalendar_period_lines(blocks: Sequence[BusyInterval]) -> list[bytes]:
    """Each block's FREEBUSY content line, written by icalendar (one tree for all)."""
    if not blocks:
        return []
    freebusy = FreeBusy()
    for block in blocks:
        add_period(freebusy, _utc(block.start), _utc(block.end), block.status)
    lines = content_lines(bytes(freebusy.to_ical()))
    if len(lines) != len(blocks) + 2 or lines[0] != _BEGIN or lines[-1] != _END:
        raise RuntimeError(f"icalendar wrote {len(lines) - 2} lines for {len(blocks)} periods")
    return lines[1:-1]


@dataclass(frozen=True, slots=True)
class _LineTemplate:
    """icalendar's FREEBUSY line for one period of a status, ready for other periods.

    ``text`` is the line unfolded, the period's two values at ``start_at`` and
    ``end_at``; ``folds`` where icalendar folded it (index in ``text``, separator).
    The values are fixed-width and the line's other characters single octets
    (none a backslash or caret, before which icalendar would fold elsewhere), so
    icalendar folds every period of the status at the same places.
    """

    status: str
    text: bytes
    start_at: int
    end_at: int
    width: int
    folds: tuple[tuple[int, bytes], ...]

    def line(self, start: int, end: int) -> bytes:
        first, last = utc_value(start), utc_value(end)
        if len(first) != self.width or len(last) != self.width:  # not a 4-digit year
            return icalendar_period_lines([BusyInterval(start, end, self.status)])[0]
        text = b"".join((self.text[:self.start_at], first,
                         self.text[self.start_at + self.width:self.end_at], last,
                         self.text[self.end_at + self.width:]))
        parts, done = [], 0
        for at, separator in self.folds:
            parts += [text[done:at], separator]
            done = at
        parts += [text[done:], b"\r\n"]
        return b"".join(parts)


@functools.lru_cache(maxsize=8)
def _line_template(status: str) -> _LineTemplate:
    """The template for ``status``'s periods, from a placeholder period icalendar wrote;
    checked against a second period icalendar writes (RuntimeError if they differ)."""
    start, end = _PLACEHOLDER_BASE + 10, _PLACEHOLDER_BASE + 11
    [folded] = icalendar_period_lines([BusyInterval(start, end, status)])
    pieces = _FOLD.split(folded.removesuffix(b"\r\n"))
    separators = _FOLD.findall(folded)
    text = b"".join(pieces)
    offsets = [sum(map(len, pieces[:n])) for n in range(1, len(pieces))]
    values = [utc_value(start), utc_value(end)]
    if any(text.count(v) != 1 for v in values) or len(values[0]) != len(values[1]):
        raise RuntimeError(f"icalendar's FREEBUSY line is not a template: {folded!r}")
    template = _LineTemplate(status, text, text.index(values[0]), text.index(values[1]),
                             len(values[0]), tuple(zip(offsets, separators, strict=True)))
    sample = BusyInterval(1_796_000_000, 1_796_003_600, status)
    expected = icalendar_period_lines([sample])[0]
    if template.line(sample.start, sample.end) != expected:
        raise RuntimeError(f"icalendar's FREEBUSY lines do not follow {folded!r}")
    return template


def content_lines(text: bytes) -> list[bytes]:
    """``text`` cut into content lines, each with its folded continuations and CRLF."""
    lines: list[bytes] = []
    for physical in text.split(b"\r\n")[:-1]:
        if physical[:1] in (b" ", b"\t") and lines:
            lines[-1] += physical + b"\r\n"
        else:
            lines.append(physical + b"\r\n")
    return lines


@functools.lru_cache(maxsize=256)
def _frame(calendar_name: str, refresh: timedelta | None) -> tuple[bytes | str, ...]:
    """``render_freebusy``'s output for this calendar, cut at its slots: literal bytes,
    and the names of the slots (DTSTART, DTEND, DTSTAMP values; FREEBUSY lines)."""
    slots = {name: _utc(_PLACEHOLDER_BASE + n) for n, name in enumerate(_SLOTS, 1)}
    period = (_utc(_PLACEHOLDER_BASE + 10), _utc(_PLACEHOLDER_BASE + 11), BUSY)
    text = bytes(freebusy_calendar(calendar_name, [period], start=slots["DTSTART"],
                                   end=slots["DTEND"], stamp=slots["DTSTAMP"],
                                   refresh=refresh).to_ical())
    lines = content_lines(text)
    cuts: list[tuple[int, int, str]] = []  # (line, offset in it, slot)
    for name, moment in slots.items():
        line = b"%s:%s\r\n" % (name.encode(), utc_value(int(moment.timestamp())))
        cuts.append((_only(lines, line, name), len(name) + 1, name))
    placeholder = period_lines([BusyInterval(int(period[0].timestamp()),
                                             int(period[1].timestamp()))])[0]
    cuts.append((_only(lines, placeholder, _PERIOD), -1, _PERIOD))
    parts: list[bytes | str] = []
    done = 0
    for index, offset, name in sorted(cuts):
        parts.append(b"".join(lines[done:index]))
        if offset >= 0:  # a value: keep the property's name, leave its value out
            parts += [lines[index][:offset], name, b"\r\n"]
        else:  # the placeholder period: the whole line is the slot
            parts.append(name)
        done = index + 1
    parts.append(b"".join(lines[done:]))
    return tuple(part for part in parts if part != b"")


def _only(lines: list[bytes], line: bytes, what: str) -> int:
    found = [n for n, each in enumerate(lines) if each == line]
    if len(found) != 1:
        raise RuntimeError(f"icalendar's VFREEBUSY frame has {len(found)} {what} placeholders")
    return found[0]


def assemble(calendar_name: str, refresh: timedelta | None, window_start: int,
             window_end: int, lines: Iterable[bytes]) -> Stamped:
    """The VCALENDAR of ``render_freebusy`` with these FREEBUSY lines, DTSTAMP left out.

    ``lines`` are the periods' lines (``period_lines``) in order, clipped to the window.
    """
    values = {"DTSTART": utc_value(window_start), "DTEND": utc_value(window_end)}
    head: bytes | None = None
    out: list[bytes] = []
    for part in _frame(calendar_name, refresh):
        if isinstance(part, bytes):
            out.append(part)
        elif part == _PERIOD:
            out.extend(lines)
        elif part == "DTSTAMP":
            head = b"".join(out)
            out = []
        else:
            out.append(values[part])
    if head is None:
        raise RuntimeError("icalendar's VFREEBUSY frame lost its DTSTAMP")
    return Stamped(head, b"".join(out))


def render_freebusy_reusing(calendar_name: str, blocks: Sequence[BusyInterval], *,
                            window_start: int, window_end: int, stamp: datetime,
                            refresh: timedelta | None,
                            previous: EventBytes) -> tuple[bytes, EventBytes]:
    """``feeds.render_freebusy``, taking each period's line from ``previous`` when it is
    there; also returns this render's lines by (start, end, status), for the next."""
    clipped = clip(blocks, window_start, window_end)
    keys = [(b.start, b.end, b.status) for b in clipped]
    missing = [b for b, key in zip(clipped, keys, strict=True) if key not in previous]
    made = dict(zip(((b.start, b.end, b.status) for b in missing), period_lines(missing),
                    strict=True))
    lines: EventBytes = {key: made.get(key) or previous[key] for key in keys}
    body = assemble(calendar_name, refresh, window_start, window_end,
                    (lines[key] for key in keys)).with_stamp(stamp)
    return body, lines
