"""The YAML config: pydantic models, `${VAR}` interpolation, errors that name the key.

Interpolation runs on the parsed YAML tree, not on the text, so a secret holding `:` or `#`
cannot break the YAML, and a substituted value stays a string that the schema converts
(`agent_id: ${WECOM_AGENT_ID}` works; a secret `0123` keeps its leading zero).
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from gateway.registry import PLATFORMS, Locale
from gateway.store.redis_url import is_cluster, parse_cluster_url

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
TEMPLATE_FIELDS = ("bot", "platform", "chat_id", "chat_type", "user_id", "user_name")
Scope = Literal["user", "chat", "chat_user", "thread"]


class ConfigError(Exception):
    """One or more config mistakes, each as `key.path: what is wrong`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- server, store, dify -----------------------------------------------------------------


class ServerConfig(_Strict):
    host: str = "0.0.0.0"
    port: int = Field(8080, ge=0, le=65535)
    max_body_bytes: int = Field(1_048_576, gt=0)
    shutdown_grace_s: float = Field(30.0, ge=0)
    max_concurrent_answers: int = Field(4096, ge=1)
    # Connections to a Redis store per instance; when all are busy, a command waits for one.
    store_max_connections: int = Field(64, ge=2)
    # Unanswered messages the inbox holds per instance; past it webhooks get 503.
    max_queued_answers: int = Field(10_000, ge=1)
    # A request (headers and body) must arrive within this, else its connection is closed.
    read_timeout_s: float = Field(30.0, gt=0)
    # A kept-alive connection idle for this long is closed.
    keepalive_timeout_s: float = Field(75.0, gt=0)
    # Inbound connections open at once; more wait to be accepted.
    max_connections: int = Field(4096, ge=1)
    # GET /status (docs/operating.md, "Status page"): served only when a token is set.
    status_token: SecretStr | None = None
    # Whether the status page shows the text of recent messages (not by default: privacy).
    status_show_text: bool = False

    @field_validator("status_token")
    @classmethod
    def _status_token(cls, value: SecretStr | None) -> SecretStr | None:
        # `${STATUS_TOKEN:-}` with the variable unset means "no status page".
        if value is None or not value.get_secret_value():
            return None
        if len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters (e.g. `openssl rand -hex 32`)")
        return value


class LoggingConfig(_Strict):
    # text: one readable line per event; json: one JSON object per line (time, level, bot,
    # chat, trace_id, event, message), for log pipelines (docs/operating.md, "Logs").
    format: Literal["text", "json"] = "text"


class InboxConfig(_Strict):
    lease_s: float = Field(15.0, ge=1.0, le=600.0)
    max_attempts: int = Field(3, ge=1, le=100)
    # Redis only: how many stream shards the inbox is split into. Every instance must use
    # the same number; change it only with the inbox empty.
    shards: int = Field(16, ge=1, le=1024)


class DifyApp(_Strict):
    base_url: str = "https://api.dify.ai/v1"
    api_key: SecretStr
    mode: Literal["chat", "agent", "chatflow", "workflow", "completion"] = "chat"
    timeout_s: float = Field(300.0, gt=0)
    # Workflow and completion apps take the message in an input variable, not `query`.
    query_input: str = Field("query", min_length=1)
    # Workflow apps: the input variable (a `file` or `file-list`) that gets the user's files;
    # without one they go in the legacy top-level `files` (`sys.files`).
    file_input: str | None = None
    # Workflow apps: the output that is the answer when nothing streamed; by default the one
    # text output, or a short list of all of them.
    output_key: str | None = None
    # Where root-relative file links (`/files/…`) are fetched from, when `base_url` is not
    # reachable that way (e.g. Dify's API is proxied under another path or host).
    files_base_url: str | None = None

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("files_base_url")
    @classmethod
    def _files_url(cls, value: str | None) -> str | None:
        return None if value is None else cls._http_url(value)

    @property
    def files_origin(self) -> str:
        """What a root-relative file link is appended to: `files_base_url`, else the API
        base without its `/v1` (the files blueprint is served at the origin)."""
        return self.files_base_url or self.base_url.removesuffix("/v1")


class DifyConfig(_Strict):
    apps: dict[str, DifyApp] = Field(min_length=1)


# --- bots, one model per platform --------------------------------------------------------


def _url(value: str | None) -> str | None:
    if value is None:
        return None
    if not re.match(r"^(https?|wss?)://[^/\s]+", value):
        raise ValueError("must be an http(s):// or ws(s):// URL")
    return value.rstrip("/")


class _Bot(_Strict):
    platform: str
    app: str
    api_base: str | None = None
    # The language of every text the bot writes itself (not the app's answers).
    locale: Locale | None = None
    # Questions the whole bot takes per minute, on all instances together (0: no limit).
    rate_limit_per_minute: int = Field(0, ge=0)

    @field_validator("api_base")
    @classmethod
    def _check_api_base(cls, value: str | None) -> str | None:
        return _url(value)

    # (field, reason) pairs that this bot's mode needs but that are unset.
    def missing_for_mode(self) -> list[tuple[str, str]]:
        return []

    @property
    def mode_name(self) -> str:
        return str(getattr(self, "mode", "webhook"))

    @property
    def serves_webhook(self) -> bool:
        return True

    @property
    def resolved_api_base(self) -> str:
        return self.api_base or PLATFORMS[self.platform].api_base

    @property
    def resolved_locale(self) -> Locale:
        return self.locale or PLATFORMS[self.platform].locale


def _need(bot: BaseModel, fields: tuple[str, ...], why: str) -> list[tuple[str, str]]:
    return [(f, why) for f in fields if getattr(bot, f) is None]


class SlackBot(_Bot):
    platform: Literal["slack"]
    mode: Literal["events", "socket"] = "events"
    bot_token: SecretStr
    signing_secret: SecretStr | None = None
    app_token: SecretStr | None = None

    def missing_for_mode(self) -> list[tuple[str, str]]:
        if self.mode == "socket":
            return _need(self, ("app_token",), "required when mode is socket (xapp-… token)")
        return _need(self, ("signing_secret",), "required when mode is events")

    @property
    def serves_webhook(self) -> bool:
        return self.mode == "events"


class FeishuBot(_Bot):
    platform: Literal["feishu", "lark"]
    mode: Literal["webhook", "websocket"] = "webhook"
    app_id: str
    app_secret: SecretStr
    verification_token: SecretStr | None = None
    encrypt_key: SecretStr | None = None

    def missing_for_mode(self) -> list[tuple[str, str]]:
        if self.mode == "webhook":
            return _need(self, ("verification_token",), "required when mode is webhook")
        return []

    @property
    def serves_webhook(self) -> bool:
        return self.mode == "webhook"


# WeCom signs each callback's timestamp (msg_signature covers it), so a callback older or
# further ahead than `max_timestamp_age_s` is refused. It must stay well inside the 8 h
# dedupe window: a replay young enough to pass is then always a duplicate.
_MAX_WECOM_TIMESTAMP_AGE = 4 * 3600


def _aes_key(value: SecretStr | None) -> SecretStr | None:
    if value is not None and not re.fullmatch(r"[A-Za-z0-9+/]{43}", value.get_secret_value()):
        raise ValueError("must be the 43-character EncodingAESKey from the WeCom console")
    return value


class WecomBot(_Bot):
    platform: Literal["wecom"]
    corp_id: str
    agent_id: int
    secret: SecretStr
    token: SecretStr
    encoding_aes_key: SecretStr
    max_timestamp_age_s: int = Field(3600, ge=60, le=_MAX_WECOM_TIMESTAMP_AGE)

    @field_validator("encoding_aes_key")
    @classmethod
    def _check_aes(cls, value: SecretStr | None) -> SecretStr | None:
        return _aes_key(value)


class WecomAIBot(_Bot):
    platform: Literal["wecom_bot"]
    mode: Literal["webhook", "websocket"] = "webhook"
    token: SecretStr | None = None
    encoding_aes_key: SecretStr | None = None
    bot_id: str | None = None
    secret: SecretStr | None = None
    max_timestamp_age_s: int = Field(3600, ge=60, le=_MAX_WECOM_TIMESTAMP_AGE)

    @field_validator("encoding_aes_key")
    @classmethod
    def _check_aes(cls, value: SecretStr | None) -> SecretStr | None:
        return _aes_key(value)

    def missing_for_mode(self) -> list[tuple[str, str]]:
        if self.mode == "websocket":
            return _need(self, ("bot_id", "secret"), "required when mode is websocket")
        return _need(self, ("token", "encoding_aes_key"), "required when mode is webhook")

    @property
    def serves_webhook(self) -> bool:
        return self.mode == "webhook"


class DingtalkBot(_Bot):
    platform: Literal["dingtalk"]
    mode: Literal["stream", "http"] = "stream"
    client_id: str
    client_secret: SecretStr
    robot_code: str | None = None
    card_template_id: str | None = None

    @property
    def serves_webhook(self) -> bool:
        return self.mode == "http"

    @property
    def resolved_robot_code(self) -> str:
        return self.robot_code or self.client_id


class WebBot(_Bot):
    """The web chat (`adapters/web/`, docs/web.md): a page and a WebSocket of the gateway's
    own, for a site or app to embed."""

    platform: Literal["web"]
    # token: the embedding site signs each user's JWT with `signing_secret` (HS256);
    # none: anyone who reaches the page may chat, as any user id (demos, trusted networks).
    auth: Literal["token", "none"] = "token"
    signing_secret: SecretStr | None = None
    # Messages one socket may send per minute; past it, each gets an error frame.
    messages_per_minute: int = Field(20, ge=1, le=10_000)

    @field_validator("signing_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters (e.g. `openssl rand -hex 32`)")
        return value

    def missing_for_mode(self) -> list[tuple[str, str]]:
        if self.auth == "token":
            return _need(self, ("signing_secret",), "required when auth is token")
        return []

    @property
    def mode_name(self) -> str:
        return f"auth:{self.auth}"

    @property
    def serves_webhook(self) -> bool:
        return False

    @staticmethod
    def paths(name: str) -> tuple[str, str]:
        """The chat page and the WebSocket of the web bot `name`."""
        return f"/chat/{name}", f"/chat/{name}/ws"


BotConfig = Annotated[
    SlackBot | FeishuBot | WecomBot | WecomAIBot | DingtalkBot | WebBot,
    Field(discriminator="platform"),
]


# --- routes ------------------------------------------------------------------------------


class RouteMatch(_Strict):
    bot: str | None = None
    platform: str | None = None
    chat: str | None = None
    chat_type: Literal["direct", "group"] | None = None
    user: str | None = None

    def keys(self) -> dict[str, str]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


Reasoning = Literal["hide", "collapse", "show"]


class Route(_Strict):
    match: RouteMatch = RouteMatch()
    app: str | None = None
    scope: Scope | None = None
    require_mention: bool = True
    inputs: dict[str, str] = {}
    # What the answer shows besides the app's text (docs/configuration.md, "Routes").
    show_tools: bool = False  # a "Used: web_search, calculator" line under an agent's answer
    show_progress: bool = True  # the running workflow node's title while nothing streamed
    reasoning: Reasoning = "hide"  # the model's <think> text: dropped, folded or shown
    citations: bool = True  # the knowledge-base documents the answer drew on
    show_usage: bool = False  # tokens and latency in a small footer
    # Limits and access (docs/operating.md, "Limits and access"): questions per user per
    # minute (0: no limit); who may use the route (an empty allow list lets everyone in).
    user_rate_limit_per_minute: int = Field(0, ge=0)
    allow_users: tuple[str, ...] = ()
    deny_users: tuple[str, ...] = ()
    allow_chats: tuple[str, ...] = ()
    deny_chats: tuple[str, ...] = ()
    # What the answer offers, where the platform has buttons (docs/configuration.md).
    feedback: bool = True  # 👍/👎 under the answer, sent to Dify as the message's rating
    suggestions: bool = True  # the app's suggested follow-up questions, when it has them on


class Config(_Strict):
    server: ServerConfig = ServerConfig()
    store: str = "sqlite:///dify-gateway.db"
    logging: LoggingConfig = LoggingConfig()
    inbox: InboxConfig = InboxConfig()
    dify: DifyConfig
    bots: dict[str, BotConfig] = {}
    routes: list[Route] = []

    @field_validator("store")
    @classmethod
    def _store_url(cls, value: str) -> str:
        if is_cluster(value):
            parse_cluster_url(value)  # its ValueError names what is wrong
        elif not re.match(r"^(memory://|sqlite:///.+|rediss?://.+)", value):
            raise ValueError(
                "must be memory://, sqlite:///path/to/file.db, redis://host:6379/0 "
                "or redis+cluster://host1:7000,host2:7001"
            )
        return value


# --- loading -----------------------------------------------------------------------------

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _interpolate(node: Any, path: str, env: Mapping[str, str], problems: list[str]) -> Any:
    if isinstance(node, dict):
        return {k: _interpolate(v, _join(path, k), env, problems) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate(v, f"{path}[{i}]", env, problems) for i, v in enumerate(node)]
    if not isinstance(node, str) or "${" not in node:
        return node

    def substitute(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        problems.append(f"{path or '<root>'}: environment variable {name} is not set")
        return ""

    return _VAR.sub(substitute, node)


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _loc_path(loc: tuple[int | str, ...]) -> str:
    parts = list(loc)
    # The discriminated union puts the platform tag in the location: bots.<name>.<tag>.key
    if len(parts) > 2 and parts[0] == "bots" and parts[2] in PLATFORMS:
        del parts[2]
    out = ""
    for p in parts:
        out = f"{out}[{p}]" if isinstance(p, int) else _join(out, p)
    return out or "<root>"


def _describe(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    if kind == "missing":
        return "field required"
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "union_tag_invalid":
        platform = error["input"].get("platform")
        return f"unknown platform {platform!r} (one of {', '.join(PLATFORMS)})"
    if kind == "union_tag_not_found":
        return f"platform: field required (one of {', '.join(PLATFORMS)})"
    msg = str(error["msg"]).removeprefix("Value error, ")
    return msg[:1].lower() + msg[1:]


def _template_fields(template: str) -> Iterator[str]:
    for _, field, _, _ in string.Formatter().parse(template):
        if field is not None:
            yield field


def _cross_check(cfg: Config) -> list[str]:
    problems: list[str] = []
    apps = cfg.dify.apps
    for name in [*apps, *cfg.bots]:
        if not re.match(NAME_PATTERN, name):
            problems.append(f"{name}: names may use letters, digits, '-', '_' and '.'")
    for name, bot in cfg.bots.items():
        if bot.app not in apps:
            problems.append(f"bots.{name}.app: no Dify app named {bot.app!r}")
        for field, why in bot.missing_for_mode():
            problems.append(f"bots.{name}.{field}: {why}")
    for i, route in enumerate(cfg.routes):
        where = f"routes[{i}]"
        if route.app is not None and route.app not in apps:
            problems.append(f"{where}.app: no Dify app named {route.app!r}")
        if route.match.bot is not None and route.match.bot not in cfg.bots:
            problems.append(f"{where}.match.bot: no bot named {route.match.bot!r}")
        if route.match.platform is not None and route.match.platform not in PLATFORMS:
            problems.append(f"{where}.match.platform: unknown platform {route.match.platform!r}")
        for key, template in route.inputs.items():
            try:
                unknown = [f for f in _template_fields(template) if f not in TEMPLATE_FIELDS]
            except ValueError as exc:
                problems.append(f"{where}.inputs.{key}: {exc}")
                continue
            if unknown:
                problems.append(
                    f"{where}.inputs.{key}: unknown field {{{unknown[0]}}} "
                    f"(use {', '.join('{' + f + '}' for f in TEMPLATE_FIELDS)})"
                )
    return problems


def parse_config(data: Any, env: Mapping[str, str] | None = None) -> Config:
    """Validate an already-parsed YAML tree. Raises `ConfigError` naming every bad key."""
    if not isinstance(data, dict):
        raise ConfigError(["<root>: the config must be a YAML mapping"])
    problems: list[str] = []
    data = _interpolate(data, "", os.environ if env is None else env, problems)
    if problems:
        raise ConfigError(problems)
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            [f"{_loc_path(e['loc'])}: {_describe(e)}" for e in exc.errors()]
        ) from None
    problems = _cross_check(cfg)
    if problems:
        raise ConfigError(problems)
    return cfg


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the config file ({exc.strerror})"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError([f"{path}:{where}: {problem}"]) from None
    return parse_config(data, env)


def default_config_path() -> str:
    return os.environ.get("DIFY_GATEWAY_CONFIG") or "config/gateway.yaml"
