"""The tree a filter parses into, and the walks over it that every other part shares.

Nodes are small frozen dataclasses, hashable so that ``Corpus`` can memoise leaves.
A leaf keeps its ``text`` as written, for subjects, explanations and highlights; a leaf
of a metadata field (``author:``, ``category:``) keeps its field in it too
(``author:lecun``), since "matched: lecun" would say the word was in the text.

Two kinds of fields: the text fields (``title``, ``abstract``), stemmed, indexed by
FTS5 and searched by a leaf without a field; and the metadata fields (``author``,
``category``) that sources give, unstemmed, outside FTS5, searched only when named.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

TextField = Literal["title", "abstract"]
MetaField = Literal["author", "category"]
FieldName = TextField | MetaField
TEXT_FIELDS: tuple[TextField, ...] = ("title", "abstract")
META_FIELDS: tuple[MetaField, ...] = ("author", "category")
FIELDS: tuple[FieldName, ...] = TEXT_FIELDS + META_FIELDS


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


def leaf_count(node: Node) -> int:
    """How many terms, phrases and prefixes the tree holds, negated ones included."""
    return sum(1 for _ in every_leaf(node))


def walk(node: Node) -> Iterator[Leaf | Not]:
    """Leaves not under a negation, and the outermost negations, in query order."""
    if isinstance(node, And | Or):
        for child in node.children:
            yield from walk(child)
    else:
        yield node


def positive(node: Node) -> Iterator[Leaf]:
    """The leaves not under a negation, in query order."""
    return (item for item in walk(node) if not isinstance(item, Not))


def terms(node: Node) -> list[str]:
    """The positive leaves as written, in query order, without repeats (for subjects)."""
    return list(dict.fromkeys(leaf.text for leaf in positive(node)))


def every_leaf(node: Node) -> Iterator[Leaf]:
    """Every leaf of the tree, negated ones included."""
    if isinstance(node, And | Or):
        for child in node.children:
            yield from every_leaf(child)
    elif isinstance(node, Not):
        yield from every_leaf(node.child)
    else:
        yield node


def in_text(leaf: Leaf) -> bool:
    """Whether the leaf searches the text (title, abstract), not a metadata field."""
    return leaf.field is None or leaf.field in TEXT_FIELDS


def leaf_words(leaf: Term | Phrase) -> tuple[str, ...]:
    """The folded words of a term or a phrase."""
    return leaf.words if isinstance(leaf, Phrase) else (leaf.word,)
