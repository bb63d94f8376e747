"""Dumps, papers, sightings and rejections: what ingest writes and every reader reads."""

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from digest.models import (
    NO_META,
    AllOf,
    Entry,
    FtsMatch,
    HasValues,
    Narrowing,
    PaperMeta,
    PaperRow,
    Sighting,
    Spelled,
)
from digest.store.base import Base, iso
from digest.titles import paper_id, title_and_arxiv_id


@dataclass(frozen=True, slots=True)
class DumpCounts:
    entries: int
    new: int
    seen: int


class PaperStore(Base):
    # dumps -----------------------------------------------------------------

    def dump_by_hash(self, sha256: str) -> dict[str, Any] | None:
        rows = list(self.db["dumps"].rows_where("sha256 = ?", [sha256], limit=1))
        return rows[0] if rows else None

    def add_dump(
        self, file_name: str, sha256: str, now: datetime, source: str | None = None
    ) -> int:
        """A dump file, or (``source``: its name) a source's response."""
        with self.write():
            cursor = self.db.execute(
                "INSERT INTO dumps (sha256, file_name, ingested_at, source) VALUES (?, ?, ?, ?)",
                [sha256, file_name, iso(now), source],
            )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def add_entries(
        self, dump_id: int, batches: Iterable[Sequence[Entry]], now: datetime
    ) -> DumpCounts:
        """Record each entry as a sighting, creating (and indexing) papers not seen before.

        Each batch is indexed as it comes (FTS5 from the rows just written), so
        memory stays flat however long the dump.  Papers are inserted first and
        looked up only when some of them were already stored, which in a big
        dump of new papers saves a query per batch.
        """
        with self.write():
            return self._add_entries(dump_id, batches, iso(now))

    def _add_entries(
        self, dump_id: int, batches: Iterable[Sequence[Entry]], stamp: str
    ) -> DumpCounts:
        next_seq = self._next_seq()
        total = new = 0
        for batch in batches:
            if any(entry.meta is not None for entry in batch):
                added, next_seq = self._add_sourced(dump_id, batch, next_seq, stamp)
            else:
                added, next_seq = self._add_dumped(dump_id, batch, next_seq, stamp)
            total += len(batch)
            new += added
        return DumpCounts(total, new, total - new)

    def _add_dumped(
        self, dump_id: int, batch: Sequence[Entry], next_seq: int, stamp: str
    ) -> tuple[int, int]:
        """A text dump's entries: the hot path of a big ingest, insert first, look up after."""
        seqs: dict[str, int] = {}
        papers: list[tuple[Any, ...]] = []
        for _position, title, abstract, _line, pid, links, _meta in batch:
            if pid not in seqs:
                seqs[pid] = next_seq
                links_json = json.dumps(links) if links else "[]"
                papers.append((next_seq, pid, title, abstract, links_json, stamp, dump_id))
                next_seq += 1
        added = self._insert_papers(_INSERT_PAPER, papers)
        if added < len(papers):
            seqs = self._seqs_of(set(seqs))
        self.db.conn.executemany(
            "INSERT INTO sightings (dump_id, position, paper_seq) VALUES (?, ?, ?)",
            [(dump_id, entry.position, seqs[entry.paper_id]) for entry in batch],
        )
        return added, next_seq

    def _add_sourced(
        self, dump_id: int, batch: Sequence[Entry], next_seq: int, stamp: str
    ) -> tuple[int, int]:
        """A source's entries: which stored paper each is, new papers inserted with what the
        source knows, stored ones given what they lack, each sighting with its votes."""
        batch = self._identified(batch)
        known = self._seqs_of({entry.paper_id for entry in batch})
        seqs = dict(known)
        papers: list[tuple[Any, ...]] = []
        for entry in batch:
            if entry.paper_id not in seqs:
                seqs[entry.paper_id] = next_seq
                papers.append(_sourced_row(next_seq, entry, stamp, dump_id))
                next_seq += 1
        added = self._insert_papers(_INSERT_SOURCED, papers)
        conn = self.db.conn
        conn.executemany(
            "INSERT INTO sightings (dump_id, position, paper_seq, upvotes, comments, listed) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [(dump_id, e.position, seqs[e.paper_id], *_votes(e.meta)) for e in batch],
        )
        conn.executemany(
            _ENRICH,
            [
                _enrichment(known[e.paper_id], e.meta)
                for e in batch
                if e.meta and e.paper_id in known
            ],
        )
        return added, next_seq

    def _identified(self, batch: Sequence[Entry]) -> list[Entry]:
        """Each entry with the id of the stored paper it is: the one with its arXiv id, or
        the one with its title and no other arXiv id; a paper with the title of another
        (different arXiv id) gets an id of its own."""
        wanted = {e.meta.arxiv_id for e in batch if e.meta and e.meta.arxiv_id}
        by_arxiv = dict(self._rows("SELECT arxiv_id, id FROM papers WHERE arxiv_id IN", wanted))
        titled = dict(
            self._rows("SELECT id, arxiv_id FROM papers WHERE id IN", {e.paper_id for e in batch})
        )
        found = []
        for entry in batch:
            arxiv_id = entry.meta.arxiv_id if entry.meta else None
            if arxiv_id is None:
                found.append(entry)
            elif arxiv_id in by_arxiv:
                found.append(entry._replace(paper_id=by_arxiv[arxiv_id]))
            elif titled.get(entry.paper_id) not in (None, arxiv_id):
                found.append(entry._replace(paper_id=title_and_arxiv_id(entry.title, arxiv_id)))
            else:
                titled[entry.paper_id] = arxiv_id  # the title is this paper's: a namesake is not
                found.append(entry)
        return found

    def _rows(self, select_in: str, values: set[str]) -> list[tuple[Any, ...]]:
        """``SELECT … WHERE column IN (values)``, in chunks within SQLite's variable limit."""
        ordered = sorted(values)
        rows: list[tuple[Any, ...]] = []
        for start in range(0, len(ordered), 900):
            chunk = ordered[start : start + 900]
            rows += self.db.execute(f"{select_in} ({','.join('?' * len(chunk))})", chunk).fetchall()
        return rows

    def _insert_papers(self, insert: str, papers: list[tuple[Any, ...]]) -> int:
        """Insert the papers whose id is not stored yet, and index them; how many that was."""
        if not papers:
            return 0
        conn = self.db.conn
        added = conn.executemany(insert, papers).rowcount
        if added:
            conn.execute(
                "INSERT INTO papers_fts (rowid, title, abstract) "
                "SELECT seq, title, abstract FROM papers WHERE seq BETWEEN ? AND ?",
                [papers[0][0], papers[-1][0]],
            )
        return added

    def finish_dump(self, dump_id: int, listing_date: str | None, counts: DumpCounts) -> None:
        with self.write():
            self.db.execute(
                "UPDATE dumps SET listing_date = ?, entries = ?, new_papers = ?, seen_papers = ? "
                "WHERE id = ?",
                [listing_date, counts.entries, counts.new, counts.seen, dump_id],
            )

    def rejection_by_hash(self, sha256: str) -> str | None:
        """Why content with this hash was rejected before, if it was."""
        row = self.db.execute(
            "SELECT error FROM rejections WHERE sha256 = ? ORDER BY id DESC LIMIT 1", [sha256]
        ).fetchone()
        return str(row[0]) if row else None

    def add_rejection(self, file_name: str, sha256: str, error: str, now: datetime) -> None:
        with self.write():
            self.db.execute(
                "INSERT INTO rejections (file_name, sha256, error, rejected_at) "
                "VALUES (?, ?, ?, ?)",
                [file_name, sha256, error, iso(now)],
            )

    def max_seq(self) -> int:
        """The newest paper's seq (0 when there are none)."""
        return self._next_seq() - 1

    def version(self) -> tuple[int, ...]:
        """Changes whenever an ingest commits, in any process: newest paper, dump id, dumps."""
        row = self.db.execute(
            "SELECT (SELECT COALESCE(MAX(seq), 0) FROM papers), "
            "(SELECT COALESCE(MAX(id), 0) FROM dumps), (SELECT COUNT(*) FROM dumps)"
        ).fetchone()
        return tuple(int(value) for value in row)

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

    def rejections_summary(self) -> tuple[int, str | None]:
        """How many dumps were rejected and when the last one was: for operators (``/healthz``)."""
        row = self.db.execute("SELECT COUNT(*), MAX(rejected_at) FROM rejections").fetchone()
        return int(row[0]), row[1]

    def last_ingest_at(self) -> str | None:
        row = self.db.execute("SELECT MAX(ingested_at) FROM dumps").fetchone()
        return row[0] if row else None

    def _next_seq(self) -> int:
        row = self.db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM papers").fetchone()
        return int(row[0])

    def _seqs_of(self, ids: set[str]) -> dict[str, int]:
        marks = ",".join("?" * len(ids))
        rows = self.db.execute(f"SELECT id, seq FROM papers WHERE id IN ({marks})", list(ids))
        return {row[0]: row[1] for row in rows}

    # papers ----------------------------------------------------------------

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

    def window_papers(self, after_seq: int | None, since: datetime) -> list[PaperRow]:
        """Papers stored after ``after_seq`` or first seen since ``since``, oldest first."""
        floor = after_seq if after_seq is not None else self._next_seq()
        rows = self.db.execute(
            f"{_PAPER_SELECT} WHERE p.seq > ? OR p.first_seen >= ? ORDER BY p.seq",
            [floor, iso(since)],
        )
        return [_paper(row) for row in rows]

    # status ----------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        last = self.db.execute(
            "SELECT file_name, ingested_at FROM dumps ORDER BY id DESC LIMIT 1"
        ).fetchone()
        return {
            "database": str(self.path),
            "database_bytes": _size(self.path),
            "papers": self.count("papers"),
            "dumps": self.count("dumps"),
            "sightings": self.count("sightings"),
            "rejections": self.count("rejections"),
            "subscribers": self.count("subscribers"),
            "last_ingest": {"file": last[0], "at": last[1]} if last else None,
        }


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


_INSERT_PAPER = (
    "INSERT INTO papers (seq, id, title, abstract, links, first_seen, first_dump) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"
)
_INSERT_SOURCED = (
    "INSERT INTO papers (seq, id, title, abstract, links, first_seen, first_dump, "
    "arxiv_id, authors, categories, published, github) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"
)
_ENRICH = (
    "UPDATE papers SET arxiv_id = COALESCE(arxiv_id, ?), "
    "authors = CASE WHEN authors = '[]' THEN ? ELSE authors END, "
    "categories = CASE WHEN categories = '[]' THEN ? ELSE categories END, "
    "published = COALESCE(published, ?), github = COALESCE(github, ?) WHERE seq = ?"
)


def _sourced_row(seq: int, entry: Entry, stamp: str, dump_id: int) -> tuple[Any, ...]:
    meta = entry.meta or NO_META
    links = json.dumps(entry.links) if entry.links else "[]"
    return (
        seq,
        entry.paper_id,
        entry.title,
        entry.abstract,
        links,
        stamp,
        dump_id,
        meta.arxiv_id,
        json.dumps(meta.authors),
        json.dumps(meta.categories),
        meta.published,
        meta.github,
    )


def _votes(meta: PaperMeta | None) -> tuple[int | None, int | None, str | None]:
    """What a sighting records of its source's listing: votes, comments, the listed day."""
    return (meta.upvotes, meta.comments, meta.listed) if meta else (None, None, None)


def _enrichment(seq: int, meta: PaperMeta) -> tuple[Any, ...]:
    """A paper first known from a text dump gains what a source knows: what it lacks only."""
    return (
        meta.arxiv_id,
        json.dumps(meta.authors),
        json.dumps(meta.categories),
        meta.published,
        meta.github,
        seq,
    )


def _size(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return sum(p.stat().st_size for p in (path, wal) if p.exists())
