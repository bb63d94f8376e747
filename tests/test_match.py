"""Matching: backtest, ranking, a subscriber's pending papers, the cap, and explain."""

import re
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from digest import backtest, lifecycle, match, outbox, subscribers, windows
from digest.config import DigestConfig
from digest.explain import explain
from digest.ingest import ingest_files
from digest.models import Entry, PaperMeta, PaperRow, Subscriber
from digest.query import Corpus, parse
from digest.render import Renderer
from digest.stemming import Stemmer
from digest.store import Store, iso

from .conftest import RunCli, from_source, make_config

SETTINGS = DigestConfig()


def subscribe(
    store: Store, query: str, now: datetime, email: str = "ada@example.org"
) -> Subscriber:
    return lifecycle.add(store, subscribers.Wanted(email, query), "operator", now)


def record_digest(store: Store, subscriber: Subscriber, seqs: list[int], now: datetime) -> int:
    """What the email stage does when it builds a digest: one digest row, one delivery per paper."""
    max_seq = store.max_seq()
    message_id = f"<{subscriber.id}.{max_seq}@test>"
    with store.write():
        digest_id = store.record_digest(subscriber.id, message_id, max_seq, seqs, 0, b"", iso(now))
    assert digest_id is not None
    return digest_id


def test_a_backtest_returns_only_matching_papers_with_their_matched_terms(
    seeded_store: Store,
) -> None:
    found = backtest.backtest(seeded_store, "diffusion -video")
    assert found
    for m in found:
        text = (m.paper.title + " " + m.paper.abstract).lower()
        assert "diffusion" in text
        assert "video" not in text
        assert m.matched == ["diffusion"]


def test_results_rank_trending_first_then_relevance(seeded_store: Store) -> None:
    found = backtest.backtest(seeded_store, "model")
    keys = [(-m.paper.times_seen, m.paper.best_position) for m in found]
    assert keys == sorted(keys)
    assert found[0].paper.times_seen > found[-1].paper.times_seen
    ties = [
        m
        for m in found
        if (m.paper.times_seen, m.paper.best_position) == (1, found[-1].paper.best_position)
    ]
    assert [m.relevance for m in ties] == sorted((m.relevance for m in ties), reverse=True)


def test_score_reflects_the_trend(seeded_store: Store) -> None:
    found = backtest.backtest(seeded_store, "model")
    assert all(m.score > m.paper.times_seen for m in found)
    assert found[0].score >= found[-1].score


def test_the_backtest_agrees_with_a_plain_scan_for_a_prefix(seeded_store: Store) -> None:
    found = {m.paper.id for m in backtest.backtest(seeded_store, "regulari*")}
    expected = {
        p.id
        for p in seeded_store.papers()
        if re.search(r"\bregulari", (p.title + " " + p.abstract).lower())
    }
    assert found == expected
    assert found


def test_by_day_counts_papers_per_ingest_day(
    store: Store, seed_files: list[Path], now: datetime
) -> None:
    ingest_files(store, seed_files[:2], now - timedelta(days=1))
    ingest_files(store, seed_files[2:], now)
    days = backtest.by_day([m.paper for m in backtest.backtest(store, "diffusion")])
    assert [day for day, _ in days] == ["2026-11-23", "2026-11-24"]
    assert sum(n for _, n in days) == len(backtest.backtest(store, "diffusion"))


def test_a_new_subscriber_gets_the_lookback_window(
    store: Store, seed_files: list[Path], now: datetime
) -> None:
    ingest_files(store, seed_files[:1], now - timedelta(days=30))
    ingest_files(store, seed_files[1:], now - timedelta(days=1))
    person = subscribe(store, "model", now)
    upcoming = match.pending(store, person, SETTINGS, now)
    assert upcoming.matches
    assert all(m.paper.first_seen >= iso(now - timedelta(days=7)) for m in upcoming.matches)
    assert "the last 7 days" in upcoming.window


def test_pending_papers_exclude_those_already_sent_and_older_than_the_last_digest(
    store: Store, seed_files: list[Path], now: datetime
) -> None:
    ingest_files(store, seed_files[:2], now - timedelta(days=2))
    person = subscribe(store, "diffusion", now - timedelta(days=2))
    first = match.pending(store, person, SETTINGS, now - timedelta(days=2))
    record_digest(store, person, [m.paper.seq for m in first.capped], now - timedelta(days=2))
    ingest_files(store, seed_files[2:], now)
    second = match.pending(store, person, SETTINGS, now)
    assert second.matches
    sent = {m.paper.seq for m in first.capped}
    assert not sent & {m.paper.seq for m in second.matches}
    oldest_new = min(m.paper.seq for m in second.matches)
    assert oldest_new > max(m.paper.seq for m in first.matches)


def test_a_digest_is_capped_and_the_rest_counted(seeded_store: Store, now: datetime) -> None:
    person = subscribe(seeded_store, "model", now)
    upcoming = match.pending(seeded_store, person, DigestConfig(max_papers=5), now)
    assert len(upcoming.capped) == 5
    assert upcoming.more == len(upcoming.matches) - 5 > 0
    assert [m.paper for m in upcoming.capped] == [m.paper for m in upcoming.matches[:5]]


def test_the_papers_of_a_digest_carry_the_spans_their_filter_matched(
    seeded_store: Store, now: datetime
) -> None:
    person = subscribe(seeded_store, "diffusion", now)
    for upcoming in (
        match.pending(seeded_store, person, SETTINGS, now),
        match.Batch(seeded_store, SETTINGS, now).pending(person),
    ):
        assert upcoming.capped
        for found in upcoming.capped:
            marked = [found.paper.abstract[a:b].casefold() for a, b in found.spans]
            assert marked, found.paper.title
            assert all(word.startswith("diffus") for word in marked)  # the stem, as FTS5


def lists_again(store: Store, papers: list[PaperRow], meta: PaperMeta, now: datetime) -> None:
    """A source lists these stored papers again, with what it knows of them."""
    entries = [
        Entry.of(
            n, p.title, p.abstract, n, PaperMeta(f"2411.{p.seq:05d}", meta.authors, meta.categories)
        )
        for n, p in enumerate(papers, start=1)
    ]
    from_source(store, "arxiv", "2026-11-24", entries, now)


def test_a_subscriber_filtering_by_author_gets_that_authors_papers_and_why(
    seeded_store: Store, now: datetime
) -> None:
    papers = seeded_store.papers()
    theirs, vision = papers[3:6], papers[6]
    lists_again(
        seeded_store,
        theirs,
        PaperMeta(authors=("Ada Lovelace", "Émilie du Châtelet"), categories=("cs.CL",)),
        now,
    )
    lists_again(
        seeded_store,
        [vision],
        PaperMeta(authors=("Émilie du Châtelet",), categories=("cs.CV",)),
        now,
    )
    person = subscribe(seeded_store, "author:chatelet -category:cs.CV", now)
    for upcoming in (
        match.pending(seeded_store, person, SETTINGS, now),
        match.Batch(seeded_store, SETTINGS, now).pending(person),
    ):
        assert {m.paper.id for m in upcoming.matches} == {p.id for p in theirs}
        assert all(m.matched == ["author:chatelet"] for m in upcoming.matches)
        assert all(m.spans == () for m in upcoming.capped)  # a name is not in the abstract
    stored = seeded_store.paper(vision.id)
    assert stored is not None
    verdict = explain(seeded_store, person, stored, SETTINGS, now)
    assert not verdict.included
    assert "matched: author:chatelet" in verdict.reasons
    assert "excluded by NOT: category:cs.CV" in verdict.reasons
    elsewhere = seeded_store.paper(papers[0].id)
    assert elsewhere is not None
    assert (
        "missing: author:chatelet"
        in explain(seeded_store, person, elsewhere, SETTINGS, now).reasons
    )


def test_a_backtest_by_author_and_word_finds_what_the_store_prefilter_lets_through(
    seeded_store: Store, now: datetime
) -> None:
    """The FTS5 index knows no authors: the words narrow the candidates, the Corpus decides."""
    papers = [p for p in seeded_store.papers() if "diffusion" in p.abstract.lower()][:4]
    lists_again(seeded_store, papers[:2], PaperMeta(authors=("Yann LeCun",)), now)
    found = backtest.backtest(seeded_store, "diffusion author:lecun")
    assert {m.paper.id for m in found} == {p.id for p in papers[:2]}
    assert backtest.backtest(seeded_store, "diffusion OR author:lecun")[0].matched
    assert {m.paper.id for m in backtest.backtest(seeded_store, "author:lecun")} == {
        p.id for p in papers[:2]
    }


def test_explain_says_which_terms_matched_and_the_position(
    seeded_store: Store, now: datetime
) -> None:
    person = subscribe(seeded_store, "diffusion -video", now)
    top = match.pending(seeded_store, person, SETTINGS, now).capped[0]
    verdict = explain(seeded_store, person, top.paper, SETTINGS, now)
    assert verdict.included
    assert "matched: diffusion" in verdict.reasons
    assert "in the next digest at position 1 of" in verdict.reasons[-1]


def test_explain_says_a_paused_subscriber_gets_no_digest(
    seeded_store: Store, now: datetime
) -> None:
    person = subscribe(seeded_store, "diffusion -video", now)
    top = match.pending(seeded_store, person, SETTINGS, now).capped[0]
    paused = lifecycle.change_status(seeded_store, person, "pause", "subscriber", now)
    verdict = explain(seeded_store, paused, top.paper, SETTINGS, now)
    assert not verdict.included
    assert "the subscriber is paused: no digest is sent to them" in verdict.reasons


def test_explain_names_the_excluding_term(seeded_store: Store, now: datetime) -> None:
    person = subscribe(seeded_store, "diffusion -video", now)
    [paper] = [
        p
        for p in seeded_store.papers()
        if p.title.startswith("Training-free Guidance in Text-to-Video")
    ]
    verdict = explain(seeded_store, person, paper, SETTINGS, now)
    assert not verdict.included
    assert "excluded by NOT: video" in verdict.reasons


def test_explain_names_the_missing_terms(seeded_store: Store, now: datetime) -> None:
    person = subscribe(seeded_store, '"protein folding" OR robots', now)
    paper = seeded_store.papers()[0]
    verdict = explain(seeded_store, person, paper, SETTINGS, now)
    assert not verdict.included
    assert 'missing: "protein folding", robots' in verdict.reasons


def test_explain_says_when_a_paper_was_already_sent(seeded_store: Store, now: datetime) -> None:
    person = subscribe(seeded_store, "model", now)
    paper = match.pending(seeded_store, person, SETTINGS, now).capped[0].paper
    record_digest(seeded_store, person, [paper.seq], now)
    verdict = explain(seeded_store, person, paper, SETTINGS, now)
    assert not verdict.included
    assert any(r.startswith("already put in digest #1 on 2026-11-24") for r in verdict.reasons)


def test_explain_says_when_a_paper_is_outside_the_window(
    seeded_store: Store, now: datetime
) -> None:
    person = subscribe(seeded_store, "model", now)
    paper = backtest.backtest(seeded_store, "model")[0].paper
    verdict = explain(seeded_store, person, paper, SETTINGS, now + timedelta(days=30))
    assert not verdict.included
    assert any("outside the window: the last 7 days" in r for r in verdict.reasons)


def test_explain_says_when_a_paper_is_beyond_the_cap(seeded_store: Store, now: datetime) -> None:
    person = subscribe(seeded_store, "model", now)
    last = match.pending(seeded_store, person, SETTINGS, now).matches[-1].paper
    verdict = explain(seeded_store, person, last, SETTINGS, now)
    assert not verdict.included
    assert "beyond the cap of 25 (on the digest's more page)" in verdict.reasons[-1]


# the CLI ---------------------------------------------------------------------------


def test_match_query_json_has_id_title_matched_and_score(
    run_cli: RunCli, seed_files: list[Path]
) -> None:
    run_cli("ingest", *map(str, seed_files))
    result = run_cli("match", "--query", 'agents OR "language model"', "--json")
    assert result.exit_code == 0
    found = result.json()
    assert found
    assert {"id", "title", "matched", "score"} <= set(found[0])
    assert all(set(m["matched"]) <= {"agents", '"language model"'} and m["matched"] for m in found)


def test_match_by_day_prints_one_line_per_ingest_day(
    run_cli: RunCli, seed_files: list[Path]
) -> None:
    run_cli("ingest", *map(str, seed_files))
    result = run_cli("match", "--query", "diffusion", "--by-day", "--json")
    [day] = result.json()
    assert day["papers"] == len(run_cli("match", "--query", "diffusion", "--json").json())


def test_match_subscriber_shows_the_next_digest(run_cli: RunCli, seed_files: list[Path]) -> None:
    run_cli("ingest", *map(str, seed_files))
    run_cli("subscribers", "add", "ada@example.org", "--filter", "diffusion")
    result = run_cli("match", "--subscriber", "ada@example.org", "--json")
    assert result.exit_code == 0
    assert 0 < len(result.json()) <= 25


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("match",), "give --query QUERY or --subscriber EMAIL"),
        (("match", "--query", "title:(a"), "unclosed '('"),
        (("match", "--query", "-video"), "a filter must include at least one term"),
        (("match", "--subscriber", "nobody@example.org"), "no subscriber nobody@example.org"),
        (("papers", "--search", "NEAR(a b)"), "NEAR is not supported"),
        (("explain", "nobody@example.org", "x"), "no subscriber"),
    ],
)
def test_bad_match_requests_exit_2(run_cli: RunCli, args: tuple[str, ...], message: str) -> None:
    result = run_cli(*args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_papers_search_uses_the_filter_language(run_cli: RunCli, seed_files: list[Path]) -> None:
    run_cli("ingest", *map(str, seed_files))
    plural = {
        p["id"] for p in run_cli("papers", "--search", "agents", "--limit", "500", "--json").json()
    }
    singular = {
        p["id"] for p in run_cli("papers", "--search", "agent", "--limit", "500", "--json").json()
    }
    assert plural == singular
    assert plural


def test_explain_cli_prints_the_reasons(run_cli: RunCli, seed_files: list[Path]) -> None:
    run_cli("ingest", *map(str, seed_files))
    run_cli("subscribers", "add", "ada@example.org", "--filter", "diffusion -video")
    top = run_cli("match", "--subscriber", "ada@example.org", "--json").json()[0]
    result = run_cli("explain", "ada@example.org", top["title"])
    assert result.exit_code == 0
    assert "IN the next digest of ada@example.org" in result.stdout
    assert "matched: diffusion" in result.stdout
    as_json = run_cli("explain", "ada@example.org", top["id"], "--json").json()
    assert as_json["included"] is True
    assert as_json["matched"] == ["diffusion"]


def test_one_stemmer_serves_many_searches_with_the_same_results(seeded_store: Store) -> None:
    stemmer = Stemmer()
    plural = [m.paper.id for m in backtest.backtest(seeded_store, "agents", stemmer=stemmer)]
    assert [m.paper.id for m in backtest.backtest(seeded_store, "agent", stemmer=stemmer)] == plural
    assert plural == [m.paper.id for m in backtest.backtest(seeded_store, "agents")]


def test_matching_many_subscribers_at_once_gives_each_the_same_digest_as_alone(
    store: Store, seed_files: list[Path], now: datetime
) -> None:
    ingest_files(store, seed_files[:2], now - timedelta(days=3))
    queries = [
        "diffusion",
        "model -language",
        '"large language"',
        "robot* OR agents",
        "title:video",
        "zebra",
    ]
    people = [
        subscribe(store, q, now - timedelta(days=3), f"p{i}@example.org")
        for i, q in enumerate(queries)
    ]
    for person in people[:3]:
        first = match.pending(store, person, SETTINGS, now - timedelta(days=3))
        record_digest(store, person, [m.paper.seq for m in first.capped], now - timedelta(days=3))
    ingest_files(store, seed_files[2:], now)
    batch = match.Batch(store, SETTINGS, now)
    for person in people:
        alone = match.pending(store, person, SETTINGS, now)
        together = batch.pending(person)
        assert [m.paper.id for m in together.capped] == [m.paper.id for m in alone.capped], (
            person.filter
        )
        assert together.more == alone.more
        assert [m.matched for m in together.capped] == [m.matched for m in alone.capped]


def tied_relevance(built: outbox.Built) -> list[tuple[int, float]]:
    """(seq, relevance) of the papers whose trend ties with another's in the digest."""
    matches = built.content.matches
    trends = Counter(match.trend_key(m.paper) for m in matches)
    return [(m.paper.seq, m.relevance) for m in matches if trends[match.trend_key(m.paper)] > 1]


def test_a_preview_lists_what_send_builds_for_them_though_others_have_older_windows(
    store: Store, seed_files: list[Path], now: datetime, tmp_path: Path
) -> None:
    month_ago = now - timedelta(days=30)
    ingest_files(store, seed_files[:1], month_ago)
    for i, query in enumerate(["model", "learning", "agents"]):  # their windows reach back
        record_digest(
            store, subscribe(store, query, month_ago, f"old{i}@example.org"), [], month_ago
        )
    ingest_files(store, seed_files[1:2], now - timedelta(days=20))
    queries = [
        "model",
        "diffusion OR video",
        "learning -robot",
        "language model*",
        "data OR agents",
    ]
    people = [subscribe(store, q, now, f"p{i}@example.org") for i, q in enumerate(queries)]
    ingest_files(store, seed_files[2:3], now - timedelta(days=1))
    for person in people[::2]:  # some had a digest yesterday, the others none yet
        first = match.pending(store, person, SETTINGS, now - timedelta(days=1), whole=False)
        record_digest(store, person, [m.paper.seq for m in first.capped], now - timedelta(days=1))
    ingest_files(store, seed_files[3:], now)
    config = make_config(tmp_path, delivery={"maildir": "mail"}, digest={"max_papers": 5})
    renderer = Renderer(config)
    everyone = store.subscribers(["active"])
    built, _, _ = outbox.build(store, config, renderer, everyone, now)
    sent = {b.subscriber.id: b for b in built if isinstance(b, outbox.Built)}
    assert set(sent) >= {p.id for p in people}
    ties = 0
    for person in people:
        alone = outbox.preview(store, config, renderer, person, now)
        assert alone.seqs == sent[person.id].seqs, person.filter
        # a send works relevance out only where trends tie: there it must be the preview's
        assert tied_relevance(alone) == tied_relevance(sent[person.id]), person.filter
        ties += len(tied_relevance(alone))
        assert alone.content.more == sent[person.id].content.more
        # the terms and highlights a send finds where it renders are the preview's
        assert alone.data == sent[person.id].data, person.filter
    assert ties, "no two papers of a digest tie on trend: relevance was never compared"


def test_the_window_is_after_the_last_digest_or_the_lookback_days_before_a_first(
    seeded_store: Store, now: datetime
) -> None:
    papers = seeded_store.papers()
    newest, oldest = max(papers, key=lambda p: p.seq), min(papers, key=lambda p: p.seq)
    first = windows.Window.of(None, 7, now)
    assert first.description == "the last 7 days (no digest yet)"
    assert all(first.holds(p) for p in papers)
    assert not windows.Window.of(None, 7, now + timedelta(days=8)).holds(newest)
    later = windows.Window.of(oldest.seq, 7, now, "2026-11-20T07:00:00Z")
    assert later.description == "since the last digest (2026-11-20T07:00:00Z)"
    assert not later.holds(oldest)
    assert later.holds(newest)
    assert later.since is None  # once a digest was built, age no longer matters


def test_batch_and_explain_share_the_window(seeded_store: Store, now: datetime) -> None:
    person = subscribe(seeded_store, "model", now, "w@example.org")
    batch = match.Batch(seeded_store, SETTINGS, now + timedelta(days=30))
    assert batch.pending(person).total == 0
    assert batch.pending(person).window == "the last 7 days (no digest yet)"
    paper = seeded_store.papers()[0]
    verdict = explain(seeded_store, person, paper, SETTINGS, now + timedelta(days=30))
    assert not verdict.included
    assert any("outside the window: the last 7 days" in r for r in verdict.reasons)


def test_the_window_ignores_the_old_last_digest_of_someone_who_can_no_longer_be_due(
    store: Store, seed_files: list[Path], now: datetime
) -> None:
    month_ago, yesterday = now - timedelta(days=30), now - timedelta(days=1)
    ingest_files(store, seed_files[:1], month_ago)
    gone = subscribe(store, "model", month_ago, "gone@example.org")
    last_seq = store.max_seq()  # what the last digest they got considered
    ingest_files(store, seed_files[1:2], now - timedelta(days=20))
    ingest_files(store, seed_files[2:3], yesterday)
    ada = subscribe(store, "model", yesterday)
    record_digest(store, ada, [], yesterday)
    ingest_files(store, seed_files[3:], now)
    old = {p.seq for p in store.papers() if p.first_seen == iso(now - timedelta(days=20))}
    assert old
    sent_long_ago = [min(old)]  # and a paper of that old window they were sent (a retry)
    mark = "<digest.gone@example.org>"
    assert store.record_digest(gone.id, mark, last_seq, sent_long_ago, 0, b"", iso(month_ago))
    assert old <= {p.seq for p in match.Batch(store, SETTINGS, now).papers}
    gone = lifecycle.unsubscribe(store, gone, now)
    batch = match.Batch(store, SETTINGS, now)
    assert not old & {p.seq for p in batch.papers}
    assert set(batch.delivered) <= {ada.id}
    with pytest.raises(ValueError, match="does not cover unsubscribed"):
        batch.pending(gone)
    preview = match.Batch(store, SETTINGS, now, also=gone)  # a preview covers whom it shows
    held = {p.seq for p in preview.papers}
    assert held & old
    assert held <= {p.seq for p in store.papers(after_seq=last_seq)}
    assert preview.delivered == {gone.id: set(sent_long_ago)}
    assert preview.pending(gone).window.startswith("since the last digest")
    with pytest.raises(ValueError, match="does not cover active"):
        preview.pending(ada)  # and only them


def test_polls_between_ingests_reuse_the_window_index_and_an_ingest_renews_it(
    store: Store, seed_files: list[Path], now: datetime
) -> None:
    ingest_files(store, seed_files[:2], now)
    first = match.Batch(store, SETTINGS, now)
    assert match.Batch(store, SETTINGS, now + timedelta(hours=1)).corpus is first.corpus
    ingest_files(store, seed_files[2:], now + timedelta(hours=2))
    renewed = match.Batch(store, SETTINGS, now + timedelta(hours=2))
    assert renewed.corpus is not first.corpus
    assert renewed.corpus.size == len(renewed.papers) > first.corpus.size


def test_the_batch_reads_only_the_sent_papers_a_window_could_take_again(
    store: Store, seed_files: list[Path], now: datetime
) -> None:
    """A window reaching far back (no digest for weeks) widens the batch for everyone, but
    the papers each subscriber was sent before their own window are not read into it."""
    long_ago, yesterday = now - timedelta(days=20), now - timedelta(days=1)
    ingest_files(store, seed_files[:1], long_ago)
    quiet = subscribe(store, "zebra", long_ago, "quiet@example.org")  # matches nothing since
    record_digest(store, quiet, [], long_ago)
    ingest_files(store, seed_files[1:2], yesterday)
    ada = subscribe(store, "model", yesterday)
    sent = [m.paper.seq for m in match.pending(store, ada, SETTINGS, yesterday).capped]
    assert sent
    record_digest(store, ada, sent, yesterday)
    ingest_files(store, seed_files[2:], now)
    batch = match.Batch(store, SETTINGS, now)
    assert set(sent) <= set(batch.seqs)  # quiet's window holds the papers ada was sent
    assert store.delivered_since(batch.seqs[0])[ada.id] == set(sent)
    assert ada.id not in batch.delivered  # behind ada's own window: not read
    assert not {m.paper.seq for m in batch.pending(ada).matches} & set(sent)
    assert batch.pending(ada).total == match.pending(store, ada, SETTINGS, now).total


def test_the_terms_of_many_papers_at_once_are_those_an_index_of_each_alone_finds(
    seeded_store: Store,
) -> None:
    """A send finds each digest's terms from the batch's bitsets, all its papers at once
    (``matched_each``): the terms are each paper's own, whatever corpus holds it."""
    papers = seeded_store.papers()[:20]
    stemmer = match.shared_stemmer()
    whole = Corpus(stemmer, windows.documents(papers))
    queries = ["model OR data", '"language model" -video', "diffus* title:learning", "a OR a"]
    for query in queries:
        node = parse(query)
        alone = [Corpus(stemmer, windows.documents([p])).matched(node, 0) for p in papers]
        assert whole.matched_each(node, range(20)) == alone, query
        assert [whole.matched(node, i) for i in range(20)] == alone, query
        assert whole.matched_each(node, [19, 3, 3]) == [alone[19], alone[3], alone[3]]
    assert any(whole.matched_each(parse("model OR data"), range(20)))
