"""The store: migrations, WAL, the FTS index in sync, stable ids, trend signal."""

import re
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, get_args

import pytest

from digest.errors import StoreError
from digest.ingest import ingest_files
from digest.match import trend_key
from digest.models import STATUSES, Entry, PaperMeta, Status
from digest.paper_links import find_links
from digest.store import Store
from digest.store.migrations import migrations
from digest.titles import normalize_title, paper_id

from .conftest import from_source


def test_a_new_database_is_migrated_and_in_wal_mode(store: Store) -> None:
    # the raw connection: the on-disk schema and journal mode are the point
    assert [m.name for m in migrations.pending(store.db)] == []
    assert store.db.journal_mode == "wal"
    assert store.db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
    assert {"papers", "dumps", "sightings", "rejections", "papers_fts"} <= set(
        store.db.table_names()
    )


def test_reopening_applies_nothing_twice(tmp_path: Path) -> None:
    Store(tmp_path / "d.db").close()
    again = Store(tmp_path / "d.db")
    # the raw connection: the migrations table on disk is the point
    applied = [m.name for m in migrations.applied(again.db)]
    assert len(applied) == len(set(applied))
    again.close()


def test_a_database_from_a_newer_digest_is_refused(tmp_path: Path) -> None:
    Store(tmp_path / "d.db").close()
    with sqlite3.connect(tmp_path / "d.db") as conn:
        conn.execute(
            "INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES ('digest', 'm999_future', 'x')"
        )
    with pytest.raises(StoreError, match="written by a newer digest"):
        Store(tmp_path / "d.db")


def test_an_unusable_database_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="cannot open the database"):
        Store(path)


def test_the_fts_index_follows_inserts_and_deletes(
    store: Store, seed_files: list[Path], now: datetime
) -> None:
    ingest_files(store, seed_files[:1], now)
    # the raw connection: the FTS index's triggers on the tables themselves are the point

    def hits(term: str) -> int:
        return int(
            store.db.execute(
                "SELECT COUNT(*) FROM papers_fts WHERE papers_fts MATCH ?", [term]
            ).fetchone()[0]
        )

    assert hits("guidance") > 0
    with store.write():
        store.db.execute("DELETE FROM sightings")
        store.db.execute("DELETE FROM papers")
    assert hits("guidance") == 0
    store.db.execute("INSERT INTO papers_fts(papers_fts) VALUES('integrity-check')")


def test_porter_stemming_makes_plural_queries_find_singular_words(seeded_store: Store) -> None:
    agents = seeded_store.papers(fts='"agents"')
    assert agents == seeded_store.papers(fts='"agent"')
    assert agents


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Delta Denoising Score", "delta  denoising\tscore"),
        ("Ｆｕｌｌｗｉｄｔｈ Title", "Fullwidth title"),
        ("Straße Models", "STRASSE models"),
    ],
)
def test_the_paper_id_comes_from_the_normalized_title(a: str, b: str) -> None:
    assert normalize_title(a) == normalize_title(b)
    assert paper_id(a) == paper_id(b)
    assert len(paper_id(a)) == 16


@pytest.mark.parametrize(
    ("abstract", "links"),
    [
        ("Code at https://github.com/a/b.", ["https://github.com/a/b"]),
        (
            "See {https://github.com/a/b} and (https://x.org/p).",
            ["https://github.com/a/b", "https://x.org/p"],
        ),
        ("Twice https://github.com/a/b, https://github.com/a/b", ["https://github.com/a/b"]),
        ("No links, only http:// residue", []),
    ],
)
def test_links_are_found_in_abstracts_without_residue(abstract: str, links: list[str]) -> None:
    assert find_links(abstract) == links


def test_stored_papers_keep_their_links_and_trend(seeded_store: Store) -> None:
    papers = seeded_store.papers()
    assert len(papers) == 689
    with_links = [p for p in papers if p.links]
    assert with_links
    assert all(link.startswith("http") for p in with_links for link in p.links)
    assert max(p.times_seen for p in papers) > 1
    assert all(p.first_seen == "2026-11-24T07:00:00Z" for p in papers)


def test_the_status_counts_what_is_stored(seeded_store: Store, seed_files: list[Path]) -> None:
    info = seeded_store.status()
    assert (info["papers"], info["dumps"], info["sightings"], info["subscribers"]) == (
        689,
        5,
        767,
        0,
    )
    assert info["last_ingest"] == {"file": seed_files[-1].name, "at": "2026-11-24T07:00:00Z"}
    assert info["database_bytes"] > 0


def test_the_schema_allows_exactly_the_statuses_the_code_knows(store: Store) -> None:
    """One list of subscriber statuses (``models.STATUSES``); the migration's CHECK agrees."""
    # the raw connection: the on-disk schema is the point
    schema = store.db.execute(
        "SELECT sql FROM sqlite_master WHERE name = 'subscribers'"
    ).fetchone()[0]
    allowed = re.search(r"CHECK \(status IN \(([^)]*)\)\)", schema)
    assert allowed is not None
    assert tuple(re.findall(r"'(\w+)'", allowed.group(1))) == STATUSES
    assert set(get_args(Status)) == set(STATUSES)


def test_the_stores_trending_order_is_match_trend_key(seeded_store: Store) -> None:
    """The SQL of ``trending_seqs`` and ``match.trend_key`` say "trending" the same way."""
    papers = seeded_store.papers()
    expected = sorted(papers, key=lambda p: p.seq)
    expected.sort(key=lambda p: p.first_seen, reverse=True)
    expected.sort(key=trend_key)
    assert seeded_store.trending_seqs(len(papers)) == [p.seq for p in expected]
    assert len({trend_key(p) for p in papers}) > 10, "the seeds exercise the key"


# what sources tell of a paper ------------------------------------------------------------

ABSTRACT = "A study of how sources describe papers. " * 5


def sourced(position: int, title: str, arxiv_id: str, **meta: Any) -> Entry:
    return Entry.of(position, title, ABSTRACT, position, PaperMeta(arxiv_id=arxiv_id, **meta))


def test_a_paper_from_a_text_dump_gains_what_a_source_knows_and_stays_one_row(
    seeded_store: Store, now: datetime
) -> None:
    dumped = seeded_store.papers()[0]
    authors = ("Ada Lovelace", "Émilie du Châtelet")
    entry = Entry.of(
        1,
        dumped.title.upper(),
        dumped.abstract,
        1,
        PaperMeta("2411.01234", authors, ("cs.CL",), "2026-11-20", 12, 3, "https://github.com/a/b"),
    )
    before = seeded_store.count("papers")
    from_source(seeded_store, "hf", "2026-11-24", [entry], now)
    assert seeded_store.count("papers") == before
    paper = seeded_store.paper(dumped.id)
    assert paper is not None
    assert paper.meta == PaperMeta(
        "2411.01234", authors, ("cs.CL",), "2026-11-20", 12, 3, "https://github.com/a/b"
    )
    assert paper.times_seen == dumped.times_seen + 1


def test_two_papers_with_one_title_and_two_arxiv_ids_stay_two(store: Store, now: datetime) -> None:
    from_source(store, "hf", "2026-11-24", [sourced(1, "Attention", "2401.00001")], now)
    from_source(store, "arxiv", "2026-11-24", [sourced(1, "Attention", "2401.00002")], now)
    from_source(store, "hf", "2026-11-25", [sourced(2, "attention", "2401.00001")], now)
    found = {p.meta.arxiv_id: p for p in store.papers()}
    assert sorted(k or "" for k in found) == ["2401.00001", "2401.00002"]
    assert found["2401.00001"].times_seen == 2
    assert found["2401.00002"].times_seen == 1
    assert found["2401.00001"].id != found["2401.00002"].id


def test_a_source_polled_all_day_counts_one_listing_a_day(store: Store, now: datetime) -> None:
    for hour, votes in enumerate((3, 9, 14)):
        entry = sourced(1, "Polled paper", "2402.00001", upvotes=votes)
        from_source(store, "hf", "2026-11-24", [entry], now + timedelta(hours=hour))
    (paper,) = store.papers()
    assert paper.times_seen == 1
    assert paper.meta.upvotes == 14
    from_source(store, "hf", "2026-11-25", [sourced(4, "Polled paper", "2402.00001")], now)
    assert store.papers()[0].times_seen == 2


def test_upvotes_lead_the_trending_order_in_sql_as_in_trend_key(
    seeded_store: Store, now: datetime
) -> None:
    papers = seeded_store.papers()
    voted = papers[-1]
    entry = Entry.of(9, voted.title, voted.abstract, 9, PaperMeta("2403.00001", upvotes=2))
    from_source(seeded_store, "hf", "2026-11-24", [entry], now)
    assert seeded_store.trending_seqs(1) == [voted.seq]
    expected = sorted(seeded_store.papers(), key=lambda p: (trend_key(p), p.first_seen))
    assert expected[0].seq == voted.seq


def test_one_response_with_two_papers_of_one_title_keeps_both_even_over_a_dumped_namesake(
    seeded_store: Store, now: datetime
) -> None:
    dumped = seeded_store.papers()[0]
    before = seeded_store.count("papers")
    twins = [
        Entry.of(1, dumped.title, dumped.abstract, 1, PaperMeta("2501.00001")),
        Entry.of(2, dumped.title, dumped.abstract, 2, PaperMeta("2501.00002")),
    ]
    from_source(seeded_store, "hf", "2026-11-24", twins, now)
    assert seeded_store.count("papers") == before + 1
    assert seeded_store.paper(dumped.id).meta.arxiv_id == "2501.00001"  # type: ignore[union-attr]
    ids = {p.meta.arxiv_id for p in seeded_store.papers() if p.title == dumped.title}
    assert ids == {"2501.00001", "2501.00002"}


def test_a_paper_a_source_keeps_listing_for_days_counts_once_for_the_day_it_was_listed(
    store: Store, now: datetime
) -> None:
    for day in (24, 25, 26):  # the Daily Papers API still shows Monday's papers on Wednesday
        entry = sourced(3, "Listed on Monday", "2411.00077", listed="2026-11-24")
        from_source(store, "hf", f"2026-11-{day}", [entry], now + timedelta(days=day - 24))
    (paper,) = store.papers()
    assert paper.times_seen == 1
    from_source(
        store,
        "hf",
        "2026-11-27",
        [sourced(1, "Listed on Monday", "2411.00077", listed="2026-11-27")],
        now,
    )
    assert store.papers()[0].times_seen == 2


def test_a_verdict_is_idempotent_replaces_the_other_and_clears_as_an_undo(
    seeded_store: Store,
) -> None:
    ada = seeded_store.insert_subscriber(
        {
            "email": "ada@example.org",
            "filter": "diffusion",
            "secret": "s1",
            "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z",
        }
    ).id
    first, second = seeded_store.trending_seqs(2)
    assert seeded_store.set_feedback(ada, first, "more", "2026-01-02T00:00:00Z")
    assert not seeded_store.set_feedback(ada, first, "more", "2026-01-03T00:00:00Z")
    assert seeded_store.set_feedback(ada, second, "less", "2026-01-04T00:00:00Z")
    assert [(f.paper_seq, f.verdict, f.created_at) for f in seeded_store.feedback(ada)] == [
        (first, "more", "2026-01-02T00:00:00Z"),
        (second, "less", "2026-01-04T00:00:00Z"),
    ]
    assert seeded_store.set_feedback(ada, first, "less", "2026-01-05T00:00:00Z")
    assert seeded_store.all_feedback(before="2026-01-05T00:00:00Z") == {
        ada: [seeded_store.feedback(ada)[0]]
    }
    assert seeded_store.verdict(ada, first) == "less"
    assert seeded_store.verdict(ada, second) == "less"
    assert seeded_store.clear_feedback(ada, second)
    assert not seeded_store.clear_feedback(ada, second)
    assert seeded_store.verdict(ada, second) is None
    assert [f.verdict for f in seeded_store.feedback(ada)] == ["less"]
    assert seeded_store.all_feedback(subscribers=[ada + 1]) == {}
