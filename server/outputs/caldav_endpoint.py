"""Read-only CalDAV views of the merged calendars (RFC 4791, RFC 6578).

Layout, for a merged calendar NAME (HTTP Basic: user NAME, password its secret):

    /.well-known/caldav            -> /caldav/
    /caldav/                       root: tells who you are (current-user-principal)
    /caldav/principals/NAME/       the principal: where its calendars live
    /caldav/calendars/NAME/        the calendar home
    /caldav/calendars/NAME/busy/   the collection: one member per busy block
    /caldav/calendars/NAME/busy/UID.ics

Everything that would write answers 403 (405 for LOCK/UNLOCK): the view is
derived from the upstream calendars and is never edited here. The one
principal a caller can see is its own; principal-property-search (RFC 3744
§9.4) finds it, so clients that look principals up by name work too.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from server.booking.busy import MAX_QUERY_SPAN, served_freshness
from server.config.model import CalendarConfig
from server.errors import RequestError
from server.outputs.bodies import whole_body
from server.outputs.dav_collection import (
    DAV_COLLECTIONS,
    DavCollections,
    TextMatch,
    current,
    member_body,
    member_component,
    member_etag,
    parse_query_filter,
    parse_time_range,
    sync_token,
    token_position,
)
from server.outputs.davxml import (
    CALDAV,
    CALSERVER,
    DAV,
    Precondition,
    PropResult,
    document,
    element,
    error_body,
    href_element,
    hrefs,
    multistatus,
    parse_body,
    requested_props,
    tag,
)
from server.outputs.freebusy_cache import FREEBUSY_ANSWERS, FreeBusyAnswers, report_body
from server.outputs.guard import wrong_secret
from server.runtime import RUNTIME, Runtime
from server.store import DavCollection, DavMember

ROOT = "/caldav/"
COLLECTION = "busy"
DAV_HEADER = "1, 3, calendar-access"
ALLOWED = "OPTIONS, GET, HEAD, PROPFIND, REPORT"
WRITE_METHODS = {"PUT", "DELETE", "MKCOL", "MKCALENDAR", "PROPPATCH", "MOVE", "COPY", "POST",
                 "ACL"}
SYNC_PAGE = 1000  # members per sync-collection answer at most; the rest on the next call
MAX_MULTIGET = 1000  # hrefs per calendar-multiget, like SYNC_PAGE members per answer
_XML = "application/xml"
_CHALLENGE = {"WWW-Authenticate": 'Basic realm="fbproxy", charset="UTF-8"'}
_REPORTS = (tag(CALDAV, "calendar-query"), tag(CALDAV, "calendar-multiget"),
            tag(CALDAV, "free-busy-query"), tag(DAV, "sync-collection"))
# RFC 3744 §9.4, §9.5: asked of the root, the principals collection or a principal.
_PRINCIPAL_REPORTS = (tag(DAV, "principal-property-search"),
                      tag(DAV, "principal-search-property-set"))
_PRINCIPAL_KINDS = ("root", "principals", "principal")
# The collection's version: what clients compare to decide whether to fetch again.
# Like the members, it is busy data, so it is refused while the calendar is not served.
_VERSION_PROPS = {tag(DAV, "sync-token"), tag(CALSERVER, "getctag"), tag(DAV, "getetag")}


def setup_caldav(app: web.Application) -> None:
    app[DAV_COLLECTIONS] = DavCollections()
    app.router.add_route("*", "/.well-known/caldav", well_known)
    app.router.add_route("*", "/caldav", caldav)
    app.router.add_route("*", "/caldav/{path:.*}", caldav)
    # Clients given just the server's address ask its root who they are.
    app.router.add_route("PROPFIND", "/", caldav)
    app.router.add_route("REPORT", "/", caldav)
    app.router.add_route("OPTIONS", "/", caldav)


async def well_known(request: web.Request) -> web.StreamResponse:
    """RFC 6764: clients start here and follow the redirect."""
    raise web.HTTPMovedPermanently(ROOT)


# -- resources --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Resource:
    kind: str  # root | principals | principal | home | collection | member
    href: str
    member_uid: str = ""


def _paths(name: str) -> dict[str, str]:
    home = f"{ROOT}calendars/{name}/"
    return {"principal": f"{ROOT}principals/{name}/", "home": home,
            "collection": f"{home}{COLLECTION}/"}


def _resolve(path: str, calendar: CalendarConfig) -> Resource:
    """The resource at ``path`` (under /caldav/) for this calendar; 404 for anything else."""
    parts = [p for p in path.split("/") if p]
    paths = _paths(calendar.name)
    if not parts:
        return Resource("root", ROOT)
    if parts == ["principals"]:
        return Resource("principals", f"{ROOT}principals/")
    if parts == ["principals", calendar.name]:
        return Resource("principal", paths["principal"])
    if parts[:2] == ["calendars", calendar.name]:
        if len(parts) == 2:
            return Resource("home", paths["home"])
        if parts[2] == COLLECTION and len(parts) == 3:
            return Resource("collection", paths["collection"])
        if parts[2] == COLLECTION and len(parts) == 4 and parts[3].endswith(".ics"):
            uid = parts[3].removesuffix(".ics")
            return Resource("member", paths["collection"] + parts[3], member_uid=uid)
    raise RequestError(404, "nothing here")


def _authenticate(request: web.Request, runtime: Runtime) -> CalendarConfig:
    """The calendar whose name and secret came in HTTP Basic auth; 401 otherwise."""
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        raise RequestError(401, "log in with the calendar's name and secret", headers=_CHALLENGE)
    try:
        user, _, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise RequestError(401, "malformed Basic credentials", headers=_CHALLENGE) from exc
    calendar = runtime.calendar_for_secret(password)
    # Compare the name in constant time too, so timing says nothing about which part was wrong.
    if calendar is None or not hmac.compare_digest(calendar.name.encode(), user.encode()):
        raise wrong_secret(request, RequestError(401, "wrong calendar name or secret",
                                                 headers=_CHALLENGE))
    return calendar


# -- dispatch -------------------------------------------------------------------


async def caldav(request: web.Request) -> web.StreamResponse:
    try:
        return await _dispatch(request)
    except Precondition as exc:
        body = error_body(exc.namespace, exc.condition, message=str(exc))
        return web.Response(status=exc.status, body=body, content_type=_XML, charset="utf-8")


async def _dispatch(request: web.Request) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    method = request.method
    if method == "OPTIONS":
        return web.Response(headers={"DAV": DAV_HEADER, "Allow": ALLOWED,
                                     "Content-Length": "0"})
    calendar = _authenticate(request, runtime)
    path = request.match_info.get("path", "")
    if method in ("MKCALENDAR", "MKCOL") and _new_calendar_location(path, calendar):
        # RFC 4791 §5.3.1 / RFC 4918 §9.3.1: creating here is refused, not "not found".
        return _read_only(_paths(calendar.name)["home"], "bind")
    resource = Resource("root", "/") if request.path == "/" else _resolve(path, calendar)
    if method in WRITE_METHODS:
        return _read_only(resource.href)
    if method in ("LOCK", "UNLOCK"):
        return web.Response(status=405, headers={"Allow": ALLOWED})
    state = request.app[DAV_COLLECTIONS]
    if method in ("GET", "HEAD"):
        return await _get(request, runtime, state, calendar, resource)
    body = await _body(request)
    if method == "PROPFIND":
        return await _propfind(request, runtime, state, calendar, resource, body)
    if method == "REPORT":
        return await _report(runtime, state, request.app[FREEBUSY_ANSWERS], calendar,
                             resource, body)
    return web.Response(status=405, headers={"Allow": ALLOWED})


async def _body(request: web.Request) -> ET.Element | None:
    """The whole body, however many pieces it arrives in, up to the app's size limit (also
    when it is chunked and has no Content-Length)."""
    return parse_body(await whole_body(request))


def _new_calendar_location(path: str, calendar: CalendarConfig) -> bool:
    """An unused name right under the caller's calendar home."""
    parts = [p for p in path.split("/") if p]
    return len(parts) == 3 and parts[:2] == ["calendars", calendar.name] and \
        parts[2] != COLLECTION


def _read_only(href: str, privilege: str = "write") -> web.Response:
    """403 naming the privilege nobody has here (RFC 3744 §7.1.1)."""
    needed = element(DAV, "privilege", children=[element(DAV, privilege)])
    body = error_body(DAV, "need-privileges", element(DAV, "resource", children=[
        href_element(href), needed]))
    return web.Response(status=403, body=body, content_type=_XML, charset="utf-8")


def _multistatus(body: bytes) -> web.Response:
    return web.Response(status=207, body=body, content_type=_XML, charset="utf-8")


# -- GET ------------------------------------------------------------------------


async def _get(request: web.Request, runtime: Runtime, state: DavCollections,
               calendar: CalendarConfig, resource: Resource) -> web.StreamResponse:
    if resource.kind != "member":
        raise RequestError(405, "only calendar objects can be fetched; use PROPFIND or REPORT")
    await served_freshness(runtime, calendar)
    collection = await current(runtime, state, calendar)
    members = await runtime.store.dav_members(calendar.name, uids=[resource.member_uid])
    if not members:
        raise RequestError(404, "no such busy block (it may have changed; sync again)")
    body = member_body(members[0])
    etag = member_etag(body)
    headers = {"ETag": etag, "Cache-Control": "private, no-cache",
               "DAV": DAV_HEADER, "X-Sync-Token": sync_token(collection)}
    if etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    return web.Response(body=None if request.method == "HEAD" else body, headers=headers,
                        content_type="text/calendar", charset="utf-8")


# -- PROPFIND -------------------------------------------------------------------


async def _propfind(request: web.Request, runtime: Runtime, state: DavCollections,
                    calendar: CalendarConfig, resource: Resource,
                    root: ET.Element | None) -> web.Response:
    if root is not None and root.tag != tag(DAV, "propfind"):
        raise RequestError(400, "expected a <propfind> element in DAV:")
    depth = request.headers.get("Depth", "0").strip().lower()
    if depth not in ("0", "1"):
        body = error_body(DAV, "propfind-finite-depth")
        return web.Response(status=403, body=body, content_type=_XML, charset="utf-8")
    names_only = root is not None and root.find(tag(DAV, "propname")) is not None
    wanted = None if names_only else requested_props(root)
    targets = [resource, *(_children(resource, calendar) if depth == "1" else [])]
    lists_members = resource.kind == "member" or (resource.kind == "collection" and depth == "1")
    # allprop (wanted None) includes getctag and getetag; propname names them.
    shows_version = any(t.kind == "collection" for t in targets) and (
        wanted is None or not _VERSION_PROPS.isdisjoint(wanted))
    collection = None
    members: dict[str, DavMember] = {}
    if lists_members or shows_version:
        # Discovery (resourcetype, displayname, privileges ...) is answered either way.
        await served_freshness(runtime, calendar)
        collection = await current(runtime, state, calendar)
    if resource.kind == "member":
        members = {m.uid: m for m in await runtime.store.dav_members(
            calendar.name, uids=[resource.member_uid])}
        if resource.member_uid not in members:
            raise RequestError(404, "no such busy block (it may have changed; sync again)")
    elif lists_members:
        members = {m.uid: m for m in await runtime.store.dav_members(calendar.name)}
        targets += [_member_resource(calendar, uid) for uid in members]
    results = [_select(target.href, _properties(target, calendar, collection,
                                                members.get(target.member_uid)),
                       wanted, names_only) for target in targets]
    return _multistatus(multistatus(results))


def _children(resource: Resource, calendar: CalendarConfig) -> list[Resource]:
    paths = _paths(calendar.name)
    if resource.kind == "root":
        return [Resource("principals", f"{ROOT}principals/"),
                Resource("home", paths["home"])]
    if resource.kind == "principals":
        return [Resource("principal", paths["principal"])]
    if resource.kind == "home":
        return [Resource("collection", paths["collection"])]
    return []  # a collection's members are added by the caller; members have no children


def _member_resource(calendar: CalendarConfig, uid: str) -> Resource:
    return Resource("member", f"{_paths(calendar.name)['collection']}{uid}.ics", member_uid=uid)


PropFactory = Callable[[], ET.Element]


def _properties(resource: Resource, calendar: CalendarConfig,
                collection: DavCollection | None,
                member: DavMember | None) -> dict[str, PropFactory]:
    """Every property the resource has, by tag (built only when asked for)."""
    paths = _paths(calendar.name)

    def href_prop(namespace: str, name: str, href: str) -> PropFactory:
        return lambda: element(namespace, name, children=[href_element(href)])

    def text_prop(namespace: str, name: str, text: str) -> PropFactory:
        return lambda: element(namespace, name, text)

    props: dict[str, PropFactory] = {
        tag(DAV, "current-user-principal"): href_prop(DAV, "current-user-principal",
                                                      paths["principal"]),
        tag(DAV, "principal-collection-set"): href_prop(DAV, "principal-collection-set",
                                                        f"{ROOT}principals/"),
        tag(DAV, "current-user-privilege-set"): lambda: element(
            DAV, "current-user-privilege-set", children=[
                element(DAV, "privilege", children=[element(DAV, "read")]),
                element(DAV, "privilege", children=[element(CALDAV, "read-free-busy")]),
                element(DAV, "privilege", children=[
                    element(DAV, "read-current-user-privilege-set")])]),
    }
    resourcetype = {
        "root": [element(DAV, "collection")], "principals": [element(DAV, "collection")],
        "principal": [element(DAV, "collection"), element(DAV, "principal")],
        "home": [element(DAV, "collection")],
        "collection": [element(DAV, "collection"), element(CALDAV, "calendar")],
        "member": [],
    }[resource.kind]
    props[tag(DAV, "resourcetype")] = lambda: element(DAV, "resourcetype",
                                                      children=resourcetype)
    if resource.kind in ("principal", "home", "collection"):
        props[tag(DAV, "displayname")] = text_prop(
            DAV, "displayname", calendar.name if resource.kind != "collection"
            else f"{calendar.name} (busy)")
        props[tag(DAV, "owner")] = href_prop(DAV, "owner", paths["principal"])
    if resource.kind == "principal":
        props[tag(DAV, "principal-URL")] = href_prop(DAV, "principal-URL", paths["principal"])
        props[tag(CALDAV, "calendar-home-set")] = href_prop(CALDAV, "calendar-home-set",
                                                            paths["home"])
    if resource.kind in _PRINCIPAL_KINDS:
        props[tag(DAV, "supported-report-set")] = lambda: _report_set(_PRINCIPAL_REPORTS)
    if resource.kind == "collection" and collection is not None:
        token = sync_token(collection)
        props.update({
            tag(DAV, "sync-token"): text_prop(DAV, "sync-token", token),
            tag(CALSERVER, "getctag"): text_prop(CALSERVER, "getctag", token),
            tag(DAV, "getetag"): text_prop(DAV, "getetag", f'"{collection.last_seq}"'),
        })
    if resource.kind == "collection":
        props.update({
            tag(CALDAV, "calendar-description"): text_prop(
                CALDAV, "calendar-description",
                f"When {calendar.name} is busy (read-only, merged by fbproxy)"),
            tag(CALDAV, "supported-calendar-component-set"): lambda: element(
                CALDAV, "supported-calendar-component-set", children=[_comp("VEVENT")]),
            tag(CALDAV, "supported-calendar-data"): lambda: element(
                CALDAV, "supported-calendar-data", children=[_calendar_data_type()]),
            tag(DAV, "supported-report-set"): lambda: _report_set(_REPORTS),
        })
    if resource.kind == "member" and member is not None:
        body = member_body(member)
        props.update({
            tag(DAV, "getetag"): text_prop(DAV, "getetag", member_etag(body)),
            tag(DAV, "getcontenttype"): text_prop(
                DAV, "getcontenttype", "text/calendar; charset=utf-8; component=VEVENT"),
            tag(DAV, "getcontentlength"): text_prop(DAV, "getcontentlength", str(len(body))),
            tag(CALDAV, "calendar-data"): text_prop(CALDAV, "calendar-data", body.decode()),
        })
    return props


def _report_set(reports: tuple[str, ...]) -> ET.Element:
    return element(DAV, "supported-report-set", children=[
        element(DAV, "supported-report", children=[
            element(DAV, "report", children=[ET.Element(report)])]) for report in reports])


def _comp(name: str) -> ET.Element:
    node = element(CALDAV, "comp")
    node.set("name", name)
    return node


def _calendar_data_type() -> ET.Element:
    node = element(CALDAV, "calendar-data")
    node.set("content-type", "text/calendar")
    node.set("version", "2.0")
    return node


# allprop answers RFC 4918's own live properties (§9.1) and getctag, whose spec asks
# for it there. The rest are asked for by name: RFC 3744 §5, RFC 4791 §5.2 and §6.2,
# RFC 6578 §4 keep theirs out of allprop, and calendar-data is large (RFC 4791 §9.6).
_ALLPROP = {tag(DAV, "resourcetype"), tag(DAV, "displayname"), tag(DAV, "getetag"),
            tag(DAV, "getcontenttype"), tag(DAV, "getcontentlength"),
            tag(CALSERVER, "getctag")}


def _select(href: str, available: dict[str, PropFactory], wanted: list[str] | None,
            names_only: bool) -> PropResult:
    if names_only:
        return PropResult(href, found=[ET.Element(t) for t in available])
    if wanted is None:
        return PropResult(href, found=[make() for t, make in available.items()
                                       if t in _ALLPROP])
    return PropResult(href, found=[available[t]() for t in wanted if t in available],
                      missing=[t for t in wanted if t not in available])


# -- REPORT ---------------------------------------------------------------------


async def _report(runtime: Runtime, state: DavCollections, answers: FreeBusyAnswers,
                  calendar: CalendarConfig, resource: Resource,
                  root: ET.Element | None) -> web.Response:
    if root is None:
        raise RequestError(400, "a REPORT needs a body naming the report")
    if root.tag in _PRINCIPAL_REPORTS and resource.kind in _PRINCIPAL_KINDS:
        if root.tag == tag(DAV, "principal-search-property-set"):
            return _principal_search_property_set()
        return _principal_property_search(calendar, root)
    if root.tag not in _REPORTS or resource.kind != "collection":
        # caldav and others send every calendar REPORT to the collection (RFC 3253 §3.6).
        raise Precondition(DAV, "supported-report", "this report is not supported here")
    await served_freshness(runtime, calendar)
    if root.tag == tag(CALDAV, "free-busy-query"):  # busy time only: not the members
        return await _free_busy(runtime, answers, calendar, root)
    collection = await current(runtime, state, calendar)
    wanted = requested_props(root) or [tag(DAV, "getetag")]
    if root.tag == tag(DAV, "sync-collection"):
        return await _sync_collection(runtime, calendar, collection, resource, root, wanted)
    if root.tag == tag(CALDAV, "calendar-multiget"):
        requested = hrefs(root)
        if len(requested) > MAX_MULTIGET:
            raise RequestError(400, f"calendar-multiget names {len(requested)} hrefs; ask for "
                               f"at most {MAX_MULTIGET} at a time")
        # One answer per member, however many spellings of its href repeat it.
        names: dict[str, str] = {}
        seen: set[str] = set()
        for href in requested:
            uid = href.rstrip("/").rsplit("/", 1)[-1].removesuffix(".ics")
            if uid not in seen:
                seen.add(uid)
                names[href] = uid
        found = {m.uid: m for m in await runtime.store.dav_members(
            calendar.name, uids=list(names.values()))}
        results = [_member_props(calendar, collection, found[uid], wanted, href)
                   for href, uid in names.items() if uid in found]
        missing = [href for href, uid in names.items() if uid not in found]
        return _multistatus(multistatus(results, missing_hrefs=missing))
    query = parse_query_filter(root)
    start, end = query.window()
    members = await runtime.store.dav_members(calendar.name, start=start, end=end)
    return _multistatus(multistatus([_member_props(calendar, collection, m, wanted)
                                     for m in members if query.matches([member_component(m)])]))


def _member_props(calendar: CalendarConfig, collection: DavCollection, member: DavMember,
                  wanted: list[str], href: str | None = None) -> PropResult:
    resource = _member_resource(calendar, member.uid)
    available = _properties(resource, calendar, collection, member)
    return _select(href or resource.href, available, wanted, names_only=False)


async def _free_busy(runtime: Runtime, answers: FreeBusyAnswers, calendar: CalendarConfig,
                     root: ET.Element) -> web.Response:
    """RFC 4791 §7.10: one VFREEBUSY of the busy time in the time-range.

    Its DTSTAMP is the moment the answer is sent: the VFREEBUSY is made for this
    request and kept nowhere (RFC 5545 §3.8.7.2), as an iTIP free/busy reply
    would be stamped (RFC 5546 §3.3.3). The rest is the same for every request
    until the busy time changes, and comes from freebusy_cache.
    """
    window = parse_time_range(root.find(tag(CALDAV, "time-range")))
    start, end = (None, None) if window is None else (window.start, window.end)
    if start is None or end is None:
        raise RequestError(400, "free-busy-query needs a time-range with start and end")
    if end - start > MAX_QUERY_SPAN.total_seconds():
        raise RequestError(400, f"the time-range is longer than {MAX_QUERY_SPAN.days} days")
    body = await report_body(runtime, answers, calendar, start, end)
    return web.Response(body=body.with_stamp(runtime.clock.now()),
                        content_type="text/calendar", charset="utf-8")


async def _sync_collection(runtime: Runtime, calendar: CalendarConfig,
                           collection: DavCollection, resource: Resource, root: ET.Element,
                           wanted: list[str]) -> web.Response:
    token_node = root.find(tag(DAV, "sync-token"))
    token = (token_node.text or "").strip() if token_node is not None else ""
    since = 0
    if token:
        position = token_position(collection, token)
        if position is None:
            body = error_body(DAV, "valid-sync-token")
            return web.Response(status=403, body=body, content_type=_XML, charset="utf-8")
        since = position
    limit = SYNC_PAGE
    limit_node = root.find(f"{tag(DAV, 'limit')}/{tag(DAV, 'nresults')}")
    if limit_node is not None:
        try:
            limit = max(1, min(SYNC_PAGE, int((limit_node.text or "").strip())))
        except ValueError as exc:
            raise RequestError(400, "limit/nresults must be a number") from exc
    changes = await runtime.store.dav_changes(calendar.name, since=since, limit=limit + 1,
                                              initial=not token)
    truncated = len(changes) > limit
    changes = changes[:limit]
    results = [PropResult(_member_resource(calendar, m.uid).href) if m.removed
               else _member_props(calendar, collection, m, wanted) for m in changes]
    position = changes[-1].seq if truncated else collection.last_seq
    return _multistatus(multistatus(
        results, sync_token=sync_token(collection, position),
        truncated_href=resource.href if truncated else None))


# -- principal reports (RFC 3744 §9.4, §9.5) ----------------------------------------

# What principal-property-search may look in, with a description for clients.
_SEARCHABLE = {tag(DAV, "displayname"): "Display name"}
_SEARCH_ELEMENTS = {tag(DAV, "property-search"), tag(DAV, "prop"),
                    tag(DAV, "apply-to-principal-collection-set")}


def _principal_property_search(calendar: CalendarConfig, root: ET.Element) -> web.Response:
    """The caller's own principal when it matches; nobody else's exists for it.

    Each property-search's match is a caseless substring test on the listed
    properties; all must hit, or any with test="anyof". With no
    property-search at all (as the caldav library sends to list principals)
    the principal is listed.
    """
    principal = Resource("principal", _paths(calendar.name)["principal"])
    available = _properties(principal, calendar, None, None)
    searches = root.findall(tag(DAV, "property-search"))
    hits = [_search_hits(available, search) for search in searches]
    any_of = root.get("test", "allof").strip().lower() == "anyof"
    found = not hits or (any(hits) if any_of else all(hits))
    # caldav 3.6 sends the properties it wants next to an empty <prop/>, not in it.
    stray = [child.tag for child in root if child.tag not in _SEARCH_ELEMENTS]
    wanted = (requested_props(root) or []) + stray or [tag(DAV, "displayname")]
    results = [_select(principal.href, available, wanted, names_only=False)] if found else []
    return _multistatus(multistatus(results))


def _search_hits(available: dict[str, PropFactory], search: ET.Element) -> bool:
    match = search.find(tag(DAV, "match"))
    if match is None:
        raise RequestError(400, "each property-search needs a <match>")
    text = TextMatch(match.text or "", "i;unicode-casemap", False,
                     match.get("match-type", "contains"))
    prop = search.find(tag(DAV, "prop"))
    names = [] if prop is None else [child.tag for child in prop]
    return any(name in _SEARCHABLE and name in available
               and text.matches("".join(available[name]().itertext())) for name in names)


def _principal_search_property_set() -> web.Response:
    lang = "{http://www.w3.org/XML/1998/namespace}lang"
    properties = []
    for name, description in _SEARCHABLE.items():
        described = element(DAV, "description", description)
        described.set(lang, "en")
        properties.append(element(DAV, "principal-search-property", children=[
            element(DAV, "prop", children=[ET.Element(name)]), described]))
    body = document(element(DAV, "principal-search-property-set", children=properties))
    return web.Response(body=body, content_type=_XML, charset="utf-8")
