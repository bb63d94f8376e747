"""A source's response into the store: the same way in as a dump file, by its content hash.

``fetching`` hands over each response it archived; ``digest ingest FILE`` hands
over an archived one to replay (``ingest``).  Either way the bytes are parsed
by their kind (``sources.parse``), recognised when the same content was stored
already, rejected with a recorded reason when they cannot be read, and stored
in one transaction otherwise.
"""

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from digest import sources
from digest.errors import DigestError
from digest.models import FileResult
from digest.sources import Parsed
from digest.store import Store


@dataclass(frozen=True, slots=True)
class Response:
    """A source's response as fetched (or read back from the archive): its bytes and
    what they are — which source, which kind of body, which listing."""

    source: str
    kind: str
    listing_date: str
    body: bytes
    name: str  # the archive file's name: how the fetch is recorded and shown
    sha256: str = field(init=False)  # hashed once: the archive and ingest both ask

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha256", hashlib.sha256(self.body).hexdigest())


def ingest_response(store: Store, response: Response, now: datetime) -> tuple[FileResult, Parsed]:
    """Store a source's response the way a dump file is stored: the same duplicate
    detection (by content hash), the same entry rules, one transaction, and a
    rejection recorded with its reason when the response cannot be read at all.

    Items that break the entry rules are skipped, each with its reason in
    ``Parsed.skipped``: a source is not one person's file, and one odd item must
    not hold back a day of papers.
    """
    sha256 = response.sha256
    known = store.dump_by_hash(sha256)
    if known is not None:
        return _known(response, known), Parsed()
    try:
        parsed = sources.parse(response.kind, response.body, response.name)
    except DigestError as err:
        if store.rejection_by_hash(sha256) is None:  # the same bad bytes again: one record
            store.add_rejection(response.name, sha256, str(err), now)
        return FileResult(response.name, "rejected", error=str(err)), Parsed()
    with store.write():  # checked again under the write lock: the inbox may replay it too
        known = store.dump_by_hash(sha256)
        if known is not None:
            return _known(response, known), Parsed()
        dump_id = store.add_dump(response.name, sha256, now, source=response.source)
        counts = store.add_entries(dump_id, [parsed.entries], now)
        store.finish_dump(dump_id, _listing_date(parsed, response), counts)
    result = FileResult(
        response.name, "ingested", counts.entries, counts.new, counts.seen, dump_id=dump_id
    )
    return result, parsed


def _known(response: Response, known: dict[str, Any]) -> FileResult:
    entries = int(known["entries"])
    return FileResult(response.name, "duplicate", entries, 0, entries, dump_id=known["id"])


def _listing_date(parsed: Parsed, response: Response) -> str:
    """The day the listing gives itself when it is a date (an arXiv feed's announcement
    day), else the day it was fetched for: a source polled all day, or on a weekend,
    counts as one listing per day it announced (``paper_trends``)."""
    given = parsed.listing_date or ""
    return given if re.fullmatch(r"\d{4}-\d{2}-\d{2}", given) else response.listing_date
