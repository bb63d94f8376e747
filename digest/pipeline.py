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

from digest import feeds, fetching, mailer, outbox, queue, retention, sending
from digest.config import Config
from digest.ingest import InboxWatch, ingest_inbox, wait_until_settled
from digest.models import IngestReport
from digest.sources.http import SourceClient
from digest.store import Identity, Store, iso

log = logging.getLogger("digest")
Clock = Callable[[], datetime]


@dataclass(slots=True)
class CycleReport:
    fetched: list[fetching.FetchResult] = field(default_factory=list)
    ingest: IngestReport | None = None
    send: outbox.SendReport | None = None
    feeds: list[tuple[Path, int]] = field(default_factory=list)
    pruned: retention.PruneReport | None = None

    @property
    def failed(self) -> bool:
        """A rejected dump, a stopped ingest, an unusable mail server or a failed digest:
        a non-zero exit status."""
        ingest = self.ingest
        rejected = ingest is not None and (ingest.rejected > 0 or ingest.error is not None)
        send = self.send
        undelivered = send is not None and (send.error is not None or send.count("failed") > 0)
        return rejected or undelivered

    @property
    def exit_status(self) -> int:
        """0, 75 (digests wait for a retry) or 1 (a rejected dump or a failed digest):
        the codes of ``digest send`` (``queue.exit_status``)."""
        rejected = self.ingest is not None and self.ingest.rejected > 0
        sent = queue.exit_status(self.send) if self.send is not None else queue.EX_OK
        return queue.EX_FAILED if rejected else sent


def ingest(
    config: Config,
    clock: Clock,
    watch: InboxWatch | None = None,
    wait: Callable[[float], object] = time.sleep,
    identity: Identity | None = None,
) -> IngestReport:
    """Take every settled file in the inbox; log one line per file and a summary.

    The daemon passes its ``watch`` (what the inbox looked like at the previous
    poll).  A one-shot run has none: it first waits, at most ``[inbox]
    settle_seconds``, for files written just before it started.
    """
    settle = config.inbox.settle_seconds
    if watch is None:
        wait_until_settled(config.inbox.dir, settle, clock, wait)
    with open_store(config, identity) as store:
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
    config: Config,
    clock: Clock,
    slot: datetime | None = None,
    stop: Event | None = None,
    identity: Identity | None = None,
) -> outbox.SendReport:
    """Send what is due, recording the run and its ``slot`` (for missed-run detection).

    A run cut short by a stop stays unfinished, so the slot counts as missed and
    the next start catches up the subscribers it did not reach.
    """
    with open_store(config, identity) as store:
        run_id = store.start_run("deliver", iso(slot or clock()), iso(clock()))
        transport = mailer.transport_for(config.delivery, config.smtp)
        report = sending.send(store, config, transport, clock, stop=stop)
        if report.stopped:
            log.info("deliver: stopped; the rest is caught up at the next start")
        else:
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


def build_feeds(config: Config, identity: Identity | None = None) -> list[tuple[Path, int]]:
    with open_store(config, identity) as store:
        written = feeds.build_all(store, config)
    log.info("feeds: wrote %d files in %s", len(written), config.feeds.dir)
    return written


def fetch(
    config: Config,
    clock: Clock,
    identity: Identity | None = None,
    client: SourceClient | None = None,
    on_result: Callable[[fetching.FetchResult], object] | None = None,
) -> list[fetching.FetchResult]:
    """Ask every enabled source that is due (``fetching``); each logs its own line.

    ``client``: the caller's, to cancel from another thread (the service stopping);
    ``on_result``: told of each source as it is done.
    """
    sources = fetching.chosen(config, None)
    if not sources:
        return []
    with (
        open_store(config, identity) as store,
        client or fetching.make_client(config.fetch) as used,
    ):
        return fetching.fetch_all(store, config, used, clock(), sources, on_result=on_result)


def run_once(config: Config, clock: Clock) -> CycleReport:
    """``digest run --once``: the whole cycle, in order."""
    report = CycleReport()
    report.fetched = fetch(config, clock)
    report.ingest = ingest(config, clock)
    report.send = deliver(config, clock)
    report.feeds = build_feeds(config)
    report.pruned = prune(config, clock)  # the timer's daily run prunes as the daemon does
    return report


def prune(config: Config, clock: Clock, identity: Identity | None = None) -> retention.PruneReport:
    """Retention (``digest prune``), recorded as a ``prune`` job run; one log line."""
    with open_store(config, identity) as store:
        run_id = store.start_run("prune", iso(clock()), iso(clock()))
        report = retention.prune(store, config, clock())
        line = prune_summary(report)
        store.finish_run(run_id, iso(clock()), line)
    log.info("prune: %s", line)
    return report


def train(config: Config, clock: Clock, identity: Identity | None = None) -> str:
    """The daily training (``digest model rebuild``), recorded as a ``train`` job run.

    It reads, computes for as long as it takes, then saves the whole model in one
    short transaction: delivery meanwhile goes on with the last model saved.
    """
    from digest.relevance.training import rebuild  # scikit-learn: only when training

    with open_store(config, identity) as store:
        run_id = store.start_run("train", iso(clock()), iso(clock()))
        rebuilt = rebuild(store, config.model, clock())
        line = f"{rebuilt.readers} readers over {rebuilt.papers} papers in {rebuilt.seconds:.1f} s"
        store.finish_run(run_id, iso(clock()), line)
    return line


def prune_summary(report: retention.PruneReport) -> str:
    removed = [f"{pruned.rows} {rule}" for rule, pruned in report.rules if pruned.rows]
    return "; ".join(removed) or "nothing to remove"


def _summary(report: outbox.SendReport) -> str:
    return queue.summary(report)


def open_store(config: Config, identity: Identity | None = None) -> closing[Store]:
    """A store for the duration of one job (SQLite connections belong to one thread).

    With the ``identity`` the service took at start, only that very database:
    never a new one made in its place, nor one put there while running.
    """
    if identity is None:
        return closing(Store(config.storage.database))
    store = Store(config.storage.database, create=False)
    try:
        store.check_identity(identity)
    except BaseException:
        store.close()
        raise
    return closing(store)
