"""Logging to stderr, with every configured secret masked.

Code never logs secrets on purpose; this filter is the belt to those braces (an exception
message that echoes a URL with a token in it, a library's debug line).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

from pydantic import SecretStr

from gateway.config import Config

MASK = "***"


class RedactSecrets(logging.Filter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # Longest first, so a secret that contains another is masked whole.
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
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


def setup_logging(level: str = "INFO", secrets: Iterable[str] = ()) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request URL at INFO; WeCom puts access_token in the query string.
    for noisy in ("httpx", "httpcore", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
