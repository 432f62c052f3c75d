"""How a question's answer ends: delivered, or failed with words the user understands.

A failure ends the answer in place: the words go under whatever was already shown (the
stream's `fail`), and the result label names it for the metrics, the log line and the
status page. The texts themselves are in gateway/words.py (`dify_failure` maps Dify's
errors to them).

One failure is not the answer's: a store that is away before the first word (reading the
conversation or a token). The attempt is abandoned without a word and the inbox tries the
job again, in the same platform message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from gateway.attachments import AttachmentFailed
from gateway.config import DifyApp
from gateway.dify import DeadlineExceeded, DifyError
from gateway.metrics import Metrics
from gateway.models import Job
from gateway.store.base import StoreUnavailable
from gateway.streaming import AnswerStream
from gateway.words import Words, dify_failure

log = logging.getLogger(__name__)

T = TypeVar("T")


async def finish_or_fail(
    job: Job,
    app: DifyApp,
    stream: AnswerStream,
    *,
    words: Words,
    metrics: Metrics,
    ask: Callable[[], Awaitable[T]],
) -> tuple[str, T | None]:
    """Run `ask` within the app's deadline, then finish the stream: ("ok", what `ask`
    returned), or the failure's result label and None once its words are shown."""
    try:
        async with asyncio.timeout(app.timeout_s):
            asked = await ask()
    except TimeoutError:
        metrics.dify_errors.labels(job.app, "deadline").inc()
        late = DeadlineExceeded(f"no answer within {app.timeout_s:.0f}s")
        await stream.fail(dify_failure(words, late))
        return "deadline", None
    except DifyError as exc:
        log.warning("answer %s: %s", job.job_id, exc)
        metrics.dify_errors.labels(job.app, type(exc).__name__).inc()
        await stream.fail(dify_failure(words, exc))
        return "dify_error", None
    except AttachmentFailed:  # the only content was a file that could not be read
        await stream.fail(words.unreadable_file)
        return "attachment_error", None
    except StoreUnavailable:
        # The store is away, not the answer broken: no words, the inbox tries again.
        stream.abandon()
        raise
    except Exception:
        log.exception("answer %s failed", job.job_id)
        await stream.fail(words.something_went_wrong)
        return "error", None
    await stream.finish()
    return "ok", asked
