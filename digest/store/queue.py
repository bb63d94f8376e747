"""The outbox seen from outside: what waits, what failed, the last delivery run, retries.

Read by ``digest status``, ``digest outbox list`` and the end of every send (so a
run reports what it left behind, not only what it built); written only by
``digest outbox retry``, which moves digests back to ready without touching their
bytes or Message-ID.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from digest.store.base import Base

DELIVERY_JOBS = ("deliver", "send")  # the daemon's and run --once's runs; `digest send`'s


@dataclass(frozen=True, slots=True)
class Waiting:
    """Digests still to deliver: ``queued`` ones go at the next run, ``deferred`` ones at
    ``next_attempt_at`` (the earliest shown)."""

    queued: int = 0
    deferred: int = 0
    next_attempt_at: str | None = None

    @property
    def total(self) -> int:
        return self.queued + self.deferred

    def as_json(self) -> dict[str, object]:
        return {
            "queued": self.queued,
            "deferred": self.deferred,
            "next_attempt_at": self.next_attempt_at,
        }


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One digest as ``digest outbox list`` shows it."""

    id: int
    email: str
    subscriber_status: str
    status: str
    created_at: str
    attempts: int
    next_attempt_at: str | None
    error: str | None
    message_id: str
    papers: int
    has_message: bool

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "email": self.email,
            "subscriber_status": self.subscriber_status,
            "status": self.status,
            "created_at": self.created_at,
            "attempts": self.attempts,
            "next_attempt_at": self.next_attempt_at,
            "error": self.error,
            "message_id": self.message_id,
            "papers": self.papers,
            "retryable": self.has_message,
        }


_ROW_SELECT = (
    "SELECT g.id, s.email, s.status, g.status, g.created_at, g.attempts, g.next_attempt_at, "
    "g.error, g.message_id, g.papers, "
    "EXISTS (SELECT 1 FROM messages m WHERE m.digest_id = g.id) "
    "FROM digests g JOIN subscribers s ON s.id = g.subscriber_id"
)


def _outbox_row(row: Sequence[Any]) -> OutboxRow:
    """A row of ``_ROW_SELECT``: the digest's columns, then whether it holds a message."""
    values = [*row[:-1], bool(row[-1])]
    return OutboxRow(*values)


class QueueStore(Base):
    def waiting(self, subscriber_id: int | None = None) -> Waiting:
        """What is left queued or deferred now, whichever run built it."""
        sql = (
            "SELECT status, COUNT(*), MIN(next_attempt_at) FROM digests "
            "WHERE status IN ('queued', 'deferred')"
        )
        params: list[Any] = []
        if subscriber_id is not None:
            sql += " AND subscriber_id = ?"
            params.append(subscriber_id)
        rows = {row[0]: row for row in self.db.execute(sql + " GROUP BY status", params)}
        deferred = rows.get("deferred")
        return Waiting(
            queued=rows["queued"][1] if "queued" in rows else 0,
            deferred=deferred[1] if deferred else 0,
            next_attempt_at=deferred[2] if deferred else None,
        )

    def failed_since(self, since: str) -> int:
        """Digests that failed and were built since ``since``."""
        row = self.db.execute(
            "SELECT COUNT(*) FROM digests WHERE status = 'failed' AND created_at >= ?", [since]
        ).fetchone()
        return int(row[0])

    def subscriber_counts(self) -> dict[str, int]:
        rows = self.db.execute("SELECT status, COUNT(*) FROM subscribers GROUP BY status")
        return {row[0]: row[1] for row in rows}

    def last_delivery_run(self) -> dict[str, Any] | None:
        """The newest run of a delivery job (finished or not: a crash shows as unfinished)."""
        marks = ", ".join("?" * len(DELIVERY_JOBS))
        row = self.db.execute(
            "SELECT job, scheduled_for, started_at, finished_at, summary FROM job_runs "
            f"WHERE job IN ({marks}) ORDER BY started_at DESC, id DESC LIMIT 1",
            list(DELIVERY_JOBS),
        ).fetchone()
        if row is None:
            return None
        keys = ("job", "scheduled_for", "started_at", "finished_at", "summary")
        return dict(zip(keys, row, strict=True))

    def outbox_rows(
        self, statuses: Sequence[str] | None = None, limit: int = 1000
    ) -> list[OutboxRow]:
        """Digests, newest first, optionally only in ``statuses``."""
        sql, params = _ROW_SELECT, list[Any]()
        if statuses:
            sql += f" WHERE g.status IN ({', '.join('?' * len(statuses))})"
            params.extend(statuses)
        rows = self.db.execute(sql + " ORDER BY g.id DESC LIMIT ?", [*params, limit])
        return [_outbox_row(row) for row in rows]

    def retry_candidates(
        self, statuses: Sequence[str], since: str | None, subscriber_id: int | None
    ) -> list[OutboxRow]:
        """Digests in ``statuses`` that a retry could concern, oldest first."""
        sql = _ROW_SELECT + f" WHERE g.status IN ({', '.join('?' * len(statuses))})"
        params: list[Any] = list(statuses)
        if since is not None:
            sql += " AND g.created_at >= ?"
            params.append(since)
        if subscriber_id is not None:
            sql += " AND g.subscriber_id = ?"
            params.append(subscriber_id)
        rows = self.db.execute(sql + " ORDER BY g.id", params)
        return [_outbox_row(row) for row in rows]

    def make_due(self, digest_ids: Sequence[int], now: str) -> int:
        """Deferred digests become due now (their error is kept as the last reason)."""
        with self.write():
            return sum(
                self.db.execute(
                    "UPDATE digests SET next_attempt_at = ? WHERE id = ? AND status = 'deferred'",
                    [now, digest_id],
                ).rowcount
                for digest_id in digest_ids
            )

    def requeue_failed(self, digest_ids: Sequence[int]) -> int:
        """Failed digests that still hold their message go back to ``queued``, unchanged."""
        with self.write():
            return sum(
                self.db.execute(
                    "UPDATE digests SET status = 'queued', next_attempt_at = NULL, owner = NULL "
                    "WHERE id = ? AND status = 'failed' "
                    "AND EXISTS (SELECT 1 FROM messages WHERE digest_id = digests.id)",
                    [digest_id],
                ).rowcount
                for digest_id in digest_ids
            )
