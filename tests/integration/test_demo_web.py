"""`dify-gateway demo --web`: after the scripted run, the demo keeps serving its web chat
(`auth: none`) until it is stopped, and a browser's socket gets answers from the emulator
through the whole gateway path."""

from __future__ import annotations

import asyncio
import io
import re

import aiohttp
import pytest

from gateway.cli import main
from gateway.demo import run_demo
from tests.fakes.web import message, until_final


async def test_the_demo_then_serves_its_web_chat_until_stopped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DIFY_API_KEY", raising=False)
    out, stop = io.StringIO(), asyncio.Event()
    demo = asyncio.create_task(run_demo(out=out, web=True, stop=stop))
    async with asyncio.timeout(60):
        while not (
            found := re.search(r"open (http://127\.0\.0\.1:\d+/chat/demo-web) ", out.getvalue())
        ):
            assert not demo.done(), out.getvalue()
            await asyncio.sleep(0.05)
    url = found.group(1)
    assert "Started a new conversation" in out.getvalue()  # the scripted run came first
    async with aiohttp.ClientSession() as http:
        page = await http.get(url)
        assert page.status == 200 and "text/html" in page.headers["Content-Type"]
        async with http.ws_connect(f"{url}/ws?user=demo-test-browser") as ws:
            await ws.send_str(message("m1", "Hello from a browser"))
            frames = await until_final(ws, "m1", within=30)
    assert "Hello from a browser" in frames[-1]["text"]
    assert "built-in Dify emulator" in frames[-1]["text"]
    stop.set()
    assert await asyncio.wait_for(demo, 30) == 0
    assert not demo.cancelled()


def test_demo_web_is_on_in_a_terminal_and_a_flag_away_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[bool] = []

    async def fake_demo(question: str | None = None, **kwargs: object) -> int:
        seen.append(bool(kwargs["web"]))
        return 0

    monkeypatch.setattr("gateway.demo.run_demo", fake_demo)
    assert main(["demo"]) == 0  # pytest's stdin is not a terminal
    assert main(["demo", "--web"]) == 0
    assert main(["demo", "--no-web"]) == 0
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    assert main(["demo"]) == 0
    assert seen == [False, True, False, True]
