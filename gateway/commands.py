"""The commands a user sends as the whole message, and where their jobs wait.

- `/reset` starts a new conversation; `/help` lists the commands. Both wait their turn in
  the conversation's queue like any message (a `/reset` sent after a question must not
  overtake it).
- `/stop` stops the answer being written. The inbox runs a conversation's jobs one at a
  time, so a `/stop` queued behind the answer it is about would wait for it to end: it waits
  in a lane of its own (`Job.lane`). A `/reset` sent while an answer is written also stops
  that answer first, through a second, quiet job in such a lane.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

from gateway.models import Action, Job

Command = Literal["/reset", "/help", "/stop"]
COMMANDS: tuple[Command, ...] = ("/reset", "/help", "/stop")
# The job of a `/reset` that stops the answer being written: its id and dedupe keys are the
# message's with this suffix, so a platform's retry of the `/reset` finds both claimed.
STOP_BEFORE_RESET = "#stop"


_LONGEST = max(map(len, COMMANDS))


def command(text: str) -> Command | None:
    """The command `text` is, if it is one (case and surrounding spaces do not matter)."""
    # On the ack path for every message: a long text is no command, and is not copied to
    # find that out (strip() returns the text itself when there is nothing to strip).
    word = text.strip()
    if len(word) > _LONGEST or not word.startswith("/"):
        return None
    word = word.lower()
    for known in COMMANDS:
        if word == known:
            return known
    return None


def own_lane(job: Job) -> str:
    """A lane no other job shares: the job waits for nothing."""
    return "lane:" + job.job_id


def stop_before_reset(job: Job) -> Job:
    """The quiet `/stop` that goes ahead of a `/reset`."""
    job_id = job.job_id + STOP_BEFORE_RESET
    action = Action(kind="stop", answer_id="", value="reset")
    return replace(
        job,
        job_id=job_id,
        message=replace(job.message, action=action),
        lane="lane:" + job_id,
    )


def needs_own_lane(job: Job) -> bool:
    """`/stop`, a Stop button and a rating change nothing in the conversation, and must not
    wait behind the answer they are about."""
    action = job.message.action
    if action is not None:
        return action.kind in ("feedback", "stop")
    return command(job.message.text) == "/stop" and not job.message.attachments
