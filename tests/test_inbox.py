"""The inbox takes only finished files, never follows a link, and survives odd names and full disks.

The writer tests run a real process that writes part of a seed dump, waits for
a line from the test, then writes the rest: the inbox sees a file truly caught
mid-write, with no sleeps (the two sides wait on each other through pipes).
"""

import contextlib
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from digest.files import Seen
from digest.ingest import InboxWatch, ingest_inbox, settled, wait_until_settled
from digest.store import Store

from .conftest import SEED_FILES, RunCli

SEED = SEED_FILES[1]  # packed: two header lines, then title and abstract lines (the first
SEED_ENTRIES = 215  # title glued to "Subscribe")
HALF = 2 + 2 * 20  # lines: the header and 20 whole entries, a valid dump on its own
AN_HOUR_AGO = time.time() - 3600

WRITER = """\
import sys
target, source, lines = sys.argv[1], sys.argv[2], int(sys.argv[3])
data = open(source, "rb").read().splitlines(keepends=True)
with open(target, "wb", buffering=0) as out:
    out.write(b"".join(data[:lines]))
    print("half", flush=True)
    sys.stdin.readline()
    out.write(b"".join(data[lines:]))
print("done", flush=True)
"""


class Writer:
    """A process writing ``SEED`` into ``target``: half at once, the rest when told."""

    def __init__(self, target: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(target), str(SEED), str(HALF)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        assert self.process.stdin is not None
        self.stdin, self.stdout = self.process.stdin, self.process.stdout
        assert self.stdout.readline() == "half\n"

    def finish(self) -> None:
        self.stdin.write("go\n")
        self.stdin.flush()
        assert self.stdout.readline() == "done\n"
        self.stdin.close()
        self.stdout.close()
        assert self.process.wait(timeout=30) == 0


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    folder = tmp_path / "inbox"
    folder.mkdir()
    return folder


def papers(store: Store) -> int:
    return store.count("papers")


def names(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def drop_settled(source: Path, target: Path) -> None:
    """A complete dump, last written an hour ago."""
    shutil.copy(source, target)
    os.utime(target, (AN_HOUR_AGO, AN_HOUR_AGO))


# still being written ---------------------------------------------------------------------


def test_a_dump_caught_mid_write_waits_until_it_stops_changing(store: Store, inbox: Path) -> None:
    """Old code stored the 20 entries written so far and moved the file away."""
    writer = Writer(inbox / "today.txt")
    watch = InboxWatch()

    def poll() -> list[str]:
        report = ingest_inbox(store, inbox, datetime.now(UTC), settle_seconds=3600, watch=watch)
        return [f"{f.status} {f.entries}" for f in report.files] or report.waiting

    assert poll() == [str(inbox / "today.txt")]  # young, and never seen before
    assert (papers(store), names(inbox)) == (0, ["today.txt"])
    writer.finish()
    assert poll() == [str(inbox / "today.txt")]  # changed since the previous poll
    assert papers(store) == 0
    assert poll() == [f"ingested {SEED_ENTRIES}"]  # unchanged since the previous poll
    assert (inbox / "processed" / "today.txt").read_bytes() == SEED.read_bytes()


def test_a_dump_that_grows_while_being_read_is_put_back_with_nothing_stored(
    store: Store, inbox: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Old code stored the 20 entries it had read and moved the file to processed/."""
    writer = Writer(inbox / "today.txt")
    # settle_seconds = 0 takes the file at once; the writer finishes during the read
    report = ingest_inbox(
        store, inbox, datetime.now(UTC), lambda _: writer.finish(), settle_seconds=0
    )
    assert (report.files, report.waiting) == ([], [str(inbox / "today.txt")])
    assert (papers(store), store.count("dumps"), names(inbox)) == (0, 0, ["today.txt"])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "today.txt: changed while being read" in warnings[0]
    [result] = ingest_inbox(store, inbox, datetime.now(UTC), settle_seconds=0).files
    assert (result.status, result.entries) == ("ingested", SEED_ENTRIES)


def seen(size: int = 10, mtime: float = 1000.0, ino: int = 7) -> Seen:
    return Seen(1, ino, size, int(mtime * 1e9), 0o100644)


AT = datetime.fromtimestamp(1010.0, UTC)  # ten seconds after seen()'s mtime


@pytest.mark.parametrize(
    ("now", "previous", "settle", "taken"),
    [
        (AT, None, 10, True),  # ten seconds old
        (AT, None, 11, False),  # too young, never seen before
        (AT, seen(), 3600, True),  # unchanged since the previous poll
        (AT, seen(size=9), 3600, False),  # grew since the previous poll
        (AT, seen(ino=8), 3600, False),  # replaced by another file of the same size
        (AT - timedelta(hours=1), None, 10, False),  # written "in the future": not by age
        (AT, None, 0, True),  # the rule turned off
    ],
)
def test_a_file_is_taken_once_unchanged_since_the_previous_poll_or_old_enough(
    now: datetime, previous: Seen | None, settle: int, taken: bool
) -> None:
    assert settled(seen(), previous, now, settle) is taken


class FakeClock:
    def __init__(self, start: float) -> None:
        self.now = start
        self.waits: list[float] = []

    def __call__(self) -> datetime:
        return datetime.fromtimestamp(self.now, UTC)

    def wait(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def test_a_one_shot_run_waits_for_a_file_written_just_before_at_most_settle_seconds(
    inbox: Path,
) -> None:
    shutil.copy(SEED, inbox / "today.txt")
    written = (inbox / "today.txt").stat().st_mtime
    clock = FakeClock(written + 3)
    wait_until_settled(inbox, 10, clock, clock.wait)
    assert clock.now == pytest.approx(written + 10, abs=0.1)
    assert len(clock.waits) == 1
    clock.waits.clear()
    wait_until_settled(inbox, 10, clock, clock.wait)  # settled now: no wait
    assert clock.waits == []


def test_a_one_shot_run_leaves_a_file_that_keeps_changing_after_settle_seconds(
    inbox: Path, store: Store
) -> None:
    target = inbox / "today.txt"
    shutil.copy(SEED, target)
    clock = FakeClock(target.stat().st_mtime)

    def keep_writing(seconds: float) -> None:
        clock.wait(min(seconds, 1.0))
        os.utime(target, (clock.now, clock.now))

    wait_until_settled(inbox, 10, clock, keep_writing)
    started = target.stat().st_mtime - sum(clock.waits)
    assert clock.now == pytest.approx(started + 10, abs=1.1)  # the deadline, not forever
    report = ingest_inbox(store, inbox, clock(), settle_seconds=10)
    assert (report.files, report.waiting) == ([], [str(target)])


# odd names, unreadable files ---------------------------------------------------------


def test_a_file_name_that_is_not_utf8_goes_to_failed_and_the_rest_proceeds(
    store: Store, inbox: Path, now: datetime
) -> None:
    """Old code raised UnicodeEncodeError, leaving a.txt stored but unmoved and z.txt unread."""
    bad = os.fsencode(inbox) + b"/caf\xe9\n.txt"  # Latin-1 é and a newline
    Path(os.fsdecode(bad)).write_bytes(SEED_FILES[0].read_bytes())
    shutil.copy(SEED_FILES[2], inbox / "a.txt")
    shutil.copy(SEED_FILES[3], inbox / "z.txt")
    report = ingest_inbox(store, inbox, now, settle_seconds=0)
    assert sorted(f.status for f in report.files) == ["ingested", "ingested", "rejected"]
    assert names(inbox) == ["failed", "processed"]
    assert names(inbox / "processed") == ["a.txt", "z.txt"]
    assert names(inbox / "failed") == ["caf\\xe9\\x0a.txt", "caf\\xe9\\x0a.txt.error"]
    error = (inbox / "failed" / "caf\\xe9\\x0a.txt.error").read_text(encoding="utf-8")
    assert "the file name is not UTF-8" in error
    assert error.count("\n") == 1
    assert (inbox / "failed" / "caf\\xe9\\x0a.txt").read_bytes() == SEED_FILES[0].read_bytes()


@pytest.mark.parametrize(
    "name", [b"b" * 250 + b".txt", b"\xff" * 120 + b".txt"], ids=["250-bytes", "120-bad-bytes"]
)
def test_a_name_too_long_to_file_with_error_goes_to_failed_shortened(
    store: Store, inbox: Path, now: datetime, name: bytes
) -> None:
    """A legal name that grows past 255 bytes with ``\xff`` escapes or ``.error`` once
    raised ENAMETOOLONG and stopped the inbox at every poll."""
    Path(os.fsdecode(os.fsencode(inbox) + b"/" + name)).write_bytes(b"not a dump\n")
    shutil.copy(SEED_FILES[3], inbox / "z.txt")
    report = ingest_inbox(store, inbox, now, settle_seconds=0)
    assert sorted(f.status for f in report.files) == ["ingested", "rejected"]
    assert names(inbox / "processed") == ["z.txt"]
    filed = names(inbox / "failed")
    assert len(filed) == 2
    assert all(len(os.fsencode(n)) <= 255 for n in filed)
    assert filed[1] == filed[0] + ".error"


def test_run_once_with_a_non_utf8_name_in_the_inbox_still_delivers_and_builds_feeds(
    run_cli: RunCli, config_file: Path
) -> None:
    """Old code died with a traceback before delivery and feeds."""
    inbox = config_file.parent / "inbox"
    inbox.mkdir()
    bad = Path(os.fsdecode(os.fsencode(inbox) + b"/\xff.txt"))
    for target in (bad, inbox / "good.txt"):
        drop_settled(SEED_FILES[0], target)
    result = run_cli("run", "--once")
    assert result.exit_code == 1  # a rejected file
    assert (config_file.parent / "feeds" / "all.atom").exists()
    assert names(inbox / "failed") == ["\\xff.txt", "\\xff.txt.error"]
    assert names(inbox / "processed") == ["good.txt"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a 0000 file all the same")
def test_an_unreadable_file_goes_to_failed_with_a_one_line_reason(
    store: Store, inbox: Path, now: datetime
) -> None:
    shutil.copy(SEED_FILES[0], inbox / "locked.txt")
    (inbox / "locked.txt").chmod(0)
    shutil.copy(SEED_FILES[1], inbox / "open.txt")
    report = ingest_inbox(store, inbox, now, settle_seconds=0)
    assert [f.status for f in report.files] == ["rejected", "ingested"]
    error = (inbox / "failed" / "locked.txt.error").read_text()
    assert "cannot read: Permission denied: make it readable" in error


# links -----------------------------------------------------------------------------


def test_a_symlink_in_the_inbox_is_not_followed_but_moved_to_failed(
    store: Store, inbox: Path, tmp_path: Path, now: datetime
) -> None:
    """Old code ingested the link's target and moved the link to processed/."""
    outside = tmp_path / "elsewhere.txt"
    shutil.copy(SEED_FILES[0], outside)
    (inbox / "link.txt").symlink_to(outside)
    [result] = ingest_inbox(store, inbox, now, settle_seconds=3600).files
    assert result.status == "rejected"
    assert papers(store) == 0
    assert (inbox / "failed" / "link.txt").is_symlink()
    assert outside.read_bytes() == SEED_FILES[0].read_bytes()
    assert "symbolic link" in (inbox / "failed" / "link.txt.error").read_text()


def test_a_symlink_planted_at_the_error_file_leaves_its_target_untouched(
    store: Store, inbox: Path, tmp_path: Path, now: datetime
) -> None:
    """Old code wrote the error through the link, over the victim."""
    victim = tmp_path / "digest.db"
    (inbox / "failed").mkdir()
    (inbox / "failed" / "bad.txt.error").symlink_to(victim)
    (inbox / "bad.txt").write_text("Lonely Title\n")
    [result] = ingest_inbox(store, inbox, now, settle_seconds=0).files
    assert result.status == "rejected"
    assert (tmp_path / "digest.db").read_bytes()[:16] == b"SQLite format 3\0"  # the store's file
    assert names(inbox / "failed") == ["bad.1.txt", "bad.1.txt.error", "bad.txt.error"]
    assert "this title has no abstract" in (inbox / "failed" / "bad.1.txt.error").read_text()


def test_a_processed_folder_that_is_a_symlink_stops_the_inbox_with_one_line(
    store: Store, inbox: Path, tmp_path: Path, now: datetime
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (inbox / "processed").symlink_to(elsewhere)
    shutil.copy(SEED_FILES[0], inbox / "a.txt")
    report = ingest_inbox(store, inbox, now, settle_seconds=0)
    assert report.error is not None
    assert "processed is a symbolic link or not a folder" in report.error
    assert list(elsewhere.iterdir()) == []
    assert (inbox / "a.txt").exists()


# a full disk -----------------------------------------------------------------------


def test_a_full_database_stops_the_ingest_with_one_line_and_leaves_the_file(
    store: Store, inbox: Path, now: datetime
) -> None:
    """Old code raised sqlite3.OperationalError: database or disk is full."""
    # a full disk, simulated on the raw connection: the database may grow by two pages
    pages = store.db.execute("PRAGMA page_count").fetchone()[0]
    store.db.execute(f"PRAGMA max_page_count = {pages + 2}")
    shutil.copy(SEED_FILES[1], inbox / "big.txt")
    report = ingest_inbox(store, inbox, now, settle_seconds=0)
    assert report.files == []
    assert report.error is not None
    assert report.error.startswith(f"{store.path}: the disk is full (")
    assert " free" in report.error
    assert "\n" not in report.error
    assert names(inbox) == ["big.txt"]
    assert papers(store) == 0


@contextlib.contextmanager
def tiny_tmpfs(where: Path, kib: int) -> Iterator[Path]:
    """A ``kib`` KiB tmpfs at ``where``; the test is skipped where mounting is not allowed."""
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def fill(folder: Path) -> None:
    """Write until the file system says ENOSPC."""
    with contextlib.suppress(OSError), (folder / "filler").open("wb") as out:
        while True:
            out.write(b"\0" * 4096)
            out.flush()


def test_a_full_disk_under_the_failed_folder_is_one_line_and_the_file_stays(
    store: Store, tmp_path: Path, now: datetime
) -> None:
    with tiny_tmpfs(tmp_path / "disk", 64) as disk:
        inbox = disk / "inbox"
        inbox.mkdir()
        (inbox / "bad.txt").write_text("Lonely Title\n")
        fill(disk)
        report = ingest_inbox(store, inbox, now, settle_seconds=0)
        assert report.error == (
            f"{inbox / 'failed'}: the disk is full (0 bytes free) "
            "(free some space there, then retry)"
        )
        assert (inbox / "bad.txt").exists()
        assert not (inbox / "failed" / "bad.txt.error").exists()


def test_a_full_disk_under_the_database_is_one_line_from_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with tiny_tmpfs(tmp_path / "disk", 1024) as disk:
        database = disk / "digest.db"
        Store(database).close()
        config = tmp_path / "config.toml"
        config.write_text(f'[storage]\ndatabase = "{database}"\n', encoding="utf-8")
        fill(disk)
        digest = Path(sys.executable).with_name("digest")
        result = subprocess.run(
            [str(digest), "--config", str(config), "ingest", str(SEED_FILES[1])],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 1
        assert "Traceback" not in result.stderr
        assert f"{database}: the disk is full (" in result.stdout + result.stderr
