"""The app's files, as DingTalk robot messages after the answer.

Uploaded with `media/upload` (multipart `media`; 20 MB, the official connector's cap), then
sent through the robot OpenAPI like any message, to the user (by staff id) or the group:
images as `sampleImageMsg` (`photoURL`: the media id), other files as `sampleFile`
(`mediaId` without its leading `@`, as DingTalk's connector sends it, `fileName`,
`fileType`). A sessionWebhook takes no media messages, so a chat reachable only that way
(an external user) gets the files named in the text instead.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from adapters.dingtalk.api import DingtalkApi
from adapters.dingtalk.reply import Destination
from gateway.platform import OutputFile, PlatformError

log = logging.getLogger(__name__)

MAX_BYTES = 20 * 1024 * 1024
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/bmp"})


class MediaSender:
    def __init__(self, api: DingtalkApi, destination: Destination) -> None:
        self._api = api
        self._to = destination
        self._held: list[tuple[str, dict[str, str]]] = []  # (msgKey, msgParam) to send

    async def upload(self, files: Sequence[OutputFile]) -> list[OutputFile]:
        """Upload the files now; they are sent by `send()`. Returns those that cannot go."""
        if not self._to.group and not self._to.staff_id:
            return list(files)
        missing: list[OutputFile] = []
        for file in files:
            if not 0 < len(file.data) <= MAX_BYTES:
                missing.append(file)
                continue
            image = file.mime_type in IMAGE_TYPES
            try:
                media_id = await self._api.upload_media(
                    "image" if image else "file", file.name, file.data, file.mime_type
                )
            except PlatformError as exc:
                log.warning("dingtalk: could not upload %s: %s", file.name, exc)
                missing.append(file)
                continue
            if image:
                self._held.append(("sampleImageMsg", {"photoURL": media_id}))
            else:
                extension = file.name.rpartition(".")[2].lower() if "." in file.name else "file"
                param = {
                    "mediaId": media_id.lstrip("@"),
                    "fileName": file.name,
                    "fileType": extension,
                }
                self._held.append(("sampleFile", param))
        return missing

    async def send(self) -> None:
        """Send what was uploaded, after the answer's text. Failures are logged: the text
        is out, and a retried finish must not send it twice."""
        held, self._held = self._held, []
        for key, param in held:
            try:
                if self._to.group:
                    await self._api.send_to_group(self._to.conversation_id, key, dict(param))
                else:
                    await self._api.send_to_user(self._to.staff_id, key, dict(param))
            except PlatformError as exc:
                log.warning("dingtalk: could not send a file of the answer: %s", exc)
