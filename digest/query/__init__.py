"""The subscriber filter language: parse once, evaluate many, never hand user text to FTS5.

* ``tree``: the nodes a filter parses into, and the walks over them.
* ``syntax``: the lexer and parser (``parse``), the only code that reads user syntax.
* ``prefilter``: ``to_fts5``, a safe superset ``MATCH`` for the store (exact where
  ``fts5_decides``).
* ``evaluation``: ``Corpus`` (and ``Focus``), which indexes documents (``Document``: title,
  abstract, authors, categories) once and answers many filters with bit operations,
  plus BM25 relevance.
* ``explanation``: why a document does or does not match.
* ``highlighting``: the spans of a text that a filter's terms match.

The names other modules use are re-exported here.
"""

from digest.query.evaluation import Corpus, Document, Focus, Stats, members
from digest.query.explanation import Explanation
from digest.query.highlighting import highlighter, highlights
from digest.query.prefilter import fts5_decides, to_fts5, to_narrowing
from digest.query.syntax import parse
from digest.query.tree import (
    FIELDS,
    META_FIELDS,
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
    leaf_count,
    terms,
)

__all__ = [
    "FIELDS",
    "META_FIELDS",
    "TEXT_FIELDS",
    "And",
    "Corpus",
    "Document",
    "Explanation",
    "FieldName",
    "Focus",
    "Leaf",
    "MetaField",
    "Node",
    "Not",
    "Or",
    "Phrase",
    "Prefix",
    "Stats",
    "Term",
    "TextField",
    "fts5_decides",
    "highlighter",
    "highlights",
    "leaf_count",
    "members",
    "parse",
    "terms",
    "to_fts5",
    "to_narrowing",
]
