"""Backtests that stream: the same matches, in the same order, as ranking every candidate at once.

The oracle is the all-in-memory path: ``backtest.select`` over the candidates the store
narrows to, ranked in one corpus.  The stream uses chunks of a few papers, so every
backtest here spans many of them and many trends.
"""

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from digest import backtest, match
from digest.backtest import Streamed
from digest.ingest import ingest_files
from digest.models import AllOf, AnyOf, FtsMatch, HasValues, PaperMeta, PaperRow, Spelled
from digest.query import fts5_decides, parse, to_fts5, to_narrowing
from digest.stemming import Stemmer
from digest.store import Store

from .conftest import RunCli
from .test_match import lists_again

QUERIES = [
    "diffusion",
    "diffusion -video",
    "model",
    '"language model" OR agents',
    "regulari*",
    "robot* OR diffusion",
    "title:learn* model",
    "author:lecun",
    "diffusion author:lecun",
    "category:cs.cl OR author:lecun",
    "robot* OR -diffusion",
]


def oracle(store: Store, query: str, since: datetime | None = None) -> list[match.Match]:
    """The old path: every candidate in one list, one corpus, ranked at once."""
    node = parse(query)
    candidates = [p for chunk in _chunks(store, query, since) for p in chunk]
    return backtest.select(node, candidates, Stemmer())


def _chunks(store: Store, query: str, since: datetime | None) -> list[list[PaperRow]]:
    narrowing = to_narrowing(parse(query))
    return list(store.trending_chunks(since=since, narrowing=narrowing, chunk=1_000_000))


def rows(found: list[match.Match]) -> list[tuple[str, list[str], float]]:
    return [(m.paper.id, m.matched, m.relevance) for m in found]


@pytest.fixture
def authored(seeded_store: Store, now: datetime) -> Store:
    """The seed store, two diffusion papers relisted by a source that names their authors."""
    papers = [p for p in seeded_store.papers() if "diffusion" in p.abstract.lower()][:4]
    meta = PaperMeta(authors=("Yann LeCun",), categories=("cs.CL",))
    lists_again(seeded_store, papers[:2], meta, now)
    return seeded_store


@pytest.mark.parametrize("query", QUERIES)
def test_a_backtest_in_chunks_ranks_exactly_as_one_corpus_of_every_candidate(
    authored: Store, query: str
) -> None:
    streamed = list(Streamed(authored, query, chunk=3).ranked())
    assert rows(streamed) == rows(oracle(authored, query))
    assert len(streamed) > 0


@pytest.mark.parametrize("query", ["diffusion", "diffusion -video", '"language model" OR agents'])
def test_a_filter_fts5_narrows_alone_ranks_as_before_over_the_fts5_candidates(
    seeded_store: Store, query: str
) -> None:
    node = parse(query)
    before = backtest.select(node, seeded_store.papers(fts=to_fts5(node)), Stemmer())
    assert rows(list(Streamed(seeded_store, query, chunk=4).ranked())) == rows(before)


@pytest.mark.parametrize(
    "query",
    ["regulari*", "robot* OR diffusion", "title:learn* model", "author:lecun", "model -robot*"],
)
def test_the_narrowing_keeps_every_paper_a_scan_of_the_whole_store_finds(
    authored: Store, query: str
) -> None:
    everything = backtest.select(parse(query), authored.papers(), Stemmer())
    assert {m.paper.id for m in Streamed(authored, query, chunk=5).ranked()} == {
        m.paper.id for m in everything
    }


@pytest.mark.parametrize(
    ("query", "narrowing"),
    [
        ("author:lecun", HasValues("author")),
        ("diffusion", FtsMatch('"diffusion"')),
        ("robot*", Spelled("robot", ("title", "abstract"))),
        ("title:robot*", Spelled("robot", ("title",))),
        ("author:lecun OR category:cs.cl", AnyOf((HasValues("author"), HasValues("category")))),
        ("diffusion author:lecun", AllOf((FtsMatch('"diffusion"'), HasValues("author")))),
        ("robot* OR -diffusion", None),
    ],
)
def test_what_each_filter_narrows_the_store_to(query: str, narrowing: object) -> None:
    assert to_narrowing(parse(query)) == narrowing


def test_an_author_only_filter_reads_only_the_papers_with_authors(authored: Store) -> None:
    [chunk] = _chunks(authored, "author:lecun", None)
    assert len(chunk) == 2 < len(authored.papers())
    assert {m.paper.id for m in Streamed(authored, "author:lecun").ranked()} == {
        p.id for p in chunk
    }


def test_the_tally_counts_what_the_ranking_lists_per_day(seeded_store: Store) -> None:
    found = Streamed(seeded_store, "model", chunk=3)
    listed = list(found.ranked())
    assert found.tally().total == len(listed)
    assert found.tally().days == backtest.by_day(m.paper for m in listed)


def test_matches_per_day_are_the_evaluators_whether_or_not_the_index_decides_alone(
    store: Store, seed_files: list[Path], now: datetime
) -> None:
    for days_ago, files in ((9, seed_files[:1]), (3, seed_files[1:3]), (0, seed_files[3:])):
        ingest_files(store, files, now - timedelta(days=days_ago))
    queries = [*QUERIES, "title:video diffusion", '"neural network"']
    decided = [q for q in queries if fts5_decides(parse(q))]
    assert decided == [
        "diffusion",
        "model",
        '"language model" OR agents',
        "title:video diffusion",
        '"neural network"',
    ]
    for query in queries:
        for since in (None, now - timedelta(days=4)):
            expected = backtest.by_day(m.paper for m in oracle(store, query, since))
            assert Streamed(store, query, since=since).by_day() == expected, (query, since)
    assert len(Streamed(store, "model").by_day()) == 3


def test_since_limits_the_stream_to_recent_papers(seeded_store: Store, now: datetime) -> None:
    assert list(Streamed(seeded_store, "model", since=now + timedelta(days=1)).ranked()) == []


def test_papers_search_lists_the_head_of_the_backtest(
    run_cli: RunCli, seed_files: list[Path]
) -> None:
    run_cli("ingest", *map(str, seed_files))
    every = [m["id"] for m in run_cli("match", "--query", "model", "--json").json()]
    searched = run_cli("papers", "--search", "model", "--limit", "7", "--json").json()
    assert [p["id"] for p in searched] == every[:7]


def test_match_by_day_counts_agree_with_the_listed_matches(
    run_cli: RunCli, seed_files: list[Path]
) -> None:
    run_cli("ingest", *map(str, seed_files))
    days = run_cli("match", "--query", "model", "--by-day", "--json").json()
    listed = run_cli("match", "--query", "model", "--json").json()
    assert sum(day["papers"] for day in days) == len(listed) > 0


def test_match_query_json_is_an_array_even_when_nothing_matches(
    run_cli: RunCli, seed_files: list[Path]
) -> None:
    run_cli("ingest", *map(str, seed_files))
    assert run_cli("match", "--query", "zzzunheardof", "--json").json() == []
