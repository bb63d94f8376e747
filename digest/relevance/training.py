"""Training: each reader's classifier, and the whole model rebuilt from the stored papers.

A reader with at least ``[model] min_likes`` likes gets a logistic regression in
the corpus space: their likes against their dismissals and a sample of the other
papers (four per like, at least 50), classes balanced.  ``rebuild`` refits the
corpus transform, retrains every reader and saves it all in one transaction, so
delivery always reads one consistent model: the last one saved.
"""

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from numpy.typing import NDArray

from digest.config import ModelConfig
from digest.models import Feedback
from digest.relevance.features import Matrix, fit
from digest.store import Store, iso

REGULARIZATION = 20.0  # C: P@5 on the seeds is the same from 4 to 30; 20 spreads the scores
# enough that "more likely liked than not" (match.SUGGEST_ABOVE) means something
# liblinear (as LinearSVC uses): 6 ms a reader; lbfgs took 15 ms on one thread and 10x
# that when its BLAS threads compete with the service's own on two cores
SOLVER = "liblinear"
SAMPLE_PER_LIKE = 4
MIN_SAMPLE = 50
log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Reader:
    """One reader's classifier: ``weights`` holds the coefficients, then the intercept."""

    subscriber_id: int
    weights: NDArray[np.float32]
    likes: int
    dismissals: int


@dataclass(frozen=True)
class Rebuilt:
    """What ``digest model rebuild`` did; the shape of its ``--json``."""

    papers: int
    terms: int
    dims: int
    readers: int
    skipped: int  # readers with feedback but fewer than min_likes likes
    seconds: float
    corpus_seconds: float = 0.0  # of which fitting the corpus transform

    def as_json(self) -> dict[str, object]:
        return {
            "papers": self.papers,
            "terms": self.terms,
            "dims": self.dims,
            "readers": self.readers,
            "skipped": self.skipped,
            "seconds": round(self.seconds, 2),
            "corpus_seconds": round(self.corpus_seconds, 2),
        }


def train(
    vectors: Matrix,
    index: Mapping[int, int],
    subscriber_id: int,
    said: Sequence[Feedback],
    min_likes: int,
) -> Reader | None:
    """The reader's classifier over the papers ``vectors`` holds (``index``: seq -> row),
    or None with fewer than ``min_likes`` likes among them."""
    from sklearn.linear_model import LogisticRegression

    liked = [index[f.paper_seq] for f in said if f.verdict == "more" and f.paper_seq in index]
    dismissed = [index[f.paper_seq] for f in said if f.verdict == "less" and f.paper_seq in index]
    if len(liked) < min_likes:
        return None
    negatives = dismissed + _sample(
        len(vectors), set(liked) | set(dismissed), len(liked), subscriber_id
    )
    if not negatives:
        return None
    rows = vectors[liked + negatives]
    labels = np.array([1] * len(liked) + [0] * len(negatives))
    model = LogisticRegression(C=REGULARIZATION, class_weight="balanced", solver=SOLVER)
    model.fit(rows, labels)
    weights = np.append(model.coef_[0], model.intercept_[0]).astype(np.float32)
    return Reader(subscriber_id, weights, len(liked), len(dismissed))


def _sample(count: int, taken: set[int], likes: int, seed: int) -> list[int]:
    """Other papers as negatives: unread is mostly not liked (the arxiv-sanity-lite way)."""
    wanted = max(MIN_SAMPLE, SAMPLE_PER_LIKE * likes)
    rng = np.random.default_rng(seed)
    if count > 4 * (wanted + len(taken)):  # a big corpus: draws rarely repeat
        drawn = dict.fromkeys(rng.integers(0, count, 2 * (wanted + len(taken))).tolist())
    else:
        drawn = dict.fromkeys(rng.permutation(count).tolist())
    return [i for i in drawn if i not in taken][:wanted]


def train_all(
    vectors: Matrix,
    index: Mapping[int, int],
    feedback: Mapping[int, Sequence[Feedback]],
    min_likes: int,
    progress: Progress | None = None,
) -> list[Reader]:
    """Every reader with enough likes; ``progress(done, total)`` after each.  A reader whose
    training fails is logged and left without a model; the others are trained all the same."""
    readers = []
    for done, (subscriber_id, said) in enumerate(sorted(feedback.items()), start=1):
        try:
            reader = train(vectors, index, subscriber_id, said, min_likes)
        except Exception as err:  # one reader's feedback, whatever the cause
            log.error("cannot train the model of subscriber %d: %s", subscriber_id, err)
            reader = None
        if reader is not None:
            readers.append(reader)
        if progress is not None:
            progress(done, len(feedback))
    return readers


def rebuild(
    store: Store, settings: ModelConfig, now: datetime, progress: Progress | None = None
) -> Rebuilt:
    """Refit the corpus on every stored paper, retrain every reader, save both at once."""
    started = time.monotonic()
    papers = store.papers()
    feedback = store.all_feedback()
    if not papers:
        store.save_model(iso(now), 0, None, [], [])
        return Rebuilt(0, 0, 0, 0, len(feedback), time.monotonic() - started)
    transform, vectors = fit(papers, max_terms=settings.max_terms, dims=settings.dims)
    fitted = time.monotonic() - started
    index = {paper.seq: row for row, paper in enumerate(papers)}
    readers = train_all(vectors, index, feedback, settings.min_likes, progress)
    liked = {f.paper_seq for said in feedback.values() for f in said if f.verdict == "more"}
    store.save_model(
        iso(now),
        len(papers),
        transform.to_blobs(),
        [(r.subscriber_id, r.weights.tobytes(), r.likes, r.dismissals) for r in readers],
        [(seq, vectors[index[seq]].tobytes()) for seq in sorted(liked) if seq in index],
    )
    seconds = time.monotonic() - started
    log.info("model rebuilt: %d papers, %d readers in %.1f s", len(papers), len(readers), seconds)
    return Rebuilt(
        len(papers),
        len(transform.terms),
        transform.dims,
        len(readers),
        len(feedback) - len(readers),
        seconds,
        fitted,
    )
