"""The busy feed re-render that reuses unchanged VEVENTs writes what icalendar writes whole."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from icalendar import Calendar, vText

from server.booking.availability import BUSY, TENTATIVE, BusyInterval
from server.outputs.feeds import (
    _block_event,
    _calendar,
    block_uid,
    render_busy_feed,
    render_busy_feed_reusing,
)

BASE = 1_795_000_000
blocks_strategy = st.lists(
    st.builds(lambda start, length, tentative: BusyInterval(
        BASE + start * 900, BASE + (start + length) * 900, TENTATIVE if tentative else BUSY),
        st.integers(0, 2000), st.integers(1, 16), st.booleans()),
    max_size=40, unique=True)
holds_strategy = st.lists(
    st.tuples(st.sampled_from(["bk_a-hold@fbproxy", "bk_b-hold@fbproxy"]),
              st.integers(0, 2000), st.integers(1, 8),
              st.text(max_size=30)),
    max_size=3, unique_by=lambda hold: hold[0])
stamps = st.sampled_from([datetime(2026, 11, 25, 12, tzinfo=UTC),
                          datetime(2026, 11, 25, 13, tzinfo=UTC)])


def whole(name: str, blocks: list[BusyInterval], stamp: datetime,
          holds: list[tuple[str, int, int, str]]) -> bytes:
    """What the feed was before reuse: one icalendar tree, serialised at once."""
    calendar = _calendar(name, timedelta(minutes=15))
    for block in blocks:
        calendar.add_component(_block_event(block_uid(name, block), block, stamp))
    for uid, start, end, title in holds:
        event = _block_event(uid, BusyInterval(start, end), stamp)
        event["SUMMARY"] = vText(title)
        calendar.add_component(event)
    return bytes(calendar.to_ical())


def as_holds(raw: list[tuple[str, int, int, str]]) -> list[tuple[str, int, int, str]]:
    return [(uid, BASE + s * 900, BASE + (s + n) * 900, title) for uid, s, n, title in raw]


@settings(max_examples=150, deadline=None, derandomize=True)
@given(blocks_strategy, blocks_strategy, holds_strategy, holds_strategy, stamps, stamps)
def test_reusing_render_is_byte_identical(first: list[BusyInterval], second: list[BusyInterval],
                                          first_holds: list[tuple[str, int, int, str]],
                                          second_holds: list[tuple[str, int, int, str]],
                                          first_stamp: datetime,
                                          second_stamp: datetime) -> None:
    holds_one, holds_two = as_holds(first_holds), as_holds(second_holds)
    refresh = timedelta(minutes=15)
    body, events = render_busy_feed_reusing("me", first, stamp=first_stamp, refresh=refresh,
                                            holds=holds_one, previous={})
    assert body == whole("me", first, first_stamp, holds_one)
    # The next render, with some of the same blocks: the reused VEVENTs change nothing.
    changed = [*first[: len(first) // 2], *second]
    again, _ = render_busy_feed_reusing("me", changed, stamp=second_stamp, refresh=refresh,
                                        holds=holds_two, previous=events)
    assert again == whole("me", changed, second_stamp, holds_two)
    assert again == render_busy_feed("me", changed, stamp=second_stamp, refresh=refresh,
                                     holds=holds_two)
    Calendar.from_ical(again)


def test_only_the_changed_vevents_are_made_again() -> None:
    blocks = [BusyInterval(BASE + i * 3600, BASE + i * 3600 + 1800) for i in range(100)]
    stamp = datetime(2026, 11, 25, 12, tzinfo=UTC)
    _, events = render_busy_feed_reusing("me", blocks, stamp=stamp,
                                         refresh=timedelta(minutes=15), holds=(), previous={})
    marked = {key: b"X" + value for key, value in events.items()}  # reused ones show the mark
    booked = BusyInterval(BASE - 3600, BASE - 1800)
    body, _ = render_busy_feed_reusing("me", [booked, *blocks], stamp=stamp,
                                       refresh=timedelta(minutes=15), holds=(), previous=marked)
    assert body.count(b"XBEGIN:VEVENT") == 100 and body.count(b"BEGIN:VEVENT") == 101
