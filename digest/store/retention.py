"""Retention: the deletes that keep the database from growing without bound.

Only what nothing reads any more goes: old job runs (the newest of each job
stays, the scheduler's missed-run check reads it), old rejection records, and
the message bytes of digests that are done with them (sent ones; failed ones
after the retry window).  Then the free pages go back to the file system.
Digests and their deliveries rows stay: they say which papers each subscriber
was sent, which the next digest and the "N more" pages read.
Each method counts what it would remove when ``dry_run`` is set, and removes it
otherwise, in one write transaction.
"""

from dataclasses import dataclass

from digest.store.base import Base
from digest.store.migrations import INCREMENTAL


@dataclass(frozen=True, slots=True)
class Pruned:
    """What one rule removed (or would remove): rows, and the bytes of message data."""

    rows: int
    bytes: int = 0


class RetentionStore(Base):
    def prune_job_runs(self, before: str, *, dry_run: bool) -> Pruned:
        """Job runs started before ``before``, except the newest run of each job."""
        where = "started_at < ? AND id NOT IN (SELECT MAX(id) FROM job_runs GROUP BY job)"
        return self._prune("job_runs", where, [before], dry_run=dry_run)

    def prune_rejections(self, before: str, *, dry_run: bool) -> Pruned:
        """Records of dumps rejected before ``before`` (the files stay in inbox/failed/)."""
        return self._prune("rejections", "rejected_at < ?", [before], dry_run=dry_run)

    def prune_messages(self, failed_before: str, *, dry_run: bool) -> Pruned:
        """Drop the bytes of sent digests, and of failed ones built before ``failed_before``
        (until then ``digest outbox retry --failed`` can send them again).

        Each message looks up its own digest: the work is the messages left, not (as with
        ``digest_id IN (SELECT ...)``) every digest ever sent."""
        where = (
            "EXISTS (SELECT 1 FROM digests g WHERE g.id = messages.digest_id "
            "AND (g.status = 'sent' OR (g.status = 'failed' AND g.created_at < ?)))"
        )
        count, size = self.db.execute(
            f"SELECT COUNT(*), COALESCE(SUM(LENGTH(data)), 0) FROM messages WHERE {where}",
            [failed_before],
        ).fetchone()
        if not dry_run and count:
            with self.write():
                self.db.execute(f"DELETE FROM messages WHERE {where}", [failed_before])
        return Pruned(int(count), int(size))

    def reclaim_free_pages(self, *, dry_run: bool) -> Pruned:
        """Give the free pages back to the file system (``PRAGMA incremental_vacuum``):
        the file shrinks at the next checkpoint.  Rows are untouched.  A file made
        before ``auto_vacuum = INCREMENTAL`` (see ``Base``) gives back nothing."""
        size = int(self.db.execute("PRAGMA page_size").fetchone()[0])
        if self.db.execute("PRAGMA auto_vacuum").fetchone()[0] != INCREMENTAL:
            return Pruned(0)
        if dry_run:
            free = int(self.db.execute("PRAGMA freelist_count").fetchone()[0])
            return Pruned(free, free * size)
        before = self.db.execute("PRAGMA page_count").fetchone()[0]
        with self.write():
            free = self.db.execute("PRAGMA freelist_count").fetchone()[0]
            for _ in range(free):  # Python's sqlite3 steps it once: one page each (~20 us)
                self.db.execute("PRAGMA incremental_vacuum")
        self.db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        pages = int(before - self.db.execute("PRAGMA page_count").fetchone()[0])
        return Pruned(pages, pages * size)

    def used_bytes(self) -> int:
        """The bytes of the pages in use (the file keeps freed pages for reuse)."""
        pages = self.db.execute("PRAGMA page_count").fetchone()[0]
        free = self.db.execute("PRAGMA freelist_count").fetchone()[0]
        size = self.db.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)

    def _prune(self, table: str, where: str, params: list[str], *, dry_run: bool) -> Pruned:
        count = int(
            self.db.execute(f"SELECT COUNT(*) FROM {table} WHERE {where}", params).fetchone()[0]
        )
        if not dry_run and count:
            with self.write():
                self.db.execute(f"DELETE FROM {table} WHERE {where}", params)
        return Pruned(count)
