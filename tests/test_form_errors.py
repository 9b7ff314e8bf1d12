"""Errors where the mistake is (issue 24): the booking and reschedule forms show every
problem at once, each next to its field (aria-invalid, aria-describedby), in plain
words, with a summary on top and the guest's input kept; a time taken meanwhile offers
the nearest free times in the form itself. The JSON API keeps its first error and
lists them all.
"""

from __future__ import annotations

import re
from html import unescape
from html.parser import HTMLParser
from typing import Any

from tests.booking_world import guest, offered, started
from tests.test_booking_form import FIRST_OPEN, form_for, hidden, post_form

QUESTIONS = [
    {"name": "topic", "label": "Topic", "kind": "textarea", "required": True},
    {"name": "company", "label": "Company", "max_length": 20},
]


class Elements(HTMLParser):
    """Every element's attributes by its id, and each element's text by its id."""

    def __init__(self) -> None:
        super().__init__()
        self.by_id: dict[str, dict[str, str | None]] = {}
        self.text: dict[str, str] = {}
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self._open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.tags.append((tag, found))
        if found.get("id"):
            self.by_id[str(found["id"])] = found
        if tag not in ("input", "br", "img", "meta", "link"):
            self._open.append(str(found.get("id") or ""))

    def handle_endtag(self, tag: str) -> None:
        if tag not in ("input", "br", "img", "meta", "link") and self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for element in self._open:
            if element:
                self.text[element] = self.text.get(element, "") + data

    def words(self, element: str) -> str:
        return " ".join(self.text.get(element, "").split())


def parsed(html: str) -> Elements:
    elements = Elements()
    elements.feed(html)
    return elements


def summary_links(html: str) -> list[tuple[str, str]]:
    summary = re.search(r'<div class="error-summary".*?</div>', html, re.S)
    assert summary, "no error summary"
    return [(href, " ".join(unescape(text).split())) for href, text in
            re.findall(r'<a href="([^"]+)">(.*?)</a>', summary.group(0), re.S)]


async def test_every_field_error_at_once_next_to_its_field(sources, make_config,
                                                          serve) -> None:
    client, _ = await started(make_config, sources, serve, questions=QUESTIONS)
    html = await form_for(client)
    assert "novalidate" in html, "the server's messages, not the browser's one at a time"
    response = await post_form(client, html, name="", email="sam at example",
                               **{"answer.company": "Acme Incorporated Worldwide"})
    body = await response.text()
    assert response.status == 422
    page = parsed(body)
    wanted = {
        "name": "Please enter your name",
        "email": "Please check your email address; write it like sam@example.org",
        "answer-topic": "Please answer “Topic”",
        "answer-company": "Please keep this to at most 20 characters",
    }
    for field, words in wanted.items():
        attrs = page.by_id[field]
        assert attrs.get("aria-invalid") == "true", field
        assert attrs.get("aria-describedby") == f"{field}-error", field
        assert page.words(f"{field}-error") == words, field
    # The summary: a heading, then each problem as a link to its field, in order.
    summary = page.by_id["error-summary"]
    assert summary.get("role") == "alert" and "autofocus" in summary
    assert page.words("error-summary-heading") == "There are 4 problems"
    assert summary_links(body) == [
        ("#name", "Please enter your name"),
        ("#email", "Please check your email address; write it like sam@example.org"),
        ("#answer-topic", "Please answer “Topic”"),
        ("#answer-company", "Please keep “Company” to at most 20 characters"),
    ]
    # What the guest typed stays; the time they chose too.
    assert page.by_id["email"].get("value") == "sam at example"
    assert page.by_id["answer-company"].get("value") == "Acme Incorporated Worldwide"
    assert hidden(body, "start") == FIRST_OPEN
    assert "Thursday, 26 November 2026, 09:30–10:00 (UTC)" in body
    # No developer words ("is required", "answers.topic") reach the guest.
    assert "required" not in page.words("main") and "answers." not in body

    # Only the one still wrong is marked once the others are right.
    response = await post_form(client, html, email="", **{"answer.topic": "Hello"})
    body = await response.text()
    page = parsed(body)
    assert response.status == 422
    assert page.words("email-error") == "Please enter your email address, like sam@example.org"
    assert "aria-invalid" not in page.by_id["name"]
    assert "aria-invalid" not in page.by_id["answer-topic"]
    assert page.by_id["name"].get("value") == "Sam Guest"
    assert page.words("answer-topic") == "Hello"
    assert page.words("error-summary-heading") == "There is 1 problem"
    ok = await post_form(client, html, **{"answer.topic": "Hello"})
    assert ok.status == 303


async def test_a_taken_time_offers_the_nearest_free_ones_in_the_form(sources, make_config,
                                                                    serve) -> None:
    client, runtime = await started(make_config, sources, serve)
    html = await form_for(client)  # 09:30 on Thursday, the first open time
    assert (await client.post("/api/v1/pages/intro/bookings",
                              json=guest(start="2026-11-26T09:30:00Z"))).status == 201
    response = await post_form(client, html, name="Kim Late", email="kim@example.org",
                               **{"answer.topic": "Pricing"})
    body = await response.text()
    assert response.status == 409
    page = parsed(body)
    assert summary_links(body) == [
        ("#start-0", "That time was just booked — here are the nearest free times")]
    group = page.by_id["start-choice"]
    assert group.get("aria-invalid") == "true" and group.get("aria-describedby") == "start-error"
    assert page.words("start-error") == \
        "That time was just booked — here are the nearest free times"
    # Its day's other free times, nearest first: alex is busy 09:00-09:30 and 09:30 went.
    radios = [attrs for tag, attrs in page.tags
              if tag == "input" and attrs.get("type") == "radio"]
    assert [r["value"] for r in radios] == [
        "2026-11-26T10:00:00+00:00", "2026-11-26T10:30:00+00:00",
        "2026-11-26T11:00:00+00:00", "2026-11-26T11:30:00+00:00"]
    assert all(r.get("name") == "start" and "checked" not in r for r in radios)
    assert "Thursday, 26 November 2026, 10:00–10:30 (UTC)" in body
    assert page.by_id["name"].get("value") == "Kim Late"
    assert page.by_id["email"].get("value") == "kim@example.org"
    assert page.words("answer-topic") == "Pricing"
    assert 'name="start" value="2026-11-26T09:30' not in body

    # Picking one and sending the form again books it, with what was typed.
    data = {name: hidden(body, name) for name in ("csrf", "duration", "tz")}
    booked = await client.post("/book/intro", allow_redirects=False, data={
        **data, "start": "2026-11-26T10:30:00+00:00", "name": "Kim Late",
        "email": "kim@example.org", "answer.topic": "Pricing"})
    assert booked.status == 303, await booked.text()
    stored = await runtime.store.booking(booked.headers["Location"].split("/")[2]
                                         .split("?")[0])
    assert stored is not None and stored.guest_name == "Kim Late"
    assert stored.start == 1795689000  # 10:30Z
    assert "2026-11-26T10:30:00Z" not in await offered(client)


async def test_a_full_day_offers_the_nearest_days(sources, make_config, serve) -> None:
    client, _ = await started(make_config, sources, serve)
    html = await form_for(client)
    for start in ("09:30", "10:00", "10:30", "11:00", "11:30"):
        assert (await client.post("/api/v1/pages/intro/bookings", json=guest(
            start=f"2026-11-26T{start}:00Z", email=f"g{start[:2]}{start[3:]}@example.org")
        )).status == 201
    response = await post_form(client, html)
    page = parsed(await response.text())
    values = [attrs["value"] for tag, attrs in page.tags
              if tag == "input" and attrs.get("type") == "radio"]
    assert response.status == 409
    assert values == ["2026-11-27T09:00:00+00:00", "2026-11-27T09:30:00+00:00",
                      "2026-11-27T10:00:00+00:00", "2026-11-27T10:30:00+00:00"]


async def test_field_errors_and_a_time_gone_show_together(sources, make_config,
                                                          serve) -> None:
    client, _ = await started(make_config, sources, serve)
    html = await form_for(client)
    assert (await client.post("/api/v1/pages/intro/bookings",
                              json=guest(start="2026-11-26T09:30:00Z"))).status == 201
    response = await post_form(client, html, name="", email="kim@example.org")
    body = await response.text()
    assert response.status == 422
    assert summary_links(body) == [
        ("#start-0", "That time is no longer free — here are the nearest free times"),
        ("#name", "Please enter your name")]
    assert parsed(body).by_id["email"].get("value") == "kim@example.org"


async def test_hostile_input_stays_escaped_next_to_its_field(sources, make_config,
                                                             serve) -> None:
    client, _ = await started(make_config, sources, serve, questions=[
        {"name": "topic", "label": "<b>Topic</b>", "kind": "textarea", "max_length": 40}])
    html = await form_for(client)
    script = "<script>alert(1)</script>"
    image = '"><img src=x onerror=alert(1)>'
    response = await post_form(client, html, name="Sam\r\n" + script, email=image,
                               **{"answer.topic": script * 3})
    body = await response.text()
    assert response.status == 422
    assert script not in body and "<img" not in body and "<b>Topic" not in body
    page = parsed(body)
    assert page.words("name-error") == \
        "Please keep your name to one line of at most 200 characters"
    assert page.by_id["email"].get("value") == image  # escaped in the HTML, kept as typed
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert page.words("answer-topic") == script * 3
    assert ("#answer-topic", "Please keep “<b>Topic</b>” to at most 40 characters") in \
        summary_links(body)


async def test_the_german_form_errors_in_german(sources, make_config, serve) -> None:
    client, _ = await started(make_config, sources, serve, language="de",
                              questions=QUESTIONS)
    html = await form_for(client)
    response = await post_form(client, html, name="", email="")
    page = parsed(await response.text())
    assert response.status == 422
    assert page.words("error-summary-heading") == "Es gibt 3 Probleme"
    assert page.words("name-error") == "Bitte geben Sie Ihren Namen an."
    assert page.words("email-error") == \
        "Bitte geben Sie Ihre E-Mail-Adresse an, etwa sam@example.org."
    assert page.words("answer-topic-error") == "Bitte beantworten Sie „Topic“."
    assert (await client.post("/api/v1/pages/intro/bookings",
                              json=guest(start=FIRST_OPEN, answers={"topic": "x"}))
            ).status == 201
    taken = await post_form(client, html, **{"answer.topic": "Planung"})
    page = parsed(await taken.text())
    assert taken.status == 409
    assert page.words("start-error") == \
        "Diese Zeit wurde gerade gebucht – hier sind die nächsten freien Zeiten."
    assert page.words("start-choice").startswith("Wählen Sie eine andere Zeit")


async def test_the_reschedule_form_offers_the_nearest_free_times(sources, make_config,
                                                                 serve) -> None:
    client, runtime = await started(make_config, sources, serve)
    mine = await (await client.post("/api/v1/pages/intro/bookings", json=guest())).json()
    secret = mine["manage_url"].split("secret=")[1]
    form = await (await client.get(
        f"/booking/{mine['id']}/reschedule", params={
            "secret": secret, "tz": "UTC", "day": "2026-11-26",
            "start": "2026-11-26T11:00:00+00:00"})).text()
    assert (await client.post("/api/v1/pages/intro/bookings", json=guest(
        start="2026-11-26T11:00:00Z", email="kim@example.org"))).status == 201
    fields = {name: hidden(form, name) for name in ("csrf", "secret", "start", "duration",
                                                      "tz")}
    late = await client.post(f"/booking/{mine['id']}/reschedule", data=fields)
    body = await late.text()
    assert late.status == 409
    assert summary_links(body) == [
        ("#start-0", "That time was just booked — here are the nearest free times")]
    page = parsed(body)
    values = [attrs["value"] for tag, attrs in page.tags
              if tag == "input" and attrs.get("type") == "radio"]
    # Their own 10:00 counts as free for them; 11:00 went.
    assert values == ["2026-11-26T09:30:00+00:00", "2026-11-26T10:00:00+00:00",
                      "2026-11-26T10:30:00+00:00", "2026-11-26T11:30:00+00:00"]
    assert page.by_id["start-choice"].get("aria-invalid") == "true"
    moved = await client.post(f"/booking/{mine['id']}/reschedule", allow_redirects=False,
                              data={**fields, "start": "2026-11-26T11:30:00+00:00"})
    assert moved.status == 303, await moved.text()
    stored = await runtime.store.booking(mine["id"])
    assert stored is not None and stored.start == 1795692600  # 11:30Z


async def test_the_json_api_keeps_its_first_error_and_lists_them_all(
        sources, make_config, serve) -> None:
    client, _ = await started(make_config, sources, serve, questions=QUESTIONS)
    response = await client.post("/api/v1/pages/intro/bookings", json=guest(
        name="", email="nope", answers={"company": "x" * 21}))
    body: dict[str, Any] = await response.json()
    assert response.status == 422
    assert body["error"] == "name is required"  # the first, as before
    assert body["errors"] == [
        {"field": "name", "error": "name is required"},
        {"field": "email", "error": "email must be an e-mail address like sam@example.org"},
        {"field": "answers.topic", "error": "answers.topic is required"},
        {"field": "answers.company",
         "error": "answers.company must be at most 20 characters of plain text"},
    ]
    # A bad start is a 400 and still comes first; one wrong field is one error.
    early = await client.post("/api/v1/pages/intro/bookings",
                              json=guest(start="tomorrow", name=""))
    early_body = await early.json()
    assert early.status == 400 and "ISO 8601" in early_body["error"]
    assert [e["field"] for e in early_body["errors"]] == ["start", "name", "answers.topic"]
    taken = await client.post("/api/v1/pages/intro/bookings",
                              json=guest(start="2026-11-26T09:00:00Z",
                                         answers={"topic": "x"}))
    assert taken.status == 409 and "errors" not in await taken.json()
