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

from digest.query.tree import Node, Not, Or, Phrase, Prefix, Term, in_text


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
