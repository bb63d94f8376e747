"""The archive: every raw response a source gave, kept as fetched, to replay or to attach.

One file per response that changed, under ``[fetch] archive_dir``, named
``<source>.<listing date>.<fetched at>.<kind>.<ext>`` (e.g.
``hf.2026-12-02.20261202T071500000000Z.daily-papers.json``), so that ``digest ingest
FILE`` knows how to read it again and which source and listing it was, and a
bug report can attach it as it came.  Files older than ``[fetch] archive_days``
are pruned with the rest of retention.
"""

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from digest.files import write_atomic

EXTENSIONS = {"daily-papers": "json", "arxiv": "xml", "dump": "txt"}
_NAME = re.compile(
    r"(?P<source>[a-z0-9][a-z0-9-]{0,39})\.(?P<listing>\d{4}-\d{2}-\d{2})\."
    r"(?P<stamp>\d{8}T\d{12}Z)\.(?P<kind>daily-papers|arxiv|dump)\.(?:json|xml|txt)"
)
_STAMP = "%Y%m%dT%H%M%S%fZ"  # to the microsecond: two fetches never share a name


@dataclass(frozen=True, slots=True)
class Archived:
    """What an archive file's name says of the response it holds."""

    source: str
    listing_date: str
    fetched_at: datetime
    kind: str


def name_for(source: str, kind: str, listing_date: str, fetched_at: datetime) -> str:
    stamp = fetched_at.astimezone(UTC).strftime(_STAMP)
    return f"{source}.{listing_date}.{stamp}.{kind}.{EXTENSIONS[kind]}"


def parse_name(name: str) -> Archived | None:
    """The response an archive file holds, or None for any other file (a text dump)."""
    found = _NAME.fullmatch(name)
    if found is None:
        return None
    try:
        date.fromisoformat(found["listing"])
        fetched_at = datetime.strptime(found["stamp"], _STAMP).replace(tzinfo=UTC)
    except ValueError:
        return None
    return Archived(found["source"], found["listing"], fetched_at, found["kind"])


def keep(folder: Path, name: str, body: bytes) -> Path:
    """Write the response whole (never half a file, even on a crash) and return its path."""
    path = folder / name
    write_atomic(path, body)
    return path


def prune(
    folder: Path, now: datetime, keep_days: int, *, dry_run: bool = False
) -> list[tuple[Path, int]]:
    """The archive files fetched more than ``keep_days`` ago, with their sizes, deleted
    unless ``dry_run``.

    Only files named as this module names them are touched: whatever else an
    operator keeps in the folder stays.
    """
    if not folder.is_dir():
        return []
    cutoff = now - timedelta(days=keep_days)
    old = []
    for path in sorted(folder.iterdir()):
        found = parse_name(path.name)
        if found is not None and found.fetched_at < cutoff and path.is_file():
            old.append((path, path.stat().st_size))
            if not dry_run:
                path.unlink(missing_ok=True)
    return old
