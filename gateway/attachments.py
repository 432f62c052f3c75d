"""The files a user sent, made into what Dify takes: voice becomes text, other files are
uploaded (`local_file`; Dify cannot fetch a platform's private links itself).

A file the app does not take (its `file_upload` settings: type, count, size) is not sent:
Dify would drop it silently (chat apps) or refuse the whole message (a 400), so the user
gets a short note instead and the rest of the message is answered.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from gateway import audio
from gateway.app_params import (
    AppParameters,
    Refusal,
    UploadPolicy,
    dify_file_type,
    input_form,
    speech_to_text,
    upload_sizes,
)
from gateway.config import DifyApp
from gateway.dify import DifyClient
from gateway.dify_events import DifyError
from gateway.models import Job
from gateway.platform import Adapter, Download, PlatformError
from gateway.words import Words

log = logging.getLogger(__name__)


class AttachmentFailed(Exception):
    """The only content of the message was a file that could not be read."""


@dataclass(slots=True)
class Prepared:
    query: str
    files: list[dict[str, Any]] = field(default_factory=list)  # Dify file objects
    notes: list[str] = field(default_factory=list)  # what the user is told up front
    # Nothing is left to ask Dify (every file was refused, no text): answer with the notes.
    nothing_to_ask: bool = False


class Attachments:
    def __init__(self, dify: DifyClient, parameters: AppParameters) -> None:
        self._dify = dify
        self._parameters = parameters

    async def prepare(self, job: Job, adapter: Adapter, app: DifyApp, words: Words) -> Prepared:
        """Download the user's files (here, in the worker) and hand them to Dify."""
        prepared = Prepared(job.message.text.strip())
        if not job.message.attachments:
            return self._fill_query(prepared, job, words)
        params = await self._parameters.get(job.app)
        policy = _policy(params, app)
        for attachment in job.message.attachments:
            try:
                download = await adapter.download(attachment)
                if attachment.kind == "audio":
                    await self._transcribe(prepared, job, app, words, params, download)
                    continue
                refusal = policy.check(download.name, len(download.data), len(prepared.files))
                if refusal is not None:
                    prepared.notes.append(_refusal_note(words, download.name, refusal))
                    continue
                file_id = await self._dify.upload_file(
                    app, job.dify_user, download.name, download.data, download.mime_type
                )
            except (PlatformError, DifyError) as exc:
                log.warning("answer %s: attachment %s failed: %s", job.job_id, attachment.name, exc)
                if not prepared.query:
                    raise AttachmentFailed() from exc
                continue
            prepared.files.append(
                {
                    "type": dify_file_type(download.name),
                    "transfer_method": "local_file",
                    "upload_file_id": file_id,
                }
            )
        if not prepared.query and not prepared.files and prepared.notes:
            prepared.nothing_to_ask = True
            return prepared
        return self._fill_query(prepared, job, words)

    async def _transcribe(
        self,
        prepared: Prepared,
        job: Job,
        app: DifyApp,
        words: Words,
        params: dict[str, Any],
        download: Download,
    ) -> None:
        if not speech_to_text(params):
            prepared.notes.append(words.voice_not_supported)
            return
        try:
            data, name, mime = await audio.for_dify(
                download.data, download.mime_type, download.name
            )
        except (audio.AudioUnsupported, audio.ConversionError) as exc:
            log.info("answer %s: voice clip not usable: %s", job.job_id, exc)
            prepared.notes.append(words.voice_not_supported)
            return
        heard = await self._dify.audio_to_text(app, job.dify_user, name, data, mime)
        prepared.query = f"{prepared.query}\n{heard}".strip()

    @staticmethod
    def _fill_query(prepared: Prepared, job: Job, words: Words) -> Prepared:
        if not prepared.query:
            names = ", ".join(a.name for a in job.message.attachments)
            prepared.query = words.files_without_text(names) if names else words.empty_message
        return prepared


def _policy(params: dict[str, Any], app: DifyApp) -> UploadPolicy:
    if not params:
        return UploadPolicy(True)  # Dify did not say: let it judge
    if app.mode == "workflow" and app.file_input:
        entry = input_form(params).get(app.file_input)
        return UploadPolicy.of_input(entry, upload_sizes(params)) if entry else UploadPolicy(True)
    return UploadPolicy.of_app(params)


def _refusal_note(words: Words, name: str, refusal: Refusal) -> str:
    reason, limit = refusal
    if reason == "too_large":
        return words.attachment_too_large(name, limit)
    if reason == "too_many":
        return words.attachment_too_many(name, limit)
    return words.attachment_refused(name)


def file_input_value(params: dict[str, Any], app: DifyApp, files: list[dict[str, Any]]) -> Any:
    """What a workflow's file input gets: one file object for a `file` variable, the list
    for a `file-list` (or when Dify did not say)."""
    entry = input_form(params).get(app.file_input or "")
    if entry is not None and entry.get("type") == "file":
        return files[0]
    return files
