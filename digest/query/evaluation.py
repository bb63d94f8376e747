"""Evaluation: documents indexed once, then each filter answered with big-int bit operations.

A run ingests about 1,000 papers and must match them against 100,000 subscriber filters.
Instead of one FTS5 ``MATCH`` per subscriber, ``Corpus`` indexes the new papers once (per
field: stem -> bitset of documents, sorted unstemmed words for prefixes, stems by position
for phrases) and evaluates each tree with integer bit operations (And = ``&``, Or = ``|``,
Not = ``all & ~x``).  Leaves are memoised, and subscribers share most leaves, so a filter
costs a few dictionary lookups and big-int operations, not a query.  Stems come from
``stemming.Stemmer`` (SQLite's own porter), so Python and the store agree.  BM25 relevance
orders documents that match equally.

Authors and categories (``author:``, ``category:``) are lists of values per document,
matched unstemmed: a name's words are not English words, and a category is a code.
Most papers come from text dumps and have neither, and most filters ask about
neither, so their index is built only when a filter first asks.
"""

import math
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import NamedTuple, TypeVar

from digest.query.explanation import Explanation, explain, satisfied_each
from digest.query.tree import (
    TEXT_FIELDS,
    And,
    FieldName,
    Leaf,
    MetaField,
    Node,
    Not,
    Or,
    Phrase,
    Prefix,
    Term,
    TextField,
    every_leaf,
    in_text,
    leaf_words,
    positive,
)
from digest.stemming import Stemmer, fold, spelled, words

_Key = TypeVar("_Key", str, tuple[str, str])
_Docs = dict[_Key, list[int]]  # a key -> the indexes of the documents that hold it

_K1, _B = 1.2, 0.75  # the usual BM25 constants, as in FTS5's bm25()

# The text fields a text leaf searches: the one it names, or both when it names none.
_SEARCHED: dict[FieldName | None, tuple[TextField, ...]] = {
    None: TEXT_FIELDS,
    "title": ("title",),
    "abstract": ("abstract",),
}


class Document(NamedTuple):
    """What a filter sees of a paper: its text, and the authors and categories its
    sources gave (none for a paper from text dumps)."""

    title: str
    abstract: str
    authors: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()


class _FieldIndex:
    """One field of every document: stem -> bits, word -> bits, adjacent stem pair -> bits,
    and stem -> positions (built per document on demand).

    Postings are kept as lists and made bitsets on first lookup: a window has tens of
    thousands of distinct words and its filters ask about a few hundred.  A full index
    records adjacent pairs on the first phrase asked (many runs ask none); a focused
    index records its filter's pairs while it reads.
    """

    def __init__(self, texts: Sequence[str], stemmer: Stemmer, focus: "Focus | None") -> None:
        split = [words(text) for text in texts]
        self._words = split
        self.lengths = [len(found) for found in split]
        self.average = sum(self.lengths) / len(split) if split else 0.0
        self._positions: dict[int, dict[str, list[int]]] = {}
        self._table = stemmer.stems(set().union(*split))
        if focus is None:
            self._stem_docs, self._word_docs = self._index_all(split)
            self._pair_docs: dict[tuple[str, str], list[int]] | None = None
        else:
            self._stem_docs, self._word_docs, self._pair_docs = self._index_focus(split, focus)
        self._stem_bits: dict[str, int] = {}
        self._word_bits: dict[str, int] = {}
        self._pair_bits: dict[tuple[str, str], int] = {}
        self.sorted_words = sorted(self._word_docs)

    def _index_all(self, split: list[list[str]]) -> tuple[_Docs[str], _Docs[str]]:
        """Every stem and word of every document (many filters to come)."""
        stem_docs: dict[str, list[int]] = defaultdict(list)
        word_docs: dict[str, list[int]] = defaultdict(list)
        table = self._table
        for i, found in enumerate(split):
            present = set(found)
            for word in present:
                word_docs[word].append(i)
            for stem in {table[w] for w in present}:
                stem_docs[stem].append(i)
        return dict(stem_docs), dict(word_docs)

    def _index_focus(
        self, split: list[list[str]], focus: "Focus"
    ) -> tuple[_Docs[str], _Docs[str], _Docs[tuple[str, str]]]:
        """Only what one filter asks about, found with set operations on each document's
        distinct words: no stem is looked up word by word, except in documents that
        hold a word of some phrase."""
        table = self._table
        by_stem = {w for w, stem in table.items() if stem in focus.stems}
        by_prefix = {w for w in table if w.startswith(focus.prefixes)} if focus.prefixes else set()
        pair_stems = focus.pair_stems
        paired = {w for w, stem in table.items() if stem in pair_stems}
        stem_docs: dict[str, list[int]] = {}
        word_docs: dict[str, list[int]] = {}
        pair_docs: dict[tuple[str, str], list[int]] = {}
        for i, found in enumerate(split):
            present = set(found)
            for stem in {table[w] for w in present & by_stem}:
                stem_docs.setdefault(stem, []).append(i)
            for word in present & by_prefix:
                word_docs.setdefault(word, []).append(i)
            held = {table[w] for w in present & paired}
            if any(first in held and second in held for first, second in focus.pairs):
                for pair in set(pairwise(self.stems_of(i))) & focus.pairs:
                    pair_docs.setdefault(pair, []).append(i)
        return stem_docs, word_docs, pair_docs

    def stem(self, stem: str) -> int:
        """The documents holding ``stem``."""
        return _lookup(self._stem_bits, self._stem_docs, stem)

    def word(self, word: str) -> int:
        """The documents holding the unstemmed ``word`` (prefixes search these)."""
        return _lookup(self._word_bits, self._word_docs, word)

    def pair(self, pair: tuple[str, str]) -> int:
        """The documents where the two stems stand side by side, in that order."""
        if self._pair_docs is None:
            self._pair_docs = self._index_pairs()
        return _lookup(self._pair_bits, self._pair_docs, pair)

    def _index_pairs(self) -> _Docs[tuple[str, str]]:
        """Every adjacent stem pair of every document, on the first phrase asked."""
        pair_docs: dict[tuple[str, str], list[int]] = defaultdict(list)
        for i in range(len(self._words)):
            for pair in set(pairwise(self.stems_of(i))):
                pair_docs[pair].append(i)
        return dict(pair_docs)

    def stems_of(self, i: int) -> list[str]:
        """The stems of document ``i``, position by position."""
        table = self._table
        return [table[w] for w in self._words[i]]

    def positions(self, i: int) -> dict[str, list[int]]:
        """Stem -> positions in document ``i``; built on first use (phrases, BM25)."""
        where = self._positions.get(i)
        if where is None:
            where = self._positions[i] = {}
            for at, stem in enumerate(self.stems_of(i)):
                where.setdefault(stem, []).append(at)
        return where

    def prefix(self, prefix: str) -> int:
        return _prefix_bits(self.sorted_words, self.word, prefix)

    def phrase(self, stems: tuple[str, ...]) -> int:
        """Documents holding every adjacent pair, kept if some start position lines all up."""
        if len(stems) == 1:
            return self.stem(stems[0])
        candidates = -1
        for pair in pairwise(stems):
            candidates &= self.pair(pair)
            if not candidates:
                return 0
        if len(stems) == 2:
            return candidates
        bits = 0
        for i in members(candidates):
            if self.starts(stems, i):
                bits |= 1 << i
        return bits

    def starts(self, stems: tuple[str, ...], i: int) -> set[int]:
        """Where in document ``i`` the stems occur one after the other."""
        where = self.positions(i)
        found = set(where.get(stems[0], ()))
        for offset, stem in enumerate(stems[1:], start=1):
            found.intersection_update(at - offset for at in where.get(stem, ()))
        return found


class _ValueIndex:
    """A metadata field of every document: a few values each (authors, categories),
    each value a run of folded words (a name) or a single code (a category).

    word -> bits, and adjacent pair within one value -> bits, so a phrase never
    runs from one author's name into the next one's.
    """

    def __init__(self, values: Sequence[Sequence[tuple[str, ...]]]) -> None:
        self._values = values
        word_docs: dict[str, list[int]] = {}
        pair_docs: dict[tuple[str, str], list[int]] = {}
        for i, of_doc in enumerate(values):
            for value in of_doc:
                for word in value:
                    word_docs.setdefault(word, []).append(i)
                for pair in pairwise(value):
                    pair_docs.setdefault(pair, []).append(i)
        self.words = {word: _bits(found) for word, found in word_docs.items()}
        self.pairs = {pair: _bits(found) for pair, found in pair_docs.items()}
        self.sorted_words = sorted(self.words)

    @classmethod
    def of_names(cls, names: Sequence[tuple[str, ...]]) -> "_ValueIndex":
        """Authors: each name as its folded words (``Émilie du Châtelet`` -> emilie du chatelet)."""
        return cls([[tuple(map(spelled, words(name))) for name in of_doc] for of_doc in names])

    @classmethod
    def of_codes(cls, codes: Sequence[tuple[str, ...]]) -> "_ValueIndex":
        """Categories: each code whole and case-folded (``cs.CL`` -> cs.cl)."""
        return cls([[(fold(code),) for code in of_doc] for of_doc in codes])

    def leaf(self, leaf: Leaf) -> int:
        """The documents with a value holding the word, the prefix or the run of words
        (``spelled`` as the names were)."""
        if isinstance(leaf, Prefix):
            return _prefix_bits(self.sorted_words, self.words.__getitem__, spelled(leaf.prefix))
        wanted = tuple(map(spelled, leaf_words(leaf)))
        if len(wanted) == 1:
            return self.words.get(wanted[0], 0)
        candidates = -1
        for pair in pairwise(wanted):
            candidates &= self.pairs.get(pair, 0)
        if len(wanted) == 2 or not candidates:
            return candidates
        bits = 0
        for i in members(candidates):
            if any(_holds_run(value, wanted) for value in self._values[i]):
                bits |= 1 << i
        return bits


def _holds_run(value: tuple[str, ...], wanted: tuple[str, ...]) -> bool:
    n = len(wanted)
    return any(value[at : at + n] == wanted for at in range(len(value) - n + 1))


def _prefix_bits(sorted_words: list[str], bits_of: Callable[[str], int], prefix: str) -> int:
    """The documents holding a word that starts with ``prefix`` (a bisect, then a scan)."""
    bits = 0
    at = bisect_left(sorted_words, prefix)
    while at < len(sorted_words) and sorted_words[at].startswith(prefix):
        bits |= bits_of(sorted_words[at])
        at += 1
    return bits


def _lookup(cache: dict[_Key, int], postings: _Docs[_Key], key: _Key) -> int:
    """The bitset of ``key``'s postings, made on first use and kept."""
    bits = cache.get(key)
    if bits is None:
        found = postings.get(key)
        bits = cache[key] = _bits(found) if found else 0
    return bits


def _bits(indexes: list[int]) -> int:
    """A bitset from document indexes (built once, instead of one big-int OR per document)."""
    bits = 0
    for i in indexes:
        bits |= 1 << i
    return bits


def members(bits: int) -> Iterator[int]:
    while bits:
        low = bits & -bits
        yield low.bit_length() - 1
        bits ^= low


@dataclass(frozen=True, slots=True)
class Focus:
    """The stems, prefixes and stem pairs one filter can ask about.

    A corpus indexed for one filter (a backtest, a preview) records only these,
    which makes indexing several times cheaper than indexing every word; it then
    answers that filter and its parts exactly as a full index would, and nothing else.
    """

    stems: frozenset[str]
    prefixes: tuple[str, ...]
    pairs: frozenset[tuple[str, str]]

    @property
    def pair_stems(self) -> frozenset[str]:
        return frozenset(stem for pair in self.pairs for stem in pair)

    @classmethod
    def union(cls, foci: Iterable["Focus"]) -> "Focus":
        """What any of several filters can ask about: a corpus indexed for it answers each."""
        every = list(foci)
        return cls(
            frozenset().union(*(focus.stems for focus in every)),
            tuple(dict.fromkeys(prefix for focus in every for prefix in focus.prefixes)),
            frozenset().union(*(focus.pairs for focus in every)),
        )

    @classmethod
    def of(cls, node: Node, stemmer: Stemmer) -> "Focus":
        """The text leaves' stems, prefixes and pairs (metadata is indexed apart, on demand)."""
        leaves = [leaf for leaf in every_leaf(node) if in_text(leaf)]
        folded = [w for leaf in leaves if not isinstance(leaf, Prefix) for w in leaf_words(leaf)]
        table = stemmer.stems(folded)
        phrases = [
            tuple(table[w] for w in leaf.words) for leaf in leaves if isinstance(leaf, Phrase)
        ]
        return cls(
            frozenset(table.values()),
            tuple(leaf.prefix for leaf in leaves if isinstance(leaf, Prefix)),
            frozenset(pair for stems in phrases for pair in pairwise(stems)),
        )


@dataclass(frozen=True, slots=True)
class Stats:
    """The collection statistics of BM25 for one filter, counted over the documents being
    ranked: the filter's matches (in a digest, those of the subscriber's window not yet
    sent).  So who else is subscribed, or what a prefilter let through, never changes
    an order: a one-subscriber preview ranks exactly as the batch that sends.  A
    backtest streams its candidates in chunks, counts each chunk's matches in a first
    pass (``Corpus.tally``, summed with ``+``), and ranks each chunk with the totals.

    ``lengths``: the words of each text field, summed; ``counts``: the documents that
    satisfy each positive leaf.
    """

    size: int
    lengths: dict[TextField, int]
    counts: dict[Leaf, int]

    def __add__(self, other: "Stats") -> "Stats":
        return Stats(
            self.size + other.size,
            {name: n + other.lengths.get(name, 0) for name, n in self.lengths.items()},
            {leaf: n + other.counts.get(leaf, 0) for leaf, n in self.counts.items()},
        )

    def average(self, name: TextField) -> float:
        """The mean length of the field, exactly as one corpus computes it."""
        return self.lengths[name] / self.size if self.size else 0.0


class Corpus:
    """Documents indexed once so that many filters evaluate cheaply.

    With ``focus`` (``Focus.of(node)``) only what that filter needs of the text is
    indexed; authors and categories are indexed on the first filter that names them.
    """

    def __init__(
        self,
        stemmer: Stemmer,
        documents: Sequence[Document],
        focus: Focus | None = None,
        stats: "Stats | None" = None,
    ) -> None:
        self.stemmer = stemmer
        self.size = len(documents)
        self.all = (1 << self.size) - 1
        self.fields: dict[TextField, _FieldIndex] = {
            "title": _FieldIndex([doc.title for doc in documents], stemmer, focus),
            "abstract": _FieldIndex([doc.abstract for doc in documents], stemmer, focus),
        }
        self._documents = documents
        self._meta: dict[MetaField, _ValueIndex] = {}
        self._memo: dict[Leaf, int] = {}
        self.stats = stats

    def tally(self, node: Node, among: int, listed: Sequence[int] | None = None) -> "Stats":
        """What BM25 needs to know of the documents ``among`` (a bitset; see ``Stats``) for
        ``node``: their number, field lengths, and how many satisfy each positive leaf.
        ``listed``: the members of ``among``, when the caller has them already."""
        chosen = list(members(among)) if listed is None else listed
        leaves, fields = dict.fromkeys(positive(node)), self.fields.items()
        return Stats(
            len(chosen),
            {name: sum(map(index.lengths.__getitem__, chosen)) for name, index in fields},
            {leaf: (self.evaluate(leaf) & among).bit_count() for leaf in leaves},
        )

    def evaluate(self, node: Node) -> int:
        """The documents matching ``node``, as a bitset (bit i = document i)."""
        if isinstance(node, And):
            bits = self.all
            for child in node.children:
                bits &= self.evaluate(child)
                if not bits:
                    break
            return bits
        if isinstance(node, Or):
            bits = 0
            for child in node.children:
                bits |= self.evaluate(child)
            return bits
        if isinstance(node, Not):
            return self.all & ~self.evaluate(node.child)
        found = self._memo.get(node)
        if found is None:
            found = self._memo[node] = self._leaf(node)
        return found

    def _leaf(self, leaf: Leaf) -> int:
        if leaf.field == "author" or leaf.field == "category":
            return self._meta_index(leaf.field).leaf(leaf)
        bits = 0
        for name in _SEARCHED[leaf.field]:
            index = self.fields[name]
            if isinstance(leaf, Term):
                bits |= index.stem(self.stemmer.stem(leaf.word))
            elif isinstance(leaf, Prefix):
                bits |= index.prefix(leaf.prefix)
            else:
                bits |= index.phrase(self._stems(leaf))
        return bits

    def _meta_index(self, field: MetaField) -> _ValueIndex:
        index = self._meta.get(field)
        if index is None:
            if field == "author":
                index = _ValueIndex.of_names([doc.authors for doc in self._documents])
            else:
                index = _ValueIndex.of_codes([doc.categories for doc in self._documents])
            self._meta[field] = index
        return index

    def _stems(self, leaf: Term | Phrase) -> tuple[str, ...]:
        folded = leaf_words(leaf)
        table = self.stemmer.stems(folded)
        return tuple(table[w] for w in folded)

    def relevance(self, node: Node, i: int, stats: Stats | None = None) -> float:
        """BM25 of document ``i`` over the positive leaves it satisfies, to order equal trends,
        with the statistics ``stats``, else the corpus's own, else those of all its documents.

        A satisfied author or category leaf counts as one occurrence in a field of
        average length (its idf): a rare author says as much as a rare word.
        """
        score = 0.0
        stats = stats or self.stats
        size = self.size if stats is None else stats.size
        for leaf in dict.fromkeys(positive(node)):
            bits = self.evaluate(leaf)
            if bits >> i & 1:
                n = bits.bit_count() if stats is None else stats.counts[leaf]
                idf = math.log(1 + (size - n + 0.5) / (n + 0.5))
                if not in_text(leaf):
                    score += idf
                    continue
                tf, length, average = self._frequency(leaf, i, stats)
                score += idf * tf * (_K1 + 1) / (tf + _K1 * (1 - _B + _B * length / average))
        return score

    def _frequency(self, leaf: Leaf, i: int, stats: Stats | None) -> tuple[int, int, float]:
        """Occurrences of a satisfied leaf (a prefix counts once), field length, mean length."""
        tf, length, average = 0, 0, 0.0
        for name in _SEARCHED[leaf.field]:
            index = self.fields[name]
            if not isinstance(leaf, Prefix):
                tf += len(index.starts(self._stems(leaf), i))
            length += index.lengths[i]
            average += index.average if stats is None else stats.average(name)
        return max(tf, 1), length, average or 1.0

    def _has(self, node: Node, i: int) -> bool:
        return bool(self.evaluate(node) >> i & 1)

    def matched(self, node: Node, i: int) -> list[str]:
        """The positive leaves (as written) that document ``i`` satisfies."""
        return self.matched_each(node, [i])[0]

    def matched_each(self, node: Node, indexes: Sequence[int]) -> list[list[str]]:
        """``matched`` for each of ``indexes``: a digest's papers, a backtest's matches."""
        return satisfied_each(node, self.evaluate, indexes)

    def explain(self, node: Node, i: int) -> Explanation:
        """Why document ``i`` does or does not match: for previews and support questions."""
        return explain(node, lambda part: self._has(part, i))
