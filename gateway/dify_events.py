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
    """Dify answered with an error status. `params` names the field Dify refused (for
    `invalid_param`): it goes to the log, for whoever runs the gateway, never to the chat."""

    def __init__(self, status: int, code: str, message: str, params: str = "") -> None:
        where = f" ({params})" if params else ""
        super().__init__(f"Dify HTTP {status} {code}{where}: {message}")
        self.status, self.code, self.message, self.params = status, code, message, params


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
    """An SSE `error` event, or a run that did not succeed: `workflow_failed` (a failed
    workflow or chatflow run)."""

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
    """A file the app produced. `url` is absolute (relative ones are resolved against the
    Dify origin or `files_base_url`); `key` identifies the file across the events that
    name it (a `message_file` and `message_end.files`, a Markdown link and
    `workflow_finished.files`), so it is fetched once."""

    url: str
    type: str
    name: str = ""
    mime_type: str = ""
    key: str = ""


@dataclass(frozen=True, slots=True)
class AgentStep:
    """`agent_thought`: one step of an agent app, re-sent with the same `id` as it fills
    in. `tools` are the tools it calls (Dify joins several with `;`); `labels` their display
    names by tool, each by Dify language (`en_US`, `zh_Hans`); `done` once the tools
    answered (an `observation` is there)."""

    id: str
    tools: tuple[str, ...] = ()
    labels: dict[str, dict[str, str]] = field(default_factory=dict)
    done: bool = False


@dataclass(frozen=True, slots=True)
class NodeStarted:
    """A chatflow or workflow node (or an iteration or loop) began."""

    title: str
    node_type: str


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    """`reasoning_chunk`: the model's reasoning, streamed apart from the answer."""

    text: str
    final: bool = False


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens and latency of an answer, from `message_end.metadata.usage` (or a workflow's
    totals)."""

    total_tokens: int
    latency_s: float | None = None


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
    usage: Usage | None = None
    # The run was stopped (the stop API, or Dify's own time limit) before it was done.
    stopped: bool = False
    files: tuple[FileOutput, ...] = ()


@dataclass(frozen=True, slots=True)
class FormField:
    """A field of a human-input form the chat can fill in: a `paragraph` (free text) or a
    `select` (one of `options`). `default` is what it holds if the user gives nothing."""

    name: str  # Dify's `output_variable_name`: the key in the submitted `inputs`
    kind: str  # `paragraph` or `select`
    label: str
    default: str = ""
    options: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FormAction:
    """A button of a human-input form: submitting the form names one (`action`)."""

    id: str
    title: str
    style: str = ""


@dataclass(frozen=True, slots=True)
class HumanInput:
    """`human_input_required`: a chatflow or workflow run waits for a person to fill in a
    form (Dify 1.13+; answering it through the API needs 1.14+).

    `token` is None when the form was delivered by email or in Dify's console: the API
    cannot answer it. `complete` is False for a form only named by `workflow_paused` (its
    content must be fetched, `GET /form/human_input/{token}`); `other_fields` counts the
    fields a chat cannot fill in (files)."""

    token: str | None
    title: str = ""
    content: str = ""
    fields: tuple[FormField, ...] = ()
    actions: tuple[FormAction, ...] = ()
    expires_at: float | None = None  # seconds since the epoch
    other_fields: int = 0
    complete: bool = True


@dataclass(frozen=True, slots=True)
class Paused:
    """`workflow_paused`: the run waits for these forms (the stream ends here). `run_id`
    is what resumes it (`GET /workflow/{run_id}/events`)."""

    run_id: str
    forms: tuple[HumanInput, ...] = ()


DifyEvent = (
    TextDelta
    | TextReplace
    | FileOutput
    | AgentStep
    | NodeStarted
    | ReasoningDelta
    | HumanInput
    | Started
    | Finished
    | Paused
)


@dataclass(slots=True)
class ChatRequest:
    query: str
    user: str
    inputs: dict[str, Any] = field(default_factory=dict)
    conversation_id: str | None = None
    files: list[dict[str, Any]] = field(default_factory=list)
    trace_id: str | None = None
