"""Splitting a feed into content lines, checked against the plain definition.

The splitter reads several feeds at once, so it avoids copies of the whole
text and a list per line; whatever the line breaks, it must give the lines
(and the line numbers in messages) the plain definition gives.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.ics_feed import _line_breaks, _line_starts, _unfold

PIECES = ["BEGIN", ":", "x", " ", "\t", "\r", "\n", "\r\n", "\x0b", "\x0c", "\x1c", "\x85",
          "\u2028", "é"]
texts = st.lists(st.sampled_from(PIECES), max_size=40).map("".join)


def physical(text: str) -> list[str]:
    """CR, LF and CRLF end a line; nothing else does."""
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def unfolded(text: str) -> list[str]:
    """RFC 5545 §3.1: a line starting with a space or tab continues the previous one."""
    lines: list[str] = []
    for raw in physical(text):
        if raw[:1] in (" ", "\t") and lines:
            lines[-1] += raw[1:]
        elif raw:
            lines.append(raw)
    return lines


@settings(max_examples=500, deadline=None)
@given(texts)
def test_lines_are_those_of_the_plain_definition(text: str) -> None:
    assert _unfold(text) == unfolded(text)
    assert _line_breaks(text) == len(physical(text)) - 1
    starts = [n for n, raw in enumerate(physical(text))
              if raw and not (raw[:1] in (" ", "\t") and any(physical(text)[:n]))]
    assert _line_starts(text) == starts
