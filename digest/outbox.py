"""The outbox: build the digests of those due (``due``), record them, then have them delivered.

Building is pure reading plus rendering; recording is one write transaction
holding, per digest, its row (with the exact message bytes and Message-ID) and
one delivery row per paper, whose primary key (subscriber, paper) makes a
second digest with the same paper impossible even when two runs overlap.
``send`` (what ``digest send`` runs) does both, then hands what is ready to
``digest.delivery``, which claims, sends, retries and recovers.

One subscriber can never stop the others: whatever goes wrong while matching,
rendering, recording or sending one digest (a stored filter that no longer
parses or renders too big, a stored address that cannot go on the wire, ...) is
logged once and recorded as that digest ``failed`` with the reason, and the run
goes on.  A digest that could not be built has no message: its row has status
``failed``, no papers, and a Message-ID derived from the subscriber and the run's
time.  It counts as their latest digest, like any other: they are next due in 20
hours (a week when weekly), not at every poll, and the papers of that window are
not offered again by email (they stay in the feeds), as after a digest that
bounced.
"""

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING

from digest.config import Config
from digest.errors import BuildError
from digest.links import links_for
from digest.match import Batch, Pending
from digest.models import Subscriber
from digest.render import DigestContent, Health, Renderer, message_id
from digest.render_pool import Outcome, Unrendered, render_one
from digest.reports import DigestReport as DigestReport
from digest.reports import SendReport as SendReport
from digest.reports import Status as Status
from digest.reports import failure_reason as failure_reason
from digest.store import Packed, QueuedDigest, Store, iso, pack

if TYPE_CHECKING:  # delivery (aiosmtplib, asyncio) is imported by a send, not by a preview
    pass

POOL_FROM = 200  # due digests from which rendering in worker processes pays for starting them
RECORD_CHUNK = 250
log = logging.getLogger(__name__)


# build -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Built:
    """A rendered digest, not yet recorded: ``data`` as sent, ``packed`` as stored."""

    subscriber: Subscriber
    content: DigestContent
    data: bytes
    packed: Packed

    @property
    def seqs(self) -> list[int]:
        """The papers it holds (after fitting: what is recorded is what was rendered)."""
        return [m.paper.seq for m in self.content.matches]

    @property
    def message_id(self) -> str:
        return self.content.message_id


@dataclass(frozen=True, slots=True)
class Failed:
    """A digest that could not be built: recorded as failed, with no message."""

    subscriber: Subscriber
    message_id: str
    error: str
    created_at: datetime


Prepared = DigestContent | Failed | DigestReport  # to render, failed, or skipped


class Builder:
    """Builds the digests of due subscribers against one batch of candidate papers:
    ``prepare`` matches (in this process), ``finish`` takes the rendered result.

    The batch (the costly part: every window paper indexed) is read at the first
    digest built, so a run with nobody due, the common poll, indexes nothing.
    """

    def __init__(self, store: Store, config: Config, renderer: Renderer, now: datetime) -> None:
        self.store = store
        self.config = config
        self.sender = config.delivery.from_
        self.renderer = renderer
        self.now = now
        self.last_built = store.last_digest_times()  # read before the batch: see record()
        self.newest = store.max_seq()
        self.health = _HealthCheck(store, now)
        self.due: Sequence[Subscriber] | None = None  # who this run builds for, once known
        self.stopping: Callable[[], bool] = lambda: False  # a send's SIGTERM

    @cached_property
    def batch(self) -> Batch:
        """The candidates of every window, or, once ``due`` is known, of the due windows
        (``match.Batch``: the few reaching far back are read a chunk at a time)."""
        return Batch(self.store, self.config.digest, self.now, due=self.due, stopping=self.stopping)

    @cached_property
    def max_seq(self) -> int:
        """The newest paper considered: the next digests start after it."""
        return max([self.newest, *self.batch.seqs])

    def build(self, subscriber: Subscriber) -> Built | Failed | DigestReport:
        """The rendered digest, the failure (logged) of this one subscriber's digest, or the
        report of a subscriber skipped for having nothing new."""
        prepared = self.prepare(subscriber)
        if not isinstance(prepared, DigestContent):
            return prepared
        return self.finish(prepared, render_one(self.renderer, prepared))

    def prepare(self, subscriber: Subscriber) -> Prepared:
        """What this subscriber's digest will show, or why there is none."""
        batch = self.batch  # read outside the try: a store that cannot be read stops the run
        try:
            upcoming = batch.pending(subscriber, sending=True)
            if not upcoming.capped and not self.config.digest.send_empty:
                return DigestReport(subscriber.email, "skipped", 0, error="no new matching papers")
            return digest_content(self.config, upcoming, self.health.of(subscriber), self.now)
        except Exception as err:  # one subscriber's digest, whatever the cause: see the docstring
            return failed("build", subscriber, err, self._failed_identity(subscriber), self.now)

    def finish(self, content: DigestContent, outcome: Outcome) -> Built | Failed:
        """The rendered digest, or its failure (logged, with the worker's trace under -v)."""
        subscriber = content.subscriber
        if isinstance(outcome, Unrendered):
            log.error("cannot build the digest for %s: %s", subscriber.email, outcome.reason)
            log.debug("%s", outcome.trace)
            identity = self._failed_identity(subscriber)
            return Failed(subscriber, identity, outcome.reason, self.now)
        return Built(subscriber, outcome.content, outcome.data, outcome.packed)

    def _failed_identity(self, subscriber: Subscriber) -> str:
        return message_id(subscriber, [f"failed:{iso(self.now)}"], self.sender)


def failed(
    doing: str, subscriber: Subscriber, err: Exception, identity: str, now: datetime
) -> Failed:
    """The failure of one subscriber's digest, logged on one line (a traceback with -v).

    ``identity`` is its Message-ID: the same subscriber and run time give the same one.
    """
    reason = failure_reason(err)
    trace = log.isEnabledFor(logging.DEBUG)
    log.error("cannot %s the digest for %s: %s", doing, subscriber.email, reason, exc_info=trace)
    return Failed(subscriber, identity, reason, now)


def build(
    store: Store, config: Config, renderer: Renderer, due: Sequence[Subscriber], now: datetime
) -> tuple[list[Built | Failed], list[DigestReport], int]:
    """Render the digest of each due subscriber at once (``send`` does it in chunks).

    Returns the digests (and failures, for ``record``), the skipped subscribers'
    reports and the seq of the newest paper considered.
    """
    builder = Builder(store, config, renderer, now)
    builder.due = due
    results = [builder.build(subscriber) for subscriber in due]
    built = [r for r in results if isinstance(r, Built | Failed)]
    skipped = [r for r in results if isinstance(r, DigestReport)]
    return built, skipped, builder.max_seq


def preview(
    store: Store, config: Config, renderer: Renderer, subscriber: Subscriber, now: datetime
) -> Built:
    """The digest this subscriber would get now, rendered; nothing is recorded.

    Raises BuildError, one line, whatever stops this subscriber's digest.
    """
    try:
        upcoming = Batch(store, config.digest, now, also=subscriber).pending(subscriber)
        health = _HealthCheck(store, now).of(subscriber)
        fitted, data = renderer.fit(digest_content(config, upcoming, health, now))
    except Exception as err:
        why = failure_reason(err)
        raise BuildError(f"cannot build the digest for {subscriber.email}: {why}") from err
    return Built(subscriber, fitted, data, pack(data))


def digest_content(
    config: Config, upcoming: Pending, health: Health, now: datetime
) -> DigestContent:
    """What goes into one subscriber's digest, before rendering."""
    subscriber = upcoming.subscriber
    sender = config.delivery.from_
    return DigestContent(
        subscriber=subscriber,
        matches=upcoming.capped,
        more=upcoming.more,
        links=links_for(subscriber, config.web.base_url),
        health=health,
        created_at=now,
        message_id=message_id(subscriber, _identity(upcoming, now), sender),
        learned=upcoming.learned,
        suggestions=upcoming.suggestions,
    )


def _identity(upcoming: Pending, now: datetime) -> list[str]:
    """What makes a digest unique: its papers, or the day for an (opt-in) empty one."""
    return [m.paper.id for m in upcoming.capped] or [f"empty:{iso(now)}"]


class _HealthCheck:
    """The ingest-health line: when the papers were last known fresh, and staleness
    (rejected dumps and failing sources are for operators).

    Fresh as of the newest ingest or the newest successful fetch, whichever is
    later: a source that answered "nothing changed" an hour ago is an hour fresh.
    """

    def __init__(self, store: Store, now: datetime) -> None:
        fetched = [state.last_success for state in store.source_states() if state.last_success]
        self.last_ingest = max(filter(None, [store.last_ingest_at(), *fetched]), default=None)
        self.stale = self.last_ingest is None or self.last_ingest < iso(now - timedelta(days=1))

    def of(self, subscriber: Subscriber) -> Health:
        """The same for every reader: what they are told depends only on the papers' freshness."""
        return Health(self.last_ingest, self.stale)


def record(
    store: Store,
    built: Sequence[Built | Failed],
    max_seq: int,
    last_built: Mapping[int, str],
) -> list[DigestReport]:
    """Queue the digests (and record the failed ones) in one transaction: ``queue``'s
    reports."""
    return [recorded.report for recorded in queue(store, built, max_seq, last_built)]


@dataclass(frozen=True, slots=True)
class Recorded:
    """What recording one digest did, and what delivery needs of it when it was queued."""

    report: DigestReport
    queued: QueuedDigest | None = None  # with the message in hand
    packed: Packed | None = None  # the same message as the store keeps it


def queue(
    store: Store,
    built: Sequence[Built | Failed],
    max_seq: int,
    last_built: Mapping[int, str],
) -> list[Recorded]:
    """Queue the digests (and record the failed ones) in one transaction, skipping any
    subscriber who got a digest from another run since ``last_built`` was read (their
    due-ness was decided on stale data), and any digest whose papers another run took.

    A digest that cannot be recorded is recorded as failed instead, with its own Message-ID.
    """
    recorded: list[Recorded] = []
    with store.write():
        for item in built:
            if store.last_digest_time(item.subscriber.id) != last_built.get(item.subscriber.id):
                recorded.append(Recorded(_taken(item)))
            elif isinstance(item, Failed):
                recorded.append(Recorded(_record_failed(store, item, max_seq)))
            else:
                recorded.append(_record_built(store, item, max_seq))
    return recorded


def _record_built(store: Store, item: Built, max_seq: int) -> Recorded:
    content, subscriber = item.content, item.subscriber
    try:
        digest_id = store.record_digest(
            subscriber.id,
            content.message_id,
            max_seq,
            item.seqs,
            content.more,
            item.packed,
            iso(content.created_at),
        )
    except Exception as err:  # this one digest; a broken database fails the next write too
        gone = failed("record", subscriber, err, content.message_id, content.created_at)
        return Recorded(_record_failed(store, gone, max_seq))
    if digest_id is None:
        error = "already in a digest built by another run"
        return Recorded(DigestReport(subscriber.email, "skipped", 0, content.message_id, error))
    papers = len(item.seqs)
    report = DigestReport(subscriber.email, "queued", papers, content.message_id)
    queued = QueuedDigest(
        digest_id,
        subscriber.id,
        subscriber.email,
        subscriber.status,
        content.message_id,
        papers,
        attempts=0,
        data=item.data,
    )
    return Recorded(report, queued, item.packed)


def _record_failed(store: Store, item: Failed, max_seq: int) -> DigestReport:
    """The failed row that makes the subscriber next due in 20 hours, not at the next poll."""
    digest_id = store.record_failed_digest(
        item.subscriber.id, item.message_id, max_seq, item.error, iso(item.created_at)
    )
    if digest_id is None:
        return _taken(item)
    return DigestReport(item.subscriber.email, "failed", 0, item.message_id, item.error)


def _taken(item: Built | Failed) -> DigestReport:
    message = "already sent a digest by another run"
    return DigestReport(item.subscriber.email, "skipped", 0, item.message_id, message)
