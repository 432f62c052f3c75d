"""Shapes every layer shares.

The HTTP edge turns an aiohttp request into a framework-free `WebhookRequest`; an adapter
turns that into an `Outcome`; each `InboundMessage` it carries becomes a `Job` once it is
routed and accepted. A `Job` serialises to JSON, so another process can answer it: that is
the seam where the durable inbox goes.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from pydantic import TypeAdapter


# Not frozen, like Messages, InboundMessage and Job: frozen dataclasses set every field
# through object.__setattr__, which costs more than the rest of the ack path's object
# building. Treat all four as immutable (use dataclasses.replace).
@dataclass(slots=True)
class WebhookRequest:
    """One inbound HTTP request, free of any web framework.

    `headers` is a case-insensitive mapping (look names up in lower case); `body` is the exact
    bytes received, because Slack and Feishu sign the raw body and a re-serialised one would
    not verify.
    """

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes
    received_at: float


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """What the edge sends back. Adapters build these; only the edge knows aiohttp."""

    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain"
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, payload: object, status: int = 200) -> HttpResponse:
        data = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        return cls(status=status, body=data, content_type="application/json")

    @classmethod
    def text(cls, text: str, status: int = 200) -> HttpResponse:
        return cls(status=status, body=text.encode(), content_type="text/plain")


EMPTY_OK = HttpResponse()


class ChatType(StrEnum):
    DIRECT = "direct"
    GROUP = "group"


@dataclass(frozen=True, slots=True, kw_only=True)
class Attachment:
    """A file the user sent. `source` holds what the adapter needs to download it later,
    in the worker: never on the ack path."""

    kind: Literal["image", "document", "audio", "video"]
    name: str
    mime_type: str | None = None
    size: int | None = None
    source: dict[str, Any] = field(default_factory=dict)


# Plain slotted dataclasses, not pydantic models: one is built per webhook on the ack path,
# and validation would cost more than everything else the adapter does (bench/README.md).
# mypy --strict checks the adapters that build them; JSON goes through pydantic (Job.to_json).
@dataclass(slots=True, kw_only=True)
class InboundMessage:
    """One human message, normalised. Platform quirks stay in `adapters/<p>/convert.py`.

    - `user_id` is the platform's id for the speaker (Slack user id, Feishu open_id, WeCom
      userid, DingTalk senderStaffId or senderId); the router namespaces it by bot.
    - `dedupe_keys` are the platform's delivery and message ids (for example Slack's
      `event:Ev1` and `msg:C1:1700000000.1`); the core prefixes them with the bot name.
    - `reply_to` is what the adapter needs to answer (a Slack `thread_ts`, a DingTalk
      `sessionWebhook`, …). It must be JSON, so another process can answer the message.
    """

    bot: str
    platform: str
    event_id: str
    message_id: str
    chat_id: str
    chat_type: ChatType
    user_id: str
    user_name: str = ""
    text: str
    mentioned: bool = False
    from_bot: bool = False
    thread_id: str | None = None
    attachments: tuple[Attachment, ...] = ()
    dedupe_keys: tuple[str, ...] = ()
    # Set when the gateway should answer with this text itself instead of asking Dify (for
    # example "voice messages are not supported yet"), through the same dedupe, ordering and
    # reply path as any answer.
    notice: str | None = None
    reply_to: dict[str, Any] = field(default_factory=dict)
    # A click on a button the gateway posted (see `Action`); None for a message written.
    action: Action | None = None
    received_at: float


@dataclass(frozen=True, slots=True)
class Answered:
    """The adapter answered the request itself: a URL-verification challenge, a WeCom AI-bot
    stream refresh. Nothing goes to the relay."""

    response: HttpResponse
    reason: str


@dataclass(slots=True)
class Messages:
    """Messages to answer. The edge accepts them into the inbox, then sends `ack`."""

    messages: tuple[InboundMessage, ...]
    ack: HttpResponse = EMPTY_OK


@dataclass(frozen=True, slots=True)
class Ignored:
    """A valid request that needs no answer (a bot echo, an edit, an unsubscribed event)."""

    reason: str
    ack: HttpResponse = EMPTY_OK


Outcome = Answered | Messages | Ignored


ActionKind = Literal["feedback", "suggestion", "stop", "form"]


@dataclass(slots=True, kw_only=True)
class Action:
    """A click on something the gateway posted: the 👍/👎 of an answer, a suggested
    question, the Stop button of an answer being written (or the `/stop` command).

    It arrives as an `InboundMessage` from whoever clicked, where they clicked (`action`
    set), and goes the way of every message: intake, dedupe, the durable inbox, a worker
    (gateway/clicks.py). `answer_id` is the job id (`<bot>:<message id>`) of the answer the
    control belongs to: the store keeps what a click needs under it, for every instance
    (gateway/answers.py).

    - `feedback`: `value` is `like`, `dislike` or empty (withdrawn); `comment` a reason.
    - `suggestion`: `value` is the question's position (0, 1, 2).
    - `stop`: an empty `answer_id` means the answer being written in the conversation (the
      `/stop` command); `value` `reset` stops it quietly, before a `/reset`.
    - `form`: an answer to a human-input form; `answer_id` is the form's token, `value`
      the chosen action's id (empty: `comment` is a reply in words, read as
      gateway/forms.py says), `comment` the text of its one paragraph field, `inputs` the
      fields filled in a dialog (by field name).
    """

    kind: ActionKind
    answer_id: str
    value: str = ""
    comment: str = ""
    inputs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AnswerOptions:
    """What a route wants an answer to show besides the app's text (config `routes[]`:
    `show_tools`, `show_progress`, `reasoning`, `citations`, `show_usage`) and offer with it
    (`feedback`, `suggestions`). Every field has a default, so jobs kept before a field
    existed still read."""

    show_tools: bool = False
    show_progress: bool = True
    reasoning: Literal["hide", "collapse", "show"] = "hide"
    citations: bool = True
    show_usage: bool = False
    feedback: bool = True
    suggestions: bool = True


@dataclass(slots=True, kw_only=True)
class Job:
    """A routed, accepted message: everything a worker needs to answer it, as JSON."""

    job_id: str
    message: InboundMessage
    app: str
    scope: str
    conversation_key: str
    dify_user: str
    # The route's `inputs` templates; rendered in the worker, where a display name that the
    # event did not carry can be looked up without slowing the ack.
    input_templates: dict[str, str] = field(default_factory=dict)
    options: AnswerOptions = field(default_factory=AnswerOptions)
    # The queue the job waits in when it must not wait behind its conversation's answers
    # (`/stop`, a Stop button, a rating): empty means the conversation's own queue.
    lane: str = ""
    accepted_at: float

    @property
    def queue_key(self) -> str:
        """What the inbox orders jobs by: one at a time per key, in the order accepted."""
        return self.lane or self.conversation_key

    def to_json(self) -> bytes:
        return _job_adapter().dump_json(self)

    @classmethod
    def from_json(cls, data: bytes | str) -> Job:
        return _job_adapter().validate_json(data)


@functools.cache
def _job_adapter() -> TypeAdapter[Job]:
    return TypeAdapter(Job)
