"""Send: 5,000 queued digests through the outbox to an SMTP sink in another process.

What is measured: ``delivery.deliver(store, config, SmtpTransport(config.smtp),
clock)`` with ``[smtp] concurrency = 4`` for 5,000 queued digests of 10 papers
each (about 28 KB per message), as messages/s, to an ``aiosmtpd`` sink running
in another process (``tests.smtp_servers.sink_process``) on loopback.  That is
everything delivery does per message: claim the digest (a write transaction),
read and decompress its stored bytes, one SMTP transaction on a pooled
connection, mark it sent (a write transaction).  The digests are recorded
beforehand the way ``digest send`` records them (``outbox.build`` +
``outbox.record`` for 5,000 subscribers whose generated filters match 10 to
60 of 2,000 new papers); each round delivers from a fresh copy of that store
to a fresh sink process.  Once ``deliver`` returns the clock stops, and every
Message-ID must be in the sink's record.

Why this ceiling: on loopback the cost of a message is the SMTP dialogue
(aiosmtplib on our side, aiosmtpd on the other), so the ceiling is that
dialogue with nothing around it: a bare asyncio loop with 4 ``aiosmtplib.SMTP``
connections, each opened once and reused, sending the same 5,000 message
bytes to the same recipients on a fresh sink process of the same kind.  The
ratio is the share of the wire's speed that survives digest's bookkeeping
(claims, state, compression).  Target (acceptance): at least 80% of the
ceiling's messages/s.  Three rounds, the order of the two flipping each
round, best of each kept; beside each rate is the sending process's CPU time
per message, steadier than rates when other work shares the machine (the sink
shares it too).  Peak memory is this process's peak RSS while delivering.
"""

import asyncio
import cProfile
import shutil
import sqlite3
import time
import zlib
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiosmtplib

from bench import BenchError, Figure, PeakMemory, Settings, Target
from bench.workload import (
    add_subscribers,
    build_store,
    matching_filters,
    new_papers,
    note,
    print_profile,
    subscriber_rows,
    utc_now,
    workdir,
    write_papers,
)
from digest import delivery, outbox
from digest.config import Config, from_mapping
from digest.due import due_subscribers
from digest.mailer import SmtpTransport
from digest.render import Renderer
from digest.store import Store
from tests.smtp_servers import RemoteSink, sink_process

STAGE = "send"
FULL_MESSAGES = 5_000
PAPERS = 10
WINDOW_PAPERS = 2_000
OLD_PAPERS = 500
MATCHES = (PAPERS, 60)
CONCURRENCY = 4
ROUNDS = 3  # a round sends 5,000 messages twice: about 40 s here
ARRIVAL_TIMEOUT = 60.0
TARGET = Target(min_ratio=0.80)
UNIT = "messages/s"
SENDER = "digest@example.org"


@dataclass(frozen=True, slots=True)
class Wire:
    """One queued message as it goes on the wire."""

    recipient: str
    message_id: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Timing:
    seconds: float
    cpu: float  # this process's CPU time (the sink's is its own)
    peak_mb: float = 0.0
    memory: str = ""


def run(settings: Settings) -> list[Figure]:
    count = settings.size(FULL_MESSAGES)
    with workdir(settings, STAGE) as folder:
        seed_db = prepare(folder, count, settings.seed)
        ids = {w.message_id for w in load_wire(seed_db)}
        ours: list[Timing] = []
        bare: list[Timing] = []
        rounds = settings.rounds(ROUNDS)
        for number in range(1, rounds + 1):
            round_dir = folder / f"round-{number}"
            round_dir.mkdir()
            if number % 2:  # the order flips each round: neither always runs first
                ours.append(deliver_ours(round_dir, seed_db, ids))
                bare.append(deliver_bare(round_dir, seed_db, ids))
            else:
                bare.append(deliver_bare(round_dir, seed_db, ids))
                ours.append(deliver_ours(round_dir, seed_db, ids))
            note(
                STAGE,
                f"round {number}/{rounds}: outbox.deliver {count / ours[-1].seconds:,.0f} "
                f"{UNIT}, bare aiosmtplib {count / bare[-1].seconds:,.0f} {UNIT}",
            )
            if not settings.keep:
                shutil.rmtree(round_dir)
        if settings.profile:
            profile_ours(folder / "profile", seed_db, ids)
    return figures(count, ours, bare, full=count >= FULL_MESSAGES)


def config_for(database: Path, port: int = 25) -> Config:
    return from_mapping(
        {
            "storage": {"database": str(database)},
            "delivery": {"backend": "smtp", "from": f"Paper Digest <{SENDER}>"},
            "smtp": {"host": "127.0.0.1", "port": port, "concurrency": CONCURRENCY},
            "digest": {"max_papers": PAPERS},
        }
    )


def prepare(folder: Path, count: int, seed: int) -> Path:
    """A store holding ``count`` queued digests of 10 papers, built and recorded by the outbox."""
    start = time.perf_counter()
    now = utc_now()
    window = min(WINDOW_PAPERS, max(count, 4 * PAPERS))
    papers = write_papers(folder, OLD_PAPERS, window, seed)
    database = folder / "queued.db"
    store = build_store(database, papers, now)
    try:
        filters = matching_filters(new_papers(store, now), count, seed, *MATCHES)
        add_subscribers(store, subscriber_rows(filters, now, seed=seed))
        config = config_for(database)
        due, _ = due_subscribers(store, config, now)
        built, skipped, max_seq = outbox.build(store, config, Renderer(config), due, now)
        reports = outbox.record(store, built, max_seq, store.last_digest_times())
    finally:
        store.close()
    queued = sum(1 for r in reports if r.status == "queued")
    if queued != count or skipped:
        raise BenchError(f"{queued:,} digests queued and {len(skipped):,} skipped, not {count:,}")
    note(
        STAGE,
        f"{queued:,} digests of {PAPERS} papers queued, prepared in "
        f"{time.perf_counter() - start:.1f} s",
    )
    return database


def load_wire(database: Path) -> list[Wire]:
    """Every queued message's recipient, Message-ID and bytes, in delivery order."""
    with closing(sqlite3.connect(database)) as conn:
        rows = conn.execute(
            "SELECT s.email, g.message_id, m.data FROM digests g "
            "JOIN subscribers s ON s.id = g.subscriber_id "
            "JOIN messages m ON m.digest_id = g.id "
            "WHERE g.status = 'queued' ORDER BY g.id"
        ).fetchall()
    return [Wire(email, mid, zlib.decompress(blob)) for email, mid, blob in rows]


@contextmanager
def fresh_sink(folder: Path, name: str) -> Iterator[RemoteSink]:
    with sink_process(folder / f"{name}-ids.txt") as sink:
        yield sink


def check_arrived(sink: RemoteSink, ids: set[str], who: str) -> None:
    """Every Message-ID in the sink's record, none twice."""
    try:
        got = sink.wait_for(len(ids), timeout=ARRIVAL_TIMEOUT)
    except AssertionError as err:
        raise BenchError(f"{who}: {err}") from None
    if len(got) != len(ids) or set(got) != ids:
        raise BenchError(
            f"{who}: the sink holds {len(got):,} messages, {len(set(got) & ids):,} "
            f"of the {len(ids):,} expected"
        )


# ours -------------------------------------------------------------------------


def deliver_ours(folder: Path, seed_db: Path, ids: set[str]) -> Timing:
    database = folder / "digest.db"
    shutil.copyfile(seed_db, database)
    with fresh_sink(folder, "ours") as sink:
        config = config_for(database, sink.port)
        store = Store(database)
        try:
            with PeakMemory() as memory:
                start, cpu = time.perf_counter(), time.process_time()
                reports = asyncio.run(
                    delivery.deliver(store, config, SmtpTransport(config.smtp), _clock)
                )
                seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
            unsent = [r for r in reports if r.status != "sent"]
            if len(reports) != len(ids) or unsent:
                first = unsent[0].as_json() if unsent else None
                raise BenchError(
                    f"outbox.deliver: {len(reports):,} reports, {len(unsent):,} not sent ({first})"
                )
            counts = store.digest_counts()
        finally:
            store.close()
        if counts != {"sent": len(ids)}:
            raise BenchError(f"after delivery the store counts {counts}")
        check_arrived(sink, ids, "outbox.deliver")
    return Timing(seconds, cpu, memory.peak_mb, memory.describe())


def profile_ours(folder: Path, seed_db: Path, ids: set[str]) -> None:
    """``outbox.deliver`` under cProfile, on a fresh copy of the store and a fresh sink."""
    folder.mkdir()
    profile = cProfile.Profile()
    profile.enable()
    deliver_ours(folder, seed_db, ids)
    profile.disable()
    print_profile(STAGE, "outbox.deliver (this process; the sink is another)", profile)


def _clock() -> datetime:
    return datetime.now(UTC)


# the ceiling --------------------------------------------------------------------


def deliver_bare(folder: Path, seed_db: Path, ids: set[str]) -> Timing:
    wire = load_wire(seed_db)  # loaded per round, outside the clock, dropped after
    with fresh_sink(folder, "bare") as sink:
        start, cpu = time.perf_counter(), time.process_time()
        asyncio.run(bare_send(sink.port, wire))
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        check_arrived(sink, ids, "bare aiosmtplib loop")
    return Timing(seconds, cpu)


async def bare_send(port: int, wire: Sequence[Wire]) -> None:
    """``CONCURRENCY`` connections, each opened once and reused, sharing one queue."""
    pending = iter(wire)

    async def worker() -> None:
        client = aiosmtplib.SMTP(
            hostname="127.0.0.1", port=port, local_hostname="localhost", start_tls=False
        )
        await client.connect()
        try:
            for item in pending:
                await client.sendmail(SENDER, [item.recipient], item.data)
        finally:
            await client.quit()

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


# the figures ------------------------------------------------------------------


def figures(count: int, ours: list[Timing], bare: list[Timing], *, full: bool) -> list[Figure]:
    best = min(ours, key=lambda t: t.seconds)
    ceiling = min(bare, key=lambda t: t.seconds)
    rounds = f"best of {len(ours)}" if len(ours) > 1 else "1 round"
    return [
        Figure(
            STAGE,
            f"outbox.deliver {count:,} digests over SMTP, concurrency {CONCURRENCY}",
            count / best.seconds,
            UNIT,
            ceiling=count / ceiling.seconds,
            peak_mb=max(t.peak_mb for t in ours),
            target=TARGET,
            note=f"{best.seconds:.2f} s; {_per_message(best, count)}; all arrived; {rounds}; "
            f"peak = {best.memory}",
            full_scale=full,
        ),
        Figure(
            STAGE,
            f"ceiling: bare aiosmtplib, {CONCURRENCY} reused connections, same bytes",
            count / ceiling.seconds,
            UNIT,
            note=f"{ceiling.seconds:.2f} s; {_per_message(ceiling, count)}; all arrived; {rounds}",
        ),
    ]


def _per_message(timing: Timing, count: int) -> str:
    """CPU per message of the sending process: steadier than rates on a shared machine."""
    return f"{timing.cpu / count * 1000:.2f} ms CPU per message"
