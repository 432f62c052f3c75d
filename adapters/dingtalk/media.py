"""The app's files, as DingTalk robot messages after the answer.

Uploaded with `media/upload` (multipart `media`; 20 MB, the official connector's cap), then
sent through the robot OpenAPI like any message, to the user (by staff id) or the group:
images as `sampleImageMsg` (`photoURL`: the media id), other files as `sampleFile`
(`mediaId` without its leading `@`, as DingTalk's connector sends it, `fileName`,
`fileType`). A sessionWebhook takes no media messages, so a chat reachable only that way
(an external user) gets the files named in the text instead.

An AI card shows an uploaded image in its markdown, by the media id's download URL
(`https://down.dingtalk.com/media/<id without @>`: DingTalk's own channel SDK and
connector do so, and note that a bare media id does not render). So a card answer keeps its
images in the card (`card_images`) and only its other files come as messages.
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
CARD_IMAGE_URL = "https://down.dingtalk.com/media/{media_id}"
_ALT_UNSAFE = str.maketrans("", "", "[]()\\\n")


def card_image(name: str, media_id: str) -> str:
    """The markdown that shows an uploaded image inside an AI card."""
    alt = name.translate(_ALT_UNSAFE)
    return f"![{alt}]({CARD_IMAGE_URL.format(media_id=media_id.lstrip('@'))})"


class MediaSender:
    def __init__(
        self, api: DingtalkApi, destination: Destination, *, images_in_card: bool = False
    ) -> None:
        self._api = api
        self._to = destination
        self._images_in_card = images_in_card
        self._held: list[tuple[str, dict[str, str]]] = []  # (msgKey, msgParam) to send
        self._card_images: list[str] = []  # markdown for the final card

    @property
    def card_images(self) -> str:
        """The uploaded images as card markdown, a paragraph each (kept until the card
        that shows them is closed: a closing call may be retried)."""
        return "\n\n".join(self._card_images)

    def card_images_shown(self) -> None:
        self._card_images = []

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
            if image and self._images_in_card:
                self._card_images.append(card_image(file.name, media_id))
            elif image:
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
