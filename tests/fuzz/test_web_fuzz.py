"""The web chat: the token check on any token and on validly signed tokens of any JSON header
and claims; the client frame parser on any text; and a parsed message's way into the inbox
(the session's reading: `to_inbound`), which must give a message the inbox can store."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.web.convert import to_inbound
from adapters.web.frames import BadFrame, parse_client_frame
from adapters.web.verify import WebUser, anonymous_user, verify_token
from gateway.models import Messages
from gateway.platform import VerificationFailed
from gateway.store.memory import MemoryStore
from tests.fuzz.harness import check_outcome
from tests.fuzz.strategies import SURROGATES, garbage, json_documents, mutated, texts

FUZZ = settings.get_profile("fuzz")
SECRET = b"a-web-chat-fuzz-secret-of-some-length"
NOW = time.time()
CLAIMS = {"sub": "u1", "name": "Ann", "exp": int(NOW) + 300, "nbf": int(NOW) - 10}
HEADER = {"alg": "HS256", "typ": "JWT"}
FILE = {"name": "a.png", "type": "image/png", "data": "iVBORw0KGgo="}
FRAME = {"type": "message", "id": "m-1", "text": "hello", "files": [FILE]}
NAMES = ["type", "id", "text", "files", "name", "data", "alg", "typ", "crit", "kid"]
NAMES += list(CLAIMS)
VALUES = ["message", "HS256", "none", "HS512", "JWT", "m-1", "u1", "QQ==", "image/png"]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed(header: str, claims: str) -> str:
    """A token signed with the bot's secret around any header and claims text."""
    head = b64url(header.encode("utf-8", "surrogatepass"))
    body = b64url(claims.encode("utf-8", "surrogatepass"))
    mac = hmac.new(SECRET, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64url(mac)}"


def with_strings(template: dict[str, object], fields: list[str]) -> st.SearchStrategy[str]:
    """`template` as JSON with its string `fields` set to any text (lone surrogates escaped
    or raw), the values a mutation reaches only now and then."""
    with_surrogate = st.builds(
        lambda before, surrogate, after: before + surrogate + after,
        texts(10),
        st.sampled_from(SURROGATES),
        texts(10),
    )
    strings = texts(30) | with_surrogate
    return st.builds(
        lambda values, ascii: json.dumps({**template, **values}, ensure_ascii=ascii),
        st.fixed_dictionaries({}, optional={field: strings for field in fields}),
        st.booleans(),
    )


# The real header half the time, so that the claims are read at all.
headers = st.just(json.dumps(HEADER)) | mutated(HEADER, NAMES, VALUES) | json_documents(NAMES)
claims = st.one_of(
    mutated(CLAIMS, NAMES, VALUES),
    with_strings(CLAIMS, ["sub", "name"]),
    json_documents(NAMES, VALUES),
)
tokens = st.one_of(
    texts(200),
    garbage().map(lambda b: b.decode("latin-1")),
    st.lists(texts(40) | st.from_regex(r"[A-Za-z0-9_-]{0,60}", fullmatch=True), max_size=4).map(
        ".".join
    ),
)


def user_of(token: str) -> WebUser | None:
    try:
        user = verify_token(SECRET, token, NOW)
    except VerificationFailed:
        return None
    # A user the gateway takes is one it can key the store and the job by.
    user.id.encode()
    user.name.encode()
    return user


@FUZZ
@given(token=tokens, user=texts(80))
def test_any_token_or_page_id_is_a_user_or_refused(token: str, user: str) -> None:
    user_of(token)
    with contextlib.suppress(VerificationFailed):
        anonymous_user(user).id.encode()


@FUZZ
@given(header=headers, claims=claims)
def test_validly_signed_tokens_of_any_content_are_a_user_or_refused(
    header: str, claims: str
) -> None:
    user_of(signed(header, claims))


frames = st.one_of(
    mutated(FRAME, NAMES, VALUES),
    with_strings(FRAME, ["text"]),
    with_strings({**FRAME, "files": [{**FILE, "name": "\ud800"}]}, ["text"]),
    json_documents(NAMES, VALUES),
    garbage().map(lambda b: b.decode("utf-8", "surrogateescape")),
    texts(100),
)


def test_client_frames_reach_the_inbox_as_storable_messages() -> None:
    store = MemoryStore()
    user = WebUser("u1", "Ann")
    taken = 0
    with asyncio.Runner() as runner:

        @FUZZ
        @given(raw=frames)
        def case(raw: str) -> None:
            nonlocal taken
            try:
                message = parse_client_frame(raw)
            except BadFrame as exc:
                assert exc.reply_to is None or isinstance(exc.reply_to, str)
                return
            if message is None:
                return
            inbound = runner.run(
                to_inbound(message, bot="web-fuzz", user=user, store=store, received_at=NOW)
            )
            check_outcome(Messages((inbound,)))
            taken += 1

        case()
    assert taken  # some frames made it all the way, so the deep path was fuzzed
    # The frame the mutations start from is one of them.
    assert parse_client_frame(json.dumps(FRAME)) is not None
