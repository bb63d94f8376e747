"""Dumps, papers, sightings and rejections: what ingest writes (reads: ``paper_reads``)."""

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from digest.models import (
    NO_META,
    Entry,
    PaperMeta,
)
from digest.store.base import iso
from digest.store.paper_reads import PaperReads
from digest.titles import title_and_arxiv_id


@dataclass(frozen=True, slots=True)
class DumpCounts:
    entries: int
    new: int
    seen: int


class PaperStore(PaperReads):
    """What ingest writes; what readers ask of the papers is ``PaperReads``."""

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

    def rejections_summary(self) -> tuple[int, str | None]:
        """How many dumps were rejected and when the last one was: for operators (``/healthz``)."""
        row = self.db.execute("SELECT COUNT(*), MAX(rejected_at) FROM rejections").fetchone()
        return int(row[0]), row[1]

    def last_ingest_at(self) -> str | None:
        row = self.db.execute("SELECT MAX(ingested_at) FROM dumps").fetchone()
        return row[0] if row else None

    def _seqs_of(self, ids: set[str]) -> dict[str, int]:
        marks = ",".join("?" * len(ids))
        rows = self.db.execute(f"SELECT id, seq FROM papers WHERE id IN ({marks})", list(ids))
        return {row[0]: row[1] for row in rows}

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
