"""Why a document does or does not match a filter: for previews and support questions.

The logic works on the tree alone, given ``has``: whether the document satisfies a
part of it (``Corpus`` answers that from its bitsets), so it needs no index of its own.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from digest.query.tree import Node, Not, positive, walk


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why a document does (not) match; every list holds leaf texts as written."""

    matches: bool
    matched: list[str]
    missing: list[str]
    excluded_by: list[str]


def satisfied(node: Node, has: Callable[[Node], bool]) -> list[str]:
    """The positive leaves (as written) that the document satisfies."""
    return list(dict.fromkeys(leaf.text for leaf in positive(node) if has(leaf)))


def satisfied_each(
    node: Node, bits: Callable[[Node], int], documents: Sequence[int]
) -> list[list[str]]:
    """``satisfied`` for each of ``documents``, given the bitset of each leaf (bit i =
    document i): the leaves are walked and looked up once, not once per document."""
    leaves = [(leaf.text, bits(leaf)) for leaf in positive(node)]
    return [
        list(dict.fromkeys(text for text, found in leaves if found >> i & 1)) for i in documents
    ]


def explain(node: Node, has: Callable[[Node], bool]) -> Explanation:
    """What the document satisfies, what it lacks, and which negated terms exclude it."""
    missing = [leaf.text for leaf in positive(node) if not has(leaf)]
    excluded = [
        text
        for negation in walk(node)
        if isinstance(negation, Not) and has(negation.child)
        for text in satisfied(negation.child, has)
    ]
    return Explanation(
        has(node),
        satisfied(node, has),
        list(dict.fromkeys(missing)),
        list(dict.fromkeys(excluded)),
    )
