"""The relevance model's state: saved whole by each training, read by delivery.

Plain bytes here (``np.save`` arrays and raw float32 vectors): the store knows
nothing of numpy; ``digest.relevance`` turns them back into arrays.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from digest.store.base import Base


@dataclass(frozen=True, slots=True)
class SavedCorpus:
    """The corpus transform as saved: ``blobs`` (terms, idf, components) is None for an
    empty corpus."""

    fitted_at: str
    papers: int
    blobs: tuple[bytes, bytes, bytes] | None


@dataclass(frozen=True, slots=True)
class SavedReader:
    subscriber_id: int
    weights: bytes
    likes: int
    dismissals: int


class ModelStore(Base):
    def save_model(
        self,
        fitted_at: str,
        papers: int,
        blobs: tuple[bytes, bytes, bytes] | None,
        readers: Sequence[tuple[int, bytes, int, int]],
        vectors: Sequence[tuple[int, bytes]],
    ) -> None:
        """Replace the whole model; a reader or paper deleted meanwhile is left out."""
        with self.write():
            for table in ("model_corpus", "model_readers", "model_vectors"):
                self.db.execute(f"DELETE FROM {table}")
            self.db.execute(
                "INSERT INTO model_corpus (id, fitted_at, papers, terms, idf, components) "
                "VALUES (1, ?, ?, ?, ?, ?)",
                [fitted_at, papers, *(blobs or (None, None, None))],
            )
            self.db.conn.executemany(
                "INSERT INTO model_readers (subscriber_id, weights, likes, dismissals) "
                "SELECT ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM subscribers WHERE id = ?)",
                [(*reader, reader[0]) for reader in readers],
            )
            self.db.conn.executemany(
                "INSERT INTO model_vectors (paper_seq, vector) "
                "SELECT ?, ? WHERE EXISTS (SELECT 1 FROM papers WHERE seq = ?)",
                [(*vector, vector[0]) for vector in vectors],
            )

    def model_fitted_at(self) -> str | None:
        """When the model was last saved, or None before the first training."""
        row = self.db.execute("SELECT fitted_at FROM model_corpus").fetchone()
        return None if row is None else str(row[0])

    def model_corpus(self) -> SavedCorpus | None:
        row = self.db.execute(
            "SELECT fitted_at, papers, terms, idf, components FROM model_corpus"
        ).fetchone()
        if row is None:
            return None
        blobs = None if row[2] is None else (bytes(row[2]), bytes(row[3]), bytes(row[4]))
        return SavedCorpus(row[0], row[1], blobs)

    def model_readers(self, subscribers: Iterable[int] | None = None) -> dict[int, SavedReader]:
        """The trained readers' weights by subscriber id (only ``subscribers``' when given)."""
        wanted = None if subscribers is None else set(subscribers)
        rows = self.db.execute(
            "SELECT subscriber_id, weights, likes, dismissals FROM model_readers"
        )
        return {
            row[0]: SavedReader(row[0], bytes(row[1]), row[2], row[3])
            for row in rows
            if wanted is None or row[0] in wanted
        }

    def model_vectors(self) -> list[tuple[int, str, bytes]]:
        """(seq, title, vector) of every paper liked before the last training."""
        rows = self.db.execute(
            "SELECT p.seq, p.title, v.vector FROM model_vectors v "
            "JOIN papers p ON p.seq = v.paper_seq ORDER BY p.seq"
        )
        return [(row[0], row[1], bytes(row[2])) for row in rows]

    def judged_vectors(self, subscriber_id: int) -> list[tuple[int, str, bytes | None]]:
        """Every paper the reader said something of, oldest first, in one query (delivery
        asks it per reader): (seq, title, vector), the vector where the model has one (a
        paper liked before the last training), else None."""
        rows = self.db.execute(
            "SELECT p.seq, p.title, v.vector FROM feedback f "
            "JOIN papers p ON p.seq = f.paper_seq "
            "LEFT JOIN model_vectors v ON v.paper_seq = f.paper_seq AND f.verdict = 'more' "
            "WHERE f.subscriber_id = ? ORDER BY f.created_at, p.seq",
            [subscriber_id],
        )
        return [(row[0], row[1], None if row[2] is None else bytes(row[2])) for row in rows]
