"""Retention (``digest prune``, and the daemon daily at ``[storage] prune_at``).

What grows with time and nobody reads any more is removed:

* ``job_runs`` older than ``[storage] keep_days`` (the newest run of each job
  stays: the missed-delivery check reads it);
* records of rejected dumps older than ``keep_days`` (the files and their
  ``.error`` notes stay in ``inbox/failed/``: delete those yourself);
* the message bytes of sent digests, and of failed ones built more than
  ``[storage] keep_failed_days`` ago (until then ``digest outbox retry --failed``
  can send them again);
* raw source responses in ``[fetch] archive_dir`` fetched more than
  ``[fetch] archive_days`` ago (what they held is in the database);
* sign-ups still ``pending`` ``[web] confirm_hours`` + 24 hours after they were
  made: their link has expired, so the row only keeps an unconfirmed address.

What is kept: every digest row and its deliveries (which papers each subscriber
was sent: the next digest and the "N more" pages read them), subscribers and
their history, papers, dumps and sightings.  SQLite reuses the freed pages (sent
messages free a day's worth at each run); then ``PRAGMA incremental_vacuum`` gives
the free pages back, so the file shrinks, in a database made with ``auto_vacuum =
INCREMENTAL`` (every new one; an older file is converted once by ``VACUUM``, see the
README).
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from digest import archive, lifecycle
from digest.config import Config
from digest.store import Pruned, Store, iso

PENDING_MARGIN = timedelta(hours=24)  # beyond [web] confirm_hours, for clocks and slow mail
log = logging.getLogger(__name__)


@dataclass(slots=True)
class PruneReport:
    """Each rule's description and what it removed (or, dry, would remove)."""

    dry_run: bool
    rules: list[tuple[str, Pruned]] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(pruned.rows for _, pruned in self.rules)

    def as_json(self) -> dict[str, object]:
        return {
            "dry_run": self.dry_run,
            "rules": [
                {"rule": rule, "rows": pruned.rows, "bytes": pruned.bytes}
                for rule, pruned in self.rules
            ],
        }


def prune(store: Store, config: Config, now: datetime, *, dry_run: bool = False) -> PruneReport:
    """Apply every retention rule (or count, with ``dry_run``); each is its own transaction."""
    keep = config.storage.keep_days
    keep_failed = config.storage.keep_failed_days
    old = iso(now - timedelta(days=keep))
    report = PruneReport(dry_run)
    report.rules.append(
        (f"job runs older than {keep} days", store.prune_job_runs(old, dry_run=dry_run))
    )
    report.rules.append(
        (
            f"rejected-dump records older than {keep} days",
            store.prune_rejections(old, dry_run=dry_run),
        )
    )
    failed_before = iso(now - timedelta(days=keep_failed))
    report.rules.append(
        (
            f"message bytes of sent digests and of failed ones older than {keep_failed} days",
            store.prune_messages(failed_before, dry_run=dry_run),
        )
    )
    report.rules.append((_pending_rule(config), _expire_pending(store, config, now, dry_run)))
    report.rules.append(_archive_rule(config, now, dry_run))
    # last, so that it gives back what the rules above freed (rows: pages)
    reclaimed = store.reclaim_free_pages(dry_run=dry_run)
    report.rules.append(("free pages given back to the file system", reclaimed))
    return report


def _archive_rule(config: Config, now: datetime, dry_run: bool) -> tuple[str, Pruned]:
    days = config.fetch.archive_days
    old = archive.prune(config.fetch.archive_dir, now, days, dry_run=dry_run)
    size = sum(size for _, size in old)
    return f"archived source responses older than {days} days", Pruned(len(old), size)


def _pending_rule(config: Config) -> str:
    hours = config.web.confirm_hours + PENDING_MARGIN // timedelta(hours=1)
    return f"sign-ups never confirmed within {hours} hours"


def _expire_pending(store: Store, config: Config, now: datetime, dry_run: bool) -> Pruned:
    before = now - timedelta(hours=config.web.confirm_hours) - PENDING_MARGIN
    gone = lifecycle.expire_pending(store, before, dry_run=dry_run)
    for person in gone if not dry_run else ():
        log.info(
            "prune: deleted the unconfirmed sign-up of %s (%s)", person.email, person.created_at
        )
    return Pruned(len(gone))
