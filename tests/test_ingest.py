"""Ingest: files and folders into the store, all or nothing per file, inbox moves."""

import shutil
from datetime import datetime
from pathlib import Path

import pytest

from digest.ingest import collect, ingest_files, ingest_inbox
from digest.store import Store

from .test_dumps import ABSTRACT, REJECTED


def table_counts(store: Store) -> dict[str, int]:
    return {t: store.count(t) for t in ("papers", "dumps", "sightings")} | {
        "fts": store.count("papers_fts")
    }


def test_the_seeds_give_767_entries_and_689_papers(
    store: Store, seed_files: list[Path], now: datetime
) -> None:
    report = ingest_files(store, seed_files, now)
    assert [f.status for f in report.files] == ["ingested"] * 5
    assert sum(f.entries for f in report.files) == 767
    assert sum(f.new for f in report.files) == 689
    assert sum(f.seen for f in report.files) == 767 - 689
    assert table_counts(store) == {"papers": 689, "dumps": 5, "sightings": 767, "fts": 689}


def test_ingesting_the_same_content_again_adds_nothing(
    store: Store, seed_files: list[Path], now: datetime, tmp_path: Path
) -> None:
    ingest_files(store, seed_files, now)
    renamed = tmp_path / "copy-under-another-name.txt"
    shutil.copy(seed_files[0], renamed)
    report = ingest_files(store, [*seed_files, renamed], now)
    assert {f.status for f in report.files} == {"duplicate"}
    assert sum(f.new for f in report.files) == 0
    assert table_counts(store)["sightings"] == 767


def test_a_paper_seen_again_in_a_later_dump_is_a_new_sighting_not_a_new_paper(
    store: Store, tmp_path: Path, now: datetime
) -> None:
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_text(f"Paper One\n{ABSTRACT}\n")
    second.write_text(f"Paper Two\n{ABSTRACT}\n  paper   ONE \n{ABSTRACT}\n")
    report = ingest_files(store, [first, second], now)
    assert [(f.new, f.seen) for f in report.files] == [(1, 0), (1, 1)]
    trend = {p.title: (p.times_seen, p.best_position) for p in store.papers()}
    assert trend == {"Paper One": (2, 1), "Paper Two": (1, 1)}


@pytest.mark.parametrize(("content", "line", "reason"), REJECTED.values(), ids=REJECTED.keys())
def test_a_rejected_file_stores_nothing_and_is_recorded(
    store: Store,
    seed_files: list[Path],
    tmp_path: Path,
    now: datetime,
    content: str | bytes,
    line: int,
    reason: str,
) -> None:
    ingest_files(store, seed_files[:1], now)
    before = table_counts(store)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(content if isinstance(content, bytes) else content.encode())
    [result] = ingest_files(store, [bad], now).files
    assert result.status == "rejected"
    assert result.error is not None
    assert result.error.startswith(f"{bad}:{line}: ")
    assert reason in result.error
    assert table_counts(store) == before
    assert store.count("rejections") == 1
    assert bad.exists()


def test_a_rejected_file_does_not_stop_the_others(
    store: Store, seed_files: list[Path], tmp_path: Path, now: datetime
) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("Lonely Title\n")
    report = ingest_files(store, [seed_files[0], bad, seed_files[1]], now)
    assert [f.status for f in report.files] == ["ingested", "rejected", "ingested"]
    assert report.rejected == 1


def test_folders_give_their_visible_files_in_name_order(tmp_path: Path) -> None:
    for name in ("b.txt", "a.txt", ".hidden", "c.part"):
        (tmp_path / name).write_text("x")
    (tmp_path / "sub").mkdir()
    assert [p.name for p in collect([tmp_path])] == ["a.txt", "b.txt"]


def test_the_inbox_moves_files_to_processed_and_failed(
    store: Store, seed_files: list[Path], tmp_path: Path, now: datetime
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(seed_files[0], inbox / "good.txt")
    (inbox / "bad.txt").write_text("Lonely Title\n")
    (inbox / ".incoming.txt").write_text("still being written")
    report = ingest_inbox(store, inbox, now, settle_seconds=0)
    assert [(Path(f.path).name, f.status) for f in report.files] == [
        ("bad.txt", "rejected"),
        ("good.txt", "ingested"),
    ]
    assert sorted(p.name for p in inbox.iterdir()) == [".incoming.txt", "failed", "processed"]
    assert (inbox / "processed" / "good.txt").read_bytes() == seed_files[0].read_bytes()
    assert (inbox / "failed" / "bad.txt").read_text() == "Lonely Title\n"
    error = (inbox / "failed" / "bad.txt.error").read_text()
    assert "bad.txt:1: this title has no abstract" in error


def test_the_inbox_never_overwrites_an_earlier_processed_file(
    store: Store, seed_files: list[Path], tmp_path: Path, now: datetime
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for source in seed_files[:2]:
        shutil.copy(source, inbox / "today.txt")
        ingest_inbox(store, inbox, now, settle_seconds=0)
    assert sorted(p.name for p in (inbox / "processed").iterdir()) == ["today.1.txt", "today.txt"]


def test_a_dump_left_in_the_inbox_after_a_crash_is_recognised(
    store: Store, seed_files: list[Path], tmp_path: Path, now: datetime
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(seed_files[0], inbox / "a.txt")
    ingest_files(store, [inbox / "a.txt"], now)  # committed, but "crashed" before the move
    [result] = ingest_inbox(store, inbox, now, settle_seconds=0).files
    assert result.status == "duplicate"
    assert (inbox / "processed" / "a.txt").exists()
    assert store.count("sightings") == 54


def test_an_error_after_many_batches_still_stores_nothing(
    store: Store, tmp_path: Path, now: datetime
) -> None:
    big = tmp_path / "big.txt"
    lines = [f"Paper number {i}\n{ABSTRACT}\n" for i in range(2500)]
    big.write_text("Subscribe\n" + "".join(lines) + "A title at the end with no abstract\n")
    before = table_counts(store)
    [result] = ingest_files(store, [big], now).files
    assert result.status == "rejected"
    assert f"{big}:5002: this title has no abstract" in (result.error or "")
    assert table_counts(store) == before


def test_a_dump_bigger_than_one_batch_is_stored_whole(
    store: Store, tmp_path: Path, now: datetime
) -> None:
    big = tmp_path / "big.txt"
    big.write_text("".join(f"Paper number {i}\n{ABSTRACT}\n" for i in range(2500)))
    [result] = ingest_files(store, [big], now).files
    assert (result.status, result.entries, result.new) == ("ingested", 2500, 2500)
    assert table_counts(store) == {"papers": 2500, "dumps": 1, "sightings": 2500, "fts": 2500}
    assert len(store.papers(fts='"parser"')) == 2500
