"""The subscriber filter language: parse once, evaluate many, never hand user text to FTS5.

A filter is one line (``diffusion title:"video generation" -survey``).  ``parse`` turns it
into a small immutable tree or raises ``QueryError`` with a caret column; it is pure and
is the only place that reads user syntax.  Semantics live in one place, ``Corpus``:

* Compile once, evaluate many.  A run ingests about 1,000 papers and must match them
  against 100,000 subscriber filters.  Instead of one FTS5 ``MATCH`` per subscriber,
  ``Corpus`` indexes the new papers once (per field: stem -> bitset of documents, sorted
  unstemmed words for prefixes, stems by position for phrases) and evaluates each tree
  with integer bit operations (And = ``&``, Or = ``|``, Not = ``all & ~x``).  Leaves are
  memoised, and subscribers share most leaves, so a filter costs a few dictionary
  lookups and big-int operations, not a query.
* Stems come from ``tokens.Stemmer`` (SQLite's own porter), so Python and the store agree.
* ``to_fts5`` is only a prefilter for the store: a superset of the true matches, built
  from double-quoted strings of folded words, so no user text reaches FTS5 as syntax.
"""

import math
import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate, pairwise
from typing import Literal, NamedTuple

from digest.errors import QueryError
from digest.tokens import Stemmer, fold, words

FieldName = Literal["title", "abstract"]
FIELDS: tuple[FieldName, ...] = ("title", "abstract")

NEGATION_ONLY = "a filter must include at least one term"
EMPTY = "empty filter: write at least one word"
NEAR = 'NEAR is not supported; use a "phrase"'
UNSUPPORTED = "'{}' is not supported; juxtapose words for AND, use OR, NOT or -"
STRAY_STAR = "'*' must end a word, as in prefix*"
SHORT_PREFIX = "a prefix needs at least 2 characters before '*'"
PREFIX_WORDS = "a prefix must be a single word"
UNKNOWN_FIELD = "':' is only allowed after title or abstract"
FIELD_TARGET = '{}: must be directly followed by a word, a "phrase" or a (group)'
DASH_TARGET = "'-' must be directly followed by a word, a \"phrase\" or a (group)"
FIELD_CONFLICT = "{}: cannot be used inside {}:"
UNCLOSED_QUOTE = 'unclosed quote: add a closing "'
EMPTY_PHRASE = 'a "phrase" must contain at least one word'
UNCLOSED_PAREN = "unclosed '(': add a closing ')'"
UNMATCHED_PAREN = "unmatched ')'"
EMPTY_GROUP = "empty group '()'"
NO_WORDS = "'{}' contains no letters or digits"
DANGLING = "{} needs a term on each side"
NOT_TARGET = "NOT must be followed by a term"
_K1, _B = 1.2, 0.75  # the usual BM25 constants, as in FTS5's bm25()
MAX_DEPTH = 32
TOO_DEEP = f"too deeply nested: at most {MAX_DEPTH} levels of (), NOT, - and fields"


@dataclass(frozen=True, slots=True)
class Term:
    word: str
    field: FieldName | None
    text: str


@dataclass(frozen=True, slots=True)
class Phrase:
    words: tuple[str, ...]
    field: FieldName | None
    text: str


@dataclass(frozen=True, slots=True)
class Prefix:
    prefix: str
    field: FieldName | None
    text: str


@dataclass(frozen=True, slots=True)
class And:
    children: tuple["Node", ...]


@dataclass(frozen=True, slots=True)
class Or:
    children: tuple["Node", ...]


@dataclass(frozen=True, slots=True)
class Not:
    child: "Node"


Leaf = Term | Phrase | Prefix
Node = Term | Phrase | Prefix | And | Or | Not

# --- lexer -------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""(?P<space>\s+)|(?P<lparen>\()|(?P<rparen>\))|(?P<quote>"[^"]*"?)
    |(?P<field>title:|abstract:)|(?P<colon>:)|(?P<neg>-(?=[^\W_]|["(]))|(?P<bare>[^\s()":]+)""",
    re.VERBOSE,
)
_WORD_CHAR = re.compile(r"[^\W_]")
_UNSUPPORTED_CHAR = re.compile(r"[\^+]")
_OPERATORS = frozenset({"AND", "OR", "NOT"})
_RESERVED = _OPERATORS | {"NEAR"}
_TARGETS = frozenset({"word", "phrase", "prefix", "lparen", "neg", "field"})


class _Token(NamedTuple):
    kind: str  # a _TOKEN group name, "AND"/"OR"/"NOT", or "end"
    start: int
    text: str
    words: tuple[str, ...] = ()


def _lex(query: str) -> list[_Token]:
    """Split the query into tokens, rejecting everything FTS5 would read as syntax."""
    tokens: list[_Token] = []
    opens: list[int] = []
    pending: _Token | None = None  # a "-" or "field:" still waiting for what it applies to
    for match in _TOKEN.finditer(query):
        kind = match.lastgroup or ""
        token = None if kind == "space" else _classify(query, kind, match, opens)
        if pending is not None and (token is None or token.kind not in _TARGETS):
            raise _unapplied(query, pending)
        if token is not None:
            tokens.append(token)
            pending = token if kind in ("neg", "field") else None
    if pending is not None:
        raise _unapplied(query, pending)
    if opens:
        raise QueryError(UNCLOSED_PAREN, query=query, column=opens[-1])
    tokens.append(_Token("end", len(query), ""))
    return tokens


def _unapplied(query: str, token: _Token) -> QueryError:
    """A ``-`` or ``field:`` must be glued to what it applies to."""
    reason = DASH_TARGET if token.kind == "neg" else FIELD_TARGET.format(token.text[:-1])
    return QueryError(reason, query=query, column=token.start)


def _classify(query: str, kind: str, match: re.Match[str], opens: list[int]) -> _Token:
    start, text = match.start(), match.group()
    if kind == "bare":
        return _bare(query, start, text)
    if kind == "quote":
        return _phrase(query, start, text)
    if kind == "colon":
        raise QueryError(UNKNOWN_FIELD, query=query, column=start)
    if kind == "lparen":
        opens.append(start)
    elif kind == "rparen":
        if not opens:
            raise QueryError(UNMATCHED_PAREN, query=query, column=start)
        opens.pop()
    return _Token(kind, start, text)


def _phrase(query: str, start: int, text: str) -> _Token:
    if len(text) < 2 or not text.endswith('"'):
        raise QueryError(UNCLOSED_QUOTE, query=query, column=start)
    found = tuple(words(text))
    if not found:
        raise QueryError(EMPTY_PHRASE, query=query, column=start)
    return _Token("phrase", start, text, found)


def _bare(query: str, start: int, text: str) -> _Token:
    """A run of non-space characters: an operator, a word (maybe hyphenated) or a prefix."""
    if text in _OPERATORS:
        return _Token(text, start, text)
    if text == "NEAR" or text.startswith("NEAR/"):
        raise QueryError(NEAR, query=query, column=start)
    if text.isascii() and text.isalnum():
        return _Token("word", start, text, (text.lower(),))  # the common case, made cheap
    if text.startswith("-"):
        raise QueryError(DASH_TARGET, query=query, column=start)
    bad = _UNSUPPORTED_CHAR.search(text)
    if bad:
        raise QueryError(UNSUPPORTED.format(bad.group()), query=query, column=start + bad.start())
    star = text.find("*")
    if star < 0:
        found = tuple(words(text))
        if not found:
            raise QueryError(NO_WORDS.format(text), query=query, column=start)
        return _Token("word", start, text, found)
    if star != len(text) - 1 or star == 0 or not _WORD_CHAR.match(text[star - 1]):
        raise QueryError(STRAY_STAR, query=query, column=start + star)
    found = tuple(words(text))
    if len(found) != 1:
        raise QueryError(PREFIX_WORDS, query=query, column=start)
    if len(found[0]) < 2:
        raise QueryError(SHORT_PREFIX, query=query, column=start)
    return _Token("prefix", start, text, found)


# --- parser ------------------------------------------------------------------------------

_STARTS = _TARGETS | {"NOT"}


class _Parser:
    """Recursive descent: or := and (OR and)*; and := unary (AND? unary)*."""

    def __init__(self, query: str, tokens: list[_Token]) -> None:
        self.query = query
        self.tokens = tokens
        self.at = 0
        self.depth = 0
        self.field: FieldName | None = None

    def error(self, reason: str, token: _Token) -> QueryError:
        return QueryError(reason, query=self.query, column=token.start)

    def take(self) -> _Token:
        self.at += 1
        return self.tokens[self.at - 1]

    def either(self) -> Node:
        branches = [self.both()]
        while self.tokens[self.at].kind == "OR":
            self.take()
            branches.append(self.both())
        return _join(Or, branches)

    def both(self) -> Node:
        parts = [self.unary()]
        while (kind := self.tokens[self.at].kind) in _STARTS or kind == "AND":
            if kind == "AND":
                self.take()
            parts.append(self.unary())
        return _join(And, parts)

    def unary(self) -> Node:
        """Nesting is bounded so that deep input is a QueryError, not a RecursionError."""
        token = self.take()
        if token.kind in ("word", "phrase", "prefix"):
            return self.leaf(token)
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(TOO_DEEP, token)
        node = self.nested(token)
        self.depth -= 1
        return node

    def nested(self, token: _Token) -> Node:
        if token.kind in ("NOT", "neg"):
            child = self.unary()
            return child.child if isinstance(child, Not) else Not(child)
        if token.kind == "field":
            return self.fielded(token)
        if token.kind == "lparen":
            node = self.either()
            self.take()  # the lexer guarantees the matching ")"
            return node
        raise self.unexpected(token)

    def fielded(self, token: _Token) -> Node:
        name: FieldName = "title" if token.text == "title:" else "abstract"
        if self.field not in (None, name):
            raise self.error(FIELD_CONFLICT.format(name, self.field), token)
        outer, self.field = self.field, name
        node = self.unary()
        self.field = outer
        return node

    def leaf(self, token: _Token) -> Leaf:
        if token.kind == "prefix":
            return Prefix(token.words[0], self.field, token.text)
        if len(token.words) == 1:
            return Term(token.words[0], self.field, token.text)
        return Phrase(token.words, self.field, token.text)

    def unexpected(self, token: _Token) -> QueryError:
        """Name the operator or bracket that is missing its term."""
        before = self.tokens[self.at - 2] if self.at >= 2 else None
        if before is not None and before.kind == "NOT":
            return self.error(NOT_TARGET, before)
        if token.kind in ("AND", "OR"):
            return self.error(DANGLING.format(token.kind), token)
        if before is not None and before.kind in ("AND", "OR"):
            return self.error(DANGLING.format(before.kind), before)
        if before is not None and before.kind == "lparen":
            return self.error(EMPTY_GROUP, before)
        return self.error(EMPTY, token)


def _join(kind: type[And] | type[Or], parts: list[Node]) -> Node:
    """Flatten nested And/Or so trees compare and print simply."""
    flat: list[Node] = []
    for part in parts:
        flat.extend(part.children if isinstance(part, kind) else (part,))
    return flat[0] if len(flat) == 1 else kind(tuple(flat))


def parse(query: str) -> Node:
    """Parse one filter line into a tree; raises only ``QueryError``."""
    chunks = query.split()
    if not chunks:
        raise QueryError(EMPTY, query=query, column=0)
    if all(c.isascii() and c.isalnum() and c not in _RESERVED for c in chunks):
        # Most filters are a few plain words: skip the lexer (100k filters are parsed per run).
        return _join(And, [Term(c.lower(), None, c) for c in chunks])
    tokens = _lex(query)
    parser = _Parser(query, tokens)
    node = parser.either()
    if not _matches_positively(node):
        raise QueryError(NEGATION_ONLY, query=query, column=tokens[0].start)
    return node


def leaf_count(node: Node) -> int:
    """How many terms, phrases and prefixes the tree holds, negated ones included."""
    return sum(1 for _ in _leaves(node))


def _walk(node: Node) -> Iterator[Leaf | Not]:
    """Leaves not under a negation, and the outermost negations, in query order."""
    if isinstance(node, And | Or):
        for child in node.children:
            yield from _walk(child)
    else:
        yield node


def _matches_positively(node: Node) -> bool:
    """False when every way to satisfy ``node`` is by absence (``-video``, ``NOT a NOT b``)."""
    if isinstance(node, And | Or):
        return any(_matches_positively(child) for child in node.children)
    return not isinstance(node, Not)


def _positive(node: Node) -> Iterator[Leaf]:
    return (item for item in _walk(node) if not isinstance(item, Not))


def terms(node: Node) -> list[str]:
    """The positive leaves as written, in query order, without repeats (for subjects)."""
    return list(dict.fromkeys(leaf.text for leaf in _positive(node)))


# --- FTS5 prefilter ----------------------------------------------------------------------


def _quote(folded: Sequence[str]) -> str:
    text = " ".join(folded).replace('"', '""')
    return f'"{text}"'


def to_fts5(node: Node) -> str | None:
    """A safe MATCH expression whose matches include all true matches, or None for "all"."""
    if isinstance(node, Term | Phrase):
        quoted = _quote(node.words if isinstance(node, Phrase) else (node.word,))
        return f"{{{node.field}}} : ({quoted})" if node.field else quoted
    if isinstance(node, Prefix | Not):
        return None  # porter stems cannot narrow a prefix; NOT is applied in Python
    parts = [to_fts5(child) for child in node.children]
    if isinstance(node, Or):
        if any(part is None for part in parts):
            return None
        return " OR ".join(f"({part})" for part in parts)
    kept = [part for part in parts if part is not None]
    if len(kept) < 2:
        return kept[0] if kept else None
    return " AND ".join(f"({part})" for part in kept)


# --- evaluation --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why a document does (not) match; every list holds leaf texts as written."""

    matches: bool
    matched: list[str]
    missing: list[str]
    excluded_by: list[str]


class _FieldIndex:
    """One field of every document: stem -> bits, word -> bits, adjacent stem pair -> bits,
    and stem -> positions (built per document on demand).

    The pair index makes a two-word phrase one lookup and narrows longer ones to
    the documents holding every pair, so positions are checked only there.
    """

    def __init__(self, texts: Sequence[str], stemmer: Stemmer, focus: "Focus | None") -> None:
        split = [words(text) for text in texts]
        self._words = split
        self.lengths = [len(found) for found in split]
        self.average = sum(self.lengths) / len(split) if split else 0.0
        self._positions: dict[int, dict[str, list[int]]] = {}
        self._table = stemmer.stems(set().union(*split))
        docs = self._index_all(split) if focus is None else self._index_focus(split, focus)
        self.stems = {stem: _bits(found) for stem, found in docs[0].items()}
        self.words = {word: _bits(found) for word, found in docs[1].items()}
        self.pairs = {pair: _bits(found) for pair, found in docs[2].items()}
        self.sorted_words = sorted(self.words)

    def _index_all(self, split: list[list[str]]) -> "_Postings":
        """Every stem, word and adjacent stem pair of every document (many filters to come)."""
        stem_docs: dict[str, list[int]] = {}
        word_docs: dict[str, list[int]] = {}
        pair_docs: dict[tuple[str, str], list[int]] = {}
        for i, found in enumerate(split):
            stems = self.stems_of(i)
            for stem in set(stems):
                stem_docs.setdefault(stem, []).append(i)
            for word in set(found):
                word_docs.setdefault(word, []).append(i)
            for pair in set(pairwise(stems)):
                pair_docs.setdefault(pair, []).append(i)
        return stem_docs, word_docs, pair_docs

    def _index_focus(self, split: list[list[str]], focus: "Focus") -> "_Postings":
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
        bits = 0
        at = bisect_left(self.sorted_words, prefix)
        while at < len(self.sorted_words) and self.sorted_words[at].startswith(prefix):
            bits |= self.words[self.sorted_words[at]]
            at += 1
        return bits

    def phrase(self, stems: tuple[str, ...]) -> int:
        """Documents holding every adjacent pair, kept if some start position lines all up."""
        if len(stems) == 1:
            return self.stems.get(stems[0], 0)
        candidates = -1
        for pair in pairwise(stems):
            candidates &= self.pairs.get(pair, 0)
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


_Postings = tuple[dict[str, list[int]], dict[str, list[int]], dict[tuple[str, str], list[int]]]


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
    def of(cls, node: Node, stemmer: Stemmer) -> "Focus":
        leaves = list(_leaves(node))
        folded = [w for leaf in leaves if not isinstance(leaf, Prefix) for w in _folded(leaf)]
        table = stemmer.stems(folded)
        phrases = [
            tuple(table[w] for w in leaf.words) for leaf in leaves if isinstance(leaf, Phrase)
        ]
        return cls(
            frozenset(table.values()),
            tuple(leaf.prefix for leaf in leaves if isinstance(leaf, Prefix)),
            frozenset(pair for stems in phrases for pair in pairwise(stems)),
        )


def _leaves(node: Node) -> Iterator[Leaf]:
    """Every leaf of the tree, negated ones included."""
    if isinstance(node, And | Or):
        for child in node.children:
            yield from _leaves(child)
    elif isinstance(node, Not):
        yield from _leaves(node.child)
    else:
        yield node


def _folded(leaf: Term | Phrase) -> tuple[str, ...]:
    return leaf.words if isinstance(leaf, Phrase) else (leaf.word,)


class Corpus:
    """Documents (title, abstract) indexed once so that many filters evaluate cheaply.

    With ``focus`` (``Focus.of(node)``) only what that filter needs is indexed.
    """

    def __init__(
        self, stemmer: Stemmer, documents: Sequence[tuple[str, str]], focus: Focus | None = None
    ) -> None:
        self.stemmer = stemmer
        self.size = len(documents)
        self.all = (1 << self.size) - 1
        self.fields = {
            name: _FieldIndex([doc[k] for doc in documents], stemmer, focus)
            for k, name in enumerate(FIELDS)
        }
        self._memo: dict[Leaf, int] = {}

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
        bits = 0
        for name in FIELDS if leaf.field is None else (leaf.field,):
            index = self.fields[name]
            if isinstance(leaf, Term):
                bits |= index.stems.get(self.stemmer.stem(leaf.word), 0)
            elif isinstance(leaf, Prefix):
                bits |= index.prefix(leaf.prefix)
            else:
                bits |= index.phrase(self._stems(leaf))
        return bits

    def _stems(self, leaf: Term | Phrase) -> tuple[str, ...]:
        folded = _folded(leaf)
        table = self.stemmer.stems(folded)
        return tuple(table[w] for w in folded)

    def relevance(self, node: Node, i: int) -> float:
        """BM25 of document ``i`` over the positive leaves it satisfies, to order equal trends."""
        score = 0.0
        for leaf in dict.fromkeys(_positive(node)):
            bits = self.evaluate(leaf)
            if bits >> i & 1:
                n = bits.bit_count()
                idf = math.log(1 + (self.size - n + 0.5) / (n + 0.5))
                tf, length, average = self._frequency(leaf, i)
                score += idf * tf * (_K1 + 1) / (tf + _K1 * (1 - _B + _B * length / average))
        return score

    def _frequency(self, leaf: Leaf, i: int) -> tuple[int, int, float]:
        """Occurrences of a satisfied leaf (a prefix counts once), field length, mean length."""
        tf, length, average = 0, 0, 0.0
        for name in FIELDS if leaf.field is None else (leaf.field,):
            index = self.fields[name]
            if not isinstance(leaf, Prefix):
                tf += len(index.starts(self._stems(leaf), i))
            length += index.lengths[i]
            average += index.average
        return max(tf, 1), length, average or 1.0

    def _has(self, node: Node, i: int) -> bool:
        return bool(self.evaluate(node) >> i & 1)

    def matched(self, node: Node, i: int) -> list[str]:
        """The positive leaves (as written) that document ``i`` satisfies."""
        return list(dict.fromkeys(leaf.text for leaf in _positive(node) if self._has(leaf, i)))

    def explain(self, node: Node, i: int) -> Explanation:
        """Why document ``i`` does or does not match: for previews and support questions."""
        missing = [leaf.text for leaf in _positive(node) if not self._has(leaf, i)]
        excluded = [
            text
            for negation in _walk(node)
            if isinstance(negation, Not) and self._has(negation.child, i)
            for text in self.matched(negation.child, i)
        ]
        return Explanation(
            self._has(node, i),
            self.matched(node, i),
            list(dict.fromkeys(missing)),
            list(dict.fromkeys(excluded)),
        )


# --- highlighting ------------------------------------------------------------------------

_TOKEN_CHARS = re.compile(r"[^\W_]+")  # tokens.words' token, applied to folded text
_NEXT_TOKEN = re.compile(r"[\W_]+([^\W_]+)")
# A token of the original text: letters and digits plus the combining marks folding drops.
_LOCATED = re.compile(
    r"(?:[^\W_]|[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f])+"
)
_ALIGNED: dict[str, bool] = {}  # non-ASCII character -> folds to exactly one character


def highlights(
    node: Node, text: str, stemmer: Stemmer, field: str | None = None
) -> list[tuple[int, int]]:
    """Sorted, disjoint character spans of ``text`` that satisfy a positive leaf of ``node``.

    A word whose stem equals a Term's, a word starting with a Prefix, and each run of
    words that a Phrase matches, with words and stems exactly as ``Corpus`` sees them.
    ``field`` names the field ``text`` belongs to: leaves restricted to another field
    are skipped (None applies every leaf).  It runs for every paper of every digest, so
    it finds candidate words with ``str.find`` instead of stemming every word of the text.
    """
    leaves = [
        leaf
        for leaf in dict.fromkeys(_positive(node))
        if field is None or leaf.field in (None, field)
    ]
    if not leaves:
        return []
    folded = _aligned_fold(text)
    if folded is not None:
        return _merged(_spans(leaves, folded, stemmer))
    # Folding moved characters: match on the folded words joined by spaces, map back.
    located = [
        (word, m.start(), m.end()) for m in _LOCATED.finditer(text) for word in words(m.group())
    ]
    starts = list(accumulate((len(word) + 1 for word, _, _ in located), initial=0))
    return _merged(
        [
            (located[bisect_right(starts, a) - 1][1], located[bisect_right(starts, b - 1) - 1][2])
            for a, b in _spans(leaves, " ".join(word for word, _, _ in located), stemmer)
        ]
    )


def _aligned_fold(text: str) -> str | None:
    """``tokens.fold(text)`` when it keeps every character in place, else None."""
    if text.isascii():
        return text.lower()
    chars = set(text)
    for char in chars - _ALIGNED.keys():
        _ALIGNED[char] = len(fold(char)) == 1
    return fold(text) if all(_ALIGNED[char] for char in chars) else None


def _spans(leaves: list[Leaf], folded: str, stemmer: Stemmer) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    for leaf in leaves:
        if isinstance(leaf, Prefix):
            spans.extend(_tokens_starting(folded, leaf.prefix))
        else:
            folded_words = leaf.words if isinstance(leaf, Phrase) else (leaf.word,)
            table = stemmer.stems(folded_words)
            spans.extend(_stem_runs(folded, [table[word] for word in folded_words], stemmer))
    return spans


def _tokens_starting(folded: str, prefix: str) -> Iterator[tuple[int, int]]:
    """The span of each token of ``folded`` that starts with ``prefix`` (every token if empty)."""
    if not prefix:
        yield from (m.span() for m in _TOKEN_CHARS.finditer(folded))
        return
    at = folded.find(prefix)
    while at >= 0:
        end = at + len(prefix)  # the prefix is letters and digits: no token starts inside
        if at == 0 or not folded[at - 1].isalnum():
            token = _TOKEN_CHARS.match(folded, end)
            end = token.end() if token else end
            yield at, end
        at = folded.find(prefix, end)


def _stem_runs(folded: str, stems: list[str], stemmer: Stemmer) -> Iterator[tuple[int, int]]:
    """Each run of consecutive tokens whose stems are ``stems``.

    Porter rewrites at most the last two characters of what it keeps, so a word whose
    stem is ``s`` starts with ``s[:-2]``: only the tokens starting so are stemmed.
    """
    for start, end in _tokens_starting(folded, stems[0][:-2]):
        if stemmer.stem(folded[start:end]) != stems[0]:
            continue
        for stem in stems[1:]:
            after = _NEXT_TOKEN.match(folded, end)
            if after is None or stemmer.stem(after.group(1)) != stem:
                break
            end = after.end()
        else:
            yield start, end


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged
