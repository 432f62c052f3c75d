"""WeCom (企业微信) self-built app (`platform: wecom`): XML callbacks and `message/send`.
Its callback crypto (`crypto.py`) is shared with the AI bot (`adapters/wecom_bot/`)."""
