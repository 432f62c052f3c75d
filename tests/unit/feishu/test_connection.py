"""The long-connection session against the fake frame server, with a stub event handler."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest

from adapters.feishu import connection as ws_module
from adapters.feishu import crypto
from adapters.feishu.adapter import FeishuAdapter
from adapters.feishu.api import FeishuAPI
from adapters.feishu.connection import FeishuSocket
from adapters.feishu.frames import DATA, Frame, encode
from gateway.pacing import BotBudget
from gateway.platform import AdapterContext, Delivery
from gateway.store.memory import MemoryStore
from tests.fakes.feishu import ENCRYPT_KEY, FakeFeishu, message_event
from tests.fakes.intake import RecordingIntake
from tests.helpers import wait_for
from tests.unit.feishu.conftest import bot_config


class Session:
    """A FeishuSocket running one session against the fake, with a scripted handler."""

    def __init__(self, api: FeishuAPI, verdict: Delivery | None = Delivery.ACK) -> None:
        self.verdict = verdict  # None: the handler raises
        self.payloads: list[bytes] = []
        self.states: list[bool] = []
        self.connection = FeishuSocket("test", api, self._handle, self.states.append)
        self.task: asyncio.Task[None] | None = None

    async def _handle(self, payload: bytes) -> Delivery:
        self.payloads.append(payload)
        if self.verdict is None:
            raise RuntimeError("handler bug")
        return self.verdict

    async def __aenter__(self) -> Session:
        self.task = asyncio.create_task(self.connection.run())
        await wait_for(lambda: self.states == [True], what="connected")
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


@pytest.fixture
async def api(fake: FakeFeishu) -> AsyncIterator[FeishuAPI]:
    async with httpx.AsyncClient() as http:
        yield FeishuAPI(http, MemoryStore(), bot_config(fake, mode="websocket"))


async def _ack(fake: FakeFeishu, frame_id: str) -> dict[str, object]:
    await wait_for(lambda: frame_id in fake.acks, what="ack")
    payload: dict[str, object] = json.loads(fake.acks[frame_id].payload)
    return payload


async def test_redeliver_is_answered_500(api: FeishuAPI, fake: FakeFeishu) -> None:
    async with Session(api, verdict=Delivery.REDELIVER):
        assert await _ack(fake, await fake.push_event(message_event("x"))) == {"code": 500}


async def test_a_handler_exception_is_a_500_ack(api: FeishuAPI, fake: FakeFeishu) -> None:
    async with Session(api, verdict=None):
        assert await _ack(fake, await fake.push_event(message_event("x"))) == {"code": 500}


async def test_card_frames_are_handled_like_events(api: FeishuAPI, fake: FakeFeishu) -> None:
    """A card callback (a click on a button of ours) comes as `type=card`."""
    async with Session(api) as session:
        frame = Frame(service=77, method=DATA, payload=b"{}",
                      headers=[("type", "card"), ("message_id", "c1"), ("sum", "1"),
                               ("seq", "0")])  # fmt: skip
        await fake.ws_connections[-1].send_bytes(encode(frame))
        assert await _ack(fake, "c1") == {"code": 200}
        assert session.payloads == [b"{}"]


async def test_malformed_and_bad_frames_are_dropped_and_the_session_lives_on(
    api: FeishuAPI, fake: FakeFeishu
) -> None:
    async with Session(api) as session:
        server = fake.ws_connections[-1]
        await server.send_bytes(b"\x0b garbage")
        await server.send_str("text frames are not used")
        for sum_, seq in (("x", "0"), ("3", "5"), ("999", "0")):
            bad = Frame(method=DATA, payload=b"{}",
                        headers=[("type", "event"), ("message_id", f"bad-{seq}"), ("sum", sum_),
                                 ("seq", seq)])  # fmt: skip
            await server.send_bytes(encode(bad))
        assert await _ack(fake, await fake.push_event(message_event("ok"))) == {"code": 200}
        assert len(session.payloads) == 1
        assert not any(k.startswith("bad-") for k in fake.acks)


async def test_parts_of_an_event_that_never_completes_expire(
    api: FeishuAPI, fake: FakeFeishu, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ws_module, "PARTS_TTL_S", 0.05)
    async with Session(api) as session:
        part = Frame(method=DATA, payload=b'{"a":',
                     headers=[("type", "event"), ("message_id", "m"), ("sum", "2"),
                              ("seq", "0")])  # fmt: skip
        await fake.ws_connections[-1].send_bytes(encode(part))
        await asyncio.sleep(0.1)
        last = Frame(method=DATA, payload=b"1}",
                     headers=[("type", "event"), ("message_id", "m"), ("sum", "2"),
                              ("seq", "1")])  # fmt: skip
        await fake.ws_connections[-1].send_bytes(encode(last))
        assert await _ack(fake, await fake.push_event(message_event("next"))) == {"code": 200}
        assert "m" not in fake.acks and len(session.payloads) == 1


def test_client_config_is_applied_and_bad_values_ignored(api: FeishuAPI) -> None:
    connection = FeishuSocket("t", api, Session(api)._handle, lambda up: None)
    connection.configure({"PingInterval": 30, "ReconnectInterval": 5, "ReconnectNonce": 2})
    connection.configure({"PingInterval": -1, "ReconnectInterval": "soon", "ReconnectNonce": True})
    connection.configure("not a dict")
    assert (connection.ping_interval, connection.reconnect_interval,
            connection.reconnect_nonce) == (30.0, 5.0, 2.0)  # fmt: skip


def test_reconnect_delays_follow_the_server(api: FeishuAPI) -> None:
    connection = FeishuSocket("t", api, Session(api)._handle, lambda up: None)
    connection.configure({"ReconnectInterval": 10, "ReconnectNonce": 3})
    assert connection.next_delay(30.0) == 10.0  # backoff capped by the server's interval
    assert connection.next_delay(2.0) == 2.0
    connection._dropped = True  # a connection that was up ended: a jittered quick return
    assert 0.0 <= connection.next_delay(30.0) <= 3.0
    assert connection.next_delay(30.0) == 10.0


async def test_endpoint_errors_fail_the_session(api: FeishuAPI, fake: FakeFeishu) -> None:
    fake.inject("POST", "ws/endpoint", code=1)  # "system busy"
    with pytest.raises(Exception, match="feishu API error 1"):
        await FeishuSocket("t", api, Session(api)._handle, lambda up: None).run()


# --- the adapter's side: when to answer 500 ------------------------------------------------


def _adapter(fake: FakeFeishu, http: httpx.AsyncClient, intake: RecordingIntake) -> FeishuAdapter:
    context = AdapterContext(
        http=http, store=MemoryStore(), budget=BotBudget(), deliver=intake.deliver, assistant=None
    )  # type: ignore[arg-type]
    return FeishuAdapter("fs", bot_config(fake, mode="websocket"), context)


@pytest.mark.parametrize(
    ("store_down", "chat_type", "verdict"),
    [
        (False, "p2p", Delivery.ACK),
        (True, "p2p", Delivery.REDELIVER),  # the store could not take it
        # A group message before the bot knows its own open_id (not started): NotReady.
        (False, "group", Delivery.REDELIVER),
    ],
)
async def test_events_are_acked_only_once_the_core_took_them(
    fake: FakeFeishu, store_down: bool, chat_type: str, verdict: Delivery
) -> None:
    intake = RecordingIntake()
    intake.fail = store_down
    async with httpx.AsyncClient() as http:
        adapter = _adapter(fake, http, intake)
        payload = json.dumps(message_event("hi", chat_type=chat_type)).encode()
        assert await adapter._on_event(payload) is verdict
    assert len(intake.accepted) == (verdict is Delivery.ACK)


async def test_events_are_not_acked_while_the_gateway_shuts_down(fake: FakeFeishu) -> None:
    intake = RecordingIntake()
    intake.draining = True
    async with httpx.AsyncClient() as http:
        adapter = _adapter(fake, http, intake)
        assert await adapter._on_event(json.dumps(message_event("hi")).encode()) is (
            Delivery.REDELIVER
        )
        assert await adapter._on_event(b"not json") is Delivery.REDELIVER  # not even read
    assert intake.accepted == []


async def test_events_that_are_not_json_are_acked_and_dropped(fake: FakeFeishu) -> None:
    intake = RecordingIntake()
    intake.fail = True  # never reached
    async with httpx.AsyncClient() as http:
        adapter = _adapter(fake, http, intake)
        assert await adapter._on_event(b"not json") is Delivery.ACK
        assert await adapter._on_event(b"[1]") is Delivery.ACK


async def test_an_encrypted_event_on_the_long_connection_is_decrypted(fake: FakeFeishu) -> None:
    intake = RecordingIntake()
    async with httpx.AsyncClient() as http:
        context = AdapterContext(
            http=http,
            store=MemoryStore(),
            budget=BotBudget(),
            deliver=intake.deliver,
            assistant=None,  # type: ignore[arg-type]
        )
        config = bot_config(fake, mode="websocket", encrypt_key=ENCRYPT_KEY)
        adapter = FeishuAdapter("fs", config, context)
        plain = json.dumps(message_event("secret hello")).encode()
        body = json.dumps({"encrypt": crypto.encrypt(ENCRYPT_KEY, plain)}).encode()
        assert await adapter._on_event(body) is Delivery.ACK
        wrong = json.dumps({"encrypt": crypto.encrypt("other key", plain)}).encode()
        # unreadable: dropped, not re-pushed
        assert await adapter._on_event(wrong) is Delivery.ACK
    (message,) = intake.accepted
    assert message.text == "secret hello"
