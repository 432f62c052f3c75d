"""Verification and sealing of WeCom AI-bot callbacks, through the adapter's `handle()`.

Known answers: vector C, self-generated (the official sample's token and EncodingAESKey,
receiveid "", random prefix `1234567890123456`; plaintext tests/data/wecom_bot/text_single.json).
Negative cases: every check fails closed with 401, and only an unparseable body is a 400.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.wecom.crypto import WecomCrypto
from adapters.wecom_bot.protocol import stream_id
from gateway.models import Answered, Messages, WebhookRequest
from gateway.platform import MalformedRequest, VerificationFailed
from tests.fakes.wecom_bot import (
    VECTOR_AES_KEY,
    VECTOR_TOKEN,
    AdapterKit,
    WecomSide,
    make_adapter,
    webhook_request,
)

DATA = Path(__file__).parents[2] / "data" / "wecom_bot"
VECTOR_PLAINTEXT = (DATA / "text_single.json").read_bytes().strip()
VECTOR_ENCRYPT = (
    "y514aRT8yYkYNee3kPvkrCSi5felcUYDNHEcUVaUSFdsvW3KT5rgLXDDgP8Br2hMdsxfGTcg6pzfEDy6x4yI4HK+"
    "AaDCrbeZdnMs1+Q76/tO61deRABSD/7Bm0QwtF0kasdpZMq8IMfEQj9pcCo1PjT1G0ACLJcVeEd3akBP1koGvE3M"
    "UVRqi1rktHN81gm8GQVLlpkBW0KekVi/KwU3cAXy+NrQctfHuF+ib6IPOe/N94aZh2C6eQ/xLiSccbYl"
)
VECTOR_SIGNATURE = "ae0c82895de8d90ffb0ab14e00cb501a874d625b"
VECTOR_QUERY = {"msg_signature": VECTOR_SIGNATURE, "timestamp": "1700000000", "nonce": "nonce1"}
VECTOR_BODY = json.dumps({"encrypt": VECTOR_ENCRYPT}).encode()
VECTOR_SENT = 1700000000.0  # the vector is checked as if received when it was signed
OTHER_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"


@pytest.fixture
async def kit() -> AsyncIterator[AdapterKit]:
    kit = make_adapter(locale="en")
    yield kit
    await kit.adapter.aclose()
    await kit.http.aclose()


def test_vector_c_known_answer() -> None:
    crypto = WecomCrypto(VECTOR_TOKEN, VECTOR_AES_KEY, "")
    assert crypto.encrypt(VECTOR_PLAINTEXT, b"1234567890123456") == VECTOR_ENCRYPT
    assert crypto.signature("1700000000", "nonce1", VECTOR_ENCRYPT) == VECTOR_SIGNATURE


def vector_request(query: dict[str, str], body: bytes = VECTOR_BODY) -> WebhookRequest:
    return webhook_request(query, body, received_at=VECTOR_SENT)


async def test_vector_c_through_the_adapter(kit: AdapterKit) -> None:
    outcome = await kit.adapter.handle(vector_request(VECTOR_QUERY))
    assert isinstance(outcome, Messages)
    (message,) = outcome.messages
    assert (message.user_id, message.text, message.message_id) == ("zhangsan", "hello", "MSGID1")
    assert message.chat_type == "direct" and message.dedupe_keys == ("msg:MSGID1",)
    reply = WecomSide(VECTOR_TOKEN, VECTOR_AES_KEY).open(outcome.ack.body)
    assert reply == {
        "msgtype": "stream",
        "stream": {
            "id": stream_id("wecom-ai", "MSGID1"),
            "finish": False,
            "content": "Thinking…",
            "feedback": {"id": "MSGID1"},
        },
    }


async def test_sealed_reply_is_signed_over_its_own_timestamp(kit: AdapterKit) -> None:
    outcome = await kit.adapter.handle(vector_request(VECTOR_QUERY))
    envelope = json.loads(outcome.ack.body)  # type: ignore[union-attr]
    assert isinstance(envelope["timestamp"], str) and envelope["timestamp"].isdigit()
    crypto = WecomCrypto(VECTOR_TOKEN, VECTOR_AES_KEY, "")
    assert envelope["msgsignature"] == crypto.signature(
        envelope["timestamp"], envelope["nonce"], envelope["encrypt"]
    )


@pytest.mark.parametrize(
    "query",
    [
        {**VECTOR_QUERY, "msg_signature": "0" * 40},
        {**VECTOR_QUERY, "nonce": "nonce2"},
        {**VECTOR_QUERY, "timestamp": "1700000001"},
        {**VECTOR_QUERY, "msg_signature": VECTOR_SIGNATURE.upper()},
        {k: v for k, v in VECTOR_QUERY.items() if k != "msg_signature"},
        {k: v for k, v in VECTOR_QUERY.items() if k != "nonce"},
        {},
    ],
    ids=["zeros", "nonce", "timestamp", "uppercase", "no-signature", "no-nonce", "no-query"],
)
async def test_bad_signature_is_rejected(kit: AdapterKit, query: dict[str, str]) -> None:
    with pytest.raises(VerificationFailed):
        await kit.adapter.handle(vector_request(query))


async def test_tampered_ciphertext_is_rejected(kit: AdapterKit) -> None:
    tampered = (
        VECTOR_ENCRYPT[:10] + ("A" if VECTOR_ENCRYPT[10] != "A" else "B") + VECTOR_ENCRYPT[11:]
    )
    body = json.dumps({"encrypt": tampered}).encode()
    with pytest.raises(VerificationFailed):
        await kit.adapter.handle(vector_request(VECTOR_QUERY, body))


async def test_wrong_key_is_rejected() -> None:
    kit = make_adapter(encoding_aes_key=OTHER_KEY)
    try:
        side = WecomSide(VECTOR_TOKEN, VECTOR_AES_KEY)
        query, body = side.seal(json.loads(VECTOR_PLAINTEXT))
        with pytest.raises(VerificationFailed):  # signature fine (same token), AES key wrong
            await kit.adapter.handle(webhook_request(query, body))
    finally:
        await kit.http.aclose()


async def test_wrong_receiveid_is_rejected(kit: AdapterKit) -> None:
    """A message sealed for a self-built app (receiveid = corp id) is not ours."""
    app_crypto = WecomCrypto(VECTOR_TOKEN, VECTOR_AES_KEY, "wx5823bf96d3bd56c7")
    encrypt = app_crypto.encrypt(VECTOR_PLAINTEXT)
    query = {
        "msg_signature": app_crypto.signature("1700000000", "n", encrypt),
        "timestamp": "1700000000",
        "nonce": "n",
    }
    with pytest.raises(VerificationFailed, match="receiveid"):
        await kit.adapter.handle(vector_request(query, json.dumps({"encrypt": encrypt}).encode()))


async def test_message_padded_to_a_full_32_byte_block(kit: AdapterKit) -> None:
    side = WecomSide(VECTOR_TOKEN, VECTOR_AES_KEY)
    payload = json.loads(VECTOR_PLAINTEXT)
    # random16 + len4 + msg (+ receiveid "") is a multiple of 32 → the pad is a whole block.
    while (20 + len(json.dumps(payload).encode())) % 32:
        payload["text"]["content"] += "!"
    query, body = side.seal(payload)
    ciphertext = base64.b64decode(json.loads(body)["encrypt"])
    assert len(ciphertext) == 20 + len(json.dumps(payload).encode()) + 32
    outcome = await kit.adapter.handle(webhook_request(query, body))
    assert isinstance(outcome, Messages)
    assert outcome.messages[0].text == payload["text"]["content"]


@pytest.mark.parametrize(
    "body",
    [b"not json", b"\xff\xfe", b"[1,2]", b'{"encrypt": 5}', b"{}", b'{"encrypt": ""}'],
)
async def test_unparseable_body_is_400(kit: AdapterKit, body: bytes) -> None:
    with pytest.raises(MalformedRequest):
        await kit.adapter.handle(vector_request(VECTOR_QUERY, body))


async def test_authentic_but_non_json_plaintext_is_400(kit: AdapterKit) -> None:
    query, body = WecomSide(VECTOR_TOKEN, VECTOR_AES_KEY).seal(b"<xml>not json</xml>")
    with pytest.raises(MalformedRequest):
        await kit.adapter.handle(webhook_request(query, body))


async def test_url_verification_answers_the_bare_plaintext(kit: AdapterKit) -> None:
    crypto = WecomCrypto(VECTOR_TOKEN, VECTOR_AES_KEY, "")
    echostr = crypto.encrypt(b"1616140317555161061")
    while "+" not in echostr:  # make sure the "+"-as-space repair is exercised
        echostr = crypto.encrypt(b"1616140317555161061")
    query = {
        "msg_signature": crypto.signature("1409659589", "263014780", echostr),
        "timestamp": "1409659589",
        "nonce": "263014780",
        "echostr": echostr.replace("+", " "),  # how a decoded query delivers an unencoded +
    }
    sent = 1409659589.0
    outcome = await kit.adapter.handle(webhook_request(query, b"", "GET", received_at=sent))
    assert isinstance(outcome, Answered)
    assert outcome.response.status == 200 and outcome.response.body == b"1616140317555161061"

    with pytest.raises(VerificationFailed):
        bad = {**query, "nonce": "263014781"}
        await kit.adapter.handle(webhook_request(bad, b"", "GET", received_at=sent))
    with pytest.raises(VerificationFailed):
        missing = {k: v for k, v in query.items() if k != "echostr"}
        await kit.adapter.handle(webhook_request(missing, b"", "GET", received_at=sent))
    with pytest.raises(VerificationFailed, match="stale"):  # the same check, a day later
        await kit.adapter.handle(webhook_request(query, b"", "GET", received_at=sent + 86400))


def test_stream_id_is_stable_and_bot_specific() -> None:
    assert stream_id("a", "m1") == stream_id("a", "m1")
    assert stream_id("a", "m1") != stream_id("b", "m1") != stream_id("a", "m2")
