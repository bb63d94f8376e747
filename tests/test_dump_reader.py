"""Reading a dump in batches: here for a small file, in a parser process for a big one, alike."""

import hashlib
import os
import signal
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from digest.dump_reader import BATCH, WORKER_MIN_BYTES, WorkerError, read_batches
from digest.dumps import parse
from digest.errors import DumpError
from digest.ingest import ingest_file
from digest.models import Entry
from digest.store import Store

from .test_dumps import ABSTRACT, REJECTED
from .test_ingest import table_counts

HERE = 1 << 40
IN_WORKER = 0
BOTH = pytest.mark.parametrize("worker_min_bytes", [HERE, IN_WORKER], ids=["here", "worker"])
LONG_ABSTRACT = " ".join([ABSTRACT] * 4)


def read_all(path: Path, worker_min_bytes: int) -> tuple[list[Entry], str | None]:
    with read_batches(path, worker_min_bytes=worker_min_bytes) as batches:
        entries = [entry for batch in batches for entry in batch]
        return entries, batches.listing_date


def write_dump(path: Path, entries: int) -> Path:
    lines = (f"Paper number {i}\n{LONG_ABSTRACT}\n" for i in range(entries))
    path.write_text("Daily Papers\nNov 24\n" + "".join(lines), encoding="utf-8")
    return path


def worker_pids() -> list[int]:
    """Parser processes started by this test process, read from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and b"digest.dump_reader import main" in cmdline:
            found.append(int(stat.parent.name))
    return found


def test_every_seed_reads_the_same_here_and_in_the_parser_process(seed_files: list[Path]) -> None:
    for path in seed_files:
        parsed = parse(path.read_bytes(), str(path))
        expected = (parsed.entries, parsed.listing_date)
        assert read_all(path, HERE) == expected
        assert read_all(path, IN_WORKER) == expected


@BOTH
def test_batches_are_full_but_the_last_and_progress_adds_up_to_the_file_size(
    tmp_path: Path, worker_min_bytes: int
) -> None:
    path = write_dump(tmp_path / "big.txt", 2 * BATCH + 100)
    progress: list[int] = []
    with read_batches(path, progress.append, worker_min_bytes=worker_min_bytes) as batches:
        sizes = [len(batch) for batch in batches]
        assert batches.listing_date == "Nov 24"
    assert sizes == [BATCH, BATCH, 100]
    assert sum(progress) == path.stat().st_size


@pytest.mark.parametrize(("content", "line", "reason"), REJECTED.values(), ids=REJECTED.keys())
def test_a_bad_dump_gets_the_same_error_from_the_parser_process(
    tmp_path: Path, content: str | bytes, line: int, reason: str
) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(DumpError) as here:
        read_all(path, HERE)
    with pytest.raises(DumpError) as there:
        read_all(path, IN_WORKER)
    assert str(there.value) == str(here.value)
    assert (there.value.line, there.value.source) == (line, str(path))
    assert reason in str(there.value)


@BOTH
def test_an_unreadable_file_is_an_os_error(tmp_path: Path, worker_min_bytes: int) -> None:
    folder = tmp_path / "a-folder.txt"
    folder.mkdir()
    with pytest.raises(IsADirectoryError):
        read_all(folder, worker_min_bytes)


def test_the_parser_process_is_gone_when_reading_stops_early(tmp_path: Path) -> None:
    path = write_dump(tmp_path / "big.txt", 3 * BATCH)
    with read_batches(path, worker_min_bytes=IN_WORKER) as batches:
        next(iter(batches))
        assert len(worker_pids()) == 1
    assert worker_pids() == []


def test_a_dump_big_enough_for_the_parser_process_is_stored_whole(
    store: Store, tmp_path: Path, now: datetime
) -> None:
    path = write_dump(tmp_path / "big.txt", 5_000)
    assert path.stat().st_size >= WORKER_MIN_BYTES
    result = ingest_file(store, path, now)
    assert (result.status, result.entries, result.new) == ("ingested", 5_000, 5_000)
    assert table_counts(store) == {"papers": 5_000, "dumps": 1, "sightings": 5_000, "fts": 5_000}
    dump = store.dump_by_hash(hashlib.sha256(path.read_bytes()).hexdigest())
    assert dump is not None
    assert (dump["id"], dump["listing_date"]) == (result.dump_id, "Nov 24")


def kill_the_worker_once(signum: int = signal.SIGKILL) -> tuple[list[int], Callable[[int], None]]:
    """A progress callback that sends ``signum`` to the parser process at the first batch."""
    signalled: list[int] = []

    def progress(_bytes: int) -> None:
        if not signalled:
            signalled.extend(worker_pids())
            for pid in signalled:
                os.kill(pid, signum)

    return signalled, progress


def test_a_killed_parser_process_is_a_worker_error_naming_the_file(tmp_path: Path) -> None:
    path = write_dump(tmp_path / "big.txt", 5_000)
    killed, progress = kill_the_worker_once()
    with (
        pytest.raises(WorkerError) as caught,
        read_batches(path, progress, worker_min_bytes=IN_WORKER) as batches,
    ):
        for _batch in batches:
            pass
    assert len(killed) == 1
    assert f"{path}: the parser process stopped (exit status -9: no message)" in str(caught.value)
    assert worker_pids() == []


def test_a_parser_process_killed_mid_ingest_leaves_the_file_parsed_here_and_stored_once(
    store: Store, tmp_path: Path, now: datetime, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_dump(tmp_path / "big.txt", 5_000)
    killed, progress = kill_the_worker_once()
    result = ingest_file(store, path, now, progress)
    assert len(killed) == 1
    assert (result.status, result.entries, result.new) == ("ingested", 5_000, 5_000)
    assert table_counts(store) == {"papers": 5_000, "dumps": 1, "sightings": 5_000, "fts": 5_000}
    assert "the parser process stopped (exit status -9" in caplog.text
    assert "parsing the file in this process instead" in caplog.text


def test_a_parser_process_that_cannot_start_leaves_the_file_parsed_here(
    seed_files: list[Path], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = seed_files[0]
    expected = read_all(path, HERE)
    monkeypatch.setattr(sys, "executable", "/nonexistent/python3")
    assert read_all(path, IN_WORKER) == expected
    assert "cannot start the parser process" in caplog.text


def test_a_parser_process_that_fails_at_start_says_why(
    tmp_path: Path, seed_files: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "broken-python"
    broken.write_text("#!/bin/sh\necho 'python: cannot import encodings' >&2\nexit 3\n")
    broken.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(broken))
    with pytest.raises(WorkerError) as caught:
        read_all(seed_files[0], IN_WORKER)
    assert "(exit status 3: python: cannot import encodings)" in str(caught.value)


def test_the_parser_process_ignores_the_environment_and_what_it_prints(
    tmp_path: Path, seed_files: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its frames have their own pipe: a sitecustomize that prints, unbuffered output or a
    verbose interpreter in the environment cannot garble them or fill a pipe."""
    noisy = tmp_path / "site"
    noisy.mkdir()
    (noisy / "sitecustomize.py").write_text(
        "import sys\nprint('hello')\nsys.stderr.write('x' * 200_000)\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(noisy))
    monkeypatch.setenv("PYTHONUNBUFFERED", "1")
    monkeypatch.setenv("PYTHONVERBOSE", "2")
    path = seed_files[1]
    assert read_all(path, IN_WORKER) == read_all(path, HERE)


def test_sigterm_to_the_parser_process_lets_the_ingest_in_hand_finish(tmp_path: Path) -> None:
    """systemd sends SIGTERM to every process of the service; the service finishes its work."""
    path = write_dump(tmp_path / "big.txt", 5_000)
    signalled, progress = kill_the_worker_once(signal.SIGTERM)
    with read_batches(path, progress, worker_min_bytes=IN_WORKER) as batches:
        entries = sum(len(batch) for batch in batches)
    assert len(signalled) == 1
    assert entries == 5_000
