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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parseaddr

from digest.addresses import wire
from digest.config import Config
from digest.errors import DigestError
from digest.mailer import DeliveryError, Envelope, Outcome, RelayRefused, Transport
from digest.models import Subscriber
from digest.reports import DigestReport, failure_reason
from digest.store import QueuedDigest, Store, iso

Clock = Callable[[], datetime]
STOP_GRACE_SECONDS = 5.0  # a stop lets the messages in flight finish this long, then cancels
STOP_POLL_SECONDS = 0.1
# A sent mark is written to the disk at once if the last one that was is this old; the
# others wait for it (or the run's end): a power cut resends at most a second's messages.
DURABLE_SECONDS = 1.0
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
        self._durable_at = time.monotonic()
        self._unmarked: list[tuple[QueuedDigest, str]] = []  # sent, mark not yet written

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
            self._write_marks()
            for suspect in self.suspects:  # cancelled: give them back untouched
                self.store.release(suspect.digest.id)
            self.store.make_durable()
        return [self.reports[d.id] for d in ready if d.id in self.reports]

    async def _stop_watch(self, workers: list["asyncio.Task[None]"]) -> None:
        """On a stop, give the messages in flight ``STOP_GRACE_SECONDS`` to finish, then
        cancel what is left (a worker waiting for its rate slot, a relay that stalls):
        a cancelled claim is given back, so the digest stays queued for the next run."""
        loop = asyncio.get_running_loop()
        while not self.stop.is_set():
            if all(worker.done() for worker in workers):
                return
            # wakes when the workers are done, not at the next poll: every run waited for it
            await asyncio.wait(workers, timeout=STOP_POLL_SECONDS)
        deadline = loop.time() + STOP_GRACE_SECONDS
        while loop.time() < deadline and not all(worker.done() for worker in workers):
            await asyncio.wait(workers, timeout=STOP_POLL_SECONDS)
        for worker in workers:
            worker.cancel()

    async def _worker(self, transport: Transport, queue: "asyncio.Queue[QueuedDigest]") -> None:
        try:
            while not queue.empty() and not self.stop.is_set():
                digest = queue.get_nowait()
                await self._deliver(transport, digest)
        finally:
            self._write_marks()

    def _claim(self, digest_id: int) -> bool:
        """Claim the digest in the same transaction as the sent marks waiting to be written.

        A mark waits only from a worker's last send to its next claim, with nothing
        awaited in between, so what a crash can leave is what it could before: one
        transaction where there were two (or more, with several workers).
        """
        with self.store.write(durable=self._mark_durably()):
            self._write_marks()
            return self.store.claim(digest_id, self.owner)

    def _write_marks(self) -> None:
        """Write the sent marks waiting, in one transaction (durable once a second)."""
        unmarked, self._unmarked = self._unmarked, []
        if not unmarked:
            return
        with self.store.write(durable=self._mark_durably()):
            for digest, at in unmarked:
                self.store.mark_sent(digest.id, digest.subscriber_id, at)

    def _mark_durably(self) -> bool:
        """True once a second while marks are waiting: see ``DURABLE_SECONDS``."""
        if not self._unmarked or time.monotonic() - self._durable_at < DURABLE_SECONDS:
            return False
        self._durable_at = time.monotonic()
        return True

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
            if not self._claim(digest.id):
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
