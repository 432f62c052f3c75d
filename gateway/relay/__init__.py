"""The relay: answers each job the durable inbox hands it, with the bot's adapter on one
side and the Dify app on the other. It knows no platform; the adapter knows no Dify.

- `jobs.py`: `Relay`, what a job is (refused by the limits, a notice, a command, a click,
  the answer to a form, or a question) and who answers it.
- `replies.py`: every job's reply stream, opened where its checkpoint left it, and the
  bookkeeping once it is done (metrics, the log line, the status page).
- `dify_run.py`: asking the app, and how the run's events become the answer.
- `failures.py`: how a failed answer ends (the words the user reads, the result label).
- `context.py`: what a question takes along (inputs, the greeting) and what its answer
  keeps (the conversation id; the app's files, fetched at once).
"""

from gateway.relay.jobs import Relay

__all__ = ["Relay"]
