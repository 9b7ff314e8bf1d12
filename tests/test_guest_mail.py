"""The guest's and the host's mail, through a real SMTP server (aiosmtpd) on loopback.

A booking sends the guest an iMIP invitation (METHOD:REQUEST, the guest as an
accepted ATTENDEE, the booking's UID) and the host a notice; a cancellation a
CANCEL with the same UID and a higher SEQUENCE; reminders go out once each at
their time (the injected clock), across restarts; nothing is sent without [mail].
"""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import Any

from icalendar import Calendar

from server.app import create_app
from server.booking.invitation import guest_uid
from server.kit.clock import FixedClock
from server.runtime import RUNTIME
from tests.booking_world import SLOT, build, guest, started
from tests.conftest import NOW
from tests.mailbox import Mailbox, mail_table


def vevent(calendar: Calendar) -> Any:
    [event] = calendar.walk("VEVENT")
    return event


async def book(client: Any, **extra: Any) -> dict[str, Any]:
    response = await client.post("/api/v1/pages/intro/bookings", json=guest(**extra))
    assert response.status == 201, await response.text()
    return dict(await response.json())


async def test_a_booking_invites_the_guest_and_tells_the_host(
        make_config, sources, serve, mailbox: Mailbox) -> None:
    client, runtime = await started(make_config, sources, serve, mail=mail_table(mailbox),
                                    video_link="https://meet.example.org/{booking_id}")
    booking = await book(client, answers={"topic": "Roadmap"}, timezone="Europe/Berlin")
    assert await runtime.mailer.run_once() == 2

    [invite] = mailbox.to("sam@example.org")
    assert invite.envelope_to == ["sam@example.org"]
    assert invite.message["To"] == "Sam Guest <sam@example.org>"
    assert invite.message["From"] == "Bookings <bookings@example.org>"
    assert invite.message["Reply-To"] == "alex@hosts.example.org"
    calendar = invite.calendar()
    assert str(calendar["METHOD"]) == "REQUEST"
    event = vevent(calendar)
    assert str(event["UID"]) == guest_uid(booking["id"])
    assert int(event["SEQUENCE"]) == 0
    assert event.decoded("DTSTART").isoformat() == "2026-11-26T10:00:00+00:00"
    assert str(event["ORGANIZER"]) == "mailto:alex@hosts.example.org"
    attendee = event["ATTENDEE"]
    assert str(attendee) == "mailto:sam@example.org"
    assert attendee.params["PARTSTAT"] == "ACCEPTED" and attendee.params["CN"] == "Sam Guest"
    assert str(event["LOCATION"]) == booking["video_link"]
    assert booking["manage_url"] in str(event["DESCRIPTION"])
    # The same file attached, for mail programs that only offer attachments.
    attached = invite.part("application/ics")
    assert attached is not None and Calendar.from_ical(attached.get_content())["METHOD"] == \
        "REQUEST"
    # In the guest's zone, with the links.
    assert "11:00–11:30 (Europe/Berlin)" in invite.text()
    assert booking["manage_url"] in invite.text() and booking["manage_url"] in invite.html()

    [notice] = mailbox.to("alex@hosts.example.org")
    assert notice.message["Reply-To"] == "sam@example.org"
    assert "Sam Guest" in notice.message["Subject"]
    assert "Topic: Roadmap" in notice.text()
    assert "/booking/" + booking["id"] + "/host?secret=" in notice.text()
    assert notice.part("text/calendar") is None
    # Sent once: nothing left.
    assert await runtime.mailer.run_once() == 0


async def test_cancelling_sends_a_cancel_with_the_same_uid_and_a_higher_sequence(
        make_config, sources, serve, mailbox: Mailbox) -> None:
    client, runtime = await started(make_config, sources, serve, mail=mail_table(mailbox))
    booking = await book(client)
    await runtime.mailer.run_once()
    response = await client.post(
        f"/api/v1/bookings/{booking['id']}/cancel?secret={booking['manage_url'].split('=')[-1]}")
    assert response.status == 200, await response.text()
    assert await runtime.mailer.run_once() == 2
    first, cancelled = mailbox.to("sam@example.org")
    calendar = cancelled.calendar()
    assert str(calendar["METHOD"]) == "CANCEL"
    assert str(vevent(calendar)["UID"]) == str(vevent(first.calendar())["UID"])
    assert int(vevent(calendar)["SEQUENCE"]) > int(vevent(first.calendar())["SEQUENCE"])
    assert str(vevent(calendar)["STATUS"]) == "CANCELLED"
    assert cancelled.message["Subject"].startswith("Cancelled:")
    _, host_notice = mailbox.to("alex@hosts.example.org")
    assert "cancelled their booking" in host_notice.text()


async def test_rescheduling_sends_a_request_with_the_same_uid_and_moves_the_reminders(
        make_config, sources, serve, mailbox: Mailbox, clock: FixedClock) -> None:
    client, runtime = await started(make_config, sources, serve, mail=mail_table(mailbox),
                                    reminders=["1h"])
    booking = await book(client)
    await runtime.mailer.run_once()
    response = await client.post(
        booking["reschedule_url"].removeprefix(runtime.config.server.base_url),
        json={"start": "2026-11-27T11:00:00Z"})
    assert response.status == 200, await response.text()
    assert await runtime.mailer.run_once() == 2  # the guest's update, the host's notice
    first, moved = mailbox.to("sam@example.org")
    calendar = moved.calendar()
    assert str(calendar["METHOD"]) == "REQUEST"
    assert str(vevent(calendar)["UID"]) == str(vevent(first.calendar())["UID"])
    assert int(vevent(calendar)["SEQUENCE"]) == 1
    assert vevent(calendar).decoded("DTSTART").isoformat() == "2026-11-27T11:00:00+00:00"
    assert moved.message["Subject"].startswith("Moved:")
    assert "moved their booking" in mailbox.to("alex@hosts.example.org")[-1].text()
    # The reminder of the old time is gone; the new one comes an hour before 11:00.
    clock.set(NOW + timedelta(hours=21))  # 09:00 on the 26th: the old time's reminder
    assert await runtime.mailer.run_once() == 0
    clock.set(NOW + timedelta(days=1, hours=22))  # 10:00 on the 27th
    assert await runtime.mailer.run_once() == 1
    assert mailbox.to("sam@example.org")[-1].message["Subject"].startswith("Reminder:")
    assert "27 November 2026, 11:00" in mailbox.to("sam@example.org")[-1].text()


async def test_the_download_and_the_invitation_are_one_event(
        make_config, sources, serve, mailbox: Mailbox) -> None:
    client, runtime = await started(make_config, sources, serve, mail=mail_table(mailbox))
    booking = await book(client)
    await runtime.mailer.run_once()
    [invite] = mailbox.to("sam@example.org")
    response = await client.get(booking["ics_url"].removeprefix(
        runtime.config.server.base_url))
    download = vevent(Calendar.from_ical(await response.read()))
    assert str(download["UID"]) == str(vevent(invite.calendar())["UID"])
    assert int(download["SEQUENCE"]) == 0


async def test_reminders_go_out_once_each_at_their_time_across_restarts(
        make_config, sources, serve, mailbox: Mailbox, clock: FixedClock) -> None:
    # NOW is 22 hours before SLOT: the 24-hour reminder is past already, the others not.
    config = build(make_config, sources, mail=mail_table(mailbox),
                   reminders=["24h", "2h", "30m"], notify_host=False, remind_host=True)
    client, runtime = await serve(config)
    await runtime.sync.run_all_once()
    booking = await book(client)
    assert await runtime.mailer.run_once() == 1  # the invitation
    kinds = await runtime.store.mail_of_booking(booking["id"])
    assert sorted((k, r, t) for k, r, _, _, t in kinds) == [
        ("invite", "guest", ""), ("reminder", "alex", "2h"), ("reminder", "alex", "30m"),
        ("reminder", "guest", "2h"), ("reminder", "guest", "30m")]

    clock.set(NOW + timedelta(hours=19, minutes=59))  # 2h01m before the start
    assert await runtime.mailer.run_once() == 0
    clock.set(NOW + timedelta(hours=20))
    assert await runtime.mailer.run_once() == 2  # guest and host, 2 hours before
    reminder = mailbox.to("sam@example.org")[-1]
    assert reminder.message["Subject"].startswith("Reminder:")
    assert reminder.part("text/calendar") is None
    assert "Reminder:" in mailbox.to("alex@hosts.example.org")[-1].message["Subject"]

    # A restart on the same database sends nothing twice, then the last one on time.
    again = create_app(config, clock=clock, start_sync=False)
    async with again_running(again) as restarted:
        assert await restarted.mailer.run_once() == 0
        clock.set(NOW + timedelta(hours=21, minutes=30))
        assert await restarted.mailer.run_once() == 2
        assert await restarted.mailer.run_once() == 0
    assert len(mailbox.to("sam@example.org")) == 3


async def test_cancelling_drops_the_reminders(make_config, sources, serve,
                                              mailbox: Mailbox, clock: FixedClock) -> None:
    client, runtime = await started(make_config, sources, serve, mail=mail_table(mailbox),
                                    reminders=["1h"], notify_host=False)
    booking = await book(client)
    secret = booking["manage_url"].split("=")[-1]
    await client.post(f"/api/v1/bookings/{booking['id']}/cancel?secret={secret}")
    clock.set(NOW + timedelta(hours=21, minutes=30))
    assert await runtime.mailer.run_once() == 2  # invitation, cancellation
    assert [m.message["Subject"].split(":")[0] for m in mailbox.messages] == [
        "Booked", "Cancelled"]
    states = {(k, s) for k, _, s, _, _ in await runtime.store.mail_of_booking(booking["id"])}
    assert ("reminder", "dropped") in states


async def test_without_mail_nothing_is_queued(make_config, sources, serve) -> None:
    client, runtime = await started(make_config, sources, serve)
    booking = await book(client)
    assert await runtime.store.mail_of_booking(booking["id"]) == []
    assert await runtime.mailer.run_once() == 0


async def test_a_failing_server_is_retried_with_backoff_and_shows(
        make_config, sources, serve, mailbox: Mailbox, clock: FixedClock) -> None:
    client, runtime = await started(make_config, sources, serve, mail=mail_table(mailbox),
                                    notify_host=False)
    mailbox.refuse = True
    await book(client)
    assert await runtime.mailer.run_once() == 0
    summary = await runtime.store.mail_summary(int(clock.now().timestamp()))
    assert summary.failing == 1 and "451" in (summary.last_error or "")
    mailbox.refuse = False
    assert await runtime.mailer.run_once() == 0  # not due yet: backoff
    clock.set(NOW + timedelta(minutes=5))
    assert await runtime.mailer.run_once() == 1
    assert len(mailbox.messages) == 1


async def test_one_address_gets_at_most_its_daily_share(
        make_config, sources, serve, mailbox: Mailbox) -> None:
    client, runtime = await started(make_config, sources, serve,
                                    mail=mail_table(mailbox, max_per_address_per_day=2),
                                    notify_host=False)
    for start in ("2026-11-26T10:00:00Z", "2026-11-26T10:30:00Z", "2026-11-26T11:00:00Z"):
        await book(client, start=start)
    assert await runtime.mailer.run_once() == 2
    summary = await runtime.store.mail_summary(int(runtime.clock.now().timestamp()))
    assert summary.dropped == 1


async def test_hostile_guest_text_adds_no_header_recipient_element_or_property(
        make_config, sources, serve, mailbox: Mailbox) -> None:
    client, runtime = await started(make_config, sources, serve, mail=mail_table(mailbox))
    hostile = ("<script>alert(1)</script>\r\nBcc: victim@evil.example\r\n"
               "ATTENDEE:mailto:victim@evil.example\nEND:VEVENT")
    booking = await book(client, name='"Eve, <b>x</b>" victim@evil.example',
                         answers={"topic": hostile})
    assert await runtime.mailer.run_once() == 2
    everyone = {address for m in mailbox.messages for address in m.envelope_to}
    assert everyone == {"sam@example.org", "alex@hosts.example.org"}
    for received in mailbox.messages:
        assert "victim" not in str(received.message["To"]).split("<")[-1]
        assert received.message["Bcc"] is None and received.message["Cc"] is None
        assert "<script>" not in received.html() and "<b>x</b>" not in received.html()
        assert b"\nBcc:" not in received.raw.split(b"\r\n\r\n", 1)[0]
    calendar = mailbox.to("sam@example.org")[0].calendar()
    [attendee] = [vevent(calendar)["ATTENDEE"]]
    assert str(attendee) == "mailto:sam@example.org"
    assert len(calendar.walk("VEVENT")) == 1
    assert booking["id"]


async def test_mail_that_keeps_failing_shows_and_raises_mail_failing(
        make_config, sources, serve, mailbox: Mailbox, clock: FixedClock) -> None:
    config = build(make_config, sources, mail=mail_table(mailbox), notify_host=False,
                   alerts=[{"name": "ops", "kind": "email", "to": ["ops@example.org"],
                            "events": ["mail_failing"]}])
    client, runtime = await serve(config)
    await runtime.sync.run_all_once()
    mailbox.refuse = True
    await book(client)
    for minutes in range(0, 24 * 60, 30):  # backoff grows; two days cover five tries
        clock.set(NOW + timedelta(minutes=minutes) * 2)
        await runtime.mailer.run_once()
    summary = await runtime.store.mail_summary(int(clock.now().timestamp()))
    assert summary.failing == 1 and summary.sent == 0
    assert runtime.alerts is not None and await runtime.alerts.evaluate() == 1
    assert await runtime.alerts.evaluate() == 0, "reported once"
    mailbox.refuse = False
    assert await runtime.alerts.deliver() == 1  # through [mail], as the alert named none
    [alert] = mailbox.to("ops@example.org")
    assert "failed" in alert.message["Subject"]

    from server.outputs.status import admin_secret
    status = await (await client.get("/api/v1/status", headers={
        "Authorization": f"Bearer {await admin_secret(runtime)}"})).json()
    assert status["mail"]["failing"] == 1 and "451" in status["mail"]["last_error"]
    page = await (await client.get("/status", headers={
        "Authorization": f"Bearer {await admin_secret(runtime)}"})).text()
    assert "1 failing" in page


async def test_a_page_overrides_templates_and_a_broken_one_is_retried_not_fatal(
        make_config, sources, serve, mailbox: Mailbox, tmp_path) -> None:
    folder = tmp_path / "mail-templates"
    folder.mkdir()
    (folder / "invite.txt").write_text(
        '{% set subject = "Welcome to " ~ title %}Dear {{ guest_name }}: {{ when }}\n')
    (folder / "host_booked.txt").write_text("{{ no_such_variable }}")
    client, runtime = await started(make_config, sources, serve, mail=mail_table(mailbox),
                                    templates_dir=str(folder))
    await book(client)
    assert await runtime.mailer.run_once() == 1
    [invite] = mailbox.messages
    assert invite.message["Subject"] == "Welcome to Intro call"
    assert invite.text().startswith("Dear Sam Guest: Thursday, 26 November 2026")
    assert "you are booked" in invite.html(), "the built-in HTML stays"
    summary = await runtime.store.mail_summary(int(runtime.clock.now().timestamp()))
    assert summary.failing == 1 and "no_such_variable" in (summary.last_error or "")


class again_running:
    """The app's runtime opened on its own (a restart on the same database)."""

    def __init__(self, app: Any) -> None:
        self._app = app
        self._contexts: list[Any] = []

    async def __aenter__(self) -> Any:
        for make in self._app.cleanup_ctx:
            context = make(self._app)
            await context.__anext__()
            self._contexts.append(context)
        return self._app[RUNTIME]

    async def __aexit__(self, *exc: object) -> None:
        for context in reversed(self._contexts):
            with contextlib.suppress(StopAsyncIteration):
                await context.__anext__()


assert SLOT == "2026-11-26T10:00:00Z"
