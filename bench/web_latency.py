"""Web latency: ``/``, ``/feeds/all.atom`` and ``/healthz`` with and without a writer.

What is measured: the latency of sequential GETs (one at a time, each on a
fresh loopback connection, the three paths in turn) to the real web front
(``digest.web.create_app`` under uvicorn, started by ``bench.feeds`` in a
process of its own) over a store of 2,000 papers and two subscribers built
through digest's own ingest.  First with no writer (``QUIET_REQUESTS`` per
path, after a warm-up), then for exactly as long as a separate
``digest ingest`` process stores a 50,000-entry dump into the same database
(one write transaction: the ingest holds SQLite's write lock from its first
batch to its commit).  For each path: p50 and p99 in ms, and the answers that
were not 2xx/3xx or did not come at all (connection errors, no answer within
``REQUEST_SECONDS``).

Why the ceiling: readers open the store without a lock (``Store(path,
create=False)``) and WAL lets them read the last commit while a writer
writes, so an ingest should cost a reader only the CPU it takes away.  The
ceiling of each path's p99 during the ingest is therefore the same path's p99
with no writer, measured a moment before on the same server and store: the
ratio is the slowdown the writer causes.  Target (acceptance): p99 during the
ingest at most 250 ms on every path, with no error at all.  An error is not a
latency, so a path with any error reports ``inf`` (a FAIL whatever its p99),
and the note says how many and the first reasons.

Checks that the two really overlapped: the ingest must report every entry as
new; each path must have had at least ``MIN_DURING`` answers while it ran;
and the ingest must have held the write lock for most of the time it ran
(``MIN_LOCKED_SHARE``).  The lock is seen from outside without touching it:
before each request, ``fcntl(F_GETLK)`` asks whether another process holds
SQLite's WAL write lock (byte 120 of the ``-shm`` file) and which.  The note
gives the share of the ingest's time under that lock, the p99 of the requests
sent under it, the worst latency, and the worst in the few seconds after the
ingest (not a target).  ``--scale`` shrinks the dump (not below
``MIN_ENTRIES``).

What it showed (2 cores; ingest, its parser process, server and client share
them): p50 barely moves, p99 grows 2-4x to about 10 ms, and the requests sent
under the write lock are no slower than the rest, so readers do not wait for
the writer; the slowdown is CPU.  ``/`` reads no store at all (the same CPU
share, for comparison); ``/healthz`` counts the papers (``count(*)``, so it
grows with the store).  The worst single request (0.25-0.45 s, one per
ingest, below p99) is the first feed request after the commit: the feed cache
rebuilds over the grown store (about 0.2 s uncached at 52,000 papers on an
idle machine: the trending query materialises ``paper_trends``, and so does
the fetch of the 50 papers), and other feed requests queue behind it on the
feeds thread.  The server here is ``bench.feeds``' (no identity check in
``/healthz``, no access log), not ``digest serve``.
"""

import asyncio
import fcntl
import json
import math
import os
import struct
import subprocess
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from bench import BenchError, ChildRun, Figure, Settings, Target
from bench.feeds import Server, fetch, http_request, start_server, stop_server
from bench.ingest import check_report, child_env, digest_argv, write_config
from bench.workload import (
    add_subscribers,
    build_store,
    note,
    subscriber_rows,
    utc_now,
    workdir,
    write_papers,
)

STAGE = "web_latency"
FULL_ENTRIES = 50_000  # the dump ingested while the web front is measured
MIN_ENTRIES = 10_000  # below this the ingest is mostly start-up: the lock check would fail
PAPERS = 2_000  # in the store before the measurements
FILTERS = ("diffusion", '"language model" OR transformer*')  # the subscribers
PATHS = ("/", "/feeds/all.atom", "/healthz")
WARMUP_REQUESTS = 20  # per path, not counted: the feed's first build, templates
QUIET_REQUESTS = 300  # per path, no writer
MAX_REQUESTS = 200_000  # all paths, during the ingest: a bound on the loop
REQUEST_SECONDS = 5.0  # a request not answered by then is an error
INGEST_SECONDS = 900.0  # the ingest must end by then, or the stage fails
AFTER_SECONDS = 3.0  # sampled after the ingest ends, for the note (not a target)
AFTER_ROUNDS = 2_000
MIN_DURING = 30  # answers per path while the ingest ran
MIN_LOCKED_SHARE = 0.5  # of the requests sent during the ingest, while it held the write lock
TARGET = Target(max_value=250, unit="ms")
UNIT = "ms"
ERRORS_SHOWN = 3

# SQLite's WAL index (the ``-shm`` file) keeps its locks from byte 120; the first,
# WAL_WRITE_LOCK, is held exclusively by the one writer (src/wal.c, src/os_unix.c).
WAL_WRITE_LOCK_BYTE = 120
FLOCK = "hhqqi4x"  # Linux ``struct flock``: type, whence, start, len, pid


# the write lock, seen from outside --------------------------------------------------


class WriteLockProbe:
    """Who holds SQLite's WAL write lock on a database: ``F_GETLK``, which takes nothing."""

    def __init__(self, database: Path) -> None:
        self.fd = os.open(f"{database}-shm", os.O_RDONLY)

    def holder(self) -> int:
        """The pid of the process holding the write lock, 0 when nobody does."""
        query = struct.pack(FLOCK, fcntl.F_WRLCK, os.SEEK_SET, WAL_WRITE_LOCK_BYTE, 1, 0)
        found = struct.unpack(FLOCK, fcntl.fcntl(self.fd, fcntl.F_GETLK, query))
        return 0 if found[0] == fcntl.F_UNLCK else found[4]

    def close(self) -> None:
        os.close(self.fd)


# the client -----------------------------------------------------------------------


@dataclass
class Samples:
    """One path's answers in one phase: latencies of the good ones, and the errors."""

    latencies_ms: list[float] = field(default_factory=list)
    locked_ms: list[float] = field(default_factory=list)  # of those sent under the write lock
    errors: list[str] = field(default_factory=list)
    locked: int = 0  # requests sent while the ingest held the write lock

    @property
    def requests(self) -> int:
        return len(self.latencies_ms) + len(self.errors)

    def percentile(self, share: float, *, locked: bool = False) -> float:
        """Nearest rank; ``inf`` when any request failed or none was answered."""
        found = self.locked_ms if locked else self.latencies_ms
        if self.errors or not found:
            return math.inf
        ranked = sorted(found)
        return ranked[max(0, math.ceil(share * len(ranked)) - 1)]


@dataclass
class Phase:
    """Every path's samples in one phase, and how long the ingest held the write lock."""

    paths: dict[str, Samples] = field(default_factory=lambda: {p: Samples() for p in PATHS})
    seconds: float = 0.0
    locked_seconds: float = 0.0

    @property
    def locked_share(self) -> float:
        return self.locked_seconds / self.seconds if self.seconds else 0.0


async def timed_get(port: int, path: str, request: bytes) -> tuple[float, str | None]:
    """One GET on a fresh connection: its latency in ms, and what was wrong with it (or None)."""
    start = time.perf_counter()
    try:
        status, _, body = await asyncio.wait_for(fetch(port, request), REQUEST_SECONDS)
    except TimeoutError:
        return REQUEST_SECONDS * 1000, f"no answer within {REQUEST_SECONDS:g} s"
    except (OSError, EOFError, ValueError, BenchError, asyncio.IncompleteReadError) as err:
        return (time.perf_counter() - start) * 1000, repr(err)
    elapsed = (time.perf_counter() - start) * 1000
    if not 200 <= status < 400:
        return elapsed, f"HTTP {status}"
    if path == "/healthz" and json.loads(body).get("status") != "ok":
        return elapsed, f"healthz said {body[:200]!r}"
    return elapsed, None


async def sample(
    port: int,
    rounds: int,
    ingest: "subprocess.Popen[bytes] | None" = None,
    probe: WriteLockProbe | None = None,
    seconds: float = math.inf,
) -> Phase:
    """The paths in turn, ``rounds`` times, or until ``ingest`` exits or ``seconds`` pass.

    Before each request the probe says whether the ingest holds the write lock;
    the time until the next look is counted as locked or not accordingly.
    """
    requests = {path: http_request(port, path) for path in PATHS}
    phase = Phase()
    start = last = time.perf_counter()
    locked = False
    for _ in range(rounds):
        for path in PATHS:
            now = time.perf_counter()
            phase.locked_seconds += (now - last) * locked
            last = now
            if (ingest is not None and ingest.poll() is not None) or now - start > seconds:
                phase.seconds = now - start
                return phase
            locked = probe is not None and ingest is not None and probe.holder() == ingest.pid
            elapsed, error = await timed_get(port, path, requests[path])
            record(phase.paths[path], elapsed, error, locked)
    phase.seconds = time.perf_counter() - start
    return phase


def record(samples: Samples, elapsed: float, error: str | None, locked: bool) -> None:
    samples.locked += locked
    if error is not None:
        samples.errors.append(error)
        return
    samples.latencies_ms.append(elapsed)
    if locked:
        samples.locked_ms.append(elapsed)


# the stage ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Results:
    quiet: Phase
    during: Phase
    after: Phase  # the seconds right after the ingest: the feed is rebuilt once
    ingest_seconds: float


def run(settings: Settings) -> list[Figure]:
    """Build the store, start the server, measure without and then during an ingest."""
    entries = max(MIN_ENTRIES, settings.size(FULL_ENTRIES, settings.entries))
    with workdir(settings, STAGE) as folder:
        results = measure_all(folder, entries, settings)
    return figures(results, entries, full=entries >= FULL_ENTRIES)


def measure_all(folder: Path, entries: int, settings: Settings) -> Results:
    now = utc_now()
    papers = write_papers(folder, PAPERS, entries, settings.seed)
    config = write_config(folder)  # the ingest's: [storage] database = folder/digest.db
    database = folder / "digest.db"
    store = build_store(database, papers, now - timedelta(days=1), new=False)
    try:
        add_subscribers(store, subscriber_rows(FILTERS, now, seed=settings.seed))
    finally:
        store.close()
    note(STAGE, f"{PAPERS:,} papers, {len(FILTERS)} subscribers; the dump: {entries:,} entries")
    server = start_server(folder, database, None)
    try:
        asyncio.run(sample(server.port, WARMUP_REQUESTS))
        quiet = asyncio.run(sample(server.port, QUIET_REQUESTS))
        note(STAGE, f"without a writer: {_summary(quiet)}")
        check_quiet(quiet)
        during, seconds = measure_during_ingest(server, folder, config, papers.new.path, entries)
        note(STAGE, f"during the ingest ({seconds:.1f} s): {_summary(during)}")
        after = asyncio.run(sample(server.port, AFTER_ROUNDS, seconds=AFTER_SECONDS))
        note(STAGE, f"after the commit ({after.seconds:.1f} s): {_summary(after)}")
    finally:
        stop_server(server)
    return Results(quiet, during, after, seconds)


def measure_during_ingest(
    server: Server, folder: Path, config: Path, dump: Path, entries: int
) -> tuple[Phase, float]:
    """Start ``digest ingest``, sample until it exits; check it overlapped and held the lock."""
    probe = WriteLockProbe(folder / "digest.db")
    out, err = folder / "ingest.out", folder / "ingest.err"
    try:
        with out.open("wb") as stdout, err.open("wb") as stderr:
            start = time.perf_counter()
            ingest = subprocess.Popen(
                digest_argv(config, dump), cwd=folder, env=child_env(), stdout=stdout, stderr=stderr
            )
            try:
                during = asyncio.run(
                    asyncio.wait_for(
                        sample(server.port, MAX_REQUESTS, ingest, probe), INGEST_SECONDS
                    )
                )
                if ingest.poll() is None:
                    raise BenchError(f"the ingest outlasted {MAX_REQUESTS:,} rounds of requests")
            except TimeoutError:
                raise BenchError(f"the ingest did not end within {INGEST_SECONDS:.0f} s") from None
            finally:
                if ingest.poll() is None:
                    ingest.kill()
                ingest.wait()
            seconds = time.perf_counter() - start
    finally:
        probe.close()
    child = ChildRun(
        seconds,
        0.0,
        0.0,
        ingest.returncode,
        out.read_text(encoding="utf-8", errors="replace"),
        err.read_text(encoding="utf-8", errors="replace"),
    )
    check_report(child, entries)
    check_overlap(during)
    return during, seconds


def check_quiet(quiet: Phase) -> None:
    """Without a writer every request must succeed: otherwise there is no ceiling to compare."""
    failed = {path: s.errors[:ERRORS_SHOWN] for path, s in quiet.paths.items() if s.errors}
    if failed:
        raise BenchError(f"errors without any writer: {failed}")


def check_overlap(during: Phase) -> None:
    """Enough answers on every path while the ingest ran, most of that time under its lock."""
    for path, samples in during.paths.items():
        if samples.requests < MIN_DURING:
            raise BenchError(
                f"only {samples.requests} requests to {path} while the ingest ran "
                f"(at least {MIN_DURING} needed): make the dump bigger"
            )
    if during.locked_share < MIN_LOCKED_SHARE:
        raise BenchError(
            f"the ingest held the write lock for only {during.locked_share:.0%} of the "
            f"{during.seconds:.1f} s measured while it ran (at least {MIN_LOCKED_SHARE:.0%} needed)"
        )


def _summary(phase: Phase) -> str:
    return "; ".join(
        f"{path} p50 {s.percentile(0.5):.2f} p99 {s.percentile(0.99):.2f} ms, "
        f"{s.requests} requests, {len(s.errors)} errors"
        for path, s in phase.paths.items()
    )


# the figures ----------------------------------------------------------------------


def figures(results: Results, entries: int, *, full: bool) -> list[Figure]:
    return [
        Figure(
            STAGE,
            f"GET {path}: p99 during a {entries:,}-entry ingest",
            results.during.paths[path].percentile(0.99),
            UNIT,
            ceiling=results.quiet.paths[path].percentile(0.99),
            target=TARGET,
            note=_note(results, path),
            full_scale=full,
        )
        for path in PATHS
    ]


def _note(results: Results, path: str) -> str:
    quiet, during, seconds = results.quiet.paths[path], results.during, results.ingest_seconds
    mine, after = during.paths[path], results.after.paths[path]
    text = (
        f"errors {len(mine.errors)} (any error makes the value inf: FAIL); "
        f"p50 {mine.percentile(0.5):.2f} ms during, {quiet.percentile(0.5):.2f} without; "
        f"max {max(mine.latencies_ms, default=math.inf):.1f} ms during; "
        f"{mine.requests:,} requests during the {seconds:.1f} s ingest, "
        f"{quiet.requests:,} without (ceiling: p99 without a writer); "
        f"write lock held {during.locked_share:.0%} of that time, "
        f"p99 of the {len(mine.locked_ms):,} requests sent under it "
        f"{mine.percentile(0.99, locked=True):.2f} ms; in the {results.after.seconds:.0f} s "
        f"after it: max {max(after.latencies_ms, default=math.inf):.1f} ms, "
        f"{len(after.errors)} errors"
    )
    errors = mine.errors[:ERRORS_SHOWN]
    return f"{text}; first errors: {', '.join(errors)}" if errors else text
