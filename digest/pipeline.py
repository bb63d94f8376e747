"""One cycle of the service: ingest the inbox, deliver what is due, rebuild the feeds.

The scheduler's jobs and ``digest run --once`` call these functions; each
opens its own store (SQLite connections belong to one thread), takes ``now``
from the clock it is given, and returns a report the caller logs.
"""

import logging
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from threading import Event

from digest import feeds, mailer, outbox
from digest.config import Config
from digest.ingest import InboxWatch, ingest_inbox, wait_until_settled
from digest.models import IngestReport
from digest.store import Store, iso

log = logging.getLogger("digest")
Clock = Callable[[], datetime]


@dataclass(slots=True)
class CycleReport:
    ingest: IngestReport | None = None
    send: outbox.SendReport | None = None
    feeds: list[tuple[Path, int]] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """A rejected dump, a stopped ingest, an unusable mail server or a failed digest:
        a non-zero exit status."""
        ingest = self.ingest
        rejected = ingest is not None and (ingest.rejected > 0 or ingest.error is not None)
        send = self.send
        undelivered = send is not None and (send.error is not None or send.count("failed") > 0)
        return rejected or undelivered


def ingest(
    config: Config,
    clock: Clock,
    watch: InboxWatch | None = None,
    wait: Callable[[float], object] = time.sleep,
) -> IngestReport:
    """Take every settled file in the inbox; log one line per file and a summary.

    The daemon passes its ``watch`` (what the inbox looked like at the previous
    poll).  A one-shot run has none: it first waits, at most ``[inbox]
    settle_seconds``, for files written just before it started.
    """
    settle = config.inbox.settle_seconds
    if watch is None:
        wait_until_settled(config.inbox.dir, settle, clock, wait)
    with open_store(config) as store:
        report = ingest_inbox(store, config.inbox.dir, clock(), settle_seconds=settle, watch=watch)
    if report.error:
        log.error("ingest: stopped: %s", report.error)
    for item in report.files:
        if item.status == "rejected":
            log.error("ingest: rejected %s: %s", item.path, item.error)
        else:
            log.info(
                "ingest: %s %s: %d entries, %d new", item.status, item.path, item.entries, item.new
            )
    if report.files:
        log.info(
            "ingest: %d files, %d new papers, %d rejected",
            len(report.files),
            report.new_papers,
            report.rejected,
        )
    return report


def deliver(
    config: Config, clock: Clock, slot: datetime | None = None, stop: Event | None = None
) -> outbox.SendReport:
    """Send what is due, recording the run and its ``slot`` (for missed-run detection)."""
    with open_store(config) as store:
        run_id = store.start_run("deliver", iso(slot or clock()), iso(clock()))
        transport = mailer.transport_for(config.delivery, config.smtp)
        report = outbox.send(store, config, transport, clock, stop=stop)
        store.finish_run(run_id, iso(clock()), _summary(report))
    for item in report.digests:
        level = logging.INFO if item.status in ("sent", "skipped") else logging.WARNING
        log.log(
            level,
            "deliver: %s %s (%d papers)%s",
            item.status,
            item.email,
            item.papers,
            f": {item.error}" if item.error else "",
        )
    log.info("deliver: %s", _summary(report))
    if report.error:
        log.error("deliver: %s", report.error)
    return report


def build_feeds(config: Config) -> list[tuple[Path, int]]:
    with open_store(config) as store:
        written = feeds.build_all(store, config)
    log.info("feeds: wrote %d files in %s", len(written), config.feeds.dir)
    return written


def run_once(config: Config, clock: Clock) -> CycleReport:
    """``digest run --once``: the whole cycle, in order."""
    report = CycleReport()
    report.ingest = ingest(config, clock)
    report.send = deliver(config, clock)
    report.feeds = build_feeds(config)
    return report


def _summary(report: outbox.SendReport) -> str:
    counts = ", ".join(f"{report.count(s)} {s}" for s in ("sent", "deferred", "failed", "skipped"))
    return f"{counts}; {report.not_due} not due"


def open_store(config: Config) -> closing[Store]:
    """A store for the duration of one job (SQLite connections belong to one thread)."""
    return closing(Store(config.storage.database))
