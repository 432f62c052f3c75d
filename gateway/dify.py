"""Dify API client: streaming answers, typed events, typed errors.

API reference: Dify "chat-messages" / "completion-messages" / "workflows/run" (response_mode
streaming), "files/upload", "audio-to-text", "parameters", "messages/:id/feedbacks",
"messages/:id/suggested" and the stop endpoints.

Retries happen only before the answer's first byte: on connect errors, 429 (honouring
Retry-After) and 502/503/504 from a proxy. Never on a 500: Dify may already have stored the
message, and a retry would post it twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import random
import re
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

import httpx
import orjson

from gateway.config import DifyApp
from gateway.dify_events import (
    AgentStep,
    ChatRequest,
    ConversationGone,
    DeadlineExceeded,
    DifyError,
    DifyEvent,
    DifyHTTPError,
    DifyRateLimited,
    DifyStreamError,
    DifyUnavailable,
    FileOutput,
    Finished,
    HumanInput,
    NodeStarted,
    Paused,
    ReasoningDelta,
    Started,
    StreamStalled,
    TextDelta,
    TextReplace,
    Usage,
)
from gateway.dify_forms import read_form
from gateway.dify_parse import EventReader
from gateway.outbound import retry_after
from gateway.sse import SSEParser

log = logging.getLogger(__name__)

# The event and error types live in gateway/dify_events.py; importing them from here works.
__all__ = [
    "AgentStep",
    "ChatRequest",
    "ConversationGone",
    "DeadlineExceeded",
    "DifyClient",
    "DifyError",
    "DifyEvent",
    "DifyHTTPError",
    "DifyRateLimited",
    "DifyStreamError",
    "DifyUnavailable",
    "FileOutput",
    "Finished",
    "HumanInput",
    "NodeStarted",
    "Paused",
    "ReasoningDelta",
    "Started",
    "StreamStalled",
    "TextDelta",
    "TextReplace",
    "Usage",
]

MAX_TRIES = 3
IDLE_TIMEOUT_S = 60.0  # Dify pings every ~10 s, so a minute of silence means a dead stream
# A 429 with this code is Dify Cloud's exhausted quota, not its concurrency cap: waiting
# does not help, so it is not retried.
QUOTA_EXHAUSTED = "rate_limit_error"


# --- client ------------------------------------------------------------------------------


def _error_body(raw: bytes) -> tuple[str, str, str]:
    """(code, message, params) of an error body; `params` names the refused field."""
    try:
        body = json.loads(raw)
    except ValueError:
        return "", raw[:200].decode("utf-8", "replace"), ""
    if not isinstance(body, dict):
        return "", str(body)[:200], ""
    params = body.get("params")
    return str(body.get("code", "")), str(body.get("message", "")), str(params or "")


# Visible ASCII but `%`, which starts an escape here.
_NOT_HEADER_SAFE = re.compile(r"[^!-$&-~]")
TRACE_ID_MAX = 128


def trace_id_header(trace_id: str) -> str:
    """`trace_id` (a job id, `<bot>:<platform message id>`) as an `X-Trace-Id` value: an id
    of visible ASCII goes as it is; any other character (non-ASCII, a space, a control
    character, `%`) is percent-encoded as UTF-8, since httpx refuses them in a header
    and the platform chose the id, not us. Longer than 128 characters, the start is kept
    and a hash of the whole id stands for the rest, so the value stays stable and distinct."""
    safe = _NOT_HEADER_SAFE.sub(_percent_encoded, trace_id)
    if len(safe) <= TRACE_ID_MAX:
        return safe
    digest = hashlib.sha256(trace_id.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    head = re.sub(r"%[0-9A-F]?$", "", safe[: TRACE_ID_MAX - len(digest) - 1])  # whole escapes
    return f"{head}~{digest}"


def _percent_encoded(match: re.Match[str]) -> str:
    return "".join(f"%{b:02X}" for b in match[0].encode("utf-8", "surrogatepass"))


class DifyClient:
    """One client for every configured app; one shared `httpx.AsyncClient`."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        sleep: Callable[[float], Any] = asyncio.sleep,
        on_malformed: Callable[[int], None] | None = None,
    ) -> None:
        self._http = http
        self._sleep = sleep
        self._on_malformed = on_malformed

    @property
    def http(self) -> httpx.AsyncClient:
        """The client Dify is reached with (files the apps produce are fetched with it)."""
        return self._http

    @staticmethod
    def _headers(app: DifyApp, trace_id: str | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {app.api_key.get_secret_value()}"}
        if trace_id:
            headers["X-Trace-Id"] = trace_id_header(trace_id)
        return headers

    def _endpoint(self, app: DifyApp, req: ChatRequest) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {
            "inputs": dict(req.inputs),  # Dify answers 400 without inputs
            "response_mode": "streaming",
            "user": req.user,
        }
        if req.files:
            body["files"] = req.files
        if app.mode in ("workflow", "completion"):
            # These apps read the message from an input variable; a route's own value for
            # that variable wins.
            body["inputs"].setdefault(app.query_input, req.query)
            if app.mode == "workflow":
                return f"{app.base_url}/workflows/run", body
            return f"{app.base_url}/completion-messages", body
        body["query"] = req.query
        if req.conversation_id:
            body["conversation_id"] = req.conversation_id
        return f"{app.base_url}/chat-messages", body

    async def stream(self, app: DifyApp, req: ChatRequest) -> AsyncIterator[DifyEvent]:
        """Yield the answer's events. Raises a `DifyError` subclass on failure."""
        url, body = self._endpoint(app, req)
        headers = self._headers(app, req.trace_id)
        for attempt in range(1, MAX_TRIES + 1):
            last = attempt == MAX_TRIES
            try:
                request = self._http.build_request(
                    "POST",
                    url,
                    json=body,
                    headers=headers,
                    timeout=httpx.Timeout(IDLE_TIMEOUT_S, connect=5.0),
                )
                response = await self._http.send(request, stream=True)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                if last:
                    raise DifyUnavailable(f"cannot reach Dify: {type(exc).__name__}") from exc
                await self._backoff(attempt)
                continue
            except httpx.HTTPError as exc:
                raise DifyUnavailable(f"Dify request failed: {type(exc).__name__}") from exc
            refusal: list[bytes] = []
            # aclosing: an answer stopped early (Stop, a cancelled job) closes the response
            # now, not whenever the event loop finalizes the inner generator.
            async with contextlib.aclosing(self._read(response, app, refusal)) as events:
                async for event in events:
                    yield event
            if not refusal:
                return
            raw = refusal[0]
            status = response.status_code
            code, message, params = _error_body(raw)
            if (
                status == 404
                and req.conversation_id
                and code
                in (
                    "not_found",
                    "conversation_not_exists",
                )
            ):
                raise ConversationGone(f"conversation {req.conversation_id} is gone: {message}")
            if status == 429 and code != QUOTA_EXHAUSTED:
                wait = retry_after(response.headers, 1.0)
                if last or wait > 10:
                    raise DifyRateLimited(wait)
                await self._sleep(wait + random.uniform(0, 0.5))
                continue
            if status in (502, 503, 504) and not last:
                await self._backoff(attempt)
                continue
            if status >= 500:
                raise DifyUnavailable(f"Dify HTTP {status} {code}: {message}")
            raise DifyHTTPError(status, code, message, params)

    async def _backoff(self, attempt: int) -> None:
        await self._sleep(min(4.0, 0.5 * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5))

    async def _read(
        self, response: httpx.Response, app: DifyApp, refusal: list[bytes]
    ) -> AsyncGenerator[DifyEvent, None]:
        """The events of a streaming response (200); any other status leaves its body in
        `refusal` for the caller to read the error from. Closes the response either way."""
        try:
            if response.status_code == 200:
                async for event in self._events(response, app):
                    yield event
                return
            refusal.append(await response.aread())
        except httpx.ReadTimeout as exc:
            raise StreamStalled(f"no data from Dify for {IDLE_TIMEOUT_S:.0f}s") from exc
        except httpx.HTTPError as exc:
            raise DifyUnavailable(f"Dify stream broke: {type(exc).__name__}") from exc
        finally:
            await response.aclose()

    async def _events(self, response: httpx.Response, app: DifyApp) -> AsyncIterator[DifyEvent]:
        parser = SSEParser()
        reader = EventReader(app)
        started = False
        malformed = 0
        # aiter_bytes, not aiter_raw: a proxy in front of Dify may gzip the event stream.
        async for chunk in response.aiter_bytes():
            for sse in parser.feed(chunk):
                if sse.event == "ping" or sse.data == "[DONE]":
                    continue
                try:
                    payload = orjson.loads(sse.data)
                except orjson.JSONDecodeError:
                    malformed += 1
                    continue
                if not isinstance(payload, dict):
                    malformed += 1
                    continue
                if not started and (
                    payload.get("conversation_id") is not None or payload.get("task_id")
                ):
                    started = True
                    yield Started(
                        str(payload.get("conversation_id") or ""),
                        str(payload.get("message_id") or ""),
                        str(payload.get("task_id") or ""),
                    )
                event = reader.read(payload)
                if event is not None:
                    yield event
                    if isinstance(event, Finished | Paused):
                        self._report(parser.malformed + malformed)
                        return
        parser.close()
        self._report(parser.malformed + malformed)

    def _report(self, malformed: int) -> None:
        if malformed and self._on_malformed is not None:
            self._on_malformed(malformed)

    async def resume(self, app: DifyApp, run_id: str, user: str) -> AsyncIterator[DifyEvent]:
        """Follow a paused run once its form is submitted (`GET /workflow/{run_id}/events`,
        Dify 1.14+, as the run's `user`): the same events as the run's own stream."""
        request = self._http.build_request(
            "GET",
            f"{app.base_url}/workflow/{run_id}/events",
            params={"user": user},
            headers=self._headers(app),
            timeout=httpx.Timeout(IDLE_TIMEOUT_S, connect=5.0),
        )
        try:
            response = await self._http.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise DifyUnavailable(f"Dify resume failed: {type(exc).__name__}") from exc
        refusal: list[bytes] = []
        async with contextlib.aclosing(self._read(response, app, refusal)) as events:
            async for event in events:
                yield event
        if not refusal:
            return
        code, message, params = _error_body(refusal[0])
        if response.status_code >= 500:
            raise DifyUnavailable(f"Dify HTTP {response.status_code} {code}: {message}")
        raise DifyHTTPError(response.status_code, code, message, params)

    # --- small blocking calls ------------------------------------------------------------

    async def _call(
        self,
        app: DifyApp,
        method: str,
        path: str,
        *,
        what: str,
        timeout_s: float | None = None,
        params: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
        data: dict[str, str] | None = None,
        files: dict[str, tuple[str, bytes, str]] | None = None,
    ) -> dict[str, Any]:
        """One call to `app` at `path` whose answer is a JSON object (`body` is sent as
        JSON). Every small call maps its failures the same way: no answer at all (network,
        timeout) is `DifyUnavailable` naming `what`; an error status is `DifyHTTPError` with
        Dify's own code; a 2xx that is not a JSON object is `DifyUnavailable`. `timeout_s`
        None keeps the shared client's own timeout."""
        try:
            response = await self._http.request(
                method,
                app.base_url + path,
                headers=self._headers(app),
                params=params,
                json=body,
                data=data,
                files=files,
                timeout=httpx.USE_CLIENT_DEFAULT if timeout_s is None else timeout_s,
            )
        except httpx.HTTPError as exc:
            raise DifyUnavailable(f"Dify {what} failed: {type(exc).__name__}") from exc
        return self._json_or_raise(response)

    async def form(self, app: DifyApp, token: str) -> HumanInput:
        """A human-input form's content (`GET /form/human_input/{token}`)."""
        body = await self._call(app, "GET", f"/form/human_input/{token}", what="form", timeout_s=10)
        return read_form(body, token)

    async def submit_form(
        self, app: DifyApp, token: str, inputs: dict[str, str], action: str, user: str
    ) -> None:
        """Answer a form (`POST /form/human_input/{token}`): the run resumes. A form is
        answered once: 412 (`human_input_form_submitted`, `…_expired`) after that."""
        body = {"inputs": inputs, "action": action, "user": user}
        await self._call(
            app,
            "POST",
            f"/form/human_input/{token}",
            what="form submit",
            timeout_s=10.0,
            body=body,
        )

    async def upload_file(
        self, app: DifyApp, user: str, name: str, data: bytes, mime_type: str
    ) -> str:
        response = await self._post_form(app, "/files/upload", user, name, data, mime_type)
        return str(response["id"])

    async def audio_to_text(
        self, app: DifyApp, user: str, name: str, data: bytes, mime_type: str
    ) -> str:
        response = await self._post_form(app, "/audio-to-text", user, name, data, mime_type)
        return str(response.get("text") or "")

    async def _post_form(
        self, app: DifyApp, path: str, user: str, name: str, data: bytes, mime_type: str
    ) -> dict[str, Any]:
        """A multipart upload of one file as `user`; a minute, since files are large."""
        return await self._call(
            app,
            "POST",
            path,
            what=path,
            timeout_s=60.0,
            data={"user": user},
            files={"file": (name, data, mime_type)},
        )

    async def parameters(self, app: DifyApp, user: str) -> dict[str, Any]:
        return await self._call(
            app, "GET", "/parameters", what="/parameters", params={"user": user}
        )

    async def info(self, app: DifyApp) -> dict[str, Any]:
        """`GET /info`: the app's name, description, tags, mode and author."""
        return await self._call(app, "GET", "/info", what="/info")

    async def stop(self, app: DifyApp, task_id: str, user: str) -> None:
        """Stop a streaming run (`POST …/{task_id}/stop` with the run's `user`: Dify
        ignores a stop by anyone else). The path depends on the app's mode."""
        if app.mode == "workflow":
            path = f"/workflows/tasks/{task_id}/stop"
        elif app.mode == "completion":
            path = f"/completion-messages/{task_id}/stop"
        else:
            path = f"/chat-messages/{task_id}/stop"
        await self._call(app, "POST", path, what="stop", timeout_s=10.0, body={"user": user})

    async def feedback(
        self, app: DifyApp, message_id: str, user: str, rating: str | None, content: str = ""
    ) -> None:
        """Rate a message (`None` withdraws the rating) as the `user` who asked it."""
        body: dict[str, Any] = {"rating": rating, "user": user}
        if content:
            body["content"] = content
        await self._call(
            app,
            "POST",
            f"/messages/{message_id}/feedbacks",
            what="feedback",
            timeout_s=10.0,
            body=body,
        )

    async def suggested(self, app: DifyApp, message_id: str, user: str) -> list[str]:
        """The follow-up questions the app suggests after a message (400 when it has them
        turned off)."""
        body = await self._call(
            app,
            "GET",
            f"/messages/{message_id}/suggested",
            what="suggested",
            timeout_s=10.0,
            params={"user": user},
        )
        data = body.get("data")
        if not isinstance(data, list):
            return []
        return [q for q in data if isinstance(q, str) and q.strip()]

    @staticmethod
    def _json_or_raise(response: httpx.Response) -> dict[str, Any]:
        if response.status_code >= 400:
            code, message, params = _error_body(response.content)
            raise DifyHTTPError(response.status_code, code, message, params)
        try:
            body = response.json()
        except ValueError as exc:
            raise DifyUnavailable("Dify answered with invalid JSON") from exc
        if not isinstance(body, dict):
            raise DifyUnavailable("Dify answered with unexpected JSON")
        return body
