"""What the Dify emulator answers: scripted replies, and the event sequences Dify sends for
them, per app type (Dify 1.14.1: `api/core/app/apps/*`, `task_entities.py`).

- chat / completion: `message`… → (`message_replace`) → `message_end`; files as
  `message_file` (a relative, signed URL), after which text chunks arrive as
  `message_file` events carrying `answer` (Dify ≥ 1.11.2).
- agent: `agent_thought` (re-sent with the same id once the tool answered) interleaved with
  `agent_message` chunks and `message_file` → `message_end`.
- chatflow: `workflow_started` → `node_started`/`node_finished` (an iteration or loop
  node: `iteration_started`/`_next`/`_completed`, `loop_…`) → `message` chunks (files as
  Markdown links in the text) → `message_end` (with `files`) → `workflow_finished`. A failed
  run: `workflow_finished(failed)` → `error` (`invalid_param`, "Run failed: …"), no
  `message_end`. A stopped run: `workflow_finished(stopped)` → `message_end`.
- workflow: `workflow_started` → node events and `text_chunk`s → `workflow_finished` (with
  `outputs` and `files`); a failed run sends no `error`.
- a run that pauses on a form (chatflow, workflow): … → `human_input_required` →
  `workflow_paused` (the stream ends; gateway/emulator_forms.py answers the form and
  resumes the run).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

App = Literal["chat", "agent", "chatflow", "workflow", "completion"]


@dataclass(frozen=True)
class Thought:
    """An agent's tool call: `agent_thought` with the tool, then again with its answer."""

    tool: str  # several joined with ";", as Dify does
    labels: dict[str, dict[str, str]] = field(default_factory=dict)
    observation: str = "done"
    seconds: float = 0.0  # how long the tool "runs"
    before_chunk: int = 0  # the answer chunk it comes before (agents think as they write)


@dataclass(frozen=True)
class Node:
    title: str
    node_type: str = "llm"
    seconds: float = 0.0


@dataclass(frozen=True)
class EmulatorFile:
    """A file the app produces; the emulator serves it under a signed, expiring link."""

    name: str
    data: bytes
    mime_type: str
    type: str = "image"  # Dify's file type: image, document, …


@dataclass(frozen=True)
class Form:
    """A human-input form the run pauses on, after its text. `fields` are paragraph fields
    by name, `selects` select fields (name, options), `defaults` constant defaults (name,
    value); `delivery` `email` gives no token (the API cannot answer it); `named_only`:
    the stream names it in `workflow_paused` only (the gateway reads it with a GET);
    `then` is what the resumed run says once the form is answered."""

    content: str = "Please review the plan."
    actions: Sequence[tuple[str, str]] = (("approve", "Approve"), ("reject", "Reject"))
    fields: Sequence[str] = ()
    selects: Sequence[tuple[str, Sequence[str]]] = ()
    defaults: Sequence[tuple[str, str]] = ()
    title: str = "Review"
    delivery: Literal["webapp", "email"] = "webapp"
    named_only: bool = False
    expires_in: float = 3600.0
    then: ScriptedReply | None = None


@dataclass
class ScriptedReply:
    """What the emulator answers to the next request."""

    chunks: Sequence[str] = ()  # answer deltas, one text event each
    delay: float = 0.0  # seconds between chunks
    error: tuple[str, str] | None = None  # (code, message): the run fails after the chunks
    status: int = 200  # not 200: a JSON error body {code, message, status} and no stream
    code: str = ""
    message: str = ""
    params: str = ""  # the `params` of an error body (the refused field)
    citations: Sequence[str] = ()
    event: str = "message"  # or "agent_message"
    ragged: bool = True  # split each event's bytes across writes, with pings between
    end: bool = True  # send message_end (False: the stream just stops)
    hang: float = 0.0  # after the chunks, stay silent this long (tests idle timeouts)
    app: App | None = None  # the app type to imitate; by default from the endpoint
    think: str = ""  # reasoning in <think> tags at the start of the answer
    reasoning: Sequence[str] = ()  # reasoning_chunk events (a chatflow's separated mode)
    thoughts: Sequence[Thought] = ()  # an agent's tool calls, before its answer
    nodes: Sequence[Node] = ()  # a chatflow's or workflow's nodes, before the text
    files: Sequence[EmulatorFile] = ()  # files the app produces
    usage: dict[str, Any] | None = None  # message_end.metadata.usage (a default if None)
    outputs: dict[str, Any] | None = None  # a workflow's outputs (default: the text)
    stopped: bool = False  # the run was stopped (the stop API or Dify's time limit)
    replace: str | None = None  # a message_replace (output moderation) at the end
    form: Form | None = None  # the run pauses on this form after its text

    def family(self, endpoint: App) -> App:
        """The app type to imitate: `app`, else what the reply needs (nodes or separated
        reasoning: a chatflow; thoughts: an agent), else what the endpoint serves."""
        if self.app is not None:
            return self.app
        if endpoint == "chat":
            if self.nodes or self.reasoning or self.stopped or self.form:
                return "chatflow"
            if self.thoughts or self.event == "agent_message":
                return "agent"
        return endpoint


DEFAULT_USAGE = {
    "prompt_tokens": 30,
    "completion_tokens": 12,
    "total_tokens": 42,
    "total_price": "0.0001",
    "currency": "USD",
    "latency": 1.25,
}

Step = dict[str, Any] | float  # an event to send, or seconds to wait
Sign = Callable[[EmulatorFile], str]  # a file -> its signed, root-relative link


def think_chunks(think: str, chunks: Sequence[str]) -> list[str]:
    """The answer with reasoning in front, cut so the tags split across chunks."""
    text = f"<think>\n{think}\n</think>\n\n"
    return [text[:4], text[4:11], text[11:-6], text[-6:], *chunks]


def steps(reply: ScriptedReply, app: App, sign: Sign, token: str | None = None) -> Iterator[Step]:
    """The events (without their common fields) of `reply` as app type `app`; `token`:
    the form token of the form the run pauses on."""
    chunks = think_chunks(reply.think, reply.chunks) if reply.think else list(reply.chunks)
    if app in ("chatflow", "workflow"):
        yield from _workflow_steps(reply, app, chunks, sign, token)
        return
    files = [_file_event(f, sign) for f in reply.files]
    text_event = "agent_message" if app == "agent" else reply.event
    for i, chunk in enumerate(chunks):
        for thought in reply.thoughts:
            if thought.before_chunk == i:
                yield from _thought(thought)
        if files and i == len(chunks) // 2:
            yield from files  # Dify interleaves them; half-way shows the quirk below
        # From Dify 1.11.2, once the message has a file, text arrives as message_file.
        event = "message_file" if files and i >= len(chunks) // 2 else text_event
        yield {"event": event, "answer": chunk}
        if reply.delay:
            yield reply.delay
    for thought in reply.thoughts:
        if thought.before_chunk >= len(chunks):
            yield from _thought(thought)
    if files and not chunks:
        yield from files
    if reply.hang:
        yield reply.hang
    if reply.error is not None:
        code, message = reply.error
        yield {"event": "error", "status": 400, "code": code, "message": message}
        return
    if reply.replace is not None:
        yield {"event": "message_replace", "answer": reply.replace, "reason": ""}
    if reply.end:
        yield _message_end(reply, [_file_item(f, sign) for f in reply.files])


def _thought(thought: Thought) -> Iterator[Step]:
    ident = str(uuid.uuid4())
    base = {
        "event": "agent_thought",
        "id": ident,
        "position": 1,
        "thought": "",
        "tool": thought.tool,
        "tool_labels": thought.labels,
        "tool_input": '{"query": "x"}',
        "message_files": [],
    }
    yield {**base, "observation": ""}
    if thought.seconds:
        yield thought.seconds
    yield {**base, "observation": thought.observation}


def _workflow_steps(
    reply: ScriptedReply, app: App, chunks: list[str], sign: Sign, token: str | None
) -> Iterator[Step]:
    run_id = str(uuid.uuid4())
    yield {"event": "workflow_started", "data": {"id": run_id, "reason": "initial"}}
    for node in reply.nodes:
        data = {"id": str(uuid.uuid4()), "title": node.title, "node_type": node.node_type}
        # An iteration or loop node has events of its own, with a `_next` per round.
        kind = node.node_type if node.node_type in ("iteration", "loop") else "node"
        yield {"event": f"{kind}_started", "data": data}
        if node.seconds:
            yield node.seconds
        if kind != "node":
            yield {"event": f"{kind}_next", "data": {**data, "index": 1}}
            kind_done = f"{kind}_completed"
        else:
            kind_done = "node_finished"
        yield {"event": kind_done, "data": {**data, "status": "succeeded"}}
    for i, piece in enumerate(reply.reasoning):
        final = i == len(reply.reasoning) - 1
        said: dict[str, Any] = {"reasoning": piece, "is_final": final, "node_id": "llm"}
        yield {"event": "reasoning_chunk", "data": said}
    if app == "chatflow":
        # An Answer node puts files into the answer as Markdown links.
        links = [f"{'!' if f.type == 'image' else ''}[{f.name}]({sign(f)})" for f in reply.files]
        chunks = [*chunks, *(f"\n\n{link}" for link in links)]
    for chunk in chunks:
        if app == "chatflow":
            yield {"event": "message", "answer": chunk}
        else:
            yield {"event": "text_chunk", "data": {"text": chunk}}
        if reply.delay:
            yield reply.delay
    if reply.hang:
        yield reply.hang
    if reply.form is not None:
        yield from form_steps(reply.form, token)
        return
    items = [_file_item(f, sign) for f in reply.files]
    status = "failed" if reply.error else "stopped" if reply.stopped else "succeeded"
    finished = {
        "event": "workflow_finished",
        "data": {
            "id": run_id,
            "status": status,
            "error": reply.error[1] if reply.error else None,
            "outputs": reply.outputs if reply.outputs is not None else {"answer": "".join(chunks)},
            "elapsed_time": 2.5,
            "total_tokens": 42,
            "total_steps": len(reply.nodes) + 2,
            "files": items if app == "workflow" else [],
        },
    }
    if app == "workflow":
        yield finished  # a failed workflow sends no error event
        return
    if reply.error is not None:
        yield finished
        message = f"Run failed: {reply.error[1]}"
        yield {"event": "error", "status": 400, "code": "invalid_param", "message": message}
        return
    if reply.stopped:
        yield finished
    if reply.end:
        yield _message_end(reply, items)
    if not reply.stopped:
        yield finished  # a chatflow says message_end first


def _message_end(reply: ScriptedReply, files: list[dict[str, Any]]) -> dict[str, Any]:
    resources = [
        {"position": i + 1, "document_name": name, "dataset_name": "kb", "score": 0.9}
        for i, name in enumerate(reply.citations)
    ]
    usage = DEFAULT_USAGE if reply.usage is None else reply.usage
    return {
        "event": "message_end",
        "metadata": {"usage": usage, "retriever_resources": resources},
        "files": files,
    }


def _file_event(file: EmulatorFile, sign: Sign) -> dict[str, Any]:
    return {
        "event": "message_file",
        "id": str(uuid.uuid4()),
        "type": file.type,
        "belongs_to": "assistant",
        "url": sign(file),
    }


def _file_item(file: EmulatorFile, sign: Sign) -> dict[str, Any]:
    return {
        "related_id": str(uuid.uuid4()),
        "extension": "." + file.name.rpartition(".")[2],
        "filename": file.name,
        "size": len(file.data),
        "mime_type": file.mime_type,
        "transfer_method": "tool_file",
        "type": file.type,
        "url": sign(file),
        "upload_file_id": None,
        "remote_url": None,
    }


def form_body(form: Form) -> dict[str, Any]:
    """What `GET /form/human_input/{token}` says (and, as `actions`, the event)."""
    defaults = dict(form.defaults)

    def default(name: str) -> dict[str, str] | None:
        return {"type": "constant", "value": defaults[name]} if name in defaults else None

    names = [*form.fields, *(name for name, _ in form.selects)]
    return {
        "form_content": form.content + "".join(f"\n\n{{{{#$output.{name}#}}}}" for name in names),
        "inputs": [
            *(
                {"type": "paragraph", "output_variable_name": name, "default": default(name)}
                for name in form.fields
            ),
            *(
                {
                    "type": "select",
                    "output_variable_name": name,
                    "options": list(options),
                    "default": default(name),
                }
                for name, options in form.selects
            ),
        ],
        "resolved_default_values": {},
        "user_actions": [
            {"id": ident, "title": title, "button_style": "default"}
            for ident, title in form.actions
        ],
        "expiration_time": int(time.time() + form.expires_in),
    }


def form_steps(form: Form, token: str | None) -> Iterator[Step]:
    body = form_body(form)
    if not form.named_only:
        actions = body.pop("user_actions")
        data = {**body, "actions": actions}
        data.update(form_id="form-1", node_id="human", node_title=form.title)
        yield {"event": "human_input_required", "data": {**data, "form_token": token}}
    reason = {"TYPE": "human_input_required", "form_id": "form-1", "form_token": token}
    paused = {"status": "paused", "reasons": [reason], "paused_nodes": ["human"]}
    yield {"event": "workflow_paused", "data": paused}
