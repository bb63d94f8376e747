"""Scaling: ``digest send`` at 10,000 to 100,000 subscribers and windows of 1,000 to 20,000
papers, each next to the single-core render ceiling measured on the same digests.

What is measured, per point (subscribers x window papers): one ``digest
--config CFG send --json`` in a fresh process (``run_measured``: wall time, the
peak RSS of the largest process among it and its render workers, CPU time of
all), Maildir backend, default settings (``render_workers = 0``: one per core).
The store holds the window's papers, all first seen within the lookback: the
newest 1,000 ingested an hour ago, the rest two days ago.  Every subscriber
has a generated filter (``bench.workload.FilterMaker``, drawn from the window
papers' words) and, but for one in a hundred
(new subscribers, whose window is the whole lookback), a digest sent yesterday
that took every paper up to the older ones: they are due for the new papers
only, the way a daily list is.  Checked: the run exits 0, nothing fails or is
deferred, and the Maildir holds exactly the digests the JSON says were sent.

Why this ceiling: the limit of a send is the mail itself, rendering and
serialising each message.  The ceiling is ``bench.render``'s bare loop (one
Jinja2 render of a comparable template, then ``EmailMessage`` with a text and
an HTML part, ``as_bytes()``) on one core, over the digests of 1,000 of this
point's due subscribers, built as the send builds them before the clock starts.
Ratio = digests per second of the whole send / bare messages per second.
Target (acceptance, issue 16): at 100,000 subscribers with 1,000 new papers in a
5,000-paper window, at least 1.5x the ceiling (only reachable rendering on more
than one core), and the peak RSS under 500 MB at 100,000 x 20,000.  The other
points are reported to show how the cost grows.
"""

import json
import random
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from bench import BenchError, ChildRun, Figure, Settings, Target, run_measured
from bench.cycle import digest, write_config
from bench.dumpgen import load_corpus, write_dumps
from bench.ingest import child_env
from bench.render import bare_item, render_bare
from bench.workload import (
    FilterMaker,
    add_subscribers,
    ingest,
    note,
    subscriber_rows,
    utc_now,
    workdir,
)
from digest import outbox
from digest.config import Config, load
from digest.due import due_subscribers
from digest.render import DigestContent, Renderer
from digest.store import Store, iso

STAGE = "scaling"
NEW = 1_000
POINTS = (  # subscribers, window papers
    (10_000, 1_000),
    (50_000, 1_000),
    (100_000, 1_000),
    (10_000, 5_000),
    (10_000, 20_000),
    (100_000, 5_000),
    (100_000, 20_000),
)
HEADLINE = (100_000, 5_000)
MEMORY_POINT = (100_000, 20_000)
SAMPLE = 1_000  # due subscribers whose digests the ceiling renders
NEW_SUBSCRIBERS = 100  # one in this many has never had a digest
UNIT = "digests/s"


@dataclass(frozen=True, slots=True)
class Point:
    subscribers: int
    window: int
    send: ChildRun
    sent: int
    ceiling: float  # bare messages per second, one core

    @property
    def rate(self) -> float:
        return self.sent / self.send.seconds if self.send.seconds else 0.0


def run(settings: Settings) -> list[Figure]:
    points: list[Point] = []
    with workdir(settings, STAGE) as folder:
        for n, (people, window) in enumerate(POINTS):
            scaled = settings.size(people), max(settings.size(window), settings.size(NEW) + 10)
            points.append(measure(folder / f"point{n}", *scaled, settings))
            print_row(points[-1])
    print_table(points)
    return figures(points, settings)


def measure(folder: Path, people: int, window: int, settings: Settings) -> Point:
    start = time.perf_counter()
    new = settings.size(NEW)
    config_path, database = prepare(folder, people, window, new, settings.seed)
    note(STAGE, f"{people:,} x {window:,}: prepared in {time.perf_counter() - start:.0f} s")
    ceiling = bare_rate(load(config_path), database)
    child = run_measured(digest(config_path, "send", "--json"), folder, child_env())
    sent = checked(child, folder / "mail")
    return Point(people, window, child, sent, ceiling)


def prepare(folder: Path, people: int, window: int, new: int, seed: int) -> tuple[Path, Path]:
    """The store of one point (see the module docstring) and its config."""
    folder.mkdir(parents=True)
    now = utc_now()
    old, fresh = write_dumps(
        [(folder / "old.txt", window - new), (folder / "new.txt", new)], seed, load_corpus()
    )
    database = folder / "digest.db"
    store = Store(database)
    try:
        ingest(store, old, now - timedelta(days=2))
        last_old = store.max_seq()
        ingest(store, fresh, now - timedelta(hours=1))
        rows = store.db.execute("SELECT title, abstract FROM papers ORDER BY seq").fetchall()
        made = FilterMaker([(r[0], r[1]) for r in rows], seed).many(people)
        add_subscribers(store, subscriber_rows((m.filter for m in made), now, seed=seed))
        sent_yesterday(store, last_old, now - timedelta(days=1), seed)
    finally:
        store.close()
    config = write_config(folder, database, folder / "mail")
    return config, database


def sent_yesterday(store: Store, max_seq: int, when: datetime, seed: int) -> None:
    """A sent digest up to ``max_seq`` for all but one in ``NEW_SUBSCRIBERS`` subscribers."""
    rng = random.Random(seed)
    ids = [row[0] for row in store.db.execute("SELECT id FROM subscribers ORDER BY id")]
    stamp = iso(when)
    rows = [
        (i, f"<digest.{i}.{rng.getrandbits(64):016x}@example.org>", max_seq, stamp, stamp)
        for i in ids
        if i % NEW_SUBSCRIBERS
    ]
    with store.write():
        store.db.conn.executemany(
            "INSERT INTO digests (subscriber_id, message_id, status, max_seq, papers, "
            "created_at, sent_at) VALUES (?, ?, 'sent', ?, 0, ?, ?)",
            rows,
        )


def bare_rate(config: Config, database: Path) -> float:
    """The bare loop's messages per second over the digests of ``SAMPLE`` due subscribers."""
    store = Store(database)
    try:
        now = utc_now()
        renderer = Renderer(config)
        builder = outbox.Builder(store, config, renderer, now)
        due, _ = due_subscribers(store, config, now)
        builder.due = due
        contents: list[DigestContent] = []
        for subscriber in due:
            prepared = builder.prepare(subscriber)
            if isinstance(prepared, DigestContent):
                contents.append(prepared)
                if len(contents) == SAMPLE:
                    break
    finally:
        store.close()
    if not contents:
        raise BenchError("no due subscriber has a digest: nothing to render")
    items = [bare_item(config, renderer, c) for c in contents]
    best = min(render_bare(items).seconds for _ in range(2))
    return len(items) / best


def checked(child: ChildRun, maildir: Path) -> int:
    if child.exit_code != 0:
        raise BenchError(f"digest send exited {child.exit_code}: {child.stderr[-2000:]}")
    report = json.loads(child.stdout)
    if report["failed"] or report["deferred"]:
        raise BenchError(f"send: {report['failed']} failed, {report['deferred']} deferred")
    files = sum(1 for p in (maildir / "new").iterdir() if p.is_file())
    if files != report["sent"]:
        raise BenchError(f"the Maildir holds {files:,} messages, send says {report['sent']:,}")
    shutil.rmtree(maildir)  # the next point's disk
    return int(report["sent"])


# the table --------------------------------------------------------------------


HEADER = (
    f"{'subscribers':>11} {'window':>7} {'sent':>7} {'time s':>7} {'CPU s':>7} "
    f"{'digests/s':>9} {'ceiling/s':>9} {'ratio':>6} {'peak MB':>8}"
)


def row(point: Point) -> str:
    return (
        f"{point.subscribers:>11,} {point.window:>7,} {point.sent:>7,} "
        f"{point.send.seconds:>7.1f} {point.send.cpu_seconds:>7.1f} {point.rate:>9,.0f} "
        f"{point.ceiling:>9,.0f} {point.rate / point.ceiling:>5.2f}x {point.send.peak_mb:>8,.0f}"
    )


def print_row(point: Point) -> None:
    note(STAGE, row(point))


def print_table(points: list[Point]) -> None:
    print(f"\n[{STAGE}] digest send, Maildir, one process per core rendering:")
    print(HEADER)
    for point in points:
        print(row(point))
    print(flush=True)


def figures(points: list[Point], settings: Settings) -> list[Figure]:
    full = settings.scale >= 1.0
    found = []
    for point, (people, window) in zip(points, POINTS, strict=True):
        target = None
        if (people, window) == HEADLINE:
            target = Target(min_ratio=1.5)
        elif (people, window) == MEMORY_POINT:
            target = Target(max_peak_mb=500)
        found.append(
            Figure(
                STAGE,
                f"send, {point.subscribers:,} subscribers x {point.window:,} window papers",
                point.rate,
                UNIT,
                ceiling=point.ceiling,
                peak_mb=point.send.peak_mb,
                target=target,
                note=f"{point.sent:,} sent in {point.send.seconds:.1f} s",
                full_scale=full,
            )
        )
    return found
