"""The store's prefilter: a filter tree as an FTS5 ``MATCH`` expression that is safe to run.

The expression is a superset of the true matches (``Corpus`` decides exactly), built
only from double-quoted strings of folded words, so no user text reaches FTS5 as syntax.

Each part stands for "true" (None) wherever FTS5 cannot decide it: a prefix (porter
stems cannot narrow it), a negation (applied in Python), and an author or category
leaf (the FTS5 index holds the title and abstract only).  "True" only ever widens:
an AND drops it, an OR with it is "true", and a negation is never narrowed at all,
since NOT of an over-approximation would narrow wrongly (NOT true drops everything).
"""

from collections.abc import Sequence
from typing import cast

from digest.models import AllOf, AnyOf, FtsMatch, HasValues, Narrowing, Spelled
from digest.query.tree import (
    TEXT_FIELDS,
    And,
    MetaField,
    Node,
    Not,
    Or,
    Phrase,
    Prefix,
    Term,
    TextField,
    in_text,
    positive,
)


def _quote(folded: Sequence[str]) -> str:
    text = " ".join(folded).replace('"', '""')
    return f'"{text}"'


def to_fts5(node: Node) -> str | None:
    """A safe MATCH expression whose matches include all true matches, or None for "all"."""
    if isinstance(node, Term | Phrase):
        if not in_text(node):
            return None  # authors and categories are not in the FTS5 index
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


def fts5_decides(node: Node) -> bool:
    """Whether ``to_fts5(node)`` matches exactly ``node``'s matches, not a superset: terms
    and phrases of the title and abstract joined by AND and OR, which the FTS5 index
    answers with the very words and stems ``Corpus`` sees (``stemming``)."""
    if isinstance(node, And | Or):
        return all(fts5_decides(child) for child in node.children)
    return isinstance(node, Term | Phrase) and in_text(node)


def to_narrowing(node: Node) -> Narrowing | None:
    """A superset of ``node``'s matches that the store can select in SQL, or None for "all".

    Wider than ``to_fts5``, for the backtests that scan a whole store: a prefix,
    which FTS5 cannot answer over porter stems, narrows by a substring of the
    lowercased text, and an author or category leaf to the papers that have some.
    Subtrees that FTS5 answers alone stay one ``MATCH``.
    """
    if not _beyond_fts(node):
        fts = to_fts5(node)
        return None if fts is None else FtsMatch(fts)
    if isinstance(node, Prefix):
        if not in_text(node):
            return HasValues(cast(MetaField, node.field))
        fields = (cast(TextField, node.field),) if node.field else TEXT_FIELDS
        return Spelled(node.prefix, fields)
    if isinstance(node, Term | Phrase):
        return HasValues(cast(MetaField, node.field))
    if isinstance(node, Not):
        return None
    parts = [to_narrowing(child) for child in node.children]
    if isinstance(node, Or):
        return None if any(p is None for p in parts) else AnyOf(tuple(cast(list[Narrowing], parts)))
    kept = tuple(p for p in parts if p is not None)
    if len(kept) < 2:
        return kept[0] if kept else None
    return AllOf(kept)


def _beyond_fts(node: Node) -> bool:
    """Whether a leaf that narrows only outside FTS5 (a prefix, a metadata leaf) is in ``node``
    outside any negation."""
    return any(isinstance(leaf, Prefix) or not in_text(leaf) for leaf in positive(node))
