"""A send's batch indexes only the papers after the due windows' shared cut; the few windows
reaching behind it are matched a chunk at a time, and every digest is the one a batch of
that subscriber alone (a preview) would build: same papers, order, relevance, count."""

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from digest import lifecycle, match, outbox, sending, windows
from digest.config import DigestConfig
from digest.ingest import ingest_files
from digest.mailer import transport_for
from digest.models import PaperRow, Subscriber
from digest.render import Renderer
from digest.store import Store, iso

from .conftest import make_config
from .test_match import record_digest, subscribe

SETTINGS = DigestConfig(max_papers=5)
QUERIES = [
    "diffusion",
    "model -language",
    '"large language"',
    "robot* OR agents",
    "title:video",
    "learning",
    "data OR benchmark",
    "vision NOT video",
    "agent*",
    "reasoning",
]
DAILY, NEW, BACK = 54, 3, 3  # had a digest yesterday; none yet; one three weeks ago


class Staggered:
    """Five listings over three weeks (one stored late) and sixty subscribers: most had a
    digest yesterday, three never had one (their window: the lookback), three one three
    weeks ago."""

    def __init__(self, store: Store, seed_files: list[Path], now: datetime) -> None:
        self.store, self.now = store, now
        long_ago, yesterday = now - timedelta(days=21), now - timedelta(days=1)
        ingest_files(store, seed_files[:1], long_ago)
        self.back = [
            subscribe(store, QUERIES[i], long_ago, f"back{i}@example.org") for i in range(BACK)
        ]
        for person in self.back:
            record_digest(store, person, [], long_ago)
        ingest_files(store, seed_files[2:3], now - timedelta(days=5))
        # stored after, first seen before: outside the lookback though after its first paper
        ingest_files(store, seed_files[1:2], now - timedelta(days=10))
        ingest_files(store, seed_files[3:4], now - timedelta(days=2))
        self.daily = [
            subscribe(store, QUERIES[i % len(QUERIES)], yesterday, f"daily{i}@example.org")
            for i in range(DAILY)
        ]
        for person in self.daily:
            record_digest(store, person, [], yesterday)
        ingest_files(store, seed_files[4:], now)
        self.new = [
            subscribe(store, QUERIES[-1 - i], now, f"new{i}@example.org") for i in range(NEW)
        ]

    @property
    def everyone(self) -> list[Subscriber]:
        return [*self.daily, *self.new, *self.back]

    def alone(self, person: Subscriber, *, sending: bool) -> match.Pending:
        batch = match.Batch(self.store, SETTINGS, self.now, also=person)
        return batch.pending(person, sending=sending)


@pytest.fixture
def staggered(store: Store, seed_files: list[Path], now: datetime) -> Staggered:
    return Staggered(store, seed_files, now)


def ranking(pending: match.Pending) -> list[tuple[int, float]]:
    return [(m.paper.seq, round(m.relevance, 9)) for m in pending.capped]


def test_the_shared_cut_leaves_at_most_one_window_in_ten_behind_it() -> None:
    assert windows.shared_cut([]) is None
    assert windows.shared_cut([7, 3, 5]) == 3  # a small run: nobody is behind
    starts = [100] * 95 + [1, 2, 3, 4, 5]
    cut = windows.shared_cut(starts)
    assert cut == 100
    assert sum(start < cut for start in starts) <= len(starts) // windows.WIDE_SHARE
    assert windows.shared_cut([*range(20)]) == 2


def test_a_send_indexes_the_papers_after_the_cut_and_reads_the_older_ones_in_chunks(
    staggered: Staggered, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = staggered.store
    chunks: list[list[PaperRow]] = []
    read_chunks = store.paper_chunks

    def recorded(after_seq: int, up_to: int, chunk: int) -> object:
        for papers in read_chunks(after_seq, up_to, chunk):
            chunks.append(papers)
            yield papers

    monkeypatch.setattr(store, "paper_chunks", recorded)
    monkeypatch.setattr(match, "OLDER_CHUNK", 7)
    batch = match.Batch(store, SETTINGS, staggered.now, due=staggered.everyone)
    newest_listing = {p.seq for p in store.papers() if p.first_seen == iso(staggered.now)}
    assert {p.seq for p in batch.papers} == newest_listing  # only today's papers are indexed
    assert set(batch.wide) == {p.id for p in [*staggered.new, *staggered.back]}
    for person in staggered.everyone:
        batch.pending(person, sending=True)
    assert chunks
    assert all(0 < len(papers) <= 7 for papers in chunks)
    read = [p.seq for papers in chunks for p in papers]
    assert read == sorted(set(read))  # each older paper read once, oldest first
    assert max(read) < min(newest_listing)


@pytest.mark.parametrize("sending", [True, False], ids=["send", "preview"])
def test_every_due_subscriber_gets_what_a_batch_of_their_own_would_give(
    staggered: Staggered, monkeypatch: pytest.MonkeyPatch, sending: bool
) -> None:
    monkeypatch.setattr(match, "OLDER_CHUNK", 7)  # windows across many chunks
    batch = match.Batch(staggered.store, SETTINGS, staggered.now, due=staggered.everyone)
    assert len(batch.wide) == NEW + BACK
    for person in staggered.everyone:
        together, alone = (
            batch.pending(person, sending=sending),
            staggered.alone(person, sending=sending),
        )
        assert ranking(together) == ranking(alone), (person.email, person.filter)
        assert together.total == alone.total, person.email
        assert together.window == alone.window
        assert [m.matched for m in together.capped] == [m.matched for m in alone.capped]
        assert any(m.matched for m in together.capped) or not together.capped
        if not sending:  # a send's spans are found where it renders
            assert [m.spans for m in together.capped] == [m.spans for m in alone.capped]
    wide = [batch.pending(p, sending=sending) for p in [*staggered.new, *staggered.back]]
    assert sum(p.total for p in wide) > sum(len(p.capped) for p in wide) > 0  # caps were hit


def test_every_match_of_a_wide_window_is_what_a_batch_of_their_own_finds(
    staggered: Staggered,
) -> None:
    batch = match.Batch(staggered.store, SETTINGS, staggered.now, due=staggered.everyone)
    beyond_the_cap = 0
    for person in [*staggered.new, *staggered.back]:
        whole = batch.pending(person, whole=True)
        alone = match.Batch(staggered.store, SETTINGS, staggered.now, also=person)
        assert whole.total == len(whole.matches)
        assert [m.paper.seq for m in whole.matches] == [
            m.paper.seq for m in alone.pending(person, whole=True).matches
        ]
        beyond_the_cap += len(whole.matches) - len(whole.capped)
    assert beyond_the_cap  # the older pass keeps only what can reach the cap: not enough here


def test_a_wide_window_never_gets_again_an_older_paper_it_was_sent(staggered: Staggered) -> None:
    store, now = staggered.store, staggered.now
    person = staggered.back[0]
    before = staggered.alone(person, sending=True)
    older = [m.paper.seq for m in before.capped if m.paper.first_seen != iso(now)]
    assert older, "the test needs an older paper in their digest"
    last = store.last_digest(person.id)
    assert last is not None  # a retry of a paper of their window: sent, window unchanged
    assert store.record_digest(
        person.id, "<retry@test>", last["max_seq"], older[:1], 0, b"", iso(now)
    )
    batch = match.Batch(store, SETTINGS, now, due=staggered.everyone)
    assert person.id in batch.wide
    together = batch.pending(person, sending=True)
    assert older[0] not in {m.paper.seq for m in together.matches}
    assert together.total == before.total - 1 == staggered.alone(person, sending=True).total


def test_someone_not_due_whose_window_reaches_behind_the_cut_is_matched_on_their_own(
    staggered: Staggered,
) -> None:
    left_out = staggered.back[1]
    due = [p for p in staggered.everyone if p.id != left_out.id]
    batch = match.Batch(staggered.store, SETTINGS, staggered.now, due=due)
    assert left_out.id not in batch.wide
    together = batch.pending(left_out, sending=True)
    alone = staggered.alone(left_out, sending=True)
    assert ranking(together) == ranking(alone)
    assert together.total == alone.total > 0


def test_a_send_builds_for_wide_windows_the_message_a_preview_shows(
    staggered: Staggered, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(match, "OLDER_CHUNK", 7)
    config = make_config(tmp_path, delivery={"maildir": "mail"}, digest={"max_papers": 5})
    renderer = Renderer(config)
    store, now = staggered.store, staggered.now
    built, _, _ = outbox.build(store, config, renderer, staggered.everyone, now)
    sent = {b.subscriber.id: b for b in built if isinstance(b, outbox.Built)}
    for person in [*staggered.new, *staggered.back]:
        preview = outbox.preview(store, config, renderer, person, now)
        assert sent[person.id].seqs == preview.seqs, person.filter
        assert sent[person.id].data == preview.data, person.filter


def test_a_stop_while_older_papers_are_read_builds_no_wide_digest_and_the_next_send_does(
    staggered: Staggered, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The older pass can take seconds (1,000 wide windows over 19,000 papers: 5 s); a
    SIGTERM during it ends the send without it, and nobody's digest fails."""
    store, now = staggered.store, staggered.now
    config = make_config(tmp_path, delivery={"maildir": "mail"}, digest={"max_papers": 5})
    stop, read_chunks = threading.Event(), store.paper_chunks
    read: list[int] = []

    def stopped_after_one(after_seq: int, up_to: int, chunk: int) -> Iterator[list[PaperRow]]:
        for papers in read_chunks(after_seq, up_to, chunk):
            read.append(len(papers))
            yield papers
            stop.set()  # SIGTERM arrives while the older papers are read

    monkeypatch.setattr(store, "paper_chunks", stopped_after_one)
    monkeypatch.setattr(match, "OLDER_CHUNK", 7)
    transport = transport_for(config.delivery, config.smtp)
    wide = [p for p in [*staggered.new, *staggered.back] if staggered.alone(p, sending=True).capped]
    assert wide
    recorded = store.count("digests")
    first = sending.send(store, config, transport, lambda: now, stop=stop)
    assert first.stopped
    assert not first.count("failed")
    assert store.count("digests") == recorded  # the first due is wide: nothing was built
    assert len(read) == 2  # the pass ended at the next chunk, not at its end
    monkeypatch.setattr(store, "paper_chunks", read_chunks)
    again = sending.send(store, config, transport, lambda: now)
    assert not again.stopped
    assert {p.email for p in wide} <= {r.email for r in again.digests if r.status == "sent"}


def test_someone_named_due_who_cannot_be_fails_alone_and_the_others_are_built(
    staggered: Staggered, tmp_path: Path, now: datetime
) -> None:
    paused = lifecycle.change_status(staggered.store, staggered.daily[0], "pause", "operator", now)
    config = make_config(tmp_path, delivery={"maildir": "mail"}, digest={"max_papers": 5})
    due = [paused, *staggered.everyone[1:]]
    built, _, _ = outbox.build(staggered.store, config, Renderer(config), due, now)
    failed = [b for b in built if isinstance(b, outbox.Failed)]
    assert [f.subscriber.id for f in failed] == [paused.id]
    assert "does not cover paused" in failed[0].error
    assert sum(isinstance(b, outbox.Built) for b in built) > NEW + BACK


def test_a_wide_window_whose_stored_filter_cannot_be_read_fails_alone(
    staggered: Staggered, tmp_path: Path, now: datetime
) -> None:
    broken = staggered.new[0]
    staggered.store.update_subscriber(broken.id, {"filter": "((diffusion"})
    config = make_config(tmp_path, delivery={"maildir": "mail"}, digest={"max_papers": 5})
    due = staggered.store.subscribers(["active"])
    built, _, _ = outbox.build(staggered.store, config, Renderer(config), due, now)
    failed = [b for b in built if isinstance(b, outbox.Failed)]
    assert [f.subscriber.id for f in failed] == [broken.id]
    assert sum(isinstance(b, outbox.Built) for b in built) > NEW + BACK
