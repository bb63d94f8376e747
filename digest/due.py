"""Who is due a digest now: daily, 20 hours after their last one; weekly, on
``[digest] weekly_day`` and six days after their last one; only active subscribers."""

from collections.abc import Mapping
from datetime import datetime, timedelta

from digest.config import Config
from digest.models import Subscriber
from digest.store import Store, iso

DAILY_GAP = timedelta(hours=20)
WEEKLY_GAP = timedelta(days=6)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def is_due(subscriber: Subscriber, last_built: str | None, config: Config, now: datetime) -> bool:
    """Daily: no digest in the last 20 hours. Weekly: on ``weekly_day``, none in 6 days."""
    if subscriber.status != "active":
        return False
    gap = DAILY_GAP
    if subscriber.frequency == "weekly":
        if WEEKDAYS[now.weekday()] != config.digest.weekly_day:
            return False
        gap = WEEKLY_GAP
    return last_built is None or last_built <= iso(now - gap)


def due_subscribers(
    store: Store,
    config: Config,
    now: datetime,
    only: str | None = None,
    last: Mapping[int, str] | None = None,
) -> tuple[list[Subscriber], int]:
    """The active subscribers due a digest now, and how many active ones are not.

    ``last`` is the snapshot of last-digest times to decide by (read now when None).
    """
    last = store.last_digest_times() if last is None else last
    active = [
        s for s in store.subscribers(["active"]) if only is None or s.email.lower() == only.lower()
    ]
    due = [s for s in active if is_due(s, last.get(s.id), config, now)]
    return due, len(active) - len(due)
