"""WeCom (企业微信) AI bot (`platform: wecom_bot`): JSON callbacks or a WebSocket, and
replies as a stream that WeCom pulls (webhook) or that the bot pushes (WebSocket)."""
