"""From Dify events to what the chat shows: status, reasoning, files, sources and footer."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from gateway.answer import AnswerBuilder
from gateway.dify_events import (
    AgentStep,
    DifyEvent,
    FileOutput,
    Finished,
    NodeStarted,
    ReasoningDelta,
    TextDelta,
    TextReplace,
    Usage,
)
from gateway.dify_files import FileLinks
from gateway.models import AnswerOptions
from gateway.pacing import BotBudget
from gateway.platform import OutputFile, Pacing
from gateway.streaming import AnswerStream
from gateway.words import ENGLISH, SIMPLIFIED_CHINESE, Words
from tests.unit.test_streaming import FakeSink, caps

PNG = b"\x89PNG\r\n\x1a\nfake"


class Harness:
    def __init__(
        self,
        options: AnswerOptions | None = None,
        words: Words = ENGLISH,
        greeting: str = "",
        missing: Sequence[str] = (),
    ) -> None:
        self.sink = FakeSink(pacing=Pacing(0.02, "test", 1000.0))
        self.stream = AnswerStream(self.sink, caps(limit=10_000), BotBudget())
        self.fetched: list[str] = []
        self._missing = set(missing)
        self.builder = AnswerBuilder(
            self.stream,
            options=options or AnswerOptions(),
            words=words,
            links=FileLinks(lambda url: url.startswith("/files/")),
            fetch=self.fetch,
            greeting=greeting,
        )
        self.statuses: list[str | None] = []

    async def fetch(self, output: FileOutput) -> OutputFile | None:
        self.fetched.append(output.url)
        if output.url in self._missing:
            return None
        mime = "image/png" if output.type == "image" else "application/pdf"
        return OutputFile(PNG, output.name or "file", mime)

    async def run(self, events: Sequence[DifyEvent], finished: Finished | None = None) -> None:
        await self.stream.begin()
        for event in events:
            await self.builder.handle(event)
            self.statuses.append(self.stream.status)
        if finished is not None:
            await self.builder.handle(finished)
        await self.builder.complete(finished)
        await asyncio.sleep(0.05)
        await self.stream.finish()

    @property
    def final(self) -> str:
        (text,) = self.sink.texts("last")
        return text


END = Finished("c", "m")


async def test_an_agent_shows_the_tool_it_uses_then_the_answer() -> None:
    h = Harness()
    labels = {"web_search": {"en_US": "Web Search", "zh_Hans": "网页搜索"}}
    await h.run(
        [
            AgentStep("t1", ("web_search",), labels),
            AgentStep("t1", ("web_search",), labels, done=True),
            AgentStep("t2", ("calculator", "dataset_abc")),
            AgentStep("t2", ("calculator", "dataset_abc"), done=True),
            TextDelta("42."),
        ],
        END,
    )
    assert h.statuses == [
        "Using Web Search…",
        None,
        "Using calculator, dataset_abc…",
        None,
        None,
    ]
    assert h.final == "42."


async def test_the_tools_used_footer_in_the_bots_language() -> None:
    h = Harness(AnswerOptions(show_tools=True), words=SIMPLIFIED_CHINESE)
    labels = {"web_search": {"en_US": "Web Search", "zh_Hans": "网页搜索"}}
    await h.run(
        [
            AgentStep("t1", ("web_search",), labels),
            AgentStep("t1", ("web_search",), labels, done=True),
            AgentStep("t2", ("web_search",), labels),
            AgentStep("t3", ("dataset_kb",)),
            TextDelta("好的。"),
        ],
        END,
    )
    assert h.statuses[0] == "正在使用 网页搜索…"
    assert h.statuses[3] == SIMPLIFIED_CHINESE.status_knowledge
    assert h.final == "好的。\n\n*" + SIMPLIFIED_CHINESE.tools_used("网页搜索") + "*"


async def test_nodes_show_their_titles_until_text_streams() -> None:
    h = Harness()
    await h.run(
        [
            NodeStarted("Start", "start"),
            NodeStarted("Find the policy", "knowledge-retrieval"),
            NodeStarted("Summarise", "llm"),
            TextDelta("Fifteen days."),
            NodeStarted("Log it", "code"),
        ],
        END,
    )
    assert h.statuses == [
        None,
        ENGLISH.status_knowledge,
        "Working on: Summarise…",
        None,
        None,
    ]


async def test_show_progress_false_hides_node_titles() -> None:
    h = Harness(AnswerOptions(show_progress=False))
    await h.run([NodeStarted("Summarise", "llm"), TextDelta("x")], END)
    assert h.statuses == [None, None]


async def test_reasoning_is_hidden_by_default_with_a_status_meanwhile() -> None:
    h = Harness()
    await h.run(
        [TextDelta("<thi"), TextDelta("nk>\nweighing it"), TextDelta("</think>\n\nYes.")],
        END,
    )
    assert h.statuses == [None, "Reasoning…", None]
    assert h.final == "Yes." and h.sink.folded == ""


async def test_reasoning_collapsed_goes_to_the_sink_to_fold() -> None:
    h = Harness(AnswerOptions(reasoning="collapse"))
    await h.run([TextDelta("<think>\nstep one\nstep two\n</think>\n\nYes.")], END)
    assert h.final == "Yes." and h.sink.folded == "step one\nstep two"


async def test_reasoning_shown_is_quoted_above_the_answer() -> None:
    h = Harness(AnswerOptions(reasoning="show"))
    await h.run(
        [TextDelta("<think>\nstep one\n"), TextDelta("step two\n</think>"), TextDelta("\n\nYes.")],
        END,
    )
    assert h.final == "> step one\n> step two\n\nYes."
    assert h.statuses == [None, None, None]  # the reasoning shows: no status needed


async def test_a_lone_closing_think_tag_takes_back_what_was_shown() -> None:
    h = Harness(greeting="Hello!")
    await h.run([TextDelta("I should say yes"), TextDelta(".</think>Yes.")], END)
    assert h.final == "Hello!\n\nYes."


async def test_reasoning_chunks_give_a_status_until_the_final_one() -> None:
    h = Harness(AnswerOptions(reasoning="collapse"))
    await h.run([ReasoningDelta("a"), ReasoningDelta("b", final=True), TextDelta("Answer")], END)
    assert h.statuses == ["Reasoning…", None, None]
    assert h.sink.folded == "ab" and h.final == "Answer"


async def test_sources_are_numbered_once_each_and_can_be_switched_off() -> None:
    end = Finished("c", "m", ("A.pdf", "B.pdf"), usage=Usage(1234, 2.0))
    h = Harness(AnswerOptions(show_usage=True))
    await h.run([TextDelta("Answer")], end)
    assert h.final == "Answer\n\n---\n**Sources**\n1. A.pdf\n2. B.pdf\n\n*1,234 tokens · 2.0 s*"
    h = Harness(AnswerOptions(citations=False))
    await h.run([TextDelta("Answer")], end)
    assert h.final == "Answer"


async def test_files_are_fetched_once_and_their_links_never_shown() -> None:
    h = Harness()
    link = "/files/tools/a.png?timestamp=1&nonce=n&sign=s"
    await h.run(
        [
            TextDelta("Chart: ![chart](/files/to"),
            TextDelta("ols/a.png?timestamp=1&nonce=n&sign=s) and [report](/files/r.pdf)."),
            FileOutput("http://dify/files/tools/a.png?sign=2", "image", key="/files/tools/a.png"),
        ],
        Finished("c", "m", files=(FileOutput("/files/r.pdf", "document", "report.pdf"),)),
    )
    assert h.final == "Chart:  and report."
    assert h.fetched == [link, "/files/r.pdf"]
    assert [f.name for f in h.sink.files] == ["chart", "report"]


async def test_a_file_that_could_not_be_fetched_is_not_named_with_its_link() -> None:
    h = Harness(missing=["/files/x.png"])
    await h.run([FileOutput("/files/x.png", "image", "x.png")], END)
    assert h.sink.files == []
    assert "/files" not in h.final


async def test_an_answer_that_is_only_files_names_them() -> None:
    h = Harness()
    await h.run([FileOutput("/files/x.png", "image", "x.png")], END)
    assert h.final == "Files: x.png" and len(h.sink.files) == 1


async def test_moderation_replaces_the_answer_without_its_links() -> None:
    h = Harness()
    await h.run([TextDelta("bad"), TextReplace("<think>no</think>Safe ![i](/files/i.png)")], END)
    assert h.final == "Safe " and h.fetched == ["/files/i.png"]


async def test_a_workflow_answer_from_its_outputs_and_a_stopped_note() -> None:
    h = Harness()
    await h.run([], Finished("", "run", output_text="From outputs.", stopped=True))
    assert h.final == f"From outputs.\n\n{ENGLISH.run_stopped}"


async def test_the_greeting_comes_before_the_answer() -> None:
    h = Harness(greeting="Welcome to HR.")
    await h.run([NodeStarted("Search", "tool"), TextDelta("Hi")], END)
    assert h.final == "Welcome to HR.\n\nHi"
    assert h.statuses == ["Working on: Search…", None]


async def test_a_tool_that_never_said_it_was_done_gives_way_to_the_text() -> None:
    h = Harness()
    await h.run([AgentStep("t1", ("web_search",)), TextDelta("Found it.")], END)
    assert h.statuses == ["Using web_search…", None]
