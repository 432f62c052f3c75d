"""WeCom self-built app reply sink: finished parts through `message/send`, never edits.

Apps cannot edit a sent message (only recall it, doc path/96460), so there is no thinking
state: `begin()` sends nothing, and the core hands over finished parts (whole paragraphs
while Dify streams, the rest at the end), each at most 2,048 UTF-8 bytes. Each part is one
`markdown` message:

- `markdown` renders headings, bold, links, inline code and quotes in the WeCom client;
  `text` would show Dify's Markdown as raw `**` and `#`. The cost: members reading the app
  from WeChat (the WeCom plugin) get a "view it in WeCom" stub instead of the message.
- Pacing: at least 3 s between parts of one answer (≤ 20 a minute), and before every send
  a slot of the member's quota (`MemberQuota`: 30 a minute, 1,000 an hour, enforced by
  WeCom by silently dropping the excess). A part that must wait simply waits; the core
  meanwhile coalesces the stream into fewer, larger parts.
- The app's files are uploaded (`media/upload`, doc path/96484) and sent after the last
  part as `image` (JPG/PNG up to 10 MB) or `file` (up to 20 MB) messages.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from adapters.wecom.api import WecomAPI
from adapters.wecom.quota import MemberQuota
from gateway.platform import OutputFile, Pacing, PlatformError

log = logging.getLogger(__name__)

# The per-member limit is met by min_interval plus the quota; the bot-wide budget only
# stretches each answer's interval when very many answers stream at once (20 sends/s
# shared), so a busy app coalesces into fewer parts instead of queueing thousands of sends.
PACING = Pacing(min_interval=3.0, budget="wecom.message/send", budget_per_second=20.0)
MAX_MESSAGE_BYTES = 2048  # markdown.content, UTF-8 (doc path/90236)
MIN_MEDIA_BYTES = 6  # "every file is larger than 5 bytes"
MAX_IMAGE_BYTES = 10 * 1024 * 1024
MAX_FILE_BYTES = 20 * 1024 * 1024
IMAGE_TYPES = frozenset({"image/jpeg", "image/png"})

_IMAGE = re.compile(r"!\[([^\]\n]*)\]\(([^)\s]+)\)")


def to_wecom_markdown(text: str) -> str:
    """Standard Markdown to WeCom's app subset. Never longer than the input, because the
    core has already cut `text` to fit the byte limit."""
    # Images do not render in app markdown: `![alt](url)` becomes the link `[alt](url)`,
    # or the bare URL when there is no alt text (an empty link would be invisible).
    return _IMAGE.sub(lambda m: f"[{m.group(1)}]({m.group(2)})" if m.group(1) else m.group(2), text)


class WecomAppSink:
    def __init__(
        self,
        api: WecomAPI,
        quota: MemberQuota,
        reply_to: Mapping[str, Any],
        resume: Mapping[str, Any] | None = None,
    ) -> None:
        self._api = api
        self._quota = quota
        self._touser = str(reply_to["touser"])
        self._sent: list[str] = []
        self._media: list[tuple[str, str]] = []  # (kind, media_id) to send after the text
        # Parts a previous process sent before it stopped; they are recalled in begin(),
        # because the answer is produced again from the start.
        self._stale = [str(m) for m in (resume or {}).get("sent", []) if m]

    @property
    def pacing(self) -> Pacing:
        return PACING

    def snapshot(self) -> dict[str, Any]:
        return {"touser": self._touser, "sent": list(self._sent)}

    async def begin(self) -> None:
        """Nothing to show: WeCom apps cannot edit, so a "thinking…" message would stay."""
        for msgid in self._stale:
            try:
                await self._api.recall(msgid)
            except PlatformError as exc:  # older than 24 h, or already recalled
                log.info("wecom: could not recall part of an interrupted answer: %s", exc.code)
        self._stale = []

    async def update(self, text: str, status: str | None = None) -> None:
        """Never called: the capabilities say `can_edit=False`."""

    async def finish(self, text: str, *, last: bool) -> None:
        content = to_wecom_markdown(text)
        if content.strip():  # WeCom refuses empty content (44004)
            await self._wait_for_quota()
            self._sent.append(await self._api.send_markdown(self._touser, content))
        if last:
            await self._send_media()

    async def _wait_for_quota(self) -> None:
        waited = await self._quota.acquire(self._touser)
        if waited:
            log.info("wecom: waited %.1fs for the member's send quota", waited)

    async def _send_media(self) -> None:
        """The app's files, after the text. The text is out: a failure here is logged, not
        raised (a retried finish would send the text twice)."""
        media, self._media = self._media, []
        for kind, media_id in media:
            try:
                await self._wait_for_quota()
                self._sent.append(await self._api.send_media(self._touser, kind, media_id))
            except PlatformError as exc:
                log.warning("wecom: could not send a file of the answer: %s", exc)

    async def fail(self, text: str) -> None:
        await self.finish(text, last=True)

    async def send_files(self, files: Sequence[OutputFile]) -> list[OutputFile]:
        """Upload the files now (a refusal can still be named in the text); they are sent
        after the last part."""
        missing: list[OutputFile] = []
        for file in files:
            size = len(file.data)
            image = file.mime_type in IMAGE_TYPES and size <= MAX_IMAGE_BYTES
            if size < MIN_MEDIA_BYTES or (not image and size > MAX_FILE_BYTES):
                missing.append(file)
                continue
            kind = "image" if image else "file"
            try:
                media_id = await self._api.upload_media(kind, file.name, file.data, file.mime_type)
            except PlatformError as exc:
                log.warning("wecom: could not upload %s: %s", file.name, exc)
                missing.append(file)
                continue
            self._media.append((kind, media_id))
        return missing

    def fold_reasoning(self, text: str) -> None:
        """WeCom cannot fold text: the reasoning stays hidden."""
