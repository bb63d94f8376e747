"""Windows: which papers a subscriber's next digest draws from, and how one send reads the
windows of every due subscriber without holding the papers of the widest in memory.

A window (``Window``) is the papers stored after the subscriber's last digest, or
first seen within ``[digest] lookback_days`` before a first one.  On a daily list
most due subscribers had a digest yesterday, so their windows start at the same
recent paper; a few (new subscribers, those back from a pause) reach far back.
A send indexes once only the papers after a shared cut (``shared_cut``: nine in
ten due windows start at or after it), and matches the papers before it for the
few windows that reach them a chunk at a time (``older_matches``).  So memory holds
today's papers and one chunk of older ones, whatever the window's size, and the
cost of a run follows subscribers x new papers.
"""

from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

from digest.models import PaperRow
from digest.query import Corpus, Document, Focus, Node, Stats, members
from digest.stemming import Stemmer
from digest.store import iso

WIDE_SHARE = 10  # at most one due window in this many starts before the shared cut
OLDER_CHUNK = 1_000  # older papers indexed at once, for the windows that reach them

TrendKey = Callable[[PaperRow], tuple[int, ...]]
T = TypeVar("T")


def documents(papers: Iterable[PaperRow]) -> list[Document]:
    """What the filter language sees of each paper: its title and abstract, and the
    authors and categories its sources gave (``author:``, ``category:``)."""
    return [Document(p.title, p.abstract, p.meta.authors, p.meta.categories) for p in papers]


@dataclass(frozen=True, slots=True)
class Window:
    """The papers a subscriber's next digest draws from, the one rule for every matcher:
    those stored after their last digest, or, before a first digest, those first seen
    in the ``lookback_days`` before ``now``."""

    after_seq: int | None
    since: datetime | None
    description: str

    @classmethod
    def of(
        cls, last_seq: int | None, lookback_days: int, now: datetime, last_at: str = ""
    ) -> "Window":
        """``last_seq``: the newest paper the subscriber's last digest considered, if any."""
        if last_seq is not None:
            when = f" ({last_at})" if last_at else ""
            return cls(last_seq, None, f"since the last digest{when}")
        since = now - timedelta(days=lookback_days)
        return cls(None, since, f"the last {lookback_days} days (no digest yet)")

    def holds(self, paper: PaperRow) -> bool:
        return (self.after_seq is None or paper.seq > self.after_seq) and (
            self.since is None or paper.first_seen >= iso(self.since)
        )

    def start(self, first_fresh: int) -> int:
        """The seq after which every paper of the window lies; ``first_fresh``: the first
        paper first seen since ``since`` (before a first digest)."""
        return self.after_seq if self.after_seq is not None else first_fresh - 1


def shared_cut(starts: Iterable[int]) -> int | None:
    """The seq after which a batch indexes every paper: the start of the window that
    nine in ten due windows do not reach behind (the earliest start when fewer than
    ``WIDE_SHARE`` are due, so that a small run has no wide window at all)."""
    ordered = sorted(starts)
    return ordered[len(ordered) // WIDE_SHARE] if ordered else None


def contenders(by_trend: list[T], cap: int, key: Callable[[T], tuple[int, ...]]) -> list[T]:
    """The items ahead of the cap's cut in trend order, and those tied with the last one in."""
    if len(by_trend) <= cap:
        return by_trend
    cut = key(by_trend[cap - 1])
    end = cap
    while end < len(by_trend) and key(by_trend[end]) == cut:
        end += 1
    return by_trend[:end]


def trend_head(items: Iterable[T], cap: int, key: Callable[[T], tuple[int, ...]]) -> list[T]:
    """``items`` in trend order (``key``), up to the cap's last and those tied with it."""
    return contenders(sorted(items, key=key), cap, key)


class Stopped(BaseException):
    """The older pass was stopped (SIGTERM) before its end: no digest of a wide window can
    be built in this run, and they stay due.  Not an ``Exception``: it fails nobody's digest."""


@dataclass(frozen=True, slots=True)
class Wide:
    """A due window that starts before the shared cut, and what its subscriber was sent
    of it already."""

    subscriber_id: int
    node: Node
    window: Window
    start: int
    delivered: frozenset[int]


@dataclass(slots=True)
class Older:
    """What a wide window holds before the cut: how many matches not sent yet, BM25's
    statistics over them (``query.Stats``), and those whose trend can reach the cap."""

    total: int = 0
    stats: Stats | None = None
    head: list[PaperRow] = field(default_factory=list)

    def add(self, found: list[PaperRow], stats: Stats, cap: int, key: TrendKey) -> None:
        """Count a chunk's matches in and cut the head again: memory keeps what can still
        reach the cap, whatever the number of matches."""
        self.total += len(found)
        self.stats = stats if self.stats is None else self.stats + stats
        self.head = trend_head([*self.head, *found], cap, key)


def older_matches(
    chunks: Iterable[list[PaperRow]],
    wide: Sequence[Wide],
    stemmer: Stemmer,
    cap: int,
    key: TrendKey,
    stopping: Callable[[], bool] = lambda: False,
) -> dict[int, Older]:
    """The matches of each wide window among the papers before the cut, streamed in
    ``chunks`` (oldest first): each chunk is indexed for the filters of the windows
    that reach it (``Focus``: their words only), then dropped.  ``stopping`` is asked
    between chunks: the pass takes seconds when many windows reach far back, and a
    stop must not wait for it (``Stopped``)."""
    found = {w.subscriber_id: Older() for w in wide}
    foci = {w.node: Focus.of(w.node, stemmer) for w in wide}
    for papers in chunks:
        if stopping():
            raise Stopped
        reaching = [w for w in wide if w.start < papers[-1].seq]
        if not reaching:
            continue
        focus = Focus.union(foci[node] for node in {w.node for w in reaching})
        corpus = Corpus(stemmer, documents(papers), focus)
        seqs = [p.seq for p in papers]
        fresh: dict[datetime | None, int] = {}
        for w in reaching:
            bits = corpus.evaluate(w.node) & _inside(w, papers, seqs, fresh)
            for seq in w.delivered:
                at = bisect_right(seqs, seq) - 1
                if at >= 0 and seqs[at] == seq:
                    bits &= ~(1 << at)
            if bits:
                hits = list(members(bits))
                stats = corpus.tally(w.node, bits, hits)
                found[w.subscriber_id].add([papers[i] for i in hits], stats, cap, key)
    return found


def _inside(
    w: Wide, papers: list[PaperRow], seqs: list[int], fresh: dict[datetime | None, int]
) -> int:
    """The chunk's papers in the window (``Window.holds``), as bits; ``fresh`` keeps the
    chunk's papers first seen since each ``since`` asked."""
    since = w.window.since
    if since not in fresh:
        held = (since is None or p.first_seen >= iso(since) for p in papers)
        fresh[since] = sum(1 << i for i, holds in enumerate(held) if holds)
    return fresh[since] & ~((1 << bisect_right(seqs, w.start)) - 1)
