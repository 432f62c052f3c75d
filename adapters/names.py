"""Display names of platform users, for route `inputs` such as `{user_name}`.

Events from Slack, Feishu and WeCom apps carry a user id but no name, so the worker asks the
platform, at most once an hour per user. The cache is bounded: a gateway in a large company
sees many users, and a name is cheap to look up again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from gateway.models import InboundMessage
from gateway.platform import PlatformError

log = logging.getLogger(__name__)

CACHE_S = 3600.0
CACHE_SIZE = 10_000

Lookup = Callable[[str], Awaitable[str | None]]  # user id -> name (None: the platform has none)


class DisplayNames:
    def __init__(self, platform: str, bot: str, lookup: Lookup) -> None:
        self._platform = platform
        self._bot = bot
        self._lookup = lookup
        self._names: dict[str, tuple[str, float]] = {}  # user id -> (name, good until)

    async def of(self, message: InboundMessage) -> str:
        """The speaker's name: from the event, the cache or the platform; else their id."""
        if message.user_name:
            return message.user_name
        user_id = message.user_id
        cached = self._names.get(user_id)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        try:
            name = await self._lookup(user_id) or user_id
        except PlatformError as exc:
            log.info(
                "%s %s: no user name (%s); using the user id", self._platform, self._bot, exc.code
            )
            return user_id
        if len(self._names) >= CACHE_SIZE:
            self._names.clear()  # crude, but bounded
        self._names[user_id] = (name, time.monotonic() + CACHE_S)
        return name
