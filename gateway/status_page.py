"""The status page (`GET /status`, docs/operating.md "Status page"): one HTML document with
its style inline and its charts as inline SVG, so it needs no network beyond this instance.
It refreshes itself every `REFRESH_S` seconds (a meta refresh: no script at all).

It shows what this instance knows: its bots' connections and the messages it answered
(gateway/activity.py). Behind a load balancer each instance shows its own view, and the page
says so. Message texts appear only with `server.status_show_text: true`.

Access: off (404) unless `server.status_token` is set; then the token must come as
`Authorization: Bearer <token>` or `?token=<token>` (401 otherwise), compared in constant
time. The edge (gateway/http.py) serves it; this module only decides and renders.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import html
import os
import socket
import time
from base64 import b64encode
from collections.abc import Mapping, Sequence
from importlib import resources

from gateway.activity import Activity, HourPoint, Record
from gateway.bot_state import BotState
from gateway.config import Route

REFRESH_S = 15
TOKEN_PARAM = "token"


def authorized(token: str, headers: Mapping[str, str], query: Mapping[str, str]) -> bool:
    """Whether the request carries `token`, as a bearer token or `?token=`."""
    header = headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    candidates = [given.strip()] if scheme.lower() == "bearer" else []
    candidates.append(query.get(TOKEN_PARAM, ""))
    expected = token.encode()
    # compare_digest on every candidate, so the time taken does not tell which one was close.
    return any([hmac.compare_digest(c.encode(), expected) for c in candidates if c])


@functools.cache
def _style() -> str:
    return resources.files("gateway").joinpath("status.css").read_text(encoding="utf-8")


def content_security_policy() -> str:
    digest = b64encode(hashlib.sha256(_style().encode()).digest()).decode()
    return f"default-src 'none'; style-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'"


def instance_name() -> str:
    return f"{socket.gethostname()} (pid {os.getpid()})"


# --- small formatters ------------------------------------------------------------------------

_e = html.escape
_STATE_PILL = {"up": "ok", "retrying": "bad", "starting": "warn", "stopped": "idle"}
_OUTCOME_PILL = {
    "ok": "ok",
    "reset": "idle",
    "help": "idle",
    "notice": "idle",
    "refused": "warn",
    "rate_limited": "warn",
}


def _clock(at: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(at))


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min"
    return f"{seconds // 3600:.0f} h {seconds % 3600 // 60:.0f} min"


def _pill(text: str, kind: str) -> str:
    return f'<span class="pill {kind}">{_e(text)}</span>'


def _table(head: Sequence[str], rows: Sequence[str], empty: str) -> str:
    if not rows:
        return f'<p class="muted">{_e(empty)}</p>'
    # A heading ending in " #" heads a column of numbers (right-aligned).
    header = "".join(
        f'<th class="num">{_e(h[:-2])}</th>' if h.endswith(" #") else f"<th>{_e(h)}</th>"
        for h in head
    )
    return f'<div class="scroll"><table><tr>{header}</tr>{"".join(rows)}</table></div>'


# --- the parts of the page -------------------------------------------------------------------


def _chart(title: str, points: Sequence[float | None], kind: str, total: str) -> str:
    """A bar chart of 60 minutes, oldest left, scaled to its largest value."""
    width, height, gap = 600, 80, 2
    top = max((p for p in points if p), default=0.0) or 1.0
    step = width / max(len(points), 1)
    bars = []
    for i, value in enumerate(points):
        if not value:
            continue
        h = max(2.0, value / top * (height - 4))
        bars.append(
            f'<rect class="bar {kind}" x="{i * step + gap / 2:.1f}" y="{height - h:.1f}" '
            f'width="{step - gap:.1f}" height="{h:.1f}"><title>{value:g}</title></rect>'
        )
    svg = (
        f'<svg viewBox="0 0 {width} {height}" preserveAspectRatio="none" role="img" '
        f'aria-label="{_e(title)}">{"".join(bars)}'
        f'<line class="base" x1="0" y1="{height - 0.5}" x2="{width}" y2="{height - 0.5}"/></svg>'
    )
    return (
        f'<div class="chart"><div class="title"><span>{_e(title)}</span><b>{_e(total)}</b></div>'
        f'{svg}<div class="axis"><span>60 min ago</span><span>now</span></div></div>'
    )


def _summary(hour: Sequence[HourPoint], p95: float | None, bots: Sequence[BotState]) -> str:
    answers = sum(p.answers for p in hour)
    errors = sum(p.errors for p in hour)
    up = sum(b.up for b in bots)
    cards = [
        ("Answers, last hour", f"{answers:,}", ""),
        ("Errors, last hour", f"{errors:,}", " bad" if errors else ""),
        ("p95 answer time", _seconds(p95), ""),
        ("Bots up", f"{up} / {len(bots)}", " bad" if up < len(bots) else ""),
    ]
    body = "".join(
        f'<div class="card"><div class="label">{_e(label)}</div>'
        f'<div class="value{cls}">{_e(value)}</div></div>'
        for label, value, cls in cards
    )
    charts = "".join(
        (
            _chart("Answers per minute", [p.answers for p in hour], "", f"{answers:,}"),
            _chart("Errors per minute", [p.errors for p in hour], "bad", f"{errors:,}"),
            _chart(
                "p95 answer time per minute",
                [p.p95_s for p in hour],
                "p95",
                _seconds(p95),
            ),
        )
    )
    return f'<div class="cards">{body}</div><h2>Last hour</h2><div class="charts">{charts}</div>'


def _bots(bots: Sequence[BotState], now: float) -> str:
    rows = []
    for b in bots:
        since = f"{_duration(max(0.0, now - b.since))} ago"
        error = f'<td class="error">{_e(b.last_error)}</td>' if b.last_error else "<td></td>"
        rows.append(
            f"<tr><td><b>{_e(b.bot)}</b></td>"
            f"<td>{_pill(b.state, _STATE_PILL.get(b.state, 'idle'))}</td>"
            f'<td>{_e(b.platform)} <span class="muted">· {_e(b.mode)}</span></td>'
            f'<td class="muted">{_e(since)}</td>{error}</tr>'
        )
    head = ("Bot", "Connection", "Platform · mode", "Since", "Last error")
    return _table(head, rows, "No bots configured.")


def _access(route: Route) -> str:
    parts = [
        f"{name.replace('_', ' ')}: {len(values)}"
        for name in ("allow_users", "deny_users", "allow_chats", "deny_chats")
        if (values := getattr(route, name))
    ]
    return ", ".join(parts) or "everyone"


def _routes(routes: Sequence[Route]) -> str:
    rows = []
    for i, route in enumerate(routes):
        match = " ".join(f"{k}={v}" for k, v in route.match.keys().items()) or "everything"
        limit = route.user_rate_limit_per_minute
        app = route.app or "the bot's app"
        rows.append(
            f'<tr><td class="num">{i}</td><td><code>{_e(match)}</code></td>'
            f"<td>{_e(app)}</td><td>{_e(route.scope or 'default')}</td>"
            f"<td>{_e(f'{limit}/min per user' if limit else 'none')}</td>"
            f"<td>{_e(_access(route))}</td></tr>"
        )
    head = ("# #", "Match", "App", "Scope", "Rate limit", "Access")
    return _table(head, rows, "No routes: every bot answers with its own app, for everyone.")


def _recent(bot: str, records: Sequence[Record], show_text: bool) -> str:
    rows = []
    for r in records:
        kind = "bad" if r.failed else _OUTCOME_PILL.get(r.outcome, "idle")
        text = f'<td class="text">{_e(r.text or "")}</td>' if show_text else ""
        rows.append(
            f'<tr><td class="muted">{_clock(r.at)}</td>'
            f"<td>{_pill(r.outcome.replace('_', ' '), kind)}</td><td>{_e(r.chat_type)}</td>"
            f'<td class="num">{_seconds(r.first_update_s)}</td>'
            f'<td class="num">{_seconds(r.total_s)}</td>{text}</tr>'
        )
    head = ["Time (UTC)", "Outcome", "Chat", "First update #", "Total #"]
    if show_text:
        head.append("Message")
    body = _table(head, rows, "No messages answered by this instance yet.")
    return f'<h3 id="bot-{_e(bot)}">{_e(bot)}</h3>{body}'


def render(
    *,
    bots: Sequence[BotState],
    routes: Sequence[Route],
    activity: Activity,
    show_text: bool,
    instance: str,
    now: float | None = None,
) -> str:
    now = time.time() if now is None else now
    hour = activity.hour()
    recent = "".join(_recent(b.bot, activity.recent(b.bot), show_text) for b in bots)
    hidden = "" if show_text else ", text hidden"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="{REFRESH_S}">
<meta name="referrer" content="no-referrer">
<title>dify-gateway status · {_e(instance)}</title>
<style>{_style()}</style></head>
<body><header><h1>dify-gateway status</h1>
<p>Instance <b>{_e(instance)}</b> · {time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now))}
· refreshes every {REFRESH_S} s</p></header>
<main><p class="note">This page shows <b>this instance only</b>. With several instances behind
a load balancer, each shows its own view: the connections of its bots and the messages it
answered.</p>
{_summary(hour, activity.hour_p95(), bots)}
<h2>Bots</h2>{_bots(bots, now)}
<h2>Routes</h2>{_routes(routes)}
<h2>Recent messages <span class="muted">(last 50 per bot{hidden})</span></h2>
{recent}
<footer>Latencies count from the moment the message was accepted. The charts and messages are
kept in memory and start empty when the instance restarts.</footer></main></body></html>
"""
