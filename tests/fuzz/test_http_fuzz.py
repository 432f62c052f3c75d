"""HTTP-level fuzz: random requests and raw malformed HTTP against a running gateway with
one webhook bot of every platform, and the web chat's page and WebSocket.

The property, for every input: never a 500 (nor the edge's catch-all 503, "temporarily
unavailable"), never a traceback or an unexpected error in the gateway's log, and the
gateway keeps serving (`/healthz` after every batch). The gateway is a real `dify-gateway
serve` process; its bots point at an unreachable API, since nothing gets answered.

Budget per target: a few hundred inputs in a plain `pytest` run; `pytest -m fuzz` runs
100,000; `FUZZ_EXAMPLES=<n>` sets it either way.
"""

from __future__ import annotations

import gzip
import json
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.dingtalk.verify import compute_sign
from adapters.slack.verify import sign as slack_sign
from adapters.wecom.crypto import WecomCrypto
from tests.integration.processes import ROOT, free_port

pytestmark = pytest.mark.fuzz

SMALL = 200
BIG = 100_000
BATCH = 200  # inputs between two /healthz checks
UNREACHABLE = "http://127.0.0.1:9"
SLACK_SECRET = "fuzz-slack-signing-secret"
FEISHU_TOKEN = "fuzz-feishu-token"
WECOM_TOKEN = "fuzztoken"
WECOM_AES = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
WECOM_CORP = "wwfuzz"
DINGTALK_SECRET = "fuzz-dingtalk-secret"
BOTS: dict[str, dict[str, Any]] = {
    "slack": {"platform": "slack", "bot_token": "xoxb-f", "signing_secret": SLACK_SECRET},
    "feishu": {
        "platform": "feishu",
        "app_id": "cli_f",
        "app_secret": "s-f",
        "verification_token": FEISHU_TOKEN,
    },
    "lark": {
        "platform": "lark",
        "app_id": "cli_l",
        "app_secret": "s-l",
        "verification_token": FEISHU_TOKEN,
        "encrypt_key": "fuzz-encrypt-key",
    },
    "wecom": {
        "platform": "wecom",
        "corp_id": WECOM_CORP,
        "agent_id": 1000002,
        "secret": "s-w",
        "token": WECOM_TOKEN,
        "encoding_aes_key": WECOM_AES,
    },
    "wecom_bot": {"platform": "wecom_bot", "token": WECOM_TOKEN, "encoding_aes_key": WECOM_AES},
    "dingtalk": {
        "platform": "dingtalk",
        "mode": "http",
        "client_id": "ding-f",
        "client_secret": DINGTALK_SECRET,
    },
    # The web chat: its page and WebSocket (token auth: every random token is a 401).
    "web": {"platform": "web", "signing_secret": "fuzz-web-signing-secret-0123"},
}
ROUTES = ["/chat/web", "/chat/web/ws"]
# What the gateway may log that is no defect; anything else at ERROR, or these, is one.
DEFECTS = (
    "Traceback",
    "Exception ignored",
    " ERROR asyncio",
    " ERROR aiohttp",
    " CRITICAL ",
    "could not handle webhook",
    "unhandled error",
    "HTTP connection:",
)


def budget(config: pytest.Config) -> int:
    if os.environ.get("FUZZ_EXAMPLES"):
        return int(os.environ["FUZZ_EXAMPLES"])
    selected = str(config.getoption("markexpr", default="") or "").replace(" ", "")
    return BIG if selected == "fuzz" else SMALL


class Served:
    """The gateway process, its port, and the part of its log not looked at yet."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
        self.proc, self.port, self.log_path = proc, port, log_path
        self._offset = 0
        self.inputs = 0

    def new_log(self) -> str:
        with self.log_path.open("rb") as log:
            log.seek(self._offset)
            text = log.read()
        self._offset += len(text)
        return text.decode(errors="replace")

    def check_log(self) -> None:
        defects = [line for line in self.new_log().splitlines() if any(d in line for d in DEFECTS)]
        assert not defects, "\n".join(defects[:20])

    def exchange(self, data: bytes, *, wait: float = 5.0) -> bytes:
        """Send `data`; what came back until the server closed, or until `wait` seconds
        passed without a byte (then the client gives up, as a real one would)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            try:
                sock.sendall(data)
            except OSError:
                return b""  # the server hung up on a request it had seen enough of
            received = b""
            while select.select([sock], [], [], wait)[0]:
                try:
                    chunk = sock.recv(65536)
                except OSError:
                    break
                if not chunk:
                    break
                received += chunk
            return received

    def checked(self, data: bytes, *, wait: float = 5.0) -> bytes:
        answer = self.exchange(data, wait=wait)
        assert self.proc.poll() is None, "the gateway died"
        if answer.startswith(b"HTTP/1."):
            status = answer.split(b" ", 2)[1]
            assert status != b"500", answer[:300]
            assert not status.startswith(b"5") or b"temporarily unavailable" not in answer, answer
        self.check_log()
        self.inputs += 1
        if self.inputs % BATCH == 0:
            self.healthy()
        return answer

    def healthy(self) -> None:
        answer = self.exchange(b"GET /healthz HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    workdir = tmp_path_factory.mktemp("http-fuzz")
    port = free_port()
    config = {
        # Short timeouts: an input that stalls the connection costs a second, not thirty.
        "server": {"host": "127.0.0.1", "port": port, "read_timeout_s": 1, "shutdown_grace_s": 1},
        "store": "memory://",
        "dify": {"apps": {"main": {"base_url": UNREACHABLE + "/v1", "api_key": "k-fuzz"}}},
        "bots": {
            name: {"app": "main", "api_base": UNREACHABLE, **bot} for name, bot in BOTS.items()
        },
    }
    (workdir / "gw.yaml").write_text(yaml.safe_dump(config))
    log_path = workdir / "gw.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve", "--config", str(workdir / "gw.yaml")],
            stdout=log,
            stderr=log,
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    served = Served(proc, port, log_path)
    started = time.monotonic()
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                served.healthy()
                break
            except (OSError, AssertionError):
                assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.1)
        yield served
        served.healthy()
        served.check_log()
        # Shown with -s (or -rP): the figures of a big run.
        print(f"\nhttp fuzz: {served.inputs} inputs in {time.monotonic() - started:.0f} s")
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- inputs ----------------------------------------------------------------------------------

TOKEN_CHARS = "!#$%&'*+-.^_`|~" + "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
header_names = st.one_of(
    st.sampled_from(
        [
            "Content-Type",
            "Content-Encoding",
            "Transfer-Encoding",
            "Expect",
            "Connection",
            "Upgrade",
            "Sec-WebSocket-Key",
            "Sec-WebSocket-Version",
            "Sec-WebSocket-Protocol",
            "X-Slack-Signature",
            "X-Slack-Request-Timestamp",
            "X-Lark-Request-Timestamp",
            "X-Lark-Signature",
            "timestamp",
            "sign",
            "Host",
        ]
    ),
    st.text(TOKEN_CHARS, min_size=1, max_size=20),
)
header_values = st.one_of(
    st.sampled_from(
        [
            "gzip",
            "deflate",
            "br",
            "zstd",
            "identity",
            "gzip, gzip",
            "chunked",
            "gzip, chunked",
            "100-continue",
            "keep-alive",
            "upgrade",
            "websocket",
            "dGhlIHNhbXBsZSBub25jZQ==",
            "13",
            "application/json",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "text/xml; charset=utf-8",
            "v0=" + "0" * 64,
            "-1",
            "99999999999999999999",
        ]
    ),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60),
    st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
)
paths = st.one_of(
    st.sampled_from(
        [
            "/healthz",
            "/readyz",
            "/metrics",
            *(f"/webhooks/{b}" for b in BOTS),
            *ROUTES,
            "/webhooks/",
            "/",
        ]
    ),
    st.sampled_from([f"/webhooks/{b}" for b in BOTS]).flatmap(
        lambda p: st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=30).map(
            lambda tail: p + tail
        )
    ),
)
methods = st.one_of(
    st.sampled_from(["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE"]),
    st.text(TOKEN_CHARS, min_size=1, max_size=10),
)
queries = st.one_of(
    st.just(""),
    st.lists(
        st.tuples(
            st.sampled_from(["msg_signature", "timestamp", "nonce", "echostr", "x", "%zz"]),
            st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40),
        ),
        max_size=5,
    ).map(lambda pairs: "?" + "&".join(f"{k}={v}" for k, v in pairs)),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)
event_shapes = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["event_callback", "url_verification", "x"]) | json_values,
        "token": st.just(FEISHU_TOKEN) | json_values,
        "challenge": json_values,
        "schema": st.just("2.0") | json_values,
        "header": st.fixed_dictionaries(
            {}, optional={"event_type": json_values, "token": st.just(FEISHU_TOKEN)}
        )
        | json_values,
        "event": st.dictionaries(
            st.sampled_from(
                ["type", "text", "user", "channel", "ts", "message", "sender", "bot_id"]
            ),
            json_values,
            max_size=6,
        )
        | json_values,
        "msgtype": json_values,
        "text": json_values,
        "conversationType": json_values,
    },
)
bodies = st.one_of(
    st.binary(max_size=300),
    event_shapes.map(lambda v: json.dumps(v).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
)
OVER_THE_LIMIT = b"x" * 1_100_000  # max_body_bytes is 1 MiB


@st.composite
def signed(draw: st.DrawFn) -> tuple[str, str, list[tuple[str, str]], bytes]:
    """(path, query, headers, body) that pass a bot's verification, so the input reaches
    its parser through the edge."""
    bot = draw(st.sampled_from(["slack", "feishu", "wecom", "wecom_bot", "dingtalk"]))
    body = draw(bodies)
    if bot == "slack":
        ts = str(int(time.time()))
        return (
            "/webhooks/slack",
            "",
            [
                ("X-Slack-Request-Timestamp", ts),
                ("X-Slack-Signature", slack_sign(SLACK_SECRET, ts, body)),
                ("Content-Type", "application/json"),
            ],
            body,
        )
    if bot == "dingtalk":
        ms = str(int(time.time() * 1000))
        return (
            "/webhooks/dingtalk",
            "",
            [
                ("timestamp", ms),
                ("sign", compute_sign(DINGTALK_SECRET, ms)),
            ],
            body,
        )
    if bot == "feishu":
        return "/webhooks/feishu", "", [("Content-Type", "application/json")], body
    crypto = WecomCrypto(WECOM_TOKEN, WECOM_AES, WECOM_CORP if bot == "wecom" else "")
    encrypt = crypto.encrypt(body)
    query = f"?msg_signature={crypto.signature('1', '2', encrypt)}&timestamp=1&nonce=2"
    if bot == "wecom":
        envelope = f"<xml><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>".encode()
        return "/webhooks/wecom", query, [], envelope
    return "/webhooks/wecom_bot", query, [], json.dumps({"encrypt": encrypt}).encode()


class Case:
    """A request's bytes, and whether its framing leaves the server waiting for more; shown
    cut short in reports (a body over the limit is a megabyte)."""

    def __init__(self, data: bytes, stalls: bool) -> None:
        self.data, self.stalls = data, stalls

    def __repr__(self) -> str:
        shown = self.data if len(self.data) < 2000 else self.data[:2000] + b"..."
        return f"Case({shown!r}, {len(self.data)} bytes, stalls={self.stalls})"


@st.composite
def requests(draw: st.DrawFn) -> Case:
    """A request, shaped like HTTP, with random parts."""
    if draw(st.booleans()):
        path, query, headers, body = draw(signed())
        method = "POST"
    else:
        method, path, query = draw(methods), draw(paths), draw(queries)
        headers = draw(st.lists(st.tuples(header_names, header_values), max_size=6))
        body = OVER_THE_LIMIT if draw(st.integers(0, 19)) == 0 else draw(bodies)
    framing = draw(st.sampled_from(["length", "chunked", "none", "short", "long", "bad-chunks"]))
    encoding = draw(st.sampled_from([None, "gzip", "deflate", "br", "x-made-up"]))
    if encoding is not None and not any(k.lower() == "content-encoding" for k, _ in headers):
        headers = [*headers, ("Content-Encoding", encoding)]
    head = f"{method} {path}{query} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers)
    stalls = False
    if framing == "length":
        frame = f"Content-Length: {len(body)}\r\n\r\n".encode() + body
    elif framing == "chunked":
        frame = b"Transfer-Encoding: chunked\r\n\r\n"
        frame += f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n" if body else b"0\r\n\r\n"
    elif framing == "bad-chunks":
        frame = b"Transfer-Encoding: chunked\r\n\r\n" + draw(st.binary(max_size=60))
        stalls = True
    elif framing == "short":  # says less than it sends: the rest reads as a next request
        frame = f"Content-Length: {len(body) // 2}\r\n\r\n".encode() + body
    elif framing == "long":  # says more than it sends
        frame = f"Content-Length: {len(body) + 10}\r\n\r\n".encode() + body
        stalls = True
    else:
        frame = b"\r\n" + body
    return Case(head.encode("latin-1") + frame, stalls)


VALID = (
    b"POST /webhooks/slack?a=b HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
    b"Content-Length: 2\r\nConnection: close\r\n\r\n{}"
)


@st.composite
def raw_http(draw: st.DrawFn) -> bytes:
    """Malformed HTTP: random bytes, or a valid request cut, spliced and corrupted."""
    if draw(st.booleans()):
        data = draw(st.binary(max_size=400))
    else:
        data = bytearray(VALID)
        for _ in range(draw(st.integers(1, 6))):
            at = draw(st.integers(0, len(data)))
            edit = draw(st.sampled_from(["flip", "insert", "delete", "cut", "repeat"]))
            if edit == "flip" and at < len(data):
                data[at] = draw(st.integers(0, 255))
            elif edit == "insert":
                piece = draw(
                    st.sampled_from([b"\r\n", b"\n", b"\r", b" ", b"\x00", b":", b"\t", b"\xff"])
                    | st.binary(max_size=20)
                    | st.just(b"X-Long: " + b"a" * 10_000 + b"\r\n")
                    | st.just(b"Content-Length: 5\r\n")
                    | st.just(b"Transfer-Encoding: chunked\r\n")
                )
                data[at:at] = piece
            elif edit == "delete":
                del data[at : at + draw(st.integers(1, 8))]
            elif edit == "cut":
                del data[at:]
            elif edit == "repeat" and len(data) < 20_000:  # pipelined copies
                data.extend(bytes(data))
    if draw(st.booleans()):
        data += b"\r\n\r\n"
    return bytes(data)


# --- targets ---------------------------------------------------------------------------------


def _settings(config: pytest.Config) -> settings:
    return settings(
        max_examples=budget(config),
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )


def test_random_requests_never_break_the_gateway(
    gateway: Served, pytestconfig: pytest.Config
) -> None:
    @_settings(pytestconfig)
    @given(requests())
    def target(case: Case) -> None:
        # A request the server waits on is closed at read_timeout_s (1 s); the client
        # gives up sooner, after 0.05 s of silence.
        gateway.checked(case.data, wait=0.05 if case.stalls else 5.0)

    target()
    gateway.healthy()


def test_raw_malformed_http_never_breaks_the_gateway(
    gateway: Served, pytestconfig: pytest.Config
) -> None:
    @_settings(pytestconfig)
    @given(raw_http())
    def target(data: bytes) -> None:
        # Malformed input is answered at once (400); what still parses as the start of a
        # request is waited on: the client gives up after a moment of silence.
        gateway.checked(data, wait=0.03)

    target()
    gateway.healthy()


def test_the_fuzz_inputs_reach_past_the_edge(gateway: Served) -> None:
    """Signed inputs are not all refused at the door: a signed Slack challenge is answered,
    sent plain or gzip-encoded (the signature covers the decoded body)."""
    body = json.dumps({"type": "url_verification", "challenge": "c-1"}).encode()
    ts = str(int(time.time()))
    head = (
        "POST /webhooks/slack HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n"
        f"X-Slack-Request-Timestamp: {ts}\r\n"
        f"X-Slack-Signature: {slack_sign(SLACK_SECRET, ts, body)}\r\n"
    ).encode()
    for extra, sent in ((b"", body), (b"Content-Encoding: gzip\r\n", gzip.compress(body))):
        answer = gateway.checked(head + extra + b"Content-Length: %d\r\n\r\n" % len(sent) + sent)
        assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b'{"challenge":"c-1"}')
