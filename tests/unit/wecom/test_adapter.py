"""The WeCom app adapter's `handle()`: URL verification, signed callbacks, and every way a
callback is refused (401 for signature/crypto, 400 for bodies that are not XML)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from pydantic import ValidationError

from adapters.wecom.adapter import WecomAppAdapter
from adapters.wecom.crypto import WecomCrypto
from gateway.config import WecomAIBot, WecomBot
from gateway.models import Answered, Ignored, InboundMessage, Messages, WebhookRequest
from gateway.pacing import BotBudget
from gateway.platform import AdapterContext, Delivery, MalformedRequest, Read, VerificationFailed
from gateway.store.memory import MemoryStore
from tests.fakes.wecom import (
    AES_KEY,
    AGENT_ID,
    CORP_ID,
    SECRET,
    TOKEN,
    FakeQyapi,
    crypto,
    envelope,
    message_xml,
    now,
    signed_get,
    signed_post,
)
from tests.unit.wecom.test_crypto import (
    GET_ECHOSTR,
    GET_NONCE,
    GET_SIGNATURE,
    GET_TIMESTAMP,
    OFFICIAL_AES_KEY,
    OFFICIAL_CORP_ID,
    OFFICIAL_TOKEN,
    POST_ENCRYPT,
    POST_NONCE,
    POST_SIGNATURE,
    POST_TIMESTAMP,
)

DATA = Path(__file__).parents[2] / "data" / "wecom"
# The official vectors were signed in 2014: they are checked as if received then.
GET_SENT, POST_SENT = float(GET_TIMESTAMP), float(POST_TIMESTAMP)


class NoHooks:
    async def opening_statement(self, message: InboundMessage) -> str | None:
        return None

    async def feedback(self, job_id: str, rating: Literal["like", "dislike"] | None) -> None:
        return None


async def _deliver(read: Read) -> Delivery:
    raise AssertionError("the WeCom app has no long connection")


@pytest.fixture
async def qyapi() -> AsyncIterator[FakeQyapi]:
    fake = FakeQyapi()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0) as client:
        yield client


def _adapter(http: httpx.AsyncClient, base: str = "http://127.0.0.1:9", **overrides: Any) -> Any:
    config = WecomBot.model_validate(
        {
            "platform": "wecom",
            "app": "main",
            "api_base": base,
            "corp_id": CORP_ID,
            "agent_id": AGENT_ID,
            "secret": SECRET,
            "token": TOKEN,
            "encoding_aes_key": AES_KEY,
            **overrides,
        }
    )
    context = AdapterContext(
        http=http, store=MemoryStore(), budget=BotBudget(), deliver=_deliver, assistant=NoHooks()
    )
    return WecomAppAdapter("wecom-it", config, context)


def _official(http: httpx.AsyncClient) -> Any:
    return _adapter(
        http,
        corp_id=OFFICIAL_CORP_ID,
        agent_id=218,
        token=OFFICIAL_TOKEN,
        encoding_aes_key=OFFICIAL_AES_KEY,
    )


def _request(
    method: str, query: dict[str, str], body: bytes = b"", received_at: float | None = None
) -> WebhookRequest:
    """The request as the edge passes it, received now (or when a known-answer vector's
    timestamp says, so that it is fresh)."""
    return WebhookRequest(
        method=method,
        path="/webhooks/wecom-it",
        query=query,
        headers={},
        body=body,
        received_at=time.time() if received_at is None else received_at,
    )


# --- URL verification ----------------------------------------------------------------------


async def test_get_answers_the_bare_echostr_plaintext(http: httpx.AsyncClient) -> None:
    query = {
        "msg_signature": GET_SIGNATURE,
        "timestamp": GET_TIMESTAMP,
        "nonce": GET_NONCE,
        "echostr": GET_ECHOSTR,
    }
    outcome = await _official(http).handle(_request("GET", query, received_at=GET_SENT))
    assert isinstance(outcome, Answered)
    assert outcome.response.status == 200
    assert outcome.response.body == b"1616140317555161061"


async def test_get_with_plus_decoded_as_space(http: httpx.AsyncClient) -> None:
    query = {
        "msg_signature": GET_SIGNATURE,
        "timestamp": GET_TIMESTAMP,
        "nonce": GET_NONCE,
        "echostr": GET_ECHOSTR.replace("+", " "),
    }
    assert "+" in GET_ECHOSTR
    outcome = await _official(http).handle(_request("GET", query, received_at=GET_SENT))
    assert isinstance(outcome, Answered) and outcome.response.body == b"1616140317555161061"


@pytest.mark.parametrize("missing", ["msg_signature", "timestamp", "nonce", "echostr"])
async def test_get_without_a_parameter_is_401(http: httpx.AsyncClient, missing: str) -> None:
    query = signed_get(b"12345")
    del query[missing]
    with pytest.raises(VerificationFailed):
        await _adapter(http).handle(_request("GET", query))


async def test_get_with_a_bad_signature_is_401(http: httpx.AsyncClient) -> None:
    query = signed_get(b"12345")
    query["nonce"] = "43"
    with pytest.raises(VerificationFailed):
        await _adapter(http).handle(_request("GET", query))


async def test_get_with_an_oversized_parameter_is_401(http: httpx.AsyncClient) -> None:
    query = signed_get(b"12345")
    query["echostr"] = "A" * 5000
    with pytest.raises(VerificationFailed):
        await _adapter(http).handle(_request("GET", query))


# --- callbacks -----------------------------------------------------------------------------


async def test_official_sample_callback(http: httpx.AsyncClient) -> None:
    query = {"msg_signature": POST_SIGNATURE, "timestamp": POST_TIMESTAMP, "nonce": POST_NONCE}
    body = (
        f"<xml><ToUserName><![CDATA[{OFFICIAL_CORP_ID}]]></ToUserName>"
        f"<Encrypt><![CDATA[{POST_ENCRYPT}]]></Encrypt>"
        "<AgentID><![CDATA[218]]></AgentID></xml>"
    ).encode()
    outcome = await _official(http).handle(_request("POST", query, body, received_at=POST_SENT))
    assert isinstance(outcome, Messages)
    assert outcome.ack.status == 200 and outcome.ack.body == b""
    (message,) = outcome.messages
    assert message.text == "hello" and message.user_id == "mycreate"
    assert message.dedupe_keys == ("msg:4561255354251345929",)


async def test_text_callback(http: httpx.AsyncClient) -> None:
    query, body = signed_post((DATA / "text.xml").read_bytes())
    outcome = await _adapter(http).handle(_request("POST", query, body))
    assert isinstance(outcome, Messages)
    assert outcome.messages[0].text == "你好, what can you do?"


@pytest.mark.parametrize("name", ["event_enter_agent.xml", "event_subscribe.xml"])
async def test_events_are_acked_and_ignored(http: httpx.AsyncClient, name: str) -> None:
    query, body = signed_post((DATA / name).read_bytes())
    outcome = await _adapter(http).handle(_request("POST", query, body))
    assert isinstance(outcome, Ignored)
    assert outcome.ack.status == 200 and outcome.ack.body == b""


async def test_bad_signature_is_401(http: httpx.AsyncClient) -> None:
    query, body = signed_post(message_xml(Content="hi"))
    query["msg_signature"] = "0" * 40
    with pytest.raises(VerificationFailed):
        await _adapter(http).handle(_request("POST", query, body))


async def test_wrong_token_is_401(http: httpx.AsyncClient) -> None:
    query, body = signed_post(message_xml(Content="hi"))
    with pytest.raises(VerificationFailed):
        await _adapter(http, token="another-token").handle(_request("POST", query, body))


async def test_wrong_receiveid_is_401(http: httpx.AsyncClient) -> None:
    # Properly signed with our token and key, but encrypted for another corp.
    other_corp = WecomCrypto(TOKEN, AES_KEY, "ww0000000000000000")
    query, body = signed_post(message_xml(Content="hi"), sender=other_corp)
    with pytest.raises(VerificationFailed, match="receiveid"):
        await _adapter(http).handle(_request("POST", query, body))


async def test_tampered_encrypt_is_401(http: httpx.AsyncClient) -> None:
    encrypt = crypto().encrypt(message_xml(Content="hi"))
    ts = now()
    query = {"msg_signature": crypto().signature(ts, "2", encrypt), "timestamp": ts, "nonce": "2"}
    tampered = ("B" if encrypt[0] == "A" else "A") + encrypt[1:]
    with pytest.raises(VerificationFailed):
        await _adapter(http).handle(_request("POST", query, envelope(tampered)))


@pytest.mark.parametrize("missing", ["msg_signature", "timestamp", "nonce"])
async def test_post_without_a_parameter_is_401(http: httpx.AsyncClient, missing: str) -> None:
    query, body = signed_post(message_xml(Content="hi"))
    del query[missing]
    with pytest.raises(VerificationFailed):
        await _adapter(http).handle(_request("POST", query, body))


# --- the timestamp window ----------------------------------------------------------------


@pytest.mark.parametrize("age", [3601, -3610, 86400 * 365 * 25])  # old, ahead, year 2001
async def test_a_callback_signed_outside_the_window_is_401(
    http: httpx.AsyncClient, age: int
) -> None:
    """msg_signature covers the timestamp, so a validly signed callback from 2001 (or one
    an hour ahead) is a replay or a broken clock, not a message: refused."""
    stamp = str(int(time.time()) - age)
    query, body = signed_post(message_xml(Content="hi"), timestamp=stamp)
    with pytest.raises(VerificationFailed, match="stale"):
        await _adapter(http).handle(_request("POST", query, body))
    with pytest.raises(VerificationFailed, match="stale"):
        await _adapter(http).handle(_request("GET", signed_get(b"123", timestamp=stamp)))


async def test_the_window_is_an_hour_by_default_and_configurable(
    http: httpx.AsyncClient,
) -> None:
    stamp = str(int(time.time()) - 3000)
    query, body = signed_post(message_xml(Content="hi"), timestamp=stamp)
    assert isinstance(await _adapter(http).handle(_request("POST", query, body)), Messages)
    tight = _adapter(http, max_timestamp_age_s=600)
    with pytest.raises(VerificationFailed, match="stale"):
        await tight.handle(_request("POST", query, body))


def test_the_window_stays_well_inside_the_dedupe_window() -> None:
    """Past 8 h a replay would no longer be a duplicate: the setting cannot go there."""
    bot = {
        "platform": "wecom",
        "app": "main",
        "corp_id": CORP_ID,
        "agent_id": AGENT_ID,
        "secret": SECRET,
        "token": TOKEN,
        "encoding_aes_key": AES_KEY,
    }
    assert WecomBot.model_validate(bot).max_timestamp_age_s == 3600
    ai_bot = {"platform": "wecom_bot", "app": "main", "token": TOKEN, "encoding_aes_key": AES_KEY}
    assert WecomAIBot.model_validate(ai_bot).max_timestamp_age_s == 3600
    for model, base in ((WecomBot, bot), (WecomAIBot, ai_bot)):
        for wrong in (8 * 3600, 10, 0):
            with pytest.raises(ValidationError, match="max_timestamp_age_s"):
                model.model_validate({**base, "max_timestamp_age_s": wrong})


@pytest.mark.parametrize("stamp", ["", "17e8", "+1700000000", "\uff11\uff17\uff10\uff10", "9" * 13])
async def test_a_malformed_timestamp_is_401(http: httpx.AsyncClient, stamp: str) -> None:
    encrypt = crypto().encrypt(message_xml(Content="hi"))
    query = {"msg_signature": crypto().signature(stamp, "2", encrypt), "timestamp": stamp}
    with pytest.raises(VerificationFailed):
        await _adapter(http).handle(_request("POST", {**query, "nonce": "2"}, envelope(encrypt)))


@pytest.mark.parametrize("name", ["billion_laughs.xml", "xxe.xml"])
async def test_xml_bombs_are_400_whatever_the_query(http: httpx.AsyncClient, name: str) -> None:
    started = time.perf_counter()
    for query in ({}, {"msg_signature": "x", "timestamp": "1", "nonce": "2"}):
        with pytest.raises(MalformedRequest):
            await _adapter(http).handle(_request("POST", query, (DATA / name).read_bytes()))
    assert time.perf_counter() - started < 0.1


async def test_json_body_is_400(http: httpx.AsyncClient) -> None:
    query, _ = signed_post(message_xml(Content="hi"))
    with pytest.raises(MalformedRequest):
        await _adapter(http).handle(_request("POST", query, b'{"encrypt": "abc"}'))


async def test_signed_payload_that_is_not_xml_is_400(http: httpx.AsyncClient) -> None:
    query, body = signed_post(b"this decrypts fine but is not XML")
    with pytest.raises(MalformedRequest):
        await _adapter(http).handle(_request("POST", query, body))


async def test_signed_payload_with_a_dtd_is_400(http: httpx.AsyncClient) -> None:
    query, body = signed_post((DATA / "billion_laughs.xml").read_bytes())
    with pytest.raises(MalformedRequest):
        await _adapter(http).handle(_request("POST", query, body))


async def test_other_methods_are_400(http: httpx.AsyncClient) -> None:
    with pytest.raises(MalformedRequest):
        await _adapter(http).handle(_request("PUT", {}, b""))


async def test_envelope_agent_is_not_trusted(http: httpx.AsyncClient) -> None:
    """The outer AgentID is unsigned; only the decrypted one counts."""
    encrypt = crypto().encrypt(message_xml(Content="hi", agent_id=1000099))
    ts = now()
    query = {"msg_signature": crypto().signature(ts, "2", encrypt), "timestamp": ts, "nonce": "2"}
    outcome = await _adapter(http).handle(_request("POST", query, envelope(encrypt, AGENT_ID)))
    assert isinstance(outcome, Ignored) and "1000099" in outcome.reason


# --- lifetime, downloads, names --------------------------------------------------------------


async def test_ready_after_the_token_is_fetched(qyapi: FakeQyapi, http: httpx.AsyncClient) -> None:
    adapter = _adapter(http, qyapi.base_url)
    assert adapter.serves_webhook and not adapter.ready
    await adapter.start()
    assert adapter.ready and len(qyapi.of("gettoken")) == 1
    await adapter.aclose()


async def test_start_fails_with_a_wrong_secret(qyapi: FakeQyapi, http: httpx.AsyncClient) -> None:
    adapter = _adapter(http, qyapi.base_url, secret="not-the-secret")
    with pytest.raises(Exception, match="40001"):
        await adapter.start()
    assert not adapter.ready


async def test_download_image_and_voice(qyapi: FakeQyapi, http: httpx.AsyncClient) -> None:
    qyapi.media["media-image-1"] = (b"\x89PNG", "image/png", "x.png")
    qyapi.media["media-voice-1"] = (b"#!AMR\n", "application/octet-stream", "x.amr")
    adapter = _adapter(http, qyapi.base_url)
    for name in ("image.xml", "voice.xml"):
        query, body = signed_post((DATA / name).read_bytes())
        outcome = await adapter.handle(_request("POST", query, body))
        assert isinstance(outcome, Messages)
        (attachment,) = outcome.messages[0].attachments
        download = await adapter.download(attachment)
        if attachment.kind == "image":
            assert download.data == b"\x89PNG" and download.mime_type == "image/png"
            assert download.name == "image-4561255354251345930.png"
        else:
            assert download.data == b"#!AMR\n" and download.mime_type == "audio/amr"
            assert download.name == "voice-4561255354251345931.amr"


async def test_display_name(qyapi: FakeQyapi, http: httpx.AsyncClient) -> None:
    qyapi.names["zhangsan"] = "张三"
    adapter = _adapter(http, qyapi.base_url)
    query, body = signed_post((DATA / "text.xml").read_bytes())
    outcome = await adapter.handle(_request("POST", query, body))
    assert isinstance(outcome, Messages)
    message = outcome.messages[0]
    assert await adapter.display_name(message) == "张三"
    assert await adapter.display_name(message) == "张三"
    assert len(qyapi.of("user/get")) == 1  # cached
    stranger = replace(message, user_id="lisi")
    assert await adapter.display_name(stranger) == "lisi"
