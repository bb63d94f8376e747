"""The relevance model: training 10,000 readers, scoring new papers for all, and what it
adds to delivery (issue 17).

What is measured, on one store of 10,000 generated papers (``bench.workload``, ingested
ten days ago) and 10,000 subscribers whose filters are drawn from 1,000 new papers
(ingested now), each with 20 likes (papers sharing a title word, the reader's "topic")
and 5 dismissals, written in bulk before any clock starts:

- *train*: ``relevance.training.rebuild`` as the daily job runs it: read every paper
  and all feedback, fit TF-IDF and the SVD, train 10,000 logistic regressions, save.
  Two figures: the readers' part (all of it but the corpus fit) next to a bare
  scikit-learn loop over the same matrices, one ``LogisticRegression`` of the same
  settings fitted per reader on exactly the rows ``train`` gives it (gathered before
  the clock); target at most 1.5x (what we add: reading, sampling, saving).  And the
  whole rebuild, corpus fit included, with no ceiling: a daily job, its target is to
  stay under 10 minutes.
- *score*: the 1,000 new papers scored for every reader from the saved model
  (``Scorer.load``, embedding the papers, ``scoring.score_all``: one matrix product).
  Ceiling: the bare loop's fitted models each calling ``decision_function`` on the same
  1,000 paper vectors.  Target: no slower than the bare loop (ratio at most 1).
- *deliver*: building every reader's digest as a daily ``digest send`` does
  (``outbox.build``: the batch, each reader's ranked matches and, with a model, their
  suggestions, then rendering the message) with the model, next to the same with the
  model tables emptied (today's digests).  Target (the issue's): at most 1.5x today's.
  Recording and sending cost the same in both and are left out, so the ratio of a
  whole cycle is lower still.

Each figure is the best of ``ROUNDS`` rounds (one for train, two for deliver, the
model and today's taking turns: they are long).
"""

import random
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench import Figure, PeakMemory, Settings, Target
from bench.workload import (
    FilterMaker,
    add_subscribers,
    build_store,
    ingest,
    new_papers,
    note,
    subscriber_rows,
    utc_now,
    workdir,
    write_papers,
)
from digest.config import Config, DigestConfig, ModelConfig
from digest.models import PaperRow, Subscriber
from digest.outbox import Built, build
from digest.relevance.features import fit
from digest.relevance.scoring import Scorer, score_all
from digest.relevance.training import REGULARIZATION, SOLVER, _sample
from digest.render import Renderer
from digest.store import Store, iso

STAGE = "model"
FULL_SUBSCRIBERS = 10_000
FULL_OLD = 10_000
FULL_NEW = 1_000
LIKES = 20
DISMISSALS = 5
ROUNDS = 3
DELIVER_ROUNDS = 2  # building 10,000 digests takes minutes
TRAIN_TARGET = Target(max_ratio=1.5, unit="s")
REBUILD_TARGET = Target(max_value=600, unit="s")
SCORE_TARGET = Target(max_ratio=1.0, unit="s")
DELIVER_TARGET = Target(max_ratio=1.5, unit="s")


@dataclass
class Setup:
    store: Store
    now: datetime
    subscribers: list[Subscriber]


def run(settings: Settings) -> list[Figure]:
    count = settings.size(FULL_SUBSCRIBERS)
    old, new = settings.size(FULL_OLD), settings.size(FULL_NEW)
    full = count == FULL_SUBSCRIBERS and old == FULL_OLD
    with workdir(settings, STAGE) as folder:
        setup = prepare(folder, count, old, new, settings.seed)
        config = ModelConfig()
        bare_fit, models = bare_loop(setup.store, config)
        with PeakMemory() as memory:
            started = time.perf_counter()
            from digest.relevance.training import rebuild

            rebuilt = rebuild(setup.store, config, setup.now)
            train = time.perf_counter() - started
        note(STAGE, f"trained {rebuilt.readers:,} readers over {rebuilt.papers:,} papers")
        fresh = setup.store.papers(since=setup.now)
        score = min(time_scoring(setup.store, fresh) for _ in range(settings.rounds(ROUNDS)))
        bare_predict = min(
            time_bare_predict(setup.store, fresh, models) for _ in range(settings.rounds(ROUNDS))
        )
        with_model, today = time_delivery(setup, settings.rounds(DELIVER_ROUNDS))
    return [
        Figure(STAGE, f"train {count:,} readers x {LIKES} likes", train - rebuilt.corpus_seconds,
               "s", bare_fit, None, TRAIN_TARGET, "ceiling: bare LogisticRegression fit loop",
               full),
        Figure(STAGE, f"rebuild: corpus of {rebuilt.papers:,} papers + readers", train, "s",
               None, memory.peak_mb, REBUILD_TARGET,
               f"corpus fit {rebuilt.corpus_seconds:.1f} s", full),
        Figure(STAGE, f"score {len(fresh):,} new papers for all", score, "s", bare_predict,
               None, SCORE_TARGET, "ceiling: bare decision_function loop", full),
        Figure(STAGE, "deliver: build digests with the model", with_model, "s", today, None,
               DELIVER_TARGET, "ceiling: the same step without a model (today's)", full),
    ]  # fmt: skip


def prepare(folder: Path, count: int, old: int, new: int, seed: int) -> Setup:
    now = utc_now()
    started = time.perf_counter()
    papers = write_papers(folder, old, new, seed)
    store = build_store(folder / "digest.db", papers, now, new=False)
    ingest(store, papers.new, now)
    filters = [m.filter for m in FilterMaker(new_papers(store, now), seed).many(count)]
    add_subscribers(store, subscriber_rows(filters, now, seed=seed))
    subscribers = store.subscribers(["active"])
    add_feedback(store, subscribers, store.papers(), now, seed)
    took = time.perf_counter() - started
    note(STAGE, f"{old:,} + {new:,} papers, {count:,} readers, feedback, in {took:.1f} s")
    return Setup(store, now, subscribers)


def add_feedback(
    store: Store, readers: Sequence[Subscriber], papers: list[PaperRow], now: datetime, seed: int
) -> None:
    """Each reader likes 20 papers sharing a title word and dismisses 5 at random."""
    rng = random.Random(seed)
    older = [p for p in papers if p.first_seen < iso(now)]
    by_word: dict[str, list[int]] = defaultdict(list)
    for paper in older:
        for word in {w.lower() for w in paper.title.split() if len(w) > 4 and w.isalpha()}:
            by_word[word].append(paper.seq)
    topics = [seqs for seqs in by_word.values() if len(seqs) >= LIKES]
    rows = []
    stamp = iso(now)
    for reader in readers:
        liked = rng.sample(rng.choice(topics), LIKES)
        rows += [(reader.id, seq, "more", stamp) for seq in liked]
        others = [p.seq for p in rng.sample(older, DISMISSALS * 2) if p.seq not in liked]
        rows += [(reader.id, seq, "less", stamp) for seq in others[:DISMISSALS]]
    with store.write():
        store.db.conn.executemany(
            "INSERT OR IGNORE INTO feedback (subscriber_id, paper_seq, verdict, created_at) "
            "VALUES (?, ?, ?, ?)",
            rows,
        )


def bare_loop(store: Store, config: ModelConfig) -> tuple[float, list[Any]]:
    """The ceiling: the same per-reader rows, fitted and used by scikit-learn alone."""
    from sklearn.linear_model import LogisticRegression

    papers = store.papers()
    _, vectors = fit(papers, max_terms=config.max_terms, dims=config.dims)
    index = {p.seq: i for i, p in enumerate(papers)}
    problems = []
    for reader, said in sorted(store.all_feedback().items()):
        liked = [index[f.paper_seq] for f in said if f.verdict == "more"]
        dismissed = [index[f.paper_seq] for f in said if f.verdict == "less"]
        taken = set(liked) | set(dismissed)
        negatives = dismissed + _sample(len(vectors), taken, len(liked), reader)
        labels = np.array([1] * len(liked) + [0] * len(negatives))
        problems.append((vectors[liked + negatives], labels))
    models = []
    started = time.perf_counter()
    for rows, labels in problems:
        model = LogisticRegression(C=REGULARIZATION, class_weight="balanced", solver=SOLVER)
        models.append(model.fit(rows, labels))
    return time.perf_counter() - started, models


def time_bare_predict(store: Store, fresh: list[PaperRow], models: list[Any]) -> float:
    """Each bare model's ``decision_function`` on the new papers' vectors (embedded first)."""
    scorer = Scorer.load(store, fresh)
    assert scorer is not None
    vectors = scorer.vectors
    started = time.perf_counter()
    for model in models:
        model.decision_function(vectors)
    return time.perf_counter() - started


def time_scoring(store: Store, fresh: list[PaperRow]) -> float:
    """Load the saved model, embed the new papers, score them for every reader at once."""
    started = time.perf_counter()
    scorer = Scorer.load(store, fresh)
    assert scorer is not None
    weights = np.vstack(list(scorer.weights.values()))
    score_all(weights, scorer.vectors)
    return time.perf_counter() - started


def time_delivery(setup: Setup, rounds: int) -> tuple[float, float]:
    """Best of ``rounds`` builds with the model and without it (today's), taking turns."""
    store, settings = setup.store, DigestConfig()
    corpus = store.model_corpus()
    assert corpus is not None
    readers = [
        (r.subscriber_id, r.weights, r.likes, r.dismissals) for r in store.model_readers().values()
    ]
    vectors = [(seq, vector) for seq, _, vector in store.model_vectors()]
    with_model, today = [], []
    for _ in range(rounds):
        store.save_model(corpus.fitted_at, corpus.papers, corpus.blobs, readers, vectors)
        with_model.append(_deliver(setup, settings))
        store.save_model(corpus.fitted_at, 0, None, [], [])  # no model: today's digests
        today.append(_deliver(setup, settings))
    return min(with_model), min(today)


def _deliver(setup: Setup, settings: DigestConfig) -> float:
    config = Config(digest=settings)
    renderer = Renderer(config)
    started = time.perf_counter()
    built, _, _ = build(setup.store, config, renderer, setup.subscribers, setup.now)
    seconds = time.perf_counter() - started
    suggested = sum(len(b.content.suggestions) for b in built if isinstance(b, Built))
    note(STAGE, f"built {len(built):,} digests in {seconds:.1f} s, {suggested:,} suggestions")
    return seconds
