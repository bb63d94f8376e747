"""The whole send: what is due is built a chunk at a time, recorded, and delivered at once.

``send`` (``digest send``, the daemon's send job) queues again what a dead run
left ``sending``, then, for each chunk of ``RECORD_CHUNK`` due subscribers,
matches them here (``outbox.Builder``), renders them (in worker processes from
``POOL_FROM`` due digests on: ``render_pool``), records the chunk in one
transaction (``outbox.queue``) and puts what it queued into the delivery's
``Feed`` with the message still in hand: a digest just built is never read back
or decompressed to be sent.  It all runs on one event loop in this process
(one connection to the store, one transaction at a time): delivery goes on
while the next chunk is matched and the workers render the one after.

The outbox's promises are those of ``outbox`` and ``delivery``: a digest is
recorded before it is sent; a crash resends at most the messages in flight,
with the same Message-ID; a stop (SIGTERM) ends building at once, lets the
messages in flight finish, and leaves the rest queued or due for the next run.
What other runs left ready (queued, or deferred and due) goes first.  A transport
that cannot be used leaves every recorded digest queued, and building goes on,
so the next run has them all.
"""

import asyncio
import gc
import logging
import threading
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import nullcontext
from dataclasses import replace
from typing import TYPE_CHECKING

from digest.config import Config
from digest.due import due_subscribers
from digest.errors import DeliveryError
from digest.models import Subscriber
from digest.outbox import Builder, Built, Failed, Prepared, Recorded, queue
from digest.render import DigestContent, Renderer
from digest.render_pool import Outcome, RenderPool, render_one, workers_for
from digest.reports import DigestReport, SendReport
from digest.store import Packed, QueuedDigest, Store, iso
from digest.windows import Stopped

if TYPE_CHECKING:  # delivery (aiosmtplib) is imported by a send that delivers, not a dry run
    from digest.delivery import Clock, Feed
    from digest.transport import Transport

POOL_FROM = 200  # due digests from which rendering in worker processes pays for starting them
RECORD_CHUNK = 250
TURN_SECONDS = 0.002  # while matching, delivery gets a turn of the event loop this often
IN_HAND = 2 * RECORD_CHUNK  # digests fed with their bytes at most; then packed, then none
# Digests fed with their packed bytes (about 12 KB each) at most; later ones are read back
# from the store.  A Maildir on a slow disk delivers more slowly than a send builds, and
# reading back cost the main process 0.13 ms a digest (30,000 x 5,000: 19,057 of 20,966).
PACKED_IN_HAND = 4_000
log = logging.getLogger("digest.outbox")  # the log lines read as before this module existed

Chunk = list[Built | Failed | DigestReport]


def send(
    store: Store,
    config: Config,
    transport: "Transport",
    clock: "Clock",
    *,
    only: str | None = None,
    dry_run: bool = False,
    renderer: Renderer | None = None,
    stop: threading.Event | None = None,
) -> SendReport:
    """``digest send``: recover, then build, record and deliver what is due (see the
    module docstring); ``only`` one subscriber's.  A ``renderer`` given by the caller
    renders here, in this process; ``dry_run`` records and sends nothing."""
    now = clock()
    report = SendReport()
    builder = Builder(store, config, renderer or Renderer(config), now)
    subscriber = store.subscriber(only) if only else None
    only = subscriber.email if subscriber else only  # the stored spelling (an IDN domain)
    due, report.not_due = due_subscribers(store, config, now, only, builder.last_built)
    builder.due = due
    if not dry_run:
        from digest.delivery import pid_alive, recover

        recover(store, pid_alive)
    stop = stop or threading.Event()
    builder.stopping = stop.is_set
    workers = workers_for(config) if renderer is None and len(due) >= POOL_FROM else 1
    run = _Run(store, config, report, stop)
    try:
        with RenderPool(config, workers) if workers > 1 else nullcontext() as pool:
            chunks = _built_chunks(builder, due, stop, pool)
            if dry_run:
                asyncio.run(run.dry(chunks))
            else:
                deliver = run.deliver_while_building(chunks, builder, transport, clock, subscriber)
                asyncio.run(deliver)
    finally:
        gc.unfreeze()  # the daemon's next runs collect what this one held (``_built_chunks``)
    if stop.is_set():
        report.stopped = run.built < len(due) or report.count("queued") > 0
        log.info("send: stopped after %d of %d due digests", run.built, len(due))
    if not dry_run:
        report.waiting = store.waiting(subscriber.id if subscriber else None)
    return report


class _Run:
    """One send's bookkeeping: what was built and recorded, and its report."""

    def __init__(self, store: Store, config: Config, report: SendReport, stop: threading.Event):
        self.store = store
        self.config = config
        self.report = report
        self.stop = stop
        self.built = 0  # digests built, recorded or reported (not those a stop left due)

    async def dry(self, chunks: AsyncIterator[Chunk]) -> None:
        """Build every chunk and report what would be sent; nothing is recorded."""
        async for results in chunks:
            self.built += len(results)
            self.report.digests.extend(_dry_run(r) for r in results)

    async def deliver_while_building(
        self,
        chunks: AsyncIterator[Chunk],
        builder: Builder,
        transport: "Transport",
        clock: "Clock",
        subscriber: Subscriber | None,
    ) -> None:
        """Record each chunk as it is built and feed it to delivery, which runs meanwhile."""
        from digest.delivery import Feed

        feed = Feed(self._ready(clock, subscriber, set()))
        delivering = asyncio.create_task(self._delivery(transport, clock, feed))
        queued: list[tuple[int, DigestReport]] = []  # not the bytes: those go with the feed
        try:
            async for results in chunks:
                fresh = self._record(builder, results)
                queued.extend((r.queued.id, r.report) for r in fresh if r.queued is not None)
                if delivering.done():  # the transport failed: building goes on, all stays queued
                    continue
                feed.put(_in_hand(r.queued, r.packed, len(feed)) for r in fresh if r.queued)
        except BaseException:
            delivering.cancel()  # claims are given back; what was sent is marked
            await asyncio.gather(delivering, return_exceptions=True)
            raise
        if not delivering.done():  # what another run recorded meanwhile, as a send always did
            feed.put(self._ready(clock, subscriber, feed.fed))
        feed.close()
        delivered = await delivering
        self.report.digests.extend(delivered.values())
        self.report.digests.extend(report for id_, report in queued if id_ not in delivered)

    def _record(self, builder: Builder, results: Chunk) -> list[Recorded]:
        """Record one chunk in one transaction; the reports of what was not queued go in now."""
        self.built += len(results)
        self.report.digests.extend(r for r in results if isinstance(r, DigestReport))
        built = [r for r in results if isinstance(r, Built | Failed)]
        recorded = queue(self.store, built, builder.max_seq, builder.last_built)
        self.report.digests.extend(r.report for r in recorded if r.queued is None)
        return recorded

    def _ready(
        self, clock: "Clock", subscriber: Subscriber | None, fed: set[int]
    ) -> list[QueuedDigest]:
        """The digests ready now (``subscriber``'s alone when given) that were not fed yet."""
        ready = self.store.ready_digests(iso(clock()), subscriber.id if subscriber else None)
        return [digest for digest in ready if digest.id not in fed]

    async def _delivery(
        self, transport: "Transport", clock: "Clock", feed: "Feed"
    ) -> dict[int, DigestReport]:
        """Deliver what comes through ``feed``, opening the transport only once something
        does; a transport that cannot be used is the report's error, and ends delivery."""
        from digest.delivery import Deliverer

        if not await feed.anything():
            return {}
        deliverer = Deliverer(self.store, self.config, clock, self.stop)
        try:
            async with transport:
                await deliverer.run_feed(transport, feed)
        except DeliveryError as err:
            self.report.error = str(err)
        return deliverer.reports


def _in_hand(digest: QueuedDigest, packed: Packed | None, waiting: int) -> QueuedDigest:
    """The digest as fed: with its bytes while few wait, packed while more do, else without
    (read back when sent): memory stays bounded when the transport is slower than building."""
    if waiting < IN_HAND:
        return digest
    return replace(digest, data=packed if waiting < PACKED_IN_HAND else None)


async def _built_chunks(
    builder: Builder, due: Sequence[Subscriber], stop: threading.Event, pool: RenderPool | None
) -> AsyncIterator[Chunk]:
    """The due digests, built a chunk at a time, until ``stop`` is set (SIGTERM in any
    phase: what was built is still recorded, the rest stay due for the next run).

    With a pool, the next chunk is matched here and handed to the workers before the
    last one is taken back, so both stay busy.  Once the first chunk is matched, what
    the run holds (the due subscribers, the batch: millions of objects at 100,000
    subscribers) is frozen out of the cyclic collector's reach until the send ends:
    its full collections scanned it all, 11% of the main process's CPU at 30,000.
    """
    waiting: tuple[list[Prepared], AsyncIterator[Outcome]] | None = None
    for start in range(0, len(due), RECORD_CHUNK):
        if stop.is_set():
            break
        prepared = await _prepare_until(stop, builder, due[start : start + RECORD_CHUNK])
        if start == 0:  # the batch is built: the collector need not scan it again and again
            gc.freeze()
        contents = [p for p in prepared if isinstance(p, DigestContent)]
        if pool is None:
            yield await _finished(builder, prepared, _render_here(builder, contents, stop))
            continue
        rendering = aiter(pool.submit(contents))
        if waiting is not None:
            yield await _finished(builder, *waiting)
        waiting = prepared, rendering
    if waiting is not None:
        yield await _finished(builder, *waiting)


async def _prepare_until(
    stop: threading.Event, builder: Builder, chunk: Sequence[Subscriber]
) -> list[Prepared]:
    """Match the chunk, letting delivery run every ``TURN_SECONDS``; a stop while the
    wide windows' older papers are read (``windows.Stopped``) leaves the rest due."""
    prepared: list[Prepared] = []
    turn = _Turns()
    for subscriber in chunk:
        if stop.is_set():
            break
        try:
            prepared.append(builder.prepare(subscriber))
        except Stopped:
            break
        await turn.due()
    return prepared


async def _render_here(
    builder: Builder, contents: Sequence[DigestContent], stop: threading.Event
) -> AsyncIterator[Outcome]:
    """Render in this process, one by one, until ``stop`` is set."""
    turn = _Turns()
    for content in contents:
        if stop.is_set():
            return
        yield render_one(builder.renderer, content)
        await turn.due()


class _Turns:
    """Gives the event loop a turn once ``TURN_SECONDS`` have passed since the last one.

    A turn polls for I/O, which lets go of the GIL: at every subscriber, the render
    feeders' threads could keep this one waiting each time.
    """

    def __init__(self) -> None:
        self._last = time.monotonic()

    async def due(self) -> None:
        if time.monotonic() - self._last >= TURN_SECONDS:
            await asyncio.sleep(0)
            self._last = time.monotonic()


async def _finished(
    builder: Builder, prepared: Sequence[Prepared], outcomes: AsyncIterator[Outcome]
) -> Chunk:
    """The chunk's results in order; contents whose rendering never came (a stop) are left
    out, so their subscribers stay due."""
    results: Chunk = []
    for item in prepared:
        if not isinstance(item, DigestContent):
            results.append(item)
            continue
        outcome = await anext(outcomes, None)
        if outcome is None:
            break
        results.append(builder.finish(item, outcome))
    return results


def _dry_run(result: Built | Failed | DigestReport) -> DigestReport:
    if isinstance(result, DigestReport):
        return result
    if isinstance(result, Failed):
        return DigestReport(result.subscriber.email, "failed", 0, result.message_id, result.error)
    return DigestReport(
        result.subscriber.email, "dry-run", len(result.seqs), result.content.message_id
    )
