"""The web chat (`platform: web`): a chat page and a WebSocket the gateway serves itself, for
a site or an app to embed. docs/web.md describes the frames and how to mint tokens."""
