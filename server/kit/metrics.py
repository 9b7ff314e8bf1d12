"""Prometheus metrics (prometheus-client), one registry per running server.

Events (sync rounds, bookings, hold deliveries, HTTP requests) are counted as
they happen; states (last success, staleness, items, outbox depth) are read
from the store at scrape time, so they are right even after a restart.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

__all__ = ["CONTENT_TYPE", "Metric", "Metrics", "gauge"]
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    """The counters and histograms fbproxy updates, and its scrape-time gauges."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.sync_seconds = Histogram(
            "fbproxy_sync_duration_seconds", "Duration of one sync round.", ["source"],
            buckets=_SECONDS, registry=self.registry)
        self.sync_rounds = Counter(
            "fbproxy_sync_rounds_total", "Sync rounds by result (ok, unchanged, failed).",
            ["source", "result"], registry=self.registry)
        self.http_seconds = Histogram(
            "fbproxy_http_request_duration_seconds", "HTTP request duration by route.",
            ["route", "method", "status"], buckets=_SECONDS, registry=self.registry)
        self.bookings = Counter(
            "fbproxy_bookings_total", "Booking attempts by page and result (booked, taken, "
            "invalid, cancelled).", ["page", "result"], registry=self.registry)
        self.holds = Counter(
            "fbproxy_hold_deliveries_total", "Hold deliveries upstream by action and result.",
            ["action", "result"], registry=self.registry)

    def sync_round(self, source: str, ok: bool, unchanged: bool, seconds: float) -> None:
        self.sync_seconds.labels(source).observe(seconds)
        result = "failed" if not ok else "unchanged" if unchanged else "ok"
        self.sync_rounds.labels(source, result).inc()

    def render(self, state: list[Metric]) -> bytes:
        """The text exposition: the counters, then ``state`` (gauges read just now)."""
        snapshot = CollectorRegistry(auto_describe=False)
        snapshot.register(_Snapshot(state))
        return generate_latest(self.registry) + generate_latest(snapshot)


class _Snapshot(Collector):
    def __init__(self, metrics: list[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        yield from self._metrics


def gauge(name: str, help_text: str, labels: list[str],
          values: list[tuple[list[str], float]]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, help_text, labels=labels)
    for label_values, value in values:
        family.add_metric(label_values, value)
    return family
