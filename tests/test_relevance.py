"""Relevance models: trained from a reader's likes, kept in the database, used visibly.

The readers here are simulated (``bench.readers``): a hidden topic, written as a
filter, decides what they like, day by day over the seed dumps ingested one a day.
"""

import pickle
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.readers import add_reader, ingest_by_day, simulate
from digest import outbox, pipeline, sending
from digest.backtest import backtest
from digest.config import DigestConfig, ModelConfig
from digest.explain import explain
from digest.mailer import transport_for
from digest.match import Batch
from digest.models import Subscriber
from digest.relevance import training
from digest.relevance.evaluation import evaluate
from digest.relevance.scoring import Scorer
from digest.relevance.training import rebuild
from digest.render import Renderer
from digest.scheduler import Service
from digest.store import Store, iso

from .conftest import NOW, SEED_FILES, RunCli, copy_database, make_config
from .test_render import ADA, CONFIG, FRESH, GOLDEN, body, parsed

TOPIC = "3D"  # the simulated reader's hidden interest
FILTER = "reasoning"  # what they subscribed to: it matches none of the topic's papers below
SETTINGS = DigestConfig(max_papers=10)
MODEL = ModelConfig()  # min_likes 3, 20,000 terms, 128 dimensions


@pytest.fixture(scope="module")
def daily_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seed dumps ingested one a day, the last at NOW.  Copy it, never open it."""
    path = tmp_path_factory.mktemp("daily") / "digest.db"
    with closing(Store(path)) as store:
        ingest_by_day(store, SEED_FILES, NOW)
    return path


@pytest.fixture
def daily(tmp_path: Path, daily_database: Path) -> Iterator[Store]:
    with closing(Store(copy_database(daily_database, tmp_path))) as opened:
        yield opened


def topic_reader(store: Store, email: str = "vid@example.org") -> Subscriber:
    """A reader of FILTER whose likes, on every day before today's, are TOPIC's papers."""
    reader = add_reader(store, email, FILTER, iso(NOW))
    assert simulate(store, reader.id, TOPIC, until=NOW) >= 3
    return reader


def trained(store: Store) -> None:
    rebuild(store, MODEL, NOW)


# training and storage ---------------------------------------------------------------------


def test_a_reader_with_enough_likes_gets_a_model_that_outlives_the_process(
    daily: Store, tmp_path: Path
) -> None:
    reader = topic_reader(daily)
    few = add_reader(daily, "few@example.org", FILTER, iso(NOW))
    for paper in backtest(daily, "medical")[:2]:
        daily.set_feedback(few.id, paper.paper.seq, "more", iso(NOW))
    summary = rebuild(daily, MODEL, NOW)
    assert (summary.readers, summary.skipped) == (1, 1)
    daily.close()

    with closing(Store(tmp_path / "digest.db", create=False)) as reopened:
        scorer = Scorer.load(reopened, reopened.papers())
        assert scorer is not None
        assert scorer.knows(reader.id)
        assert not scorer.knows(few.id)
        assert scorer.weights[reader.id].shape == (summary.dims + 1,)
        saved = reopened.model_corpus()
        assert saved is not None
        assert saved.blobs is not None
        assert all(blob.startswith(b"\x93NUMPY") for blob in saved.blobs[1:])  # never a pickle


def test_the_model_scores_the_readers_topic_above_everything_else(daily: Store) -> None:
    reader = topic_reader(daily)
    trained(daily)
    today = [p for p in daily.papers() if p.first_seen == iso(NOW)]  # nothing said of them yet
    on_topic = {m.paper.seq for m in backtest(daily, TOPIC)}
    scorer = Scorer.load(daily, today)
    assert scorer is not None
    scores = scorer.scores(reader.id)
    liked = [s for p, s in zip(today, scores, strict=True) if p.seq in on_topic]
    others = [s for p, s in zip(today, scores, strict=True) if p.seq not in on_topic]
    assert liked
    assert others
    assert np.median(liked) > np.percentile(others, 90)


def test_a_deleted_reader_takes_their_model_with_them(daily: Store) -> None:
    reader = topic_reader(daily)
    trained(daily)
    daily.delete_subscriber(reader.id)
    assert daily.model_readers() == {}


def test_model_rebuild_reports_progress_and_a_summary(run_cli: RunCli, tmp_path: Path) -> None:
    with closing(Store(tmp_path / "var" / "digest.db")) as store:
        ingest_by_day(store, SEED_FILES, NOW)
        topic_reader(store)
    result = run_cli("model", "rebuild", "--json")
    assert result.exit_code == 0, result.stderr
    summary = result.json()
    assert summary["readers"] == 1
    assert summary["papers"] == 689
    assert summary["dims"] == 128
    assert "trained 1 of 1 readers with feedback" in result.stderr


def test_a_reader_whose_training_fails_is_left_without_a_model_and_the_others_are_trained(
    daily: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    reader = topic_reader(daily)
    broken = topic_reader(daily, "broken@example.org")
    real = training.train

    def failing_for_broken(*args: Any) -> training.Reader | None:
        if args[2] == broken.id:
            raise ValueError("a solver that gives up")
        return real(*args)

    monkeypatch.setattr(training, "train", failing_for_broken)
    summary = rebuild(daily, MODEL, NOW)
    assert (summary.readers, summary.skipped) == (1, 1)
    scorer = Scorer.load(daily, daily.papers())
    assert scorer is not None
    assert scorer.knows(reader.id)
    assert not scorer.knows(broken.id)
    assert f"subscriber {broken.id}: a solver that gives up" in caplog.text


# the digest ------------------------------------------------------------------------------


def test_a_topic_reader_is_suggested_papers_of_their_topic_that_their_filter_missed(
    daily: Store,
) -> None:
    reader = topic_reader(daily)
    trained(daily)
    upcoming = Batch(daily, SETTINGS, NOW).pending(reader)

    on_topic = {m.paper.seq for m in backtest(daily, TOPIC)}
    matched = {m.paper.seq for m in backtest(daily, FILTER)}
    likes = [f.paper_seq for f in daily.feedback(reader.id) if f.verdict == "more"]
    liked_titles = {p.title for p in daily.papers(seqs=likes)}
    assert len(upcoming.suggestions) == SETTINGS.suggestions
    for suggestion in upcoming.suggestions:
        assert suggestion.match.paper.seq in on_topic
        assert suggestion.match.paper.seq not in matched
        assert suggestion.because in liked_titles
        assert suggestion.score >= 0.5

    content = outbox.digest_content(CONFIG, upcoming, FRESH, NOW)
    text = Renderer(CONFIG).text(content)
    html = Renderer(CONFIG).html(content)
    first = upcoming.suggestions[0]
    assert "You may also like" in text
    assert f"because you liked *{first.because}*" in text
    assert "You may also like" in html
    assert first.match.paper.title.split(":")[0] in html


def test_a_reader_with_a_model_gets_their_matches_in_its_order_and_is_told(
    daily: Store,
) -> None:
    reader = add_reader(daily, "broad@example.org", "model OR video", iso(NOW))
    simulate(daily, reader.id, TOPIC, until=NOW)
    trained(daily)
    upcoming = Batch(daily, SETTINGS, NOW).pending(reader)
    scorer = Scorer.load(daily, [m.paper for m in upcoming.capped])
    assert scorer is not None
    scores = [round(float(s), 2) for s in scorer.scores(reader.id)]
    assert upcoming.learned
    assert scores == sorted(scores, reverse=True)
    on_topic = {m.paper.seq for m in backtest(daily, TOPIC)}
    assert upcoming.capped[0].paper.seq in on_topic

    text = Renderer(CONFIG).text(outbox.digest_content(CONFIG, upcoming, FRESH, NOW))
    assert "In the order your likes taught your relevance model" in text.splitlines()[2]


def test_a_reader_with_a_model_is_never_left_behind_a_sends_shared_cut(daily: Store) -> None:
    """Their model scores only the papers a batch indexed: a send's cut (``windows``) stays
    at or before the start of their window, however many others start later."""
    reader = topic_reader(daily)  # no digest yet: their window is the whole lookback
    trained(daily)
    others = [add_reader(daily, f"d{i}@example.org", "model", iso(NOW)) for i in range(30)]
    with daily.write():
        for other in others:  # a digest a moment ago: their windows start after every paper
            daily.record_digest(other.id, f"<{other.id}@t>", daily.max_seq(), [], 0, b"", "")
    batch = Batch(daily, SETTINGS, NOW, due=[reader, *others])
    assert not batch.wide
    assert len(batch.papers) == len(daily.papers())
    upcoming, everyone = batch.pending(reader), Batch(daily, SETTINGS, NOW).pending(reader)
    assert upcoming.learned
    assert upcoming.suggestions
    assert [m.paper.seq for m in upcoming.capped] == [m.paper.seq for m in everyone.capped]
    assert upcoming.suggestions == everyone.suggestions


@pytest.mark.parametrize("part", ["html", "txt"])
def test_a_reader_without_feedback_gets_todays_digest_byte_for_byte(
    tmp_path: Path, seeded_database: Path, part: str
) -> None:
    """The golden digest of ``test_render``, built through the batch of a store where
    another reader has a trained model."""
    with closing(Store(copy_database(seeded_database, tmp_path))) as store:
        other = add_reader(store, "other@example.org", FILTER, iso(NOW))
        simulate(store, other.id, TOPIC)
        trained(store)
        fields = {
            k: getattr(ADA, k) for k in ("id", "email", "name", "filter", "secret", "created_at")
        }
        ada = store.insert_subscriber({**fields, "updated_at": ADA.updated_at})
        batch = Batch(store, CONFIG.digest, NOW)
        assert batch.scorer is not None
        assert batch.scorer.knows(other.id)
        upcoming = batch.pending(ada)
    content = outbox.digest_content(CONFIG, upcoming, FRESH, NOW)
    renderer = Renderer(CONFIG)
    rendered = renderer.html(content) if part == "html" else renderer.text(content)
    assert not upcoming.learned
    assert not upcoming.suggestions
    assert rendered == (GOLDEN / f"digest.{part}").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("switch", "limit"), [(False, 3), (True, 0)], ids=["reader-off", "config-zero"]
)
def test_no_suggestions_when_the_reader_or_the_config_says_none(
    daily: Store, switch: bool, limit: int
) -> None:
    reader = topic_reader(daily)
    daily.update_subscriber(reader.id, {"suggestions": int(switch)})
    trained(daily)
    settings = SETTINGS.model_copy(update={"suggestions": limit})
    switched = daily.subscriber_by_id(reader.id)
    assert switched is not None
    assert switched.suggestions == switch
    upcoming = Batch(daily, settings, NOW).pending(switched)
    assert upcoming.learned
    assert upcoming.suggestions == ()


# explain and evaluate ----------------------------------------------------------------------


def test_explain_gives_the_models_score_and_the_nearest_liked_paper(daily: Store) -> None:
    reader = topic_reader(daily)
    trained(daily)
    suggestion = Batch(daily, SETTINGS, NOW).pending(reader).suggestions[0]
    verdict = explain(daily, reader, suggestion.match.paper, SETTINGS, NOW)
    said = [r for r in verdict.reasons if "relevance model" in r]
    assert said == [
        f"the reader's relevance model scores it {suggestion.score:.2f}; "
        f"the liked paper nearest to it: {suggestion.because!r}"
    ]
    nobody = add_reader(daily, "nobody@example.org", FILTER, iso(NOW))
    assert not any(
        "relevance model" in r
        for r in explain(daily, nobody, suggestion.match.paper, SETTINGS, NOW).reasons
    )


def test_replaying_the_seeds_the_learned_order_beats_trending_for_topic_readers(
    daily: Store,
) -> None:
    for n, topic in enumerate(("video", "3D", "reinforcement", "speech OR audio", "math*")):
        reader = add_reader(daily, f"reader{n}@example.org", "model", iso(NOW))
        simulate(daily, reader.id, topic)
    found = evaluate(daily, MODEL)
    assert found.readers == 5
    assert found.days >= 10
    for learned, trending in zip(found.learned, found.trending, strict=True):
        assert learned > trending


def test_evaluate_prints_both_orders(run_cli: RunCli, tmp_path: Path) -> None:
    with closing(Store(tmp_path / "var" / "digest.db")) as store:
        ingest_by_day(store, SEED_FILES, NOW)
        simulate(store, add_reader(store, "r@example.org", "model", iso(NOW)).id, TOPIC)
    table = run_cli("evaluate")
    assert table.exit_code == 0, table.stderr
    assert table.stdout.splitlines()[2].startswith("learned")
    assert table.stdout.splitlines()[3].startswith("trending")
    found = run_cli("evaluate", "--json").json()
    assert found["readers"] == 1
    assert found["learned"]["p@5"] > found["trending"]["p@5"]


# the service -------------------------------------------------------------------------------


def test_the_daily_training_is_a_recorded_job_run_that_saves_the_model(
    tmp_path: Path, daily_database: Path
) -> None:
    copy_database(daily_database, tmp_path)
    with closing(Store(tmp_path / "digest.db")) as store:
        reader = topic_reader(store)
    config = make_config(tmp_path, storage={"database": "digest.db"})
    line = pipeline.train(config, lambda: NOW)
    assert line.startswith("1 readers over 689 papers")
    with closing(Store(tmp_path / "digest.db")) as store:
        assert store.model_readers().keys() == {reader.id}
        assert store.last_scheduled("train") is not None


def test_the_service_trains_daily_on_a_thread_of_its_own(tmp_path: Path) -> None:
    config = make_config(tmp_path, model={"train_at": "05:15"})
    service = Service(config, None)
    service._schedule()
    jobs = {job.id: job for job in service.scheduler.get_jobs()}
    assert jobs["train"].executor == "model"
    assert {job.executor for name, job in jobs.items() if name != "train"} <= {"default", "fetch"}
    assert "hour='5', minute='15'" in str(jobs["train"].trigger)


def test_a_sent_digest_carries_the_suggestions_and_their_reasons(
    daily: Store, tmp_path: Path
) -> None:
    reader = topic_reader(daily)
    trained(daily)
    config = make_config(tmp_path, delivery={"maildir": "mail"}, digest={"max_papers": 10})
    report = sending.send(daily, config, transport_for(config.delivery, config.smtp), lambda: NOW)
    assert [(d.email, d.status) for d in report.digests] == [(reader.email, "sent")]
    (message,) = (tmp_path / "mail" / "new").iterdir()
    text = body(parsed(message.read_bytes()), "plain")
    assert "You may also like" in text
    assert text.count("because you liked *") == config.digest.suggestions


def test_a_digest_with_suggestions_travels_to_a_render_worker_intact(daily: Store) -> None:
    reader = topic_reader(daily)
    trained(daily)
    content = outbox.digest_content(CONFIG, Batch(daily, SETTINGS, NOW).pending(reader), FRESH, NOW)
    assert content.suggestions
    assert pickle.loads(pickle.dumps(content)) == content


def test_opening_the_store_and_sending_import_neither_numpy_nor_scikit_learn() -> None:
    """They load where a model is trained or applied, never at a command's start."""
    code = (
        "import sys, digest.store, digest.outbox, digest.explain, digest.cli.model\n"
        "print(sorted(m for m in ('numpy', 'sklearn') if m in sys.modules))"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert found.stdout.strip() == "[]"
