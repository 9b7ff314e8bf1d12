"""Who and where a booking page shows before booking, its look, and who may frame it.

The hosts' names and pictures (``[[calendars]] display_name``, ``avatar``), the
page's ``location``, ``logo`` and ``accent_color`` and its ``embed_origins``:
nothing here comes from a host's calendar, only from the config. Local pictures
are served at ``/media/<hash>.<ext>`` (the hash of their bytes, so cached for
good), the accent colour as a tiny stylesheet (the CSP allows no inline style),
and each page's CSP names exactly the picture origins it shows and the origins
that may frame it.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web

from server.booking.messages import host_name
from server.config.images import Picture
from server.config.model import Config
from server.config.pages import BookingPageConfig
from server.errors import RequestError
from server.runtime import RUNTIME

# connect-src: book.js fetches the page's next month, day or time from the page's own
# origin, to swap it in (no other origin, no inline script or style, no eval).
_BASE_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; "
                "connect-src 'self'; form-action 'self'; base-uri 'none'")
FOREVER = "public, max-age=31536000, immutable"
# video_link hosts (and the values that make the link upstream) -> the provider's name.
_VIDEO_PROVIDERS = (("meet.jit.si", "Jitsi Meet"), ("8x8.vc", "Jitsi Meet"),
                    ("meet.google.com", "Google Meet"), ("teams.microsoft.com", "Microsoft Teams"),
                    ("teams.live.com", "Microsoft Teams"), ("zoom.us", "Zoom"),
                    ("whereby.com", "Whereby"), ("webex.com", "Webex"))
_MADE_UPSTREAM = {"google-meet": "Google Meet", "teams": "Microsoft Teams"}


def setup_branding(app: web.Application) -> None:
    app.router.add_get("/media/{name}", media_file)
    app.router.add_get("/book/{slug}/theme.css", theme_css)


@dataclass(frozen=True, slots=True)
class HostView:
    name: str
    avatar: str  # the picture's href, or ""


@dataclass(frozen=True, slots=True)
class LocationView:
    kind: str  # "video" | "phone" | "address" | "text"
    text: str  # the provider's name (video), the number (phone), the address or text
    tel: str = ""  # phone: the number for a tel: link


def hosts_shown(config: Config, page: BookingPageConfig, assigned: str = ""
                ) -> tuple[HostView, ...]:
    """Every host of a collective page; of a round-robin page with several hosts none
    (the page says "one of our team") until a booking has ``assigned`` one."""
    if page.mode == "round_robin" and len(page.hosts) > 1 and not assigned:
        return ()
    views = []
    for name in (assigned,) if assigned else page.hosts:
        calendar = config.calendar(name)
        avatar = calendar.avatar.href if calendar and calendar.avatar else ""
        views.append(HostView(host_name(config, name), avatar))
    return tuple(views)


def location_shown(page: BookingPageConfig) -> LocationView | None:
    location = page.look.location
    if location is None:
        return None
    if location.kind == "video":
        return LocationView("video", video_provider(page.video_link or ""))
    if location.kind == "phone":
        tel = "".join(c for c in location.text if c.isdigit() or c == "+")
        return LocationView("phone", location.text, tel)
    return LocationView(location.kind, location.text)


def video_provider(video_link: str) -> str:
    """The provider's name by the link's host (Jitsi, Google Meet, …), or ""."""
    if video_link in _MADE_UPSTREAM:
        return _MADE_UPSTREAM[video_link]
    try:
        host = (urlsplit(video_link).hostname or "").lower()
    except ValueError:
        return ""
    for domain, name in _VIDEO_PROVIDERS:
        if host == domain or host.endswith("." + domain):
            return name
    return "Jitsi Meet" if host.startswith("jitsi.") else ""


def page_pictures(config: Config, page: BookingPageConfig) -> list[Picture]:
    pictures = [page.look.logo] if page.look.logo else []
    for name in page.hosts:
        calendar = config.calendar(name)
        if calendar is not None and calendar.avatar is not None:
            pictures.append(calendar.avatar)
    return pictures


def page_headers(config: Config, page: BookingPageConfig | None, *, embed: bool
                 ) -> dict[str, str]:
    """The CSP (and X-Frame-Options) of a page of ``page``: its pictures' https origins
    may load; with ``embed``, its ``embed_origins`` may frame it, else nobody."""
    origins = sorted({p.origin for p in page_pictures(config, page) if p.origin}) if page else []
    ancestors = page.look.embed_origins if page is not None and embed else ()
    images = " ".join(["'self'", *origins])
    frames = " ".join(ancestors) or "'none'"
    policy = f"{_BASE_POLICY}; img-src {images}; frame-ancestors {frames}"
    headers = {"Content-Security-Policy": policy}
    # X-Frame-Options cannot name origins; browsers that know frame-ancestors ignore it.
    if not ancestors:
        headers["X-Frame-Options"] = "DENY"
    return headers


def theme_href(page: BookingPageConfig) -> str:
    color = page.look.accent_color
    return f"/book/{page.slug}/theme.css?v={color[1:]}" if color else ""


def _ink(color: str) -> str:
    """White or near-black text on ``color``, whichever contrasts more (WCAG luminance)."""
    def channel(hex_pair: str) -> float:
        value = int(hex_pair, 16) / 255
        return value / 12.92 if value <= 0.04045 else ((value + 0.055) / 1.055) ** 2.4
    red, green, blue = (channel(color[i:i + 2]) for i in (1, 3, 5))
    luminance = 0.2126 * red + 0.7152 * green + 0.0722 * blue
    return "#ffffff" if (1.05 / (luminance + 0.05)) >= ((luminance + 0.05) / 0.05) else "#0d1117"


async def theme_css(request: web.Request) -> web.Response:
    """GET /book/{slug}/theme.css: the page's accent colour, the only style it sets."""
    page = request.app[RUNTIME].config.booking_page(request.match_info["slug"])
    if page is None or not page.look.accent_color:
        raise RequestError(404, "no theme here")
    color = page.look.accent_color
    body = (f":root {{ --accent: {color}; --accent-ink: {_ink(color)}; }}\n"
            f"@media (prefers-color-scheme: dark) {{ :root {{ --accent: {color}; "
            f"--accent-ink: {_ink(color)}; }} }}\n")
    return web.Response(text=body, content_type="text/css", headers={
        "Cache-Control": FOREVER, "X-Content-Type-Options": "nosniff"})


async def media_file(request: web.Request) -> web.Response:
    """GET /media/<hash>.<ext>: a host's avatar or a page's logo from a local file."""
    config = request.app[RUNTIME].config
    wanted = request.match_info["name"]
    for picture in _local_pictures(config):
        if f"{picture.digest}.{picture.extension}" == wanted:
            return web.Response(body=picture.body, content_type=picture.content_type, headers={
                "Cache-Control": FOREVER, "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": "default-src 'none'; sandbox",
                "Cross-Origin-Resource-Policy": "same-origin"})
    raise RequestError(404, "no such file")


def _local_pictures(config: Config) -> list[Picture]:
    pictures = [c.avatar for c in config.calendars if c.avatar is not None and c.avatar.body]
    pictures += [p.look.logo for p in config.booking_pages
                 if p.look.logo is not None and p.look.logo.body]
    return pictures
