"""Prometheus metrics, one registry per gateway (so tests can build many gateways)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.webhooks = Counter(
            "dify_gateway_webhooks_total",
            "Webhook requests by bot and result",
            ["bot", "result"],
            registry=r,
        )
        self.events = Counter(
            "dify_gateway_events_total",
            "Inbound messages by bot and fate (accepted, duplicate, skipped)",
            ["bot", "fate"],
            registry=r,
        )
        self.answers = Counter(
            "dify_gateway_answers_total",
            "Finished answers by bot and result",
            ["bot", "result"],
            registry=r,
        )
        self.answer_seconds = Histogram(
            "dify_gateway_answer_seconds",
            "Time from accept to final reply",
            ["bot"],
            buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300),
            registry=r,
        )
        self.updates = Counter(
            "dify_gateway_reply_updates_total",
            "Streaming updates sent to platforms",
            ["bot"],
            registry=r,
        )
        self.dify_errors = Counter(
            "dify_gateway_dify_errors_total",
            "Dify failures by kind",
            ["app", "kind"],
            registry=r,
        )
        self.sse_malformed = Counter(
            "dify_gateway_sse_malformed_lines_total",
            "Malformed SSE lines skipped",
            registry=r,
        )
        self.queued = Gauge(
            "dify_gateway_answers_queued", "Accepted messages waiting for a worker", registry=r
        )
        self.running = Gauge(
            "dify_gateway_answers_running", "Answers being produced now", registry=r
        )
        self.connections = Gauge(
            "dify_gateway_long_connection_up",
            "1 while a bot's long connection is up",
            ["bot"],
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
