"""Languages (issue 24): catalogues complete, every guest-facing text in them, the
language chosen as documented, dates as the language writes them, mail in the
language the guest booked in.

The German pages and mail of the whole flow are rendered and searched for English:
any English msgid left (a text not translated), and any common English word (a
text never marked for translation).
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from server.app import create_app
from server.booking.wording import day_label, duration_label, month_label, when_label
from server.kit.clock import FixedClock
from server.kit.i18n import LANGUAGES, LOCALE_DIR, accepted, choose, negotiate, translations
from tests.booking_world import build, guest, started
from tests.conftest import NOW
from tests.mailbox import Mailbox, mail_table
from tests.test_guest_mail import again_running

REPO = Path(__file__).resolve().parent.parent
TRANSLATED = [code for code in LANGUAGES if code != "en"]
PLACEHOLDER = re.compile(r"%\(\w+\)[sd]")
# Words no German page or message of ours contains, but any English sentence of
# ours would: a text left out of the catalogues shows up by them.
ENGLISH_WORDS = {
    "the", "your", "you", "this", "that", "booking", "booked", "time", "times", "please",
    "cancel", "cancelled", "with", "open", "month", "next", "previous", "show", "book",
    "reschedule", "join", "when", "length", "guest", "host", "reason", "keep", "back",
    "details", "optional", "zone", "skip", "content", "language", "add", "calendar",
    "page", "address", "reminder", "moved", "sent", "what", "hello", "yes", "no", "is",
    "are", "of", "to", "and", "here", "again", "move", "new", "another", "email",
    "required", "free", "taken", "started", "meeting", "invitation", "later",
}


def catalog(code: str) -> Any:
    with (LOCALE_DIR / code / "LC_MESSAGES" / "fbproxy.po").open("rb") as po:
        return read_po(po)


def template() -> Any:
    with (LOCALE_DIR / "fbproxy.pot").open("rb") as pot:
        return read_po(pot)


def plain(text: str) -> str:
    """``text`` with CLDR's no-break spaces and mail's CRLF as plain spaces and LF."""
    return text.replace("\u202f", " ").replace("\xa0", " ").replace("\r\n", "\n")


def msgid_text(message: Any) -> str:
    return message.id[0] if isinstance(message.id, tuple) else message.id


# -- the catalogues ---------------------------------------------------------------


def test_the_template_holds_every_marked_text_of_the_code_and_templates() -> None:
    """Extracting again (babel.cfg, the keywords scripts/catalogues uses) finds
    exactly the texts of fbproxy.pot: nothing marked is missing from it."""
    with (REPO / "babel.cfg").open() as cfg:
        methods, options = parse_mapping_cfg(cfg)
    keywords = {"_": None, "gettext": None, "ngettext": (1, 2), "worded": None,
                "translate": (2,)}
    found = {msgid if isinstance(msgid, str) else msgid[0]
             for _, _, msgid, _, _ in extract_from_dir(
                 str(REPO), methods, options, keywords=keywords)}
    assert found == {msgid_text(m) for m in template() if m.id}


@pytest.mark.parametrize("code", TRANSLATED)
def test_every_text_is_translated_with_the_same_placeholders(code: str) -> None:
    po = catalog(code)
    ids = {msgid_text(m) for m in template() if m.id}
    assert {msgid_text(m) for m in po if m.id} == ids, "run scripts/catalogues"
    for message in po:
        if not message.id:
            continue
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        assert not message.fuzzy, f"{code}: fuzzy {message.id!r}"
        assert all(s.strip() for s in strings), f"{code}: untranslated {message.id!r}"
        wanted = set(PLACEHOLDER.findall(msgid_text(message)))
        for string in strings:
            assert set(PLACEHOLDER.findall(string)) == wanted, (code, message.id, string)


def test_catalogues_compile_in_memory_and_unknown_texts_stay_english() -> None:
    assert translations("de").gettext("Your name") == "Ihr Name"
    assert translations("fr").gettext("Your name") == "Votre nom"
    assert translations("es").gettext("Your name") == "Su nombre"
    assert translations("de").gettext("not in any catalogue") == "not in any catalogue"
    assert translations("en").gettext("Your name") == "Your name"
    assert translations("fr").ngettext("%(day)s: %(count)s open time",
                                       "%(day)s: %(count)s open times", 2) == \
        "%(day)s : %(count)s horaires libres"


# -- choosing the language ----------------------------------------------------------


def test_accept_language_is_ranked_by_q_value() -> None:
    assert accepted("fr;q=0.8, de-CH;q=0.9, en;q=0.1, *;q=0.5, es;q=0") == [
        "de-CH", "fr", "en"]
    assert accepted("da, en-GB;q=0.8, en;q=0.7") == ["da", "en-GB", "en"]
    assert accepted("de;q=nonsense, fr") == ["fr"]
    assert negotiate("de-CH;q=0.9, fr;q=0.8") == "de"
    assert negotiate("fr;q=0.8, de-CH;q=0.9") == "de"
    assert negotiate("ES-mx") == "es"
    assert negotiate("ja, zh;q=0.9") == "" and negotiate("") == ""
    assert negotiate("ja, fr-CA;q=0.2") == "fr"


def test_the_precedence_of_the_choices() -> None:
    header = "fr;q=0.9"
    assert choose(accept_language="ja") == "en"
    assert choose(accept_language=header) == "fr"
    assert choose(page="de", accept_language=header) == "de"
    assert choose(booking="es", page="de", accept_language=header) == "es"
    assert choose(asked="en", booking="es", page="de", accept_language=header) == "en"
    assert choose(asked="xx", page="de") == "de", "an unknown lang= is ignored"


async def test_pages_negotiate_and_the_switch_wins_and_is_kept(sources, make_config,
                                                               serve) -> None:
    client, _ = await started(make_config, sources, serve)

    async def lang_of(path: str, accept: str = "") -> tuple[str, str]:
        response = await client.get(path, headers={"Accept-Language": accept} if accept
                                    else {})
        html = await response.text()
        assert response.status == 200
        found = re.search(r'<html lang="(\w+)">', html)
        assert found and response.headers["Content-Language"] == found.group(1)
        assert "Accept-Language" in response.headers["Vary"]
        return found.group(1), html

    assert (await lang_of("/book/intro", "de-CH;q=0.9, fr;q=0.8"))[0] == "de"
    assert (await lang_of("/book/intro", "fr;q=0.8, en;q=0.5"))[0] == "fr"
    assert (await lang_of("/book/intro", "ja, ko;q=0.5"))[0] == "en"
    assert (await lang_of("/book/intro"))[0] == "en"
    code, html = await lang_of("/book/intro?lang=es&tz=UTC", "de")
    assert code == "es"
    # Every link of the flow keeps the switch: days, slots, months; the zone form too.
    links = [unescape(h) for h in re.findall(r'href="([^"]*)"(?! hreflang)', html)
             if h.startswith("?")]
    flow = [h for h in links if "day=" in h or "month=" in h]
    assert flow and all("lang=es" in h for h in flow), flow
    assert '<input type="hidden" name="lang" value="es">' in html
    # The switch offers each language, the current one marked.
    for other in ("en", "de", "fr"):
        assert re.search(rf'href="\?[^"]*lang={other}[^"]*" hreflang="{other}"', html)
    assert 'hreflang="es" lang="es" aria-current="true"' in html


async def test_the_pages_language_wins_over_the_browser_and_the_switch_over_it(
        sources, make_config, serve) -> None:
    client, _ = await started(make_config, sources, serve, language="fr")
    html = await (await client.get("/book/intro", headers={"Accept-Language": "de"})).text()
    assert '<html lang="fr">' in html and "Votre fuseau horaire" in html
    html = await (await client.get("/book/intro?lang=de")).text()
    assert '<html lang="de">' in html and "Ihre Zeitzone" in html


def test_a_page_language_must_be_one_we_have(make_config, sources) -> None:
    from server.errors import ConfigError
    with pytest.raises(ConfigError, match=r"booking_pages\[0\]\.language: \"it\" is not valid"):
        build(make_config, sources, language="it")


# -- formatting ---------------------------------------------------------------------


def test_dates_times_and_durations_follow_the_language() -> None:
    day = date(2026, 11, 26)
    assert day_label(day, "de") == "Donnerstag, 26. November 2026"
    assert day_label(day, "fr") == "jeudi 26 novembre 2026"  # day before month
    assert day_label(day, "es") == "jueves, 26 de noviembre de 2026"
    assert day_label(day, "en") == "Thursday, 26 November 2026"
    assert month_label(date(2026, 12, 1), "es") == "diciembre de 2026"
    # 13:30 UTC in Berlin: a 24-hour clock in German and French.
    start = int(NOW.timestamp()) + 24 * 3600 + 5400
    assert when_label(start, start + 1800, ZoneInfo("Europe/Berlin"), "de") == \
        "Donnerstag, 26. November 2026, 14:30–15:00 (Europe/Berlin)"
    assert when_label(start, start + 1800, ZoneInfo("Europe/Paris"), "fr") == \
        "jeudi 26 novembre 2026, 14:30–15:00 (Europe/Paris)"
    # CLDR's spaces: no-break ones where a line must not break (French "1 h").
    assert plain(duration_label(timedelta(minutes=90), "de")) == "1 Std., 30 Min."
    assert plain(duration_label(timedelta(minutes=90), "fr")) == "1 h 30 min"
    assert plain(duration_label(timedelta(minutes=45), "es")) == "45 min"
    assert plain(duration_label(timedelta(hours=2), "es")) == "2 h"


async def test_the_german_page_reads_german_dates(sources, make_config, serve) -> None:
    client, _ = await started(make_config, sources, serve)
    html = await (await client.get("/book/intro?tz=Europe/Berlin&lang=de&day=2026-11-26"
                                   )).text()
    assert "Donnerstag, 26. November 2026" in html  # the day's heading
    assert '<h2 id="month-heading">November 2026</h2>' in html
    assert '<abbr title="Montag">Mo.</abbr>' in html
    # 09:30 UTC is 10:30 in Berlin, on a 24-hour clock.
    assert re.findall(r'class="slot[^"]*" href="[^"]*"[^>]*>([^<]+)</a>', html)[:2] == [
        "10:30", "11:00"]
    assert "Donnerstag, 26. November 2026: 5 freie Zeiten" in html
    html = await (await client.get("/book/intro?tz=Europe/Paris&lang=fr&day=2026-11-27"
                                   )).text()
    assert "vendredi 27 novembre 2026" in html and ">lun.</abbr>" in html
    assert "30 min · horaires affichés en Europe/Paris" in plain(html)


# -- no English left on a German page -------------------------------------------------


class _Text(HTMLParser):
    """What a person reads or hears of a page: text, titles, labels; not the zone list's
    IANA names, the language switch (each language in its own name) or field values."""

    SKIP = {"option", "nav", "script", "style"}

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self._skipping += 1
        for name, value in attrs:
            if name in ("aria-label", "title", "data-busy") and value and not self._skipping:
                self.parts.append(value)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self._skipping -= 1

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def readable(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    return " ".join(" ".join(parser.parts).split())


def english_left(text: str, known: str = "") -> list[str]:
    """English msgids (their fixed words) and English words found in ``text``;
    ``known`` (the test's own data) is removed first."""
    text = re.sub(r"https?://\S+", " ", text)
    for value in known.split("|"):
        if value:
            text = text.replace(value, " ")
    found = []
    for message in template():
        if not message.id:
            continue
        for piece in PLACEHOLDER.split(msgid_text(message)):
            piece = piece.strip(" .,:;()")
            if len(piece) > 5 and piece in text:
                found.append(piece)
    words = {w.lower() for w in re.findall(r"[A-Za-z]+", text)}
    return found + sorted(words & ENGLISH_WORDS)


# Data of the test itself, which stays as the config and the guest wrote it.
KNOWN = "Erstgespräch|Thema|Sam Gast|sam@example.org|Europe/Berlin|fbproxy|alex"


def german_page(make_config: Any, sources: Any, **page: Any) -> Any:
    return build(make_config, sources, title="Erstgespräch", language="de",
                 questions=[{"name": "topic", "label": "Thema", "kind": "textarea"}],
                 **page)


async def test_every_page_of_the_flow_is_german(sources, make_config, serve) -> None:
    config = german_page(make_config, sources)
    client, runtime = await serve(config)
    await runtime.sync.run_all_once()
    pages: dict[str, str] = {}

    async def page(name: str, path: str, status: int = 200, **kwargs: Any) -> str:
        method = client.post if "data" in kwargs else client.get
        # Pages without a booking page of their own (no such booking) negotiate.
        kwargs.setdefault("headers", {"Accept-Language": "de"})
        response = await method(path, allow_redirects=False, **kwargs)
        assert response.status == status, (name, await response.text())
        pages[name] = await response.text()
        return pages[name]

    form = await page("form", "/book/intro?tz=Europe/Berlin&day=2026-11-26"
                      "&start=2026-11-26T11:00:00%2B01:00")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form)
    assert csrf
    fields = {"csrf": csrf.group(1), "start": "2026-11-26T11:00:00+01:00", "duration": "30m",
              "tz": "Europe/Berlin"}
    await page("notices", "/book/intro?tz=Mars/Olympus&duration=7m&month=2026-13")
    # The page's language wins over an English browser.
    await page("next month", "/book/intro?tz=Europe/Berlin&month=2026-12&duration=1h",
               headers={"Accept-Language": "en"})
    errors = await page("form with errors", "/book/intro", 422,
                        data={**fields, "name": "", "email": "sam@example.org"})
    assert "Bitte geben Sie Ihren Namen an." in errors
    booked = await client.post("/book/intro", allow_redirects=False,
                               data={**fields, "name": "Sam Gast", "email": "sam@example.org",
                                     "answer.topic": "Planung"})
    assert booked.status == 303
    manage = booked.headers["Location"]
    booking_id = manage.split("/booking/")[1].split("?")[0]
    secret = manage.split("secret=")[1]
    stored = await runtime.store.booking(booking_id)
    assert stored is not None and stored.guest_language == "de"
    await page("booking", manage)
    await page("taken", "/book/intro", 409,
               data={**fields, "name": "Kim", "email": "kim@example.org"})
    await page("reschedule", f"/booking/{booking_id}/reschedule?secret={secret}"
               "&day=2026-11-27&start=2026-11-27T10:00:00%2B01:00&tz=Europe/Berlin")
    await page("cancel", f"/booking/{booking_id}/cancel?secret={secret}")
    await page("host", f"/booking/{booking_id}/host?secret={stored.host_secret}")
    await page("not found", "/booking/nope?secret=x", 404)
    await page("no page", "/book/nope", 404)
    await page("expired form", "/book/intro", 403, data={**fields, "csrf": "wrong"})
    cancelled = await client.post(f"/booking/{booking_id}/cancel", allow_redirects=False,
                                  data={"csrf": csrf.group(1), "secret": secret,
                                        "reason": "Krank"})
    assert cancelled.status == 303
    await page("cancelled", manage)
    await page("host, cancelled", f"/booking/{booking_id}/host?secret={stored.host_secret}")

    assert "Dezember 2026" in pages["next month"]
    for name, html in pages.items():
        assert '<html lang="de">' in html, name
        assert english_left(readable(html), KNOWN + "|Planung|Krank|Kim") == [], name
    # The check finds English where there is some.
    english = await (await client.get("/book/intro?lang=en&tz=Europe/Berlin&day=2026-11-27"
                                      )).text()
    assert {"Your time zone", "your", "times"} <= set(english_left(readable(english), KNOWN))


async def test_every_message_is_german(sources, make_config, serve, mailbox: Mailbox,
                                       clock: FixedClock) -> None:
    """Each template, to the guest and to the host, in German: booking, reschedule,
    reminders, cancellation by the guest and by the host."""
    config = german_page(make_config, sources, mail=mail_table(mailbox),
                         reminders=["1h"], remind_host=True,
                         video_link="https://meet.example.org/{booking_id}")
    client, runtime = await serve(config)
    await runtime.sync.run_all_once()
    first = await client.post("/api/v1/pages/intro/bookings", json=guest(
        name="Sam Gast", answers={"topic": "Planung"}, timezone="Europe/Berlin"))
    booking = await first.json()
    secret = booking["manage_url"].split("=")[-1]
    moved = await client.post(f"/api/v1/bookings/{booking['id']}/reschedule?secret={secret}",
                              json={"start": "2026-11-27T10:00:00Z"})
    assert moved.status == 200
    second = await client.post("/api/v1/pages/intro/bookings", json=guest(
        start="2026-11-30T10:00:00Z", name="Sam Gast", timezone="Europe/Berlin"))
    assert second.status == 201, await second.text()
    clock.set(NOW + timedelta(hours=45, minutes=30))  # the reminders of the 27th, 11:00
    while await runtime.mailer.run_once():
        pass
    await client.post(f"/api/v1/bookings/{booking['id']}/cancel?secret={secret}",
                      json={"reason": "Krank"})
    host_secret = (await runtime.store.booking((await second.json())["id"])).host_secret
    csrf_page = await client.get(f"/booking/{(await second.json())['id']}/host"
                                 f"?secret={host_secret}")
    csrf = re.search(r'name="csrf" value="([^"]+)"', await csrf_page.text())
    assert csrf
    response = await client.post(f"/booking/{(await second.json())['id']}/host/cancel",
                                 data={"csrf": csrf.group(1), "secret": host_secret},
                                 allow_redirects=False)
    assert response.status == 303
    while await runtime.mailer.run_once():
        pass
    subjects = {m.message["Subject"].split(":")[0] for m in mailbox.messages}
    assert subjects == {"Gebucht", "Neue Buchung", "Verschoben", "Erinnerung", "Storniert"}
    # Each booked, moved, reminded (guest and host), cancelled by the guest; the second
    # booked and cancelled by the host: each template to the guest and to the host.
    assert len(mailbox.messages) == 12
    for message in mailbox.messages:
        for text in (message.message["Subject"], message.text(), readable(message.html())):
            assert english_left(text, KNOWN + "|Planung|Krank") == [], text


# -- the guest's language across time -----------------------------------------------


async def test_a_german_booking_mails_german_and_reminds_in_german_after_a_restart(
        sources, make_config, serve, mailbox: Mailbox, clock: FixedClock) -> None:
    config = build(make_config, sources, mail=mail_table(mailbox), reminders=["1h"],
                   notify_host=True)
    client, runtime = await serve(config)
    await runtime.sync.run_all_once()
    form = await (await client.get("/book/intro?tz=Europe/Berlin&day=2026-11-26"
                                   "&start=2026-11-26T11:00:00%2B01:00",
                                   headers={"Accept-Language": "de-DE,de;q=0.9,en;q=0.5"})
                  ).text()
    assert '<html lang="de">' in form
    csrf = re.search(r'name="csrf" value="([^"]+)"', form)
    assert csrf
    booked = await client.post("/book/intro", allow_redirects=False, headers={
        "Accept-Language": "de-DE,de;q=0.9"}, data={
        "csrf": csrf.group(1), "start": "2026-11-26T11:00:00+01:00", "duration": "30m",
        "tz": "Europe/Berlin", "name": "Sam <b>Gast</b>", "email": "sam@example.org"})
    assert booked.status == 303
    assert await runtime.mailer.run_once() == 2
    [invite] = mailbox.to("sam@example.org")
    assert invite.message["Subject"] == \
        "Gebucht: Intro call, Donnerstag, 26. November 2026, 11:00–11:30 (Europe/Berlin)"
    text = plain(invite.text())
    assert text.startswith("Guten Tag Sam <b>Gast</b>,\n\nIhr Termin bei alex ist gebucht.")
    assert "\nWann: Donnerstag, 26. November 2026, 11:00–11:30 (Europe/Berlin)\n" in text
    assert "\nDauer: 30 Min.\n" in text
    assert "Guten Tag Sam &lt;b&gt;Gast&lt;/b&gt;," in invite.html()
    assert '<html lang="de">' in invite.html()
    assert "Verschieben oder stornieren:" in str(invite.calendar().walk("VEVENT")[0][
        "DESCRIPTION"])
    # The host's notice is the page's language's (none: English), not the guest's.
    [notice] = mailbox.to("alex@hosts.example.org")
    assert notice.message["Subject"].startswith("New booking: Sam <b>Gast</b>, Thursday")

    # The reminder goes out from a restarted server, in German, in an English browser's
    # world: the booking remembers.
    again = create_app(config, clock=clock, start_sync=False)
    async with again_running(again) as restarted:
        clock.set(NOW + timedelta(hours=21, minutes=30))
        assert await restarted.mailer.run_once() == 1
    reminder = mailbox.to("sam@example.org")[-1]
    assert reminder.message["Subject"].startswith("Erinnerung: Intro call, Donnerstag")
    assert "wir erinnern Sie an Ihren Termin bei alex." in reminder.text()


async def test_hostile_text_is_escaped_inside_translations(sources, make_config,
                                                           serve) -> None:
    client, _ = await started(make_config, sources, serve)
    html = await (await client.get("/book/intro?lang=de&tz=<script>alert(1)</script>")).text()
    assert "<script>alert(1)</script>" not in html
    assert "„&lt;script&gt;alert(1)&lt;/script&gt;“ ist keine uns bekannte Zeitzone" in html
    # A lang= that is no language of ours is ignored, never echoed.
    html = await (await client.get('/book/intro?lang="><b>x</b>')).text()
    assert '<html lang="en">' in html and "<b>x</b>" not in html


async def test_the_json_api_takes_a_language_and_keeps_its_errors_english(
        sources, make_config, serve) -> None:
    client, runtime = await started(make_config, sources, serve)
    refused = await client.post("/api/v1/pages/intro/bookings", json=guest(language="it"),
                                headers={"Accept-Language": "de"})
    assert refused.status == 422
    assert (await refused.json())["error"] == "language must be one of en, de, fr, es"
    nameless = await client.post("/api/v1/pages/intro/bookings", json=guest(name=""),
                                 headers={"Accept-Language": "de"})
    assert (await nameless.json())["error"] == "name is required"
    booked = await client.post("/api/v1/pages/intro/bookings", json=guest(language="fr"))
    assert booked.status == 201
    stored = await runtime.store.booking((await booked.json())["id"])
    assert stored is not None and stored.guest_language == "fr"
    page = await client.get((await booked.json())["manage_url"].removeprefix(
        runtime.config.server.base_url))
    assert "Votre réservation est confirmée" in await page.text()
