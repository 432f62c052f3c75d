"""From Dify's events to what the chat shows: the text, a status while the app works, the
app's files, and what goes under the answer.

- **Status**: while a tool runs ("Using web_search…"), while the model reasons, and while
  a chatflow or workflow node runs before any text streamed (its title). Text gives way
  to it; the final message carries none.
- **Reasoning** at the start of the answer (`<think>…</think>`, `reasoning_chunk`) is
  dropped, folded into the final message, or shown quoted, as the route says.
- **Files**: `message_file`, `message_end.files`, `workflow_finished.files` and the Markdown
  file links of Answer nodes are fetched at once (their links expire) and go to the sink
  as real files; their links never reach the chat.
- **Under the answer**: the sources (numbered, one line per document), and where the route
  asks, the tools used and the tokens and latency.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from urllib.parse import urlsplit

from gateway.dify_events import (
    AgentStep,
    DifyEvent,
    FileOutput,
    Finished,
    NodeStarted,
    ReasoningDelta,
    TextDelta,
    TextReplace,
)
from gateway.dify_files import FileLinks, file_key
from gateway.files import file_name
from gateway.models import AnswerOptions
from gateway.platform import OutputFile
from gateway.reasoning import ThinkSplitter
from gateway.streaming import AnswerStream
from gateway.words import Words

log = logging.getLogger(__name__)

MAX_FOLDED_REASONING = 1500  # characters: a folded panel, not a second answer
KNOWLEDGE_TOOL_PREFIX = "dataset_"  # how Dify names an agent's knowledge-base tools
QUIET_NODES = frozenset({"start", "end", "answer"})  # over at once: not worth a status
_LABEL_LANGUAGE = {"en": "en_US", "zh-CN": "zh_Hans"}

Fetch = Callable[[FileOutput], Awaitable[OutputFile | None]]


class AnswerBuilder:
    """Feeds one answer's Dify events into its `AnswerStream`."""

    def __init__(
        self,
        stream: AnswerStream,
        *,
        options: AnswerOptions,
        words: Words,
        links: FileLinks,
        fetch: Fetch,
        greeting: str = "",
    ) -> None:
        self._stream = stream
        self._options = options
        self._words = words
        self._links = links
        self._fetch = fetch
        self._splitter = ThinkSplitter()
        self._greeting = greeting.strip()  # comes first, apart from what follows
        self._answer = ""  # the app's answer as shown (after reasoning and links came out)
        self._reasoning = ""
        self._quoting = False  # `reasoning: show` is writing a quote now
        self._held_breaks = ""  # line breaks at the end of the quote so far
        self._separate_reasoning = False  # reasoning_chunk events, not <think> tags
        self._steps: dict[str, AgentStep] = {}
        self._used: list[str] = []
        self._node: NodeStarted | None = None
        self._files: list[OutputFile] = []
        # key -> where the file went: ("file", index in _files) or ("missing", index)
        self._file_keys: dict[str, tuple[str, int]] = {}
        self._named: set[str] = set()  # keys whose file has the name Dify gave it
        self._missing: list[str] = []  # files that could not be fetched, by name
        self._apart = not self._greeting  # the text after the greeting is set apart
        if self._greeting:
            stream.append(self._greeting)

    @property
    def text_started(self) -> bool:
        return bool(self._answer.strip())

    async def handle(self, event: DifyEvent) -> None:
        if isinstance(event, TextDelta):
            await self._text(event.text)
        elif isinstance(event, TextReplace):
            await self._replace(event.text)
        elif isinstance(event, ReasoningDelta):
            self._separate_reasoning = not event.final
            self._reason(event.text)
        elif isinstance(event, AgentStep):
            self._step(event)
        elif isinstance(event, NodeStarted):
            if event.node_type not in QUIET_NODES:
                self._node = event
        elif isinstance(event, FileOutput):
            await self._file(event)
        elif isinstance(event, Finished):
            for file in event.files:
                await self._file(file)
        self._show_status()

    async def complete(self, finished: Finished | None, *, stopped: bool = False) -> None:
        """The stream ended well: flush held text, then prepare what goes with the final
        message (files, folded reasoning, sources and footer). `stopped`: someone stopped
        the answer (gateway/clicks.py)."""
        for kind, text in self._splitter.flush():
            await self._segment(kind, text)
        await self._show(self._links.flush())
        if finished is not None and finished.output_text and not self.text_started:
            await self._text(finished.output_text)
            for kind, text in self._splitter.flush():
                await self._segment(kind, text)
            await self._show(self._links.flush())
        await self._fetch_links()
        if stopped:
            self._note(self._words.stopped)
        elif finished is not None and finished.stopped:
            self._note(self._words.run_stopped)
        if self._missing:
            lines = "\n".join(self._words.file_missing(name) for name in self._missing)
            self._note(lines)
        if self._files and not self.text_started:
            names = ", ".join(file.name for file in self._files)
            self._append(self._words.files_answer(names))
        self._stream.attach_files(self._files, self._name_missing)
        if self._options.reasoning == "collapse" and self._reasoning.strip():
            self._stream.fold_reasoning(_cap(self._reasoning.strip(), MAX_FOLDED_REASONING))
        if finished is not None and finished.citations and self._options.citations:
            self._stream.set_sources(finished.citations)
        self._stream.set_footer(self._footer(finished))
        self._stream.set_status(None)

    # --- text and reasoning --------------------------------------------------------------

    async def _text(self, text: str) -> None:
        for kind, part in self._splitter.feed(text):
            await self._segment(kind, part)

    async def _segment(self, kind: str, text: str) -> None:
        if kind == "reasoning":
            self._reason(text)
        elif kind == "retract":
            # What went out as answer was reasoning (a lone </think> said so).
            taken, self._answer = self._answer, ""
            self._stream.replace(self._greeting)
            self._quoting, self._apart = False, not self._greeting
            self._reason(taken)
        else:
            await self._show(self._links.feed(text))

    async def _show(self, text: str) -> None:
        if not text:
            return
        if self._quoting:
            self._quoting, self._held_breaks = False, ""
            self._stream.append("\n\n")
            text = text.lstrip()
        self._answer += text
        self._append(text)
        if self.text_started:
            self._node = None  # the text gives way to no node title any more
            # The model writes: its tools are done, even one that never said so.
            self._steps = {key: replace(step, done=True) for key, step in self._steps.items()}
        await self._fetch_links()

    def _append(self, text: str) -> None:
        """Append to the shown text, set apart from the greeting by a blank line."""
        if not self._apart and text:
            self._apart = True
            self._stream.append("\n\n")
        self._stream.append(text)

    def _note(self, text: str) -> None:
        """A paragraph of the gateway's own under what is shown."""
        self._stream.append(f"\n\n{text}" if self._stream.text.strip() else text)
        self._apart = True

    def _reason(self, text: str) -> None:
        if not text:
            return
        self._reasoning += text
        if self._options.reasoning != "show":
            return
        if not self._quoting:
            text = text.lstrip("\n")
            if not text:
                return
            self._append("> ")
            self._quoting = True
        # Line breaks at the end wait for more reasoning: the quote must not end in an
        # empty line.
        body = text.rstrip("\n")
        text, self._held_breaks = self._held_breaks + body, text[len(body) :]
        self._stream.append(text.replace("\n", "\n> "))

    async def _replace(self, text: str) -> None:
        """`message_replace`: moderation swapped the whole answer."""
        splitter = ThinkSplitter()
        segments = [*splitter.feed(text), *splitter.flush()]
        answer = "".join(part for kind, part in segments if kind == "answer")
        answer = self._links.strip_all(answer)
        self._answer, self._quoting = answer, False
        apart = f"{self._greeting}\n\n" if self._greeting and answer else self._greeting
        self._stream.replace(apart + answer)
        self._apart = bool(answer) or not self._greeting
        await self._fetch_links()

    # --- status --------------------------------------------------------------------------

    def _step(self, step: AgentStep) -> None:
        self._steps[step.id] = step
        for tool in step.tools:
            label = self._label(step, tool)
            if not tool.startswith(KNOWLEDGE_TOOL_PREFIX) and label not in self._used:
                self._used.append(label)

    def _label(self, step: AgentStep, tool: str) -> str:
        names = step.labels.get(tool, {})
        return names.get(_LABEL_LANGUAGE[self._words.locale]) or names.get("en_US") or tool

    def _show_status(self) -> None:
        self._stream.set_status(self._status())

    def _status(self) -> str | None:
        reasoning = self._splitter.in_reasoning or self._separate_reasoning
        if reasoning and self._options.reasoning != "show":
            return self._words.status_reasoning
        running = [s for s in self._steps.values() if s.tools and not s.done]
        if running:
            tools = running[-1].tools
            if all(t.startswith(KNOWLEDGE_TOOL_PREFIX) for t in tools):
                return self._words.status_knowledge
            names = [self._label(running[-1], t) for t in tools]
            return self._words.status_tools(", ".join(names))
        node = self._node
        if node is None or self.text_started or not self._options.show_progress:
            return None
        if node.node_type == "knowledge-retrieval":
            return self._words.status_knowledge
        return self._words.status_step(node.title) if node.title.strip() else None

    # --- files ---------------------------------------------------------------------------

    async def _fetch_links(self) -> None:
        links, self._links.links = self._links.links, []
        for link in links:
            await self._file(FileOutput(link.url, "image" if link.image else "file", link.text))

    async def _file(self, output: FileOutput) -> None:
        key = output.key or file_key(output.url)
        if key in self._file_keys:
            self._rename(key, output.name)
            return
        if output.name:
            self._named.add(key)
        name = output.name or self._generic_name(output)
        file = await self._fetch(replace(output, name=name))
        if file is None:
            self._file_keys[key] = ("missing", len(self._missing))
            self._missing.append(name)
            return
        self._file_keys[key] = ("file", len(self._files))
        self._files.append(file)

    def _rename(self, key: str, name: str) -> None:
        """A file named again, now with the name Dify gave it (a `message_file` has none;
        `message_end.files` has)."""
        where, index = self._file_keys[key]
        if not name or key in self._named:
            return
        self._named.add(key)
        if where == "missing":
            self._missing[index] = name
            return
        file = self._files[index]
        named = file_name(name, file.mime_type, keep_extension=True)
        self._files[index] = replace(file, name=named)

    def _generic_name(self, output: FileOutput) -> str:
        """ "image.png" for a file Dify gave no name (the link's own name is a random id)."""
        base = self._words.image if output.type == "image" else self._words.file
        _, dot, extension = urlsplit(output.url).path.rpartition("/")[2].rpartition(".")
        return f"{base}.{extension}" if dot and extension.isalnum() else base

    def _name_missing(self, file: OutputFile) -> str:
        if file.link:
            return f"[{file.name}]({file.link})"
        return self._words.file_missing(file.name)

    # --- under the answer ----------------------------------------------------------------

    def _footer(self, finished: Finished | None) -> str:
        parts: list[str] = []
        if finished is not None and finished.citations and self._options.citations:
            sources = "\n".join(f"{i}. {name}" for i, name in enumerate(finished.citations, 1))
            parts.append(f"---\n**{self._words.sources}**\n{sources}")
        notes: list[str] = []
        if self._options.show_tools and self._used:
            notes.append(self._words.tools_used(", ".join(self._used)))
        usage = finished.usage if finished is not None else None
        if self._options.show_usage and usage is not None:
            notes.append(self._words.usage(usage.total_tokens, usage.latency_s))
        if notes:
            parts.append("*" + " · ".join(notes) + "*")
        return "\n\n".join(parts)


def _cap(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
