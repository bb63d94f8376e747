"""Cycle: a whole day for 10,000 subscribers, ``digest ingest`` then ``digest send`` to a Maildir.

What is measured: the two commands a cron job runs each day, each as a fresh
process timed by ``run_measured`` (wall time, its own peak RSS and CPU time):
``digest --config CFG ingest NEW_DUMP --json`` on a new generated dump of
1,000 papers, then ``digest --config CFG send --json`` with the default
settings (``[digest] max_papers = 25``) and the Maildir backend.  The store
already holds 5,000 older papers (ingested ten days ago, outside the lookback)
and 10,000 active daily subscribers with generated filters drawn from the
older papers' words (interests predate the new listing), inserted in bulk.
Send does everything: config and store, due subscribers, matching, rendering
every non-empty digest, recording them, delivering each to the Maildir.

No ceiling: this is an end-to-end budget, not a comparison.  Target
(acceptance): the whole cycle under 60 s with each process's peak memory under
300 MB.  Checked: the ingest JSON says every entry is a new paper; the send
JSON says every subscriber whose filter matches a new paper was sent a digest
and the others were skipped (the expected set is computed independently with
a fresh ``Corpus`` and ``parse``), none failed or deferred; the Maildir holds
exactly that many messages.
"""

import json
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from bench import BenchError, ChildRun, Figure, Settings, Target, run_measured
from bench.dumpgen import DumpInfo
from bench.ingest import child_env
from bench.workload import (
    FilterMaker,
    add_subscribers,
    build_store,
    note,
    print_profile,
    subscriber_rows,
    utc_now,
    workdir,
    write_papers,
)
from digest.config import DigestConfig
from digest.query import Corpus, parse
from digest.stemming import Stemmer
from digest.store import Store
from digest.windows import documents

STAGE = "cycle"
FULL_SUBSCRIBERS = 10_000
FULL_NEW = 1_000
FULL_OLD = 5_000
ROUNDS = 1  # one cycle takes about a minute here
TARGET = Target(max_value=60.0, max_peak_mb=300, unit="s")


@dataclass(frozen=True, slots=True)
class Cycle:
    ingest: ChildRun
    send: ChildRun
    sent: int
    skipped: int

    @property
    def seconds(self) -> float:
        return self.ingest.seconds + self.send.seconds

    @property
    def peak_mb(self) -> float:
        return max(self.ingest.peak_mb, self.send.peak_mb)


def run(settings: Settings) -> list[Figure]:
    count = settings.size(FULL_SUBSCRIBERS)
    new, old = settings.size(FULL_NEW), settings.size(FULL_OLD)
    with workdir(settings, STAGE) as folder:
        seed_db, dump = prepare(folder, count, new, old, settings.seed)
        rounds = settings.rounds(ROUNDS)
        cycles = []
        for number in range(1, rounds + 1):
            cycles.append(one_cycle(folder / f"round-{number}", seed_db, dump, count))
            last = cycles[-1]
            note(
                STAGE,
                f"round {number}/{rounds}: ingest {last.ingest.seconds:.2f} s, "
                f"send {last.send.seconds:.2f} s ({last.sent:,} sent, {last.skipped:,} skipped)",
            )
            if not settings.keep:
                shutil.rmtree(folder / f"round-{number}")
        if settings.profile:
            profile_send(folder / "profile", seed_db, dump)
    full = count >= FULL_SUBSCRIBERS and new >= FULL_NEW
    return figures(count, new, cycles, full)


def prepare(folder: Path, count: int, new: int, old: int, seed: int) -> tuple[Path, DumpInfo]:
    """A store with the older papers and the subscribers; the new dump, not yet ingested."""
    start = time.perf_counter()
    now = utc_now()
    papers = write_papers(folder, old, new, seed)
    database = folder / "seed.db"
    store = build_store(database, papers, now, new=False)
    try:
        rows = store.db.execute("SELECT title, abstract FROM papers ORDER BY seq").fetchall()
        made = FilterMaker([(r[0], r[1]) for r in rows], seed).many(count)
        add_subscribers(store, subscriber_rows((m.filter for m in made), now, seed=seed))
    finally:
        store.close()
    note(
        STAGE,
        f"store: {old:,} older papers, {count:,} subscribers; new dump of {new:,} entries; "
        f"prepared in {time.perf_counter() - start:.1f} s",
    )
    return database, papers.new


def one_cycle(folder: Path, seed_db: Path, dump: DumpInfo, count: int) -> Cycle:
    folder.mkdir(parents=True)
    database, maildir = folder / "digest.db", folder / "mail"
    shutil.copyfile(seed_db, database)
    config = write_config(folder, database, maildir)
    ingested = run_measured(digest(config, "ingest", str(dump.path), "--json"), folder, child_env())
    check_ingest(ingested, dump.entries)
    sent = run_measured(digest(config, "send", "--json"), folder, child_env())
    counts = check_send(sent, database, maildir, count)
    return Cycle(ingested, sent, counts["sent"], counts["skipped"])


def write_config(folder: Path, database: Path, maildir: Path) -> Path:
    config = folder / "config.toml"
    config.write_text(
        f"[storage]\ndatabase = {json.dumps(str(database))}\n\n"
        f'[delivery]\nbackend = "maildir"\nmaildir = {json.dumps(str(maildir))}\n',
        encoding="utf-8",
    )
    return config


def digest(config: Path, *args: str) -> list[str]:
    """The console script beside this interpreter (``.venv/bin/digest``), or ``python -m``."""
    script = Path(sys.executable).parent / "digest"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "digest"]
    return [*command, "--config", str(config), *args]


def check_ingest(child: ChildRun, entries: int) -> None:
    if child.exit_code != 0:
        raise BenchError(f"digest ingest exited {child.exit_code}: {child.stderr[-2000:]}")
    files = json.loads(child.stdout)["files"]
    got = (files[0]["status"], files[0]["new"]) if len(files) == 1 else None
    if got != ("ingested", entries):
        raise BenchError(f"digest ingest --json reported {files}, expected {entries:,} new")


def check_send(child: ChildRun, database: Path, maildir: Path, count: int) -> dict[str, int]:
    """The JSON counts against an independent expectation and the Maildir."""
    if child.exit_code != 0:
        raise BenchError(f"digest send exited {child.exit_code}: {child.stderr[-2000:]}")
    report = json.loads(child.stdout)
    statuses = Counter(d["status"] for d in report["digests"])
    counts = {k: report[k] for k in ("sent", "deferred", "failed", "skipped")}
    expected = expected_senders(database)
    files = sum(1 for p in (maildir / "new").iterdir() if p.is_file())
    problems = []
    if counts != {"sent": expected, "deferred": 0, "failed": 0, "skipped": count - expected}:
        problems.append(f"send --json counts {counts}, expected {expected:,} sent")
    if sum(statuses.values()) != count:
        problems.append(f"{sum(statuses.values()):,} digests reported for {count:,} subscribers")
    if files != expected:
        problems.append(f"the Maildir holds {files:,} messages, expected {expected:,}")
    if problems:
        raise BenchError("; ".join(problems))
    return counts


def expected_senders(database: Path) -> int:
    """Subscribers whose filter matches a paper of the lookback window (fresh Corpus, parse)."""
    store = Store(database)
    try:
        since = utc_now() - timedelta(days=DigestConfig().lookback_days)
        window = store.papers(since=since)
        corpus = Corpus(Stemmer(), documents(window))
        filters = [s.filter for s in store.subscribers(["active"])]
    finally:
        store.close()
    return sum(1 for f in filters if corpus.evaluate(parse(f)))


def profile_send(folder: Path, seed_db: Path, dump: DumpInfo) -> None:
    """``digest send`` under cProfile, after a plain ingest of the same dump into a fresh copy."""
    folder.mkdir(parents=True)
    database = folder / "digest.db"
    shutil.copyfile(seed_db, database)
    config = write_config(folder, database, folder / "mail")
    check_ingest(
        run_measured(digest(config, "ingest", str(dump.path), "--json"), folder, child_env()),
        dump.entries,
    )
    stats = folder / "send.prof"
    argv = [sys.executable, "-m", "cProfile", "-o", str(stats), "-m", "digest"]
    note(STAGE, "profiling digest send …")
    child = run_measured([*argv, "--config", str(config), "send", "--json"], folder, child_env())
    if child.exit_code != 0:
        raise BenchError(f"digest send under cProfile exited {child.exit_code}")
    print_profile(STAGE, "digest send (whole process)", stats)


def figures(count: int, new: int, cycles: list[Cycle], full: bool) -> list[Figure]:
    best = min(cycles, key=lambda c: c.seconds)
    rounds = f"best of {len(cycles)}" if len(cycles) > 1 else "1 round"
    return [
        Figure(
            STAGE,
            f"cycle: ingest {new:,} papers + send for {count:,} subscribers (CLI, Maildir)",
            best.seconds,
            "s",
            peak_mb=max(c.peak_mb for c in cycles),
            target=TARGET,
            note=f"{best.sent:,} digests sent, {best.skipped:,} skipped (no match); {rounds}; "
            "peak = the larger of the two processes' own peak RSS",
            full_scale=full,
        ),
        Figure(
            STAGE,
            "step: digest ingest --json",
            best.ingest.seconds,
            "s",
            peak_mb=best.ingest.peak_mb,
            note=f"{best.ingest.cpu_seconds:.2f} s CPU",
        ),
        Figure(
            STAGE,
            "step: digest send --json",
            best.send.seconds,
            "s",
            peak_mb=best.send.peak_mb,
            note=f"{best.send.cpu_seconds:.2f} s CPU; "
            f"{best.send.seconds / max(best.sent, 1) * 1000:.1f} ms per digest sent",
        ),
    ]
