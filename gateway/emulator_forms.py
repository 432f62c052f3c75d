"""The emulator's human-input forms (Dify 1.14: `GET`/`POST /form/human_input/{token}`): a
run that paused on a form waits here until the form is answered, once. A second answer, or
one after `expire(...)`, gets 412 as Dify's does; the answer is kept for the tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from gateway.emulator_script import App, Form, form_body


@dataclass
class PausedRun:
    run_id: str
    form: Form
    app: App
    user: str  # the run's user: the resume must name it
    conversation_id: str | None
    body: dict[str, Any]  # the request that started the run
    answer: dict[str, Any] | None = None  # what the form was answered with
    expired: bool = False


@dataclass
class FormDesk:
    runs: dict[str, PausedRun] = field(default_factory=dict)  # by form token
    # Every submission, {token, inputs, action, user, status}: refused ones too (412, 404).
    answers: list[dict[str, Any]] = field(default_factory=list)
    resumes: list[dict[str, Any]] = field(default_factory=list)  # {run_id, user}

    def expire(self, token: str) -> None:
        self.runs[token].expired = True

    def by_run(self, run_id: str) -> PausedRun | None:
        return next((r for r in self.runs.values() if r.run_id == run_id), None)

    def _refusal(self, token: str) -> web.Response | None:
        run = self.runs.get(token)
        if run is None:
            return _error(404, "not_found", "Form not found")
        if run.answer is not None:
            return _error(412, "human_input_form_submitted", "Form already submitted")
        if run.expired:
            return _error(412, "human_input_form_expired", "Form expired")
        return None

    async def get(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        refused = self._refusal(token)
        if refused is not None:
            return refused
        return web.json_response(form_body(self.runs[token].form))

    async def post(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        body = await request.json()
        response = self._refusal(token) or self._take(token, body)
        self.answers.append({"token": token, **body, "status": response.status})
        return response

    def _take(self, token: str, body: dict[str, Any]) -> web.Response:
        run = self.runs[token]
        actions = [ident for ident, _ in run.form.actions]
        if body.get("action") not in actions or not isinstance(body.get("inputs"), dict):
            return _error(400, "invalid_form_data", "unknown action or no inputs")
        run.answer = body
        return web.json_response({})


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"code": code, "message": message, "status": status}, status=status)
