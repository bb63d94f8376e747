"""The papers as readers ask for them: by window, by filter (FTS5 or a narrowing), by trend,
in chunks, by day; each with its trend signal and what sources told of it."""

import json
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from digest.models import (
    NO_META,
    AllOf,
    FtsMatch,
    HasValues,
    Narrowing,
    PaperMeta,
    PaperRow,
    Sighting,
    Spelled,
)
from digest.store.base import Base, iso
from digest.titles import paper_id


class PaperReads(Base):
    def trending_seqs(self, limit: int) -> list[int]:
        """The ``limit`` most trending papers (``match.trend_key``), then newest."""
        rows = self.db.execute(
            "SELECT t.seq FROM paper_trends t JOIN papers p ON p.seq = t.seq "
            "ORDER BY COALESCE(t.upvotes, 0) DESC, t.times_seen DESC, t.best_position ASC, "
            "p.first_seen DESC, p.seq ASC "
            "LIMIT ?",
            [limit],
        )
        return [int(row[0]) for row in rows]

    def sightings(self, paper_seq: int) -> list[Sighting]:
        """Every listing the paper was seen in, oldest ingest first."""
        rows = self.db.execute(
            "SELECT d.listing_date, s.position, d.ingested_at "
            "FROM sightings s JOIN dumps d ON d.id = s.dump_id "
            "WHERE s.paper_seq = ? ORDER BY d.ingested_at, d.id",
            [paper_seq],
        )
        return [Sighting(a, int(b), str(c)) for a, b, c in rows]

    def papers(
        self,
        *,
        since: datetime | None = None,
        limit: int | None = None,
        fts: str | None = None,
        seqs: Sequence[int] | None = None,
        after_seq: int | None = None,
        undelivered_to: int | None = None,
    ) -> list[PaperRow]:
        """Papers, newest first; ``fts`` is a prebuilt safe FTS5 expression, never user text.

        ``after_seq`` keeps papers first stored after that one; ``undelivered_to``
        drops papers already put in a digest for that subscriber id.

        Papers narrowed by any condition are chosen first and their trends then
        aggregated from their sightings alone (while few enough to bind): SQLite
        pushes a list of seqs into the ``paper_trends`` view, never a join, and
        would otherwise group every sighting of the store.
        """
        where: list[str] = ["1"]
        params: list[str | int] = []
        if since is not None:
            where.append("p.first_seen >= ?")
            params.append(iso(since))
        if after_seq is not None:
            where.append("p.seq > ?")
            params.append(after_seq)
        if undelivered_to is not None:
            where.append(
                "NOT EXISTS (SELECT 1 FROM deliveries d "
                "WHERE d.subscriber_id = ? AND d.paper_seq = p.seq)"
            )
            params.append(undelivered_to)
        if fts is not None:
            where.append("p.seq IN (SELECT rowid FROM papers_fts WHERE papers_fts MATCH ?)")
            params.append(fts)
        if seqs is not None:
            where.append(f"p.seq IN ({','.join('?' * len(seqs))})")
            params.extend(seqs)
        if len(where) > 1:
            where, params = self._chosen(where, params)
        sql = (
            f"{_PAPER_SELECT} WHERE {' AND '.join(where)} "
            "ORDER BY p.first_seen DESC, COALESCE(t.upvotes, 0) DESC, t.times_seen DESC, "
            "t.best_position ASC, p.seq ASC"
        )
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [_paper(row) for row in self.db.execute(sql, params)]

    def _chosen(
        self, where: list[str], params: list[str | int]
    ) -> tuple[list[str], list[str | int]]:
        """The condition ``where`` as a list of the seqs it chooses, on the trends' side, when
        they are few enough to bind; else ``where`` as it was."""
        sql = f"SELECT p.seq FROM papers p WHERE {' AND '.join(where)}"
        chosen: list[str | int] = [row[0] for row in self.db.execute(sql, params)]
        if len(chosen) > _MAX_BOUND:
            return where, params
        return [f"t.seq IN ({','.join('?' * len(chosen))})"], chosen

    def days_matching(self, fts: str, *, since: datetime | None = None) -> list[tuple[str, int]]:
        """How many papers the FTS5 expression ``fts`` matches per ingest day (UTC date of
        first sighting), oldest day first; only ``since`` then when given.

        ``+p.seq`` keeps SQLite on the small ``papers_first_seen`` index: looking up tens
        of thousands of matches by rowid reads their whole rows (abstracts and all), up
        to a second from a cold cache."""
        where = ["+p.seq IN (SELECT rowid FROM papers_fts WHERE papers_fts MATCH ?)"]
        params = [fts]
        if since is not None:
            where.append("p.first_seen >= ?")
            params.append(iso(since))
        rows = self.db.execute(
            "SELECT substr(p.first_seen, 1, 10) AS day, COUNT(*) FROM papers p "
            f"WHERE {' AND '.join(where)} GROUP BY day ORDER BY day",
            params,
        )
        return [(str(day), int(count)) for day, count in rows]

    def trending_chunks(
        self, *, since: datetime | None = None, narrowing: Narrowing | None = None, chunk: int
    ) -> Iterator[list[PaperRow]]:
        """Papers in lists of ``chunk``, most trending first (``match.trend_key``), then newest.

        For backtests over the whole store: rows are read from one cursor as they are
        used, so memory holds one chunk whatever the store's size (SQLite sorts on disk).
        ``narrowing`` is the safe superset of a filter's matches (``query.to_narrowing``).
        """
        where, params = ["1"], []
        if since is not None:
            where.append("p.first_seen >= ?")
            params.append(iso(since))
        if narrowing is not None:
            condition, values = _narrowing_sql(narrowing)
            where.append(condition)
            params += values
        cursor = self.db.execute(
            f"{_PAPER_SELECT} WHERE {' AND '.join(where)} "
            "ORDER BY COALESCE(t.upvotes, 0) DESC, t.times_seen DESC, t.best_position ASC, "
            "p.seq DESC",
            params,
        )
        try:
            while rows := cursor.fetchmany(chunk):
                yield [_paper(row) for row in rows]
        finally:
            cursor.close()

    def paper(self, ref: str) -> PaperRow | None:
        """A paper by id, or by exact (normalized) title."""
        found = self.papers(seqs=self._seqs_for_ref(ref))
        return found[0] if found else None

    def _seqs_for_ref(self, ref: str) -> list[int]:
        rows = self.db.execute(
            "SELECT seq FROM papers WHERE id = ? OR id = ? LIMIT 1", [ref.strip(), paper_id(ref)]
        ).fetchall()
        return [row[0] for row in rows]

    def window_papers(self, after_seq: int | None, since: datetime | None = None) -> list[PaperRow]:
        """Papers stored after ``after_seq`` or first seen since ``since``, oldest first."""
        floor = after_seq if after_seq is not None else self._next_seq()
        if since is None:  # the bound on ``t`` too: SQLite then groups only their sightings
            rows = self.db.execute(
                f"{_PAPER_SELECT} WHERE p.seq > ? AND t.seq > ? ORDER BY p.seq", [floor, floor]
            )
        else:
            rows = self.db.execute(
                f"{_PAPER_SELECT} WHERE p.seq > ? OR p.first_seen >= ? ORDER BY p.seq",
                [floor, iso(since)],
            )
        return [_paper(row) for row in rows]

    def paper_chunks(self, after_seq: int, up_to: int, chunk: int) -> Iterator[list[PaperRow]]:
        """Papers after ``after_seq`` up to ``up_to``, oldest first, in lists of ``chunk``:
        one query per chunk, so memory holds one chunk and no read stays open between.
        Each chunk's bounds are found first: SQLite then groups the sightings of that
        chunk's papers alone (``paper_trends``), not of all the range left."""
        while after_seq < up_to:
            row = self.db.execute(
                "SELECT seq FROM papers WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT 1 OFFSET ?",
                [after_seq, up_to, chunk - 1],
            ).fetchone()
            last = int(row[0]) if row is not None else up_to
            rows = self.db.execute(
                f"{_PAPER_SELECT} WHERE p.seq > ? AND p.seq <= ? AND t.seq > ? AND t.seq <= ? "
                "ORDER BY p.seq",
                [after_seq, last, after_seq, last],
            )
            papers = [_paper(row) for row in rows]
            if papers:
                yield papers
            after_seq = last

    def first_seq_since(self, since: datetime) -> int:
        """The first paper first seen since ``since`` (the next seq to come when none is).

        ``MIN(+seq)``, not ``MIN(seq)``: on the bare primary key SQLite walks the table from
        its first seq until a row is recent enough (most of it: 70 ms at 100,000 papers,
        in every preview); on an expression it reads the ``papers_first_seen`` range.
        """
        row = self.db.execute(
            "SELECT MIN(+seq) FROM papers WHERE first_seen >= ?", [iso(since)]
        ).fetchone()
        return int(row[0]) if row[0] is not None else self._next_seq()

    def _next_seq(self) -> int:
        row = self.db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM papers").fetchone()
        return int(row[0])


_MAX_BOUND = 30_000  # values bound in one statement: SQLite allows 32,766

_TEXT_COLUMNS = {"title": "p.title", "abstract": "p.abstract"}


def _narrowing_sql(narrowing: Narrowing) -> tuple[str, list[str]]:
    """A ``Narrowing`` as a SQL condition on ``papers p`` (values bound, never inlined)."""
    if isinstance(narrowing, FtsMatch):
        return (
            "p.seq IN (SELECT rowid FROM papers_fts WHERE papers_fts MATCH ?)",
            [narrowing.expression],
        )
    if isinstance(narrowing, Spelled):
        text = " || ' ' || ".join(_TEXT_COLUMNS[name] for name in narrowing.fields)
        return f"(instr(lower({text}), ?) > 0 OR ({text}) GLOB '*[^ -~]*')", [narrowing.prefix]
    if isinstance(narrowing, HasValues):
        column = "p.authors" if narrowing.field == "author" else "p.categories"
        return f"{column} != '[]'", []
    parts = [_narrowing_sql(part) for part in narrowing.parts]
    joiner = " AND " if isinstance(narrowing, AllOf) else " OR "
    return (
        "(" + joiner.join(sql for sql, _ in parts) + ")",
        [value for _, values in parts for value in values],
    )


_PAPER_SELECT = (
    "SELECT p.seq, p.id, p.title, p.abstract, p.links, p.first_seen, "
    "t.times_seen, t.best_position, t.last_seen, "
    "p.arxiv_id, p.authors, p.categories, p.published, t.upvotes, t.comments, p.github "
    "FROM papers p JOIN paper_trends t ON t.seq = p.seq"
)


def _paper(row: Sequence[Any]) -> PaperRow:
    seq, pid, title, abstract, links, first_seen, times_seen, best, last_seen = row[:9]
    return PaperRow(
        seq,
        pid,
        title,
        abstract,
        json.loads(links),
        first_seen,
        times_seen,
        best,
        last_seen,
        _meta(row[9:]),
    )


def _meta(row: Sequence[Any]) -> PaperMeta:
    """A text dump's paper (the common case) shares the one empty ``NO_META``."""
    arxiv_id, authors, categories, published, upvotes, comments, github = row
    if arxiv_id is None and authors == "[]" and upvotes is None and github is None:
        return NO_META
    return PaperMeta(
        arxiv_id,
        tuple(json.loads(authors)),
        tuple(json.loads(categories)),
        published,
        upvotes,
        comments,
        github,
    )
