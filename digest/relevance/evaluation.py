"""Evaluation: does the model order a day's papers better than trending does?

``digest evaluate`` replays history.  For each reader with feedback and each
day (papers grouped by the UTC day they were first seen), a classifier is
trained on what the reader had said before that day, over the papers stored
before it, and orders that day's papers; precision at 5 and 10 counts the
papers the reader liked (then or later) among the first 5 and 10.  Trending
(``match.trend_key``) orders the same papers as the baseline.  A reader-day
counts only when the reader had a model by then (``[model] min_likes``) and
liked at least one of that day's papers: on other days both orders score 0.

One simplification, stated: the corpus transform is fitted once on every stored
paper.  It reads no feedback (it is unsupervised), so no answer leaks into it;
trending uses today's counts, which, if anything, flatters the baseline.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import groupby

import numpy as np

from digest.config import ModelConfig
from digest.match import learned_key, trend_key
from digest.models import Feedback, PaperRow
from digest.relevance.features import Matrix, fit
from digest.relevance.scoring import likeness
from digest.relevance.training import train
from digest.store import Store

CUTS = (5, 10)


@dataclass(frozen=True)
class Evaluation:
    """Mean precision at 5 and 10 of both orders over ``days`` reader-days of ``readers``."""

    readers: int
    days: int
    learned: tuple[float, float]
    trending: tuple[float, float]

    def as_json(self) -> dict[str, object]:
        return {
            "readers": self.readers,
            "reader_days": self.days,
            "learned": {f"p@{k}": round(v, 4) for k, v in zip(CUTS, self.learned, strict=True)},
            "trending": {f"p@{k}": round(v, 4) for k, v in zip(CUTS, self.trending, strict=True)},
        }


def evaluate(store: Store, settings: ModelConfig, last_days: int | None = None) -> Evaluation:
    """Replay every reader's feedback day by day (see the module docstring); only the
    ``last_days`` newest days are scored when given (each costs a fit per reader)."""
    papers = sorted(store.papers(), key=lambda p: (p.first_seen, p.seq))
    feedback = store.all_feedback()
    if not papers or not feedback:
        return Evaluation(0, 0, (0.0, 0.0), (0.0, 0.0))
    _, vectors = fit(papers, max_terms=settings.max_terms, dims=settings.dims)
    days = [
        (day, [i for i, _ in rows])
        for day, rows in groupby(enumerate(papers), key=lambda r: r[1].first_seen[:10])
    ]
    if last_days is not None:
        days = days[-last_days:]
    learned: list[tuple[float, ...]] = []
    trending: list[tuple[float, ...]] = []
    readers = set()
    for subscriber_id, said in sorted(feedback.items()):
        liked = {f.paper_seq for f in said if f.verdict == "more"}
        for day, rows in days:
            outcome = _replay_day(
                papers, vectors, rows, subscriber_id, said, liked, day, settings.min_likes
            )
            if outcome is not None:
                learned.append(outcome[0])
                trending.append(outcome[1])
                readers.add(subscriber_id)
    return Evaluation(len(readers), len(learned), _mean(learned), _mean(trending))


def _replay_day(
    papers: Sequence[PaperRow],
    vectors: Matrix,
    rows: list[int],
    subscriber_id: int,
    said: Sequence[Feedback],
    liked: set[int],
    day: str,
    min_likes: int,
) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """Both orders' precisions on one day for one reader, or None when it does not count."""
    if not any(papers[i].seq in liked for i in rows):
        return None
    before = rows[0]  # papers are sorted by first seen: every earlier row is an earlier day
    index = {papers[i].seq: i for i in range(before)}
    prior = [f for f in said if f.created_at < f"{day}T00:00:00Z"]
    reader = train(vectors[:before], index, subscriber_id, prior, min_likes)
    if reader is None:
        return None
    today = [papers[i] for i in rows]
    scores = likeness(vectors[rows], reader.weights)
    order = sorted(range(len(today)), key=lambda i: learned_key(float(scores[i]), today[i]))
    by_model = [today[i] for i in order]
    by_trend = sorted(today, key=trend_key)
    return _precisions(by_model, liked), _precisions(by_trend, liked)


def _precisions(ordered: Sequence[PaperRow], liked: set[int]) -> tuple[float, ...]:
    return tuple(sum(p.seq in liked for p in ordered[:k]) / k for k in CUTS)


def _mean(rows: list[tuple[float, ...]]) -> tuple[float, float]:
    if not rows:
        return 0.0, 0.0
    means = np.mean(np.array(rows), axis=0)
    return float(means[0]), float(means[1])
