"""Delivery: hand every ready digest to the transport, once, even across crashes.

``deliver`` claims each ready digest (``queued -> sending``, owner = this pid),
hands it to the transport, ``concurrency`` at a time, and records ``sent``,
``deferred`` (4xx, network: retried with exponential backoff in this run, then on
later runs) or ``failed`` (5xx: counts a bounce; ``bounce_limit`` of them in a row
make the subscriber ``bouncing``).  ``recover`` queues again a digest left
``sending`` by a dead process, so at most the messages in flight at a crash are
sent twice, with the same Message-ID.

A failure in sending that is not the transport's ``DeliveryError`` fails that
digest without counting a bounce (it says nothing about the mailbox).  Only
``DeliveryError`` ("cannot use the server at all") stops the run.

What is about the relay, not the recipient, costs no attempt and no bounce: a
message over the relay's size limit is held (deferred to a later run, its attempt
given back); ``RelayRefused`` (every connection refused, no mail taken for now)
stops the run with the digest in flight held likewise.  A permanent refusal is
counted only once it is known to be the recipient's: ``RELAY_STREAK`` different
recipients in a row refused with the same reply are the relay refusing everyone,
so those digests are held and the run stops instead.

A stop (SIGTERM) lets the messages in flight finish for ``STOP_GRACE_SECONDS``,
then cancels the rest; a cancelled claim is given back.
"""

import asyncio
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parseaddr

from digest.addresses import wire
from digest.config import Config
from digest.errors import DigestError
from digest.mailer import DeliveryError, Envelope, Outcome, RelayRefused, Transport
from digest.models import Subscriber
from digest.reports import DigestReport, failure_reason
from digest.store import Packed, QueuedDigest, Store, iso, unpack

Clock = Callable[[], datetime]
STOP_GRACE_SECONDS = 5.0  # a stop lets the messages in flight finish this long, then cancels
STOP_POLL_SECONDS = 0.1
# A sent mark is written to the disk at once if the last one that was is this old; the
# others wait for it (or the run's end): a power cut resends at most a second's messages.
DURABLE_SECONDS = 1.0
# Digests claimed in one transaction (with the sent marks waiting): a crash leaves at most
# this many claimed but never handed over, queued again by ``recover`` with that attempt counted.
CLAIM_BATCH = 16
# Different recipients refused in a row with the same permanent reply: the relay's doing.
RELAY_STREAK = 3
# The outbox's name, as before delivery had a module of its own: log lines read the same.
log = logging.getLogger("digest.outbox")


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


class Feed:
    """The digests to deliver, put in as they become ready (``digest send`` puts in each
    chunk as soon as it is recorded); ``close`` says that no more will come."""

    def __init__(self, digests: Iterable[QueuedDigest] = ()) -> None:
        self._items: deque[QueuedDigest] = deque()
        self.fed: set[int] = set()  # the ids of every digest ever put in
        self.closed = False
        self._changed = asyncio.Event()
        self.put(digests)

    def put(self, digests: Iterable[QueuedDigest]) -> None:
        for digest in digests:
            self._items.append(digest)
            self.fed.add(digest.id)
        self._changed.set()

    def close(self) -> None:
        self.closed = True
        self._changed.set()

    def wake(self) -> None:
        """Let every worker waiting for a digest look again (a stop, new claims)."""
        self._changed.set()

    def take(self, most: int) -> list[QueuedDigest]:
        return [self._items.popleft() for _ in range(min(most, len(self._items)))]

    def __len__(self) -> int:
        return len(self._items)

    async def anything(self) -> bool:
        """Wait until a digest is put in (True) or the feed is closed empty (False)."""
        while not self._items and not self.closed:
            await self.changed()
        return bool(self._items)

    async def changed(self) -> None:
        """Wait for the next ``put``, ``close`` or ``wake``."""
        self._changed.clear()
        await self._changed.wait()


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
        self.reports: dict[int, DigestReport] = {}  # in the order the digests were taken
        self.suspects: list[_Suspect] = []
        self._claimed: deque[QueuedDigest] = deque()  # claimed ahead, not yet handed over
        self._durable_at = time.monotonic()
        self._unmarked: list[tuple[QueuedDigest, str]] = []  # sent, mark not yet written

    async def run(self, transport: Transport, ready: Sequence[QueuedDigest]) -> list[DigestReport]:
        """Deliver ``ready``: see ``run_feed``."""
        feed = Feed(ready)
        feed.close()
        return await self.run_feed(transport, feed)

    async def run_feed(self, transport: Transport, feed: Feed) -> list[DigestReport]:
        """Deliver what comes through ``feed`` until it is closed and empty; a DeliveryError
        stops every worker and is raised as itself.  Returns a report per digest taken.

        The refusals still under suspicion are counted at the end, or held when the run
        stops on a DeliveryError (it says nothing about them either).  Claimed digests
        not handed over (a stop, an error) are given back.
        """
        try:
            async with asyncio.TaskGroup() as group:
                workers = [
                    group.create_task(self._worker(transport, feed))
                    for _ in range(transport.concurrency)
                ]
                group.create_task(self._stop_watch(workers, feed))
            self._settle()
        except* DeliveryError as failed:
            self._hold_suspects(failure_reason(failed.exceptions[0]))
            raise failed.exceptions[0] from None
        except* DigestError as failed:  # a full disk, a vanished database: one line, no group
            raise failed.exceptions[0] from None
        finally:
            self._write_marks()
            self._give_back()
            self.store.make_durable()
        return list(self.reports.values())

    def _give_back(self) -> None:
        """Release what was claimed and not sent: the suspects (cancelled) and the claims ahead."""
        for digest in [*(s.digest for s in self.suspects), *self._claimed]:
            self.store.release(digest.id)
        self.suspects, self._claimed = [], deque()

    async def _stop_watch(self, workers: list["asyncio.Task[None]"], feed: Feed) -> None:
        """On a stop, give the messages in flight ``STOP_GRACE_SECONDS`` to finish, then
        cancel what is left (a worker waiting for its rate slot, a relay that stalls):
        a cancelled claim is given back, so the digest stays queued for the next run."""
        loop = asyncio.get_running_loop()
        while not self.stop.is_set():
            if all(worker.done() for worker in workers):
                return
            # wakes when the workers are done, not at the next poll: every run waited for it
            await asyncio.wait(workers, timeout=STOP_POLL_SECONDS)
        feed.wake()  # a worker waiting for the next digest sees the stop
        deadline = loop.time() + STOP_GRACE_SECONDS
        while loop.time() < deadline and not all(worker.done() for worker in workers):
            await asyncio.wait(workers, timeout=STOP_POLL_SECONDS)
        for worker in workers:
            worker.cancel()

    async def _worker(self, transport: Transport, feed: Feed) -> None:
        try:
            while (digest := await self._next(feed)) is not None:
                await self._deliver(transport, digest)
        finally:
            self._write_marks()

    async def _next(self, feed: Feed) -> QueuedDigest | None:
        """The next claimed digest, claiming ``CLAIM_BATCH`` at a time; None when the feed
        is closed and empty, or on a stop."""
        if self._unmarked:  # one turn first: the sends that returned with this one (a
            await asyncio.sleep(0)  # Maildir group) are marked in one transaction
        while not self.stop.is_set():
            if self._claimed:
                self._write_marks()  # before the next send: a crash resends only what is in flight
                return self._claimed.popleft()
            if feed:
                self._claim_batch(feed.take(CLAIM_BATCH))
                feed.wake()  # the other workers: there may be claims for them too
            elif feed.closed:
                return None
            else:
                await feed.changed()
        return None

    def _claim_batch(self, batch: Sequence[QueuedDigest]) -> None:
        """Claim ``batch`` in one transaction with the sent marks waiting (see ``_claim``).

        A digest whose subscriber is no longer active fails instead, unsent; one another
        run took is skipped.
        """
        for digest in batch:
            self.reports[digest.id] = DigestReport(
                digest.email, "queued", digest.papers, digest.message_id
            )
        active = [d for d in batch if d.subscriber_status == "active"]
        for digest in batch:
            if digest.subscriber_status != "active":
                self._not_active(digest)
        claimed = self._write_marks([d.id for d in active])
        for digest in active:
            if digest.id in claimed:
                self._claimed.append(digest)
            else:
                report = self.reports[digest.id]
                report.status, report.error = "skipped", "taken by another run"

    def _not_active(self, digest: QueuedDigest) -> None:
        why = f"subscriber is {digest.subscriber_status}"
        self.store.mark_failed(
            digest.id, digest.subscriber_id, f"not sent: {why}", bounce_limit=None
        )
        report = self.reports[digest.id]
        report.status, report.error = "failed", why

    def _claim(self, digest_id: int) -> bool:
        """Claim the digest again (a retry), with the sent marks waiting: ``_write_marks``."""
        return digest_id in self._write_marks([digest_id])

    def _write_marks(self, claims: Sequence[int] = ()) -> set[int]:
        """Write the sent marks waiting and make ``claims``, in one transaction (durable
        once a second); returns the digests claimed.

        A mark waits only from a worker's send to the next digest it takes, one turn of
        the event loop at most, so a crash resends at most the messages in flight.
        """
        unmarked, durable = self._unmarked, self._mark_durably()
        if not unmarked and not claims:
            return set()
        self._unmarked = []
        marks = [(digest.id, digest.subscriber_id, at) for digest, at in unmarked]
        return self.store.mark_and_claim(marks, claims, self.owner, durable=durable)

    def _mark_durably(self) -> bool:
        """True once a second while marks are waiting: see ``DURABLE_SECONDS``."""
        if not self._unmarked or time.monotonic() - self._durable_at < DURABLE_SECONDS:
            return False
        self._durable_at = time.monotonic()
        return True

    async def _deliver(self, transport: Transport, digest: QueuedDigest) -> None:
        """Send a claimed digest, retrying a deferral ``retries`` times in this run (each
        retry claims it again: another run may have taken it meanwhile)."""
        report = self.reports[digest.id]
        attempts_left = self.config.delivery.retries
        attempt = digest.attempts
        claimed = True
        while True:
            if not claimed and not self._claim(digest.id):
                report.status, report.error = "skipped", "taken by another run"
                return
            claimed = False
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
        data = digest.data if digest.data is not None else self.store.message(digest.id)
        if isinstance(data, Packed):  # fed packed: more were waiting than are kept raw
            data = unpack(data)
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
            self._unmarked.append((digest, iso(now)))  # written with the next claim
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
