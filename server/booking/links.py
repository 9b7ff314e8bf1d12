"""A booking's addresses (paths under the server's base_url), for pages and mail alike."""

from __future__ import annotations

from urllib.parse import quote

from server.store import BookingRecord


def manage_path(booking: BookingRecord) -> str:
    """The guest's page for a booking: see it, download it, reschedule or cancel it
    (GET is safe: changing anything takes a form post)."""
    return f"/booking/{booking.id}?secret={quote(booking.cancel_secret)}"


def invite_path(booking: BookingRecord) -> str:
    return f"/booking/{booking.id}/invite.ics?secret={quote(booking.cancel_secret)}"


def host_path(booking: BookingRecord) -> str:
    """The host's page for a booking (from their notice): see it, cancel it with a reason."""
    return f"/booking/{booking.id}/host?secret={quote(booking.host_secret)}"
