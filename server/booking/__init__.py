"""Busy time and booking: merged timelines, free slots, the booking transaction and the
hold outbox worker (no HTTP here)."""
