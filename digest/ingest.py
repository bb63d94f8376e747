"""Ingest: dump files and folders into the store, one transaction per file.

A file is hashed first (same content, same dump: recognised and skipped), then
streamed in batches from the parser into the store (``dump_reader``: a big
file is parsed by a worker process, in parallel with the store's writes); any
error in the file rolls the whole of it back and is recorded as a rejection.
The inbox mode moves each file to ``processed/`` or, when rejected, to
``failed/`` with the error in a ``.error`` file beside it, after the database
has committed, so a crash between the two leaves a file that the next run
recognises as a duplicate.
"""

import hashlib
import logging
from datetime import datetime
from pathlib import Path
from typing import Any

from digest.dump_reader import (
    NO_WORKER,
    WORKER_MIN_BYTES,
    Batches,
    Progress,
    WorkerError,
    read_batches,
)
from digest.errors import DigestError, UsageError
from digest.models import FileResult, IngestReport
from digest.store import Store

log = logging.getLogger(__name__)
PROCESSED = "processed"
FAILED = "failed"
_CHUNK = 1 << 20


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
    """Store one dump whole, or record why not.

    Should a big file's parser process die (killed, out of memory), the
    transaction is rolled back and the file parsed again in this process.
    """
    try:
        return _ingest_file(store, path, now, progress, WORKER_MIN_BYTES)
    except WorkerError as err:
        log.warning("%s; parsing the file in this process instead", err)
        return _ingest_file(store, path, now, progress, NO_WORKER)


def _ingest_file(
    store: Store, path: Path, now: datetime, progress: Progress | None, worker_min_bytes: int
) -> FileResult:
    """The batches are opened before the file is hashed, so that a big file's
    parser process starts up while this one reads the file for its hash."""
    sha256 = ""
    try:
        with read_batches(path, progress, worker_min_bytes=worker_min_bytes) as batches:
            sha256 = file_hash(path)
            known = store.dump_by_hash(sha256)
            if known is not None:
                return _duplicate(path, known, progress)
            return _store_dump(store, path, sha256, batches, now)
    except WorkerError:
        raise
    except DigestError as err:
        store.add_rejection(path.name, sha256, str(err), now)
        return FileResult(str(path), "rejected", error=str(err))
    except OSError as err:
        return FileResult(str(path), "rejected", error=f"{path}: cannot read: {err.strerror}")


def _duplicate(path: Path, known: dict[str, Any], progress: Progress | None) -> FileResult:
    if progress is not None:
        progress(path.stat().st_size)
    entries = int(known["entries"])
    return FileResult(str(path), "duplicate", entries, 0, entries, dump_id=int(known["id"]))


def _store_dump(
    store: Store, path: Path, sha256: str, batches: Batches, now: datetime
) -> FileResult:
    with store.write():
        dump_id = store.add_dump(path.name, sha256, now)
        counts = store.add_entries(dump_id, batches, now)
        store.finish_dump(dump_id, batches.listing_date, counts)
    return FileResult(
        str(path), "ingested", counts.entries, counts.new, counts.seen, dump_id=dump_id
    )


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


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
