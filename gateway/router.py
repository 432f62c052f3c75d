"""Routes: which Dify app answers a message, in which conversation, as which Dify `user`.

Decided at ack time, so the job that goes into the inbox is self-contained.

Dify binds a conversation to the `user` that started it, so in the shared scopes (`chat`,
`thread`) the Dify user belongs to the scope, not to whoever speaks (docs/configuration.md,
"Conversation scopes").
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config import Config, Route, Scope
from gateway.models import AnswerOptions, ChatType, InboundMessage, Job
from gateway.store import keys


@dataclass(frozen=True, slots=True)
class Decision:
    app: str
    scope: Scope
    require_mention: bool
    route: Route | None


class Router:
    def __init__(self, config: Config) -> None:
        self._routes = config.routes
        self._bots = config.bots
        self._defaults: dict[tuple[str, ChatType, bool], Decision] = {}
        # Built once per route: a job is made on the ack path, for every message.
        self._options = {id(route): _options(route) for route in config.routes}

    def route_for(self, message: InboundMessage) -> Route | None:
        """The first route that matches `message`, if any."""
        for candidate in self._routes:
            if _matches(candidate, message):
                return candidate
        return None

    def decide(self, message: InboundMessage, *, threaded_groups: bool) -> Decision:
        route = self.route_for(message)
        if route is None:
            key = (message.bot, message.chat_type, threaded_groups)
            cached = self._defaults.get(key)
            if cached is None:
                cached = self._defaults[key] = self._decision(message, None, threaded_groups)
            return cached
        return self._decision(message, route, threaded_groups)

    def _decision(
        self, message: InboundMessage, route: Route | None, threaded_groups: bool
    ) -> Decision:
        app = (route.app if route else None) or self._bots[message.bot].app
        scope = route.scope if route and route.scope else None
        if scope is None:
            if message.chat_type == ChatType.DIRECT:
                scope = "user"
            else:
                scope = "thread" if threaded_groups else "chat_user"
        require_mention = route.require_mention if route else True
        return Decision(app, scope, require_mention, route)

    def job(self, message: InboundMessage, decision: Decision, accepted_at: float) -> Job:
        key, user = conversation_key(message, decision.scope)
        route = decision.route
        return Job(
            job_id=message.bot + ":" + message.message_id,
            message=message,
            app=decision.app,
            scope=decision.scope,
            conversation_key=keys.conversation(decision.app, key),
            dify_user=user,
            input_templates=dict(route.inputs) if route is not None and route.inputs else {},
            options=_DEFAULT_OPTIONS if route is None else self._options[id(route)],
            accepted_at=accepted_at,
        )


_DEFAULT_OPTIONS = AnswerOptions()


def _options(route: Route) -> AnswerOptions:
    return AnswerOptions(
        show_tools=route.show_tools,
        show_progress=route.show_progress,
        reasoning=route.reasoning,
        citations=route.citations,
        show_usage=route.show_usage,
        feedback=route.feedback,
        suggestions=route.suggestions,
    )


def render_inputs(
    templates: dict[str, str], message: InboundMessage, user_name: str
) -> dict[str, str]:
    """Fill route input templates; their fields were validated when the config loaded."""
    fields = {
        "bot": message.bot,
        "platform": message.platform,
        "chat_id": message.chat_id,
        "chat_type": message.chat_type.value,
        "user_id": message.user_id,
        "user_name": user_name,
    }
    return {key: template.format_map(fields) for key, template in templates.items()}


def _matches(route: Route, message: InboundMessage) -> bool:
    m = route.match
    return (
        (m.bot is None or m.bot == message.bot)
        and (m.platform is None or m.platform == message.platform)
        and (m.chat is None or m.chat == message.chat_id)
        and (m.chat_type is None or m.chat_type == message.chat_type.value)
        and (m.user is None or m.user == message.user_id)
    )


def conversation_key(message: InboundMessage, scope: Scope) -> tuple[str, str]:
    """(scope key, Dify user) for a message in a scope."""
    bot, chat, speaker = message.bot, message.chat_id, f"{message.bot}:{message.user_id}"
    if scope == "user":
        return f"user:{speaker}", speaker
    if scope == "chat_user":
        return f"chat_user:{bot}:{chat}:{message.user_id}", speaker
    if scope == "chat":
        return f"chat:{bot}:{chat}", f"{bot}:chat:{chat}"
    # thread: a message outside any thread starts one (its replies thread under it).
    thread = message.thread_id or message.message_id
    return f"thread:{bot}:{chat}:{thread}", f"{bot}:thread:{chat}:{thread}"
