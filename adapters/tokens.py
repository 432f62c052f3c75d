"""Access tokens (Feishu tenant token, WeCom access_token, DingTalk accessToken), cached in
this process and in the store, so several instances share one token instead of each fetching
their own (the platforms rate-limit and sometimes invalidate on refetch).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable

from gateway.store.base import SharedState, StoreUnavailable
from gateway.store.keys import TokenKey

# fetch() returns (token, lifetime in seconds) as the platform reported them.
Fetch = Callable[[], Awaitable[tuple[str, float]]]


class SharedToken:
    def __init__(
        self, store: SharedState, key: TokenKey, fetch: Fetch, *, refresh_margin: float = 300.0
    ) -> None:
        """`key` names the token in the store: `gateway.store.keys.platform_token(...)`."""
        self._store = store
        self._key = key
        self._fetch = fetch
        self._margin = refresh_margin
        self._token: str | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()  # one fetch at a time in this process

    async def get(self) -> str:
        if self._token is not None and time.time() < self._expires - self._margin:
            return self._token
        async with self._lock:
            if self._token is not None and time.time() < self._expires - self._margin:
                return self._token
            shared = await self._from_store()
            if shared is not None:
                self._token, self._expires = shared
                return shared[0]
            token, lifetime = await self._fetch()
            self._token, self._expires = token, time.time() + lifetime
            # If the store is down the token still works here; instances just don't share it.
            with contextlib.suppress(StoreUnavailable):
                await self._store.set(
                    self._key,
                    json.dumps({"token": token, "expires": self._expires}),
                    ttl=max(1.0, lifetime - self._margin),
                )
            return token

    async def invalidate(self, token: str) -> None:
        """The platform rejected `token` (expired early, revoked): drop it everywhere, so
        the next `get()` fetches a new one. A newer token is left alone."""
        async with self._lock:
            if self._token == token:
                self._token, self._expires = None, 0.0
            shared = await self._from_store()
            if shared is not None and shared[0] == token:
                with contextlib.suppress(StoreUnavailable):
                    await self._store.delete(self._key)

    async def _from_store(self) -> tuple[str, float] | None:
        try:
            raw = await self._store.get(self._key)
        except StoreUnavailable:
            return None
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            token, expires = str(data["token"]), float(data["expires"])
        except (ValueError, KeyError, TypeError):
            return None
        if time.time() >= expires - self._margin:
            return None
        return token, expires
