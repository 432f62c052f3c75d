"""What a Dify stream yields (typed events) and raises (typed errors).

`str(error)` is for logs; what the chat shows is `gateway.words.dify_failure(words, error)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# --- errors ------------------------------------------------------------------------------


class DifyError(Exception):
    """Base class. `str()` is for logs (never shown in the chat)."""


class DifyHTTPError(DifyError):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"Dify HTTP {status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


class ConversationGone(DifyError):
    """Dify no longer knows the conversation: drop the mapping and start a new one."""


class DifyRateLimited(DifyError):
    def __init__(self, retry_after: float) -> None:
        super().__init__(f"Dify rate limited; retry after {retry_after:.0f}s")
        self.retry_after = retry_after


class DifyUnavailable(DifyError):
    """Could not reach Dify, or it answered 5xx, after the allowed tries."""


class StreamStalled(DifyError):
    """Dify sent nothing for too long in the middle of a stream."""


class DifyStreamError(DifyError):
    """An SSE `error` event, or a failed workflow run."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"Dify stream error {code}: {message}")
        self.code, self.message = code, message


class DeadlineExceeded(DifyError):
    """The answer ran past the app's `timeout_s`."""


# --- events ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class TextReplace:
    """`message_replace`: Dify's moderation swapped the whole answer."""

    text: str


@dataclass(frozen=True, slots=True)
class FileOutput:
    url: str
    type: str


@dataclass(frozen=True, slots=True)
class Started:
    """The first event that names the conversation and message (remember it early, so a
    stream that fails later still continues the conversation)."""

    conversation_id: str
    message_id: str
    # The run's id for the stop endpoints; a takeover stops the run it replaces.
    task_id: str = ""


@dataclass(frozen=True, slots=True)
class Finished:
    conversation_id: str
    message_id: str
    citations: tuple[str, ...] = ()
    # Workflow apps may stream no text and put the answer in outputs.
    output_text: str | None = None


DifyEvent = TextDelta | TextReplace | FileOutput | Started | Finished


@dataclass(slots=True)
class ChatRequest:
    query: str
    user: str
    inputs: dict[str, Any] = field(default_factory=dict)
    conversation_id: str | None = None
    files: list[dict[str, Any]] = field(default_factory=list)
    trace_id: str | None = None
