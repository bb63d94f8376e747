"""Digests and deliveries: the outbox's rows and their state machine.

A digest is recorded with its deliveries (one row per subscriber and paper,
primary key on the pair, so a paper can never be in two digests for the same
subscriber) and its message bytes, compressed, so a retry sends exactly the
same message.  The bytes live in ``messages``, one row per digest deleted once
it is sent, so the pages they free are reused by the next day's messages (kept
as a NULL column of ``digests`` they left its pages nearly empty for good).
Delivery claims a digest by moving it to ``sending`` with the sender's pid as
owner; a digest left ``sending`` by a dead process is queued again.  A failed
digest keeps its bytes (``digest outbox retry --failed`` sends it again, same
Message-ID) until retention drops them after ``[storage] keep_failed_days``.
"""

import sqlite3
import threading
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import zstandard

from digest.store.base import Base
from digest.store.subscribers import insert_event

READY = ("queued", "deferred")
# Zstandard, not zlib level 1 (digest's pack until issue 16): on 1,000 digests of 53 KB,
# 11-12 KB instead of 14.9 KB, unpacked in 0.03 ms instead of 0.15 ms (in the delivering
# process).  Level 1 with a compressor kept per thread packs in 0.10 ms (a render worker);
# level 3 with a new one each time took 0.16 ms for 11.1 KB instead of 11.6 KB.
# Stored raw they would cost no packing, but 4x the bytes written, read back and kept.
COMPRESSION = 1
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"  # never the start of a zlib stream: older rows still read
_IDS_PER_STATEMENT = 500  # well under SQLite's 32,766 host parameters


_PER_THREAD = threading.local()


class Packed(bytes):
    """A message compressed the store's way (``pack``), ready to record as it is."""


def pack(message: bytes) -> Packed:
    """What the store keeps of a queued message: done where the message is rendered (a
    worker process), so recording copies bytes and compresses nothing."""
    compressor: zstandard.ZstdCompressor | None = getattr(_PER_THREAD, "compressor", None)
    if compressor is None:  # not shared: a compressor is for one thread at a time
        compressor = _PER_THREAD.compressor = zstandard.ZstdCompressor(level=COMPRESSION)
    return Packed(compressor.compress(message))


def unpack(data: bytes) -> bytes:
    """A stored message's bytes: Zstandard, or zlib for a row recorded before issue 16."""
    if data.startswith(_ZSTD_MAGIC):
        return zstandard.ZstdDecompressor().decompress(data)
    return zlib.decompress(data)


@dataclass(frozen=True, slots=True)
class QueuedDigest:
    """A digest waiting for delivery, with what delivery needs to know of its subscriber."""

    id: int
    subscriber_id: int
    email: str
    subscriber_status: str
    message_id: str
    papers: int
    attempts: int
    data: bytes | None = field(default=None, repr=False)  # the message in hand (or Packed)


class OutboxStore(Base):
    def record_digest(
        self,
        subscriber_id: int,
        message_id: str,
        max_seq: int,
        seqs: Sequence[int],
        more: int,
        message: bytes,
        created_at: str,
    ) -> int | None:
        """Record a queued digest and its deliveries; ``message`` as rendered or ``Packed``.

        Returns None, recording nothing, when another run already put one of
        these papers in a digest for this subscriber.
        """
        try:
            with self.write():
                cursor = self.db.execute(
                    "INSERT INTO digests (subscriber_id, message_id, max_seq, papers, more, "
                    "created_at) VALUES (?, ?, ?, ?, ?, ?)",
                    [subscriber_id, message_id, max_seq, len(seqs), more, created_at],
                )
                digest_id = int(cursor.lastrowid or 0)
                self.db.execute(
                    "INSERT INTO messages (digest_id, data) VALUES (?, ?)",
                    [digest_id, message if isinstance(message, Packed) else pack(message)],
                )
                self.db.conn.executemany(
                    "INSERT INTO deliveries (subscriber_id, paper_seq, digest_id) VALUES (?, ?, ?)",
                    [(subscriber_id, seq, digest_id) for seq in seqs],
                )
        except sqlite3.IntegrityError:
            return None
        return digest_id

    def record_failed_digest(
        self, subscriber_id: int, message_id: str, max_seq: int, error: str, created_at: str
    ) -> int | None:
        """Record a digest that could not be built: ``failed``, no papers, no message.

        None, recording nothing, when the Message-ID is taken (another run recorded
        the same failure).
        """
        try:
            with self.write():
                cursor = self.db.execute(
                    "INSERT INTO digests (subscriber_id, message_id, status, max_seq, papers, "
                    "created_at, error) VALUES (?, ?, 'failed', ?, 0, ?, ?)",
                    [subscriber_id, message_id, max_seq, created_at, error],
                )
        except sqlite3.IntegrityError:
            return None
        return int(cursor.lastrowid or 0)

    def ready_digests(self, now: str, subscriber_id: int | None = None) -> list[QueuedDigest]:
        """Digests to deliver now: queued ones, and deferred ones whose retry time has come."""
        sql = (
            "SELECT g.id, g.subscriber_id, s.email, s.status, g.message_id, g.papers, g.attempts "
            "FROM digests g JOIN subscribers s ON s.id = g.subscriber_id "
            "WHERE (g.status = 'queued' OR (g.status = 'deferred' AND g.next_attempt_at <= ?))"
        )
        params: list[Any] = [now]
        if subscriber_id is not None:
            sql += " AND g.subscriber_id = ?"
            params.append(subscriber_id)
        rows = self.db.execute(sql + " ORDER BY g.id", params)
        return [QueuedDigest(*row) for row in rows]

    def claim(self, digest_id: int, owner: int) -> bool:
        """Move a ready digest to ``sending`` for this process; False if another took it."""
        return digest_id in self.mark_and_claim([], [digest_id], owner, durable=False)

    def mark_sent(self, digest_id: int, subscriber_id: int, at: str) -> None:
        """Sent: the message is dropped and the subscriber's bounce count reset."""
        self.mark_and_claim([(digest_id, subscriber_id, at)], [], 0, durable=True)

    def mark_and_claim(
        self,
        sent: Sequence[tuple[int, int, str]],
        claims: Sequence[int],
        owner: int,
        *,
        durable: bool,
    ) -> set[int]:
        """Delivery's one regular write: the digests ``sent`` (digest id, subscriber id,
        when) are marked sent, then the ready ones of ``claims`` move to ``sending`` for
        ``owner``, counting an attempt each.  Returns those claimed (another run may have
        taken the others).  A few statements whatever the counts.

        ``durable=False`` does not wait for the disk: a claim a power cut undoes leaves
        the digest ready, a mark undone sends it again (same Message-ID).
        """
        claimed: set[int] = set()
        with self.write(durable=durable):
            if sent:
                self._mark_sent(sent)
            for part in _parts(claims):
                rows = self.db.execute(
                    "UPDATE digests SET status = 'sending', owner = ?, attempts = attempts + 1 "
                    f"WHERE id IN ({_marks(part)}) AND status IN {READY} RETURNING id",
                    [owner, *part],
                ).fetchall()
                claimed.update(row[0] for row in rows)
        return claimed

    def _mark_sent(self, sent: Sequence[tuple[int, int, str]]) -> None:
        self.db.conn.executemany(
            "UPDATE digests SET status = 'sent', sent_at = ?, error = NULL, owner = NULL "
            "WHERE id = ?",
            [(at, digest_id) for digest_id, _, at in sent],
        )
        for part in _parts([digest_id for digest_id, _, _ in sent]):
            self.db.execute(f"DELETE FROM messages WHERE digest_id IN ({_marks(part)})", part)
        for part in _parts(sorted({subscriber_id for _, subscriber_id, _ in sent})):
            self.db.execute(
                f"UPDATE subscribers SET bounces = 0 WHERE id IN ({_marks(part)}) AND bounces != 0",
                part,
            )

    def message(self, digest_id: int) -> bytes:
        row = self.db.execute(
            "SELECT data FROM messages WHERE digest_id = ?", [digest_id]
        ).fetchone()
        return unpack(row[0])

    def mark_deferred(self, digest_id: int, error: str, retry_at: str) -> None:
        with self.write():
            self.db.execute(
                "UPDATE digests SET status = 'deferred', error = ?, next_attempt_at = ?, "
                "owner = NULL WHERE id = ?",
                [error, retry_at, digest_id],
            )

    def mark_failed(
        self, digest_id: int, subscriber_id: int, error: str, *, bounce_limit: int | None
    ) -> bool:
        """A permanent failure; with ``bounce_limit``, count a bounce. True if now bouncing.

        The message bytes stay, for a retry once the address or relay is fixed.
        """
        with self.write():
            self.db.execute(
                "UPDATE digests SET status = 'failed', error = ?, owner = NULL WHERE id = ?",
                [error, digest_id],
            )
            if bounce_limit is None:
                return False
            self.db.execute(
                "UPDATE subscribers SET bounces = bounces + 1 WHERE id = ?", [subscriber_id]
            )
            cursor = self.db.execute(
                "UPDATE subscribers SET status = 'bouncing' "
                "WHERE id = ? AND bounces >= ? AND status = 'active'",
                [subscriber_id, bounce_limit],
            )
            if cursor.rowcount != 1:
                return False
            detail = error[:200]
            insert_event(
                self.db, subscriber_id, "bounce", "delivery", "active", "bouncing", detail, None
            )
            return True

    def release(self, digest_id: int) -> None:
        """Give a claimed digest back untouched (the transport could not even start)."""
        with self.write():
            self.db.execute(
                "UPDATE digests SET status = 'queued', owner = NULL, attempts = attempts - 1 "
                "WHERE id = ? AND status = 'sending'",
                [digest_id],
            )

    def hold(self, digest_id: int, error: str, retry_at: str) -> None:
        """Give a claimed digest back as deferred, with the reason, without using up the
        attempt: the relay refused it for a reason of its own (busy, size limit)."""
        with self.write():
            self.db.execute(
                "UPDATE digests SET status = 'deferred', error = ?, next_attempt_at = ?, "
                "owner = NULL, attempts = attempts - 1 WHERE id = ? AND status = 'sending'",
                [error, retry_at, digest_id],
            )

    def sending_owners(self) -> dict[int, int | None]:
        """Digests marked ``sending``: id -> owner pid."""
        rows = self.db.execute("SELECT id, owner FROM digests WHERE status = 'sending'")
        return {row[0]: row[1] for row in rows}

    def requeue(self, digest_ids: Sequence[int]) -> None:
        """Queue again digests whose sender died mid-send (same bytes, same Message-ID)."""
        with self.write():
            self.db.conn.executemany(
                "UPDATE digests SET status = 'queued', owner = NULL "
                "WHERE id = ? AND status = 'sending'",
                [(digest_id,) for digest_id in digest_ids],
            )

    def last_digest_times(self) -> dict[int, str]:
        """Per subscriber id: when their newest digest was built."""
        rows = self.db.execute(
            "SELECT subscriber_id, MAX(created_at) FROM digests GROUP BY subscriber_id"
        )
        return {row[0]: row[1] for row in rows}

    def last_digest_time(self, subscriber_id: int) -> str | None:
        row = self.db.execute(
            "SELECT MAX(created_at) FROM digests WHERE subscriber_id = ?", [subscriber_id]
        ).fetchone()
        return row[0] if row else None

    def digest_counts(self) -> dict[str, int]:
        rows = self.db.execute("SELECT status, COUNT(*) FROM digests GROUP BY status")
        return {row[0]: row[1] for row in rows}

    def last_digest(self, subscriber_id: int) -> dict[str, Any] | None:
        """The subscriber's newest digest, whatever became of it."""
        rows = list(
            self.db["digests"].rows_where(
                "subscriber_id = ?", [subscriber_id], order_by="id DESC", limit=1
            )
        )
        return rows[0] if rows else None

    def last_digest_seqs(
        self, statuses: Sequence[str] | None = None, also: int | None = None
    ) -> dict[int, int]:
        """Per subscriber id: the newest paper seq their latest digest considered.

        With ``statuses``, only for subscribers in them (and subscriber ``also``): a
        batch reads the windows of those who can be due, not of everyone who ever was.
        """
        whose, params = _whose(statuses, also)
        rows = self.db.execute(
            "SELECT s.id, MAX(g.max_seq) FROM subscribers s "
            f"CROSS JOIN digests g ON g.subscriber_id = s.id WHERE {whose} GROUP BY s.id",
            params,
        )
        return {row[0]: row[1] for row in rows}

    def delivered_since(
        self,
        first_seq: int,
        statuses: Sequence[str] | None = None,
        also: int | None = None,
        *,
        in_window: bool = False,
    ) -> dict[int, set[int]]:
        """Per subscriber id: the paper seqs (from ``first_seq`` on) already put in a digest;
        with ``statuses``, only for subscribers in them (and subscriber ``also``); with
        ``in_window``, only those after the newest paper their latest digest considered
        (``last_digest_seqs``), the only ones a next digest could take again.

        Read per subscriber along the primary key (subscriber, paper) from one bound, the
        later of ``first_seq`` and their window's start, so only those rows are touched,
        not the whole history (``CROSS JOIN`` keeps SQLite from scanning every delivery
        instead).  ``in_window`` matters once some subscriber's window reaches far back:
        the batch then reads from that old ``first_seq`` on, and everyone's sent papers
        since were most of its memory and time.
        """
        whose, params = _whose(statuses, also)
        after = (
            "COALESCE((SELECT MAX(g.max_seq) FROM digests g WHERE g.subscriber_id = s.id), -1)"
            if in_window
            else "-1"
        )
        rows = self.db.execute(  # MATERIALIZED: each bound is worked out once, not per row
            f"WITH w AS MATERIALIZED (SELECT s.id, MAX({after}, ? - 1) AS after "
            f"FROM subscribers s WHERE {whose}) SELECT d.subscriber_id, d.paper_seq "
            "FROM w CROSS JOIN deliveries d ON d.subscriber_id = w.id AND d.paper_seq > w.after",
            [first_seq, *params],
        )
        found: dict[int, set[int]] = {}
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

    def digest_by_mark(self, subscriber_id: int, mark: str) -> dict[str, Any] | None:
        """A subscriber's digest by the 16 hex digits of its Message-ID, with its window.

        ``after_seq`` is the newest paper seq the digest before it considered (None for
        a first digest): the digest's window is the papers after it up to ``max_seq``.
        """
        row = self.db.execute(
            "SELECT g.id, g.max_seq, g.papers, g.more, g.created_at, "
            "(SELECT MAX(p.max_seq) FROM digests p "
            "WHERE p.subscriber_id = g.subscriber_id AND p.id < g.id) "
            "FROM digests g WHERE g.subscriber_id = ? AND g.message_id LIKE ? "
            "ORDER BY g.id DESC LIMIT 1",
            [subscriber_id, f"<digest.{subscriber_id}.{mark}@%"],
        ).fetchone()
        if row is None:
            return None
        keys = ("id", "max_seq", "papers", "more", "created_at", "after_seq")
        return dict(zip(keys, row, strict=True))


def _whose(statuses: Sequence[str] | None, also: int | None) -> tuple[str, list[Any]]:
    """A condition on subscribers ``s``: in ``statuses`` (any when None), or ``also``."""
    if statuses is None:
        return "1", []
    if not statuses:
        return "s.id = ?", [also]
    marks = ", ".join("?" * len(statuses))
    return f"(s.status IN ({marks}) OR s.id = ?)", [*statuses, also]


def _parts(ids: Sequence[int]) -> list[list[int]]:
    """``ids`` in lists short enough for one statement's ``IN (...)``."""
    return [list(ids[i : i + _IDS_PER_STATEMENT]) for i in range(0, len(ids), _IDS_PER_STATEMENT)]


def _marks(part: Sequence[int]) -> str:
    return ", ".join("?" * len(part))
