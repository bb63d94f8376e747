"""Matching: which papers a filter selects, in which order, and why.

The query is parsed once.  For searches over the whole store, SQLite's FTS5
index narrows the candidates with a safe prefilter (``query.to_fts5``: quoted
strings only, never user syntax) and ``query.Corpus`` decides, so prefixes,
negations and the reported matched terms follow one set of rules everywhere.

Ranking: trending first (seen in more listings, then at a better position),
then relevance (BM25 over the candidates); for a reader whose relevance model
was trained (``digest.relevance``), the model's score first and trending after,
with a few suggestions the filter missed.  A subscriber's *pending* papers
are the matches first stored after their last digest (or within
``[digest] lookback_days`` when they have none) and not yet put in a digest.
"""

from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property, lru_cache
from heapq import nsmallest

from digest.config import DigestConfig
from digest.errors import QueryError
from digest.models import PaperRow, Subscriber
from digest.query import (
    Corpus,
    Document,
    Focus,
    Node,
    Stats,
    highlighter,
    members,
    parse,
    to_fts5,
)
from digest.relevance import scorer_for
from digest.stemming import Stemmer
from digest.store import Store
from digest.windows import (
    OLDER_CHUNK,
    Older,
    Wide,
    Window,
    contenders,
    documents,
    older_matches,
    shared_cut,
    trend_head,
)


@lru_cache(maxsize=1)
def shared_stemmer() -> Stemmer:
    """One stem cache per process: every search and batch reuses the words already stemmed."""
    return Stemmer()


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


def learned_key(score: float, paper: PaperRow) -> tuple[float, int, int, int]:
    """A reader's model orders their papers: its score to two decimals, then trending."""
    return (-round(score, 2), *trend_key(paper))


SUGGEST_ABOVE = 0.5  # a suggestion is a paper the reader's model thinks more likely liked than not
SHORTLIST = 64  # the best-scored papers looked at first for a reader's suggestions


@dataclass(frozen=True, slots=True)
class Suggestion:
    """A paper the filter did not match that the reader's model scores high ("You may also
    like"), and ``because``: the title of the liked paper nearest to it."""

    match: Match
    score: float
    because: str


def ranked(matches: Sequence[Match]) -> list[Match]:
    """Trending first, then relevance, then newest."""
    return sorted(
        matches,
        key=lambda m: (*trend_key(m.paper), -m.relevance, -m.paper.seq),
    )


def ranked_head(
    corpus: Corpus,
    node: Node,
    papers: Sequence[PaperRow],
    found: tuple[int, Sequence[int]],
    head: Iterable[int],
    *,
    ties_only: bool = False,
) -> list[Match]:
    """The matches ``head`` of all those ``found`` (as bits and as indexes), ranked: relevance
    with the statistics of what was found, the one rule (``query.Stats``) of every ranking."""
    return ranked(_matches(corpus, node, papers, found, list(head), ties_only=ties_only))


def _matches(
    corpus: Corpus,
    node: Node,
    papers: Sequence[PaperRow],
    found: tuple[int, Sequence[int]],
    head: list[int],
    *,
    ties_only: bool,
    stats: Stats | None = None,
) -> list[Match]:
    """The matches ``head``, in that order, with their terms and relevance.

    ``ties_only`` (a send, where nothing shows relevance): only the papers whose trend
    ties with another's, the only ones it can order, get it; the others get 0.0.
    ``stats``: BM25's statistics when the corpus holds only part of what was found.
    """
    tied = head
    if ties_only:
        keys = Counter(trend_key(papers[i]) for i in head)
        tied = [i for i in head if keys[trend_key(papers[i])] > 1]
    if stats is None and tied:
        stats = corpus.tally(node, *found)
    relevance = {i: corpus.relevance(node, i, stats) for i in tied}
    terms = corpus.matched_each(node, head)
    return [Match(papers[i], t, relevance.get(i, 0.0)) for i, t in zip(head, terms, strict=True)]


@dataclass(frozen=True, slots=True)
class Pending:
    """A subscriber's next digest: the papers in it and how many more matched.

    ``matches`` is ranked; from ``Batch`` it holds only the head of the ranking
    that can reach the cap (``total`` counts them all).  ``learned``: ranked by the
    reader's model; ``suggestions``: what it adds that the filter did not match.
    """

    subscriber: Subscriber
    window: str
    matches: list[Match]
    capped: list[Match]
    total: int
    learned: bool = False
    suggestions: tuple[Suggestion, ...] = ()

    @property
    def more(self) -> int:
        return self.total - len(self.capped)


def pending(
    store: Store,
    subscriber: Subscriber,
    settings: DigestConfig,
    now: datetime,
    stemmer: Stemmer | None = None,
    *,
    whole: bool = True,
) -> Pending:
    """The papers that would go in this subscriber's next digest: a batch of one (with
    ``whole``, every match ranked, not only those that can reach the cap)."""
    return Batch(store, settings, now, stemmer, also=subscriber).pending(subscriber, whole=whole)


def highlighted(node: Node, matches: Sequence[Match], stemmer: Stemmer) -> list[Match]:
    """``matches`` with the spans of their abstracts that ``node`` matched."""
    spans_of = highlighter(node, stemmer, "abstract")
    return [
        Match(m.paper, m.matched, m.relevance, tuple(spans_of(m.paper.abstract))) for m in matches
    ]


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
    their own window and to what they were not yet sent.  A send names who is due
    (``due``): then only the papers after their windows' shared cut are indexed, and
    the few windows reaching behind it get their older papers matched a chunk at a
    time (``windows``), so the corpus holds today's papers, not the widest window.

    A batch of one (``also``: a preview, ``digest match --subscriber``, ``explain``)
    reads only that subscriber's window, only the papers of it that their filter's
    FTS5 prefilter lets through, and only their deliveries; since relevance counts
    only the matches (``query.Stats``), it ranks exactly as the batch that sends.
    """

    def __init__(
        self,
        store: Store,
        settings: DigestConfig,
        now: datetime,
        stemmer: Stemmer | None = None,
        also: Subscriber | None = None,
        due: Sequence[Subscriber] | None = None,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        """The windows of the subscribers who can be due (active), or only that of ``also``
        (whatever their status): an unsubscribed or paused subscriber's old last digest
        never widens the window, nor are their deliveries read.  ``stopping``: asked
        while the wide windows' older papers are read (``windows.Stopped``)."""
        self.store = store
        self.stopping = stopping
        self.settings = settings
        self.now = now
        self.also = also.id if also is not None else None
        receiving = RECEIVING if also is None else ()
        self.last_seqs = store.last_digest_seqs(receiving, self.also)
        first = Window.of(None, settings.lookback_days, now)
        assert first.since is not None
        stemmer = stemmer or shared_stemmer()
        self.first_fresh = store.first_seq_since(first.since)
        covered = [s for s in due or () if also is None and s.status in RECEIVING]
        starts = {s.id: self.window(s).start(self.first_fresh) for s in covered}
        self.cut = self._shared_cut(starts) if also is None and due is not None else None
        if also is None:
            self.papers = self._indexed(first.since, due)
            self.corpus = window_corpus(stemmer, tuple(documents(self.papers)))
        else:
            node = compile_filter(also.filter)
            window = self.window(also)  # only the papers their filter's prefilter lets through
            found = store.papers(since=window.since, after_seq=window.after_seq, fts=to_fts5(node))
            self.papers = sorted(found, key=lambda p: p.seq)
            self.corpus = Corpus(stemmer, documents(self.papers), Focus.of(node, stemmer))
        self.seqs = [p.seq for p in self.papers]
        cut = self.cut
        behind = {i: at for i, at in starts.items() if cut is not None and at < cut}
        reads_from = [*self.seqs[:1], *(at + 1 for at in behind.values())]
        self.delivered = (
            store.delivered_since(min(reads_from), receiving, self.also, in_window=True)
            if reads_from
            else {}
        )
        wide = [self._wide(s, behind[s.id]) for s in due or () if s.id in behind]
        self.wide = {w.subscriber_id: w for w in wide if w is not None}
        self.fresh = sum(1 << i for i, p in enumerate(self.papers) if first.holds(p))
        self.scorer = scorer_for(store, self.papers)

    def _indexed(self, since: datetime, due: Sequence[Subscriber] | None) -> list[PaperRow]:
        """The papers the corpus holds: those after the due windows' cut, or (nobody named
        due) every paper of the window of anyone who can be due."""
        if due is not None:
            return self.store.window_papers(self.cut) if self.cut is not None else []
        return self.store.window_papers(min(self.last_seqs.values(), default=None), since)

    def _wide(self, subscriber: Subscriber, start: int) -> Wide | None:
        """Their wide window, or None when their stored filter cannot be read: then a batch
        of their own fails their digest alone (``pending``)."""
        try:
            node = compile_filter(subscriber.filter)
        except QueryError:
            return None
        sent = frozenset(self.delivered.get(subscriber.id, ()))
        return Wide(subscriber.id, node, self.window(subscriber), start, sent)

    def _shared_cut(self, starts: dict[int, int]) -> int | None:
        """Where the due windows' shared corpus starts (``windows.shared_cut``), never after
        the window of a due reader whose model orders their papers: it scores only the
        papers indexed."""
        cut = shared_cut(starts.values())
        if cut is None or self.store.model_fitted_at() is None:
            return cut
        modelled = [starts[i] for i in self.store.model_readers() if i in starts]
        return min([cut, *modelled])

    @cached_property
    def older(self) -> dict[int, Older]:
        """The wide windows' matches among the papers before the cut, in one streamed pass."""
        if not self.wide or self.cut is None:
            return {}
        lowest = min(w.start for w in self.wide.values())
        chunks = self.store.paper_chunks(lowest, self.cut, OLDER_CHUNK)
        wide = list(self.wide.values())
        stemmer, cap = self.corpus.stemmer, self.settings.max_papers
        return older_matches(chunks, wide, stemmer, cap, trend_key, self.stopping)

    def bits(self, subscriber: Subscriber) -> int:
        """The candidates this subscriber would get: filter, window, not yet delivered."""
        window = self.window(subscriber)
        found = self.corpus.evaluate(compile_filter(subscriber.filter)) & self._bits(window)
        return self._undelivered(subscriber, found)

    def _undelivered(self, subscriber: Subscriber, found: int) -> int:
        for seq in self.delivered.get(subscriber.id, ()):
            at = bisect_left(self.seqs, seq)
            if at < len(self.seqs) and self.seqs[at] == seq:
                found &= ~(1 << at)
        return found

    def window(self, subscriber: Subscriber) -> Window:
        covered = subscriber.id == self.also or (
            self.also is None and subscriber.status in RECEIVING
        )
        if not covered:
            raise ValueError(f"the batch does not cover {subscriber.status} {subscriber.email}")
        return Window.of(self.last_seqs.get(subscriber.id), self.settings.lookback_days, self.now)

    def _bits(self, window: Window) -> int:
        """``window`` over the corpus: every paper in it has ``Window.holds``."""
        if window.after_seq is None:
            return self.fresh
        return self.corpus.all & ~((1 << bisect_right(self.seqs, window.after_seq)) - 1)

    def pending(
        self, subscriber: Subscriber, *, whole: bool = False, sending: bool = False
    ) -> Pending:
        """The subscriber's next digest, ranked and capped.

        Terms and relevance are worked out only for the papers that can reach
        the cap: those trending ahead of the cut and those tied with it (with
        ``whole``, for every match: ``explain`` says where any of them ranks), or, for
        a reader with a relevance model, the first ``max_papers`` by its score.  For a
        send (``sending``) the capped matches carry no spans yet, found where the digest
        renders (``render_pool.render_one``, on every core), and relevance is worked
        out only where trends tie (``_matches``): nothing in a send shows it.
        """
        if self._on_their_own(subscriber, whole=whole):
            alone = Batch(self.store, self.settings, self.now, self.corpus.stemmer, subscriber)
            return alone.pending(subscriber, whole=whole, sending=sending)
        node = compile_filter(subscriber.filter)
        if subscriber.id in self.wide:
            return self._wide_pending(subscriber, node, sending=sending)
        papers = self.papers
        bits = self.bits(subscriber)
        scores = self.scores(subscriber)
        if scores is None:
            found = sorted(members(bits), key=lambda i: trend_key(papers[i]))
            cap = len(found) if whole else self.settings.max_papers
            head = contenders(found, cap, lambda i: trend_key(papers[i]))
            found_both = (bits, found)
            matches = ranked_head(self.corpus, node, papers, found_both, head, ties_only=sending)
        else:
            found = list(members(bits))
            cap = len(found) if whole else self.settings.max_papers
            head = nsmallest(cap, found, key=lambda i: learned_key(scores[i], papers[i]))
            matches = _matches(self.corpus, node, papers, (bits, found), head, ties_only=sending)
        window = self.window(subscriber).description
        capped = matches[: self.settings.max_papers]
        if not sending:
            capped = highlighted(node, capped, self.corpus.stemmer)
        if scores is None:
            return Pending(subscriber, window, matches, capped, len(found))
        suggested = self._suggestions(subscriber, node, scores)
        return Pending(subscriber, window, matches, capped, len(found), True, suggested)

    def _on_their_own(self, subscriber: Subscriber, *, whole: bool) -> bool:
        """Whether only a batch of their own answers: their window reaches behind the cut
        and they were not named due, or all of a wide window's matches are asked for
        (``whole``: the older pass keeps only those that can reach the cap)."""
        if self.cut is None:
            return False
        if subscriber.id in self.wide:
            return whole
        return self.window(subscriber).start(self.first_fresh) < self.cut

    def _wide_pending(self, subscriber: Subscriber, node: Node, *, sending: bool) -> Pending:
        """The next digest of a window reaching behind the cut: its matches here and among
        the older papers (``older``) ranked together; relevance, where it decides, from an
        index of the contenders alone with the statistics of all matches (``Stats`` add)."""
        bits, older = self.bits(subscriber), self.older[subscriber.id]
        recent = [self.papers[i] for i in members(bits)]
        cap, stemmer = self.settings.max_papers, self.corpus.stemmer
        head = trend_head([*recent, *older.head], cap, trend_key)
        stats = self.corpus.tally(node, bits)
        stats = stats if older.stats is None else stats + older.stats
        alone = Corpus(stemmer, documents(head), Focus.of(node, stemmer))
        indexes = list(range(len(head)))
        found = _matches(
            alone, node, head, (alone.all, indexes), indexes, ties_only=sending, stats=stats
        )
        matches = ranked(found)
        capped = matches[:cap] if sending else highlighted(node, matches[:cap], stemmer)
        window = self.window(subscriber).description
        return Pending(subscriber, window, matches, capped, len(recent) + older.total)

    def scores(self, subscriber: Subscriber) -> Sequence[float] | None:
        """The reader's model's score for each candidate, or None when they have no model."""
        if self.scorer is None or not self.scorer.knows(subscriber.id):
            return None
        return self.scorer.scores(subscriber.id).tolist()  # type: ignore[no-any-return]

    def _suggestions(
        self, subscriber: Subscriber, node: Node, scores: Sequence[float]
    ) -> tuple[Suggestion, ...]:
        """The best-scoring papers of the reader's window that the filter did not match,
        not sent and not judged yet, each with the liked paper nearest to it."""
        scorer, limit = self.scorer, self.settings.suggestions
        if scorer is None or not subscriber.suggestions or limit == 0:
            return ()
        likely = scorer.above(subscriber.id, SUGGEST_ABOVE, SHORTLIST)
        if not likely:
            return ()
        window = self._bits(self.window(subscriber))
        others = self._undelivered(subscriber, window & ~self.corpus.evaluate(node))
        judged = scorer.judged(subscriber.id)

        def eligible(found: list[int]) -> list[int]:
            return [i for i in found if others >> i & 1 and self.papers[i].seq not in judged]

        best = eligible(likely)
        if len(best) < limit and len(likely) == SHORTLIST:  # the shortlist was not enough
            best = eligible(scorer.above(subscriber.id, SUGGEST_ABOVE))
        best.sort(key=lambda i: learned_key(scores[i], self.papers[i]))
        picks = [(i, scorer.because(subscriber.id, i)) for i in best[:limit]]
        return tuple(
            Suggestion(Match(self.papers[i], [], 0.0), scores[i], why) for i, why in picks if why
        )
