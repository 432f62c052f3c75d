"""What an app's `GET /parameters` tells the gateway, fetched once per app for a while.

- `opening_statement`: the app's greeting for a new conversation.
- `file_upload` + `system_parameters`: which files the app takes, how many and how big.
  Dify stores `file_upload` in one of two shapes, and both occur: flat
  (`enabled`, `allowed_file_types`, `allowed_file_extensions`,
  `allowed_file_upload_methods`, `number_limits`, plus an `image` object) or one object per
  type (`image`, `document`, `audio`, `video`, `custom`, each `{enabled, number_limits,
  transfer_methods}`). Chat apps drop files silently when uploads are off, so the gateway
  checks first and tells the user.
- `user_input_form`: the app's input variables (a list of one-key objects
  `{"<type>": {variable, required, …}}`): the type of a workflow's file input, and which
  required inputs no route provides.
- `speech_to_text.enabled`: whether a voice message can be transcribed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from gateway.config import Config, DifyApp
from gateway.dify import DifyClient
from gateway.dify_events import DifyError

log = logging.getLogger(__name__)

TTL_S = 300.0
FAILED_TTL_S = 30.0  # a Dify that failed to answer is asked again soon, not at once
PARAMETERS_USER = "dify-gateway"

# Dify's file types by extension (api/constants; the 1.14.1 API templates).
_BY_EXTENSION: dict[str, str] = {
    **dict.fromkeys(("jpg", "jpeg", "png", "gif", "webp", "svg"), "image"),
    **dict.fromkeys(("mp3", "m4a", "wav", "amr", "mpga", "webm"), "audio"),
    **dict.fromkeys(("mp4", "mov", "mpeg"), "video"),
    **dict.fromkeys(
        ("txt", "md", "markdown", "mdx", "pdf", "html", "htm", "xlsx", "xls", "vtt"),
        "document",
    ),
    **dict.fromkeys(
        ("properties", "doc", "docx", "csv", "eml", "msg", "pptx", "ppt", "xml", "epub"),
        "document",
    ),
}
_SIZE_KEYS = {
    "image": ("image_file_size_limit", 10),
    "audio": ("audio_file_size_limit", 50),
    "video": ("video_file_size_limit", 100),
    "document": ("file_size_limit", 15),
    "custom": ("file_size_limit", 15),
}
_TYPES = ("image", "document", "audio", "video", "custom")


def dify_file_type(name: str) -> str:
    """The type Dify gives a file by its extension: image, document, audio, video, custom."""
    _, dot, ext = name.rpartition(".")
    return _BY_EXTENSION.get(ext.lower(), "custom") if dot else "custom"


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and value > 0 else None


Refusal = tuple[Literal["refused", "too_large", "too_many"], int]


@dataclass(frozen=True, slots=True)
class UploadPolicy:
    """Which files an app (or one workflow file input) takes."""

    enabled: bool
    types: frozenset[str] | None = None  # None: any type
    extensions: frozenset[str] = frozenset()  # ".pdf": what a `custom` type may be
    max_count: int | None = None
    local_upload: bool = True  # the gateway uploads files: the app must allow that
    size_limits_mb: Mapping[str, int] | None = None

    @classmethod
    def of_app(cls, params: Mapping[str, Any]) -> UploadPolicy:
        upload = _dict(params.get("file_upload"))
        sizes = _sizes(params.get("system_parameters"))
        if "enabled" in upload or "allowed_file_types" in upload:
            return cls._flat(upload, sizes)
        typed = {t: _dict(upload.get(t)) for t in _TYPES if isinstance(upload.get(t), dict)}
        on = {t: sub for t, sub in typed.items() if sub.get("enabled")}
        if not on:
            return cls(False)
        methods = {m for sub in on.values() for m in _strings(sub.get("transfer_methods"))}
        counts = [c for sub in on.values() if (c := _count(sub.get("number_limits")))]
        return cls(
            True,
            frozenset(on),
            max_count=max(counts) if counts else None,
            local_upload=not methods or "local_file" in methods,
            size_limits_mb=sizes,
        )

    @classmethod
    def _flat(cls, upload: dict[str, Any], sizes: Mapping[str, int]) -> UploadPolicy:
        image = _dict(upload.get("image"))
        if upload.get("enabled"):
            types = _strings(upload.get("allowed_file_types"))
            methods = _strings(upload.get("allowed_file_upload_methods"))
            count = _count(upload.get("number_limits"))
        elif image.get("enabled"):
            types, methods = ["image"], _strings(image.get("transfer_methods"))
            count = _count(image.get("number_limits"))
        else:
            return cls(False)
        return cls(
            True,
            frozenset(types) if types else None,
            _extensions(upload.get("allowed_file_extensions")),
            count,
            not methods or "local_file" in methods,
            sizes,
        )

    @classmethod
    def of_input(cls, entry: Mapping[str, Any], sizes: Mapping[str, int]) -> UploadPolicy:
        """A workflow's `file`/`file-list` input variable (its form entry)."""
        types = _strings(entry.get("allowed_file_types"))
        methods = _strings(entry.get("allowed_file_upload_methods"))
        count = 1 if entry.get("type") == "file" else _count(entry.get("max_length"))
        return cls(
            True,
            frozenset(types) if types else None,
            _extensions(entry.get("allowed_file_extensions")),
            count,
            not methods or "local_file" in methods,
            sizes,
        )

    def check(self, name: str, size: int | None, position: int) -> Refusal | None:
        """Why the file at `position` (0-based, among those the app gets) is not taken, as
        (reason, limit), or None when it is."""
        kind = dify_file_type(name)
        if not self.enabled or not self.local_upload:
            return ("refused", 0)
        if self.types is not None and kind not in self.types:
            ext = "." + name.rpartition(".")[2].lower()
            if "custom" not in self.types or (self.extensions and ext not in self.extensions):
                return ("refused", 0)
        if self.max_count is not None and position >= self.max_count:
            return ("too_many", self.max_count)
        limit = (self.size_limits_mb or {}).get(kind if kind in _SIZE_KEYS else "custom")
        if limit and size is not None and size > limit * 1024 * 1024:
            return ("too_large", limit)
        return None


def _extensions(value: Any) -> frozenset[str]:
    return frozenset("." + e.lower().lstrip(".") for e in _strings(value) if e.strip("."))


def upload_sizes(params: Mapping[str, Any]) -> dict[str, int]:
    """The size limits (MB) by Dify file type, from `system_parameters`."""
    return _sizes(params.get("system_parameters"))


def _sizes(system: Any) -> dict[str, int]:
    system = _dict(system)
    sizes: dict[str, int] = {}
    for kind, (key, default) in _SIZE_KEYS.items():
        value = system.get(key)
        sizes[kind] = value if isinstance(value, int) and value > 0 else default
    return sizes


def input_form(params: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The app's input variables by name: `{variable: {type, required, …}}`."""
    form: dict[str, dict[str, Any]] = {}
    entries = params.get("user_input_form")
    for item in entries if isinstance(entries, list) else []:
        for kind, entry in _dict(item).items():
            entry = _dict(entry)
            name = entry.get("variable")
            if isinstance(name, str) and name:
                form[name] = {"type": kind, **entry}
    return form


def missing_inputs(params: Mapping[str, Any], provided: Collection[str]) -> list[str]:
    """The required inputs of an app (`user_input_form`) that `provided` lacks. External
    data tools fill themselves in."""
    return [
        name
        for name, entry in input_form(params).items()
        if entry.get("required") and entry["type"] != "external_data_tool"
        if name not in provided
    ]


def provided_inputs(config: Config, app_name: str) -> set[str]:
    """Every input some route gives app `app_name`, plus what the gateway fills in itself
    (a workflow's or completion app's message and file variables)."""
    app = config.dify.apps[app_name]
    provided: set[str] = set()
    if app.mode in ("workflow", "completion"):
        provided.add(app.query_input)
    if app.file_input:
        provided.add(app.file_input)
    for route in config.routes:
        bots = [route.match.bot] if route.match.bot else list(config.bots)
        apps = {route.app} if route.app else {config.bots[b].app for b in bots if b in config.bots}
        if app_name in apps:
            provided.update(route.inputs)
    return provided


def required_inputs_not_provided(
    params: Mapping[str, Any], config: Config, app_name: str
) -> list[str]:
    """For `check --probe`: the app's required inputs that no route provides."""
    return missing_inputs(params, provided_inputs(config, app_name))


def opening_statement(params: Mapping[str, Any]) -> str | None:
    statement = params.get("opening_statement")
    return statement if isinstance(statement, str) and statement.strip() else None


def speech_to_text(params: Mapping[str, Any]) -> bool:
    """Whether the app transcribes voice (assumed so when Dify does not say)."""
    setting = params.get("speech_to_text")
    return not isinstance(setting, dict) or bool(setting.get("enabled", True))


def suggests_questions(params: Mapping[str, Any]) -> bool:
    """Whether the app suggests follow-up questions after an answer."""
    return bool(_dict(params.get("suggested_questions_after_answer")).get("enabled"))


class AppParameters:
    """`/parameters` per app, cached for `TTL_S`; {} (and a warning) when Dify fails."""

    def __init__(
        self,
        dify: DifyClient,
        apps: Mapping[str, DifyApp],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._dify = dify
        self._apps = apps
        self._clock = clock
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}

    async def get(self, app_name: str) -> dict[str, Any]:
        now = self._clock()
        cached = self._cache.get(app_name)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            params = await self._dify.parameters(self._apps[app_name], PARAMETERS_USER)
            self._cache[app_name] = (now + TTL_S, params)
        except DifyError as exc:
            log.warning("app %s: /parameters failed: %s", app_name, exc)
            params = cached[1] if cached is not None else {}
            self._cache[app_name] = (now + FAILED_TTL_S, params)
        return params
