"""Backtests that stream: what a filter selects over a whole store, in flat memory.

A backtest (``digest match --query``, ``papers --search``, the web preview) may
run over every stored paper.  The store narrows the candidates first
(``query.to_narrowing``: the FTS5 index, a substring for prefixes, papers with
authors for ``author:``) and hands them over in chunks, most trending first; each
chunk is indexed on its own (``Corpus``), so memory holds one chunk and the
matches of one trend, whatever the store's size.

The order is the digest's (``match.ranked``): trend, then relevance, then
newest.  Since the chunks arrive in trend order, a trend's matches are complete
when the next trend begins, and only they are sorted by relevance.  Relevance
is BM25 with the statistics of *all* the matches, counted in a first pass
(``query.Stats``), so it is the same number the all-in-memory ranking gave; a
caller that needs no relevance (counts per day) makes only that pass, or none
when the FTS5 index decides the filter exactly (``by_day``).

Papers already in hand are ranked in one go (``select``, ``top_matches``): a
filter's candidates the FTS5 prefilter let through, or the papers a digest
counted in its "more" (``beyond``).
"""

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import groupby, islice
from typing import Any

from digest.config import DigestConfig
from digest.match import Match, compile_filter, ranked_head, shared_stemmer, trend_key
from digest.models import PaperRow, Subscriber
from digest.query import (
    Corpus,
    Focus,
    Node,
    Stats,
    fts5_decides,
    members,
    parse,
    to_fts5,
    to_narrowing,
)
from digest.stemming import Stemmer
from digest.store import Store
from digest.windows import Window, documents, trend_head

CHUNK = 2_000  # papers indexed at once: a few MB of corpus


@dataclass(frozen=True, slots=True)
class Tally:
    """The first pass: how many papers match, per ingest day, and BM25's statistics."""

    total: int
    days: list[tuple[str, int]]
    stats: Stats | None


class Streamed:
    """One filter over the stored papers (``since``: first seen since then)."""

    def __init__(
        self,
        store: Store,
        query: str,
        *,
        since: datetime | None = None,
        stemmer: Stemmer | None = None,
        chunk: int = CHUNK,
    ) -> None:
        self.store = store
        self.node = parse(query)
        self.since = since
        self.stemmer = stemmer or shared_stemmer()
        self.chunk = chunk
        self._tally: Tally | None = None

    def tally(self) -> Tally:
        """Count the matches (per day) and the candidates' statistics: one pass, no ranking."""
        if self._tally is None:
            days: Counter[str] = Counter()
            stats = None
            for corpus, papers, hits in self._chunks(None):
                days.update(papers[i].first_seen[:10] for i in hits)
                found = corpus.tally(self.node, corpus.evaluate(self.node))
                stats = found if stats is None else stats + found
            self._tally = Tally(days.total(), sorted(days.items()), stats)
        return self._tally

    def by_day(self) -> list[tuple[str, int]]:
        """The matches per ingest day, oldest day first (``by_day``): counted by the
        store alone when its FTS5 index decides the filter (``query.fts5_decides``), else
        by the evaluator over the candidates (``tally``)."""
        fts = to_fts5(self.node)
        if self._tally is None and fts is not None and fts5_decides(self.node):
            return self.store.days_matching(fts, since=self.since)
        return self.tally().days

    def ranked(self) -> Iterator[Match]:
        """Every match, in the digest's order, as the chunks come."""
        stats = self.tally().stats
        matches = (
            Match(papers[i], terms, corpus.relevance(self.node, i))
            for corpus, papers, hits in self._chunks(stats)
            for i, terms in zip(hits, corpus.matched_each(self.node, hits), strict=True)
        )
        for _, tied in groupby(matches, key=lambda m: trend_key(m.paper)):
            yield from sorted(tied, key=lambda m: -m.relevance)  # stable: newest first within

    def _chunks(self, stats: Stats | None) -> Iterator[tuple[Corpus, list[PaperRow], list[int]]]:
        """Each chunk of candidates indexed, with the positions of its matches in stream order."""
        focus = Focus.of(self.node, self.stemmer)
        narrowing = to_narrowing(self.node)
        for papers in self.store.trending_chunks(
            since=self.since, narrowing=narrowing, chunk=self.chunk
        ):
            corpus = Corpus(self.stemmer, documents(papers), focus, stats)
            yield corpus, papers, sorted(members(corpus.evaluate(self.node)))


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
    found = (m.paper for m in Streamed(store, query, since=since, stemmer=stemmer).ranked())
    return list(islice(found, limit))


def backtest(
    store: Store, query: str, *, since: datetime | None = None, stemmer: Stemmer | None = None
) -> list[Match]:
    """What ``query`` selects among the stored papers, ranked (all of it in a list: callers
    that may see a whole store use ``backtest.Streamed``)."""
    return list(Streamed(store, query, since=since, stemmer=stemmer).ranked())


# filters over papers in hand (a window's, a digest's "more") ------------------------


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
    found = corpus.evaluate(node)
    hits = list(members(found))
    head = ranked_head(corpus, node, papers, (found, hits), _trend_head(hits, papers, limit))
    return Backtest([papers[i] for i in hits], head[:limit] if limit is not None else head)


def _trend_head(hits: list[int], papers: Sequence[PaperRow], limit: int | None) -> list[int]:
    """The hits whose trend is at least as good as that of the ``limit``-th best."""
    if limit is None:
        return hits
    return trend_head(hits, limit, lambda i: trend_key(papers[i]))


def by_day(papers: Iterable[PaperRow]) -> list[tuple[str, int]]:
    """How many papers per ingest day (UTC date of first sighting), oldest day first."""
    days = Counter(paper.first_seen[:10] for paper in papers)
    return sorted(days.items())


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
