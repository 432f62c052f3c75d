"""The web chat in a real browser: headless Chromium (Debian's `chromium` and
`chromium-driver`, driven by selenium) opens the demo's chat page on a test gateway, asks a
question, and watches the answer grow on screen until it is final. A screenshot goes to the
test's tmp dir, and to $SCREENSHOT_DIR when set (tests/integration/browser.py)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from gateway.emulator import DifyEmulator
from tests.conftest import GatewayFactory, make_config
from tests.integration.browser import save_screenshot

# What the page shows for the bot's answer: its text, and its state (thinking: the dots;
# writing: text with the cursor after it; done).
READ_ANSWER = """
const bubble = document.querySelector('.msg.bot .bubble');
if (!bubble) return null;
const state = bubble.querySelector('.typing') ? 'thinking'
    : bubble.querySelector('.cursor') ? 'writing' : 'done';
return [bubble.innerText, state];
"""


def _watch_the_answer(driver: Any, within: float) -> tuple[list[str], str]:
    """(the partial texts seen, in order, without repeats; the final text)."""
    partial: list[str] = []
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        seen = driver.execute_script(READ_ANSWER)
        if seen is not None:
            text, state = seen
            if state == "done":
                return partial, text
            if state == "writing" and text.strip() and (not partial or partial[-1] != text):
                partial.append(text)
        time.sleep(0.03)
    raise AssertionError(f"no final answer on the page within {within}s; saw {partial[-1:]}")


async def test_a_person_chats_with_the_demo_in_a_real_browser(
    gateway_factory: GatewayFactory, dify: DifyEmulator, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    bot = {"platform": "web", "app": "main", "auth": "none"}
    client, gateway = await gateway_factory(make_config(dify, {"demo-web": bot}))
    url = str(client.make_url("/chat/demo-web"))

    def ask() -> tuple[list[str], str, str]:
        browser.get(url)
        box = browser.find_element(By.ID, "input")
        # Wait for the socket: the header says so once it is open.
        deadline = time.monotonic() + 30
        while "online" not in (browser.find_element(By.ID, "state").get_attribute("class") or ""):
            assert time.monotonic() < deadline, "the page never connected"
            time.sleep(0.05)
        box.send_keys("How do I reset my VPN password?")
        box.send_keys(Keys.ENTER)
        partial, final = _watch_the_answer(browser, within=60)
        question = browser.find_element(By.CSS_SELECTOR, ".msg.user .bubble").text
        return partial, final, question

    partial, final, question = await asyncio.to_thread(ask)
    assert question == "How do I reset my VPN password?"
    assert len(set(partial)) >= 2, f"the answer did not grow on screen: {partial}"
    words = final.split()
    for text in partial:  # each a beginning of the final text (its last word maybe cut)
        shown = text.split()[:-1]
        assert shown == words[: len(shown)], text
    assert "How do I reset my VPN password?" in final and "built-in Dify emulator" in final
    assert dify.requests[0]["user"].startswith("demo-web:u")  # the page's own random id
    laptop = await asyncio.to_thread(save_screenshot, browser, tmp_path, "web-chat.png")
    await asyncio.to_thread(browser.set_window_size, 390, 844)
    phone = await asyncio.to_thread(save_screenshot, browser, tmp_path, "web-chat-phone.png")
    for path in (laptop, phone):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    console = await asyncio.to_thread(browser.get_log, "browser")
    assert not [entry for entry in console if entry["level"] == "SEVERE"], console
    await gateway.inbox.wait_idle()


async def test_the_page_rates_an_answer_and_asks_a_suggested_question(
    gateway_factory: GatewayFactory, dify: DifyEmulator, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    dify.parameters["suggested_questions_after_answer"] = {"enabled": True}
    dify.suggested = ["Who approves it?"]
    bot = {"platform": "web", "app": "main", "auth": "none"}
    client, gateway = await gateway_factory(make_config(dify, {"demo-web": bot}))
    url = str(client.make_url("/chat/demo-web"))

    def rate_and_follow_up() -> list[str]:
        browser.get(url)
        deadline = time.monotonic() + 30
        while "online" not in (browser.find_element(By.ID, "state").get_attribute("class") or ""):
            assert time.monotonic() < deadline, "the page never connected"
            time.sleep(0.05)
        box = browser.find_element(By.ID, "input")
        box.send_keys("How many days of leave?")
        box.send_keys(Keys.ENTER)
        _watch_the_answer(browser, within=60)
        like, _dislike = browser.find_elements(By.CSS_SELECTOR, ".msg.bot .controls .rate")
        like.click()
        deadline = time.monotonic() + 10
        while not dify.feedbacks:
            assert time.monotonic() < deadline, "the rating never reached Dify"
            time.sleep(0.05)
        # The buttons are drawn again, the choice marked.
        (chosen,) = browser.find_elements(By.CSS_SELECTOR, ".msg.bot .controls .rate.chosen")
        assert chosen.get_attribute("aria-pressed") == "true"
        browser.find_element(By.CSS_SELECTOR, ".msg.bot .controls .suggestion").click()
        while len(browser.find_elements(By.CSS_SELECTOR, ".msg.bot")) < 2 or any(
            b.find_elements(By.CSS_SELECTOR, ".cursor, .typing")
            for b in browser.find_elements(By.CSS_SELECTOR, ".msg.bot")
        ):
            assert time.monotonic() < deadline + 30, "the suggested question got no answer"
            time.sleep(0.05)
        return [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".msg.user .bubble")]

    questions = await asyncio.to_thread(rate_and_follow_up)
    assert questions == ["How many days of leave?", "Who approves it?"]
    assert dify.feedbacks[0]["rating"] == "like"
    assert dify.requests[-1]["query"] == "Who approves it?"
    console = await asyncio.to_thread(browser.get_log, "browser")
    assert not [entry for entry in console if entry["level"] == "SEVERE"], console
    await gateway.inbox.wait_idle()
