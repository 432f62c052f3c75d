"""One Dify stream's JSON events, read into typed events.

Dispatch is on the fields as much as on the event name, because Dify bends both:

- `message_file` carries a text chunk (`answer`, no `url`) in chat apps from 1.11.2 on, once
  the message has a file: it is text then, not a file.
- A chatflow says `message_end` *before* `workflow_finished`; a failed chatflow says
  `workflow_finished(failed)` and then an `error` with code `invalid_param` ("Run failed:
  …"); a failed workflow says only `workflow_finished(failed)`. A failed run is one error
  (`workflow_failed`) however it is said; a stopped one finishes with `stopped`.
- A workflow that streamed nothing answers in its outputs: `output_key`, else its one text
  output, else a short list of them.
- A run that waits for a person says `human_input_required` (the form) and then
  `workflow_paused` (the stream ends): one `Paused` event with the forms the run waits for
  (gateway/dify_forms.py). A pause that names no form is an error (`workflow_paused`).
"""

from __future__ import annotations

import json
from typing import Any

from gateway.config import DifyApp
from gateway.dify_events import (
    AgentStep,
    DifyEvent,
    DifyStreamError,
    FileOutput,
    Finished,
    HumanInput,
    NodeStarted,
    Paused,
    ReasoningDelta,
    TextDelta,
    TextReplace,
    Usage,
)
from gateway.dify_files import file_key, resolve
from gateway.dify_forms import paused_tokens, read_form

MAX_OUTPUT_LINES = 10
RUN_FAILED = "workflow_failed"


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def citations(metadata: Any) -> tuple[str, ...]:
    """The documents an answer drew on: one name each, in Dify's order, no duplicates."""
    names: list[str] = []
    resources = _dict(metadata).get("retriever_resources")
    for item in resources if isinstance(resources, list) else []:
        item = _dict(item)
        name = _text(item.get("document_name")) or _text(item.get("title"))
        if name.strip() and name.strip() not in names:
            names.append(name.strip())
    return tuple(names)


def usage(metadata: Any) -> Usage | None:
    raw = _dict(_dict(metadata).get("usage"))
    tokens = raw.get("total_tokens")
    if not isinstance(tokens, int):
        return None
    latency = raw.get("latency")
    return Usage(tokens, float(latency) if isinstance(latency, int | float) else None)


def workflow_text(outputs: Any, output_key: str | None = None) -> str | None:
    """The answer in a workflow's outputs, when nothing streamed."""
    outputs = _dict(outputs)
    if output_key is not None:
        value = outputs.get(output_key)
        return None if value is None else _as_text(value)
    texts = {key: value for key, value in outputs.items() if isinstance(value, str)}
    if len(texts) == 1:
        return next(iter(texts.values()))
    if not outputs:
        return None
    if len(outputs) == 1:
        return _as_text(next(iter(outputs.values())))
    lines = [f"- **{key}**: {_one_line(value)}" for key, value in outputs.items()]
    return "\n".join(lines[:MAX_OUTPUT_LINES])


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, indent=2)


def _one_line(value: Any) -> str:
    text = _as_text(value) if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = " ".join(text.split())
    return text if len(text) <= 200 else text[:199] + "…"


class EventReader:
    """Reads the events of one stream, in order (it remembers what a run said before)."""

    def __init__(self, app: DifyApp) -> None:
        self._app = app
        self._stopped = False
        self._forms: list[HumanInput] = []  # the forms this run asked for, in order

    def read(self, payload: dict[str, Any]) -> DifyEvent | None:
        """The typed event, or None for events that change nothing for the chat (pings,
        `node_finished`, `tts_message`, events newer than this code). Raises
        `DifyStreamError` for an `error` event or a run that failed."""
        kind = payload.get("event")
        data = _dict(payload.get("data"))
        if kind in ("message", "agent_message"):
            return TextDelta(_text(payload.get("answer")))
        if kind == "message_file":
            # From Dify 1.11.2, text chunks after a file come as message_file with `answer`.
            if "answer" in payload and not payload.get("url"):
                return TextDelta(_text(payload.get("answer")))
            if payload.get("belongs_to") == "user":
                return None
            return self._file(payload, str(payload.get("id") or ""))
        if kind == "text_chunk":
            return TextDelta(_text(data.get("text")))
        if kind == "message_replace":
            return TextReplace(_text(payload.get("answer")))
        if kind == "agent_thought":
            return self._agent_step(payload)
        if kind in ("node_started", "iteration_started", "loop_started"):
            return NodeStarted(_text(data.get("title")), _text(data.get("node_type")))
        if kind == "reasoning_chunk":
            return ReasoningDelta(_text(data.get("reasoning")), bool(data.get("is_final")))
        if kind == "message_end":
            return self._message_end(payload)
        if kind == "workflow_finished":
            return self._workflow_finished(payload, data)
        if kind == "human_input_required":
            token = _text(data.get("form_token")) or None
            self._forms.append(read_form(data, token))
            return None
        if kind == "workflow_paused":
            return self._paused(payload, data)
        if kind == "error":
            code, message = _text(payload.get("code")), _text(payload.get("message"))
            if code == "invalid_param" and message.startswith("Run failed"):
                raise DifyStreamError(RUN_FAILED, message)
            raise DifyStreamError(code, message)
        return None

    def _paused(self, payload: dict[str, Any], data: dict[str, Any]) -> Paused:
        """The forms the run waits for: those it showed, then those only named (their
        content is fetched before they are shown)."""
        known = {form.token for form in self._forms}
        named = [HumanInput(t, complete=False) for t in paused_tokens(data) if t not in known]
        forms = (*self._forms, *named)
        if not forms:
            raise DifyStreamError("workflow_paused", "the run waits for input no form names")
        run_id = _text(payload.get("workflow_run_id")) or _text(data.get("workflow_run_id"))
        return Paused(run_id, forms)

    def _file(self, item: dict[str, Any], ident: str) -> FileOutput | None:
        raw = _text(item.get("url")) or _text(item.get("remote_url"))
        url = resolve(raw, self._app)
        if not url:
            return None
        return FileOutput(
            url,
            _text(item.get("type")) or "file",
            name=_text(item.get("filename")),
            mime_type=_text(item.get("mime_type")),
            key=file_key(url) or ident,
        )

    def _files(self, items: Any) -> tuple[FileOutput, ...]:
        found = [
            self._file(_dict(item), str(_dict(item).get("related_id") or ""))
            for item in (items if isinstance(items, list) else [])
        ]
        return tuple(f for f in found if f is not None)

    @staticmethod
    def _agent_step(payload: dict[str, Any]) -> AgentStep:
        tools = tuple(t.strip() for t in _text(payload.get("tool")).split(";") if t.strip())
        labels: dict[str, dict[str, str]] = {}
        for name, label in _dict(payload.get("tool_labels")).items():
            if isinstance(label, str):
                labels[str(name)] = {"en_US": label}
            elif isinstance(label, dict):
                labels[str(name)] = {str(k): v for k, v in label.items() if isinstance(v, str)}
        done = bool(_text(payload.get("observation")).strip())
        return AgentStep(str(payload.get("id") or ""), tools, labels, done)

    def _message_end(self, payload: dict[str, Any]) -> Finished:
        metadata = payload.get("metadata")
        return Finished(
            _text(payload.get("conversation_id")),
            str(payload.get("message_id") or payload.get("id") or ""),
            citations(metadata),
            usage=usage(metadata),
            stopped=self._stopped,
            files=self._files(payload.get("files")),
        )

    def _workflow_finished(self, payload: dict[str, Any], data: dict[str, Any]) -> Finished | None:
        status = data.get("status")
        if status == "failed":
            raise DifyStreamError(RUN_FAILED, _text(data.get("error")))
        if self._app.mode != "workflow":
            # A chatflow's message_end follows (or came before, when it succeeded).
            self._stopped = status == "stopped"
            return None
        tokens = data.get("total_tokens")
        elapsed = data.get("elapsed_time")
        run_usage = (
            Usage(tokens, float(elapsed) if isinstance(elapsed, int | float) else None)
            if isinstance(tokens, int)
            else None
        )
        return Finished(
            "",
            _text(payload.get("workflow_run_id")),
            output_text=workflow_text(data.get("outputs"), self._app.output_key),
            usage=run_usage,
            stopped=status == "stopped",
            files=self._files(data.get("files")),
        )
