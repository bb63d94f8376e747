"""The backtest preview: what a filter would have sent over the last days, before committing.

Shown under the subscribe form and on the manage page: papers per day (every day
of the window, zeros included, so a quiet filter looks quiet) and the top matches
ranked as a digest ranks them.
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from itertools import islice

from digest import match
from digest.backtest import Streamed
from digest.dates import weekday_month_day
from digest.paper_links import byline, links_of
from digest.store import Store
from digest.subscribers import check_filter

TOP = 10
DAYS = 7  # when no [digest] lookback_days is given


@dataclass(frozen=True, slots=True)
class PreviewPaper:
    id: str
    title: str
    url: str
    byline: str  # "A, B and C", or empty when no source named the authors
    badge: str
    matched: str
    first_seen: str


@dataclass(frozen=True, slots=True)
class Preview:
    query: str
    days: list[tuple[str, int]]  # ("Mon Nov 24", papers first seen that day), oldest first
    top: list[PreviewPaper]
    total: int

    @property
    def most(self) -> int:
        return max((count for _, count in self.days), default=0)


def preview(store: Store, query: str, now: datetime, paper_link: str, days: int = DAYS) -> Preview:
    """The backtest of ``query`` over the last ``days`` UTC days; raises QueryError.

    The filter must be one a subscriber may store (``check_filter``): its limits
    bound what a search costs, whoever asks for one.
    """
    check_filter(query)
    today = now.astimezone(UTC).date()
    first = today - timedelta(days=days - 1)
    since = datetime.combine(first, time(), tzinfo=UTC)
    found = Streamed(store, query, since=since)
    tally = found.tally()
    counts = dict(tally.days)
    shown = [first + timedelta(days=i) for i in range(days)]
    return Preview(
        query=query,
        days=[(_label(day.isoformat()), counts.get(day.isoformat(), 0)) for day in shown],
        top=[_paper(m, paper_link) for m in islice(found.ranked(), TOP)],
        total=tally.total,
    )


def _paper(found: match.Match, paper_link: str) -> PreviewPaper:
    paper = found.paper
    badge = match.trend_note(paper)
    return PreviewPaper(
        id=paper.id,
        title=paper.title,
        url=links_of(paper, paper_link).abstract_url,
        byline=byline(paper.meta.authors),
        badge=badge,
        matched=", ".join(found.matched),
        first_seen=_label(paper.first_seen[:10]),
    )


def _label(day: str) -> str:
    """``2026-11-24`` -> ``Tue Nov 24``, whatever the locale."""
    return weekday_month_day(date.fromisoformat(day))
