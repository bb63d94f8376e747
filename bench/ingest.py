"""Ingest: ``digest ingest`` on a generated dump of 100,000 papers, next to bare SQLite.

What is measured: the wall time of ``digest --config CFG ingest DUMP --json``
run as a fresh process on a fresh database, everything included (interpreter
start, hashing the file, parsing, paper ids, links, storing papers and
sightings, filling the FTS5 index, committing, the WAL checkpoint on close),
as entries/s; and its peak resident memory, which must stay under 300 MB
because the dump is streamed, never held whole.  A dump this big is parsed by
digest's parser process (``digest.dump_reader``) while digest stores the
previous batch, so the CPU time printed is that of both processes, and the
peak memory is digest's plus the parser process's own (measured alone), an
upper bound of what the two hold at once.

Why this ceiling: almost all of an ingest is SQLite work that digest cannot
avoid, writing the rows and tokenising them into the FTS5 index (the
tokenizer dominates: the plain insert runs about ten times faster).  The
ceiling is that work with nothing around it, on the same rows in the same
temporary folder: bare ``sqlite3`` ``executemany`` into a plain table with an
INTEGER PRIMARY KEY and no other index, then an external-content FTS5 table
over title and abstract with the store's tokenizer, filled with ``'rebuild'``,
in one transaction on a WAL database, committed and closed.  The rows are
prepared in memory beforehand and not timed.  The ratio is thus the share of
the ingest spent on unavoidable SQLite work; the rest is digest's overhead.

Acceptance target: at least 80% of the ceiling and a peak under 300 MB, on at
least 100,000 entries with abstracts of seed length (about 1.2 KB).

Rounds: the machine's speed swings by up to 1.8× in phases of a few seconds
(a fixed Python loop measured 0.16 s and 0.29 s a few seconds apart), and one
run lasts about ten.  So the CLI and the ceiling alternate for five rounds, the
ratio is that of the best of each, and the median of the five per-round ratios
is printed beside it as a check on luck.
"""

import json
import os
import pstats
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench import BenchError, ChildRun, Figure, Settings, Target, progress, run_measured
from bench.dumpgen import DumpInfo, load_corpus, write_dump
from digest.dump_reader import WORKER_MIN_BYTES, worker_argv
from digest.dumps import DumpParser
from digest.stemming import FTS_TOKENIZE

STAGE = "ingest"
ROUNDS = 5
FULL_ENTRIES = 100_000
PROFILE_ENTRIES = 20_000
TARGET = Target(min_ratio=0.80, max_peak_mb=300)
FIRST_SEEN = "2026-11-24T07:00:00Z"
UNIT = "entries/s"
Row = tuple[int, str, str, str, str, str]


@dataclass(frozen=True, slots=True)
class CeilingTimes:
    """Seconds spent by bare SQLite on each part of the same work, and its CPU time."""

    insert: float
    rebuild: float
    commit: float
    cpu: float

    @property
    def total(self) -> float:
        return self.insert + self.rebuild + self.commit


@dataclass(frozen=True, slots=True)
class Rounds:
    """The fastest CLI run and the fastest ceiling of several interleaved rounds."""

    cli: ChildRun
    ceiling: CeilingTimes
    peak_mb: float
    worker_peak_mb: float
    paired_ratios: list[float]

    @property
    def count(self) -> int:
        return len(self.paired_ratios)


def run(settings: Settings) -> list[Figure]:
    """Generate the dump, time the CLI and the ceiling on it in rounds, return the figures."""
    entries = settings.size(FULL_ENTRIES, settings.entries)
    with workdir(settings) as folder:
        dump = generate(folder / "dump.txt", entries, settings.seed)
        best = measure_rounds(folder, dump, settings)
        if settings.profile:
            profile_cli(folder / "profile", min(entries, PROFILE_ENTRIES), settings.seed)
    return figures(entries, best)


def measure_rounds(folder: Path, dump: DumpInfo, settings: Settings) -> Rounds:
    """CLI, then ceiling, round after round; the best of each (machine noise only slows down)."""
    rows = load_rows(dump)
    clis: list[ChildRun] = []
    ceilings: list[CeilingTimes] = []
    rounds = settings.rounds(ROUNDS)
    for number in range(1, rounds + 1):
        round_dir = folder / f"round-{number}"
        clis.append(measure_cli(round_dir / "cli", dump))
        ceilings.append(measure_ceiling(round_dir / "ceiling.db", rows))
        progress(
            f"[{STAGE}] round {number}/{rounds}: digest ingest {clis[-1].seconds:.2f} s, "
            f"ceiling {ceilings[-1].total:.2f} s ({ceilings[-1].total / clis[-1].seconds:.1%})"
        )
        if not settings.keep:
            shutil.rmtree(round_dir)
    return Rounds(
        cli=min(clis, key=lambda c: c.seconds),
        ceiling=min(ceilings, key=lambda c: c.total),
        peak_mb=max(c.peak_mb for c in clis),
        worker_peak_mb=measure_worker_peak(folder, dump),
        paired_ratios=[c.total / r.seconds for r, c in zip(clis, ceilings, strict=True)],
    )


def measure_worker_peak(folder: Path, dump: DumpInfo) -> float:
    """The parser process on its own, its frames thrown away: its peak resident memory.

    Zero when the dump is too small for digest to start one.
    """
    if dump.path.stat().st_size < WORKER_MIN_BYTES:
        return 0.0
    argv = worker_argv(dump.path, sys.stdout.fileno())
    child = run_measured(argv, folder, child_env(), keep_stdout=False)
    if child.exit_code != 0:
        raise BenchError(f"the parser process exited {child.exit_code}: {child.stderr[-2000:]}")
    return child.peak_mb


@contextmanager
def workdir(settings: Settings) -> Iterator[Path]:
    """A fresh temporary folder, removed afterwards unless ``--keep``."""
    folder = Path(tempfile.mkdtemp(prefix="digest-bench-ingest-", dir=settings.tmp_root))
    try:
        yield folder
    finally:
        if settings.keep:
            progress(f"[{STAGE}] kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


def generate(path: Path, entries: int, seed: int) -> DumpInfo:
    progress(f"[{STAGE}] generating a {entries:,}-entry dump (seed {seed}) …")
    start = time.perf_counter()
    info = write_dump(path, entries, seed)
    seconds = time.perf_counter() - start
    progress(f"[{STAGE}] dump: {info.bytes / 1e6:,.1f} MB in {seconds:.1f} s")
    return info


# the CLI path ----------------------------------------------------------------


def measure_cli(folder: Path, dump: DumpInfo) -> ChildRun:
    """``digest ingest --json`` on a fresh database, in a fresh, measured process."""
    config = write_config(folder)
    settle()
    progress(f"[{STAGE}] timing digest ingest …")
    child = run_measured(digest_argv(config, dump.path), folder, child_env())
    check_report(child, dump.entries)
    check_database(folder / "digest.db", dump.entries)
    return child


def write_config(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "config.toml"
    database = json.dumps(str(folder / "digest.db"))
    config.write_text(f"[storage]\ndatabase = {database}\n", encoding="utf-8")
    return config


def digest_argv(config: Path, dump: Path, python_args: Sequence[str] = ()) -> list[str]:
    """The console script beside this interpreter (``.venv/bin/digest``), or ``python -m``."""
    script = Path(sys.executable).parent / "digest"
    if python_args or not script.exists():
        command = [sys.executable, *python_args, "-m", "digest"]
    else:
        command = [str(script)]
    return [*command, "--config", str(config), "ingest", str(dump), "--json"]


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DIGEST_CONFIG"}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def check_report(child: ChildRun, entries: int) -> None:
    """The JSON must say every entry was stored as a new paper."""
    if child.exit_code != 0:
        raise BenchError(f"digest ingest exited {child.exit_code}: {child.stderr[-2000:]}")
    files = json.loads(child.stdout)["files"]
    got = (files[0]["status"], files[0]["entries"], files[0]["new"]) if len(files) == 1 else None
    if got != ("ingested", entries, entries):
        raise BenchError(f"digest ingest --json reported {files}, expected {entries:,} new")


def check_database(database: Path, entries: int) -> None:
    with closing(sqlite3.connect(database)) as conn:
        papers = conn.execute("SELECT count(*) FROM papers").fetchone()[0]
        indexed = conn.execute("SELECT count(*) FROM papers_fts_docsize").fetchone()[0]
    if papers != entries or indexed != entries:
        raise BenchError(f"database holds {papers:,} papers, {indexed:,} indexed")


def settle() -> None:
    """Flush dirty pages left by earlier steps so they are not written during a timing."""
    if hasattr(os, "sync"):
        os.sync()


# the ceiling ------------------------------------------------------------------


def measure_ceiling(database: Path, rows: list[Row]) -> CeilingTimes:
    """Bare executemany + FTS5 rebuild of the same rows, prepared before the clock starts."""
    database.parent.mkdir(parents=True, exist_ok=True)
    settle()
    return bare_sqlite(database, rows)


def load_rows(dump: DumpInfo) -> list[Row]:
    """The rows digest stores for each entry: seq, id, title, abstract, links, first_seen."""
    with dump.path.open("rb") as handle:
        rows = [
            (e.position, e.paper_id, e.title, e.abstract, json.dumps(e.links), FIRST_SEEN)
            for e in DumpParser(str(dump.path)).parse(handle)
        ]
    if len(rows) != dump.entries:
        raise BenchError(f"the dump parsed into {len(rows):,} rows, expected {dump.entries:,}")
    return rows


def bare_sqlite(database: Path, rows: list[Row]) -> CeilingTimes:
    conn = sqlite3.connect(database, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    create_ceiling_tables(conn)
    conn.execute("BEGIN IMMEDIATE")
    cpu, start = time.process_time(), time.perf_counter()
    conn.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?)", rows)
    inserted = time.perf_counter()
    conn.execute("INSERT INTO t_fts(t_fts) VALUES ('rebuild')")
    rebuilt = time.perf_counter()
    conn.execute("COMMIT")
    conn.close()
    done = time.perf_counter()
    cpu = time.process_time() - cpu
    return CeilingTimes(inserted - start, rebuilt - inserted, done - rebuilt, cpu)


def create_ceiling_tables(conn: sqlite3.Connection) -> None:
    conn.execute(
        "CREATE TABLE t (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, title TEXT NOT NULL, "
        "abstract TEXT NOT NULL, links TEXT NOT NULL, first_seen TEXT NOT NULL)"
    )
    conn.execute(
        "CREATE VIRTUAL TABLE t_fts USING fts5(title, abstract, content='t', "
        f"content_rowid='seq', tokenize='{FTS_TOKENIZE}')"
    )


# the figures ------------------------------------------------------------------


def figures(entries: int, best: Rounds) -> list[Figure]:
    cli, ceiling = best.cli, best.ceiling
    rounds = f"best of {best.count}" if best.count > 1 else "1 round"
    return [
        Figure(
            STAGE,
            "digest ingest (CLI)",
            entries / cli.seconds,
            UNIT,
            ceiling=entries / ceiling.total,
            peak_mb=best.peak_mb + best.worker_peak_mb,
            target=TARGET,
            note=f"{entries:,} entries, {cli.seconds:.2f} s wall, {cli.cpu_seconds:.2f} s CPU "
            f"(both processes), {rounds}, median ratio of the rounds "
            f"{statistics.median(best.paired_ratios):.1%}; peak {best.peak_mb:,.1f} MB digest "
            f"+ {best.worker_peak_mb:,.1f} MB parser process",
            full_scale=entries >= FULL_ENTRIES,
        ),
        _ceiling_figure(
            "ceiling: executemany + FTS5 rebuild + commit",
            entries,
            ceiling.total,
            f", {ceiling.cpu:.2f} s CPU, {rounds}",
        ),
        _ceiling_figure("ceiling part: executemany insert alone", entries, ceiling.insert),
        _ceiling_figure("ceiling part: FTS5 rebuild alone", entries, ceiling.rebuild),
        _ceiling_figure("ceiling part: commit and close", entries, ceiling.commit),
    ]


def _ceiling_figure(name: str, entries: int, seconds: float, extra: str = "") -> Figure:
    return Figure(STAGE, name, entries / seconds, UNIT, note=f"{seconds:.2f} s wall{extra}")


# profiling -------------------------------------------------------------------


def profile_cli(folder: Path, entries: int, seed: int) -> None:
    """``digest ingest`` under cProfile on a smaller dump; prints the top functions."""
    folder.mkdir(parents=True, exist_ok=True)
    dump = write_dump(folder / "dump.txt", entries, seed, load_corpus())
    stats = folder / "ingest.prof"
    argv = digest_argv(write_config(folder), dump.path, ["-m", "cProfile", "-o", str(stats)])
    progress(f"[{STAGE}] profiling digest ingest on {entries:,} entries …")
    child = run_measured(argv, folder, child_env())
    check_report(child, entries)
    print_profile(stats)


def print_profile(stats: Path, top: int = 25) -> None:
    for order in (pstats.SortKey.CUMULATIVE, pstats.SortKey.TIME):
        print(f"\n[{STAGE}] cProfile of digest ingest, top {top} by {order.value}:")
        pstats.Stats(str(stats), stream=sys.stdout).strip_dirs().sort_stats(order).print_stats(top)
