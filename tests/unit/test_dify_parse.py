"""Dify's JSON events read into typed events: dispatch on the fields, per app type."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config import DifyApp
from gateway.dify_events import (
    AgentStep,
    DifyStreamError,
    FileOutput,
    Finished,
    NodeStarted,
    ReasoningDelta,
    TextDelta,
    Usage,
)
from gateway.dify_parse import EventReader, citations, workflow_text


def app(**extra: Any) -> DifyApp:
    return DifyApp(base_url="http://dify.test/v1", api_key="k", **extra)  # type: ignore[arg-type]


def test_message_file_with_answer_is_text_and_with_url_a_file() -> None:
    reader = EventReader(app())
    assert reader.read({"event": "message_file", "id": "m", "answer": "more text"}) == (
        TextDelta("more text")
    )
    url = "/files/tools/abc.png?timestamp=1&nonce=n&sign=s"
    file = reader.read({"event": "message_file", "id": "f1", "type": "image", "url": url})
    assert file == FileOutput(
        "http://dify.test/files/tools/abc.png?timestamp=1&nonce=n&sign=s",
        "image",
        key="/files/tools/abc.png",
    )
    assert reader.read({"event": "message_file", "belongs_to": "user", "url": url}) is None
    assert reader.read({"event": "message_file", "url": "", "type": "image"}) is None


def test_relative_links_resolve_against_files_base_url_when_set() -> None:
    reader = EventReader(app(files_base_url="https://files.example.com/dify/"))
    file = reader.read({"event": "message_file", "type": "image", "url": "/files/x.png"})
    assert isinstance(file, FileOutput)
    assert file.url == "https://files.example.com/dify/files/x.png"
    absolute = reader.read({"event": "message_file", "url": "https://cdn.example/x.png"})
    assert isinstance(absolute, FileOutput) and absolute.url == "https://cdn.example/x.png"


def test_agent_thoughts_split_tools_and_keep_labels() -> None:
    step = EventReader(app()).read(
        {
            "event": "agent_thought",
            "id": "t1",
            "tool": "web_search; calculator",
            "tool_labels": {"web_search": {"en_US": "Web Search", "zh_Hans": "网页搜索"}},
            "observation": "",
        }
    )
    assert step == AgentStep(
        "t1",
        ("web_search", "calculator"),
        {"web_search": {"en_US": "Web Search", "zh_Hans": "网页搜索"}},
        done=False,
    )
    done = EventReader(app()).read(
        {"event": "agent_thought", "id": "t1", "tool": "x", "observation": '{"x": "42"}'}
    )
    assert isinstance(done, AgentStep) and done.done
    plain = EventReader(app()).read({"event": "agent_thought", "tool_labels": {"x": "X"}})
    assert isinstance(plain, AgentStep) and plain.labels == {"x": {"en_US": "X"}}


@pytest.mark.parametrize("kind", ["node_started", "iteration_started", "loop_started"])
def test_nodes_iterations_and_loops_are_progress(kind: str) -> None:
    event = {"event": kind, "data": {"title": "Search docs", "node_type": "tool"}}
    assert EventReader(app()).read(event) == NodeStarted("Search docs", "tool")


def test_reasoning_chunks() -> None:
    event = {"event": "reasoning_chunk", "data": {"reasoning": "hmm", "is_final": True}}
    assert EventReader(app()).read(event) == ReasoningDelta("hmm", final=True)


def test_message_end_carries_compact_citations_usage_and_files() -> None:
    reader = EventReader(app())
    resources = [
        {"document_name": "Handbook.pdf"},
        {"document_name": "Handbook.pdf"},
        {"title": "FAQ"},
        {"document_name": ""},
        "junk",
    ]
    end = reader.read(
        {
            "event": "message_end",
            "conversation_id": "c",
            "id": "m",
            "metadata": {
                "retriever_resources": resources,
                "usage": {"total_tokens": 1234, "latency": 2.5},
            },
            "files": [{"related_id": "r", "url": "/files/tools/r.pdf", "filename": "r.pdf"}],
        }
    )
    assert isinstance(end, Finished)
    assert end.citations == ("Handbook.pdf", "FAQ")
    assert end.usage == Usage(1234, 2.5)
    (file,) = end.files
    assert file.url == "http://dify.test/files/tools/r.pdf" and file.name == "r.pdf"


def test_a_chatflow_that_failed_is_a_run_failure_however_it_is_said() -> None:
    reader = EventReader(app(mode="chatflow"))
    with pytest.raises(DifyStreamError) as failed:
        reader.read({"event": "workflow_finished", "data": {"status": "failed", "error": "x"}})
    assert failed.value.code == "workflow_failed"
    with pytest.raises(DifyStreamError) as said:
        reader.read({"event": "error", "code": "invalid_param", "message": "Run failed: x"})
    assert said.value.code == "workflow_failed"
    with pytest.raises(DifyStreamError) as other:
        reader.read({"event": "error", "code": "invalid_param", "message": "bad input"})
    assert other.value.code == "invalid_param"


def test_a_stopped_chatflow_says_so_in_its_message_end() -> None:
    reader = EventReader(app(mode="chatflow"))
    assert reader.read({"event": "workflow_finished", "data": {"status": "stopped"}}) is None
    end = reader.read({"event": "message_end", "id": "m", "conversation_id": "c"})
    assert isinstance(end, Finished) and end.stopped


def test_a_chatflow_that_succeeded_finishes_with_message_end_only() -> None:
    reader = EventReader(app(mode="chatflow"))
    end = reader.read({"event": "message_end", "id": "m"})
    assert isinstance(end, Finished) and not end.stopped
    assert reader.read({"event": "workflow_finished", "data": {"status": "succeeded"}}) is None


def test_workflow_finished_carries_the_answer_usage_and_files() -> None:
    reader = EventReader(app(mode="workflow"))
    end = reader.read(
        {
            "event": "workflow_finished",
            "workflow_run_id": "run",
            "data": {
                "status": "stopped",
                "outputs": {"answer": "done", "count": 3},
                "total_tokens": 7,
                "elapsed_time": 1.5,
                "files": [{"url": "https://cdn.example/a.png", "type": "image"}],
            },
        }
    )
    assert isinstance(end, Finished)
    assert (end.message_id, end.output_text, end.stopped) == ("run", "done", True)
    assert end.usage == Usage(7, 1.5) and end.files[0].url == "https://cdn.example/a.png"
    with pytest.raises(DifyStreamError) as failed:
        reader.read({"event": "workflow_finished", "data": {"status": "failed"}})
    assert failed.value.code == "workflow_failed"


def test_a_paused_run_is_an_error() -> None:
    with pytest.raises(DifyStreamError) as paused:
        EventReader(app(mode="workflow")).read({"event": "workflow_paused", "data": {}})
    assert paused.value.code == "workflow_paused"


def test_the_workflow_answer_in_its_outputs() -> None:
    assert workflow_text({"result": "only text", "n": 1}) == "only text"
    assert workflow_text({"a": "x", "b": "y"}) == "- **a**: x\n- **b**: y"
    assert workflow_text({"a": "x", "b": "y"}, "b") == "y"
    assert workflow_text({"a": "x"}, "missing") is None
    assert workflow_text({"n": {"k": 1}}) == '{\n  "k": 1\n}'
    assert workflow_text({}) is None and workflow_text("junk") is None
    many = workflow_text({f"k{i}": i for i in range(30)})
    assert many is not None and len(many.splitlines()) == 10


def test_citations_of_junk_metadata_are_none() -> None:
    assert citations(None) == () and citations({"retriever_resources": "x"}) == ()


def test_events_the_chat_does_not_show_are_skipped() -> None:
    reader = EventReader(app(mode="chatflow"))
    for kind in ("node_finished", "tts_message", "agent_log", "workflow_started", "new_event"):
        assert reader.read({"event": kind, "data": {}}) is None
