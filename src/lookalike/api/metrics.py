"""Prometheus metrics: request counts and one latency histogram per request stage (decode, embed, search)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """One registry per app, so several apps (tests) in one process do not collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "lookalike_requests", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.request_seconds = Histogram(
            "lookalike_request_seconds", "Request latency", ["route"], buckets=STAGE_BUCKETS, registry=self.registry
        )
        self.stage_seconds = Histogram(
            "lookalike_stage_seconds",
            "Latency of one search stage",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=self.registry,
        )

        self.rate_limited = Counter(
            "lookalike_rate_limited", "Requests refused by the per-client rate limit (429)", registry=self.registry
        )

    def observe_stages(self, timings_ms: dict[str, float]) -> None:
        for stage, milliseconds in timings_ms.items():
            self.stage_seconds.labels(stage).observe(milliseconds / 1000)

    def render(self) -> bytes:
        return generate_latest(self.registry)
