"""The status page (`GET /status`): who may see it, what it shows after real traffic (answered
messages, a Dify failure, a rate-limited question), in a real headless Chromium at a laptop's
and a phone's width. Screenshots go to the test's tmp dir and to $SCREENSHOT_DIR when set."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.emulator import DifyEmulator, ScriptedReply
from gateway.runtime import Gateway
from tests.conftest import GatewayFactory, make_config
from tests.fakes.slack import FakeSlack
from tests.helpers import wait_for
from tests.integration.browser import save_screenshot
from tests.integration.slack_helpers import body_of, direct, envelope, signed_headers, slack_bot

TOKEN = "status-token-0123456789abcdef"
Client = TestClient[Any, Any]


# The traffic's rate-limited question falls in the window of the five before it.
pytestmark = pytest.mark.usefixtures("one_rate_window")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def start(
    gateway_factory: GatewayFactory,
    dify: DifyEmulator,
    slack: FakeSlack,
    *,
    server: dict[str, Any] | None = None,
) -> tuple[Client, Gateway]:
    bots = {
        "slack-main": slack_bot(slack, rate_limit_per_minute=5),
        # Its platform is not there: it never comes up, and the page says so.
        "dingtalk-ops": {
            "platform": "dingtalk",
            "app": "main",
            "client_id": "ding-client",
            "client_secret": "ding-secret-value",
            "api_base": f"http://127.0.0.1:{_closed_port()}",
        },
    }
    routes = [
        {"match": {"bot": "slack-main", "chat_type": "direct"}, "allow_users": ["U222", "U333"]},
        {"match": {"bot": "slack-main"}, "scope": "chat", "user_rate_limit_per_minute": 3},
    ]
    server = {"status_token": TOKEN, **(server or {})}
    client, gateway = await gateway_factory(make_config(dify, bots, routes=routes, server=server))
    await wait_for(lambda: gateway.adapters["slack-main"].ready, what="slack bot ready")
    return client, gateway


async def traffic(client: Client, gateway: Gateway, dify: DifyEmulator) -> None:
    """Four answered questions, one Dify failure, one refused by the bot's rate limit."""
    dify.reply(
        ScriptedReply(chunks=["VPN: open ", "the portal."], delay=0.05),
        ScriptedReply(chunks=["Printers are ", "on floor 2."], delay=0.05),
        ScriptedReply(status=400, code="invalid_param", message="department is required"),
        ScriptedReply(chunks=["Lunch is at noon."]),
        ScriptedReply(chunks=["Yes."]),
    )
    questions = [
        "secret question about the VPN",
        "where are the printers",
        "this one fails",
        "when is lunch",
        "is it friday",
        "one too many",
    ]
    for i, text in enumerate(questions):
        body = body_of(envelope(direct(text, user="U333" if i % 2 else "U222")))
        response = await client.post(
            "/webhooks/slack-main", data=body, headers=signed_headers(body)
        )
        assert response.status == 200
        async with asyncio.timeout(10):
            await gateway.inbox.wait_idle()


async def test_the_page_is_off_without_a_token_and_needs_the_right_one(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    client, _ = await gateway_factory(make_config(dify, {"slack-main": slack_bot(slack)}))
    assert (await client.get("/status")).status == 404
    assert (await client.get("/status", params={"token": TOKEN})).status == 404

    client, _ = await start(gateway_factory, dify, slack)
    for headers, params in (
        ({}, {}),
        ({"Authorization": "Bearer wrong-token-0123456789abcdef"}, {}),
        ({"Authorization": f"Basic {TOKEN}"}, {}),
        ({}, {"token": TOKEN[:-1]}),
        ({}, {"token": ""}),
    ):
        response = await client.get("/status", headers=headers, params=params)
        assert response.status == 401, (headers, params)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert TOKEN not in await response.text()
    by_header = await client.get("/status", headers={"Authorization": f"Bearer {TOKEN}"})
    by_query = await client.get("/status", params={"token": TOKEN})
    for response in (by_header, by_query):
        assert response.status == 200
        assert response.content_type == "text/html"
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert "default-src 'none'" in response.headers["Content-Security-Policy"]
        page = await response.text()
        assert "dify-gateway status" in page and TOKEN not in page
        # Nothing from the network: no script, no external style or image.
        assert "<script" not in page and "http://" not in page and "https://" not in page
    assert (await client.post("/status", params={"token": TOKEN})).status == 405


async def test_message_text_shows_only_when_configured(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    for show, expected in ((False, False), (True, True)):
        client, gateway = await start(
            gateway_factory, dify, slack, server={"status_show_text": show}
        )
        dify.reply(ScriptedReply(chunks=["fine"]))
        body = body_of(envelope(direct("my salary > 100k & secret")))
        await client.post("/webhooks/slack-main", data=body, headers=signed_headers(body))
        async with asyncio.timeout(10):
            await gateway.inbox.wait_idle()
        page = await (await client.get("/status", params={"token": TOKEN})).text()
        assert ("my salary &gt; 100k &amp; secret" in page) is expected
        assert "salary > 100k" not in page  # escaped, when shown


READ_PAGE = """
const rows = id => [...document.querySelectorAll('#' + id + ' + .scroll tr')].slice(1)
    .map(tr => [...tr.children].map(td => td.innerText.trim()));
const bots = [...document.querySelectorAll('h2')].find(h => h.innerText === 'Bots')
    .nextElementSibling;
return {
  text: document.body.innerText,
  cards: [...document.querySelectorAll('.card')].map(c => c.innerText.replace('\\n', ': ')),
  bots: [...bots.querySelectorAll('tr')].slice(1)
      .map(tr => [...tr.children].map(td => td.innerText.trim())),
  recent: rows('bot-slack-main'),
  recentOther: document.querySelector('#bot-dingtalk-ops + p').innerText,
  bars: [...document.querySelectorAll('.chart')].map(c => c.querySelectorAll('rect').length),
  overflow: document.documentElement.scrollWidth - window.innerWidth,
};
"""


async def test_the_page_in_a_real_browser_after_real_traffic(
    gateway_factory: GatewayFactory,
    dify: DifyEmulator,
    slack: FakeSlack,
    browser: Any,
    tmp_path: Path,
) -> None:
    client, gateway = await start(gateway_factory, dify, slack)
    await traffic(client, gateway, dify)

    def retrying() -> bool:
        state = gateway.bot_states.get("dingtalk-ops")
        return state is not None and state.state == "retrying"

    await wait_for(retrying, what="the DingTalk bot retrying")
    url = str(client.make_url("/status").with_query(token=TOKEN))

    def look(width: int, height: int, name: str) -> dict[str, Any]:
        browser.set_window_size(width, height)
        browser.get(url)
        seen: dict[str, Any] = browser.execute_script(READ_PAGE)
        save_screenshot(browser, tmp_path, name)
        return seen

    laptop = await asyncio.to_thread(look, 1280, 1500, "status-page.png")
    text = laptop["text"]
    assert "this instance only" in text
    assert laptop["cards"][:2] == ["ANSWERS, LAST HOUR: 6", "ERRORS, LAST HOUR: 1"]
    assert laptop["cards"][3] == "BOTS UP: 1 / 2"
    assert laptop["bots"][0][:3] == ["slack-main", "up", "slack · events"]
    assert laptop["bots"][1][:3] == ["dingtalk-ops", "retrying", "dingtalk · stream"]
    assert "ConnectError" in laptop["bots"][1][4]
    assert "ding-secret-value" not in text
    # Newest first: the rate-limited question, then the answers and the failure.
    outcomes = [row[1] for row in laptop["recent"]]
    assert outcomes == ["rate limited", "ok", "ok", "dify error", "ok", "ok"]
    assert all(row[2] == "direct" for row in laptop["recent"])
    answered = [row for row in laptop["recent"] if row[1] == "ok"]
    assert all(row[2] != "-" and row[3] != "-" for row in answered)  # latencies shown
    assert laptop["recentOther"] == "No messages answered by this instance yet."
    assert laptop["bars"][0] >= 1 and laptop["bars"][1] == 1 and laptop["bars"][2] >= 1
    assert "allow users: 2" in text and "3/min per user" in text
    assert "secret question" not in text and "text hidden" in text  # no text by default
    assert laptop["overflow"] <= 0

    # A phone: the page itself never scrolls sideways (a wide table scrolls in its box),
    # once as the screen shows it and once whole.
    whole = await asyncio.to_thread(look, 390, 2200, "status-page-phone-whole.png")
    phone = await asyncio.to_thread(look, 390, 844, "status-page-phone.png")
    assert phone["overflow"] <= 0 and whole["overflow"] <= 0, "the page scrolls sideways"
    assert phone["cards"] == laptop["cards"]
    for name in ("status-page.png", "status-page-phone.png", "status-page-phone-whole.png"):
        png = (tmp_path / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    console = await asyncio.to_thread(browser.get_log, "browser")
    assert not [entry for entry in console if entry["level"] == "SEVERE"], console
