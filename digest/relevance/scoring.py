"""Scoring: the last saved model applied to a set of papers, for every reader it knows.

Delivery never trains: it reads what the last training saved (``Scorer.load``)
and embeds only the papers in front of it.  A reader's score for a paper is the
probability their classifier gives it; "because you liked X" names the paper
they liked that is nearest to it (cosine in the corpus space).
"""

from collections.abc import Iterable, Sequence
from functools import cache

import numpy as np
from numpy.typing import NDArray

from digest.models import Feedback, PaperRow
from digest.relevance.features import Matrix, Transform
from digest.store import Store

Scores = NDArray[np.float64]
ONE_BY_ONE = 20  # readers whose verdicts are read one query each before reading everyone's


class Scorer:
    """The last model over ``papers``: their vectors are worked out once, when first needed."""

    def __init__(
        self,
        store: Store,
        transform: Transform,
        weights: dict[int, NDArray[np.float32]],
        papers: Sequence[PaperRow],
    ) -> None:
        self.store = store
        self.transform = transform
        self.papers = papers
        self.weights = weights
        self._vectors: Matrix | None = None
        self._scores: dict[int, Scores] = {}
        self.said = cache(self._said)
        self._asked = 0  # readers whose verdicts were read one by one
        self._everyone: Verdicts | None = None

    @classmethod
    def load(cls, store: Store, papers: Sequence[PaperRow]) -> "Scorer | None":
        """The scorer of the last saved model, or None when it knows no reader (none was
        trained yet, or nobody has enough likes): then nothing more is read."""
        weights = {
            r.subscriber_id: np.frombuffer(r.weights, dtype=np.float32)
            for r in store.model_readers().values()
        }
        saved = store.model_corpus() if weights else None
        if saved is None or saved.blobs is None:
            return None
        return cls(store, Transform.from_blobs(*saved.blobs), weights, papers)

    @property
    def vectors(self) -> Matrix:
        if self._vectors is None:
            self._vectors = self.transform.embed(self.papers)
        return self._vectors

    def knows(self, subscriber_id: int) -> bool:
        return subscriber_id in self.weights

    def scores(self, subscriber_id: int) -> Scores:
        """The reader's score for each paper, in 0..1; the reader must be known."""
        if subscriber_id not in self._scores:
            self._scores[subscriber_id] = likeness(self.vectors, self.weights[subscriber_id])
        return self._scores[subscriber_id]

    def above(self, subscriber_id: int, threshold: float, most: int | None = None) -> list[int]:
        """The indices of the papers the reader scores at least ``threshold``: only the
        ``most`` best-scored of them when given."""
        scores = self.scores(subscriber_id)
        found = np.flatnonzero(scores >= threshold)
        if most is not None and len(found) > most:
            found = found[np.argpartition(-scores[found], most - 1)[:most]]
        indices: list[int] = found.tolist()
        return indices

    def _said(self, subscriber_id: int) -> tuple[frozenset[int], list[str], Matrix]:
        """The papers the reader judged (never suggested to them), and the titles and
        vectors of those they liked that the model knows.

        Read per reader at first (a preview, ``explain``); once a run asks for more than
        ``ONE_BY_ONE`` readers (a send), every reader's at once in two queries.
        """
        self._asked += 1
        if self._everyone is None and self._asked > ONE_BY_ONE:
            self._everyone = Verdicts.read(self.store, self.weights, self.transform.dims)
        if self._everyone is not None:
            return self._everyone.of(subscriber_id)
        found = self.store.judged_vectors(subscriber_id)
        liked = [(title, vector) for _, title, vector in found if vector is not None]
        rows = [np.frombuffer(vector, dtype=np.float32) for _, vector in liked]
        vectors = np.vstack(rows) if rows else np.zeros((0, self.transform.dims), np.float32)
        return frozenset(seq for seq, _, _ in found), [title for title, _ in liked], vectors

    def judged(self, subscriber_id: int) -> frozenset[int]:
        return self.said(subscriber_id)[0]

    def because(self, subscriber_id: int, index: int) -> str | None:
        """The title of the liked paper nearest to ``papers[index]``, if any liked one is known."""
        _, titles, liked = self.said(subscriber_id)
        if not titles:
            return None
        return titles[int(np.argmax(liked @ self.vectors[index]))]


class Verdicts:
    """Every known reader's verdicts, and the vector of every paper liked before the last
    training, read at once."""

    def __init__(
        self, feedback: dict[int, list[Feedback]], saved: list[tuple[int, str, bytes]], dims: int
    ) -> None:
        self.feedback = feedback
        self.row = {seq: i for i, (seq, _, _) in enumerate(saved)}
        self.titles = [title for _, title, _ in saved]
        joined = b"".join(vector for _, _, vector in saved)
        self.vectors = np.frombuffer(joined, dtype=np.float32).reshape(len(saved), dims)

    @classmethod
    def read(cls, store: Store, readers: Iterable[int], dims: int) -> "Verdicts":
        return cls(store.all_feedback(subscribers=readers), store.model_vectors(), dims)

    def of(self, subscriber_id: int) -> tuple[frozenset[int], list[str], Matrix]:
        said = self.feedback.get(subscriber_id, [])
        rows = [
            self.row[f.paper_seq] for f in said if f.verdict == "more" and f.paper_seq in self.row
        ]
        judged = frozenset(f.paper_seq for f in said)
        return judged, [self.titles[r] for r in rows], self.vectors[rows]


def likeness(vectors: Matrix, weights: NDArray[np.float32]) -> Scores:
    """One reader's probability of liking each paper (``weights``: the intercept last)."""
    margins = (vectors @ weights[:-1] + weights[-1]).astype(np.float64)
    return 1 / (1 + np.exp(-margins))  # type: ignore[no-any-return]


def score_all(weights: Matrix, vectors: Matrix) -> Matrix:
    """Every reader's margin for every paper in one product: readers x papers
    (``weights``: one row per reader, the intercept last)."""
    return np.asarray(weights[:, :-1] @ vectors.T + weights[:, -1:], dtype=np.float32)
