"""One log line per step of a message's life: accepted, Dify's first token, the first update
the user saw, and delivered or failed, with the latencies.

Every line carries the message's trace id, the very value sent to Dify as `X-Trace-Id`
(`gateway.dify.trace_id_header` of the job id), so one search joins the gateway's lines with
each other and with Dify's trace of the same question. With `logging.format: json` the
fields (`event`, `bot`, `chat`, `trace_id`, the latencies) are keys of the JSON object
(gateway/logs.py); in text they are written into the line as `key=value`.

Message text never goes into these lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from gateway.dify import trace_id_header
from gateway.logs import one_line
from gateway.models import Job

log = logging.getLogger("gateway.message")


def _line(
    event: str, job: Job, level: int = logging.INFO, *, later: bool = False, **measures: float | str
) -> None:
    """Log one step. `later`: write it on the event loop's next turn (the time in it is
    still now), so that a step on the ack path never waits for stderr."""
    if not log.isEnabledFor(level):
        return
    message = job.message
    fields: dict[str, object] = {
        "event": event,
        "bot": message.bot,
        "chat": message.chat_id,
        "trace_id": trace_id_header(job.job_id),
    }
    fields.update(measures)
    text = " ".join(
        f"{key}={value:.3f}" if isinstance(value, float) else f"{key}={one_line(value, 100)}"
        for key, value in fields.items()
        if key != "event"
    )
    record = log.makeRecord(log.name, level, __file__, 0, "message %s: %s", (event, text), None)
    record.__dict__.update(fields)
    if later:
        with contextlib.suppress(RuntimeError):  # no loop running: write it now
            asyncio.get_running_loop().call_soon(log.handle, record)
            return
    log.handle(record)


def accepted(job: Job) -> None:
    """The message is kept: called on the ack path, so written after the ack."""
    _line("accepted", job, later=True, app=job.app)


def first_token(job: Job, seconds: float) -> None:
    """Dify's first text, `seconds` after the question was sent to it."""
    _line("first_token", job, dify_s=seconds)


def first_update(job: Job, seconds: float) -> None:
    """The first thing the user saw, `seconds` after the ack."""
    _line("first_update", job, since_ack_s=seconds)


# Results that end an answer with an error notice; any other result (ok, a command's or a
# notice's reply, a refusal by the limits) was delivered as meant.
FAILED = frozenset({"dify_error", "deadline", "attachment_error", "error"})


def finished(job: Job, result: str, seconds: float) -> None:
    """The answer's end: `failed` when `result` is an error (dify_error, deadline, …), else
    `delivered` with the result; `seconds` since the ack."""
    if result in FAILED:
        _line("failed", job, logging.WARNING, result=result, total_s=seconds)
    else:
        _line("delivered", job, result=result, total_s=seconds)
