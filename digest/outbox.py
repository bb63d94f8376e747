"""The outbox: build every due digest, record it, deliver it — once, even across crashes.

Building is pure reading plus rendering; recording is one write transaction
holding, per digest, its row (with the exact message bytes and Message-ID) and
one delivery row per paper, whose primary key (subscriber, paper) makes a
second digest with the same paper impossible even when two runs overlap.
Delivery claims each digest (``queued -> sending``, owner = this pid), hands it
to the transport, and records ``sent``, ``deferred`` (4xx, network: retried
with exponential backoff in this run, then on later runs) or ``failed`` (5xx:
counts a bounce; ``bounce_limit`` of them in a row make the subscriber
``bouncing``).  A digest left ``sending`` by a dead process is queued again, so
at most the messages in flight at a crash are sent twice, with the same
Message-ID.

One subscriber can never stop the others: whatever goes wrong while matching,
rendering, recording or sending one digest (a stored filter that no longer
parses or renders too big, a stored address that cannot go on the wire, ...) is
logged once and recorded as that digest ``failed`` with the reason, and the run
goes on.  A digest that could not be built has no message: its row has status
``failed``, no papers, and a Message-ID derived from the subscriber and the run's
time.  It counts as their latest digest, like any other: they are next due in 20
hours (a week when weekly), not at every poll, and the papers of that window are
not offered again by email (they stay in the feeds), as after a digest that
bounced.  A failure in sending that is not the transport's ``DeliveryError``
fails that digest without counting a bounce (it says nothing about the mailbox).
Only ``DeliveryError`` ("cannot use the server at all") stops the run.

What is about the relay, not the recipient, costs no attempt and no bounce: a
message over the relay's size limit is held (deferred to a later run, its attempt
given back); ``RelayRefused`` (every connection refused, no mail taken for now)
stops the run with the digest in flight held likewise.  A permanent refusal is
counted only once it is known to be the recipient's: ``RELAY_STREAK`` different
recipients in a row refused with the same reply are the relay refusing everyone,
so those digests are held and the run stops instead.
"""

import asyncio
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parseaddr
from typing import Literal

from digest.addresses import wire
from digest.config import Config
from digest.errors import BuildError, DigestError
from digest.links import links_for
from digest.mailer import DeliveryError, Envelope, Outcome, RelayRefused, Transport
from digest.match import Batch, Pending, shared_stemmer
from digest.models import Subscriber
from digest.render import DigestContent, Health, Renderer, message_id
from digest.store import QueuedDigest, Store, Waiting, iso

Clock = Callable[[], datetime]
DAILY_GAP = timedelta(hours=20)
RECORD_CHUNK = 250
STOP_GRACE_SECONDS = 5.0  # a stop lets the messages in flight finish this long, then cancels
STOP_POLL_SECONDS = 0.1
# Different recipients refused in a row with the same permanent reply: the relay's doing.
RELAY_STREAK = 3
WEEKLY_GAP = timedelta(days=6)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Status = Literal["queued", "sent", "deferred", "failed", "skipped", "dry-run"]
log = logging.getLogger(__name__)


@dataclass(slots=True)
class DigestReport:
    """One line of ``digest send``: what happened to one subscriber's digest."""

    email: str
    status: Status
    papers: int
    message_id: str | None = None
    error: str | None = None

    def as_json(self) -> dict[str, object]:
        return {
            "email": self.email,
            "status": self.status,
            "papers": self.papers,
            "message_id": self.message_id,
            "error": self.error,
        }


@dataclass(slots=True)
class SendReport:
    digests: list[DigestReport] = field(default_factory=list)
    not_due: int = 0
    error: str | None = None
    waiting: Waiting = field(default_factory=Waiting)  # left in the outbox, whoever built it
    stopped: bool = False  # a stop cut the run short: some due digests were not built or sent

    def count(self, status: Status) -> int:
        return sum(1 for d in self.digests if d.status == status)

    def as_json(self) -> dict[str, object]:
        return {
            "sent": self.count("sent"),
            "deferred": self.count("deferred"),
            "failed": self.count("failed"),
            "skipped": self.count("skipped"),
            "digests": [d.as_json() for d in self.digests],
            "waiting": self.waiting.as_json(),
        }


# due ---------------------------------------------------------------------------------


def is_due(subscriber: Subscriber, last_built: str | None, config: Config, now: datetime) -> bool:
    """Daily: no digest in the last 20 hours. Weekly: on ``weekly_day``, none in 6 days."""
    if subscriber.status != "active":
        return False
    gap = DAILY_GAP
    if subscriber.frequency == "weekly":
        if WEEKDAYS[now.weekday()] != config.digest.weekly_day:
            return False
        gap = WEEKLY_GAP
    return last_built is None or last_built <= iso(now - gap)


def due_subscribers(
    store: Store,
    config: Config,
    now: datetime,
    only: str | None = None,
    last: Mapping[int, str] | None = None,
) -> tuple[list[Subscriber], int]:
    """The active subscribers due a digest now, and how many active ones are not.

    ``last`` is the snapshot of last-digest times to decide by (read now when None).
    """
    last = store.last_digest_times() if last is None else last
    active = [
        s for s in store.subscribers(["active"]) if only is None or s.email.lower() == only.lower()
    ]
    due = [s for s in active if is_due(s, last.get(s.id), config, now)]
    return due, len(active) - len(due)


# build -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Built:
    """A rendered digest, not yet recorded."""

    subscriber: Subscriber
    content: DigestContent
    data: bytes
    seqs: list[int]

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


class Builder:
    """Renders the digests of due subscribers against one batch of candidate papers."""

    def __init__(self, store: Store, config: Config, renderer: Renderer, now: datetime) -> None:
        self.config = config
        self.sender = config.delivery.from_
        self.renderer = renderer
        self.now = now
        self.last_built = store.last_digest_times()  # read before the batch: see record()
        newest = store.max_seq()
        self.batch = Batch(store, config.digest, now)
        self.health = _HealthCheck(store, now)
        self.max_seq = max([newest, *self.batch.seqs])  # the next digests start after it

    def build(self, subscriber: Subscriber) -> Built | Failed | DigestReport:
        """The rendered digest, the failure (logged) of this one subscriber's digest, or the
        report of a subscriber skipped for having nothing new."""
        try:
            return self._build(subscriber)
        except Exception as err:  # one subscriber's digest, whatever the cause: see the docstring
            identity = message_id(subscriber, [f"failed:{iso(self.now)}"], self.sender)
            return failed("build", subscriber, err, identity, self.now)

    def _build(self, subscriber: Subscriber) -> Built | DigestReport:
        upcoming = self.batch.pending(subscriber)
        if not upcoming.capped and not self.config.digest.send_empty:
            return DigestReport(subscriber.email, "skipped", 0, error="no new matching papers")
        health = self.health.of(subscriber)
        return _render(self.renderer, self.config, upcoming, health, self.now)


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


def failure_reason(err: BaseException) -> str:
    """One line: a DigestError's own words, else the exception's type and message."""
    text = err.message if isinstance(err, DigestError) else f"{type(err).__name__}: {err}"
    return " ".join(text.split())


def build(
    store: Store, config: Config, renderer: Renderer, due: Sequence[Subscriber], now: datetime
) -> tuple[list[Built | Failed], list[DigestReport], int]:
    """Render the digest of each due subscriber at once (``send`` does it in chunks).

    Returns the digests (and failures, for ``record``), the skipped subscribers'
    reports and the seq of the newest paper considered.
    """
    builder = Builder(store, config, renderer, now)
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
        upcoming = Batch(store, config.digest, now).pending(subscriber)
        return _render(renderer, config, upcoming, _HealthCheck(store, now).of(subscriber), now)
    except Exception as err:
        why = failure_reason(err)
        raise BuildError(f"cannot build the digest for {subscriber.email}: {why}") from err


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
    )


def _render(
    renderer: Renderer, config: Config, upcoming: Pending, health: Health, now: datetime
) -> Built:
    fitted, data = renderer.fit(digest_content(config, upcoming, health, now))
    return Built(upcoming.subscriber, fitted, data, [m.paper.seq for m in fitted.matches])


def _identity(upcoming: Pending, now: datetime) -> list[str]:
    """What makes a digest unique: its papers, or the day for an (opt-in) empty one."""
    return [m.paper.id for m in upcoming.capped] or [f"empty:{iso(now)}"]


class _HealthCheck:
    """The ingest-health line: last ingest and staleness (rejected dumps are for operators)."""

    def __init__(self, store: Store, now: datetime) -> None:
        self.last_ingest = store.last_ingest_at()
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
    """Queue the digests (and record the failed ones) in one transaction, skipping any
    subscriber who got a digest from another run since ``last_built`` was read (their
    due-ness was decided on stale data), and any digest whose papers another run took.

    A digest that cannot be recorded is recorded as failed instead, with its own Message-ID.
    """
    reports = []
    with store.write():
        for item in built:
            if store.last_digest_time(item.subscriber.id) != last_built.get(item.subscriber.id):
                reports.append(_taken(item))
            elif isinstance(item, Failed):
                reports.append(_record_failed(store, item, max_seq))
            else:
                reports.append(_record_built(store, item, max_seq))
    return reports


def _record_built(store: Store, item: Built, max_seq: int) -> DigestReport:
    try:
        digest_id = store.record_digest(
            item.subscriber.id,
            item.content.message_id,
            max_seq,
            item.seqs,
            item.content.more,
            item.data,
            iso(item.content.created_at),
        )
    except Exception as err:  # this one digest; a broken database fails the next write too
        content = item.content
        gone = failed("record", item.subscriber, err, content.message_id, content.created_at)
        return _record_failed(store, gone, max_seq)
    status: Status = "queued" if digest_id is not None else "skipped"
    error = None if digest_id is not None else "already in a digest built by another run"
    return DigestReport(
        item.subscriber.email, status, len(item.seqs), item.content.message_id, error
    )


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


# deliver -----------------------------------------------------------------------------


def recover(store: Store, alive: Callable[[int], bool]) -> list[int]:
    """Queue again the digests left ``sending`` by a process that is gone."""
    orphans = [
        d for d, owner in store.sending_owners().items() if owner is None or not alive(owner)
    ]
    store.requeue(orphans)
    return orphans


def pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True, slots=True)
class _Suspect:
    """A permanent refusal not counted yet: it may turn out to be the relay refusing everyone."""

    digest: QueuedDigest
    outcome: Outcome
    attempt: int
    report: DigestReport


class Deliverer:
    """Runs the ready digests through a transport, ``concurrency`` at a time."""

    def __init__(
        self, store: Store, config: Config, clock: Clock, stop: threading.Event | None = None
    ) -> None:
        self.store = store
        self.stop = stop or threading.Event()
        self.config = config
        self.clock = clock
        self.owner = os.getpid()
        self.sender = parseaddr(config.delivery.from_)[1]
        self.reports: dict[int, DigestReport] = {}
        self.suspects: list[_Suspect] = []

    async def run(self, transport: Transport, ready: Sequence[QueuedDigest]) -> list[DigestReport]:
        """Deliver ``ready``; a DeliveryError stops every worker and is raised as itself.

        The refusals still under suspicion are counted at the end, or held when the run
        stops on a DeliveryError (it says nothing about them either).
        """
        queue: asyncio.Queue[QueuedDigest] = asyncio.Queue()
        for digest in ready:
            queue.put_nowait(digest)
        try:
            async with asyncio.TaskGroup() as group:
                workers = [
                    group.create_task(self._worker(transport, queue))
                    for _ in range(min(transport.concurrency, max(len(ready), 1)))
                ]
                group.create_task(self._stop_watch(workers))
            self._settle()
        except* DeliveryError as failed:
            self._hold_suspects(failure_reason(failed.exceptions[0]))
            raise failed.exceptions[0] from None
        except* DigestError as failed:  # a full disk, a vanished database: one line, no group
            raise failed.exceptions[0] from None
        finally:
            for suspect in self.suspects:  # cancelled: give them back untouched
                self.store.release(suspect.digest.id)
        return [self.reports[d.id] for d in ready if d.id in self.reports]

    async def _stop_watch(self, workers: list["asyncio.Task[None]"]) -> None:
        """On a stop, give the messages in flight ``STOP_GRACE_SECONDS`` to finish, then
        cancel what is left (a worker waiting for its rate slot, a relay that stalls):
        a cancelled claim is given back, so the digest stays queued for the next run."""
        loop = asyncio.get_running_loop()
        while not self.stop.is_set():
            if all(worker.done() for worker in workers):
                return
            await asyncio.sleep(STOP_POLL_SECONDS)
        deadline = loop.time() + STOP_GRACE_SECONDS
        while loop.time() < deadline and not all(worker.done() for worker in workers):
            await asyncio.sleep(STOP_POLL_SECONDS)
        for worker in workers:
            worker.cancel()

    async def _worker(self, transport: Transport, queue: "asyncio.Queue[QueuedDigest]") -> None:
        while not queue.empty() and not self.stop.is_set():
            digest = queue.get_nowait()
            await self._deliver(transport, digest)

    async def _deliver(self, transport: Transport, digest: QueuedDigest) -> None:
        report = DigestReport(digest.email, "queued", digest.papers, digest.message_id)
        self.reports[digest.id] = report
        if digest.subscriber_status != "active":
            self.store.mark_failed(
                digest.id,
                digest.subscriber_id,
                f"not sent: subscriber is {digest.subscriber_status}",
                bounce_limit=None,
            )
            report.status, report.error = "failed", f"subscriber is {digest.subscriber_status}"
            return
        attempts_left = self.config.delivery.retries
        attempt = digest.attempts
        while True:
            if not self.store.claim(digest.id, self.owner):
                report.status, report.error = "skipped", "taken by another run"
                return
            try:
                outcome = await self._send(transport, digest)
            except RelayRefused as err:
                self._hold(digest, err.message, report)
                raise
            except DeliveryError:
                self.store.release(digest.id)
                raise
            except Exception as err:  # this digest alone: see the module docstring
                self._fail_alone(digest, err, report)
                return
            except BaseException:
                self.store.release(digest.id)
                raise
            if outcome.relay:  # over the relay's size limit: retrying now cannot help
                self._hold(digest, outcome.error or "refused by the relay", report)
                return
            attempt += 1
            if self._suspect(_Suspect(digest, outcome, attempt, report)):
                return
            if outcome.status != "deferred" or attempts_left == 0:
                self._finish(digest, outcome, attempt, report)
                return
            attempts_left -= 1
            delay = self._backoff(attempt)
            self.store.mark_deferred(
                digest.id, outcome.error or "deferred", iso(self.clock() + delay)
            )
            if self.stop.wait(0) or await self._stopped_within(delay):
                report.status, report.error = "deferred", outcome.error
                return

    def _suspect(self, suspect: _Suspect) -> bool:
        """Keep a permanent refusal uncounted while it may be the relay's (True).

        A different outcome settles the ones before it (they were the recipients');
        the ``RELAY_STREAK``-th different recipient refused alike raises RelayRefused.
        """
        key = _refusal_key(suspect.outcome)
        if self.suspects and key != _refusal_key(self.suspects[0].outcome):
            self._settle()
        if key is None:
            return False
        self.suspects.append(suspect)
        if len({s.digest.email.lower() for s in self.suspects}) < RELAY_STREAK:
            return True
        raise RelayRefused(
            f"the mail server refused {RELAY_STREAK} different recipients in a row with "
            f"the same reply: {suspect.outcome.error}",
            "it refuses everyone for a reason of its own (is this host allowed to relay?"
            " a policy?); nothing counted as a bounce and the digests stay queued",
        )

    def _settle(self) -> None:
        """The refusals held back were the recipients' after all: count them."""
        suspects, self.suspects = self.suspects, []
        for s in suspects:
            self._finish(s.digest, s.outcome, s.attempt, s.report)

    def _hold_suspects(self, reason: str) -> None:
        suspects, self.suspects = self.suspects, []
        for s in suspects:
            self._hold(s.digest, reason, s.report)

    def _hold(self, digest: QueuedDigest, error: str, report: DigestReport) -> None:
        """Deferred to the next run with the reason, the attempt given back, no bounce:
        the relay refused it for a reason of its own."""
        self.store.hold(digest.id, error, iso(self.clock()))
        report.status, report.error = "deferred", error

    async def _send(self, transport: Transport, digest: QueuedDigest) -> Outcome:
        recipient = wire(digest.email)  # an IDN domain stored by an older version: IDNA
        data = self.store.message(digest.id)
        return await transport.send(Envelope(self.sender, recipient, data, digest.message_id))

    def _fail_alone(self, digest: QueuedDigest, err: Exception, report: DigestReport) -> None:
        """Fail this digest, logged once, without a bounce: it says nothing of the mailbox."""
        reason = failure_reason(err)
        trace = log.isEnabledFor(logging.DEBUG)
        log.error("cannot send the digest for %s: %s", digest.email, reason, exc_info=trace)
        self.store.mark_failed(digest.id, digest.subscriber_id, reason, bounce_limit=None)
        report.status, report.error = "failed", reason

    async def _stopped_within(self, delay: timedelta) -> bool:
        """Sleep through a retry delay, waking early (True) when asked to stop."""
        deadline = asyncio.get_running_loop().time() + delay.total_seconds()
        while (left := deadline - asyncio.get_running_loop().time()) > 0:
            if self.stop.is_set():
                return True
            await asyncio.sleep(min(left, 0.2))
        return self.stop.is_set()

    def _backoff(self, attempt: int) -> timedelta:
        return timedelta(seconds=self.config.delivery.retry_base_seconds * 2 ** max(attempt - 1, 0))

    def _finish(
        self, digest: QueuedDigest, outcome: Outcome, attempt: int, report: DigestReport
    ) -> None:
        now = self.clock()
        report.status, report.error = outcome.status, outcome.error
        if outcome.status == "sent":
            self.store.mark_sent(digest.id, digest.subscriber_id, iso(now))
        elif outcome.status == "failed":
            bouncing = self.store.mark_failed(
                digest.id,
                digest.subscriber_id,
                outcome.error or "failed",
                bounce_limit=self.config.delivery.bounce_limit,
            )
            if bouncing:
                report.error = f"{outcome.error}; subscriber is now bouncing"
        else:
            self.store.mark_deferred(
                digest.id, outcome.error or "deferred", iso(now + self._backoff(attempt))
            )


def _refusal_key(outcome: Outcome) -> str | None:
    """What makes two permanent refusals the same: the reply without the addresses in it."""
    if outcome.status != "failed" or outcome.code is None:
        return None
    return " ".join(w for w in (outcome.error or "").lower().split() if "@" not in w)


async def deliver(
    store: Store,
    config: Config,
    transport: Transport,
    clock: Clock,
    only: Subscriber | None = None,
    stop: threading.Event | None = None,
) -> list[DigestReport]:
    """Deliver every ready digest; a transport that cannot start leaves them all queued.

    When ``stop`` is set, the messages in flight finish and the rest wait for the next run.
    """
    ready = store.ready_digests(iso(clock()), only.id if only else None)
    if not ready:
        return []
    async with transport:
        return await Deliverer(store, config, clock, stop).run(transport, ready)


# the whole send ------------------------------------------------------------------------


def send(
    store: Store,
    config: Config,
    transport: Transport,
    clock: Clock,
    *,
    only: str | None = None,
    dry_run: bool = False,
    renderer: Renderer | None = None,
    stop: threading.Event | None = None,
) -> SendReport:
    """``digest send``: recover, build and record what is due, then deliver what is ready.

    Digests are rendered and recorded ``RECORD_CHUNK`` at a time, so memory
    stays flat whatever the number of subscribers; each chunk is one
    transaction, and a crash between chunks leaves the rest due for the next run.
    """
    now = clock()
    report = SendReport()
    builder = Builder(store, config, renderer or Renderer(config, stemmer=shared_stemmer()), now)
    subscriber = store.subscriber(only) if only else None
    only = subscriber.email if subscriber else only  # the stored spelling (an IDN domain)
    due, report.not_due = due_subscribers(store, config, now, only, builder.last_built)
    if not dry_run:
        recover(store, pid_alive)
    queued: list[DigestReport] = []
    stop = stop or threading.Event()
    for start in range(0, len(due), RECORD_CHUNK):
        results = _build_until(stop, builder, due[start : start + RECORD_CHUNK])
        report.digests.extend(r for r in results if isinstance(r, DigestReport))
        built = [r for r in results if isinstance(r, Built | Failed)]
        if dry_run:
            report.digests.extend(_dry_run(b) for b in built)
            continue
        for recorded in record(store, built, builder.max_seq, builder.last_built):
            (queued if recorded.status == "queued" else report.digests).append(recorded)
        if stop.is_set():
            done = start + len(results)
            report.stopped = done < len(due)
            log.info("send: stopped after %d of %d due digests", done, len(due))
            break
    if dry_run or stop.is_set():
        report.digests.extend(queued)
        report.stopped = report.stopped or (bool(queued) and not dry_run)
        return report
    try:
        delivered = asyncio.run(deliver(store, config, transport, clock, subscriber, stop))
    except DeliveryError as err:
        report.error = str(err)
        delivered = queued
    report.digests.extend(delivered)
    report.stopped = stop.is_set() and any(d.status == "queued" for d in delivered)
    report.waiting = store.waiting(subscriber.id if subscriber else None)
    return report


def _build_until(
    stop: threading.Event, builder: Builder, chunk: Sequence[Subscriber]
) -> list[Built | Failed | DigestReport]:
    """Build the chunk's digests one by one until ``stop`` is set (SIGTERM in any phase:
    what was built is still recorded, the rest stay due for the next run)."""
    results: list[Built | Failed | DigestReport] = []
    for subscriber in chunk:
        if stop.is_set():
            break
        results.append(builder.build(subscriber))
    return results


def _dry_run(built: Built | Failed) -> DigestReport:
    if isinstance(built, Failed):
        return DigestReport(built.subscriber.email, "failed", 0, built.message_id, built.error)
    return DigestReport(
        built.subscriber.email, "dry-run", len(built.seqs), built.content.message_id
    )
