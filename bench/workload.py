"""The data the matching, rendering, sending and cycle stages share: papers, filters, subscribers.

Papers: generated dumps (``bench.dumpgen``) ingested through ``digest.ingest``
like any real dump, older ones ten days back (outside the 7-day lookback, so
only the new dump is in the matching window) and one new dump "now".  All
dumps come from one generator, so every paper of the new dump is new.

Filters: what subscribers would plausibly type, drawn from the *new* papers'
own words so that they select something.  A term is a content word (four
letters or more, not a stop word) picked from a random paper's title or
abstract, which weights words by how many papers use them, as interests are.
The mix: plain words, ``"two word"`` phrases (adjacent words of an abstract),
prefixes ``abc*``, ``(a OR b)``, ``title:x``, and now and then ``-x`` or
``NOT x``; one to four terms.  Deterministic for a seed.

Subscribers are bulk-inserted with the columns of migration m002.
"""

import cProfile
import pstats
import random
import secrets
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import BenchError, Settings, progress
from bench.dumpgen import DumpInfo, load_corpus, write_dumps
from digest.ingest import ingest_files
from digest.models import Subscriber
from digest.query import Corpus, Document, parse
from digest.stemming import Stemmer, words
from digest.store import Store, iso

OLD_DAYS = 10  # older papers are ingested this long ago: outside the 7-day lookback
_STOP_TEXT = """
    about above after again against also although among another because been before being
    below between both but can could does doing down during each even every from further
    have having here however into itself just more most much must only other over same
    should some such than that their them themselves then there these they this those
    through under until upon very was were what when where which while whose with within
    without would your yours able based make makes made using used uses show shows shown
    well many while thus often first second three four five into onto across toward towards
"""
STOPWORDS = frozenset(_STOP_TEXT.split())
TERM_COUNTS = (1, 2, 3, 4)
TERM_COUNT_WEIGHTS = (40, 33, 18, 9)
NEGATION_SHARE = 0.3  # of filters with two terms or more


@dataclass(frozen=True, slots=True)
class Paper:
    """A paper's folded words for drawing filter terms: title and abstract content words,
    and the abstract's words in order (for phrases)."""

    title: tuple[str, ...]
    abstract: tuple[str, ...]
    running: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Made:
    """A generated filter and the first word drawn for it (the bare loop's query word)."""

    filter: str
    word: str


def content(word: str) -> bool:
    return len(word) >= 4 and word.isalpha() and word not in STOPWORDS


class FilterMaker:
    """Filters drawn from the words of ``papers``; the same seed gives the same filters.

    Words found in more than ``MAX_SHARE`` of the papers ("models", "training")
    are not drawn as terms on their own: nobody subscribes to them, and they
    would make every filter match most papers.
    """

    MAX_SHARE = 0.2

    def __init__(self, papers: Sequence[tuple[str, str]], seed: int) -> None:
        self.rng = random.Random(seed)
        split = [(words(t), words(a)) for t, a in papers]
        documents = Counter(w for t, a in split for w in set(t) | set(a) if content(w))
        limit = max(self.MAX_SHARE * len(split), 2)
        kept = {w for w, n in documents.items() if n <= limit}
        self.papers = [
            Paper(tuple(w for w in t if w in kept), tuple(w for w in a if w in kept), tuple(a))
            for t, a in split
        ]
        self.papers = [p for p in self.papers if p.title or p.abstract]
        if not self.papers:
            raise BenchError("no papers to draw filter terms from")
        self._first: str | None = None

    def word(self, *, title: bool = False) -> str:
        rng = self.rng
        while True:
            paper = rng.choice(self.papers)
            found = paper.title if title or rng.random() < 0.4 else paper.abstract
            if found:
                return self._drawn(rng.choice(found))

    def _drawn(self, word: str) -> str:
        if self._first is None:
            self._first = word
        return word

    def phrase(self) -> str:
        rng = self.rng
        while True:
            text = rng.choice(self.papers).running
            if len(text) < 2:
                continue
            at = rng.randrange(len(text) - 1)
            first, second = text[at], text[at + 1]
            if content(first) and second.isalpha() and len(second) >= 3:
                return f'"{self._drawn(first)} {second}"'

    def prefix(self) -> str:
        while True:
            word = self.word()
            if len(word) >= 6:
                return word[: self.rng.randint(4, len(word) - 2)] + "*"

    def term(self, *, alone: bool) -> str:
        """One positive term; an OR pair is parenthesised unless it is the whole filter."""
        kind = self.rng.choices(
            ("word", "phrase", "prefix", "title", "or"), weights=(46, 16, 12, 10, 16)
        )[0]
        if kind == "word":
            return self.word()
        if kind == "phrase":
            return self.phrase()
        if kind == "prefix":
            return self.prefix()
        if kind == "title":
            return f"title:{self.word(title=True)}"
        pair = f"{self.word()} OR {self.word()}"
        return pair if alone else f"({pair})"

    def negation(self) -> str:
        word = self.word()
        return f"-{word}" if self.rng.random() < 0.6 else f"NOT {word}"

    def make(self) -> Made:
        rng = self.rng
        self._first = None
        count = rng.choices(TERM_COUNTS, weights=TERM_COUNT_WEIGHTS)[0]
        negate = count > 1 and rng.random() < NEGATION_SHARE
        positives = count - 1 if negate else count
        parts = [self.term(alone=positives == 1 and not negate) for _ in range(positives)]
        negation = self.negation() if negate else None
        assert self._first is not None
        return Made(self.joined(parts, negation), self._first)

    def joined(self, parts: list[str], negation: str | None) -> str:
        """The filter from its positive terms and its negation, if any (a variant's hook:
        ``bench.authors`` swaps terms here, after the words are drawn)."""
        return " ".join(parts if negation is None else [*parts, negation])

    def many(self, count: int) -> list[Made]:
        return [self.make() for _ in range(count)]


def subscriber_rows(
    filters: Iterable[str], created: datetime, *, text_share: float = 0.0, seed: int = 0
) -> list[dict[str, Any]]:
    """Rows for ``store.db["subscribers"].insert_all``: active, daily, one per filter."""
    rng = random.Random(seed)
    stamp = iso(created)
    rows = []
    for n, query in enumerate(filters, start=1):
        rows.append(
            {
                "email": f"reader{n}@lab{n % 97}.example.org",
                "name": f"Reader {n}" if n % 3 else "",
                "filter": query,
                "frequency": "daily",
                "format": "text" if rng.random() < text_share else "html",
                "status": "active",
                "source": "import",
                "secret": secrets.token_urlsafe(24),
                "created_at": stamp,
                "updated_at": stamp,
            }
        )
    return rows


SUBSCRIBER_COLUMNS = (
    "email",
    "name",
    "filter",
    "frequency",
    "format",
    "status",
    "source",
    "secret",
    "created_at",
    "updated_at",
)


def add_subscribers(store: Store, rows: list[dict[str, Any]]) -> None:
    """One bulk insert in one transaction (plain ``executemany``: ``insert_all`` is 5× slower)."""
    names = ", ".join(SUBSCRIBER_COLUMNS)
    marks = ", ".join("?" * len(SUBSCRIBER_COLUMNS))
    with store.write():
        store.db.conn.executemany(
            f"INSERT INTO subscribers ({names}) VALUES ({marks})",
            [tuple(row[c] for c in SUBSCRIBER_COLUMNS) for row in rows],
        )


@dataclass(frozen=True, slots=True)
class Papers:
    """The dumps written for a store: older ones, and the new one."""

    old: DumpInfo
    new: DumpInfo


def write_papers(folder: Path, old: int, new: int, seed: int) -> Papers:
    """Two dumps from one generator: ``old`` papers, then ``new`` (never the same paper)."""
    folder.mkdir(parents=True, exist_ok=True)
    made = write_dumps([(folder / "old.txt", old), (folder / "new.txt", new)], seed, load_corpus())
    return Papers(made[0], made[1])


def ingest(store: Store, dump: DumpInfo, now: datetime) -> None:
    """Ingest through digest's own path; every entry must be a new paper."""
    report = ingest_files(store, [dump.path], now)
    got = report.files[0]
    if got.status != "ingested" or got.new != dump.entries:
        raise BenchError(f"ingesting {dump.path.name}: {got.as_json()}, expected all new")


def build_store(path: Path, papers: Papers, now: datetime, *, new: bool = True) -> Store:
    """A store holding the old papers (ingested ``OLD_DAYS`` ago) and, if ``new``, the new ones."""
    store = Store(path)
    ingest(store, papers.old, now - timedelta(days=OLD_DAYS))
    if new:
        ingest(store, papers.new, now)
    return store


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_papers(store: Store, now: datetime) -> list[tuple[str, str]]:
    """(title, abstract) of the papers first seen at ``now`` or later (the new dump)."""
    rows = store.db.execute(
        "SELECT title, abstract FROM papers WHERE first_seen >= ? ORDER BY seq", [iso(now)]
    )
    return [(row[0], row[1]) for row in rows]


def note(stage: str, message: str) -> None:
    progress(f"[{stage}] {message}")


@contextmanager
def workdir(settings: Settings, stage: str) -> Iterator[Path]:
    """A fresh temporary folder, removed afterwards unless ``--keep``."""
    folder = Path(tempfile.mkdtemp(prefix=f"digest-bench-{stage}-", dir=settings.tmp_root))
    try:
        yield folder
    finally:
        if settings.keep:
            note(stage, f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


def print_profile(stage: str, what: str, profile: cProfile.Profile | Path, top: int = 25) -> None:
    """The top functions of a cProfile run (or of its saved stats), by cumulative and own time."""
    for order in (pstats.SortKey.CUMULATIVE, pstats.SortKey.TIME):
        print(f"\n[{stage}] cProfile of {what}, top {top} by {order.value}:")
        source = str(profile) if isinstance(profile, Path) else profile
        stats = pstats.Stats(source, stream=sys.stdout)
        stats.strip_dirs().sort_stats(order).print_stats(top)


def matching_filters(
    papers: Sequence[tuple[str, str]], count: int, seed: int, low: int, high: int
) -> list[str]:
    """``count`` generated filters that each match between ``low`` and ``high`` of ``papers``.

    For the stages that need full digests (render, send): a filter matching
    nothing gives no digest, one matching half the papers is not an interest.
    """
    corpus = Corpus(Stemmer(), [Document(title, abstract) for title, abstract in papers])
    maker = FilterMaker(papers, seed)
    found: list[str] = []
    for _ in range(count * 100):
        query = maker.make().filter
        if low <= corpus.evaluate(parse(query)).bit_count() <= high:
            found.append(query)
            if len(found) == count:
                return found
    raise BenchError(f"only {len(found):,} of {count:,} filters match {low}–{high} papers")


def in_memory_subscribers(rows: Sequence[dict[str, Any]]) -> list[Subscriber]:
    """Subscribers as the store would return them (ids from 1), without storing them."""
    return [Subscriber(id=n, bounces=0, **row) for n, row in enumerate(rows, start=1)]
