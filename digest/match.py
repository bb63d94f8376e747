"""Matching: which papers a filter selects, in which order, and why.

The query is parsed once.  For searches over the whole store, SQLite's FTS5
index narrows the candidates with a safe prefilter (``query.to_fts5``: quoted
strings only, never user syntax) and ``query.Corpus`` decides, so prefixes,
negations and the reported matched terms follow one set of rules everywhere.

Ranking: trending first (seen in more listings, then at a better position),
then relevance (BM25 over the candidates).  A subscriber's *pending* papers
are the matches first stored after their last digest (or within
``[digest] lookback_days`` when they have none) and not yet put in a digest.
"""

from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import lru_cache
from itertools import islice
from typing import Any

from digest.config import DigestConfig
from digest.models import PaperRow, Subscriber
from digest.query import (
    Corpus,
    Document,
    Explanation,
    Focus,
    Node,
    highlights,
    members,
    parse,
    to_fts5,
)
from digest.stemming import Stemmer
from digest.store import Store, iso


@lru_cache(maxsize=1)
def shared_stemmer() -> Stemmer:
    """One stem cache per process: every search and batch reuses the words already stemmed."""
    return Stemmer()


def documents(papers: Iterable[PaperRow]) -> list[Document]:
    """What the filter language sees of each paper: its title and abstract, and the
    authors and categories its sources gave (``author:``, ``category:``)."""
    return [Document(p.title, p.abstract, p.meta.authors, p.meta.categories) for p in papers]


@dataclass(frozen=True, slots=True)
class Match:
    """A paper selected by a query, with the terms it satisfied.

    ``spans``: the character spans of the abstract that the query's positive terms
    match, worked out (``highlighted``) only for the papers that go in a digest; the
    renderer marks them and never parses the filter itself.
    """

    paper: PaperRow
    matched: list[str]
    relevance: float
    spans: tuple[tuple[int, int], ...] = ()

    @property
    def score(self) -> float:
        """The trend score: listings seen in, plus a bonus below 1 for the best position."""
        return self.paper.times_seen + 1 / (1 + self.paper.best_position)

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.paper.id,
            "title": self.paper.title,
            "matched": self.matched,
            "score": round(self.score, 4),
            "relevance": round(self.relevance, 4),
            "times_seen": self.paper.times_seen,
            "best_position": self.paper.best_position,
            "first_seen": self.paper.first_seen,
        }


def trend_key(paper: PaperRow) -> tuple[int, int, int]:
    """What "trending" means, the one place it is said: more upvotes first (where a source
    gives them; none counts as 0), then more listings, then the better best position.
    Digests, previews and feeds sort by it (the store's ``trending_seqs`` says the same
    in SQL; a test keeps the two in step)."""
    return -(paper.meta.upvotes or 0), -paper.times_seen, paper.best_position


def trend_note(paper: PaperRow) -> str:
    """How a paper trended, in words: ``seen in 3 listings, best #2``, ``listed once at
    #5``, led by ``12 upvotes, `` where a source counted them."""
    if paper.times_seen > 1:
        note = f"seen in {paper.times_seen} listings, best #{paper.best_position}"
    else:
        note = f"listed once at #{paper.best_position}"
    votes = paper.meta.upvotes
    if votes:
        return f"{votes} upvote{'' if votes == 1 else 's'}, {note}"
    return note


def ranked(matches: Sequence[Match]) -> list[Match]:
    """Trending first, then relevance, then newest."""
    return sorted(
        matches,
        key=lambda m: (*trend_key(m.paper), -m.relevance, -m.paper.seq),
    )


def select(node: Node, papers: Sequence[PaperRow], stemmer: Stemmer) -> list[Match]:
    """The papers that ``node`` matches, ranked."""
    return top_matches(node, papers, stemmer, None).top


@dataclass(frozen=True, slots=True)
class Backtest:
    """What a filter selects: every matching paper (unranked), and the head of the ranking."""

    papers: list[PaperRow]
    top: list[Match]


def top_matches(
    node: Node, papers: Sequence[PaperRow], stemmer: Stemmer, limit: int | None
) -> Backtest:
    """The papers ``node`` matches, and the first ``limit`` of them ranked (all when None).

    Trend decides before relevance, so only the papers whose trend can reach the
    first ``limit`` places get their relevance and matched terms computed: a
    preview of a filter matching thousands of papers costs what its head costs.
    """
    corpus = Corpus(stemmer, documents(papers), Focus.of(node, stemmer))
    hits = list(members(corpus.evaluate(node)))
    contenders = _trend_head(hits, papers, limit)
    head = ranked(
        [Match(papers[i], corpus.matched(node, i), corpus.relevance(node, i)) for i in contenders]
    )
    return Backtest([papers[i] for i in hits], head[:limit] if limit is not None else head)


def _trend_head(hits: list[int], papers: Sequence[PaperRow], limit: int | None) -> list[int]:
    """The hits whose trend is at least as good as that of the ``limit``-th best."""
    if limit is None:
        return hits
    order = sorted(hits, key=lambda i: trend_key(papers[i]))
    return _contenders(order, limit, lambda i: trend_key(papers[i]))


def search(
    store: Store,
    query: str | None,
    *,
    since: datetime | None = None,
    limit: int | None = None,
    stemmer: Stemmer | None = None,
) -> list[PaperRow]:
    """All papers newest first, or those matching ``query`` ranked as a digest would
    (streamed: only the first ``limit`` are ever held)."""
    if query is None:
        return store.papers(since=since, limit=limit)
    from digest.backtest import Streamed  # it builds on this module

    found = (m.paper for m in Streamed(store, query, since=since, stemmer=stemmer).ranked())
    return list(islice(found, limit))


def backtest(
    store: Store, query: str, *, since: datetime | None = None, stemmer: Stemmer | None = None
) -> list[Match]:
    """What ``query`` selects among the stored papers, ranked (all of it in a list: callers
    that may see a whole store use ``backtest.Streamed``)."""
    from digest.backtest import Streamed  # it builds on this module

    return list(Streamed(store, query, since=since, stemmer=stemmer).ranked())


def by_day(papers: Iterable[PaperRow]) -> list[tuple[str, int]]:
    """How many papers per ingest day (UTC date of first sighting), oldest day first."""
    days = Counter(paper.first_seen[:10] for paper in papers)
    return sorted(days.items())


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


@dataclass(frozen=True, slots=True)
class Pending:
    """A subscriber's next digest: the papers in it and how many more matched.

    ``matches`` is ranked; from ``Batch`` it holds only the head of the ranking
    that can reach the cap (``total`` counts them all).
    """

    subscriber: Subscriber
    window: str
    matches: list[Match]
    capped: list[Match]
    total: int

    @property
    def more(self) -> int:
        return self.total - len(self.capped)


def pending(
    store: Store,
    subscriber: Subscriber,
    settings: DigestConfig,
    now: datetime,
    stemmer: Stemmer | None = None,
) -> Pending:
    """The papers that would go in this subscriber's next digest."""
    node = parse(subscriber.filter)
    window = _window(store, subscriber, settings, now)
    candidates = store.papers(
        since=window.since,
        after_seq=window.after_seq,
        undelivered_to=subscriber.id,
        fts=to_fts5(node),
    )
    stemmer = stemmer or shared_stemmer()
    matches = select(node, candidates, stemmer)
    capped = highlighted(node, matches[: settings.max_papers], stemmer)
    return Pending(subscriber, window.description, matches, capped, len(matches))


def highlighted(node: Node, matches: Sequence[Match], stemmer: Stemmer) -> list[Match]:
    """``matches`` with the spans of their abstracts that ``node`` matched."""
    return [
        replace(m, spans=tuple(highlights(node, m.paper.abstract, stemmer, "abstract")))
        for m in matches
    ]


def beyond(
    store: Store,
    subscriber: Subscriber,
    digest: dict[str, Any],
    settings: DigestConfig,
    stemmer: Stemmer | None = None,
) -> list[Match]:
    """The papers a recorded digest counted in its "more", ranked: the matches of its
    window (from ``store.digest_by_mark``) that went in no digest.

    A window is never matched again once its digest is built, so these reach the
    reader nowhere else; the private feed holds only the newest ``max_entries``.
    """
    node = compile_filter(subscriber.filter)
    built = datetime.fromisoformat(digest["created_at"])
    window = Window.of(digest["after_seq"], settings.lookback_days, built)
    candidates = store.papers(
        since=window.since,
        after_seq=window.after_seq,
        undelivered_to=subscriber.id,
        fts=to_fts5(node),
    )
    inside = [paper for paper in candidates if paper.seq <= digest["max_seq"]]
    return select(node, inside, stemmer or shared_stemmer())


def _window(store: Store, subscriber: Subscriber, settings: DigestConfig, now: datetime) -> Window:
    last = store.last_digest(subscriber.id)
    if last is None:
        return Window.of(None, settings.lookback_days, now)
    return Window.of(int(last["max_seq"]), settings.lookback_days, now, last["created_at"])


@lru_cache(maxsize=200_000)
def compile_filter(query: str) -> Node:
    """Parse a stored filter once per process: subscribers share filters, cycles repeat them."""
    return parse(query)


@lru_cache(maxsize=1)
def window_corpus(stemmer: Stemmer, documents: tuple[Document, ...]) -> Corpus:
    """The last window indexed, kept for the next run: between two ingests every poll
    sees the same window papers (only who is due changes), and indexing them is most of
    the cost of a send.  A corpus is a pure function of its documents, so sharing it is safe.
    """
    return Corpus(stemmer, documents)


RECEIVING = ("active",)  # the statuses whose subscribers can be due a digest


class Batch:
    """Match many subscribers at once against one corpus of candidate papers.

    The candidates are every paper that is in at least one subscriber's window;
    each subscriber's filter is evaluated as a bitset over them and narrowed to
    their own window and to what they were not yet sent.
    """

    def __init__(
        self,
        store: Store,
        settings: DigestConfig,
        now: datetime,
        stemmer: Stemmer | None = None,
        also: Subscriber | None = None,
    ) -> None:
        """The windows of the subscribers who can be due (active), and of ``also`` (a
        preview of anyone): an unsubscribed or paused subscriber's old last digest
        never widens the window, nor are their deliveries read."""
        self.settings = settings
        self.now = now
        self.also = also.id if also is not None else None
        self.last_seqs = store.last_digest_seqs(RECEIVING, self.also)
        first = Window.of(None, settings.lookback_days, now)
        assert first.since is not None
        floor = min(self.last_seqs.values(), default=None)
        self.papers = store.window_papers(floor, first.since)
        self.seqs = [p.seq for p in self.papers]
        self.corpus = window_corpus(stemmer or shared_stemmer(), tuple(documents(self.papers)))
        first_seq = self.seqs[0] if self.seqs else None
        self.delivered = (
            store.delivered_since(first_seq, RECEIVING, self.also, in_window=True)
            if first_seq is not None
            else {}
        )
        self.fresh = sum(1 << i for i, p in enumerate(self.papers) if first.holds(p))

    def bits(self, subscriber: Subscriber) -> int:
        """The candidates this subscriber would get: filter, window, not yet delivered."""
        window = self.window(subscriber)
        found = self.corpus.evaluate(compile_filter(subscriber.filter)) & self._bits(window)
        for seq in self.delivered.get(subscriber.id, ()):
            at = bisect_left(self.seqs, seq)
            if at < len(self.seqs) and self.seqs[at] == seq:
                found &= ~(1 << at)
        return found

    def window(self, subscriber: Subscriber) -> Window:
        if subscriber.status not in RECEIVING and subscriber.id != self.also:
            raise ValueError(f"the batch does not cover {subscriber.status} {subscriber.email}")
        return Window.of(self.last_seqs.get(subscriber.id), self.settings.lookback_days, self.now)

    def _bits(self, window: Window) -> int:
        """``window`` over the corpus: every paper in it has ``Window.holds``."""
        if window.after_seq is None:
            return self.fresh
        return self.corpus.all & ~((1 << bisect_right(self.seqs, window.after_seq)) - 1)

    def pending(self, subscriber: Subscriber) -> Pending:
        """The subscriber's next digest, ranked and capped.

        Terms and relevance are worked out only for the papers that can reach
        the cap: those trending ahead of the cut and those tied with it.
        """
        node = compile_filter(subscriber.filter)
        papers = self.papers
        found = sorted(members(self.bits(subscriber)), key=lambda i: trend_key(papers[i]))
        head = _contenders(found, self.settings.max_papers, lambda i: trend_key(papers[i]))
        matches = ranked(
            [
                Match(papers[i], self.corpus.matched(node, i), self.corpus.relevance(node, i))
                for i in head
            ]
        )
        window = self.window(subscriber).description
        capped = highlighted(node, matches[: self.settings.max_papers], self.corpus.stemmer)
        return Pending(subscriber, window, matches, capped, len(found))


def _contenders(by_trend: list[int], cap: int, key: Callable[[int], tuple[int, ...]]) -> list[int]:
    """The items ahead of the cap's cut in trend order, and those tied with the last one in."""
    if len(by_trend) <= cap:
        return by_trend
    cut = key(by_trend[cap - 1])
    end = cap
    while end < len(by_trend) and key(by_trend[end]) == cut:
        end += 1
    return by_trend[:end]


@dataclass(frozen=True, slots=True)
class Verdict:
    """``digest explain``: whether a paper is in a subscriber's next digest, and why."""

    included: bool
    reasons: list[str]
    explanation: Explanation


def explain(
    store: Store,
    subscriber: Subscriber,
    paper: PaperRow,
    settings: DigestConfig,
    now: datetime,
    stemmer: Stemmer | None = None,
) -> Verdict:
    """Say in words why ``paper`` is or is not in the subscriber's next digest."""
    node = parse(subscriber.filter)
    corpus = Corpus(stemmer or shared_stemmer(), documents([paper]))
    why = corpus.explain(node, 0)
    reasons = _filter_reasons(why, subscriber.filter)
    delivered = store.delivery(subscriber.id, paper.seq)
    if delivered is not None:
        reasons.append(
            f"already put in digest #{delivered['digest_id']} on {delivered['created_at'][:10]} "
            f"({delivered['status']})"
        )
    in_window = _in_window(store, subscriber, paper, settings, now, reasons)
    receiving = subscriber.status == "active"
    if not receiving:
        reasons.append(f"the subscriber is {subscriber.status}: no digest is sent to them")
    if why.matches and delivered is None and in_window and receiving:
        included, position = _rank_in_pending(store, subscriber, paper, settings, now, stemmer)
        reasons.append(position)
    else:
        included = False
    return Verdict(included, reasons, why)


def _filter_reasons(why: Explanation, query: str) -> list[str]:
    reasons = []
    if why.matched:
        reasons.append(f"matched: {', '.join(why.matched)}")
    if why.missing:
        reasons.append(f"missing: {', '.join(why.missing)}")
    if why.excluded_by:
        reasons.append(f"excluded by NOT: {', '.join(why.excluded_by)}")
    verdict = "matches" if why.matches else "does not match"
    reasons.insert(0, f"the filter {query!r} {verdict} this paper")
    return reasons


def _in_window(
    store: Store,
    subscriber: Subscriber,
    paper: PaperRow,
    settings: DigestConfig,
    now: datetime,
    reasons: list[str],
) -> bool:
    window = _window(store, subscriber, settings, now)
    inside = window.holds(paper)
    if not inside:
        reasons.append(
            f"first seen {paper.first_seen[:10]}, outside the window: {window.description}"
        )
    return inside


def _rank_in_pending(
    store: Store,
    subscriber: Subscriber,
    paper: PaperRow,
    settings: DigestConfig,
    now: datetime,
    stemmer: Stemmer | None,
) -> tuple[bool, str]:
    """Whether the paper makes the cap of the next digest, and where it ranks, in words."""
    upcoming = pending(store, subscriber, settings, now, stemmer)
    rank = next(i for i, m in enumerate(upcoming.matches, start=1) if m.paper.seq == paper.seq)
    if rank > settings.max_papers:
        cap = settings.max_papers
        place = f"beyond the cap of {cap} (on the digest's more page)"
        return False, f"ranked {rank} of {len(upcoming.matches)}: {place}"
    return True, f"in the next digest at position {rank} of {len(upcoming.capped)}"
