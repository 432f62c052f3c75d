"""From a bot's `platform` to its adapter class.

Imports are lazy, so a deployment that uses only Slack never imports (or pays for) the other
platforms' modules.
"""

from __future__ import annotations

import importlib
from typing import Any

from adapters.base import Adapter, AdapterContext

ADAPTERS: dict[str, str] = {
    "slack": "adapters.slack.adapter:SlackAdapter",
    "feishu": "adapters.feishu.adapter:FeishuAdapter",
    "lark": "adapters.feishu.adapter:FeishuAdapter",
    "wecom": "adapters.wecom.app_adapter:WecomAppAdapter",
    "wecom_bot": "adapters.wecom.bot_adapter:WecomBotAdapter",
    "dingtalk": "adapters.dingtalk.adapter:DingtalkAdapter",
}


def adapter_class(platform: str) -> Any:
    module_name, _, class_name = ADAPTERS[platform].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def create_adapter(bot: str, config: Any, context: AdapterContext) -> Adapter:
    """Build the adapter for one configured bot: `Class(bot, config, context)`."""
    adapter: Adapter = adapter_class(config.platform)(bot, config, context)
    return adapter
