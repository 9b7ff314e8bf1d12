"""The languages guests read: catalogues, the choice of one, and gettext for templates.

Texts are English in the code and the templates (the msgids); the other
languages are gettext catalogues, ``server/locale/<language>/LC_MESSAGES/fbproxy.po``,
written by people and kept in the repository. They are compiled when first
used, in memory (Babel's ``read_po`` and ``write_mo``): nothing is built at
install time and nothing is fetched. A text missing from a catalogue reads in
English. Dates, times and durations are formatted with Babel's CLDR data
(``server/booking/wording.py``).
"""

from __future__ import annotations

import gettext
import io
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from babel.core import negotiate_locale
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from jinja2 import pass_context
from jinja2.runtime import Context
from markupsafe import Markup

DEFAULT = "en"
# Each language by its own name, as the switch on the pages shows it.
LANGUAGES: Mapping[str, str] = {
    "en": "English", "de": "Deutsch", "fr": "Français", "es": "Español"}
DOMAIN = "fbproxy"
LOCALE_DIR = Path(__file__).resolve().parent.parent / "locale"
# Accept-Language is read this far at most (a header is no place for a novel).
_MAX_HEADER = 1000
_MAX_TAGS = 30


def supported(value: object) -> str:
    """``value`` if it names one of our languages (any case), else ``""``."""
    if not isinstance(value, str):
        return ""
    value = value.strip().lower()
    return value if value in LANGUAGES else ""


def accepted(header: str) -> list[str]:
    """The language tags of an ``Accept-Language`` header, most wanted first
    (by q-value, ties in the order given); ``q=0`` and ``*`` are left out."""
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate(header[:_MAX_HEADER].split(",")[:_MAX_TAGS]):
        tag, _, params = part.partition(";")
        tag = tag.strip()
        if not tag or tag == "*" or len(tag) > 35:
            continue
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value.strip())
                except ValueError:
                    quality = 0.0
        if 0.0 < quality <= 1.0:
            ranked.append((-quality, index, tag))
    return [tag for _, _, tag in sorted(ranked)]


def negotiate(header: str) -> str:
    """The language of ours a guest's ``Accept-Language`` asks for first, or ``""``.

    ``de-CH;q=0.9, fr;q=0.8`` gives ``de`` (a regional tag falls back to its
    language before the next tag is tried)."""
    found = negotiate_locale(accepted(header), list(LANGUAGES), sep="-", aliases={})
    return supported(found)


def choose(*, asked: str = "", booking: str = "", page: str = "",
           accept_language: str = "") -> str:
    """The language of a page or message, first that applies: the one the guest
    picked on the page (``lang=``), the one their booking was made in, the booking
    page's ``language``, their browser's ``Accept-Language``, English."""
    return (supported(asked) or supported(booking) or supported(page)
            or negotiate(accept_language) or DEFAULT)


@cache
def translations(language: str) -> gettext.NullTranslations:
    """The catalogue of ``language``, compiled from its ``.po`` once per process."""
    if language == DEFAULT or language not in LANGUAGES:
        return gettext.NullTranslations()
    path = LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"
    with path.open("rb") as po:
        catalog = read_po(po, locale=language, domain=DOMAIN)
    compiled = io.BytesIO()
    write_mo(compiled, catalog, use_fuzzy=False)
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


def translate(language: str, message: str, params: Mapping[str, object] | None = None) -> str:
    """``message`` (an English msgid) in ``language``, its ``%(name)s`` filled in."""
    text = translations(language).gettext(message) if message else ""
    return text % params if params else text


def template_callables(language: str) -> dict[str, Callable[..., Any]]:
    """``gettext``, ``ngettext`` and ``_`` for a Jinja2 render in ``language``: what
    ``jinja2.ext.i18n`` calls with ``newstyle_gettext`` on, given in the render's
    context so one environment serves every language. Placeholders are filled
    after translating; with autoescape on they are escaped (``Markup % values``)."""
    catalog = translations(language)

    @pass_context
    def gettext_(context: Context, message: str, **variables: Any) -> str:
        text = catalog.gettext(message)
        if context.eval_ctx.autoescape:
            text = Markup(text)
        return text % variables

    @pass_context
    def ngettext_(context: Context, singular: str, plural: str, num: int,
                  **variables: Any) -> str:
        variables.setdefault("num", num)
        text = catalog.ngettext(singular, plural, num)
        if context.eval_ctx.autoescape:
            text = Markup(text)
        return text % variables

    return {"gettext": gettext_, "ngettext": ngettext_, "_": gettext_}


def i18n_environment(environment: Any) -> None:
    """Turn on ``{% trans %}`` in ``environment`` (the callables come per render)."""
    environment.add_extension("jinja2.ext.i18n")
    environment.newstyle_gettext = True
    environment.policies["ext.i18n.trimmed"] = True
