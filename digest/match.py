"""Matching: which stored papers a filter query selects, ranked trending first.

The query is compiled once; SQLite's FTS5 index narrows the candidates with
a safe prefilter (``query.to_fts5``: quoted strings only, never user syntax)
and the Python evaluator (``query.Corpus``) decides, so prefixes, negations
and the reported matched terms follow one set of rules.
"""

from datetime import datetime

from digest.query import Corpus, parse, to_fts5
from digest.store import PaperRow, Store
from digest.tokens import Stemmer


def search(
    store: Store,
    query: str | None,
    *,
    since: datetime | None = None,
    limit: int | None = None,
    stemmer: Stemmer | None = None,
) -> list[PaperRow]:
    """Stored papers matching ``query`` (all papers when None), newest first."""
    if query is None:
        return store.papers(since=since, limit=limit)
    node = parse(query)
    candidates = store.papers(since=since, fts=to_fts5(node))
    corpus = Corpus(stemmer or Stemmer(), [(p.title, p.abstract) for p in candidates])
    hits = corpus.evaluate(node)
    found = [paper for i, paper in enumerate(candidates) if hits >> i & 1]
    return found[:limit] if limit is not None else found
