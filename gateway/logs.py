"""Logging to stderr, with every configured secret masked; and log lines a hostile client
cannot multiply or forge.

Code never logs secrets on purpose; this filter is the belt to those braces (an exception
message that echoes a URL with a token in it, a library's debug line).

Whatever a client sends can end up in a log line (a rejection's reason, a path), and a
client can send as many requests as it likes: `one_line` keeps such text on one bounded
line, and `LogLimiter` keeps a flood of them to a few lines a minute.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import SecretStr

from gateway.config import Config

MASK = "***"


class Masker:
    """Masks every configured secret in a text (for what leaves the process other than
    through the log: the status page's last errors)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret that contains another is masked whole.
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text


class RedactSecrets(logging.Filter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = Masker(secrets).secrets

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        for key in CONTEXT_KEYS:
            value = getattr(record, key, None)
            if isinstance(value, str):
                for secret in self._secrets:
                    value = value.replace(secret, MASK)
                setattr(record, key, value)
        message = record.getMessage()
        masked = message
        for secret in self._secrets:
            masked = masked.replace(secret, MASK)
        if masked != message or record.exc_info:
            if record.exc_info:
                formatter = logging.Formatter()
                trace = formatter.formatException(record.exc_info)
                for secret in self._secrets:
                    trace = trace.replace(secret, MASK)
                masked = f"{masked}\n{trace}"
                record.exc_info = None
                record.exc_text = None
            record.msg, record.args = masked, None
        return True


# Control characters, line separators, and the bidirectional overrides that make a line
# display other than it reads.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def one_line(text: object, limit: int = 200) -> str:
    """`text` as one log line: control characters (newlines too) escaped, at most `limit`
    characters, so a client's bytes can neither forge a log line nor fill the log."""
    line = _UNPRINTABLE.sub(lambda m: ascii(m.group())[1:-1], str(text))
    return line if len(line) <= limit else line[: limit - 1] + "…"


def describe(exc: BaseException) -> str:
    """An exception as `Class: message`, on one line."""
    message = " ".join(str(exc).split())  # library messages span lines ("400, message:\n  ...")
    return one_line(f"{type(exc).__name__}: {message}" if message else type(exc).__name__)


@dataclass(slots=True)
class _Window:
    ends: float
    logged: int = 0
    suppressed: int = 0


class LogLimiter:
    """At most `burst` lines per key per `window` seconds; the rest are counted and reported
    as one line ("... K more in the last 60 s, not logged") when the window ends.

    A key names a kind of line (`bot s: rejected webhooks (401)`); keys come from the
    configuration and a few fixed kinds, never from what a client sends, so they stay few.
    """

    def __init__(
        self,
        logger: logging.Logger,
        *,
        burst: int = 10,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._burst = burst
        self._window = window
        self._clock = clock
        self._windows: dict[str, _Window] = {}

    def allow(self, key: str) -> bool:
        """Take one line of `key`'s budget: True to log it, False if it is to be counted as
        suppressed (and then it is)."""
        now = self._clock()
        window = self._windows.get(key)
        if window is None or now >= window.ends:
            if window is not None:
                self._report(key, window)
            window = self._windows[key] = _Window(now + self._window)
        if window.logged < self._burst:
            window.logged += 1
            return True
        if window.suppressed == 0:
            self._report_later(key, window)
        window.suppressed += 1
        return False

    def log(self, key: str, level: int, msg: str, *args: object) -> None:
        if self.allow(key):
            self._logger.log(level, msg, *args)

    def _report(self, key: str, window: _Window) -> None:
        if window.suppressed:
            self._logger.warning(
                "%s: %d more in the last %g s, not logged", key, window.suppressed, self._window
            )
            window.suppressed = 0

    def _report_later(self, key: str, window: _Window) -> None:
        # Report when the window ends even if no further line comes to trigger it; without
        # a running loop (sync callers) the next line of the key reports it instead.
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        loop.call_later(max(0.0, window.ends - self._clock()), self._report, key, window)


class EdgeLog:
    """The HTTP edge's log: one line per refused request, at most 10 a minute per bot and
    status (then a count), and at most one traceback a minute per bot (or for the edge) for
    unexpected errors, then one line each."""

    TRACEBACK_EVERY_S = 60.0

    def __init__(self, logger: logging.Logger) -> None:
        self._log = logger
        self._lines = LogLimiter(logger)
        self._tracebacks = LogLimiter(logger, burst=1, window=self.TRACEBACK_EVERY_S)

    def rejected(self, bot: str, status: int, reason: str, what: str = "webhook") -> None:
        """A bot's webhook (or, `what`, another route of its) refused with `status`."""
        level = logging.WARNING if status >= 500 else logging.INFO
        self._lines.log(
            f"bot {bot}: rejected {what}s ({status})",
            level,
            "bot %s: rejected %s (%d): %s",
            bot,
            what,
            status,
            one_line(reason),
        )

    def unavailable(self, bot: str, reason: str) -> None:
        """A bot's webhook answered 503 because the store could not take it (down, or the
        inbox is full): the platform retries. A flood must not flood the log too."""
        self._lines.log(
            f"bot {bot}: store unavailable (503)",
            logging.ERROR,
            "bot %s: store unavailable, asking the platform to retry: %s",
            bot,
            one_line(reason),
        )

    def refused(self, status: int, reason: str) -> None:
        """A request for no bot (an unknown path, a wrong method)."""
        key = f"refused requests ({status})"
        self._lines.log(key, logging.INFO, "refused request (%d): %s", status, one_line(reason))

    def failed(self, subject: str, status: int, what: str, exc: Exception) -> None:
        """An unexpected exception, answered with `status`. `subject` is `bot <name>`, or
        `edge` outside any bot."""
        if self._tracebacks.allow(subject):
            self._log.error("%s: %s (%d)", subject, what, status, exc_info=exc)
            return
        self._lines.log(
            f"{subject}: {what}",
            logging.ERROR,
            "%s: %s (%d): %s (tracebacks: at most one a minute)",
            subject,
            what,
            status,
            describe(exc),
        )


def config_secrets(config: Config) -> list[str]:
    values: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, SecretStr):
            values.append(node.get_secret_value())
        elif isinstance(node, dict):
            for v in node.values():
                walk(v)
        elif hasattr(node, "__pydantic_fields__"):
            for name in type(node).model_fields:  # type: ignore[attr-defined]
                walk(getattr(node, name))
        elif isinstance(node, list | tuple):
            for v in node:
                walk(v)

    walk(config)
    return values


# The keys a line may carry besides its message (`extra=`): the message's life
# (gateway/lifelog.py), a bot's state. JSON lines always have the first four.
CONTEXT_KEYS = ("bot", "chat", "trace_id", "event")
MEASURE_KEYS = ("app", "result", "dify_s", "since_ack_s", "total_s")


class JsonLines(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, bot, chat, trace_id,
    event (null when a line has none), message, the line's measures, and the traceback as
    `exc` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": _iso_time(record.created),
            "level": record.levelname,
            "logger": record.name,
        }
        for key in CONTEXT_KEYS:
            line[key] = getattr(record, key, None)
        line["message"] = record.getMessage()
        for key in MEASURE_KEYS:
            if hasattr(record, key):
                line[key] = getattr(record, key)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        return json.dumps(line, ensure_ascii=False, default=str)


def _iso_time(created: float) -> str:
    stamp = datetime.fromtimestamp(created, tz=UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def setup_logging(
    level: str = "INFO", secrets: Iterable[str] = (), log_format: str = "text"
) -> None:
    """Log to stderr in `log_format` (`text` or `json`), masking `secrets`. Called again on
    a reload, with the new config's secrets and format."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonLines())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request URL at INFO; WeCom puts access_token in the query string.
    for noisy in ("httpx", "httpcore", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
