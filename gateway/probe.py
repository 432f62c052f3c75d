"""`dify-gateway check --probe`: try every bot's credentials and every Dify app over the
network, before going live, and print one table (docs/operating.md, "Probing credentials").

- Bots: each adapter's `probe()` (gateway/platform.py `Probes`): Slack `auth.test`, Feishu
  and Lark a tenant token and the bot's info, WeCom `gettoken` and `agent/get`, DingTalk an
  access token (and, in Stream mode, `connections/open`). Nothing is sent to anyone and no
  long connection is opened, so a probe is safe next to a running gateway. The adapters are
  built on a throwaway in-memory store: the probe never touches the configured one.
- Apps: Dify's `/info` and `/parameters` with each app's key, and a warning for every
  required input of the app (`user_input_form`) that no route's `inputs` provide.

Every error is printed on one line with every configured secret masked. Exit status 1 when
anything failed; warnings and skipped rows do not fail.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from gateway.app_params import PARAMETERS_USER, input_form, required_inputs_not_provided
from gateway.config import Config, DifyApp
from gateway.dify import DifyClient
from gateway.logs import Masker, config_secrets, one_line
from gateway.models import InboundMessage
from gateway.pacing import BotBudget
from gateway.platform import AdapterContext, Delivery, Probes, ProbeStep, Read, attempt
from gateway.registry import create_adapter
from gateway.runtime import dify_client, platform_client
from gateway.store.factory import open_store
from gateway.words import words_for

STEP_TIMEOUT_S = 20.0
Result = Literal["ok", "FAILED", "warning", "skipped"]


@dataclass(frozen=True, slots=True)
class Row:
    subject: str  # "bot slack-main", "app main"
    tried: str
    result: Result
    detail: str


class _NoAssistant:
    """Adapters built for a probe answer nobody."""

    async def opening_statement(self, message: InboundMessage) -> str | None:
        return None


async def _refuse(read: Read) -> Delivery:
    return Delivery.REDELIVER


def _row(subject: str, step: ProbeStep, mask: Masker) -> Row:
    if step.error is not None:
        return Row(subject, step.what, "FAILED", one_line(mask(step.error), 300))
    return Row(subject, step.what, "skipped" if step.skipped else "ok", mask(step.detail))


async def probe_bots(config: Config, mask: Masker) -> list[Row]:
    rows: list[Row] = []
    http = platform_client()
    store = open_store("memory://")
    try:
        for name, bot in config.bots.items():
            context = AdapterContext(
                http=http,
                store=store,
                budget=BotBudget(),
                deliver=_refuse,
                assistant=_NoAssistant(),
                words=words_for(bot.resolved_locale),
            )
            subject = f"bot {name} ({bot.platform})"
            adapter = create_adapter(name, bot, context)
            if not isinstance(adapter, Probes):
                rows.append(Row(subject, "-", "skipped", "this platform has no probe"))
                continue
            try:
                async with asyncio.timeout(STEP_TIMEOUT_S):
                    steps = await adapter.probe()
            except TimeoutError:
                steps = [ProbeStep("probe", error=f"no answer within {STEP_TIMEOUT_S:.0f}s")]
            rows += [_row(subject, step, mask) for step in steps]
    finally:
        await http.aclose()
        await store.aclose()
    return rows


async def _app_info(dify: DifyClient, app: DifyApp) -> str:
    body = await dify.info(app)
    return f"{body.get('name', '?')} (mode {body.get('mode', '?')})"


async def _app_parameters(dify: DifyClient, app: DifyApp, into: dict[str, Any]) -> str:
    into.update(await dify.parameters(app, PARAMETERS_USER))
    return f"{len(input_form(into))} input variables"


async def probe_apps(config: Config, mask: Masker) -> list[Row]:
    rows: list[Row] = []
    http = dify_client(8)
    dify = DifyClient(http)
    try:
        for name, app in config.dify.apps.items():
            subject = f"app {name}"
            params: dict[str, Any] = {}
            calls = (
                ("/info", functools.partial(_app_info, dify, app)),
                ("/parameters", functools.partial(_app_parameters, dify, app, params)),
            )
            for what, call in calls:
                try:
                    async with asyncio.timeout(STEP_TIMEOUT_S):
                        step = await attempt(what, call)
                except TimeoutError:
                    step = ProbeStep(what, error=f"no answer within {STEP_TIMEOUT_S:.0f}s")
                rows.append(_row(subject, step, mask))
            if params:
                missing = required_inputs_not_provided(params, config, name)
                if missing:
                    detail = f"no route's inputs give {', '.join(missing)}: Dify will refuse"
                    rows.append(Row(subject, "required inputs", "warning", detail))
    finally:
        await http.aclose()
    return rows


async def probe(config: Config) -> list[Row]:
    mask = Masker(config_secrets(config))
    return [*await probe_bots(config, mask), *await probe_apps(config, mask)]


def table(rows: Sequence[Row]) -> list[str]:
    """The rows as aligned text columns."""
    head = Row("bot or app", "tried", "ok", "detail")
    width = [max(len(getattr(r, f)) for r in [head, *rows]) for f in ("subject", "tried")]
    lines = []
    for r in [head, *rows]:
        result = "result" if r is head else r.result
        line = f"{r.subject:<{width[0]}}  {r.tried:<{width[1]}}  {result:<8} {r.detail}"
        lines.append(line.rstrip())
    return lines


def failed(rows: Sequence[Row]) -> bool:
    return any(r.result == "FAILED" for r in rows)
