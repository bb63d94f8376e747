"""Ingest: dump files and folders into the store, one transaction per file.

A file is hashed first (same content, same dump: recognised and skipped), then
streamed line by line through the parser into the store; any error rolls the
whole file back and is recorded as a rejection.  The inbox mode moves each
file to ``processed/`` or, when rejected, to ``failed/`` with the error in a
``.error`` file beside it, after the database has committed, so a crash
between the two leaves a file that the next run recognises as a duplicate.
"""

import hashlib
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from digest.dumps import MAX_LINE_BYTES, DumpParser
from digest.errors import DigestError, UsageError
from digest.models import Entry, FileResult, IngestReport
from digest.store import Store

Progress = Callable[[int], None]
PROCESSED = "processed"
FAILED = "failed"
_CHUNK = 1 << 20
BATCH = 900


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
    """Files waiting in the inbox; dot-files and ``*.part``/``*.tmp`` are still being written."""
    inbox.mkdir(parents=True, exist_ok=True)
    return sorted(p for p in inbox.iterdir() if _is_dump(p))


def _is_dump(path: Path) -> bool:
    return (
        path.is_file()
        and not path.name.startswith(".")
        and path.suffix not in {".part", ".tmp", ".error"}
    )


def ingest_files(
    store: Store, files: list[Path], now: datetime, progress: Progress | None = None
) -> IngestReport:
    """Ingest each file on its own; a rejected one does not stop the others."""
    report = IngestReport()
    for path in files:
        report.files.append(ingest_file(store, path, now, progress))
    return report


def ingest_inbox(
    store: Store, inbox: Path, now: datetime, progress: Progress | None = None
) -> IngestReport:
    """Ingest the inbox, then move each file to processed/ or failed/."""
    report = ingest_files(store, inbox_files(inbox), now, progress)
    for result in report.files:
        result.moved_to = str(_file_away(Path(result.path), inbox, result))
    return report


def ingest_file(
    store: Store, path: Path, now: datetime, progress: Progress | None = None
) -> FileResult:
    """Store one dump whole, or record why not."""
    try:
        sha256 = file_hash(path)
    except OSError as err:
        return FileResult(str(path), "rejected", error=f"{path}: cannot read: {err.strerror}")
    known = store.dump_by_hash(sha256)
    if known is not None:
        _advance(progress, path)
        entries = int(known["entries"])
        return FileResult(str(path), "duplicate", entries, 0, entries, dump_id=int(known["id"]))
    try:
        result = _store_dump(store, path, sha256, now, progress)
    except DigestError as err:
        store.add_rejection(path.name, sha256, str(err), now)
        return FileResult(str(path), "rejected", error=str(err))
    except OSError as err:
        return FileResult(str(path), "rejected", error=f"{path}: cannot read: {err.strerror}")
    return result


def _store_dump(
    store: Store, path: Path, sha256: str, now: datetime, progress: Progress | None
) -> FileResult:
    parser = DumpParser(str(path))
    with store.write(), path.open("rb") as handle:
        dump_id = store.add_dump(path.name, sha256, now)
        entries = parser.parse(_lines(handle, progress))
        counts = store.add_entries(dump_id, _batches(entries), now)
        store.finish_dump(dump_id, parser.listing_date, counts)
    return FileResult(
        str(path), "ingested", counts.entries, counts.new, counts.seen, dump_id=dump_id
    )


def _batches(entries: Iterator[Entry]) -> Iterator[list[Entry]]:
    batch: list[Entry] = []
    for entry in entries:
        batch.append(entry)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _lines(handle: BinaryIO, progress: Progress | None) -> Iterator[bytes]:
    """Lines of at most MAX_LINE_BYTES, so one huge line cannot exhaust memory."""
    while line := handle.readline(MAX_LINE_BYTES):
        if progress is not None:
            progress(len(line))
        yield line


def _advance(progress: Progress | None, path: Path) -> None:
    if progress is not None:
        progress(path.stat().st_size)


def _file_away(path: Path, inbox: Path, result: FileResult) -> Path:
    """Move a handled inbox file aside without ever overwriting an earlier one."""
    folder = inbox / (FAILED if result.status == "rejected" else PROCESSED)
    folder.mkdir(exist_ok=True)
    target = _free_name(folder / path.name)
    path.replace(target)
    if result.status == "rejected":
        target.with_name(target.name + ".error").write_text(f"{result.error}\n", encoding="utf-8")
    return target


def _free_name(target: Path) -> Path:
    candidate, n = target, 1
    while candidate.exists():
        candidate = target.with_name(f"{target.stem}.{n}{target.suffix}")
        n += 1
    return candidate
