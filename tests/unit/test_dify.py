"""The Dify client: events, modes, retries before the first byte only, typed errors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from gateway import dify as dify_module
from gateway.config import DifyApp
from gateway.dify import (
    AgentStep,
    ChatRequest,
    ConversationGone,
    DifyClient,
    DifyEvent,
    DifyHTTPError,
    DifyRateLimited,
    DifyStreamError,
    DifyUnavailable,
    FileOutput,
    Finished,
    Started,
    StreamStalled,
    TextDelta,
    TextReplace,
)
from gateway.emulator import DifyEmulator, ScriptedReply
from gateway.transport import AiohttpTransport, ApiClient
from gateway.words import ENGLISH, dify_failure


@pytest.fixture(params=["httpx", "aiohttp-pool"])
async def http(request: pytest.FixtureRequest) -> AsyncIterator[httpx.AsyncClient]:
    """Plain httpx, and httpx over aiohttp's pool as the gateway runs it (its own body
    iterator and error mapping: a stall must still be a ReadTimeout, and so on)."""
    if request.param == "httpx":
        async with httpx.AsyncClient() as client:
            yield client
        return
    async with ApiClient(transport=AiohttpTransport(max_connections=16)) as client:
        yield client


def app_for(dify: DifyEmulator, **extra: Any) -> DifyApp:
    return DifyApp(base_url=dify.base_url, api_key=dify.api_key, **extra)  # type: ignore[arg-type]


async def collect(client: DifyClient, app: DifyApp, req: ChatRequest) -> list[DifyEvent]:
    return [e async for e in client.stream(app, req)]


async def no_sleep(_: float) -> None:
    return None


async def test_a_chat_stream_yields_typed_events(
    dify: DifyEmulator, http: httpx.AsyncClient
) -> None:
    dify.reply(ScriptedReply(chunks=["Hel", "lo"], citations=["Handbook.pdf", "FAQ"]))
    events = await collect(
        DifyClient(http), app_for(dify), ChatRequest("hi", "bot:U1", trace_id="job-1")
    )
    started, *deltas, finished = events
    assert isinstance(started, Started) and started.conversation_id in dify.conversations
    assert deltas == [TextDelta("Hel"), TextDelta("lo")]
    assert isinstance(finished, Finished) and finished.citations == ("Handbook.pdf", "FAQ")
    sent = dify.requests[0]
    assert sent["inputs"] == {} and sent["response_mode"] == "streaming"
    assert sent["_headers"]["X-Trace-Id"] == "job-1"


async def test_workflow_and_completion_modes(dify: DifyEmulator, http: httpx.AsyncClient) -> None:
    client = DifyClient(http)
    dify.reply(ScriptedReply(chunks=["flow ", "text"]))
    events = await collect(client, app_for(dify, mode="workflow"), ChatRequest("q", "u"))
    assert [e for e in events if isinstance(e, TextDelta)] == [
        TextDelta("flow "),
        TextDelta("text"),
    ]
    assert isinstance(events[-1], Finished) and events[-1].output_text == "flow text"
    assert dify.requests[-1]["inputs"] == {"query": "q"}
    dify.reply(ScriptedReply(chunks=["done"]))
    events = await collect(client, app_for(dify, mode="completion"), ChatRequest("q2", "u"))
    assert TextDelta("done") in events


async def test_a_failed_workflow_run_is_a_stream_error(
    dify: DifyEmulator, http: httpx.AsyncClient
) -> None:
    dify.reply(ScriptedReply(chunks=["x"], error=("failed", "node crashed")))
    with pytest.raises(DifyStreamError):
        await collect(DifyClient(http), app_for(dify, mode="workflow"), ChatRequest("q", "u"))


async def test_an_error_event_mid_stream_raises_after_the_text(
    dify: DifyEmulator, http: httpx.AsyncClient
) -> None:
    dify.reply(ScriptedReply(chunks=["partial"], error=("invalid_param", "bad")))
    seen: list[DifyEvent] = []
    with pytest.raises(DifyStreamError) as info:
        async for event in DifyClient(http).stream(app_for(dify), ChatRequest("q", "u")):
            seen.append(event)
    assert TextDelta("partial") in seen
    assert info.value.code == "invalid_param"


async def test_a_missing_conversation_is_conversation_gone_only_with_an_id(
    dify: DifyEmulator, http: httpx.AsyncClient
) -> None:
    client = DifyClient(http)
    with pytest.raises(ConversationGone):
        await collect(client, app_for(dify), ChatRequest("q", "u", conversation_id="nope"))
    # The same 404 code without a conversation (e.g. a wrong base URL) is a plain HTTP error.
    dify.reply(ScriptedReply(status=404, code="not_found", message="Not Found"))
    with pytest.raises(DifyHTTPError) as info:
        await collect(client, app_for(dify), ChatRequest("q", "u"))
    assert info.value.status == 404


def scripted_transport(
    responses: list[Callable[[httpx.Request], httpx.Response]], seen: list[httpx.Request]
) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return responses.pop(0)(request)

    return httpx.MockTransport(handler)


def sse(*events: dict[str, Any]) -> httpx.Response:
    body = b"".join(f"data: {json.dumps(e)}\n\n".encode() for e in events)
    return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})


def ok(_: httpx.Request) -> httpx.Response:
    return sse(
        {"event": "message", "answer": "ok", "conversation_id": "c", "message_id": "m"},
        {"event": "message_end", "conversation_id": "c", "message_id": "m"},
    )


APP = DifyApp(base_url="http://dify.test/v1", api_key="k")  # type: ignore[arg-type]


def refuse(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("refused", request=request)


@pytest.mark.parametrize(
    "first",
    [
        refuse,
        lambda r: httpx.Response(502),
        lambda r: httpx.Response(503),
        lambda r: httpx.Response(504),
        lambda r: httpx.Response(429, headers={"retry-after": "1"}),
    ],
)
async def test_transient_failures_before_the_first_byte_are_retried(first: Any) -> None:
    seen: list[httpx.Request] = []
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    async with httpx.AsyncClient(transport=scripted_transport([first, ok], seen)) as h:
        events = await collect(DifyClient(h, sleep=record), APP, ChatRequest("q", "u"))
    assert TextDelta("ok") in events
    assert len(seen) == 2 and len(waits) == 1


async def test_a_500_is_never_retried() -> None:
    seen: list[httpx.Request] = []
    transport = scripted_transport([lambda r: httpx.Response(500, json={"code": "x"}), ok], seen)
    async with httpx.AsyncClient(transport=transport) as h:
        with pytest.raises(DifyUnavailable):
            await collect(DifyClient(h, sleep=no_sleep), APP, ChatRequest("q", "u"))
    assert len(seen) == 1


async def test_retries_stop_after_three_tries() -> None:
    seen: list[httpx.Request] = []
    transport = scripted_transport([refuse, refuse, refuse, ok], seen)
    async with httpx.AsyncClient(transport=transport) as h:
        with pytest.raises(DifyUnavailable):
            await collect(DifyClient(h, sleep=no_sleep), APP, ChatRequest("q", "u"))
    assert len(seen) == 3


async def test_a_long_retry_after_is_not_waited_for() -> None:
    seen: list[httpx.Request] = []
    transport = scripted_transport(
        [lambda r: httpx.Response(429, headers={"retry-after": "120"})], seen
    )
    async with httpx.AsyncClient(transport=transport) as h:
        with pytest.raises(DifyRateLimited) as info:
            await collect(DifyClient(h, sleep=no_sleep), APP, ChatRequest("q", "u"))
    assert info.value.retry_after == 120


async def test_other_events_are_ignored_and_malformed_lines_counted() -> None:
    body = (
        b'data: {"event": "workflow_started", "conversation_id": "c"}\n\n'
        b'data: {"event": "node_finished"}\n\n'
        b"data: not json\n\n"
        b'data: {"event": "agent_thought", "thought": "hmm"}\n\n'
        b'data: {"event": "agent_message", "answer": "A"}\n\n'
        b'data: {"event": "message_file", "url": "/files/x.png", "type": "image"}\n\n'
        b'data: {"event": "message_replace", "answer": "B"}\n\n'
        b'data: {"event": "tts_message", "audio": "..."}\n\n'
        b'data: {"event": "message_end", "conversation_id": "c", "message_id": "m"}\n\n'
    )
    counted: list[int] = []
    transport = httpx.MockTransport(lambda r: httpx.Response(200, content=body))
    async with httpx.AsyncClient(transport=transport) as h:
        events = await collect(
            DifyClient(h, on_malformed=counted.append), APP, ChatRequest("q", "u")
        )
    assert events == [
        Started("c", ""),
        AgentStep(""),
        TextDelta("A"),
        FileOutput("http://dify.test/files/x.png", "image", key="/files/x.png"),
        TextReplace("B"),
        Finished("c", "m"),
    ]
    assert counted == [1]


async def test_a_silent_stream_is_stalled(
    dify: DifyEmulator, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dify_module, "IDLE_TIMEOUT_S", 0.2)
    dify.reply(ScriptedReply(chunks=["a"], hang=1.0))
    with pytest.raises(StreamStalled):
        await collect(DifyClient(http), app_for(dify), ChatRequest("q", "u"))


async def test_the_emulator_ends_a_paused_run_once_its_user_stops_it(
    dify: DifyEmulator, http: httpx.AsyncClient
) -> None:
    """The emulator, like Dify, ends a stopped run at once (a script's pause included), and
    ignores a stop from another user: durability tests rely on both."""
    client, app = DifyClient(http), app_for(dify)
    dify.reply(ScriptedReply(chunks=["a"], hang=30.0))
    stream = client.stream(app, ChatRequest("q", "u1"))
    started = await anext(stream)
    assert isinstance(started, Started) and await anext(stream) == TextDelta("a")
    await client.stop(app, started.task_id, "someone-else")
    next_event = asyncio.ensure_future(anext(stream))
    done, _ = await asyncio.wait({next_event}, timeout=0.5)
    assert not done  # still paused: Dify ignores another user's stop
    await client.stop(app, started.task_id, "u1")
    finished = await asyncio.wait_for(next_event, 10.0)  # not the 30 s pause
    assert isinstance(finished, Finished)
    await stream.aclose()


async def test_a_wrong_api_key_is_a_readable_error(
    dify: DifyEmulator, http: httpx.AsyncClient
) -> None:
    app = DifyApp(base_url=dify.base_url, api_key="wrong")  # type: ignore[arg-type]
    with pytest.raises(DifyHTTPError) as info:
        await collect(DifyClient(http), app, ChatRequest("q", "u"))
    assert info.value.status == 401
    shown = dify_failure(ENGLISH, info.value)
    assert "misconfigured" in shown
    assert "wrong" not in shown


async def test_uploads_audio_parameters_and_feedback(
    dify: DifyEmulator, http: httpx.AsyncClient
) -> None:
    client, app = DifyClient(http), app_for(dify)
    file_id = await client.upload_file(app, "u", "a.png", b"png", "image/png")
    assert dify.uploads[0]["id"] == file_id and dify.uploads[0]["user"] == "u"
    assert await client.audio_to_text(app, "u", "v.mp3", b"mp3", "audio/mp3") == (
        "transcribed audio"
    )
    # Dify takes Dify's exact audio types only.
    with pytest.raises(DifyHTTPError) as refused:
        await client.audio_to_text(app, "u", "v.mp3", b"mp3", "audio/mpeg")
    assert (refused.value.status, refused.value.code) == (415, "unsupported_audio_type")
    assert (await client.parameters(app, "u"))["opening_statement"] == dify.opening_statement
    await client.feedback(app, "msg-1", "u", "like")
    assert dify.feedbacks == [{"message_id": "msg-1", "rating": "like", "user": "u"}]


async def test_a_gzipped_event_stream_is_decoded() -> None:
    import gzip

    body = gzip.compress(
        b'data: {"event": "message", "answer": "zipped", "conversation_id": "c"}'
        b'\n\ndata: {"event": "message_end", "conversation_id": "c"}\n\n'
    )
    transport = httpx.MockTransport(
        lambda r: httpx.Response(200, content=body, headers={"content-encoding": "gzip"})
    )
    async with httpx.AsyncClient(transport=transport) as h:
        events = await collect(DifyClient(h), APP, ChatRequest("q", "u"))
    assert TextDelta("zipped") in events


async def test_a_connection_dropped_mid_stream_is_unavailable_after_the_text(
    http: httpx.AsyncClient,
) -> None:
    """Dify (or a proxy) dies halfway through a chunked event stream."""
    event = b'data: {"event": "message", "conversation_id": "c", "answer": "half"}\n\n'

    async def cut_short(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
        writer.write(head + b"Transfer-Encoding: chunked\r\n\r\n")
        writer.write(b"%x\r\n%s\r\n" % (len(event), event))
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.transport.abort()  # no final chunk: the body is incomplete

    server = await asyncio.start_server(cut_short, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    app = DifyApp(base_url=f"http://127.0.0.1:{port}", api_key="k")  # type: ignore[arg-type]
    seen: list[DifyEvent] = []
    try:
        with pytest.raises(DifyUnavailable, match="stream broke"):
            async for item in DifyClient(http).stream(app, ChatRequest("q", "u")):
                seen.append(item)
    finally:
        server.close()
        await server.wait_closed()
    assert TextDelta("half") in seen


async def test_workflow_and_completion_apps_read_the_configured_input(
    dify: DifyEmulator, http: httpx.AsyncClient
) -> None:
    client = DifyClient(http)
    dify.reply(ScriptedReply(chunks=["a"]), ScriptedReply(chunks=["b"]))
    workflow = app_for(dify, mode="workflow", query_input="question")
    await collect(client, workflow, ChatRequest("q1", "u", inputs={"lang": "en"}))
    completion = app_for(dify, mode="completion", query_input="text")
    await collect(client, completion, ChatRequest("q2", "u", inputs={"text": "route wins"}))
    assert dify.requests[0]["inputs"] == {"lang": "en", "question": "q1"}
    assert dify.requests[1]["inputs"] == {"text": "route wins"}


async def test_an_exhausted_cloud_quota_is_not_retried() -> None:
    seen: list[httpx.Request] = []
    quota = httpx.Response(
        429, json={"code": "rate_limit_error", "message": "quota", "status": 429},
        headers={"retry-after": "1"},
    )  # fmt: skip
    transport = scripted_transport([lambda r: quota, ok], seen)
    async with httpx.AsyncClient(transport=transport) as h:
        with pytest.raises(DifyHTTPError) as info:
            await collect(DifyClient(h, sleep=no_sleep), APP, ChatRequest("q", "u"))
    assert (info.value.status, info.value.code) == (429, "rate_limit_error")
    assert len(seen) == 1


async def test_the_refused_field_is_in_the_error_for_the_log() -> None:
    body = {"code": "invalid_param", "message": "x is required", "params": "department"}
    transport = httpx.MockTransport(lambda r: httpx.Response(400, json=body))
    async with httpx.AsyncClient(transport=transport) as h:
        with pytest.raises(DifyHTTPError) as info:
            await collect(DifyClient(h), APP, ChatRequest("q", "u"))
    assert info.value.params == "department" and "(department)" in str(info.value)
