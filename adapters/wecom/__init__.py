"""WeCom (企业微信): the self-built app adapter (`platform: wecom`, `app_*.py`), the AI-bot
adapter (`platform: wecom_bot`), and the callback crypto they share (`crypto.py`)."""
