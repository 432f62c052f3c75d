"""The durable inbox: accept (claim and keep, atomically, before the ack), then work on this
instance's share of the kept jobs until each is answered. `durable.py` is the whole story;
`scheduler.py` runs jobs in order per conversation; `feed.py` is what a store provides
(`gateway/store/redis_inbox.py` for several instances)."""

from gateway.inbox.durable import Inbox, Progress, Undeliverable
from gateway.inbox.feed import InboxFull, JobFeed, JobRecord

__all__ = ["Inbox", "InboxFull", "JobFeed", "JobRecord", "Progress", "Undeliverable"]
