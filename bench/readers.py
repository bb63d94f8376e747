"""Simulated readers: a hidden interest (a topic, written as a filter) that decides what
they like, for the relevance model's tests, its README figures and its benchmark.

A reader's history is built day by day over a store whose papers arrived on
several days (``ingest_by_day``): each day, eight hours after the papers came,
the reader likes every paper of that day that their topic matches and dismisses
the day's three most trending papers that it does not (what they saw and did
not want).  ``python -m bench.readers`` ingests the seed dumps one a day, adds
one reader per topic in ``TOPICS`` and prints ``digest evaluate``'s figures.
"""

import sys
import tempfile
from collections.abc import Sequence
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path

from digest.backtest import backtest
from digest.config import ModelConfig
from digest.ingest import ingest_files
from digest.match import trend_key
from digest.models import PaperRow, Subscriber
from digest.relevance.evaluation import evaluate
from digest.store import Store, iso

TOPICS = (
    "video",
    "3D",
    "reinforcement",
    "reasoning",
    "speech OR audio",
    "math*",
    "medical",
    "language model",
)
SEEDS = Path(__file__).resolve().parent.parent / "examples" / "dumps"
LATER = timedelta(hours=8)
DISMISSED_PER_DAY = 3


def ingest_by_day(store: Store, files: Sequence[Path], last_day: datetime) -> None:
    """One file a day, the last one on ``last_day``: a history to replay."""
    for back, path in enumerate(reversed(files)):
        ingest_files(store, [path], last_day - timedelta(days=back))


def add_reader(store: Store, email: str, filter_: str, created_at: str) -> Subscriber:
    return store.insert_subscriber(
        {
            "email": email,
            "filter": filter_,
            "secret": f"secret-of-{email}",
            "created_at": created_at,
            "updated_at": created_at,
        }
    )


def simulate(store: Store, subscriber_id: int, topic: str, until: datetime | None = None) -> int:
    """Give the reader the feedback their hidden ``topic`` implies, for the papers first
    seen before ``until`` (all when None); returns how many they liked."""
    liked = {m.paper.seq for m in backtest(store, topic)}
    days: dict[str, list[PaperRow]] = {}
    for paper in store.papers():
        if until is None or paper.first_seen < iso(until):
            days.setdefault(paper.first_seen, []).append(paper)
    for first_seen, papers in days.items():
        at = iso(datetime.fromisoformat(first_seen) + LATER)
        for paper in papers:
            if paper.seq in liked:
                store.set_feedback(subscriber_id, paper.seq, "more", at)
        unwanted = sorted((p for p in papers if p.seq not in liked), key=trend_key)
        for paper in unwanted[:DISMISSED_PER_DAY]:
            store.set_feedback(subscriber_id, paper.seq, "less", at)
    return sum(p.seq in liked for papers in days.values() for p in papers)


def main() -> None:
    last_day = datetime.fromisoformat("2026-11-24T07:00:00+00:00")
    with tempfile.TemporaryDirectory() as folder, closing(Store(Path(folder) / "d.db")) as store:
        ingest_by_day(store, sorted(SEEDS.glob("*.txt")), last_day)
        for n, topic in enumerate(TOPICS):
            reader = add_reader(store, f"reader{n}@example.org", "model", iso(last_day))
            simulate(store, reader.id, topic)
        found = evaluate(store, ModelConfig())
    sys.stdout.write(
        f"{found.readers} readers, {found.days} reader-days\n"
        f"learned  P@5 {found.learned[0]:.3f}  P@10 {found.learned[1]:.3f}\n"
        f"trending P@5 {found.trending[0]:.3f}  P@10 {found.trending[1]:.3f}\n"
    )


if __name__ == "__main__":
    main()
