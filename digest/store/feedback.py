"""Feedback: each reader's "more like this" and "not for me", one verdict per paper.

Setting a verdict is idempotent (the same click twice changes nothing) and
replaces the other verdict; clearing one is the undo.  Read in bulk, in the
order they were given, for training the readers' relevance models.
"""

from collections.abc import Iterable
from typing import cast

from digest.models import Feedback, Verdict
from digest.store.base import Base

_COLUMNS = "subscriber_id, paper_seq, verdict, created_at"


class FeedbackStore(Base):
    def set_feedback(self, subscriber_id: int, paper_seq: int, verdict: Verdict, at: str) -> bool:
        """Record the reader's verdict on the paper; False when it was already that one
        (its time is kept: the first click is when they said it)."""
        with self.write():
            cursor = self.db.execute(
                "INSERT INTO feedback (subscriber_id, paper_seq, verdict, created_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (subscriber_id, paper_seq) DO UPDATE "
                "SET verdict = excluded.verdict, created_at = excluded.created_at "
                "WHERE verdict != excluded.verdict",
                [subscriber_id, paper_seq, verdict, at],
            )
        return cursor.rowcount > 0

    def clear_feedback(self, subscriber_id: int, paper_seq: int) -> bool:
        """Forget the reader's verdict on the paper; False when there was none."""
        with self.write():
            cursor = self.db.execute(
                "DELETE FROM feedback WHERE subscriber_id = ? AND paper_seq = ?",
                [subscriber_id, paper_seq],
            )
        return cursor.rowcount > 0

    def feedback(self, subscriber_id: int) -> list[Feedback]:
        """The reader's verdicts, oldest first."""
        rows = self.db.execute(
            f"SELECT {_COLUMNS} FROM feedback WHERE subscriber_id = ? "
            "ORDER BY created_at, paper_seq",
            [subscriber_id],
        )
        return [_feedback(row) for row in rows]

    def verdict(self, subscriber_id: int, paper_seq: int) -> Verdict | None:
        """The reader's verdict on the paper, or None."""
        row = self.db.execute(
            "SELECT verdict FROM feedback WHERE subscriber_id = ? AND paper_seq = ?",
            [subscriber_id, paper_seq],
        ).fetchone()
        return None if row is None else cast(Verdict, row[0])

    def all_feedback(
        self, before: str | None = None, subscribers: Iterable[int] | None = None
    ) -> dict[int, list[Feedback]]:
        """Every reader's verdicts given before ``before`` (all when None), oldest first,
        by subscriber id; only ``subscribers``' when given."""
        wanted = None if subscribers is None else set(subscribers)
        rows = self.db.execute(
            f"SELECT {_COLUMNS} FROM feedback WHERE ? IS NULL OR created_at < ? "
            "ORDER BY subscriber_id, created_at, paper_seq",
            [before, before],
        )
        found: dict[int, list[Feedback]] = {}
        for row in rows:
            if wanted is None or row[0] in wanted:
                found.setdefault(row[0], []).append(_feedback(row))
        return found


def _feedback(row: tuple[int, int, Verdict, str]) -> Feedback:
    return Feedback(row[0], row[1], row[2], row[3])
