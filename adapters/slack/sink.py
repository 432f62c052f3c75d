"""Slack reply sink: native streaming when the budget allows, `chat.update` otherwise.

- Stream mode (https://docs.slack.dev/reference/methods/chat.startStream): the thinking
  state is an empty stream; `chat.appendStream` takes *deltas* of Markdown;
  `chat.stopStream` closes it with the rest. Streams need a `thread_ts`, and in channels
  `recipient_team_id` + `recipient_user_id`.
- Update mode: a "Thinking…" placeholder posted with `chat.postMessage`, replaced by
  `chat.update` with mrkdwn `text`, about once a second.
- Status ("Using web_search…"): in update mode it replaces the placeholder, and later shows
  as an italic line under the text. A stream only appends, so a status that arrives before
  any text moves the answer to update mode (the status would otherwise stay in the
  message); once text streams, the status is not shown.
- Folded reasoning: Slack cannot fold, so it goes in a small grey `context` block under the
  final text (`chat.stopStream` takes `blocks`; an edited message then carries its text as
  `section` blocks, since `blocks` replace `text`).
- Buttons (`ShowsControls`): while the answer is written, a Stop button. In update mode it
  is an `actions` block in the answer's own message (its text then goes in `section`
  blocks), so it costs no call of its own. A live stream may not carry buttons, so a
  streamed answer still being written after `STOP_AFTER_S` gets a small message with a
  Stop button under it, deleted when the answer ends (its ts is checkpointed: a takeover
  deletes it). Quick answers, most of them, get no extra call at all. Under the final
  message, 👍/👎 and the suggested questions as `actions` blocks (`chat.stopStream` and
  `chat.update` take them; `amend` adds the suggestions with an edit, once Dify gave
  them); a click's sink edits the message clicked (`show`) from the blocks the click
  carried. Interactivity: interactive.py.
- Files: uploaded the external way (`files.getUploadURLExternal` with form fields, the bytes
  to the upload URL, `files.completeUploadExternal` sharing them into the thread), so they
  follow the answer in its thread as real images and files.

`chat.startStream` is Tier 2 (about 20 a minute per workspace), so a busy bot takes update
mode for new answers once the bot's start-stream bucket is empty. A stream that breaks
(expired server-side, or the text was rewritten by Dify's moderation) continues in update
mode on the same message.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from adapters.slack import buttons, modals
from adapters.slack.api import SlackAPI
from adapters.slack.interactive import REASON_BLOCK, REASON_VIEW
from adapters.slack.mrkdwn import to_mrkdwn
from gateway.controls import Controls, FormPrompt
from gateway.models import InboundMessage
from gateway.pacing import BotBudget
from gateway.platform import OutputFile, Pacing, PlatformError, RateLimited
from gateway.words import Words

log = logging.getLogger(__name__)

# Tier 4 (100+/min) for appendStream, Tier 3 (50+/min) for chat.update, per workspace.
STREAM_PACING = Pacing(min_interval=0.25, budget="slack.appendStream", budget_per_second=100 / 60)
UPDATE_PACING = Pacing(min_interval=1.0, budget="slack.update", budget_per_second=50 / 60)
START_STREAM_PER_SECOND = 20 / 60  # Tier 2
START_STREAM_BURST = 3.0
CONTEXT_CHARS = 2900  # a context element takes 3,000
# Errors that mean this workspace/token cannot stream at all: stop trying for this bot.
_NO_STREAMING = {
    "unknown_method",
    "not_allowed_token_type",
    "missing_scope",
    "not_enabled",
    "feature_not_enabled",
    "method_deprecated",
}


@dataclass(slots=True)
class StreamingSupport:
    """Shared by one bot's sinks: whether its workspace accepts the streaming methods."""

    enabled: bool = True


class SlackReplySink:
    def __init__(
        self,
        api: SlackAPI,
        budget: BotBudget,
        support: StreamingSupport,
        message: InboundMessage,
        resume: Mapping[str, Any] | None = None,
        *,
        words: Words,
    ) -> None:
        self._api = api
        self._thinking = words.thinking
        self._stop_label = words.stop_button
        self._words = words
        self._controls: Controls | None = None
        self._inline_stop = False  # the current message shows the Stop button
        # The final message as delivered (ts, text, the blocks before the buttons): `amend`
        # edits it.
        self._final: tuple[str, str, list[dict[str, Any]]] | None = None
        self._clicked = message.reply_to  # a click's sink: the message clicked
        self._reasoning_title = words.reasoning_title
        self._reasoning = ""  # folded under the final text
        self._budget = budget
        self._support = support
        # Every reply goes in the message's thread (convert.py sets thread_id to the
        # message's own ts when it started none).
        self._channel = message.chat_id
        self._thread_ts = message.thread_id or message.message_id.rpartition(":")[2]
        self._team = str(message.reply_to.get("team_id") or "")
        self._user = message.user_id
        self._mode: Literal["stream", "update"] | None = None
        self._ts: str | None = None  # the current platform message
        self._streamed = ""  # what the current stream shows
        self._done: list[str] = []
        # Set when a takeover finds a stream the last owner left open: close it before the
        # first edit, so the message does not stay "streaming" forever.
        self._open_stream_left: bool = False
        if resume and resume.get("ts"):
            # The stream's deltas lived in the crashed process; the message can be edited.
            self._ts, self._mode = str(resume["ts"]), "update"
            self._open_stream_left = resume.get("mode") == "stream"
            self._done = [str(t) for t in resume.get("done", [])]
            # It may show the Stop button of the last owner: the final edit takes it away.
            self._inline_stop = True
        # The Stop message of an answer taken over: deleted when the answer ends.
        self._stop_ts: str | None = (
            str(resume["stop_ts"]) if resume and resume.get("stop_ts") else None
        )

    @property
    def pacing(self) -> Pacing:
        return STREAM_PACING if self._mode == "stream" else UPDATE_PACING

    def snapshot(self) -> dict[str, Any]:
        return {
            "channel": self._channel,
            "thread_ts": self._thread_ts,
            "ts": self._ts,
            "mode": self._mode,
            "done": list(self._done),
            "stop_ts": self._stop_ts,
        }

    # --- ReplySink -----------------------------------------------------------------------

    async def begin(self) -> None:
        if self._ts is None:
            await self._open(None)

    async def update(self, text: str, status: str | None = None) -> None:
        if self._ts is None:
            await self._open(text, status)
        elif self._mode == "stream":
            if text:
                await self._append(text)
            elif status is not None and not self._streamed:
                await self._to_update_mode("", status)
        else:
            await self._edit(text, status)

    async def finish(self, text: str, *, last: bool) -> None:
        lead = self._reasoning_blocks() if last else []
        blocks = [*lead, *buttons.final(self._controls)] if last else []
        if self._ts is None:
            payload = self._text_message(text)
            if blocks:
                payload["blocks"] = [*buttons.sections(text), *blocks]
            body = await self._api.call("chat.postMessage", payload)
            self._done.append(str(body.get("ts") or ""))
        elif self._mode == "stream":
            await self._stop(text, blocks)
        else:
            await self._edit(text, blocks=blocks, final=True)
        if self._ts is not None:
            self._done.append(self._ts)
        self._ts, self._mode, self._streamed = None, None, ""
        if last:
            self._final = (self._done[-1], text, lead)
            await self._delete_stop()

    async def fail(self, text: str) -> None:
        self._controls = None  # nothing to rate
        await self.finish(text, last=True)

    # --- ShowsControls -------------------------------------------------------------------

    def offer(self, controls: Controls) -> None:
        self._controls = controls

    async def still_running(self) -> None:
        """A stream still being written: its Stop button in a small message under it."""
        if self._mode == "stream":
            await self._post_stop()

    async def amend(self, controls: Controls) -> None:
        """Edit the final message this sink delivered: its text, then `controls`."""
        if self._final is None or not self._final[0]:
            return
        ts, text, lead = self._final
        self._controls = controls
        blocks = [*buttons.sections(text), *lead, *buttons.final(self._controls)]
        payload = {"channel": self._channel, "ts": ts, "text": self._mrkdwn(text, None)}
        await self._api.call("chat.update", {**payload, "blocks": blocks})

    async def show(self, controls: Controls) -> None:
        """Edit the message clicked: its own blocks, then the buttons as they are now."""
        ts = str(self._clicked.get("message_ts") or "")
        if not ts:
            return
        raw = self._clicked.get("blocks")
        kept = [
            b
            for b in (raw if isinstance(raw, list) else [])
            if isinstance(b, dict) and not str(b.get("block_id", "")).startswith(buttons.OURS)
        ]
        text = str(self._clicked.get("text") or "")
        section = {"type": "mrkdwn", "text": text[: buttons.SECTION_CHARS]}
        as_text = [{"type": "section", "text": section}]
        self._controls = controls
        payload = {"channel": self._channel, "ts": ts, "text": text}
        try:
            blocks = [*(kept or as_text), *buttons.final(self._controls)]
            await self._api.call("chat.update", {**payload, "blocks": blocks})
        except RateLimited:
            raise
        except PlatformError as exc:
            if not kept or not text.strip():
                raise
            # Slack may refuse a block it gave us (a streamed message's `markdown` block is
            # reported to fail): the message's text then stands for it.
            log.info("Slack refused the clicked message's blocks (%s); using its text", exc.code)
            blocks = [*as_text, *buttons.final(self._controls)]
            await self._api.call("chat.update", {**payload, "blocks": blocks})
        finally:
            if controls.ask_reason:
                await self._ask_reason(controls.answer_id, ts)

    async def _ask_reason(self, answer_id: str, ts: str) -> None:
        """After a 👎: a modal that asks why (best effort: the click's trigger lasts 3 s)."""
        trigger = str(self._clicked.get("trigger_id") or "")
        if not trigger:
            return
        where = {"answer": answer_id, "channel": self._channel, "thread_ts": self._thread_ts}
        words = self._words
        text_input = {
            "type": "plain_text_input",
            "action_id": REASON_BLOCK,
            "multiline": True,
            "max_length": 1000,
        }
        view = {
            "type": "modal",
            "callback_id": REASON_VIEW,
            "private_metadata": json.dumps(where),
            "title": {"type": "plain_text", "text": words.reason_title[:24]},
            "submit": {"type": "plain_text", "text": words.reason_send[:24]},
            "close": {"type": "plain_text", "text": words.reason_skip[:24]},
            "blocks": [
                {
                    "type": "input",
                    "block_id": REASON_BLOCK,
                    "optional": True,
                    "label": {"type": "plain_text", "text": words.reason_label[:2000]},
                    "element": text_input,
                }
            ],
        }
        try:
            await self._api.call("views.open", {"trigger_id": trigger, "view": view})
        except PlatformError as exc:
            log.info("Slack: no modal for the reason of a 👎 (%s)", exc.code)

    async def ask_form(self, prompt: FormPrompt) -> bool:
        """`AsksForm`: a modal for the form's field, opened with the click's trigger."""
        trigger = str(self._clicked.get("trigger_id") or "")
        if not trigger:
            return False
        where = {"channel": self._channel, "thread_ts": self._thread_ts or ""}
        view = modals.form_view(prompt, where, self._words)
        try:
            await self._api.call("views.open", {"trigger_id": trigger, "view": view})
        except PlatformError as exc:
            log.info("Slack: no modal for a form's field (%s)", exc.code)
            return False
        return True

    async def send_files(self, files: Sequence[OutputFile]) -> list[OutputFile]:
        """Upload each file, then share them all into the answer's thread at once."""
        missing: list[OutputFile] = []
        uploaded: list[tuple[OutputFile, dict[str, str]]] = []
        for file in files:
            try:
                ticket = await self._api.call(
                    "files.getUploadURLExternal",
                    {"filename": file.name, "length": str(len(file.data))},
                    form=True,
                )
                await self._api.upload(str(ticket["upload_url"]), file.data)
                uploaded.append((file, {"id": str(ticket["file_id"]), "title": file.name}))
            except (PlatformError, KeyError) as exc:
                log.warning("Slack upload of %s failed: %s", file.name, exc)
                missing.append(file)
        if uploaded:
            try:
                await self._api.call(
                    "files.completeUploadExternal",
                    {
                        "files": json.dumps([entry for _, entry in uploaded]),
                        "channel_id": self._channel,
                        "thread_ts": self._thread_ts,
                    },
                    form=True,
                )
            except PlatformError as exc:
                log.warning("Slack could not share the uploaded files: %s", exc)
                missing.extend(file for file, _ in uploaded)
        return missing

    def fold_reasoning(self, text: str) -> None:
        self._reasoning = text

    # --- helpers -------------------------------------------------------------------------

    async def _open(self, text: str | None, status: str | None = None) -> None:
        """Create the current message: a stream when allowed (and no status must show
        before text), else a posted message."""
        if (
            (text or status is None)
            and self._support.enabled
            and self._budget.try_take(
                "slack.startStream", START_STREAM_PER_SECOND, START_STREAM_BURST
            )
        ):
            payload: dict[str, Any] = {"channel": self._channel, "thread_ts": self._thread_ts}
            if self._team and self._user:
                payload |= {"recipient_team_id": self._team, "recipient_user_id": self._user}
            if text:
                payload["markdown_text"] = text
            try:
                body = await self._api.call("chat.startStream", payload)
                self._ts, self._mode, self._streamed = str(body["ts"]), "stream", text or ""
                return
            except RateLimited:
                log.info("chat.startStream rate-limited; replying with chat.update instead")
            except (PlatformError, KeyError) as exc:
                if isinstance(exc, PlatformError) and exc.code in _NO_STREAMING:
                    log.warning("Slack streaming unavailable (%s); using chat.update", exc.code)
                    self._support.enabled = False
        payload = self._text_message(text or "", status)
        if self._stop_wanted():
            payload["blocks"] = self._running(text or "", status)
        body = await self._api.call("chat.postMessage", payload)
        self._ts, self._mode = str(body["ts"]), "update"
        self._inline_stop = "blocks" in payload

    async def _append(self, text: str) -> None:
        assert self._ts is not None
        if not text.startswith(self._streamed):
            # Dify replaced the answer (moderation): a stream only appends, so close it and
            # carry on editing the message.
            await self._to_update_mode(text)
            return
        delta = text[len(self._streamed) :]
        if not delta:
            return
        try:
            await self._api.call(
                "chat.appendStream",
                {"channel": self._channel, "ts": self._ts, "markdown_text": delta},
            )
        except RateLimited:
            raise
        except PlatformError as exc:
            log.info("stream %s broke (%s); continuing with chat.update", self._ts, exc.code)
            self._mode = "update"
            await self._edit(text)
            return
        self._streamed = text

    async def _stop(self, text: str, blocks: list[dict[str, Any]]) -> None:
        assert self._ts is not None
        if text.startswith(self._streamed):
            payload: dict[str, Any] = {"channel": self._channel, "ts": self._ts}
            if rest := text[len(self._streamed) :]:
                payload["markdown_text"] = rest
            if blocks:
                payload["blocks"] = blocks
            try:
                await self._api.call("chat.stopStream", payload)
                return
            except RateLimited:
                raise
            except PlatformError as exc:
                log.info("chat.stopStream failed (%s); finishing with chat.update", exc.code)
            self._mode = "update"
            await self._edit(text, blocks=blocks, final=True)
            return
        await self._to_update_mode(text, blocks=blocks, final=True)

    async def _to_update_mode(
        self,
        text: str,
        status: str | None = None,
        *,
        blocks: list[dict[str, Any]] | None = None,
        final: bool = False,
    ) -> None:
        assert self._ts is not None
        try:
            await self._api.call("chat.stopStream", {"channel": self._channel, "ts": self._ts})
        except RateLimited:
            raise
        except PlatformError as exc:
            log.info("chat.stopStream failed (%s)", exc.code)
        self._mode = "update"
        await self._edit(text, status, blocks=blocks, final=final)

    async def _edit(
        self,
        text: str,
        status: str | None = None,
        *,
        blocks: list[dict[str, Any]] | None = None,
        final: bool = False,
    ) -> None:
        assert self._ts is not None
        if self._open_stream_left:
            self._open_stream_left = False
            try:
                await self._api.call("chat.stopStream", {"channel": self._channel, "ts": self._ts})
            except PlatformError as exc:
                log.info("closing the stream left by a crash failed (%s)", exc.code)
        payload: dict[str, Any] = {
            "channel": self._channel,
            "ts": self._ts,
            "text": self._mrkdwn(text, status),
        }
        if blocks or (final and self._inline_stop):
            # The final text in blocks: they replace those that showed the Stop button.
            payload["blocks"] = [*buttons.sections(text), *(blocks or [])]
        elif not final and self._stop_wanted():
            payload["blocks"] = self._running(text, status)
        await self._api.call("chat.update", payload)
        self._inline_stop = "blocks" in payload and not final

    def _running(self, text: str, status: str | None) -> list[dict[str, Any]]:
        return buttons.running(text, status, self._thinking, self._stop_button())

    def _stop_button(self) -> dict[str, Any]:
        assert self._controls is not None
        return buttons.stop(self._stop_label, self._controls.answer_id)

    def _stop_wanted(self) -> bool:
        """Whether a message being written should show the Stop button in its blocks."""
        controls = self._controls
        return controls is not None and controls.stop and self._stop_ts is None

    async def _post_stop(self) -> None:
        """The Stop button, in a small message under the answer (best effort)."""
        controls = self._controls
        if controls is None or not controls.stop or self._stop_ts is not None:
            return
        payload = self._text_message(self._stop_label)
        payload["blocks"] = [self._stop_button()]
        try:
            body = await self._api.call("chat.postMessage", payload)
            self._stop_ts = str(body.get("ts") or "") or None
        except PlatformError as exc:
            log.info("Slack Stop button not posted: %s", exc)

    async def _delete_stop(self) -> None:
        stop_ts, self._stop_ts = self._stop_ts, None
        if stop_ts is None:
            return
        try:
            await self._api.call("chat.delete", {"channel": self._channel, "ts": stop_ts})
        except PlatformError as exc:
            log.info("Slack Stop button not deleted: %s", exc)

    def _reasoning_blocks(self) -> list[dict[str, Any]]:
        """The folded reasoning as a small grey context block, or nothing."""
        if not self._reasoning.strip():
            return []
        body = to_mrkdwn(self._reasoning.strip())
        if len(body) > CONTEXT_CHARS:
            body = body[: CONTEXT_CHARS - 1] + "…"
        text = f"*{self._reasoning_title}*\n{body}"
        return [{"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}]

    def _mrkdwn(self, text: str, status: str | None) -> str:
        """The message as Slack shows it: the text, or the status (else "Thinking…") in
        italics in its place, and a status under text that has started."""
        if not text.strip():
            return f"_{status or self._thinking}_"
        body = to_mrkdwn(text)
        return f"{body}\n\n_{status}_" if status else body

    def _text_message(self, text: str, status: str | None = None) -> dict[str, Any]:
        return {
            "channel": self._channel,
            "thread_ts": self._thread_ts,
            "text": self._mrkdwn(text, status),
            "mrkdwn": True,
        }
