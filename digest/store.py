"""The store: the only module that talks to the SQLite database (through sqlite-utils).

A real file in WAL mode, its schema built by the append-only migrations in
``migrations.py``.  Writes happen in ``BEGIN IMMEDIATE`` transactions so that
two processes never interleave half-done work, and a dump is stored whole or
not at all.
"""

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from digest.errors import StoreError
from digest.migrations import migrations
from digest.models import Entry, Subscriber, find_links, paper_id

BUSY_TIMEOUT_MS = 30_000
_MAX_PARAMS = 900


def iso(moment: datetime) -> str:
    """Timestamps are stored as sortable UTC ISO-8601 strings (time is always zone-aware here)."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: pass an aware one")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class PaperRow:
    """A stored paper with its trend signal."""

    seq: int
    id: str
    title: str
    abstract: str
    links: list[str]
    first_seen: str
    times_seen: int
    best_position: int
    last_seen: str

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "abstract": self.abstract,
            "links": self.links,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "times_seen": self.times_seen,
            "best_position": self.best_position,
        }


@dataclass(frozen=True, slots=True)
class DumpCounts:
    entries: int
    new: int
    seen: int


class Store:
    """Open (creating and migrating as needed) the database at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = Database(path)
            self.db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self.db.execute("PRAGMA foreign_keys = ON")
            self.db.enable_wal()
            self._migrate()
        except sqlite3.DatabaseError as err:
            raise StoreError(f"{path}: cannot open the database: {err}") from None
        except OSError as err:
            raise StoreError(f"{path}: cannot create the database folder: {err.strerror}") from None

    def _migrate(self) -> None:
        """Apply pending migrations under the write lock; refuse a schema newer than this code."""
        with self._immediate():
            known = {m.name for m in migrations._migrations}
            unknown = [m.name for m in migrations.applied(self.db) if m.name not in known]
            if unknown:
                raise StoreError(
                    f"{self.path}: the database was written by a newer digest "
                    f"(unknown migrations: {', '.join(unknown)})",
                    "upgrade digest before using this database",
                )
            if migrations.pending(self.db):
                migrations.apply(self.db)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def _immediate(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.conn.rollback()
            raise
        self.db.execute("COMMIT")

    @contextmanager
    def write(self) -> Iterator["Store"]:
        """One all-or-nothing write transaction, taken with the write lock held from the start."""
        with self._immediate():
            yield self

    # dumps -----------------------------------------------------------------

    def dump_by_hash(self, sha256: str) -> dict[str, Any] | None:
        rows = list(self.db["dumps"].rows_where("sha256 = ?", [sha256], limit=1))
        return rows[0] if rows else None

    def add_dump(self, file_name: str, sha256: str, now: datetime) -> int:
        cursor = self.db.execute(
            "INSERT INTO dumps (sha256, file_name, ingested_at) VALUES (?, ?, ?)",
            [sha256, file_name, iso(now)],
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def add_entries(self, dump_id: int, entries: Iterable[Entry], now: datetime) -> DumpCounts:
        """Record each entry as a sighting, creating (and indexing) papers not seen before."""
        stamp = iso(now)
        first_new = self._next_seq()
        next_seq = first_new
        total = new = 0
        for batch in _batches(entries, _MAX_PARAMS):
            known = self._seqs_of({e.paper_id for e in batch})
            papers, sightings = [], []
            for entry in batch:
                seq = known.get(entry.paper_id)
                if seq is None:
                    seq = known[entry.paper_id] = next_seq
                    next_seq += 1
                    links = json.dumps(find_links(entry.abstract))
                    papers.append(
                        (seq, entry.paper_id, entry.title, entry.abstract, links, stamp, dump_id)
                    )
                sightings.append((dump_id, entry.position, seq))
            self.db.conn.executemany(
                "INSERT INTO papers (seq, id, title, abstract, links, first_seen, first_dump) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                papers,
            )
            self.db.conn.executemany(
                "INSERT INTO sightings (dump_id, position, paper_seq) VALUES (?, ?, ?)", sightings
            )
            total += len(batch)
            new += len(papers)
        self.db.execute(
            "INSERT INTO papers_fts (rowid, title, abstract) "
            "SELECT seq, title, abstract FROM papers WHERE seq >= ?",
            [first_new],
        )
        return DumpCounts(total, new, total - new)

    def finish_dump(self, dump_id: int, listing_date: str | None, counts: DumpCounts) -> None:
        self.db.execute(
            "UPDATE dumps SET listing_date = ?, entries = ?, new_papers = ?, seen_papers = ? "
            "WHERE id = ?",
            [listing_date, counts.entries, counts.new, counts.seen, dump_id],
        )

    def add_rejection(self, file_name: str, sha256: str, error: str, now: datetime) -> None:
        with self.write():
            self.db.execute(
                "INSERT INTO rejections (file_name, sha256, error, rejected_at) "
                "VALUES (?, ?, ?, ?)",
                [file_name, sha256, error, iso(now)],
            )

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
        sql = (
            f"{_PAPER_SELECT} WHERE {' AND '.join(where)} "
            "ORDER BY p.first_seen DESC, t.times_seen DESC, t.best_position ASC, p.seq ASC"
        )
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [_paper(row) for row in self.db.execute(sql, params)]

    # subscribers -----------------------------------------------------------

    def subscriber(self, email: str) -> Subscriber | None:
        """The subscriber with this address (case-insensitive), if any."""
        rows = list(self.db["subscribers"].rows_where("email = ? COLLATE NOCASE", [email], limit=1))
        return Subscriber(**rows[0]) if rows else None

    def subscriber_by_secret(self, secret: str) -> Subscriber | None:
        rows = list(self.db["subscribers"].rows_where("secret = ?", [secret], limit=1))
        return Subscriber(**rows[0]) if rows else None

    def subscribers(self, statuses: Sequence[str] | None = None) -> list[Subscriber]:
        where, params = None, None
        if statuses is not None:
            where = f"status IN ({','.join('?' * len(statuses))})"
            params = list(statuses)
        rows = self.db["subscribers"].rows_where(where, params, order_by="id")
        return [Subscriber(**row) for row in rows]

    def insert_subscriber(self, fields: dict[str, Any]) -> Subscriber:
        """Insert a subscriber; a duplicate address raises StoreError."""
        try:
            self.db.table("subscribers").insert(fields)
        except sqlite3.IntegrityError:
            raise StoreError(f"{fields['email']} is already subscribed") from None
        found = self.subscriber(fields["email"])
        assert found is not None
        return found

    def update_subscriber(self, subscriber_id: int, changes: dict[str, Any]) -> None:
        self.db.table("subscribers").update(subscriber_id, changes)

    def delete_subscriber(self, subscriber_id: int) -> None:
        """Everything about a subscriber: their digests and deliveries go with them."""
        self.db.execute("DELETE FROM deliveries WHERE subscriber_id = ?", [subscriber_id])
        self.db.execute("DELETE FROM digests WHERE subscriber_id = ?", [subscriber_id])
        self.db.execute("DELETE FROM subscribers WHERE id = ?", [subscriber_id])

    def paper(self, ref: str) -> PaperRow | None:
        """A paper by id, or by exact (normalized) title."""
        found = self.papers(seqs=self._seqs_for_ref(ref))
        return found[0] if found else None

    def _seqs_for_ref(self, ref: str) -> list[int]:
        rows = self.db.execute(
            "SELECT seq FROM papers WHERE id = ? OR id = ? LIMIT 1", [ref.strip(), paper_id(ref)]
        ).fetchall()
        return [row[0] for row in rows]

    def last_digest(self, subscriber_id: int) -> dict[str, Any] | None:
        """The subscriber's newest digest, whatever became of it."""
        rows = list(
            self.db["digests"].rows_where(
                "subscriber_id = ?", [subscriber_id], order_by="id DESC", limit=1
            )
        )
        return rows[0] if rows else None

    def last_digest_seqs(self) -> dict[int, int]:
        """Per subscriber id: the newest paper seq their latest digest considered."""
        rows = self.db.execute(
            "SELECT subscriber_id, MAX(max_seq) FROM digests GROUP BY subscriber_id"
        )
        return {row[0]: row[1] for row in rows}

    def window_papers(self, after_seq: int | None, since: datetime) -> list[PaperRow]:
        """Papers stored after ``after_seq`` or first seen since ``since``, oldest first."""
        floor = after_seq if after_seq is not None else self._next_seq()
        rows = self.db.execute(
            f"{_PAPER_SELECT} WHERE p.seq > ? OR p.first_seen >= ? ORDER BY p.seq",
            [floor, iso(since)],
        )
        return [_paper(row) for row in rows]

    def delivered_since(self, first_seq: int) -> dict[int, set[int]]:
        """Per subscriber id: the paper seqs (from ``first_seq`` on) already put in a digest."""
        found: dict[int, set[int]] = {}
        rows = self.db.execute(
            "SELECT subscriber_id, paper_seq FROM deliveries WHERE paper_seq >= ?", [first_seq]
        )
        for subscriber_id, seq in rows:
            found.setdefault(subscriber_id, set()).add(seq)
        return found

    def delivery(self, subscriber_id: int, paper_seq: int) -> dict[str, Any] | None:
        """When (and in which digest) a paper was put in a digest for a subscriber."""
        row = self.db.execute(
            "SELECT g.id, g.created_at, g.status, g.sent_at FROM deliveries d "
            "JOIN digests g ON g.id = d.digest_id WHERE d.subscriber_id = ? AND d.paper_seq = ?",
            [subscriber_id, paper_seq],
        ).fetchone()
        if row is None:
            return None
        return {"digest_id": row[0], "created_at": row[1], "status": row[2], "sent_at": row[3]}

    # status ----------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        def count(table: str) -> int:
            return self.db[table].count if self.db[table].exists() else 0

        last = self.db.execute(
            "SELECT file_name, ingested_at FROM dumps ORDER BY id DESC LIMIT 1"
        ).fetchone()
        return {
            "database": str(self.path),
            "database_bytes": _size(self.path),
            "papers": count("papers"),
            "dumps": count("dumps"),
            "sightings": count("sightings"),
            "rejections": count("rejections"),
            "subscribers": count("subscribers"),
            "last_ingest": {"file": last[0], "at": last[1]} if last else None,
        }


_PAPER_SELECT = (
    "SELECT p.seq, p.id, p.title, p.abstract, p.links, p.first_seen, "
    "t.times_seen, t.best_position, t.last_seen "
    "FROM papers p JOIN paper_trends t ON t.seq = p.seq"
)


def _paper(row: Sequence[Any]) -> PaperRow:
    seq, pid, title, abstract, links, first_seen, times_seen, best, last_seen = row
    return PaperRow(
        seq, pid, title, abstract, json.loads(links), first_seen, times_seen, best, last_seen
    )


def _size(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return sum(p.stat().st_size for p in (path, wal) if p.exists())


def _batches(entries: Iterable[Entry], size: int) -> Iterator[list[Entry]]:
    batch: list[Entry] = []
    for entry in entries:
        batch.append(entry)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
