"""The contracts between the core and the platform adapters: what every adapter provides,
and what the core gives it. The core owns them, so adapters depend on the core and never
the other way round (`gateway.registry` finds an adapter by platform name).

An adapter is three things:

- an **inbound parser**: `handle(WebhookRequest) -> Outcome`, verifying first (pure, fail
  closed) and raising `VerificationFailed` (401) or `MalformedRequest` (400);
- a **reply sink factory**: `open_reply(message) -> ReplySink`, the one outbound path;
- a **lifetime**: `start()` fetches tokens and bot identity and opens long connections,
  `aclose()` ends them.

Adapters never import aiohttp's server side and never talk to Dify. Throttling and splitting
live once, in `gateway/streaming.py`; a sink only says how fast it may go (`pacing`).

An adapter that serves people directly (the web chat) may also serve HTTP routes of its own
(`ServesRoutes`): pages, and WebSockets that the edge upgrades once the adapter accepted the
request (`Upgrade`) and hands over as a framework-free `ServedSocket`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from gateway.controls import Controls, FormPrompt
from gateway.models import Attachment, HttpResponse, InboundMessage, Outcome, WebhookRequest
from gateway.words import ENGLISH, Words

if TYPE_CHECKING:
    import httpx

    from gateway.pacing import BotBudget
    from gateway.store.base import Store


# --- errors ------------------------------------------------------------------------------


class WebhookRejected(Exception):
    """A webhook the gateway refuses. The message goes to logs only: never secrets."""

    status = 400


class VerificationFailed(WebhookRejected):
    """Signature, token, timestamp or decryption failed: answer 401, process nothing."""

    status = 401


class MalformedRequest(WebhookRejected):
    """The body cannot be parsed at all: answer 400, process nothing."""

    status = 400


class NotReady(WebhookRejected):
    """The adapter cannot judge the request yet (e.g. it does not know its own bot id):
    answer 503 so the platform retries."""

    status = 503


class PlatformError(Exception):
    """A platform API call failed (`ok:false`, non-zero `code`/`errcode`, HTTP error)."""

    def __init__(self, platform: str, code: str, detail: str = "") -> None:
        super().__init__(f"{platform} API error {code}: {detail}" if detail else code)
        self.platform = platform
        self.code = code
        self.detail = detail


class RateLimited(PlatformError):
    """The platform said slow down (HTTP 429, Slack `ratelimited`, Feishu 230020, …).

    The streaming engine slows the whole bot down by `retry_after` seconds."""

    def __init__(self, platform: str, retry_after: float, code: str = "rate_limited") -> None:
        super().__init__(platform, code, f"retry after {retry_after:.1f}s")
        self.retry_after = retry_after


# --- capabilities and pacing -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pacing:
    """How often one message may be updated, and which bot-wide budget the updates draw on.

    Platforms count per message *and* per workspace/app (Slack tiers, Feishu app limits), so
    every sink of a bot that names the same `budget` shares `budget_per_second` between them.
    """

    min_interval: float
    budget: str
    budget_per_second: float


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What the core needs to know to stream into a platform.

    - `can_edit`: the sink can show growing text (edits or a streaming API). If false, the
      core sends finished parts, at paragraph boundaries, no faster than `pacing`.
    - `max_message`/`unit`: the length limit of one platform message, in characters or UTF-8
      bytes; the core rolls over to a new message before it.
    - `threaded_groups`: every group reply is threaded (Slack), so groups default to the
      `thread` conversation scope.
    - `awaits_every_reply`: the user sees a reply pending for every message they send (the
      web chat's thinking bubble, a WeCom AI bot's stream), so every message gets a reply,
      even one the gateway would otherwise leave unanswered (a repeated access refusal).
    - `buttons`: the sink shows `Controls` (Stop, 👍/👎, suggested questions) as buttons
      whose clicks come back as actions (`ShowsControls`).
    """

    can_edit: bool
    max_message: int
    unit: Literal["chars", "bytes"]
    pacing: Pacing
    threaded_groups: bool = False
    awaits_every_reply: bool = False
    buttons: bool = False


# --- reply sink --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutputFile:
    """A file the app produced (an image it drew, a report it wrote), downloaded by the core
    and handed to the sink to post as a real image or file.

    `link` is a public URL the core may name instead when a platform cannot take the file;
    it is never an internal or signed Dify URL (those expire and may not be reachable)."""

    data: bytes
    name: str
    mime_type: str
    link: str | None = None

    @property
    def is_image(self) -> bool:
        return self.mime_type.startswith("image/")


class ReplySink(Protocol):
    """The outbound side of one answer, which may span several platform messages.

    The core calls, in order: `begin()` once, then any number of `update(text, status)` and
    `finish(text, last=False)` (each `finish` closes the current platform message; the next
    call starts a new one), and finally exactly one of `finish(text, last=True)` or
    `fail(text)`. Before a successful end it may call `send_files(files)` once and
    `fold_reasoning(text)` once. `text` is always the *whole* text of the current message,
    in standard Markdown; the sink converts it to its dialect.

    The **status** is a short line in the bot's language ("Using web_search…") that says
    what the app is doing. While `text` is empty it takes the place of the thinking
    placeholder; after text has started a sink may show it as a small line under the text
    where the platform renders that cleanly, or not at all. `update("", None)` means "show
    the thinking placeholder again". A final message never carries a status.

    Errors: raise `RateLimited` to slow the bot down (the core retries), `PlatformError` for
    anything else. A sink records each platform message it creates in `snapshot()`; given
    that snapshot back (`open_reply(..., resume=...)`) it takes those messages over instead
    of posting new ones.
    """

    @property
    def pacing(self) -> Pacing: ...

    async def begin(self) -> None:
        """Show a "thinking…" state where the platform can edit or stream; else nothing."""

    async def update(self, text: str, status: str | None = None) -> None:
        """Show `text` as the current message so far, and `status` with it (only called
        when `can_edit`)."""

    async def finish(self, text: str, *, last: bool) -> None:
        """Deliver `text` as the final content of the current message."""

    async def fail(self, text: str) -> None:
        """End the answer with `text` (a short readable error, maybe after partial text)."""

    async def send_files(self, files: Sequence[OutputFile]) -> list[OutputFile]:
        """Deliver the app's files with the answer: called once, after the text is complete
        and before the final `finish(last=True)`. The sink uploads them now; it posts them
        now or shows them in (or after) the final message. Returns the files it could not
        deliver (a type or size the platform refuses, a failed upload): the core names them
        in the text."""

    def fold_reasoning(self, text: str) -> None:
        """The model's reasoning, to show folded in the final message where the platform can
        fold text (a collapsible panel, a small context block); a sink that cannot, drops
        it. Called before the final `finish(last=True)`, only when a route asks for it."""

    def snapshot(self) -> dict[str, Any]:
        """JSON state that lets another process resume this answer."""


@runtime_checkable
class ShowsControls(Protocol):
    """A reply sink that shows buttons (`Capabilities.buttons`): Stop while the answer is
    written, 👍/👎 and suggested questions under its final message. A click comes back as
    an `InboundMessage` with an `Action` (gateway/controls.py says what a button carries).
    """

    def offer(self, controls: Controls) -> None:
        """What to show with the answer: called before `begin()` (a Stop button while the
        answer is written) and again before the final `finish(last=True)` (what goes under
        the final message, `Controls.final`; no Stop any more)."""

    async def show(self, controls: Controls) -> None:
        """Show `controls` under the answer's finished last message in place of the ones it
        shows (a rating chosen). The sink is one opened for the click's message (maybe in
        another process than the answer's), which names the message clicked. Best effort:
        raise `PlatformError`."""

    async def amend(self, controls: Controls) -> None:
        """Show `controls` under the final message this sink just delivered, in place of
        the ones it shows (the suggested questions, asked for once the text was out, so
        the text never waits for them). Best effort: raise `PlatformError`."""

    async def still_running(self) -> None:
        """Called once, `gateway.streaming.STOP_AFTER_S` after `begin()`, if the answer is
        still being written: show the Stop button where the sink waits for a long answer to
        show it (a Slack stream's separate Stop message); nothing where it shows already."""


@runtime_checkable
class ListsSources(Protocol):
    """A reply sink whose final message also carries the answer's sources as data (the web
    chat's `sources` list, for a front end that shows them its own way). The Sources footer
    stays in the text, as on every platform."""

    def list_sources(self, sources: Sequence[str]) -> None:
        """The documents the answer drew on, numbered as in the footer (1 first). Called
        before the final `finish(last=True)`, only when the route shows citations."""


@runtime_checkable
class AsksForm(Protocol):
    """A sink that can ask for a form's field before the form is answered (a Slack modal,
    opened with the click's trigger). The answer comes back as a `form` click with the
    field's text in `Action.comment`."""

    async def ask_form(self, prompt: FormPrompt) -> bool:
        """Ask; False if the platform would not (the form is then answered as it is)."""


@dataclass(frozen=True, slots=True)
class Download:
    data: bytes
    name: str
    mime_type: str


# --- what the core gives an adapter ------------------------------------------------------


class AssistantHooks(Protocol):
    """The few Dify facts an adapter may need, without knowing Dify."""

    async def opening_statement(self, message: InboundMessage) -> str | None:
        """The routed app's opening statement (for welcome events), if it has one."""


class Delivery(Enum):
    """The core's verdict on one long-connection delivery (a Slack envelope, a Feishu event
    frame, a DingTalk callback frame, a WeCom AI-bot callback): what the transport answers.
    """

    # Taken into the inbox, or a duplicate, or not worth taking (malformed, ignored: a
    # redelivery would be just as bad): acknowledge it.
    ACK = "ack"
    # Not taken (the store is down, the adapter is not ready, the gateway is shutting down):
    # do not acknowledge it, so the platform delivers it again, maybe to another instance.
    REDELIVER = "redeliver"


# The adapter's reading of one delivery: parse it into an outcome. It may raise
# `WebhookRejected` (`NotReady`: redeliver; anything else: drop and ack) or `StoreUnavailable`
# (redeliver). The core calls it only when it can take the delivery (never while shutting
# down), so a reading may claim state in the store.
Read = Callable[[], Outcome | Awaitable[Outcome]]

# The one call a long-connection transport makes per delivery: the core reads it, accepts
# its messages into the inbox, and says whether to ack. It never raises.
Deliver = Callable[[Read], Awaitable[Delivery]]


@dataclass(slots=True)
class AdapterContext:
    http: httpx.AsyncClient
    store: Store
    budget: BotBudget
    deliver: Deliver
    assistant: AssistantHooks
    # The bot's texts in its locale (the runtime always passes them; English for contexts
    # that tests build by hand).
    words: Words = ENGLISH
    # `server.max_body_bytes`: the largest request, or WebSocket message, the edge takes.
    max_body_bytes: int = 1_048_576


# --- routes an adapter serves itself ------------------------------------------------------


class SocketClosed(Exception):
    """The socket is closed (by either side): nothing more can be sent on it."""


class ServedSocket(Protocol):
    """A server-side WebSocket, as the edge hands it to an adapter (`Upgrade.run`)."""

    async def send_text(self, text: str) -> None:
        """Send one text frame; waits while the peer's buffers are full (a peer that stops
        reading makes this wait forever: bound it). Raises `SocketClosed`."""

    async def receive(self) -> str | bytes | None:
        """The next text (str) or binary (bytes) message, or None once the socket is closed.
        A message over the edge's size limit closes the socket with 1009 (None)."""

    async def close(self, code: int = 1000) -> None:
        """Close with `code` (RFC 6455 section 7.4); a peer that does not answer the
        close is cut off. Idempotent."""


@dataclass(frozen=True, slots=True)
class Upgrade:
    """An adapter's yes to a WebSocket request: the edge upgrades the connection and runs
    `run(socket)`; the socket closes when `run` returns."""

    run: Callable[[ServedSocket], Awaitable[None]]


# One route of an adapter's own: a page (`HttpResponse`) or a WebSocket (`Upgrade`). It
# raises `WebhookRejected` (its status is the answer: 401 before any upgrade) like `handle`.
RouteHandler = Callable[[WebhookRequest], Awaitable[HttpResponse | Upgrade]]


@runtime_checkable
class ServesRoutes(Protocol):
    """An adapter that serves routes besides its webhook (GET only)."""

    def routes(self) -> Mapping[str, RouteHandler]:
        """Exact path -> handler, fixed once the adapter is built."""


@runtime_checkable
class DrainsClients(Protocol):
    """An adapter that holds clients' connections itself (the web chat's sockets)."""

    def begin_shutdown(self) -> None:
        """The gateway is shutting down: let the clients go (they reconnect, elsewhere or
        later); answers in flight still finish and reach them through the store. Do not
        block: close in tasks that `aclose()` awaits."""


# --- `dify-gateway check --probe` ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProbeStep:
    """One thing a probe tried: `what` (the call, e.g. `auth.test`), and its `error` (None:
    it worked) or a `detail` worth printing (the bot's name on the platform). `skipped`: not
    tried, `detail` says why. Never a secret: errors are masked again before printing."""

    what: str
    error: str | None = None
    detail: str = ""
    skipped: bool = False


async def attempt(what: str, call: Callable[[], Awaitable[str]]) -> ProbeStep:
    """Run one probe call (it returns the detail); any failure becomes the step's error."""
    try:
        return ProbeStep(what, detail=await call())
    except Exception as exc:
        return ProbeStep(what, error=str(exc) or type(exc).__name__)


@runtime_checkable
class Probes(Protocol):
    """An adapter that can try its credentials without starting (`check --probe`)."""

    async def probe(self) -> list[ProbeStep]:
        """Try the bot's credentials against its platform (a token fetch, the bot's own
        info), changing nothing there and opening no long connection."""


class Adapter(Protocol):
    bot: str
    platform: str
    capabilities: Capabilities

    @property
    def serves_webhook(self) -> bool:
        """False for long-connection modes: their webhook path answers 404."""

    @property
    def ready(self) -> bool:
        """True once tokens, identity and any long connection are up."""

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...

    async def handle(self, request: WebhookRequest) -> Outcome:
        """Verify (side-effect free, fail closed), then parse into an outcome."""

    def open_reply(
        self, message: InboundMessage, resume: Mapping[str, Any] | None = None
    ) -> ReplySink: ...

    async def download(self, attachment: Attachment) -> Download:
        """Fetch an attachment's bytes (in the worker, never on the ack path)."""

    async def display_name(self, message: InboundMessage) -> str:
        """The speaker's display name: `message.user_name` when the event carried it, else
        looked up (and cached) where the platform allows, else the user id. Called in the
        worker, only when a route's inputs use `{user_name}`."""
