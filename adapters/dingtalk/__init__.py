"""DingTalk (钉钉) robots: Stream mode (WebSocket, the default) and HTTP callbacks, replies
as markdown messages or streamed into an AI card."""
