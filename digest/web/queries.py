"""Two read queries the web front needs and the store does not have yet.

They belong in ``digest/store`` (``subscribers.py`` and ``papers.py``); they are kept
here, small and read-only, until they move.  Nothing else in ``digest.web`` runs SQL.
"""

from dataclasses import dataclass

from digest.models import Subscriber
from digest.store import Store


@dataclass(frozen=True, slots=True)
class Sighting:
    """One listing a paper appeared in: the dump, its listing date, the position, when."""

    file_name: str
    listing_date: str | None
    position: int
    ingested_at: str


def subscriber_by_id(store: Store, subscriber_id: int) -> Subscriber | None:
    rows = list(store.db["subscribers"].rows_where("id = ?", [subscriber_id], limit=1))
    return Subscriber(**rows[0]) if rows else None


def sightings(store: Store, paper_seq: int) -> list[Sighting]:
    """Every listing the paper was seen in, oldest ingest first."""
    rows = store.db.execute(
        "SELECT d.file_name, d.listing_date, s.position, d.ingested_at "
        "FROM sightings s JOIN dumps d ON d.id = s.dump_id "
        "WHERE s.paper_seq = ? ORDER BY d.ingested_at, d.id",
        [paper_seq],
    )
    return [Sighting(str(a), b, int(c), str(d)) for a, b, c, d in rows]
