"""The store: migrations, WAL, the FTS index in sync, stable ids, trend signal."""

import re
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import get_args

import pytest

from digest.errors import StoreError
from digest.ingest import ingest_files
from digest.match import trend_key
from digest.models import STATUSES, Status, find_links, normalize_title, paper_id
from digest.store import Store
from digest.store.migrations import migrations


def test_a_new_database_is_migrated_and_in_wal_mode(store: Store) -> None:
    # the raw connection: the on-disk schema and journal mode are the point
    assert [m.name for m in migrations.pending(store.db)] == []
    assert store.db.journal_mode == "wal"
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
