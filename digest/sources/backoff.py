"""When to ask a source again: its interval, doubled after each failure in a row, capped.

Pure.  After ``failures`` consecutive failures the wait is
``every * 2 ** (failures - 1)`` (so the first failure costs nothing extra:
one bad response is often the server's passing trouble), capped at
``8 * every`` and, for long intervals, at a day; never less than ``every``.
Eight times the interval means an hourly source that keeps failing is still
tried three times a day, and a daily one never waits more than a day.  A
server's ``Retry-After`` that asks for longer wins (itself at most a day).
"""

from datetime import datetime, timedelta

DAY = timedelta(days=1)
GROWTH_MAX = 8


def backoff(every: timedelta, failures: int) -> timedelta:
    """The wait after ``failures`` failures in a row (0: none, the plain interval)."""
    if failures <= 1:
        return every
    cap = max(every, min(every * GROWTH_MAX, DAY))
    # Grow in float seconds: 2 ** failures overflows a timedelta long before the cap stops it.
    grown = every.total_seconds() * 2.0 ** min(failures - 1, 64)
    return min(timedelta(seconds=min(grown, cap.total_seconds())), cap)


def next_attempt(
    last_attempt: datetime, every: timedelta, failures: int, retry_after: float | None
) -> datetime:
    """The earliest time to fetch again; never sooner than ``every`` after ``last_attempt``."""
    wait = backoff(every, failures)
    if retry_after is not None and retry_after > 0:
        wait = max(wait, timedelta(seconds=min(retry_after, DAY.total_seconds())))
    return last_attempt + wait
