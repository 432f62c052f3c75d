"""Every platform the gateway speaks, in one table: the adapter that serves it, its default
API base and the language its users read by default.

The core names each adapter by import path and imports it only when a configured bot uses
that platform. So the core never depends on `adapters/` (a layers contract checks that in
CI), and a deployment that only uses Slack never loads (or pays for) the other platforms.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast

if TYPE_CHECKING:
    from gateway.platform import Adapter, AdapterContext

Locale = Literal["en", "zh-CN"]


@dataclass(frozen=True, slots=True)
class PlatformInfo:
    adapter: str  # "module:Class"; the class is called as `Class(bot, bot_config, context)`
    api_base: str  # the default `api_base` of its bots
    locale: Locale  # the default `locale` of its bots


PLATFORMS: dict[str, PlatformInfo] = {
    "slack": PlatformInfo("adapters.slack.adapter:SlackAdapter", "https://slack.com/api", "en"),
    "feishu": PlatformInfo(
        "adapters.feishu.adapter:FeishuAdapter", "https://open.feishu.cn", "zh-CN"
    ),
    "lark": PlatformInfo(
        "adapters.feishu.adapter:FeishuAdapter", "https://open.larksuite.com", "en"
    ),
    "wecom": PlatformInfo(
        "adapters.wecom.adapter:WecomAppAdapter", "https://qyapi.weixin.qq.com", "zh-CN"
    ),
    "wecom_bot": PlatformInfo(
        "adapters.wecom_bot.adapter:WecomBotAdapter", "wss://openws.work.weixin.qq.com", "zh-CN"
    ),
    "dingtalk": PlatformInfo(
        "adapters.dingtalk.adapter:DingtalkAdapter", "https://api.dingtalk.com", "zh-CN"
    ),
    # The web chat calls no platform API: the gateway serves the page and socket itself.
    "web": PlatformInfo("adapters.web.adapter:WebAdapter", "", "en"),
}

AdapterFactory = Callable[[str, Any, "AdapterContext"], "Adapter"]


def adapter_factory(platform: str) -> AdapterFactory:
    """The adapter class of `platform`, imported on first use."""
    module_name, _, class_name = PLATFORMS[platform].adapter.partition(":")
    return cast(AdapterFactory, getattr(importlib.import_module(module_name), class_name))


def create_adapter(bot: str, config: Any, context: AdapterContext) -> Adapter:
    """Build the adapter for one configured bot (`config` is its `BotConfig`)."""
    return adapter_factory(config.platform)(bot, config, context)
