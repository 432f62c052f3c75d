"""Prometheus metrics, one registry per gateway (so tests can build many gateways).

Counters bumped on every webhook are plain integers exported at scrape time, and queue
gauges are read at scrape time: the ack path pays for neither prometheus_client's locks nor
its label lookups.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from gateway import outbound


class _HotCounters(Collector):
    """A labelled counter kept as a plain tally (single-threaded event loop: no lock)."""

    def __init__(self, name: str, doc: str, labels: tuple[str, str]) -> None:
        self.name, self.doc, self.labels = name, doc, labels
        self.counts: Tally[tuple[str, str]] = Tally()

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.doc, labels=list(self.labels))
        for values, count in sorted(self.counts.items()):
            family.add_metric(list(values), count)
        yield family


class BotView(Protocol):
    """What the bot gauge reads of each bot (gateway/bot_state.py `BotState`)."""

    @property
    def bot(self) -> str: ...

    @property
    def platform(self) -> str: ...

    @property
    def mode(self) -> str: ...

    @property
    def up(self) -> bool: ...


class _BotsUp(Collector):
    """`dify_gateway_bot_up`, read at scrape time: bots removed by a reload disappear."""

    def __init__(self) -> None:
        self.read: Callable[[], Sequence[BotView]] = list

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "dify_gateway_bot_up",
            "1 while the bot's credentials work and its long connection (if any) is up",
            labels=["bot", "platform", "mode"],
        )
        for state in self.read():
            family.add_metric([state.bot, state.platform, state.mode], 1.0 if state.up else 0.0)
        yield family


class _PlatformErrors(Collector):
    """`dify_gateway_platform_api_errors_total`: the process's tally in gateway/outbound.py,
    where every platform call fails (one place, so no adapter can forget to count)."""

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "dify_gateway_platform_api_errors",
            "Failed platform API calls by platform and error code (network, rate limits, "
            "the platform's own codes)",
            labels=["platform", "code"],
        )
        for (platform, code), count in sorted(outbound.ERRORS.items()):
            family.add_metric([platform, code], count)
        yield family


class InboxView(Protocol):
    """What the inbox gauges read at scrape time."""

    @property
    def queued(self) -> int: ...

    @property
    def in_flight(self) -> int: ...

    def oldest_wait(self) -> float: ...

    def backlog(self) -> int: ...


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self._webhooks = _HotCounters(
            "dify_gateway_webhooks", "Webhook requests by bot and result", ("bot", "result")
        )
        self._events = _HotCounters(
            "dify_gateway_events",
            "Inbound messages by bot and fate (accepted, duplicate, skipped)",
            ("bot", "fate"),
        )
        r.register(self._webhooks)
        r.register(self._events)
        self._bots_up = _BotsUp()
        r.register(self._bots_up)
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
        self.oldest_queued = Gauge(
            "dify_gateway_oldest_queued_seconds",
            "How long the oldest job on this instance has waited to start",
            registry=r,
        )
        self.backlog = Gauge(
            "dify_gateway_inbox_backlog",
            "Unanswered messages in the durable inbox, all instances together (approximate)",
            registry=r,
        )
        self.inbox_full = Counter(
            "dify_gateway_inbox_full_total",
            "Messages refused (503) because the inbox held its bound of unanswered messages",
            registry=r,
        )
        self.inbox_resumed = Counter(
            "dify_gateway_jobs_resumed_total",
            "Jobs started again after an attempt that did not finish (a crash, a takeover)",
            ["bot"],
            registry=r,
        )
        self.dead_letters = Counter(
            "dify_gateway_dead_letters_total",
            "Jobs given up after too many attempts (moved to the dead letters)",
            ["bot"],
            registry=r,
        )

        self.rate_limited = Counter(
            "dify_gateway_rate_limited_total",
            "Questions refused by a rate limit, by bot and scope (user, bot)",
            ["bot", "scope"],
            registry=r,
        )
        self.dify_first_token = Histogram(
            "dify_gateway_dify_first_token_seconds",
            "Time from sending a question to Dify to the first text of its answer",
            ["app"],
            buckets=(0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60),
            registry=r,
        )
        self.first_update = Histogram(
            "dify_gateway_first_update_seconds",
            "Time from the ack to the first thing the user sees in the chat (the thinking "
            "state where the platform can show one, else the first part of the answer)",
            ["bot"],
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
            registry=r,
        )
        self.reloads = Counter(
            "dify_gateway_reloads_total",
            "Config reloads (SIGHUP) by outcome: ok, or error (the running config stayed)",
            ["outcome"],
            registry=r,
        )
        r.register(_PlatformErrors())

    def count_webhook(self, bot: str, result: str) -> None:
        self._webhooks.counts[(bot, result)] += 1

    def count_event(self, bot: str, fate: str) -> None:
        self._events.counts[(bot, fate)] += 1

    def watch_bots(self, read: Callable[[], Sequence[BotView]]) -> None:
        self._bots_up.read = read

    def watch_inbox(self, inbox: InboxView) -> None:
        self.queued.set_function(lambda: inbox.queued)
        self.running.set_function(lambda: inbox.in_flight)
        self.oldest_queued.set_function(inbox.oldest_wait)
        self.backlog.set_function(inbox.backlog)

    def render(self) -> bytes:
        return generate_latest(self.registry)
