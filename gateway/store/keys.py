"""Every key the gateway stores something under, built in one place.

The strings are part of the stored data: change one and a running deployment loses what it
kept under the old one (a chat forgets its Dify conversation, a retry is answered twice, a
token is fetched again). tests/unit/store/test_keys.py pins them.

A key only has to be unique within its part of the store (see base.py): the backends keep
claims, conversations, locks and shared state apart (Redis under `dify-gateway:<part>:`; on
a Redis Cluster the claims under `dify-gateway:{claim}:`, see redis.py).
Within a part, each kind of key has its own shape, so kinds do not collide.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NewType

# What `platform_token` returns and `SharedToken` takes. SharedToken used to add the `token:`
# prefix itself: with this type, a caller passing a bare name fails mypy instead of quietly
# storing the token under a new key.
TokenKey = NewType("TokenKey", str)

# --- Claims ---------------------------------------------------------------------------------


def dedupe_claims(bot: str, dedupe_keys: Iterable[str]) -> list[str]:
    """Claims on a message's platform ids, `<bot>:<id>` (two bots may see one platform id),
    held for `DEFAULT_CLAIM_TTL` (8 h)."""
    return list(map((bot + ":").__add__, dedupe_keys))  # on the ack path: no per-key call


def wecom_bot_first_sight(bot: str, msgid: str) -> str:
    """Claimed when a WeCom AI-bot callback's msgid is first seen, held 1 h, so its retries
    neither count nor answer again."""
    return f"wecom_bot:seen:{bot}:{msgid}"


def access_notice(bot: str, user: str) -> str:
    """Claimed when a user whom a route refuses is told so, held 1 h: they are told at most
    once an hour, however often they write."""
    return f"access:notified:{bot}:{user}"


def dingtalk_sign(bot: str, sign: str) -> str:
    """Claimed when a DingTalk HTTP-mode callback's `sign` (canonical base64) is first
    accepted, held while its timestamp is valid (up to 2 h: one hour either side of now),
    so the pair cannot carry a second body."""
    return f"dingtalk:sign:{bot}:{sign}"


# --- Conversations and locks ------------------------------------------------------------------


def conversation(app: str, scope_key: str) -> str:
    """`<app>/<scope key>` (scope key from `gateway.router.conversation_key`): the Dify
    conversation id, kept for good, and the lock its answers take turns on."""
    return app + "/" + scope_key


# --- Shared state -----------------------------------------------------------------------------


def answer_record(job_id: str) -> str:
    """What a click on an answer needs (JSON, `gateway.answers.AnswerRecord`): its Dify app,
    user, task and message ids, who asked in which conversation, the reply sink's snapshot
    and its suggested questions; kept 7 days."""
    return f"answer:{job_id}"


def answer_running(conversation_key: str) -> str:
    """The job id of the answer being written in a conversation (`<app>/<scope key>`), for
    `/stop`; kept while it runs (at most the app's timeout)."""
    return f"running:{conversation_key}"


def answer_stop(job_id: str) -> str:
    """Set when someone asked to stop an answer (the answer, wherever it runs, ends with a
    note saying so); kept 1 h."""
    return f"stop:{job_id}"


def form(token: str) -> str:
    """A human-input form a paused Dify run waits for (JSON, `gateway.forms.PendingForm`):
    the run, its Dify user, who asked in which conversation, and the form; kept until the
    form expires (at most 7 days, Dify's own limit)."""
    return f"form:{token}"


def form_waiting(conversation_key: str) -> str:
    """The token of the form a conversation's next reply answers (the text fallback);
    kept as long as the form."""
    return f"form-waiting:{conversation_key}"


def greeted(conversation_key: str) -> str:
    """Set once the app's opening statement was shown for a conversation key (`<app>/<scope
    key>`), so a user is greeted once; kept for good."""
    return f"greeted:{conversation_key}"


def dingtalk_signed_message(bot: str, sign: str) -> str:
    """The msgId a DingTalk `sign` was first accepted with (see `dingtalk_sign`), kept as
    long as the claim, so a platform retry that reuses the sign is told from a forgery."""
    return f"dingtalk:signed:{bot}:{sign}"


def dingtalk_card(bot: str, out_track_id: str) -> str:
    """Where a DingTalk AI card with buttons was posted and which answer it shows (JSON,
    adapters/dingtalk/card_clicks.py), kept as long as the answer's record (7 days), so a
    click on the card, which names only the card, reaches any instance."""
    return f"dingtalk:card:{bot}:{out_track_id}"


def platform_token(platform: str, *ids: str) -> TokenKey:
    """A platform access token and its expiry (JSON) that instances share, `ids` naming the
    app; kept until shortly before the token expires."""
    return TokenKey(":".join(("token", platform, *ids)))


def wecom_quota_scope(corp_id: str, agent_id: int) -> str:
    """The prefix of one WeCom app's send counters (see `wecom_quota`)."""
    return f"wecom:quota:{corp_id}:{agent_id}"


def wecom_quota(scope: str, member: str, window_s: int, window_index: int) -> str:
    """How many messages an app sent `member` in one fixed window (number `window_index` of
    `window_s` seconds since the epoch); kept two windows."""
    return f"{scope}:{member}:{window_s}:{window_index}"


def wecom_bot_stream(bot: str, stream_id: str) -> str:
    """A WeCom AI-bot stream's current content and finish flag (JSON), read by refresh
    callbacks on any instance; kept 1 h."""
    return f"wecom_bot:stream:{bot}:{stream_id}"


def wecom_bot_card(bot: str, task_id: str) -> str:
    """A WeCom AI-bot template card of buttons the gateway sent (JSON,
    adapters/wecom_bot/cards.py): what a click's card update redraws, kept as long as the
    answer's record (7 days)."""
    return f"wecom_bot:card:{bot}:{task_id}"


def wecom_bot_in_flight(bot: str, user: str) -> str:
    """How many answers a user has in flight with a WeCom AI bot (at most 3); expires 7 min
    after its last change, so a crashed worker cannot lock the user out."""
    return f"wecom_bot:inflight:{bot}:{user}"


def rate_count(scope: str, window_index: int) -> str:
    """Questions counted against one rate limit (`scope`: `bot:<bot>` or
    `user:<bot>:<user>`) in one minute (number `window_index` since the epoch); kept two
    minutes."""
    return f"rate:{scope}:{window_index}"


# --- The web chat (adapters/web/) -------------------------------------------------------------
# A user is the token's `sub` (any text); a reply id is the client's message id, which never
# holds a `:`, so each key reads back unambiguously.


def web_channel(bot: str, user: str) -> str:
    """The `Broadcast` channel of one user's sockets, on whichever instance holds them."""
    return f"web:{bot}:{user}"


def web_owed(bot: str, user: str) -> str:
    """The reply ids of the answers a user may still be owed (JSON list); kept 15 min after
    the last answer began, and pruned as their answers expire."""
    return f"web:owed:{bot}:{user}"


def web_answer(bot: str, user: str, reply_to: str) -> str:
    """The latest frame of one answer (JSON), replayed to a socket that reconnects; kept
    15 min after each update, 1 min after the final frame."""
    return f"web:answer:{bot}:{user}:{reply_to}"


def web_upload(bot: str, user: str, reply_to: str, index: int) -> str:
    """A file sent with a web chat message (base64), from the ack to the worker; kept 1 h."""
    return f"web:upload:{bot}:{user}:{reply_to}:{index}"
