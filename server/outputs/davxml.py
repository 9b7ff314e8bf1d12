"""WebDAV/CalDAV XML: reading untrusted request bodies and writing multistatus answers.

Bodies are parsed with defusedxml, so a DTD, an entity (billion laughs) or an
external reference is refused before anything is expanded; size is bounded by
the app (64 KiB), nesting and element count here. Answers are built as
ElementTree elements, never by string concatenation, so no text can add XML.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from server.errors import RequestError

DAV = "DAV:"
CALDAV = "urn:ietf:params:xml:ns:caldav"
CALSERVER = "http://calendarserver.org/ns/"
# A calendar-query's deepest real filter (VCALENDAR > VEVENT > VALARM > prop-filter >
# param-filter > text-match) is under ten elements deep; filters are read recursively.
MAX_DEPTH = 24
# A 64 KiB body of short hrefs has about 2,000 elements.
MAX_ELEMENTS = 4000

_PREFIXES = {DAV: "D", CALDAV: "C", CALSERVER: "CS"}
for _uri, _prefix in _PREFIXES.items():
    ET.register_namespace(_prefix, _uri)


def tag(namespace: str, name: str) -> str:
    return f"{{{namespace}}}{name}"


class Precondition(Exception):
    """A failed DAV precondition: answered with its status and a DAV:error body naming it."""

    def __init__(self, namespace: str, condition: str, reason: str, status: int = 403) -> None:
        super().__init__(reason)
        self.namespace = namespace
        self.condition = condition
        self.status = status


def parse_body(body: bytes) -> ET.Element | None:
    """The request's XML root, or None for an empty body; 400 for anything unsafe or broken."""
    if not body.strip():
        return None
    try:
        root: ET.Element = fromstring(body, forbid_dtd=True, forbid_entities=True,
                                      forbid_external=True)
    except DefusedXmlException as exc:
        raise RequestError(400, "DTDs and entities are not accepted in request bodies") from exc
    except ET.ParseError as exc:
        raise RequestError(400, f"the body is not well-formed XML ({exc})") from exc
    _check_shape(root)
    return root


def _check_shape(root: ET.Element) -> None:
    """400 for a body nested deeper or with more elements than any client sends: the
    readers of filters recurse, and every element costs work later."""
    count = 0
    pending = [(root, 1)]
    while pending:
        node, depth = pending.pop()
        count += 1
        if depth > MAX_DEPTH:
            raise RequestError(400, f"the body nests elements more than {MAX_DEPTH} deep")
        if count > MAX_ELEMENTS:
            raise RequestError(400, f"the body has more than {MAX_ELEMENTS} elements")
        pending.extend((child, depth + 1) for child in node)


def require_root(root: ET.Element | None, namespace: str, name: str) -> ET.Element:
    if root is None or root.tag != tag(namespace, name):
        found = "an empty body" if root is None else f"<{root.tag}>"
        raise RequestError(400, f"expected a <{name}> element in {namespace}, got {found}")
    return root


def requested_props(parent: ET.Element | None) -> list[str] | None:
    """The property tags of a <prop> child; None for allprop (or no <prop> at all)."""
    if parent is None:
        return None
    prop = parent.find(tag(DAV, "prop"))
    if prop is None:
        return None
    return [child.tag for child in prop]


def hrefs(root: ET.Element) -> list[str]:
    return [(href.text or "").strip() for href in root.iter(tag(DAV, "href"))]


@dataclass
class PropResult:
    """One resource's answer: found properties (elements) and missing ones (tags)."""

    href: str
    found: list[ET.Element] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def element(namespace: str, name: str, text: str | None = None,
            children: Iterable[ET.Element] = ()) -> ET.Element:
    node = ET.Element(tag(namespace, name))
    if text is not None:
        node.text = text
    node.extend(children)
    return node


def href_element(href: str) -> ET.Element:
    return element(DAV, "href", href)


def multistatus(results: Sequence[PropResult], *, missing_hrefs: Sequence[str] = (),
                sync_token: str | None = None, truncated_href: str | None = None) -> bytes:
    """A 207 body: one <response> per result, 404s for unknown hrefs, then the token."""
    root = element(DAV, "multistatus")
    for result in results:
        response = ET.SubElement(root, tag(DAV, "response"))
        response.append(href_element(result.href))
        if result.found:
            response.append(_propstat(result.found, "200 OK"))
        if result.missing:
            response.append(_propstat([ET.Element(t) for t in result.missing], "404 Not Found"))
        if not result.found and not result.missing:
            # A member gone since the client's sync token (RFC 6578 §3.5).
            response.append(element(DAV, "status", "HTTP/1.1 404 Not Found"))
    for href in missing_hrefs:
        response = ET.SubElement(root, tag(DAV, "response"))
        response.append(href_element(href))
        response.append(element(DAV, "status", "HTTP/1.1 404 Not Found"))
    if truncated_href is not None:
        response = ET.SubElement(root, tag(DAV, "response"))
        response.append(href_element(truncated_href))
        response.append(element(DAV, "status", "HTTP/1.1 507 Insufficient Storage"))
        response.append(element(DAV, "error", children=[
            element(DAV, "number-of-matches-within-limits")]))
    if sync_token is not None:
        root.append(element(DAV, "sync-token", sync_token))
    return _serialize(root)


def _propstat(props: list[ET.Element], status: str) -> ET.Element:
    return element(DAV, "propstat", children=[
        element(DAV, "prop", children=props), element(DAV, "status", f"HTTP/1.1 {status}")])


def error_body(namespace: str, condition: str, *children: ET.Element,
               message: str = "") -> bytes:
    """A DAV:error body naming the failed precondition (RFC 4918 §16).

    A ``message`` for people goes into a comment, which parsers skip (no "--"
    in it, so no text can end the comment early).
    """
    root = element(DAV, "error", children=[element(namespace, condition, children=children)])
    if message:
        root.append(ET.Comment(" " + re.sub(r"-{2,}", "-", message) + " "))
    return _serialize(root)


def document(root: ET.Element) -> bytes:
    """A whole XML answer (a REPORT whose body is not a multistatus)."""
    return _serialize(root)


def _serialize(root: ET.Element) -> bytes:
    body: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=False)
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + body
