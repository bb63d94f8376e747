"""Ingest: dump files and folders into the store, one transaction per file.

A file is hashed first (same content, same dump: recognised and skipped), then
streamed in batches from the parser into the store (``dump_reader``: a big
file is parsed by a worker process, in parallel with the store's writes); any
error in the file rolls the whole of it back and is recorded as a rejection.
The inbox mode moves each file to ``processed/`` or, when rejected, to
``failed/`` with the error in a ``.error`` file beside it, after the database
has committed, so a crash between the two leaves a file that the next run
recognises as a duplicate.

The inbox is written by others, so it is read with care (``digest.files``):
a file is taken only once settled (``settled``), is opened without following
a link and must not change while it is read (else ``FileChanged``: left in
place, nothing stored); a link or a name that is not UTF-8 goes to failed/
unread; a full disk stops the ingest with one line (``DiskFull``).
"""

import contextlib
import errno
import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from digest.archive import Archived, parse_name
from digest.dump_reader import (
    NO_WORKER,
    WORKER_MIN_BYTES,
    Batches,
    Progress,
    WorkerError,
    read_batches,
)
from digest.errors import DigestError, DiskFull, FileChanged, UnsafeInbox, UsageError
from digest.files import (
    Seen,
    create_exclusive,
    disk_full,
    filed_name,
    is_disk_full,
    is_utf8,
    open_folder,
    open_nofollow,
    printable_name,
    taken,
)
from digest.models import FileResult, IngestReport
from digest.store import Store

log = logging.getLogger(__name__)
PROCESSED = "processed"
FAILED = "failed"
_CHUNK = 1 << 20
MAX_RESPONSE_BYTES = 1024 << 20  # the most [fetch] max_megabytes allows


def collect(paths: list[Path]) -> list[Path]:
    """The files named, and the visible files directly inside the folders named, sorted."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if _is_dump(p)))
        elif path.is_file():
            files.append(path)
        else:
            raise UsageError(f"{path}: no such file or folder")
    return files


def inbox_files(inbox: Path) -> list[Path]:
    """Files waiting in the inbox (see ``inbox_entries``), whether settled or not."""
    return [path for path, _ in inbox_entries(inbox)]


def inbox_entries(inbox: Path) -> list[tuple[Path, Seen]]:
    """Regular files and symlinks directly in the inbox, each with its ``lstat`` (links are
    listed so they can be refused, never followed); dot-files and ``*.part``/``*.tmp`` are
    still being written.  Sorted by name."""
    inbox.mkdir(parents=True, exist_ok=True)
    found: list[tuple[Path, Seen]] = []
    with os.scandir(inbox) as entries:
        for entry in entries:
            if _hidden(entry.name):
                continue
            try:
                seen = Seen.of(entry.stat(follow_symlinks=False))
            except FileNotFoundError:
                continue  # taken away meanwhile
            if seen.is_file or seen.is_link:
                found.append((Path(entry.path), seen))
    return sorted(found)


def _is_dump(path: Path) -> bool:
    return path.is_file() and not _hidden(path.name)


def _hidden(name: str) -> bool:
    return name.startswith(".") or Path(name).suffix in {".part", ".tmp", ".error"}


class InboxWatch:
    """What each inbox file looked like at the previous poll.

    The daemon keeps one for its life, in memory: a file unchanged from one poll
    to the next is taken.  A one-shot run (``digest ingest --inbox``, ``run
    --once``) has no previous poll and relies on the settle age alone.
    """

    def __init__(self) -> None:
        self._previous: dict[Path, Seen] = {}

    def remember(self, entries: list[tuple[Path, Seen]]) -> dict[Path, Seen]:
        """Keep this poll's view for the next one; return the previous poll's."""
        previous, self._previous = self._previous, dict(entries)
        return previous


def settled(seen: Seen, previous: Seen | None, now: datetime, settle_seconds: float) -> bool:
    """Whether a file has stopped being written: the same (inode, size, mtime) as at the
    previous poll, or last written ``settle_seconds`` ago or more.  A symlink is never
    read, so it need not settle; ``settle_seconds = 0`` turns the rule off."""
    if settle_seconds <= 0 or seen.is_link or seen == previous:
        return True
    return seen.age(now.timestamp()) >= settle_seconds


def wait_until_settled(
    inbox: Path,
    settle_seconds: float,
    clock: Callable[[], datetime],
    wait: Callable[[float], object],
) -> None:
    """For a one-shot run: wait (at most ``settle_seconds``) until every inbox file is
    ``settle_seconds`` old, so a dump copied in just before is taken rather than left.
    A file that goes on changing is still young at the deadline and is left for later."""
    deadline = clock().timestamp() + settle_seconds
    while True:
        now = clock().timestamp()
        young = [
            settle_seconds - seen.age(now)
            for _, seen in inbox_entries(inbox)
            if not seen.is_link and seen.age(now) < settle_seconds
        ]
        if not young or now >= deadline:
            return
        wait(min(max(young), deadline - now) + 0.01)


def ingest_files(
    store: Store, files: list[Path], now: datetime, progress: Progress | None = None
) -> IngestReport:
    """Ingest each file on its own; a rejected one does not stop the others (a full disk does)."""
    report = IngestReport()
    for path in files:
        try:
            report.files.append(ingest_file(store, path, now, progress))
        except FileChanged as err:
            _still_writing(report, err)
        except DiskFull as err:
            report.error = str(err)
            break
    return report


def ingest_inbox(
    store: Store,
    inbox: Path,
    now: datetime,
    progress: Progress | None = None,
    *,
    settle_seconds: float,
    watch: InboxWatch | None = None,
) -> IngestReport:
    """Take each settled inbox file and move it to processed/ or failed/ at once.

    One file at a time, so an odd one (a link, a name that is not UTF-8, an
    unreadable file) goes to failed/ and never holds up the others.  A file
    still being written stays where it is; a full disk stops the lot, leaving
    the remaining files in the inbox.
    """
    entries = inbox_entries(inbox)
    previous = watch.remember(entries) if watch is not None else {}
    report = IngestReport()
    for path, seen in entries:
        if not settled(seen, previous.get(path), now, settle_seconds):
            report.waiting.append(printable_name(str(path)))
            log.debug("%s: still being written; left for the next poll", report.waiting[-1])
            continue
        try:
            result = _take(store, path, seen, now, progress)
            result.moved_to = str(_file_away(path, inbox, result))
        except FileChanged as err:
            _still_writing(report, err)
            continue
        except (DiskFull, UnsafeInbox) as err:
            report.error = str(err)
            break
        report.files.append(result)
    return report


def _still_writing(report: IngestReport, err: FileChanged) -> None:
    report.waiting.append(err.path)
    log.warning("%s", err)


def _take(
    store: Store, path: Path, seen: Seen, now: datetime, progress: Progress | None
) -> FileResult:
    """An inbox file's outcome; a link or a file name that is not UTF-8 is refused unread."""
    shown = printable_name(str(path))
    if seen.is_link:
        return _refused(
            shown,
            "a symbolic link: links in the inbox are never followed; put the file itself there",
        )
    if not is_utf8(path.name):
        return _refused(
            shown,
            "the file name is not UTF-8 (moved to failed/ under a printable "
            "name); rename it to UTF-8 and drop it again",
        )
    return ingest_file(store, path, now, progress, expected=seen)


def _refused(shown: str, reason: str) -> FileResult:
    log.error("%s: %s", shown, reason)
    return FileResult(shown, "rejected", error=f"{shown}: {reason}")


def ingest_file(
    store: Store,
    path: Path,
    now: datetime,
    progress: Progress | None = None,
    *,
    expected: Seen | None = None,
) -> FileResult:
    """Store one dump whole, or record why not.

    With ``expected`` (an inbox file as listed) the file is read without
    following a link and must still look so; one that changes while read
    raises ``FileChanged`` with nothing stored.  Should a big file's parser
    process die (killed, out of memory), the transaction is rolled back and
    the file parsed again in this process.
    """
    try:
        return _ingest_file(store, path, now, progress, WORKER_MIN_BYTES, expected)
    except WorkerError as err:
        log.warning("%s; parsing the file in this process instead", err)
        return _ingest_file(store, path, now, progress, NO_WORKER, expected)


class _Opened:
    """A dump opened once (without following a link, for the inbox) and what it looked
    like then: ``unchanged()`` raises ``FileChanged`` if it was written to or replaced."""

    def __init__(self, path: Path, expected: Seen | None) -> None:
        self.path = path
        self.shown = printable_name(str(path))
        fd = open_nofollow(path) if expected is not None else os.open(path, os.O_RDONLY)
        self.handle = os.fdopen(fd, "rb")
        self.seen = Seen.of(os.fstat(fd))
        if not self.seen.is_file:
            self.handle.close()
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        if expected is not None and self.seen != expected:
            self.handle.close()
            raise FileChanged(self.shown)

    def unchanged(self) -> None:
        try:
            there = Seen.of(os.lstat(self.path))
        except FileNotFoundError:
            raise FileChanged(self.shown) from None
        if Seen.of(os.fstat(self.handle.fileno())) != self.seen or there != self.seen:
            raise FileChanged(self.shown)

    def sha256(self) -> str:
        digest = hashlib.sha256()
        offset = 0
        while chunk := os.pread(self.handle.fileno(), _CHUNK, offset):
            digest.update(chunk)
            offset += len(chunk)
        return digest.hexdigest()


def _ingest_file(
    store: Store,
    path: Path,
    now: datetime,
    progress: Progress | None,
    worker_min_bytes: int,
    expected: Seen | None,
) -> FileResult:
    """The batches are opened before the file is hashed, so that a big file's
    parser process starts up while this one reads the file for its hash."""
    sha256 = ""
    nofollow = expected is not None
    try:
        opened = _Opened(path, expected)
    except OSError as err:
        return _unreadable(path, err)
    # A response is replayed only when named on purpose (``digest ingest FILE``): a file
    # dropped in the inbox is a dump whatever its name, so no one who can write there
    # can pass their own votes, arXiv ids or links off as a source's.
    archived = parse_name(path.name) if expected is None else None
    with opened.handle:
        if archived is not None:
            return _replay(store, opened, archived, now)
        try:
            with read_batches(
                path, progress, worker_min_bytes=worker_min_bytes, nofollow=nofollow
            ) as batches:
                sha256 = opened.sha256()
                known = store.dump_by_hash(sha256)
                if known is not None:
                    opened.unchanged()
                    return _duplicate(opened, known, progress)
                return _store_dump(store, opened, sha256, batches, now)
        except (WorkerError, FileChanged, DiskFull):
            raise
        except DigestError as err:
            opened.unchanged()  # a dump cut short by its writer is not a bad dump
            store.add_rejection(printable_name(path.name), sha256, str(err), now)
            return FileResult(opened.shown, "rejected", error=str(err))
        except OSError as err:
            if is_disk_full(err):
                raise disk_full(path) from None
            return _unreadable(path, err)


def _unreadable(path: Path, err: OSError) -> FileResult:
    shown = printable_name(str(path))
    reason = err.strerror or str(err)
    if err.errno == errno.ELOOP:
        reason = "a symbolic link: links in the inbox are never followed"
    elif err.errno == errno.EACCES:
        reason = f"{reason}: make it readable by the service (e.g. chmod 0644) and drop it again"
    log.error("%s: cannot read: %s", shown, reason)
    return FileResult(shown, "rejected", error=f"{shown}: cannot read: {reason}")


def _duplicate(opened: _Opened, known: dict[str, Any], progress: Progress | None) -> FileResult:
    if progress is not None:
        progress(opened.seen.size)
    entries = int(known["entries"])
    return FileResult(opened.shown, "duplicate", entries, 0, entries, dump_id=int(known["id"]))


def _store_dump(
    store: Store, opened: _Opened, sha256: str, batches: Batches, now: datetime
) -> FileResult:
    """All of the file or none: it is checked unchanged before the commit."""
    with store.write():
        dump_id = store.add_dump(printable_name(opened.path.name), sha256, now)
        counts = store.add_entries(dump_id, batches, now)
        store.finish_dump(dump_id, batches.listing_date, counts)
        opened.unchanged()
    return FileResult(
        opened.shown, "ingested", counts.entries, counts.new, counts.seen, dump_id=dump_id
    )


def _replay(store: Store, opened: "_Opened", archived: Archived, now: datetime) -> FileResult:
    """An archived response named to ``digest ingest``: read back through the path it
    first took, so a replay of what was stored adds nothing."""
    from digest.responses import Response, ingest_response  # the parsers: only to replay

    body = opened.handle.read(MAX_RESPONSE_BYTES + 1)
    if len(body) > MAX_RESPONSE_BYTES:
        return _refused(opened.shown, f"over {MAX_RESPONSE_BYTES >> 20} MB: not a response")
    opened.unchanged()
    response = Response(
        archived.source, archived.kind, archived.listing_date, body, opened.path.name
    )
    result, _ = ingest_response(store, response, now)
    return replace(result, path=opened.shown)


def _file_away(path: Path, inbox: Path, result: FileResult) -> Path:
    """Move a handled inbox file aside, under a printable name, never overwriting an
    earlier one nor writing through a link planted in processed/ or failed/.

    Names are resolved against a descriptor of the folder itself (``open_folder``),
    so a folder swapped for a link between a check and the move cannot send the
    file (or its ``.error``) anywhere else; the move is a rename and the ``.error``
    file is created new."""
    rejected = result.status == "rejected"
    folder = inbox / (FAILED if rejected else PROCESSED)
    folder_fd = _own_folder(folder)
    try:
        name = _free_name(folder_fd, filed_name(path.name), with_error=rejected)
        if rejected:  # first: on a full disk the file then stays in the inbox, unexplained nowhere
            _write_error(folder_fd, folder / name, f"{result.error}\n")
        os.rename(path, name, dst_dir_fd=folder_fd)
    except OSError as err:
        if is_disk_full(err):
            raise disk_full(folder) from None
        raise
    finally:
        os.close(folder_fd)
    return folder / name


def _own_folder(folder: Path) -> int:
    """processed/ or failed/, made if missing, as a descriptor; refused if it is a link or
    not a folder."""
    with contextlib.suppress(FileExistsError):
        folder.mkdir()
    try:
        return open_folder(folder)
    except NotADirectoryError:
        raise UnsafeInbox(
            f"{folder} is a symbolic link or not a folder: digest never follows one there",
            f"remove it (digest makes {folder.name}/ itself)",
        ) from None


def _write_error(folder_fd: int, target: Path, text: str) -> None:
    error = target.name + ".error"
    try:
        create_exclusive(error, text.encode("utf-8"), dir_fd=folder_fd)
    except FileExistsError:
        log.warning(
            "%s.error exists (made meanwhile?): the error is not written there: %s", target, text
        )


def _free_name(folder_fd: int, name: str, *, with_error: bool = False) -> str:
    """``name``, else ``name.1.ext``, ``name.2.ext``…: the first that (with its ``.error``,
    for failed/) is not taken by anything in the folder, a dangling link included."""
    stem, dot, suffix = name.rpartition(".")
    if not dot or not stem:
        stem, suffix = name, ""
    candidate, n = name, 1
    while taken(candidate, folder_fd) or (with_error and taken(candidate + ".error", folder_fd)):
        candidate = f"{stem}.{n}.{suffix}" if suffix else f"{stem}.{n}"
        n += 1
    return candidate
